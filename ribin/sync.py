"""Signed, incremental sync bundles: export a site's shareable exhibits, import another's.

A bundle is one zip file (layout in ``docs/formats.md``, "Sync bundles")::

    manifest.json          canonical JSON: format, sender, scope, cursor range, exhibits,
                           removals, SHA-256 and size of every payload file
    manifest.sig           Ed25519 signature of the exact bytes of manifest.json (64 bytes)
    payload/exhibits.h5    one store segment with the exhibits (absent when none is added)

Export (:func:`export_bundle`) takes the exhibits ingested at this site (never ones imported
from elsewhere), of its own country, whose ``sharing`` lets them leave the country, written
after the cursor ``since``, and the removals of such exhibits since then. Import
(:func:`import_bundle`) checks, in this order, and refuses the whole bundle at the first
failure with a :class:`BundleError` naming the check:

1. the zip: only the three expected member names, sizes under the limits, no member read
   past its declared size (nothing is ever extracted to a path taken from the zip);
2. the signature, over the exact manifest bytes, against the keys pinned in the network
   file, before anything in the manifest is believed; the signing key must be the pinned
   key of the site the manifest names as sender;
3. every manifest field's type and range (cursors: integers, 0 <= from <= to <=
   :data:`MAX_CURSOR`), the bundle format version, the scope, and that the sender is
   another country;
4. the SHA-256 and size of every payload file, before any shortcut: a tampered copy of an
   imported bundle is refused, never taken for a repeat;
5. the cursor: a bundle whose signed manifest was already imported is a no-op (nothing more
   is read); one whose range ends at or before the sender's last imported cursor (a replay)
   or starts after it (a gap) is refused;
6. the payload's structure: only the plain HDF5 groups, datasets and attributes the store
   format defines (no links, external or virtual storage), shapes and types within limits,
   written at the manifest's cursor;
7. the content: every exhibit belongs to the sender's country and is shared ``network``,
   or ``cluster`` when this country shares a cluster with the sender; every signature ID
   and content ID recomputes from the surfaces; the manifest lists exactly the payload;
   every removal names an exhibit of the sender's country that, if stored here, was
   imported from the sender's site.

Then it merges by content ID in one crash-safe store write (new segment, tombstones, the
sender's cursor and the audit record in one manifest commit).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import h5py
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ribin import __version__, prefilter
from ribin.errors import InputError, StoreError
from ribin.exhibit import canonical_json
from ribin.network import Network
from ribin.store import ExhibitConflictError, SignatureStore
from ribin.store_format import (
    SegmentWriter,
    check_exhibit_id,
    check_segment_structure,
    is_hex64,
    iter_exhibit_names,
    open_segment,
    read_exhibit,
    read_segment_index,
    utc_now,
)

BUNDLE_FORMAT = "ribin-sync-bundle"
BUNDLE_FORMAT_VERSION = 1
"""Integer version of the bundle format; an importer refuses anything newer."""

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
PAYLOAD = "payload/exhibits.h5"
NOTICES = "payload/notices.json"  # hit notices (:mod:`ribin.workflow.notices`), when any
PAYLOAD_FILES = (PAYLOAD, NOTICES)
"""Members the signed manifest lists under ``files`` with their SHA-256 and size."""
SCOPES = ("network", "cluster")
MAX_CURSOR = 10**8
"""Largest cursor accepted. A cursor is the sender's store sequence, one per commit, and
every commit rewrites a manifest holding one audit record per commit so far: 10^8 commits
would mean rewriting a manifest of more than 10 GB each time."""
MAX_LISTED = 10_000_000
"""Most exhibits or removals one manifest may list (the manifest cap bounds it too)."""


def _member_caps(limits: BundleLimits) -> dict[str, int]:
    """Every member a bundle may hold, with its size cap: the one place to add a new file.

    A new payload file also goes in :data:`PAYLOAD_FILES` (so the signed manifest carries
    its hash) and gets its own check after :func:`_extract_payload`.
    """
    return {
        MANIFEST: limits.manifest_bytes,
        SIGNATURE: 1024,
        PAYLOAD: limits.payload_bytes,
        NOTICES: limits.manifest_bytes,
    }


_SITE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}")
_COUNTRY = re.compile(r"[A-Z]{2}")


@dataclass(frozen=True)
class BundleLimits:
    """Caps applied to a bundle before anything is read from it.

    Attributes
    ----------
    manifest_bytes : int
        Largest manifest.json accepted (it lists every exhibit: ~300 bytes each).
    payload_bytes : int
        Largest payload file (uncompressed) accepted.
    total_bytes : int
        Largest sum of declared uncompressed member sizes.
    ratio : float
        Largest uncompressed/compressed size ratio of a member (a zip bomb's is ~1000).
    """

    manifest_bytes: int = 256 << 20
    payload_bytes: int = 64 << 30
    total_bytes: int = 64 << 30
    ratio: float = 100.0


DEFAULT_LIMITS = BundleLimits()
MEMBERS = tuple(_member_caps(DEFAULT_LIMITS))


class BundleError(InputError):
    """A bundle failed a check; the message names the bundle and the check. Nothing changed."""


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_bundle` wrote; ``cursor`` is the ``--since`` of the next export."""

    bundle: str
    country: str
    site: str
    scope: str
    since: int
    cursor: int
    exhibits: int
    removals: int
    bytes: int
    bundle_sha256: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ImportResult:
    """What :func:`import_bundle` did; ``already_imported`` when it was a no-op repeat."""

    bundle: str
    country: str
    site: str
    since: int
    cursor: int
    added: int
    unchanged: int
    removed: int
    already_imported: bool
    bundle_sha256: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------- keys


def generate_key(path: str | os.PathLike) -> str:
    """Write a new Ed25519 private key (PEM, PKCS#8, unencrypted, mode 0600) to ``path``.

    Refuses to overwrite an existing file. Returns the public key as base64 of its raw
    32 bytes, the form the network file pins.
    """
    path = Path(path)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InputError(path, "already exists; refusing to overwrite a key file") from None
    except OSError as exc:
        raise InputError(path, f"cannot create key file ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    return public_key_b64(key.public_key())


def public_key_b64(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """Base64 of the raw 32-byte public key."""
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def load_private_key(path: str | os.PathLike) -> Ed25519PrivateKey:
    """Read an Ed25519 private key written by :func:`generate_key`.

    On POSIX a key file that group or others may read is refused (``chmod 600`` it): a
    site key that leaked lets anyone sign bundles in the site's name.
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(path, f"cannot read key file ({exc.strerror})") from None
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InputError(
            path,
            f"key file is accessible to other users (mode {stat.S_IMODE(mode):04o}); "
            "run chmod 600 on it",
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise InputError(path, f"not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError(path, f"not an Ed25519 key ({type(key).__name__})")
    return key


def _pinned_keys(network: Network) -> list[tuple[str, str, Ed25519PublicKey]]:
    """(country, site, key) of every site key pinned in the network file."""
    out = []
    for code in network.countries:
        for site, text in network.public_keys(code).items():
            try:
                raw = base64.b64decode(text, validate=True)
                if len(raw) != 32:
                    raise ValueError(f"{len(raw)} bytes, not 32")
                out.append((code, site, Ed25519PublicKey.from_public_bytes(raw)))
            except (ValueError, binascii.Error) as exc:
                raise InputError(
                    network.source, f"public key of {code}/{site} is not base64 of 32 bytes ({exc})"
                ) from None
    return out


# ----------------------------------------------------------------------------- identity


def _identity(
    store: SignatureStore, country: str | None, site: str | None
) -> tuple[str, str, bool]:
    """(country, site, newly_set) of the store's own site.

    A store learns its identity from the first sync command given ``--country`` (and
    optionally ``--site``, default: the country code); later commands may repeat it but
    not change it.
    """
    known = store.sync_state().get("identity")
    if country is not None and not _COUNTRY.fullmatch(country):
        raise InputError(None, f"country {country!r} is not an ISO 3166 alpha-2 code")
    if site is not None and not _SITE.fullmatch(site):
        raise InputError(None, f"site name {site!r} is not 1-64 letters, digits, ' ._-'")
    if known:
        if (country and country != known["country"]) or (site and site != known["site"]):
            raise StoreError(
                f"{store.path.name}: this store belongs to {known['country']}/{known['site']}, "
                f"not {country}/{site or country}"
            )
        return known["country"], known["site"], False
    if country is None:
        raise StoreError(
            f"{store.path.name}: the store does not know its own country yet; "
            "give --country CC (and --site NAME) once"
        )
    return country, site or country, True


def _set_identity(country: str, site: str):
    def update(manifest: dict[str, Any]) -> None:
        sync = manifest.setdefault("sync", {})
        sync.setdefault("identity", {"country": country, "site": site})
        sync.setdefault("received", {})

    return update


# ----------------------------------------------------------------------------- export


def _scope_levels(scope: str, network: Network | None, country: str) -> tuple[str, tuple]:
    """Normalised scope name and the sharing levels it sends."""
    if scope == "network":
        return "network", ("network",)
    if scope == "cluster" or scope.startswith("cluster:"):
        name = scope.partition(":")[2]
        if name and network is not None:
            if name not in network.clusters:
                raise InputError(network.source, f"unknown cluster {name!r}")
            if country not in network.clusters[name]:
                raise InputError(network.source, f"{country} is not a member of cluster {name!r}")
        return ("cluster:" + name if name else "cluster"), ("network", "cluster")
    raise InputError(None, f"sync scope {scope!r} is not network, cluster or cluster:NAME")


def export_bundle(
    store: SignatureStore,
    bundle_path: str | os.PathLike,
    key: Ed25519PrivateKey | str | os.PathLike,
    *,
    since: int | None = None,
    scope: str = "network",
    country: str | None = None,
    site: str | None = None,
    network: Network | None = None,
    attachments: Mapping[str, Path] | None = None,
) -> ExportResult:
    """Write this site's exhibits and removals since ``since`` as a signed bundle.

    Parameters
    ----------
    store : SignatureStore
        Opened for writing (the export adds an audit record).
    bundle_path : path-like
        Zip file to create; an existing file is not overwritten.
    key : Ed25519PrivateKey or path-like
        The site's private key (or its PEM file).
    since : int, optional
        Cursor printed by the previous export; None (or 0) exports everything.
    scope : {"network", "cluster", "cluster:NAME"}
        ``network`` sends exhibits shared ``network``; a cluster scope also sends those
        shared ``cluster`` (for the members of the sender's clusters only). ``local``
        exhibits never leave.
    country, site : str, optional
        The store's own country and site, needed the first time only.
    network : Network, optional
        When given, the key must be the one it pins for this site, and a ``cluster:NAME``
        scope must name a cluster of this country.
    attachments : mapping, optional
        Further payload files to sign and carry, member name -> file: the hit notices
        (``{NOTICES: path}``, written by :func:`ribin.workflow.notices.write_notices`).

    Returns
    -------
    ExportResult
        ``cursor`` is the store's commit sequence the bundle reaches; pass it as ``since``
        next time.
    """
    bundle_path = Path(bundle_path)
    if not isinstance(key, Ed25519PrivateKey):
        key = load_private_key(key)
    store.refresh()
    own_country, own_site, new_identity = _identity(store, country, site)
    scope, levels = _scope_levels(scope, network, own_country)
    if network is not None:
        pinned = network.public_keys(own_country).get(own_site)
        if pinned is not None and pinned != public_key_b64(key):
            raise InputError(
                network.source, f"the key given is not the one pinned for {own_country}/{own_site}"
            )
    cursor = store.sequence
    since = int(since or 0)
    if since < 0 or since > cursor:
        raise InputError(
            None, f"cursor {since} is not between 0 and this store's sequence {cursor}"
        )
    if bundle_path.exists():
        raise InputError(bundle_path, "already exists; give a new bundle name")

    removals = _removals(store.audit_log(), own_country, since, cursor, levels)
    work = Path(tempfile.mkdtemp(prefix="ribin-export-"))
    try:
        payload = work / "exhibits.h5"
        writer = SegmentWriter(
            payload,
            sequence=cursor,
            created_by=f"ribin {__version__}",
            feature_version=prefilter.FEATURE_VERSION,
            feature_length=prefilter.FEATURE_LENGTH,
        )
        try:
            rows = store.copy_local(writer, own_country, since, levels)
            writer.finish()
        except BaseException:
            writer.abort()
            raise
        exhibits = [
            {key: row[key] for key in ("content_id", "exhibit_id", "country", "sharing")}
            for row in rows
        ]
        manifest = {
            "format": BUNDLE_FORMAT,
            "format_version": BUNDLE_FORMAT_VERSION,
            "created_by": f"ribin {__version__}",
            "created_at": utc_now(),
            "sender": {
                "country": own_country,
                "site": own_site,
                "store_id": store.store_id,
                "public_key": public_key_b64(key),
            },
            "scope": scope,
            "cursor": {"from": since, "to": cursor},
            "exhibits": exhibits,
            "removals": removals,
        }
        files = {PAYLOAD: payload} if exhibits else {}
        files.update({k: Path(v) for k, v in (attachments or {}).items() if k == NOTICES})
        digest, size = write_bundle(bundle_path, manifest, key, files)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    details = {
        "bundle": bundle_path.name,
        "bundle_sha256": digest,
        "country": own_country,
        "site": own_site,
        "scope": scope,
        "cursor": {"from": since, "to": cursor},
        "exhibits": len(exhibits),
        "removals": len(removals),
    }
    update = _set_identity(own_country, own_site) if new_identity else None
    store.commit_note("export", details, update)
    return ExportResult(
        str(bundle_path),
        own_country,
        own_site,
        scope,
        since,
        cursor,
        len(exhibits),
        len(removals),
        size,
        digest,
    )


def _removals(
    audit: list[dict[str, Any]], country: str, since: int, to: int, levels: Iterable[str]
) -> list[dict[str, Any]]:
    """Removals of this site's own shareable exhibits committed in (since, to]."""
    out = []
    for entry in audit:
        if entry.get("action") != "remove" or not since < int(entry.get("sequence", 0)) <= to:
            continue
        if entry.get("origin") or entry.get("country") != country:
            continue  # an imported exhibit's removal is the owner's business, not ours
        if entry.get("sharing") not in levels:
            continue  # never sent, so nothing to take back (and its name stays home)
        out.append(
            {
                "content_id": entry["content_id"],
                "exhibit_id": entry["exhibit_id"],
                "country": country,
                "sequence": int(entry["sequence"]),
            }
        )
    return out


def write_bundle(
    path: Path,
    manifest: Mapping[str, Any],
    key: Ed25519PrivateKey,
    payload: Mapping[str, Path],
) -> tuple[str, int]:
    """Sign ``manifest`` (plus a ``files`` entry per payload file) and write the zip.

    Written to a temporary name and renamed, so a half-written bundle never carries the
    final name. Returns (SHA-256 of the manifest bytes, bundle size). Tests use it to build
    hostile bundles signed by a real key.
    """
    manifest = dict(manifest)
    manifest["files"] = {}
    for member, source in payload.items():
        digest = hashlib.sha256()
        with open(source, "rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
        manifest["files"][member] = {"sha256": digest.hexdigest(), "bytes": source.stat().st_size}
    body = (canonical_json(manifest) + "\n").encode()
    signature = key.sign(body)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with zipfile.ZipFile(tmp, "x", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(MANIFEST, body)
            zf.writestr(SIGNATURE, signature, compress_type=zipfile.ZIP_STORED)
            for member, source in payload.items():
                # HDF5 chunks are gzipped already; small contiguous surfaces deflate well
                zf.write(source, member, compress_type=zipfile.ZIP_DEFLATED, compresslevel=1)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return hashlib.sha256(body).hexdigest(), path.stat().st_size


# ----------------------------------------------------------------------------- import


class _Bundle:
    """A bundle opened defensively: member names and sizes checked, nothing extracted."""

    def __init__(self, path: Path, limits: BundleLimits):
        self.path = path
        self.limits = limits
        try:
            self.zip = zipfile.ZipFile(path, "r")
        except FileNotFoundError:
            raise BundleError(path, "no such bundle") from None
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise BundleError(path, f"not a zip file or truncated ({exc})") from None
        try:
            self._check_members()
        except BaseException:
            self.zip.close()
            raise

    def fail(self, problem: str) -> BundleError:
        return BundleError(self.path, problem)

    def _check_members(self) -> None:
        infos = self.zip.infolist()
        names = [info.filename for info in infos]
        caps = _member_caps(self.limits)
        for name in names:
            if name not in caps:
                raise self.fail(f"unexpected member {name[:80]!r} (allowed: {', '.join(MEMBERS)})")
        if len(set(names)) != len(names):
            raise self.fail("a member name appears twice")
        for needed in (MANIFEST, SIGNATURE):
            if needed not in names:
                raise self.fail(f"no {needed}")
        total = 0
        for info in infos:
            cap = caps[info.filename]
            if info.file_size > cap:
                raise self.fail(
                    f"{info.filename} declares {info.file_size} bytes, over the limit of {cap}"
                )
            if info.file_size > 4096 and info.file_size > self.limits.ratio * max(
                info.compress_size, 1
            ):
                raise self.fail(
                    f"{info.filename} expands {info.file_size / max(info.compress_size, 1):.0f}"
                    f"-fold (limit {self.limits.ratio:g}): refused as a zip bomb"
                )
            if info.flag_bits & 0x1:
                raise self.fail(f"{info.filename} is encrypted")
            total += info.file_size
        if total > self.limits.total_bytes:
            raise self.fail(f"members total {total} bytes, over the limit")
        self.members = {info.filename: info for info in infos}

    def _stream(self, name: str, sink) -> tuple[str, int]:
        """Copy member ``name`` to ``sink`` (a callable), never past its declared size."""
        info = self.members[name]
        digest = hashlib.sha256()
        size = 0
        try:
            with self.zip.open(info) as fh:
                while block := fh.read(1 << 20):
                    size += len(block)
                    if size > info.file_size:
                        raise self.fail(f"{name} is longer than its declared size")
                    digest.update(block)
                    try:
                        sink(block)
                    except OSError as exc:  # disk full, file size limit: not the bundle's fault
                        raise self.fail(f"cannot unpack {name} ({exc.strerror or exc})") from None
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise self.fail(f"{name} cannot be read: damaged or truncated ({exc})") from None
        if size != info.file_size:
            raise self.fail(f"{name} is shorter than its declared size")
        return digest.hexdigest(), size

    def read(self, name: str) -> bytes:
        parts: list[bytes] = []
        self._stream(name, parts.append)
        return b"".join(parts)

    def extract(self, name: str, target: Path) -> tuple[str, int]:
        try:
            with open(target, "xb") as fh:
                return self._stream(name, fh.write)
        except OSError as exc:  # disk full, file size limit: one line, nothing imported
            raise self.fail(f"cannot unpack {name} ({exc.strerror or exc})") from None

    def close(self) -> None:
        self.zip.close()


def _verify_signature(
    bundle: _Bundle, body: bytes, signature: bytes, network: Network
) -> tuple[str, str]:
    """(country, site) of the pinned key that signed ``body``; BundleError when none did."""
    if len(signature) != 64:
        raise bundle.fail(f"{SIGNATURE} is {len(signature)} bytes, not a 64-byte Ed25519 signature")
    for country, site, key in _pinned_keys(network):
        try:
            key.verify(signature, body)
        except InvalidSignature:
            continue
        return country, site
    claimed = "an unknown site"
    with contextlib.suppress(Exception):  # only to word the message; nothing is trusted
        sender = json.loads(body)["sender"]
        claimed = f"{sender['country']}/{sender['site']}"
    pinned = network.public_keys(claimed[:2]) if claimed[:2] in network.countries else {}
    where = (
        f"{claimed}'s pinned key" if pinned else f"any key pinned in {Path(network.source).name}"
    )
    raise bundle.fail(f"signature does not verify against {where} (bundle claims {claimed})")


def _parse_manifest(bundle: _Bundle, body: bytes, signer: tuple[str, str]) -> dict[str, Any]:
    """The signed manifest, its every field checked for type and range before use."""
    try:
        manifest = json.loads(body)
    except (ValueError, RecursionError):
        raise bundle.fail(f"{MANIFEST} is not valid JSON (or nested too deeply)") from None
    if not isinstance(manifest, dict):
        raise bundle.fail(f"{MANIFEST} is not a JSON object")
    if manifest.get("format") != BUNDLE_FORMAT:
        raise bundle.fail(f"format is {str(manifest.get('format'))[:40]!r}, not {BUNDLE_FORMAT!r}")
    version = manifest.get("format_version")
    if type(version) is not int or version < 1:
        raise bundle.fail(f"format_version {str(version)[:20]!r} is not valid")
    if version > BUNDLE_FORMAT_VERSION:
        raise bundle.fail(
            f"written by bundle format {version}, this RIBIN reads format "
            f"{BUNDLE_FORMAT_VERSION} (upgrade RIBIN)"
        )
    missing = [
        key
        for key, kind in (
            ("sender", dict),
            ("cursor", dict),
            ("exhibits", list),
            ("removals", list),
            ("files", dict),
            ("scope", str),
        )
        if not isinstance(manifest.get(key), kind)
    ]
    if missing:
        raise bundle.fail(
            f"{MANIFEST}: {', '.join(missing)} missing or of the wrong type (sender, cursor "
            "and files are objects, exhibits and removals lists, scope text)"
        )
    sender = manifest["sender"]
    country, site = sender.get("country"), sender.get("site")
    if not (isinstance(country, str) and isinstance(site, str)) or not isinstance(
        sender.get("store_id", ""), str
    ):
        raise bundle.fail(f"{MANIFEST}: sender country, site and store_id must be text")
    if (country, site) != signer:
        raise bundle.fail(
            f"manifest says it comes from {country[:8]}/{site[:64]} but is signed by the key "
            f"of {signer[0]}/{signer[1]}"
        )
    _check_cursor_range(bundle, manifest["cursor"])
    if max(len(manifest["exhibits"]), len(manifest["removals"])) > MAX_LISTED:
        raise bundle.fail(f"lists more than {MAX_LISTED} exhibits or removals")
    files = manifest["files"]
    if set(files) - set(PAYLOAD_FILES):
        raise bundle.fail(f"files must list only {', '.join(PAYLOAD_FILES)}")
    for name, entry in files.items():
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("sha256"), str)
            and is_hex64(entry["sha256"])
            and type(entry.get("bytes")) is int
            and entry["bytes"] >= 0
        ):
            raise bundle.fail(f"files entry of {name} needs a sha256 (64 hex digits) and bytes")
    return manifest


def _check_cursor_range(bundle: _Bundle, cursor: Mapping[str, Any]) -> None:
    """``from`` and ``to``: integers (not booleans), 0 <= from <= to <= MAX_CURSOR."""
    since, to = cursor.get("from"), cursor.get("to")
    if not (type(since) is int and type(to) is int and 0 <= since <= to <= MAX_CURSOR):
        raise bundle.fail(
            f"cursor range {str(since)[:24]}..{str(to)[:24]} is not valid (integers "
            f"0 <= from <= to <= {MAX_CURSOR})"
        )


def _extract_payload(bundle: _Bundle, manifest: Mapping[str, Any], work: Path) -> Path | None:
    """Unpack every file the manifest lists, checking its SHA-256 and size against it.

    Runs before anything else is decided from the bundle (also before "already imported"),
    so a tampered bundle is always refused, never taken for a repeat.
    """
    listed = manifest["files"]
    if set(bundle.members) - {MANIFEST, SIGNATURE} != set(listed):
        raise bundle.fail("the zip's payload members differ from the manifest's files")
    if NOTICES in listed:  # read by ribin.workflow.notices; checked here with the rest
        digest, size = bundle.extract(NOTICES, work / "notices.json")
        if digest != listed[NOTICES]["sha256"] or size != listed[NOTICES]["bytes"]:
            raise bundle.fail(f"{NOTICES}: SHA-256 or size does not match the manifest")
    if PAYLOAD not in listed:
        return None
    expected = listed[PAYLOAD]
    payload = work / "payload.h5"
    digest, size = bundle.extract(PAYLOAD, payload)
    if digest != expected["sha256"] or size != expected["bytes"]:
        raise bundle.fail(f"{PAYLOAD}: SHA-256 or size does not match the manifest")
    return payload


def import_bundle(
    store: SignatureStore,
    bundle_path: str | os.PathLike,
    network: Network,
    *,
    country: str | None = None,
    site: str | None = None,
    limits: BundleLimits = DEFAULT_LIMITS,
) -> ImportResult:
    """Verify a bundle from another site and merge it into ``store`` in one write.

    Parameters
    ----------
    store : SignatureStore
        Opened for writing.
    bundle_path : path-like
        A zip written by :func:`export_bundle`.
    network : Network
        The network file whose pinned keys and clusters decide what is accepted.
    country, site : str, optional
        This store's own country and site, needed the first time only.
    limits : BundleLimits
        Size caps checked before anything is read.

    Returns
    -------
    ImportResult

    Raises
    ------
    BundleError
        A check failed (the message names it); the store is unchanged.
    """
    bundle_path = Path(bundle_path)
    store.refresh()
    own_country, own_site, new_identity = _identity(store, country, site)
    network.require_country(own_country)
    bundle = _Bundle(bundle_path, limits)
    work = Path(tempfile.mkdtemp(prefix="ribin-import-"))
    opened: list[h5py.File] = []
    try:
        body = bundle.read(MANIFEST)
        signature = bundle.read(SIGNATURE)
        signer = _verify_signature(bundle, body, signature, network)
        manifest = _parse_manifest(bundle, body, signer)
        bundle_sha256 = hashlib.sha256(body).hexdigest()
        sender_country, sender_site = signer
        since, to = manifest["cursor"]["from"], manifest["cursor"]["to"]
        if sender_country == own_country:
            raise bundle.fail(
                f"comes from {sender_country}, this store's own country: sync only brings in "
                "other countries' exhibits"
            )
        _check_scope(bundle, manifest["scope"], sender_country, own_country, network)

        payload = _extract_payload(bundle, manifest, work)
        result = ImportResult(
            str(bundle_path),
            sender_country,
            sender_site,
            since,
            to,
            0,
            0,
            0,
            True,
            bundle_sha256,
        )
        if _already_imported(store, bundle_sha256):
            return result  # the signed manifest was imported: nothing to read or change
        _check_cursor(bundle, store, sender_country, sender_site, since, to)

        handle = _open_payload(bundle, payload)
        if handle is not None:
            opened.append(handle)
        items = _read_payload(bundle, store, handle, manifest, sender_country, own_country, network)
        removals = _check_removals(bundle, manifest["removals"], sender_country, since, to)
        sender_key = f"{sender_country}/{sender_site}"

        def check(locked: SignatureStore) -> None:
            # again under the writer lock: another import may have committed meanwhile
            if _already_imported(locked, bundle_sha256):
                raise _AlreadyImported
            _check_cursor(bundle, locked, sender_country, sender_site, since, to)
            for removal_country, content_id in removals:
                where = locked.locate_content(removal_country, content_id)
                if where is None:
                    continue
                origin = locked.segment_origin(where[0]) or {}
                if (origin.get("country"), origin.get("site")) != signer:
                    raise bundle.fail(
                        f"removal of {content_id[:16]}…: that exhibit here did not come from "
                        f"{sender_key}, which may only remove its own"
                    )

        def update(manifest_out: dict[str, Any]) -> None:
            if new_identity:
                _set_identity(own_country, own_site)(manifest_out)
            sync = manifest_out.setdefault("sync", {})
            sync.setdefault("received", {})[sender_key] = {
                "from": since,
                "to": to,
                "bundle_sha256": bundle_sha256,
                "store_id": str(manifest["sender"].get("store_id", "")),
                "imported_at": utc_now(),
            }

        try:
            merged = store.merge(
                items,
                removals,
                origin={
                    "country": sender_country,
                    "site": sender_site,
                    "bundle_sha256": bundle_sha256,
                },
                audit={
                    "bundle": bundle_path.name,
                    "bundle_sha256": bundle_sha256,
                    "country": sender_country,
                    "site": sender_site,
                    "cursor": {"from": since, "to": to},
                    "exhibits": len(items),
                },
                check=check,
                update=update,
                copy_from=handle,
            )
        except _AlreadyImported:
            return result
        except ExhibitConflictError as exc:
            raise bundle.fail(f"conflicts with the store: {exc}") from None
        return ImportResult(
            str(bundle_path),
            sender_country,
            sender_site,
            since,
            to,
            merged.added,
            merged.unchanged,
            merged.removed,
            False,
            bundle_sha256,
        )
    finally:
        for handle in opened:
            handle.close()
        bundle.close()
        shutil.rmtree(work, ignore_errors=True)


def read_signed(
    bundle_path: str | os.PathLike,
    network: Network,
    member: str,
    *,
    limits: BundleLimits = DEFAULT_LIMITS,
) -> tuple[dict[str, Any], tuple[str, str], str, bytes | None]:
    """Verify a bundle's signature and sender and read one small payload member.

    Returns (manifest, (sender country, site), SHA-256 of the manifest, the member's bytes
    or None when the manifest lists no such file). The member's SHA-256 and size are
    checked against the signed manifest; it is read only if no larger than
    ``limits.manifest_bytes``. Raises :class:`BundleError` at the first failed check.
    """
    bundle = _Bundle(Path(bundle_path), limits)
    try:
        body = bundle.read(MANIFEST)
        signer = _verify_signature(bundle, body, bundle.read(SIGNATURE), network)
        manifest = _parse_manifest(bundle, body, signer)
        expected = manifest["files"].get(member)
        if expected is None:
            if member in bundle.members:
                raise bundle.fail(f"{member} is in the zip but not in the signed manifest")
            return manifest, signer, hashlib.sha256(body).hexdigest(), None
        if member not in bundle.members:
            raise bundle.fail(f"the manifest lists {member} but the zip lacks it")
        if bundle.members[member].file_size > limits.manifest_bytes:
            raise bundle.fail(f"{member} is over the limit of {limits.manifest_bytes} bytes")
        data = bundle.read(member)
        if (
            not isinstance(expected, dict)
            or hashlib.sha256(data).hexdigest() != expected.get("sha256")
            or len(data) != expected.get("bytes")
        ):
            raise bundle.fail(f"{member}: SHA-256 or size does not match the signed manifest")
        return manifest, signer, hashlib.sha256(body).hexdigest(), data
    finally:
        bundle.close()


class _AlreadyImported(Exception):
    pass


def _already_imported(store: SignatureStore, bundle_sha256: str) -> bool:
    return any(
        entry.get("action") == "import" and entry.get("bundle_sha256") == bundle_sha256
        for entry in store.audit_log()
    )


def _check_scope(bundle: _Bundle, scope: str, sender: str, receiver: str, network: Network) -> None:
    if scope == "network":
        return
    if scope == "cluster" or scope.startswith("cluster:"):
        name = scope.partition(":")[2]
        if name:
            members = network.clusters.get(name, ())
            if sender not in members or receiver not in members:
                raise bundle.fail(
                    f"is for cluster {name!r}, which does not hold both {sender} and {receiver}"
                )
        if not network.visible(sender, "cluster", receiver):
            raise bundle.fail(f"is a cluster bundle and {receiver} shares no cluster with {sender}")
        return
    raise bundle.fail(f"unknown scope {scope[:40]!r}")


def _check_cursor(
    bundle: _Bundle, store: SignatureStore, country: str, site: str, since: int, to: int
) -> None:
    last = store.sync_state().get("received", {}).get(f"{country}/{site}")
    last_to = last.get("to") if isinstance(last, dict) else 0
    if type(last_to) is not int or last_to < 0:  # the store's own manifest is damaged
        raise StoreError(
            f"{store.path.name}: the recorded cursor of {country}/{site} ({str(last_to)[:24]}) "
            "is not a whole number; the store's manifest is damaged"
        )
    if last and to <= last_to:
        raise bundle.fail(
            f"replay: covers cursor {since}..{to} but {country}/{site} is already imported up "
            f"to {last_to}"
        )
    if since > last_to:
        raise bundle.fail(
            f"gap: starts at cursor {since} but {country}/{site} is imported only up to "
            f"{last_to}; import the bundles between first, or ask for a full export"
        )


def _check_removals(
    bundle: _Bundle, removals: list[Any], sender_country: str, since: int, to: int
) -> list[tuple[str, str]]:
    out = []
    for removal in removals:
        if (
            not isinstance(removal, dict)
            or not isinstance(removal.get("content_id"), str)
            or not is_hex64(removal["content_id"])
        ):
            raise bundle.fail(f"bad removal entry {str(removal)[:80]}")
        sequence = removal.get("sequence", to)
        if type(sequence) is not int or not since < sequence <= to:
            raise bundle.fail(
                f"removal of {removal['content_id'][:16]}… has sequence {str(sequence)[:24]}, "
                f"outside the bundle's cursor range {since}..{to}"
            )
        if removal.get("country") != sender_country:
            raise bundle.fail(
                f"removal of {removal.get('exhibit_id')!r} of {removal.get('country')!r}: "
                f"{sender_country} may only remove its own exhibits"
            )
        out.append((sender_country, str(removal["content_id"])))
    return out


def _read_payload(
    bundle: _Bundle,
    store: SignatureStore,
    handle: h5py.File | None,
    manifest: Mapping[str, Any],
    sender: str,
    receiver: str,
    network: Network,
) -> list[Any]:
    """Every exhibit of the payload, checked and prepared (IDs recomputed) for the store."""
    listed = manifest["exhibits"]
    if handle is None:
        if listed:
            raise bundle.fail(f"lists {len(listed)} exhibits but has no {PAYLOAD}")
        return []
    expected: dict[str, Mapping[str, Any]] = {}
    for entry in listed:
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("content_id"), str)
            or not is_hex64(entry["content_id"])
        ):
            raise bundle.fail(f"bad exhibit entry {str(entry)[:80]}")
        if entry["content_id"] in expected:
            raise bundle.fail(f"exhibit {entry['content_id'][:16]}… is listed twice")
        expected[entry["content_id"]] = entry
    items = []
    try:
        sequence = handle.attrs.get("sequence")
        if sequence != manifest["cursor"]["to"]:
            raise bundle.fail(
                f"{PAYLOAD} was written at cursor {str(sequence)[:24]}, the manifest says "
                f"{manifest['cursor']['to']}"
            )
        index = read_segment_index(handle, PAYLOAD)
        groups = list(iter_exhibit_names(handle))
        content_ids = list(index.exhibits["content_id"])
        if sorted(groups) != sorted(expected) or sorted(content_ids) != sorted(expected):
            raise bundle.fail("the payload's exhibits differ from the manifest's list")
        for content_id in groups:
            entry = expected[content_id]
            record = read_exhibit(handle, content_id)
            meta = record.metadata
            label = f"exhibit {meta.country}/{record.exhibit.exhibit_id}"
            if meta.country != sender:
                raise bundle.fail(
                    f"{label} belongs to {meta.country}, not to the sender's country {sender}"
                )
            if meta.sharing not in SCOPES or not network.visible(sender, meta.sharing, receiver):
                raise bundle.fail(
                    f"{label} is shared {meta.sharing!r}: it may not reach {receiver}"
                )
            if (entry.get("exhibit_id"), entry.get("country"), entry.get("sharing")) != (
                record.exhibit.exhibit_id,
                meta.country,
                meta.sharing,
            ):
                raise bundle.fail(f"{label}: the manifest's entry differs from the payload")
            check_exhibit_id(record.exhibit.exhibit_id, PAYLOAD)
            try:
                item = store.prepare(record.exhibit, meta, features=False)
            except InputError as exc:
                raise bundle.fail(f"{label}: {exc.problem}") from None
            if item.content_id != content_id or record.content_id != content_id:
                raise bundle.fail(
                    f"{label}: content ID does not recompute from its surfaces "
                    f"({item.content_id[:16]}… vs {content_id[:16]}…)"
                )
            if item.signature_ids != record.stored_signature_ids:
                raise bundle.fail(f"{label}: a signature ID does not recompute from its surface")
            items.append(item)
    except BundleError:
        raise
    except Exception as exc:  # hostile HDF5: h5py raises many types
        raise bundle.fail(f"{PAYLOAD}: unreadable ({_first_line(exc)})") from None
    return items


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0][:160] if text else type(exc).__name__
    return line.removeprefix("payload.h5: ")  # the temporary file's name says nothing


def _open_payload(bundle: _Bundle, payload: Path | None) -> h5py.File | None:
    if payload is None:
        return None
    try:
        handle = open_segment(payload)
    except (StoreError, OSError) as exc:
        raise bundle.fail(f"{PAYLOAD}: {_first_line(exc)}") from None
    try:
        check_segment_structure(handle)  # every link, dataset and attribute, before reading
    except BaseException as exc:
        handle.close()
        if isinstance(exc, Exception):
            raise bundle.fail(f"{PAYLOAD}: {_first_line(exc)}") from None
        raise
    return handle


__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_FORMAT_VERSION",
    "BundleError",
    "BundleLimits",
    "ExportResult",
    "ImportResult",
    "export_bundle",
    "generate_key",
    "import_bundle",
    "load_private_key",
    "public_key_b64",
    "write_bundle",
]
