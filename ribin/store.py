"""The signature store: immutable HDF5 segments listed by an atomically replaced manifest.

A store is a directory (layout in ``docs/formats.md``)::

    STORE/manifest.json          canonical JSON: format, sequence, live segments, tombstones,
                                 audit log; replaced whole with os.replace, never edited
    STORE/segments/seg-<sequence>-<random>.h5   immutable segment files (plain HDF5)
    STORE/.lock                  writers' exclusive lock (readers never take it)

Every write (``add``/``add_many``, ``remove``, ``compact``) holds the writer lock, re-reads
the manifest, writes at most one new segment (under a temporary name, fsynced, renamed), then
replaces the manifest (temporary file, fsync, ``os.replace``, fsync of the directory). The
manifest replace is the commit point: a crash before it leaves the previous state plus
orphan files that readers ignore and the next writer deletes; a crash after it leaves the new
state. Readers take no lock: they read whichever manifest is current when they open (or
:meth:`SignatureStore.refresh`) and see that state whole. A segment removed by ``compact``
while a reader still lists it makes the reader re-read the manifest and carry on.

A single segment file (``.h5``) also opens, read-only, as a store of its own.
"""

from __future__ import annotations

import collections
import contextlib
import getpass
import json
import os
import re
import secrets
import socket
import stat
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np

from ribin import __version__, prefilter
from ribin.errors import InputError, StoreError
from ribin.exhibit import Exhibit, canonical_json
from ribin.network import Scope  # defined next to the network model; importable from here too
from ribin.store_format import (
    FORMAT,
    FORMAT_VERSION,
    ExhibitMetadata,
    ExhibitRecord,
    SegmentIndex,
    SegmentRecord,
    SegmentWriter,
    check_exhibit_id,
    check_format,
    check_segment_structure,
    exhibit_content_id,
    file_sha256,
    is_hex64,
    iter_exhibit_names,
    loose_json,
    open_segment,
    read_exhibit,
    read_segment_features,
    read_segment_index,
    recompute_ids,
    utc_now,
)

MANIFEST = "manifest.json"
SEGMENTS = "segments"
LOCK = ".lock"
CREATED_BY = f"ribin {__version__}"
_SEGMENT_NAME = re.compile(r"seg-\d{8}-[0-9a-f]{8}\.h5")
_OPEN_HANDLES = 32
Mode = Literal["r", "a", "x"]

# Test hook: called with the name of each step of a write, so a test can kill the writer
# exactly there. None in normal use.
_checkpoint: Callable[[str], None] | None = None


def _step(name: str) -> None:
    if _checkpoint is not None:
        _checkpoint(name)


class ExhibitConflictError(StoreError):
    """An exhibit clashes with one already stored (same exhibit_id or signature, other content)."""


class ExhibitNotFoundError(StoreError, KeyError):
    """No live exhibit has this exhibit_id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class AmbiguousExhibitError(StoreError, KeyError):
    """Several countries hold this exhibit_id; name one as ``CC/ID`` or with ``country=``."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _split_key(name: str) -> tuple[str | None, str]:
    """``"JM/Q-1"`` -> ``("JM", "Q-1")``; ``"Q-1"`` -> ``(None, "Q-1")``."""
    country, sep, rest = name.partition("/")
    if sep and len(country) == 2 and country.isupper():
        return country, rest
    return None, name


def _readings(name: str) -> list[tuple[str | None, str]]:
    """Ways to read a name as (country or None, exhibit_id): ``CC/ID`` and the name whole.

    Exhibit IDs may contain ``/`` (lab case numbers such as ``2026/0412``), so ``JM/2026/1``
    is JM's ``2026/1`` or, failing that, the exhibit ID ``JM/2026/1`` itself.
    """
    country, plain = _split_key(name)
    return [(country, plain), (None, name)] if country is not None else [(None, name)]


def _label(country: str, exhibit_id: str) -> str:
    return f"{country}/{exhibit_id}"


class StoreLockedError(StoreError):
    """Another process holds the writer lock for longer than the timeout."""


class _SegmentGone(Exception):
    """A listed segment vanished (a compaction ran); the reader refreshes and retries."""


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class StoredExhibit:
    """An exhibit read from the store, with its metadata and where it lives.

    Attributes
    ----------
    exhibit : Exhibit
        Signatures and provenance, as ingested.
    metadata : ExhibitMetadata
        Country, site, caliber, role, case_ref, acquired_at, sharing.
    content_id : str
        Exhibit content ID (see :func:`ribin.store_format.exhibit_content_id`).
    segment : str
        File name of the segment holding it.
    stored_at : str
        UTC time of the ingest (ISO 8601).
    """

    exhibit: Exhibit
    metadata: ExhibitMetadata
    content_id: str
    segment: str
    stored_at: str

    @property
    def exhibit_id(self) -> str:
        return self.exhibit.exhibit_id


@dataclass(frozen=True)
class AddResult:
    """Outcome of adding one exhibit: ``added`` is False when it was already stored."""

    exhibit_id: str
    content_id: str
    added: bool
    message: str


@dataclass(frozen=True)
class SegmentRef:
    """A live segment: its path, manifest checksum and the exhibits tombstoned in it."""

    name: str
    path: Path
    sha256: str
    removed: frozenset[str]  # content IDs to skip


# Exhibit index columns copied onto each feature row, for the search's filters.
_TABLE_FIELDS = (
    "content_id",
    "exhibit_id",
    "country",
    "sharing",
    "site",
    "caliber",
    "role",
    "acquired_at",
)


@dataclass
class FeatureTable:
    """Prefilter features of live signatures, one row each, in store order.

    ``features`` is float32, shape (n, F); the other fields are arrays of shape (n,).
    """

    features: np.ndarray
    signature_id: np.ndarray
    content_id: np.ndarray
    exhibit_id: np.ndarray
    kind: np.ndarray
    modality: np.ndarray
    pixel_size_um: np.ndarray
    country: np.ndarray
    sharing: np.ndarray
    segment: np.ndarray
    site: np.ndarray
    caliber: np.ndarray
    role: np.ndarray
    acquired_at: np.ndarray
    feature_version: int = prefilter.FEATURE_VERSION

    def __len__(self) -> int:
        return len(self.signature_id)


@dataclass
class StoreInfo:
    """Counts and sizes of a store (what ``ribin store info`` prints)."""

    path: str
    format_version: int
    created_by: str
    sequence: int
    segments: int
    exhibits: int
    signatures: int
    removed: int
    bytes: int
    by_country: dict[str, int]
    by_region: dict[str, int]
    by_modality: dict[str, int]
    by_caliber: dict[str, int]
    by_sharing: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class VerifyReport:
    """Outcome of :meth:`SignatureStore.verify`; ``problems`` lists every mismatch."""

    path: str
    segments: int = 0
    exhibits: int = 0
    signatures: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


# ----------------------------------------------------------------------------- files


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":  # Windows cannot open directories; NTFS journals renames
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _WriterLock:
    """Exclusive, non-reentrant lock on ``STORE/.lock`` (flock / msvcrt), freed on exit or death."""

    def __init__(self, path: Path, timeout: float):
        self.path = path
        self.timeout = timeout
        self.fd: int | None = None

    def __enter__(self) -> _WriterLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                _lock_fd(fd)
                break
            except OSError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise StoreLockedError(
                        f"{self.path.parent}: another process is writing to the store "
                        f"(waited {self.timeout:g} s for {LOCK})"
                    ) from None
                time.sleep(0.01)
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            try:
                _unlock_fd(fd)
            finally:
                os.close(fd)


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock_fd(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _unlock_fd(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock_fd(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock_fd(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _audit(action: str, sequence: int, **details: Any) -> dict[str, Any]:
    try:
        user = getpass.getuser()
    except Exception:  # no login name in some containers
        user = "unknown"
    return {
        "action": action,
        "sequence": sequence,
        "time": utc_now(),
        "user": user,
        "host": socket.gethostname(),
        "software": CREATED_BY,
        **details,
    }


MAX_MANIFEST_BYTES = 1 << 30
"""Largest manifest.json read (about 3 M audit records)."""
_MAX_MANIFEST_DEPTH = 16


def _read_manifest_bytes(path: Path) -> bytes:
    """The manifest's bytes: a regular file, read no further than MAX_MANIFEST_BYTES.

    Opened without blocking and checked with fstat first, so a FIFO, a device (a link to
    ``/dev/zero``) or a directory in its place is refused instead of hanging or filling
    memory.
    """
    name = f"{path.parent.name}/{path.name}"
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise StoreError(f"{name}: cannot read ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise StoreError(f"{name}: not a regular file (a device, FIFO or directory)")
        if info.st_size > MAX_MANIFEST_BYTES:
            raise StoreError(f"{name}: {info.st_size} bytes, over {MAX_MANIFEST_BYTES}")
        with os.fdopen(os.dup(fd), "rb") as fh:
            data = fh.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise StoreError(f"{name}: cannot read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    if len(data) > MAX_MANIFEST_BYTES:
        raise StoreError(f"{name}: over {MAX_MANIFEST_BYTES} bytes")
    return data


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a JSON value, stopping once past ``limit``."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if level > limit:
            return level
        deepest = max(deepest, level)
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)
    return deepest


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0


def _check_manifest(manifest: Any, name: str) -> dict[str, Any]:
    if not isinstance(manifest, dict):
        raise StoreError(f"{name}: not a JSON object")
    if _depth(manifest, _MAX_MANIFEST_DEPTH) > _MAX_MANIFEST_DEPTH:
        raise StoreError(f"{name}: nested deeper than {_MAX_MANIFEST_DEPTH} levels")
    check_format(manifest, name)
    if not _is_count(manifest.get("sequence")):
        raise StoreError(f"{name}: missing or bad 'sequence'")
    for key in ("segments", "tombstones"):
        if not isinstance(manifest.get(key), list):
            raise StoreError(f"{name}: missing or bad {key!r}")
    for entry in manifest["segments"]:
        if not isinstance(entry, dict) or not _SEGMENT_NAME.fullmatch(str(entry.get("name"))):
            raise StoreError(f"{name}: bad segment entry {str(entry)[:80]}")
        if not isinstance(entry.get("sha256"), str) or not is_hex64(entry["sha256"]):
            raise StoreError(f"{name}: segment {entry['name']} has no valid sha256")
        if not _is_count(entry.get("bytes", 0)) or not _is_count(entry.get("sequence", 0)):
            raise StoreError(f"{name}: segment {entry['name']} has a bad size or sequence")
        origin = entry.get("origin")
        if origin is not None and not (
            isinstance(origin, dict)
            and isinstance(origin.get("country"), str)
            and isinstance(origin.get("site"), str)
        ):
            raise StoreError(f"{name}: segment {entry['name']} has a bad origin")
    for entry in manifest["tombstones"]:
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("segment"), str)
            or not isinstance(entry.get("content_id"), str)
            or not is_hex64(entry["content_id"])
        ):
            raise StoreError(f"{name}: bad tombstone entry {str(entry)[:80]}")
    audit = manifest.setdefault("audit", [])
    if not isinstance(audit, list) or not all(isinstance(e, dict) for e in audit):
        raise StoreError(f"{name}: 'audit' is not a list of records")
    _check_sync_state(manifest.get("sync", {}), name)
    return manifest


def _check_sync_state(sync: Any, name: str) -> None:
    """The ``sync`` object: the store's identity and a cursor range per sending site."""
    if not isinstance(sync, dict):
        raise StoreError(f"{name}: 'sync' is not an object")
    identity = sync.get("identity")
    if identity is not None and not (
        isinstance(identity, dict)
        and isinstance(identity.get("country"), str)
        and isinstance(identity.get("site"), str)
    ):
        raise StoreError(f"{name}: sync.identity needs a country and a site")
    received = sync.get("received", {})
    if not isinstance(received, dict):
        raise StoreError(f"{name}: sync.received is not an object")
    for sender, cursor in received.items():
        if not (
            isinstance(cursor, dict)
            and _is_count(cursor.get("from"))
            and _is_count(cursor.get("to"))
            and cursor["from"] <= cursor["to"]
        ):
            raise StoreError(f"{name}: sync.received of {sender[:40]} has a bad cursor range")


# ----------------------------------------------------------------------------- the store


@dataclass
class _Live:
    """Maps from keys to (segment name, row) over the live (not tombstoned) exhibits.

    Exhibits are keyed per owning country: ``(country, exhibit_id)`` and ``(country,
    content_id)`` are unique among live exhibits, so Barbados's ``Q-001`` and Jamaica's
    ``Q-001`` (imported by sync) live side by side. ``by_signature_id`` maps ``(country,
    signature_id)`` to (segment, signature row).
    """

    by_key: dict[tuple[str, str], tuple[str, int]]
    by_content_id: dict[tuple[str, str], tuple[str, int]]
    by_signature_id: dict[tuple[str, str], tuple[str, int]]
    live_rows: dict[str, np.ndarray]  # segment -> bool mask over its exhibit rows
    duplicates: list[str]
    countries_of: dict[str, list[str]] = field(default_factory=dict)  # exhibit_id -> owners

    def add_key(self, key: tuple[str, str], place: tuple[str, int]) -> None:
        self.by_key[key] = place
        self.countries_of.setdefault(key[1], []).append(key[0])

    def drop_key(self, key: tuple[str, str]) -> None:
        del self.by_key[key]
        owners = self.countries_of[key[1]]
        owners.remove(key[0])
        if not owners:
            del self.countries_of[key[1]]


@dataclass
class _Batch:
    """Exhibits accepted so far in one write, with lookups that keep checks O(1)."""

    items: dict[tuple[str, str], PreparedExhibit] = field(default_factory=dict)
    signatures: dict[tuple[str, str], str] = field(default_factory=dict)
    content_ids: set[str] = field(default_factory=set)
    keys: set[tuple[str, str]] = field(default_factory=set)


@dataclass(frozen=True)
class PreparedExhibit:
    """An exhibit checked for storing, with IDs and features computed from its surfaces."""

    exhibit: Exhibit
    metadata: ExhibitMetadata
    content_id: str
    signature_ids: dict[str, str]
    features: dict[str, np.ndarray]


class SignatureStore:
    """A signature store on disk; open with :meth:`open`, use as a context manager.

    An object shows the state committed when it was opened or last refreshed (a write
    refreshes first). Processes may share a store freely (see the module notes); within a
    process, give each thread its own object.

    Examples
    --------
    >>> with SignatureStore.open("lab.ribin", "a") as store:  # doctest: +SKIP
    ...     store.add(exhibit, {"country": "JM", "caliber": "9mm Luger"})
    ...     stored = store.get("JM-2024-0042")
    """

    def __init__(self, path: Path, mode: Mode, single_file: bool, lock_timeout: float):
        self.path = path
        self.mode = mode
        self.single_file = single_file
        self.lock_timeout = lock_timeout
        self._manifest: dict[str, Any] = {}
        self._indices: dict[str, SegmentIndex] = {}
        self._handles: collections.OrderedDict[str, h5py.File] = collections.OrderedDict()
        self._live: _Live | None = None
        self._closed = False

    # -- opening ----------------------------------------------------------------------

    @classmethod
    def open(
        cls, path: str | os.PathLike, mode: Mode = "r", *, lock_timeout: float = 60.0
    ) -> SignatureStore:
        """Open a store.

        Parameters
        ----------
        path : path-like
            Store directory, or a single segment ``.h5`` file (read-only).
        mode : {"r", "a", "x"}
            ``"r"`` read only; ``"a"`` read and write, creating the store if missing;
            ``"x"`` create a new store, failing if one exists. No mode truncates a store.
        lock_timeout : float
            Seconds a write waits for another writer before :class:`StoreLockedError`.

        Raises
        ------
        StoreError
            Not a store, damaged manifest or segment (one-line message naming the file).
        FormatVersionError
            Written by a newer store format.
        """
        if mode not in ("r", "a", "x"):
            raise ValueError(f"mode must be 'r', 'a' or 'x', not {mode!r}")
        path = Path(path)
        if path.is_file():
            if mode != "r":
                raise StoreError(f"{path}: a single-file store opens read-only (mode 'r')")
            store = cls(path, mode, True, lock_timeout)
            store._open_single()
            return store
        store = cls(path, mode, False, lock_timeout)
        if mode == "r":
            if not path.is_dir():
                raise StoreError(f"{path}: no such store")
            store.refresh()
        else:
            store._create_or_open(exclusive=mode == "x")
        return store

    def _open_single(self) -> None:
        name = self.path.name
        f = open_segment(self.path)
        self._handles[name] = f
        try:
            self._indices[name] = read_segment_index(f, name)
        except Exception:
            self.close()
            raise
        self._manifest = {
            "format": FORMAT,
            "format_version": int(f.attrs["format_version"]),
            "created_by": str(f.attrs["created_by"]),
            "sequence": self._indices[name].sequence,
            "segments": [{"name": name, "sha256": "", "bytes": self.path.stat().st_size}],
            "tombstones": [],
            "audit": [],
        }

    def _create_or_open(self, exclusive: bool) -> None:
        path = self.path
        if path.exists() and not path.is_dir():
            raise StoreError(f"{path}: exists and is not a store directory")
        if not exclusive and (path / MANIFEST).exists():
            self.refresh()  # opening takes no lock; each write does
            return
        if path.is_dir() and not (path / MANIFEST).exists():
            stray = [  # a creation interrupted before its first commit leaves only these
                p.name
                for p in path.iterdir()
                if p.name not in (LOCK, SEGMENTS) and not p.name.startswith(".manifest-")
            ]
            if stray:
                raise StoreError(f"{path}: directory is not empty and has no {MANIFEST}")
        path.mkdir(parents=True, exist_ok=True)
        with _WriterLock(path / LOCK, self.lock_timeout):
            if (path / MANIFEST).exists():
                if exclusive:
                    raise StoreError(f"{path}: a store already exists here")
                self.refresh()
                return
            (path / SEGMENTS).mkdir(exist_ok=True)
            _fsync_dir(path)
            manifest = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "created_by": CREATED_BY,
                "written_by": CREATED_BY,
                "created_at": utc_now(),
                "store_id": secrets.token_hex(16),
                "sequence": 0,
                "segments": [],
                "tombstones": [],
                "audit": [_audit("create", 0)],
            }
            self._commit(manifest)

    def refresh(self) -> None:
        """Re-read the manifest: see the writes committed since this store was opened."""
        if self.single_file:
            return
        name = f"{self.path.name}/{MANIFEST}"
        try:
            text = _read_manifest_bytes(self.path / MANIFEST)
        except FileNotFoundError:
            raise StoreError(f"{self.path}: no {MANIFEST} (not a RIBIN store)") from None
        try:
            manifest = json.loads(text)
        except (ValueError, RecursionError):
            raise StoreError(f"{name}: not valid JSON (damaged manifest)") from None
        manifest = _check_manifest(manifest, name)
        if self._same_state(manifest):
            return  # nothing committed since: keep the live view
        self._set_manifest(manifest)

    def _same_state(self, manifest: dict[str, Any]) -> bool:
        # every commit bumps the sequence under the lock, so equal sequence = equal manifest
        return bool(self._manifest) and (manifest["sequence"], manifest.get("store_id")) == (
            self._manifest["sequence"],
            self._manifest.get("store_id"),
        )

    def _set_manifest(self, manifest: dict[str, Any], live: _Live | None = None) -> None:
        self._manifest = manifest
        self._live = live
        listed = {s["name"] for s in manifest["segments"]}
        for name in list(self._handles):
            if name not in listed:
                self._handles.pop(name).close()
        for name in list(self._indices):
            if name not in listed:
                del self._indices[name]

    def close(self) -> None:
        """Close open segment files (the store holds no lock between writes)."""
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()
        self._closed = True

    def __enter__(self) -> SignatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SignatureStore({str(self.path)!r}, mode={self.mode!r})"

    # -- segments ---------------------------------------------------------------------

    def _segment_path(self, name: str) -> Path:
        return self.path if self.single_file else self.path / SEGMENTS / name

    def _regular_segment(self, name: str) -> Path:
        """The segment's path, refused unless a regular file (no link) in the store."""
        path = self._segment_path(name)
        if self.single_file:
            return path
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            raise _SegmentGone(name) from None
        if not stat.S_ISREG(info.st_mode):
            raise StoreError(
                f"{self.path.name}/{SEGMENTS}/{name}: not a regular file in the store "
                "(a link or a device); refused"
            )
        return path

    def _handle(self, name: str) -> h5py.File:
        handle = self._handles.get(name)
        if handle is not None:
            self._handles.move_to_end(name)
            return handle
        try:
            handle = open_segment(self._regular_segment(name))
        except FileNotFoundError:
            raise _SegmentGone(name) from None
        self._handles[name] = handle
        while len(self._handles) > _OPEN_HANDLES:
            self._handles.popitem(last=False)[1].close()
        return handle

    def _index(self, name: str) -> SegmentIndex:
        index = self._indices.get(name)
        if index is None:
            index = read_segment_index(self._handle(name), name)
            self._indices[name] = index
        return index

    def _retrying(self, action: Callable[[], Any]) -> Any:
        """Run ``action``; if a listed segment vanished, re-read the manifest and retry."""
        for _ in range(10):
            try:
                return action()
            except _SegmentGone as gone:
                missing = gone.args[0]
                self.refresh()
                if any(s["name"] == missing for s in self._manifest["segments"]):
                    raise StoreError(
                        f"{self.path.name}/{SEGMENTS}/{missing}: listed in {MANIFEST} but missing"
                    ) from None
        raise StoreError(f"{self.path}: the store kept changing while being read")

    def segments(self) -> list[SegmentRef]:
        """Live segments with the content IDs tombstoned in each (for search workers)."""
        removed: dict[str, set[str]] = collections.defaultdict(set)
        for stone in self._manifest["tombstones"]:
            removed[stone["segment"]].add(stone["content_id"])
        return [
            SegmentRef(
                s["name"],
                self._segment_path(s["name"]),
                s.get("sha256", ""),
                frozenset(removed[s["name"]]),
            )
            for s in self._manifest["segments"]
        ]

    def segment_paths(self) -> list[Path]:
        """Paths of the live segment files, oldest first."""
        return [ref.path for ref in self.segments()]

    # -- the live view ----------------------------------------------------------------

    def _live_view(self) -> _Live:
        if self._live is None:
            self._live = self._retrying(self._build_live)
        return self._live

    def _build_live(self) -> _Live:
        live = _Live({}, {}, {}, {}, [])
        for ref in self.segments():
            index = self._index(ref.name)
            content_ids = index.exhibits["content_id"]
            rows = np.ones(len(content_ids), dtype=bool)
            if ref.removed:
                rows &= ~np.isin(content_ids, list(ref.removed))
            take = np.flatnonzero(rows).tolist()
            countries = index.exhibits["country"][take].tolist()
            new_content = list(zip(countries, content_ids[take].tolist(), strict=True))
            new_keys = list(
                zip(countries, index.exhibits["exhibit_id"][take].tolist(), strict=True)
            )
            places = [(ref.name, row) for row in take]
            clash = (
                len(set(new_content)) < len(take)
                or len(set(new_keys)) < len(take)
                or not live.by_content_id.keys().isdisjoint(new_content)
                or not live.by_key.keys().isdisjoint(new_keys)
            )
            if not clash:  # the usual case, in bulk
                live.by_content_id.update(zip(new_content, places, strict=True))
                for key, place in zip(new_keys, places, strict=True):
                    live.add_key(key, place)
            else:  # a damaged store: keep the first copy, report the others
                for row, content_key, key in zip(take, new_content, new_keys, strict=True):
                    if content_key in live.by_content_id or key in live.by_key:
                        live.duplicates.append(f"{ref.name}: {_label(*key)} is stored twice")
                        rows[row] = False
                        continue
                    live.by_content_id[content_key] = (ref.name, row)
                    live.add_key(key, (ref.name, row))
            live.live_rows[ref.name] = rows
            self._add_signatures(live, ref.name, np.flatnonzero(rows[index.signatures["exhibit"]]))
        return live

    def _add_signatures(self, live: _Live, name: str, sig_rows: np.ndarray) -> None:
        index = self._index(name)
        sig_rows = np.asarray(sig_rows, dtype=np.int64)
        owners = index.exhibits["country"][index.signatures["exhibit"][sig_rows]].tolist()
        sig_ids = index.signatures["signature_id"][sig_rows].tolist()
        live.by_signature_id.update(
            zip(
                zip(owners, sig_ids, strict=True),
                [(name, r) for r in sig_rows.tolist()],
                strict=True,
            )
        )

    def _add_to_live(self, live: _Live, name: str) -> None:
        """Extend ``live`` with a segment just committed by this writer, and install it."""
        index = self._index(name)
        for row, (content_id, exhibit_id, country) in enumerate(
            zip(
                index.exhibits["content_id"],
                index.exhibits["exhibit_id"],
                index.exhibits["country"],
                strict=True,
            )
        ):
            live.by_content_id[(country, content_id)] = (name, row)
            live.add_key((country, exhibit_id), (name, row))
        self._add_signatures(live, name, np.arange(index.n_signatures))
        live.live_rows[name] = np.ones(index.n_exhibits, dtype=bool)
        self._live = live

    def __len__(self) -> int:
        return len(self._live_view().by_key)

    def __contains__(self, exhibit_id: object) -> bool:
        if not isinstance(exhibit_id, str):
            return False
        live = self._live_view()
        return any(
            (country, plain) in live.by_key if country is not None else plain in live.countries_of
            for country, plain in _readings(exhibit_id)
        )

    def exhibit_ids(self) -> list[str]:
        """exhibit_id of every live exhibit, in store order.

        Two countries may hold the same exhibit_id (after sync); it is then listed once per
        country. :meth:`keys` gives the unique ``(country, exhibit_id)`` pairs.
        """
        return [exhibit_id for _, exhibit_id in self._live_view().by_key]

    def keys(self) -> list[tuple[str, str]]:
        """``(country, exhibit_id)`` of every live exhibit, in store order (unique)."""
        return list(self._live_view().by_key)

    def _locate(self, exhibit_id: str, country: str | None = None) -> tuple[str, str, int]:
        """(country, segment, row) of a live exhibit named ``ID``, ``CC/ID`` or ``ID`` + country.

        An exhibit ID may itself contain ``/`` (``2026/0412``): ``CC/REST`` is read both as
        country ``CC``'s ``REST`` and as the ID ``CC/REST`` itself; whichever is stored is
        found, and when both are, the name is ambiguous (name the country separately).
        """
        found = []
        for prefix, plain in _readings(exhibit_id):
            if prefix is not None and country is not None and prefix != country:
                continue
            try:
                found.append(self._locate_one(plain, prefix or country, exhibit_id))
            except ExhibitNotFoundError:
                continue
        if len(found) > 1:
            prefix, plain = _split_key(exhibit_id)
            raise AmbiguousExhibitError(
                f"{self.path.name}: {exhibit_id!r} is both {prefix}'s exhibit {plain!r} and "
                f"{found[1][0]}'s exhibit {exhibit_id!r}; name the country separately"
            )
        if found:
            return found[0]
        prefix, _ = _split_key(exhibit_id)
        if prefix is not None and country is not None and prefix != country:
            raise InputError(None, f"{exhibit_id!r} names country {prefix}, not {country}")
        raise ExhibitNotFoundError(f"{self.path.name}: no exhibit {exhibit_id!r}")

    def _locate_one(self, plain: str, country: str | None, name: str) -> tuple[str, str, int]:
        """:meth:`_locate` for one reading: exhibit ID ``plain`` of ``country`` (or any)."""
        live = self._live_view()
        if country is None:
            owners = live.countries_of.get(plain, [])
            if len(owners) > 1:
                choices = ", ".join(f"{c}/{plain}" for c in sorted(owners))
                raise AmbiguousExhibitError(
                    f"{self.path.name}: exhibit_id {plain!r} is held by {len(owners)} countries "
                    f"({', '.join(sorted(owners))}); name one: {choices}"
                )
            country = owners[0] if owners else ""
        where = live.by_key.get((country, plain))
        if where is None:
            raise ExhibitNotFoundError(f"{self.path.name}: no exhibit {name!r}")
        return country, *where

    # -- reading ----------------------------------------------------------------------

    def listing(self, country: str | None = None, role: str | None = None) -> list[dict[str, str]]:
        """One row per live exhibit, in store order, without reading any signature.

        Parameters
        ----------
        country, role : str, optional
            Only exhibits owned by this country / of this role.

        Returns
        -------
        list of dict
            ``country``, ``exhibit_id``, ``role``, ``caliber``, ``sharing``, ``site`` and
            ``added`` (UTC time of the ingest, ISO 8601), the shape of ``ribin store list
            --json``.
        """

        def read() -> list[dict[str, str]]:
            live = self._live_view()
            rows_out = []
            for ref in self.segments():
                index = self._index(ref.name)
                rows = live.live_rows[ref.name].copy()
                if country is not None:
                    rows &= index.exhibits["country"] == country
                if role is not None:
                    rows &= index.exhibits["role"] == role
                exhibits = self._handle(ref.name)["exhibits"]
                for row in np.flatnonzero(rows).tolist():
                    group = exhibits[index.exhibits["content_id"][row]]
                    added = group.attrs.get("stored_at", "")
                    rows_out.append(
                        {
                            "country": str(index.exhibits["country"][row]),
                            "exhibit_id": str(index.exhibits["exhibit_id"][row]),
                            "role": str(index.exhibits["role"][row]),
                            "caliber": str(index.exhibits["caliber"][row]),
                            "sharing": str(index.exhibits["sharing"][row]),
                            "site": str(index.exhibits["site"][row]),
                            "added": added.decode() if isinstance(added, bytes) else str(added),
                        }
                    )
            return rows_out

        return self._retrying(read)

    def same_source(self, source_sha256: str) -> list[tuple[str, str]]:
        """``(country, content_id)`` of every live exhibit extracted from this source file.

        A search excludes them from a query with the same SHA-256: a scan is never its own
        candidate, whatever exhibit ID or extraction options it was stored under.
        """
        if not source_sha256:
            return []

        def read() -> list[tuple[str, str]]:
            live = self._live_view()
            found = []
            for ref in self.segments():
                index = self._index(ref.name)
                rows = live.live_rows[ref.name] & (index.exhibits["source_sha256"] == source_sha256)
                for row in np.flatnonzero(rows).tolist():
                    found.append(
                        (
                            str(index.exhibits["country"][row]),
                            str(index.exhibits["content_id"][row]),
                        )
                    )
            return found

        return self._retrying(read)

    def _stored(self, segment: str, content_id: str) -> StoredExhibit:
        record = read_exhibit(self._handle(segment), content_id)
        return StoredExhibit(
            record.exhibit, record.metadata, record.content_id, segment, record.stored_at
        )

    def get(self, exhibit_id: str, country: str | None = None) -> StoredExhibit:
        """The live exhibit with this exhibit_id.

        Parameters
        ----------
        exhibit_id : str
            ``"Q-001"``, or ``"JM/Q-001"`` to name the owning country (an ID containing
            ``/`` such as ``"2026/0412"`` is found as written; see :meth:`_locate`).
        country : str, optional
            Owning country; needed (here or as a prefix) when several countries hold the
            same exhibit_id.

        Raises
        ------
        ExhibitNotFoundError
            No live exhibit has that exhibit_id (a ``StoreError`` and a ``KeyError``).
        AmbiguousExhibitError
            Several countries hold it and none was named; the message lists them.
        """

        def read() -> StoredExhibit:
            _, segment, row = self._locate(exhibit_id, country)
            return self._stored(segment, self._index(segment).exhibits["content_id"][row])

        return self._retrying(read)

    def iter(self, scope: Scope | None = None) -> Iterator[StoredExhibit]:
        """Every live exhibit visible in ``scope`` (all of them when None), in store order.

        The iteration follows the snapshot taken at open or :meth:`refresh`; if a compaction
        removes a segment meanwhile, it re-reads the manifest and continues without repeats.
        """
        done: set[tuple[str, str]] = set()
        for _ in range(10):
            try:
                live = self._live_view()
                for ref in self.segments():
                    index = self._index(ref.name)
                    rows = live.live_rows[ref.name].copy()
                    if scope is not None:
                        rows &= scope.mask(index.exhibits["country"], index.exhibits["sharing"])
                    for row in np.flatnonzero(rows):
                        content_id = index.exhibits["content_id"][row]
                        key = (index.exhibits["country"][row], content_id)
                        if key in done:
                            continue
                        stored = self._stored(ref.name, content_id)
                        done.add(key)
                        yield stored
                return
            except _SegmentGone as gone:
                self.refresh()
                if any(s["name"] == gone.args[0] for s in self._manifest["segments"]):
                    raise StoreError(
                        f"{self.path.name}/{SEGMENTS}/{gone.args[0]}: listed in {MANIFEST} "
                        "but missing"
                    ) from None
        raise StoreError(f"{self.path}: the store kept changing while being read")

    def __iter__(self) -> Iterator[StoredExhibit]:
        return self.iter()

    def features(self, scope: Scope | None = None, kind: str | None = None) -> FeatureTable:
        """Prefilter features of the live signatures in ``scope``, optionally of one region.

        Each segment's features are one contiguous dataset read in one go; segments written
        with another :data:`ribin.prefilter.FEATURE_VERSION` are recomputed from surfaces.
        """
        return self._retrying(lambda: self._features(scope, kind))

    def _features(self, scope: Scope | None, kind: str | None) -> FeatureTable:
        live = self._live_view()
        parts: dict[str, list[np.ndarray]] = collections.defaultdict(list)
        for ref in self.segments():
            index = self._index(ref.name)
            sigs, exh = index.signatures, index.exhibits
            rows = live.live_rows[ref.name]
            if scope is not None:
                rows = rows & scope.mask(exh["country"], exh["sharing"])
            take = rows[sigs["exhibit"]]
            if kind is not None:
                take &= sigs["kind"] == kind
            if not take.any():
                continue
            if index.feature_version == prefilter.FEATURE_VERSION:
                matrix = read_segment_features(self._handle(ref.name))[take]
            else:
                matrix = self._recompute_features(ref.name, index, np.flatnonzero(take))
            owner = sigs["exhibit"][take]
            parts["features"].append(matrix)
            for name in ("signature_id", "kind", "modality", "pixel_size_um"):
                parts[name].append(sigs[name][take])
            for name in _TABLE_FIELDS:
                parts[name].append(exh[name][owner])
            parts["segment"].append(np.full(len(owner), ref.name, dtype=object))
        if not parts:
            empty = np.empty(0, dtype=object)
            columns = ("signature_id", "kind", "modality", "pixel_size_um", "segment")
            return FeatureTable(
                np.empty((0, prefilter.FEATURE_LENGTH), np.float32),
                **{name: empty for name in (*columns, *_TABLE_FIELDS)},
            )
        return FeatureTable(
            **{name: np.concatenate(values) for name, values in parts.items()},
        )

    def _recompute_features(self, segment: str, index: SegmentIndex, rows: np.ndarray):
        out = np.empty((len(rows), prefilter.FEATURE_LENGTH), dtype=np.float32)
        handle = self._handle(segment)
        for i, sig_row in enumerate(rows):
            content_id = index.exhibits["content_id"][index.signatures["exhibit"][sig_row]]
            record = read_exhibit(handle, content_id)
            signature = record.exhibit.signatures()[index.signatures["kind"][sig_row]]
            out[i] = prefilter.features(signature)
        return out

    def audit_log(self) -> list[dict[str, Any]]:
        """The manifest's audit records (create, add, remove, compact), oldest first."""
        return [dict(entry) for entry in self._manifest.get("audit", [])]

    # -- summary and checks -----------------------------------------------------------

    def info(self) -> StoreInfo:
        """Counts per country, region, modality, caliber and sharing; size; format."""
        return self._retrying(self._info)

    def _info(self) -> StoreInfo:
        live = self._live_view()
        counts: dict[str, collections.Counter] = {
            k: collections.Counter()
            for k in ("country", "region", "modality", "caliber", "sharing")
        }
        n_signatures = 0
        size = 0
        for entry in self._manifest["segments"]:
            index = self._index(entry["name"])
            rows = live.live_rows[entry["name"]]
            for name in ("country", "caliber", "sharing"):
                counts[name].update(index.exhibits[name][rows].tolist())
            take = rows[index.signatures["exhibit"]]
            n_signatures += int(take.sum())
            counts["region"].update(index.signatures["kind"][take].tolist())
            counts["modality"].update(index.signatures["modality"][take].tolist())
            size += int(entry.get("bytes", 0))
        if not self.single_file and (self.path / MANIFEST).exists():
            size += (self.path / MANIFEST).stat().st_size
        return StoreInfo(
            path=str(self.path),
            format_version=int(self._manifest["format_version"]),
            created_by=str(self._manifest["created_by"]),
            sequence=int(self._manifest["sequence"]),
            segments=len(self._manifest["segments"]),
            exhibits=len(live.by_key),
            signatures=n_signatures,
            removed=len(self._manifest["tombstones"]),
            bytes=size,
            **{
                f"by_{name}": dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))
                for name, counter in counts.items()
            },
        )

    def verify(self) -> VerifyReport:
        """Re-hash every stored signature and exhibit and check every segment.

        Checks each segment's SHA-256 and size against the manifest, recomputes every
        signature ID from its stored surface and parameters and every exhibit content ID,
        and checks the index and prefilter tables against the exhibit groups. Files in the
        store that no manifest lists (left by an interrupted write) are reported as notes.
        """
        for _ in range(10):
            try:
                return self._verify_once()
            except _SegmentGone:  # a compaction ran meanwhile: check the new state
                continue
        raise StoreError(f"{self.path}: the store kept changing while being verified")

    def _verify_once(self) -> VerifyReport:
        report = VerifyReport(str(self.path))
        if not self.single_file:
            self.refresh()
            report.notes.extend(f"orphan file (ignored): {p}" for p in self._orphans())
        live = None
        try:
            live = self._live_view()
        except StoreError as exc:
            report.problems.append(str(exc))
        if live is not None:
            report.problems.extend(live.duplicates)
        tombstoned: dict[str, set[str]] = collections.defaultdict(set)
        for stone in self._manifest["tombstones"]:
            tombstoned[stone["segment"]].add(stone["content_id"])
        for entry in self._manifest["segments"]:
            report.segments += 1
            self._verify_segment(entry, tombstoned.pop(entry["name"], set()), report)
        for segment, content_ids in tombstoned.items():
            report.problems.append(f"{MANIFEST}: tombstones name unlisted segment {segment}")
            del content_ids
        return report

    def _verify_segment(self, entry: dict, removed: set[str], report: VerifyReport) -> None:
        name = entry["name"]
        try:
            path = self._regular_segment(name)
        except StoreError as exc:
            report.problems.append(str(exc))
            return
        except _SegmentGone:
            path = self._segment_path(name)
        try:
            digest, size = file_sha256(path)
        except FileNotFoundError:
            if not self.single_file and not self._still_listed(name):
                raise _SegmentGone(name) from None
            report.problems.append(f"{name}: listed in {MANIFEST} but missing")
            return
        if not self.single_file:
            if digest != entry["sha256"] or size != entry.get("bytes", size):
                report.problems.append(
                    f"{name}: SHA-256 {digest[:16]}… ({size} bytes) differs from the manifest's "
                    f"{entry['sha256'][:16]}… ({entry.get('bytes')} bytes)"
                )
        try:
            handle = self._handle(name)
            check_segment_structure(handle, exhibits=False)
            index = self._index(name)
            features = read_segment_features(handle)
            groups = set(iter_exhibit_names(handle))
        except _SegmentGone:
            if not self._still_listed(name):
                raise
            report.problems.append(f"{name}: listed in {MANIFEST} but missing")
            return
        except (StoreError, OSError) as exc:
            report.problems.append(str(exc) if isinstance(exc, StoreError) else f"{name}: {exc}")
            return
        content_ids = list(index.exhibits["content_id"])
        if set(content_ids) != groups or len(content_ids) != len(groups):
            report.problems.append(f"{name}: index/content_id does not match the exhibit groups")
        for stone in removed - set(content_ids):
            report.problems.append(f"{MANIFEST}: tombstone for {stone[:16]}… not in {name}")
        sig_rows = collections.defaultdict(dict)
        for sig_row, (row, kind) in enumerate(
            zip(index.signatures["exhibit"], index.signatures["kind"], strict=True)
        ):
            sig_rows[int(row)][kind] = sig_row
        recheck_features = index.feature_version == prefilter.FEATURE_VERSION
        for row, content_id in enumerate(content_ids):
            where = f"{name}: exhibits/{content_id[:16]}…"
            try:
                record: ExhibitRecord = read_exhibit(handle, content_id)
            except (StoreError, OSError, KeyError, ValueError, RuntimeError) as exc:
                report.problems.append(f"{where}: unreadable ({str(exc).splitlines()[0]})")
                continue
            report.exhibits += content_id not in removed
            sig_ids, recomputed = recompute_ids(record)
            for kind, sig_id in sig_ids.items():
                report.signatures += content_id not in removed
                stored = record.stored_signature_ids.get(kind, "")
                if stored != sig_id:
                    report.problems.append(
                        f"{where}/{kind}: stored signature_id {stored[:16]}… != recomputed "
                        f"{sig_id[:16]}…"
                    )
                sig_row = sig_rows[row].get(kind)
                if sig_row is None or index.signatures["signature_id"][sig_row] != sig_id:
                    report.problems.append(f"{where}/{kind}: prefilter table disagrees")
                elif recheck_features:
                    signature = record.exhibit.signatures()[kind]
                    expected = prefilter.features(signature)
                    if not np.allclose(features[sig_row], expected, rtol=1e-3, atol=1e-4):
                        report.problems.append(f"{where}/{kind}: prefilter features differ")
            if set(sig_rows[row]) != set(sig_ids):
                report.problems.append(f"{where}: prefilter table lists other regions")
            if recomputed != content_id or record.content_id != content_id:
                report.problems.append(
                    f"{where}: content_id recomputes to {recomputed[:16]}… (stored "
                    f"{record.content_id[:16]}…)"
                )
            stored_row = {
                "exhibit_id": record.exhibit.exhibit_id,
                "source_sha256": record.exhibit.source_sha256,
                **record.metadata.as_dict(),
            }
            for key, value in stored_row.items():
                if index.exhibits[key][row] != value:
                    report.problems.append(f"{where}: index/{key} disagrees with the group")

    def _still_listed(self, name: str) -> bool:
        """Whether the manifest on disk now still lists segment ``name``."""
        self.refresh()
        return any(s["name"] == name for s in self._manifest["segments"])

    def _orphans(self) -> list[str]:
        listed = {s["name"] for s in self._manifest["segments"]}
        out = [
            f"{SEGMENTS}/{p.name}"
            for p in sorted((self.path / SEGMENTS).glob("*"))
            if p.name not in listed
        ]
        out += [p.name for p in sorted(self.path.glob(".manifest-*.tmp"))]
        return out

    # -- writing ----------------------------------------------------------------------

    def _require_writable(self) -> None:
        if self.mode == "r":
            raise StoreError(f"{self.path}: store opened read-only")
        if self._closed:
            raise StoreError(f"{self.path}: store is closed")

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold the writer lock, on the newest manifest, with orphans cleaned away."""
        self._require_writable()
        with _WriterLock(self.path / LOCK, self.lock_timeout):
            self.refresh()
            self._remove_orphans()
            yield

    def _remove_orphans(self) -> None:
        for relative in self._orphans():
            with contextlib.suppress(OSError):  # Windows: a reader may hold it open
                (self.path / relative).unlink()

    def _commit(self, manifest: dict[str, Any], live: _Live | None = None) -> None:
        """Replace the manifest atomically: the commit point of every write."""
        data = (canonical_json(manifest) + "\n").encode()
        tmp = self.path / f".manifest-{secrets.token_hex(4)}.tmp"
        try:
            with open(tmp, "xb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:  # disk full, file size limit, I/O error: nothing committed
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise StoreError(
                f"{self.path.name}/{MANIFEST}: cannot write the new manifest "
                f"({exc.strerror or exc}); the store is unchanged"
            ) from None
        _step("manifest-written")
        os.replace(tmp, self.path / MANIFEST)
        _step("manifest-replaced")
        _fsync_dir(self.path)
        self._set_manifest(manifest, live)

    def _next_manifest(self) -> dict[str, Any]:
        manifest = json.loads(json.dumps(self._manifest))
        manifest["sequence"] = int(manifest["sequence"]) + 1
        manifest["written_by"] = CREATED_BY
        manifest["committed_at"] = utc_now()
        return manifest

    def _write_segment(
        self,
        sequence: int,
        records: Iterable[SegmentRecord] | Callable[[SegmentWriter], None],
        origin: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Write, fsync and rename one segment; returns its manifest entry."""
        name = f"seg-{sequence:08d}-{secrets.token_hex(4)}.h5"
        tmp = self.path / SEGMENTS / f".tmp-{name}"
        writer = SegmentWriter(
            tmp,
            sequence=sequence,
            created_by=CREATED_BY,
            feature_version=prefilter.FEATURE_VERSION,
            feature_length=prefilter.FEATURE_LENGTH,
        )
        try:
            if callable(records):
                records(writer)
            else:
                for record in records:
                    writer.add(record)
            writer.finish()
            _step("segment-written")
            digest, size = file_sha256(tmp, fsync=True)
            os.replace(tmp, self.path / SEGMENTS / name)
            _fsync_dir(self.path / SEGMENTS)
            _step("segment-renamed")
        except BaseException as exc:
            writer.abort()
            with contextlib.suppress(OSError):
                tmp.unlink()
            if isinstance(exc, OSError):  # fsync or rename failed: one line, nothing stored
                raise StoreError(
                    f"{self.path.name}/{SEGMENTS}/{name}: cannot write the segment "
                    f"({exc.strerror or exc}); the store is unchanged"
                ) from None
            raise
        index = writer.index(name, sequence)
        self._indices[name] = index
        entry = {
            "name": name,
            "sequence": sequence,
            "sha256": digest,
            "bytes": size,
            "exhibits": index.n_exhibits,
            "signatures": index.n_signatures,
            "feature_version": prefilter.FEATURE_VERSION,
        }
        if origin:
            entry["origin"] = dict(origin)
        return entry

    def _prepare(
        self,
        exhibit: Exhibit,
        metadata: ExhibitMetadata | Mapping[str, Any],
        features: bool = True,
    ):
        if not isinstance(exhibit, Exhibit):
            raise TypeError(f"expected an Exhibit, not {type(exhibit).__name__}")
        source = exhibit.source_name or exhibit.exhibit_id
        check_exhibit_id(exhibit.exhibit_id, source)
        meta = ExhibitMetadata.from_mapping(metadata, source)
        if exhibit.source_sha256 and not is_hex64(exhibit.source_sha256):
            raise InputError(source, "source_sha256 is not 64 lower-case hexadecimal digits")
        signatures = exhibit.signatures()
        if not signatures:
            raise InputError(source, "exhibit has no signature to store")
        for kind, signature in signatures.items():
            if signature.kind != kind:
                raise InputError(source, f"{kind} slot holds a {signature.kind} signature")
            if min(signature.surface.shape) < 1:
                raise InputError(source, f"{kind} surface is empty")
            try:
                text = canonical_json(signature.params)
                if canonical_json(json.loads(text)) != text:
                    raise ValueError("changes when read back")
                loose_json(signature.quality)
            except (TypeError, ValueError) as exc:
                raise InputError(
                    source, f"{kind} params/quality cannot be stored ({exc})"
                ) from None
        try:
            loose_json(
                {k: v for k, v in exhibit.detection.items() if not isinstance(v, np.ndarray)}
            )
            loose_json(list(exhibit.warnings))
            loose_json(dict(exhibit.missing))
        except (TypeError, ValueError) as exc:
            raise InputError(source, f"detection/warnings cannot be stored ({exc})") from None
        sig_ids = {kind: s.id for kind, s in signatures.items()}
        return PreparedExhibit(
            exhibit,
            meta,
            exhibit_content_id(exhibit.exhibit_id, sig_ids),
            sig_ids,
            {kind: prefilter.features(s) for kind, s in signatures.items()} if features else {},
        )

    def _compare(self, item: PreparedExhibit, segment: str, row: int) -> str | None:
        """None when ``item`` equals the stored exhibit, else what differs."""
        stored = self._index(segment).exhibits
        differ = []
        if stored["source_sha256"][row] != item.exhibit.source_sha256:
            differ.append(
                f"source_sha256 {stored['source_sha256'][row][:12]}… vs "
                f"{item.exhibit.source_sha256[:12]}…"
            )
        for key, value in item.metadata.as_dict().items():
            if stored[key][row] != value:
                differ.append(f"{key} {stored[key][row]!r} vs {value!r}")
        return "; ".join(differ) or None

    def add(self, exhibit: Exhibit, metadata: ExhibitMetadata | Mapping[str, Any]) -> AddResult:
        """Add one exhibit (see :meth:`add_many`)."""
        return self.add_many([(exhibit, metadata)])[0]

    def add_many(
        self, items: Iterable[tuple[Exhibit, ExhibitMetadata | Mapping[str, Any]]]
    ) -> list[AddResult]:
        """Add exhibits in one write: all of them land (one new segment) or none does.

        An exhibit already stored with the same content, source and metadata is a no-op:
        its :class:`AddResult` has ``added=False`` and says so. Identity is per owning
        country: ``(country, exhibit_id)`` is unique, and a signature may be stored once
        per country.

        Raises
        ------
        InputError
            Bad metadata or an exhibit that cannot be stored (nothing is written).
        ExhibitConflictError
            Same exhibit_id with other content, same content with other source or metadata,
            or a signature already stored under another exhibit (nothing is written).
        """
        prepared = [self._prepare(exhibit, metadata) for exhibit, metadata in items]
        with self._writing():
            live = self._live_view()
            batch = _Batch()
            results = [self._check_new(item, live, batch) for item in prepared]
            if not batch.items:
                return results
            manifest = self._next_manifest()
            sequence = manifest["sequence"]
            entry = self._write_segment(sequence, self._records(batch.items.values(), utc_now()))
            manifest["segments"].append(entry)
            manifest["audit"].append(
                _audit("add", sequence, segment=entry["name"], exhibits=entry["exhibits"])
            )
            self._commit(manifest)
            self._add_to_live(live, entry["name"])
            return results

    @staticmethod
    def _records(items: Iterable[PreparedExhibit], stored_at: str) -> Iterator[SegmentRecord]:
        return (
            SegmentRecord(p.exhibit, p.metadata, p.content_id, stored_at, _features(p))
            for p in items
        )

    def _check_new(
        self,
        item: PreparedExhibit,
        live: _Live,
        batch: _Batch,
    ) -> AddResult:
        exhibit_id = item.exhibit.exhibit_id
        country = item.metadata.country
        short = item.content_id[:16]
        where = live.by_content_id.get((country, item.content_id))
        if where is not None:
            differ = self._compare(item, *where)
            if differ:
                raise ExhibitConflictError(
                    f"{self.path.name}: exhibit {exhibit_id!r} is already stored with the same "
                    f"signatures but other details ({differ}); remove it first to change them "
                    "(ribin store remove)"
                )
            return AddResult(
                exhibit_id,
                item.content_id,
                False,
                f"{exhibit_id}: already in the store (content {short}…), nothing added",
            )
        twin = batch.items.get((country, item.content_id))
        if twin is not None:
            if twin.metadata != item.metadata or (
                twin.exhibit.source_sha256 != item.exhibit.source_sha256
            ):
                raise ExhibitConflictError(
                    f"{item.exhibit.source_name or exhibit_id}: exhibit {exhibit_id!r} appears "
                    "twice in the batch with different details"
                )
            return AddResult(
                exhibit_id,
                item.content_id,
                False,
                f"{exhibit_id}: repeated in the batch, added once",
            )
        if item.content_id in batch.content_ids:
            raise ExhibitConflictError(  # one segment holds one group per content ID
                f"{item.exhibit.source_name or exhibit_id}: exhibit {exhibit_id!r} appears "
                "twice in the batch under two countries; add them in separate batches"
            )
        stored_at = live.by_key.get((country, exhibit_id))
        if stored_at is not None:
            segment, row = stored_at
            index = self._index(segment).exhibits
            raise ExhibitConflictError(
                f"{item.exhibit.source_name or exhibit_id}: exhibit_id {exhibit_id!r} is "
                f"already stored with other content (stored {index['content_id'][row][:16]}… "
                f"from source {index['source_sha256'][row][:12]}…, new {short}… from "
                f"{item.exhibit.source_sha256[:12]}…)"
            )
        if (country, exhibit_id) in batch.keys:
            raise ExhibitConflictError(
                f"{item.exhibit.source_name or exhibit_id}: exhibit_id {exhibit_id!r} appears "
                "twice in the batch with different content"
            )
        for kind, sig_id in item.signature_ids.items():
            owner = live.by_signature_id.get((country, sig_id))
            other = None
            if owner is not None:
                index = self._index(owner[0])
                other = index.exhibits["exhibit_id"][index.signatures["exhibit"][owner[1]]]
            other = other or batch.signatures.get((country, sig_id))
            if other is not None:
                raise ExhibitConflictError(
                    f"{item.exhibit.source_name or exhibit_id}: its {kind} signature "
                    f"{sig_id[:16]}… is already stored as part of exhibit {other!r}"
                )
        batch.items[(country, item.content_id)] = item
        batch.content_ids.add(item.content_id)
        batch.keys.add((country, exhibit_id))
        for sig_id in item.signature_ids.values():
            batch.signatures[(country, sig_id)] = exhibit_id
        return AddResult(exhibit_id, item.content_id, True, f"{exhibit_id}: added ({short}…)")

    def _tombstone(
        self, live: _Live, manifest: dict[str, Any], country: str, segment: str, row: int
    ) -> dict[str, Any]:
        """Add a tombstone for a live exhibit to ``manifest`` and drop it from ``live``."""
        index = self._index(segment)
        exhibit_id = index.exhibits["exhibit_id"][row]
        content_id = index.exhibits["content_id"][row]
        stone = {
            "segment": segment,
            "content_id": content_id,
            "exhibit_id": exhibit_id,
            "country": country,
            "sharing": index.exhibits["sharing"][row],
            "sequence": manifest["sequence"],
        }
        origin = self.segment_origin(segment)
        if origin:
            stone["origin"] = {"country": origin["country"], "site": origin["site"]}
        manifest["tombstones"].append(stone)
        live.drop_key((country, exhibit_id))
        del live.by_content_id[(country, content_id)]
        live.live_rows[segment][row] = False
        for sig_row in np.flatnonzero(index.signatures["exhibit"] == row):
            live.by_signature_id.pop((country, index.signatures["signature_id"][sig_row]), None)
        return stone

    def remove(
        self,
        exhibit_id: str,
        reason: str,
        country: str | None = None,
        examiner: str | None = None,
    ) -> dict[str, Any]:
        """Remove an exhibit from the live view, with an audit record.

        The segment stays as written; a tombstone in the manifest hides the exhibit, and the
        audit record (who, when, why, which content, owning country, sharing, and the sync
        origin of an imported exhibit) stays in the manifest for good, also after
        :meth:`compact` drops the bytes. ``exhibit_id`` may be ``"CC/ID"``; ``country``
        names the owner when several countries hold the same exhibit_id. ``examiner`` names
        the person who decided the removal (recorded besides the login ``user``). The same
        casing can be ingested again afterwards.

        Returns
        -------
        dict
            The audit record.
        """
        if not isinstance(reason, str) or not reason.strip():
            raise InputError(None, f"removing {exhibit_id!r} needs a reason for the audit log")
        with self._writing():
            owner, segment, row = self._locate(exhibit_id, country)
            live = self._live_view()
            manifest = self._next_manifest()
            sequence = manifest["sequence"]
            try:
                stone = self._tombstone(live, manifest, owner, segment, row)
            except BaseException:
                self._live = None
                raise
            record = _audit(
                "remove",
                sequence,
                **{k: v for k, v in stone.items() if k != "sequence"},
                reason=reason.strip(),
                **({"examiner": examiner.strip()} if examiner and examiner.strip() else {}),
            )
            manifest["audit"].append(record)
            try:
                self._commit(manifest)
            except BaseException:
                self._live = None
                raise
            self._live = live
            return dict(record)

    # -- sync support (used by ribin.sync) --------------------------------------------

    def prepare(
        self,
        exhibit: Exhibit,
        metadata: ExhibitMetadata | Mapping[str, Any],
        *,
        features: bool = True,
    ) -> PreparedExhibit:
        """Validate an exhibit and compute its signature IDs, content ID and features.

        Every ID is recomputed from the surfaces and parameters, never taken from a file.
        With ``features=False`` the prefilter features are left for :meth:`merge` to
        compute, for the exhibits it actually adds.
        """
        return self._prepare(exhibit, metadata, features)

    def segment_origin(self, segment: str) -> dict[str, Any] | None:
        """Sync origin of a segment (``country``, ``site``, ``bundle_sha256``), None if local."""
        for entry in self._manifest["segments"]:
            if entry["name"] == segment:
                origin = entry.get("origin")
                return dict(origin) if origin else None
        raise StoreError(f"{self.path.name}: no segment {segment}")

    def locate_content(self, country: str, content_id: str) -> tuple[str, int] | None:
        """(segment, row) of the live exhibit of ``country`` with this content ID, or None."""
        return self._live_view().by_content_id.get((country, content_id))

    @property
    def sequence(self) -> int:
        """Commit sequence of the state this object shows."""
        return int(self._manifest["sequence"])

    @property
    def store_id(self) -> str:
        """Random ID fixed at the store's creation (empty for a single segment file)."""
        return str(self._manifest.get("store_id", ""))

    def sync_state(self) -> dict[str, Any]:
        """The manifest's ``sync`` object: the store's own identity and per-sender cursors."""
        return json.loads(json.dumps(self._manifest.get("sync", {})))

    def copy_local(
        self, writer: SegmentWriter, country: str, since: int, sharing: Iterable[str]
    ) -> list[dict[str, str]]:
        """Copy into ``writer`` the live exhibits ingested here (not imported), of
        ``country``, with a sharing level in ``sharing``, from segments written after
        commit ``since``. Groups are copied as stored (HDF5 object copy), with their stored
        prefilter features. Returns their index rows (``content_id``, ``exhibit_id``,
        metadata). After :meth:`compact`, every local exhibit counts as written by it.
        """
        levels = list(sharing)
        live = self._live_view()
        copied: list[dict[str, str]] = []
        for entry in self._manifest["segments"]:
            if entry.get("origin") or _entry_sequence(entry) <= since:
                continue
            name = entry["name"]
            index = self._index(name)
            exh, sigs = index.exhibits, index.signatures
            rows = live.live_rows[name] & (exh["country"] == country)
            rows &= np.isin(exh["sharing"], levels)
            if not rows.any():
                continue
            handle = self._handle(name)
            groups = handle["exhibits"]
            if index.feature_version == prefilter.FEATURE_VERSION:
                stored = read_segment_features(handle)
            else:
                stored = self._recompute_features(name, index, np.arange(index.n_signatures))
            sig_rows: dict[int, list[int]] = collections.defaultdict(list)
            for sig_row, row in enumerate(sigs["exhibit"].tolist()):
                sig_rows[row].append(sig_row)
            for row in np.flatnonzero(rows).tolist():
                values = {key: exh[key][row] for key in exh}
                mine = sig_rows[row]
                writer.copy_exhibit(
                    groups[values["content_id"]],
                    values,
                    [tuple(sigs[key][r] for key in _SIGNATURE_ROW) for r in mine],
                    [stored[r] for r in mine],
                )
                copied.append(values)
        return copied

    def commit_note(
        self,
        action: str,
        details: Mapping[str, Any],
        update: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Commit an audit record (and ``update`` applied to the new manifest), no data."""
        with self._writing():
            manifest = self._next_manifest()
            if update is not None:
                update(manifest)
            record = _audit(action, manifest["sequence"], **details)
            manifest["audit"].append(record)
            self._commit(manifest)
            return dict(record)

    def merge(
        self,
        items: Iterable[PreparedExhibit],
        removals: Iterable[tuple[str, str]],
        *,
        origin: Mapping[str, Any],
        audit: Mapping[str, Any],
        check: Callable[[SignatureStore], None] | None = None,
        update: Callable[[dict[str, Any]], None] | None = None,
        copy_from: h5py.File | None = None,
    ) -> MergeResult:
        """Apply removals and add exhibits from another site in one crash-safe write.

        Under the writer lock, on the newest manifest: ``check(self)`` may raise to refuse
        (nothing is written); each ``(country, content_id)`` in ``removals`` that is live
        gets a tombstone; exhibits not yet stored go into one new segment whose manifest
        entry records ``origin``; exhibits already stored identically are skipped; then
        ``update(manifest)`` (e.g. a sync cursor) and an ``import`` audit record go into the
        same manifest commit. A crash leaves either all of it or none of it.

        With ``copy_from`` (an open segment holding the items' groups under their content
        IDs, already checked by the caller), exhibit groups are copied as they are (HDF5
        object copy) instead of re-encoded; the index and prefilter rows still come from
        the prepared items (IDs and features computed here).

        Raises
        ------
        ExhibitConflictError
            An exhibit clashes with a stored one (nothing is written).
        """
        items = list(items)
        removals = list(removals)
        with self._writing():
            if check is not None:
                check(self)
            live = self._live_view()
            manifest = self._next_manifest()
            sequence = manifest["sequence"]
            try:
                removed = 0
                for country, content_id in removals:
                    where = live.by_content_id.get((country, content_id))
                    if where is not None:
                        self._tombstone(live, manifest, country, *where)
                        removed += 1
                batch = _Batch()
                results = [self._check_new(item, live, batch) for item in items]
                new = batch.items
                entry = None
                if new:
                    records = (
                        self._records(new.values(), utc_now())
                        if copy_from is None
                        else _copier(copy_from, list(new.values()))
                    )
                    entry = self._write_segment(sequence, records, origin)
                    manifest["segments"].append(entry)
                if update is not None:
                    update(manifest)
                record = _audit(
                    "import",
                    sequence,
                    **audit,
                    segment=entry["name"] if entry else None,
                    added=len(new),
                    unchanged=len(results) - len(new),
                    removed=removed,
                )
                manifest["audit"].append(record)
                self._commit(manifest)
            except BaseException:
                self._live = None  # the in-memory view was changed: rebuild it from disk
                raise
            if entry is not None:
                self._add_to_live(live, entry["name"])
            else:
                self._live = live
            return MergeResult(len(new), len(results) - len(new), removed, sequence, record)

    def compact(self) -> int:
        """Rewrite all live exhibits into as few segments as possible; drop tombstoned bytes.

        Exhibits ingested here go into one segment, those imported from each sending site
        into one segment per site (the sync origin stays on the segment; bundle hashes
        stay in the audit log). Returns the number of segments replaced. Readers holding the
        old manifest re-read it when they next touch a removed segment.
        """
        with self._writing():
            old = [s["name"] for s in self._manifest["segments"]]
            if len(old) <= 1 and not self._manifest["tombstones"]:
                return 0
            live = self._live_view()
            manifest = self._next_manifest()
            sequence = manifest["sequence"]
            manifest["segments"] = []
            try:
                for origin, records in self._records_for_compaction(live):
                    entry = self._write_segment(sequence, records, origin)
                    manifest["segments"].append(entry)
            except BaseException:
                for entry in manifest["segments"]:
                    with contextlib.suppress(OSError):
                        (self.path / SEGMENTS / entry["name"]).unlink()
                raise
            manifest["audit"].append(
                _audit(
                    "compact",
                    sequence,
                    replaced=old,
                    dropped=[t["content_id"] for t in manifest["tombstones"]],
                    exhibits=len(live.by_content_id),
                )
            )
            manifest["tombstones"] = []
            self._commit(manifest)
            self._remove_orphans()
            return len(old)

    def _records_for_compaction(
        self, live: _Live
    ) -> Iterator[tuple[dict[str, Any] | None, list[SegmentRecord]]]:
        """Live records grouped by origin; a group splits where a content ID repeats
        (two countries holding identical content cannot share one segment's group names)."""
        groups: dict[str, list[list[SegmentRecord]]] = {}
        origins: dict[str, dict[str, Any] | None] = {}
        seen: dict[str, list[set[str]]] = {}
        for ref in self.segments():
            origin = self.segment_origin(ref.name)
            if origin:
                origin = {"country": origin["country"], "site": origin["site"]}
            key = canonical_json(origin)
            origins[key] = origin
            bins = groups.setdefault(key, [])
            names = seen.setdefault(key, [])
            index = self._index(ref.name)
            handle = self._handle(ref.name)
            stored = read_segment_features(handle)
            rows_of: dict[int, dict[str, int]] = collections.defaultdict(dict)
            for sig_row, (row, kind) in enumerate(
                zip(index.signatures["exhibit"], index.signatures["kind"], strict=True)
            ):
                rows_of[int(row)][kind] = sig_row
            for row in np.flatnonzero(live.live_rows[ref.name]):
                record = read_exhibit(handle, index.exhibits["content_id"][row])
                signatures = record.exhibit.signatures()
                if index.feature_version == prefilter.FEATURE_VERSION:
                    vectors = {k: stored[rows_of[int(row)][k]] for k in signatures}
                else:
                    vectors = {k: prefilter.features(s) for k, s in signatures.items()}
                out = SegmentRecord(
                    record.exhibit, record.metadata, record.content_id, record.stored_at, vectors
                )
                free = [i for i, used in enumerate(names) if out.content_id not in used]
                if free:
                    i = free[0]
                else:
                    i = len(names)
                    names.append(set())
                    bins.append([])
                names[i].add(out.content_id)
                bins[i].append(out)
        for key, bins in groups.items():
            for records in bins:
                yield origins[key], records


def _features(item: PreparedExhibit) -> Mapping[str, np.ndarray]:
    """Prefilter features of a prepared exhibit (computed now if it was prepared without)."""
    if item.features:
        return item.features
    return {kind: prefilter.features(s) for kind, s in item.exhibit.signatures().items()}


def _copier(source: h5py.File, items: list[PreparedExhibit]) -> Callable[[SegmentWriter], None]:
    def fill(writer: SegmentWriter) -> None:
        groups = source["exhibits"]
        for item in items:
            row = {
                "content_id": item.content_id,
                "exhibit_id": item.exhibit.exhibit_id,
                "source_sha256": item.exhibit.source_sha256,
                **item.metadata.as_dict(),
            }
            signatures = item.exhibit.signatures()
            writer.copy_exhibit(
                groups[item.content_id],
                row,
                [
                    (item.signature_ids[k], k, s.modality, s.pixel_size_um)
                    for k, s in signatures.items()
                ],
                [_features(item)[k] for k in signatures],
            )

    return fill


_SIGNATURE_ROW = ("signature_id", "kind", "modality", "pixel_size_um")


def _entry_sequence(entry: Mapping[str, Any]) -> int:
    if isinstance(entry.get("sequence"), int):
        return int(entry["sequence"])
    return int(str(entry["name"])[4:12])  # seg-<sequence>-<random>.h5


@dataclass(frozen=True)
class MergeResult:
    """Outcome of :meth:`SignatureStore.merge`."""

    added: int
    unchanged: int
    removed: int
    sequence: int
    audit: dict[str, Any]


__all__ = [
    "AddResult",
    "AmbiguousExhibitError",
    "ExhibitConflictError",
    "ExhibitMetadata",
    "ExhibitNotFoundError",
    "FeatureTable",
    "MergeResult",
    "PreparedExhibit",
    "Scope",
    "SegmentRef",
    "SignatureStore",
    "StoreInfo",
    "StoreLockedError",
    "StoredExhibit",
    "VerifyReport",
]
