"""The manifest: audit records, and reading and checking ``manifest.json``."""

from __future__ import annotations

import getpass
import os
import socket
import stat
from pathlib import Path
from typing import Any

from ribin.errors import StoreError
from ribin.store.common import _SEGMENT_NAME, CREATED_BY
from ribin.store_format import check_format, is_hex64, utc_now


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
        if origin is not None and not _is_place(origin):
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


def _is_place(value: Any) -> bool:
    """A segment's origin or a store's identity: an object with a text country and site."""
    return (
        isinstance(value, dict)
        and isinstance(value.get("country"), str)
        and isinstance(value.get("site"), str)
    )


def _check_sync_state(sync: Any, name: str) -> None:
    """The ``sync`` object: the store's identity and a cursor range per sending site."""
    if not isinstance(sync, dict):
        raise StoreError(f"{name}: 'sync' is not an object")
    identity = sync.get("identity")
    if identity is not None and not _is_place(identity):
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
