"""The writer lock (``STORE/.lock``) and directory fsync."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from ribin.store.common import LOCK, StoreLockedError

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
