"""Error classes: every user-facing failure is one of these, with a one-line message."""

from __future__ import annotations

import os


class RibinError(Exception):
    """Base class of every error RIBIN reports to a user (CLI: one line, exit 1)."""


class InputError(RibinError):
    """An input file or argument is unusable; the message names the file and the problem."""

    def __init__(self, source: str | os.PathLike | None, problem: str):
        self.source = None if source is None else os.fspath(source)
        self.problem = problem
        name = os.path.basename(self.source) if self.source else None
        super().__init__(f"{name}: {problem}" if name else problem)


class StoreError(RibinError):
    """A signature store cannot be opened, read or written safely."""


class FormatVersionError(StoreError):
    """A file was written by a newer, incompatible format version."""
