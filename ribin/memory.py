"""Memory budget of one ingest: inputs that would not fit are refused (or shrunk) up front.

Every reader checks the size an input *declares* (points, pixels, surface shapes) and how
far it would expand on decompression against this budget before it allocates anything, so
a small hostile file cannot take gigabytes. The budget is 2 GiB by default; set the
``RIBIN_MEMORY_BUDGET`` environment variable (bytes, or with a ``K``, ``M``, ``G`` suffix,
e.g. ``RIBIN_MEMORY_BUDGET=8G``) to change it.
"""

from __future__ import annotations

import os
import re

from ribin.errors import InputError

ENV_VAR = "RIBIN_MEMORY_BUDGET"
DEFAULT_BUDGET = 2 << 30
"""Default peak memory for one ingest, in bytes (2 GiB)."""

INGEST_BYTES_PER_POINT = 180
"""Peak memory of reading and extracting one input point (bytes). Measured with
``benchmarks/memory_budget.py``: 174 B/point for a 2180 x 2180 float32 X3P, 192 B/point for
a 545 x 545 float64 Fadul scan (peak RSS above the interpreter's, one ingest)."""

MAX_EXPANSION = 100.0
"""Largest uncompressed/compressed size ratio of a large archive member. Real surfaces
compress 1.4- to 4-fold (the Fadul scans, the synthetic casings); a member expanding over
100-fold is a decompression bomb or a blank surface."""

_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)i?[bB]?\s*")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def memory_budget() -> int:
    """The budget in bytes: ``RIBIN_MEMORY_BUDGET`` when set, else :data:`DEFAULT_BUDGET`.

    Raises
    ------
    InputError
        The variable is set but is not a size such as ``2147483648``, ``512M`` or ``8G``.
    """
    text = os.environ.get(ENV_VAR, "").strip()
    if not text:
        return DEFAULT_BUDGET
    match = _SIZE.fullmatch(text)
    if match is None:
        raise InputError(None, f"{ENV_VAR}={text[:40]!r} is not a size such as 512M or 8G")
    value = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if value < 1 << 20:
        raise InputError(None, f"{ENV_VAR}={text!r} is under 1 MiB")
    return value


def _gb(n_bytes: float) -> str:
    if n_bytes < 1 << 30:
        return f"{n_bytes / (1 << 20):.0f} MiB"
    return f"{n_bytes / (1 << 30):.1f} GiB"


def check_memory(source: str | os.PathLike | None, what: str, need: float) -> None:
    """Refuse, in one line, an input whose processing would need more than the budget."""
    budget = memory_budget()
    if need > budget:
        raise InputError(
            source,
            f"{what} would need about {_gb(need)} of memory, over the budget of {_gb(budget)} "
            f"(set {ENV_VAR} to raise it)",
        )


def check_expansion(
    source: str | os.PathLike | None, label: str, uncompressed: int, compressed: int
) -> None:
    """Refuse a large archive member that expands more than :data:`MAX_EXPANSION`-fold."""
    if uncompressed > (1 << 20) and uncompressed > MAX_EXPANSION * max(compressed, 1):
        raise InputError(
            source,
            f"{label} expands {uncompressed / max(compressed, 1):.0f}-fold ({compressed} to "
            f"{uncompressed} bytes): refused as a decompression bomb or blank surface "
            f"(limit {MAX_EXPANSION:g})",
        )


__all__ = [
    "DEFAULT_BUDGET",
    "ENV_VAR",
    "INGEST_BYTES_PER_POINT",
    "MAX_EXPANSION",
    "check_expansion",
    "check_memory",
    "memory_budget",
]
