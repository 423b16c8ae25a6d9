"""Small file helpers shared by the readers and writers: hashing, checks, atomic writes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ribin.errors import InputError

_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in chunks so a large file never sits in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_input_file(path: str | os.PathLike) -> str:
    """Return ``path`` as a string after checking it names a readable, non-empty file.

    Raises
    ------
    InputError
        When the file is missing, is a directory, cannot be read or is empty.
    """
    path = os.fspath(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except OSError as exc:
        raise InputError(path, f"cannot read the file ({exc.strerror or exc})") from None
    if os.path.isdir(path):
        raise InputError(path, "is a directory, not a file")
    if info.st_size == 0:
        raise InputError(path, "file is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise InputError(path, "cannot read the file (permission denied)")
    return path


def read_head(path: str, size: int) -> bytes:
    """The first ``size`` bytes of a file (fewer if it is shorter)."""
    with open(path, "rb") as handle:
        return handle.read(size)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path``; on success it replaces ``path`` in one step.

    A crash or an exception leaves any earlier file at ``path`` untouched and no partial
    file behind.
    """
    target = Path(path)
    # closed below on every path; a context manager would delete it before os.replace
    handle = tempfile.NamedTemporaryFile(
        dir=target.parent, prefix=f".{target.name}.", suffix=".tmp", delete=False
    )
    try:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        os.replace(handle.name, target)
    except BaseException:
        handle.close()
        with contextlib.suppress(OSError):
            os.unlink(handle.name)
        raise
