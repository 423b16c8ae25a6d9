"""The :class:`SignatureStore` class: opening and closing; its methods by concern live in
the mixins of :mod:`ribin.store` (segments, queries, checks, writing, sync support)."""

from __future__ import annotations

import collections
import json
import os
import secrets
from pathlib import Path
from typing import Any

import h5py

from ribin.errors import StoreError
from ribin.store.checks import _ChecksMixin
from ribin.store.common import CREATED_BY, LOCK, MANIFEST, SEGMENTS, Mode
from ribin.store.lock import _fsync_dir, _WriterLock
from ribin.store.manifest import _audit, _check_manifest, _read_manifest_bytes
from ribin.store.queries import _QueriesMixin
from ribin.store.segments import _Live, _SegmentsMixin
from ribin.store.sync_support import _SyncMixin
from ribin.store.writing import _WritingMixin
from ribin.store_format import (
    FORMAT,
    FORMAT_VERSION,
    SegmentIndex,
    open_segment,
    read_segment_index,
    utc_now,
)


class SignatureStore(_SegmentsMixin, _QueriesMixin, _ChecksMixin, _WritingMixin, _SyncMixin):
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
