"""The store's constants, errors and exhibit keys (``"CC/ID"``)."""

from __future__ import annotations

import re
from typing import Literal

from ribin import __version__
from ribin.errors import StoreError

MANIFEST = "manifest.json"
SEGMENTS = "segments"
LOCK = ".lock"
CREATED_BY = f"ribin {__version__}"
_SEGMENT_NAME = re.compile(r"seg-\d{8}-[0-9a-f]{8}\.h5")
_OPEN_HANDLES = 32
Mode = Literal["r", "a", "x"]


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
