"""The search's inputs and outputs: parameters, filters, per-region matches and results.

Shared by :mod:`ribin.search`, the shard pipeline (:mod:`ribin.shards`) and the Dask engine
(:mod:`ribin.distributed`); every name here is importable from :mod:`ribin.search` too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from ribin.errors import InputError
from ribin.store import FeatureTable
from ribin.store_format import ROLES

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class SearchParams:
    """How much of the prefilter ranking gets the full comparison.

    The shortlist of each region is ``max(shortlist_min, ceil(shortlist_fraction * n))``
    of the ``n`` candidates in scope (all of them when ``exhaustive``). The defaults were set
    by ``benchmarks/bench_search_accuracy.py`` (3D): no true match of the synthetic or Fadul
    sets ranked below 2nd on the breech-face prefilter, and the extrapolated worst rank is
    about 5 among 10^4 candidates and about 36 among 10^5, so 10 and 0.1 % keep a margin
    of 2-3 while a query at 10^4 stays near 10 s on 2 cores. The prefilter does not rank 2D
    true matches high (``benchmarks/bench_2d_search.py``: at chance on the Fadul renderings),
    so regions of other ``modality`` than ``shortlist_modalities`` are compared in full.
    """

    shortlist_min: int = 10
    shortlist_fraction: float = 0.001
    exhaustive: bool = False
    shortlist_modalities: tuple[str, ...] = ("3d",)

    def shortlist(self, n: int, modality: str = "3d") -> int:
        """How many of ``n`` prefilter-ranked candidates of ``modality`` to compare in full."""
        if self.exhaustive or modality not in self.shortlist_modalities:
            return n
        return min(n, max(self.shortlist_min, math.ceil(self.shortlist_fraction * n)))


@dataclass(frozen=True)
class Filters:
    """Which candidates to consider besides the scope (None: no restriction).

    ``modality`` defaults to the query signature's own. Dates are ISO 8601 (``2026-03-01``
    or a date and time) and compare as text; a bare ``acquired_to`` date includes that whole
    day. Exhibits stored without an acquisition date are kept by a date range unless
    ``include_undated`` is False (a range must never hide a candidate for lack of a date).
    Every value is checked when the filters are made: a bad date, an unknown caliber (see
    :data:`ribin.preprocess.CALIBER_PRIMER_RADIUS_UM`), role or modality raises
    :class:`~ribin.errors.InputError`.
    """

    caliber: str | None = None
    modality: str | None = None
    role: str | None = None
    acquired_from: str | None = None
    acquired_to: str | None = None
    include_undated: bool = True

    def __post_init__(self) -> None:
        for name, option in (("acquired_from", "--from"), ("acquired_to", "--to")):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _iso_date(value, option))
        if self.caliber is not None:
            from ribin.preprocess import CALIBER_PRIMER_RADIUS_UM, PRIMER_RADIUS_UM

            known = sorted(set(CALIBER_PRIMER_RADIUS_UM) | set(PRIMER_RADIUS_UM))
            if self.caliber.strip().lower() not in known:
                raise InputError(
                    None, f"unknown caliber {self.caliber!r}; known calibers: {', '.join(known)}"
                )
        if self.role is not None and self.role not in ROLES:
            raise InputError(None, f"role must be one of {', '.join(ROLES)}, not {self.role!r}")
        if self.modality is not None and self.modality not in ("3d", "2d"):
            raise InputError(None, f"modality must be 3d or 2d, not {self.modality!r}")

    def mask(self, table: FeatureTable, modality: str) -> np.ndarray:
        keep = table.modality == (self.modality or modality)
        if self.caliber:
            wanted = self.caliber.strip().lower()
            keep &= np.array([c.strip().lower() == wanted for c in table.caliber], dtype=bool)
        if self.role:
            keep &= table.role == self.role
        if self.acquired_from or self.acquired_to:
            dates = table.acquired_at
            in_range = np.ones(len(dates), dtype=bool)
            if self.acquired_from:
                in_range &= dates >= self.acquired_from
            if self.acquired_to:
                # a bare end date includes that whole day
                end = self.acquired_to + ("\uffff" if len(self.acquired_to) == 10 else "")
                in_range &= dates <= end
            undated = dates == ""
            keep &= (in_range & ~undated) | (undated & self.include_undated)
        return np.asarray(keep, dtype=bool)


def _iso_date(text: str, option: str) -> str:
    """``text`` as ISO 8601 (``YYYY-MM-DD``, or a date and time), or an InputError."""
    value = str(text).strip()
    try:
        if len(value) == 10:
            return datetime.strptime(value, "%Y-%m-%d").date().isoformat()
        datetime.fromisoformat(value)
    except ValueError:
        raise InputError(
            None, f"{option} {text!r} is not an ISO 8601 date (YYYY-MM-DD, e.g. 2026-03-01)"
        ) from None
    if len(value) < 10 or value[4] != "-":
        raise InputError(None, f"{option} {text!r}: write the date as YYYY-MM-DD")
    return value


@dataclass(frozen=True)
class RegionMatch:
    """One candidate's result in one region."""

    rank: int
    score: float | None
    cmc_count: int | None
    log_lr: float | None
    prefilter_rank: int
    prefilter_score: float
    rotation_deg: float | None = None
    dx_um: float | None = None
    dy_um: float | None = None
    calibration: str | None = None
    """Name of the calibration behind ``log_lr``; None: uncalibrated (no LR)."""


@dataclass(frozen=True)
class Candidate:
    """One stored exhibit in the ranked list."""

    rank: int
    exhibit_id: str
    country: str
    site: str
    caliber: str
    role: str
    content_id: str
    score: float
    log_lr: float | None
    breech_face: RegionMatch | None
    firing_pin: RegionMatch | None
    calibration: str | None = None
    """Names of the calibrations behind ``log_lr`` (``" + "``-joined); None: uncalibrated."""
    lr_regions: tuple[str, ...] = ()
    """The compared regions ``log_lr`` covers (the calibrated ones); others add no LR."""


@dataclass(frozen=True)
class SearchResult:
    """A ranked candidate list with what produced it.

    ``candidates`` is the combined list; ``by_region`` the separate BF and FP lists (exhibit
    IDs in rank order). ``compared`` counts full comparisons, ``considered`` the candidates
    the prefilter ranked (both summed over regions).
    """

    query: str
    searcher: str
    scope: str
    countries: tuple[str, ...]
    candidates: tuple[Candidate, ...]
    by_region: dict[str, tuple[str, ...]]
    compared: int
    considered: int
    seconds: float
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The ``search --json`` document (DESIGN.md contract, version 1)."""
        return {
            "format": "ribin-search",
            "format_version": 1,
            "query": self.query,
            "searcher": self.searcher,
            "scope": self.scope,
            "countries": list(self.countries),
            "candidates": [asdict(c) for c in self.candidates],
            "by_region": {k: list(v) for k, v in self.by_region.items()},
            "compared": self.compared,
            "considered": self.considered,
            "seconds": round(self.seconds, 3),
            "provenance": self.provenance,
        }
