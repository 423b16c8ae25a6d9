"""Search: rank the stored exhibits of a scope against a query exhibit.

Two stages over every candidate in scope, per region (breech face, firing pin):

1. the prefilter (:mod:`ribin.prefilter`) scores all of them from their stored feature
   vectors, which are rotation and translation tolerant and cost microseconds each;
2. the full congruent-matching-cells comparison (:func:`ribin.compare.compare`) re-scores
   the best ``shortlist`` of that ranking, or every candidate with ``exhaustive=True``.

The regions are ranked separately, as examiners read them, and combined into one list:
by the sum of the regions' log10 likelihood ratios where a calibration exists (treating
the regions as independent evidence, an approximation stated in the result), else by the
sum of their scores.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ribin import __version__, prefilter
from ribin._callable import make_module_callable
from ribin.calibration import Calibration, model_key
from ribin.compare import DEFAULT_PARAMS, CMCParams, compare
from ribin.errors import InputError
from ribin.exhibit import REGIONS, Exhibit
from ribin.network import Network, load_network
from ribin.store import FeatureTable, Scope, SignatureStore, StoredExhibit

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class SearchParams:
    """How much of the prefilter ranking gets the full comparison.

    The shortlist of each region is ``max(shortlist_min, ceil(shortlist_fraction * n))``
    of the ``n`` candidates in scope (all of them when ``exhaustive``).
    """

    shortlist_min: int = 50
    shortlist_fraction: float = 0.02
    exhaustive: bool = False

    def shortlist(self, n: int) -> int:
        if self.exhaustive:
            return n
        return min(n, max(self.shortlist_min, math.ceil(self.shortlist_fraction * n)))


@dataclass(frozen=True)
class Filters:
    """Which candidates to consider besides the scope (None: no restriction).

    ``modality`` defaults to the query signature's own; dates compare as ISO 8601 text.
    """

    caliber: str | None = None
    modality: str | None = None
    role: str | None = None
    acquired_from: str | None = None
    acquired_to: str | None = None

    def mask(self, table: FeatureTable, modality: str) -> np.ndarray:
        keep = table.modality == (self.modality or modality)
        if self.caliber:
            wanted = self.caliber.strip().lower()
            keep &= np.array([c.strip().lower() == wanted for c in table.caliber], dtype=bool)
        if self.role:
            keep &= table.role == self.role
        if self.acquired_from or self.acquired_to:
            dates = table.acquired_at
            keep &= dates != ""
            if self.acquired_from:
                keep &= dates >= self.acquired_from
            if self.acquired_to:
                # a bare end date includes that whole day
                end = self.acquired_to + ("\uffff" if len(self.acquired_to) == 10 else "")
                keep &= dates <= end
        return np.asarray(keep, dtype=bool)


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


def search(
    store: SignatureStore,
    query: Exhibit | StoredExhibit | str,
    *,
    scope: str | list[str] = "network",
    searcher: str | None = None,
    top: int = 20,
    exhaustive: bool = False,
    network: Network | None = None,
    filters: Filters | None = None,
    params: SearchParams | None = None,
    cmc_params: Mapping[str, CMCParams] | None = None,
    calibration: Mapping[str, Calibration] | None = None,
    progress: Progress | None = None,
) -> SearchResult:
    """Rank the exhibits of ``store`` visible in ``scope`` against ``query``.

    Parameters
    ----------
    store : SignatureStore
        Open store to search.
    query : Exhibit, StoredExhibit or str
        A freshly extracted exhibit, or one already stored (by exhibit ID). A stored query
        is never among its own candidates.
    scope : str or list of str
        ``"country"``, ``"cluster:NAME"``, ``"network"`` or country codes.
    searcher : str, optional
        Searching country (default: the stored query's country).
    top : int
        Length of the returned list.
    exhaustive : bool
        Fully compare every candidate instead of the prefilter's shortlist.
    network : Network, optional
        Defaults to the example network shipped with RIBIN.
    filters : Filters, optional
        Caliber, modality, role, date range.
    params : SearchParams, optional
        Shortlist size.
    cmc_params : mapping, optional
        Comparison parameters per region (default :data:`ribin.compare.DEFAULT_PARAMS`).
    calibration : mapping, optional
        ``"region/modality"`` -> :class:`~ribin.calibration.Calibration` (see
        :func:`ribin.calibration.model_key`), for log10 likelihood ratios.
    progress : callable, optional
        Called as ``progress(done, total)`` after each full comparison.

    Returns
    -------
    SearchResult

    Raises
    ------
    InputError
        Unknown scope or country, no searching country, a query exhibit not in the store.
    """
    started = time.perf_counter()
    network = network or load_network()
    filters = filters or Filters()
    params = params or SearchParams()
    if exhaustive:
        params = replace(params, exhaustive=True)
    cmc_params = {**DEFAULT_PARAMS, **(cmc_params or {})}
    if top < 1:
        raise InputError(None, f"top must be at least 1, not {top}")

    exhibit, stored = _resolve_query(store, query)
    if searcher is None:
        if stored is None:
            raise InputError(None, "say which country is searching (--country CC)")
        searcher = stored.metadata.country
    scope_text = scope if isinstance(scope, str) else ",".join(scope)
    store_scope = Scope.from_network(network, scope, searcher)
    signatures = exhibit.signatures()
    if not signatures:
        raise InputError(None, f"query {exhibit.exhibit_id!r} has no signature to search with")

    plans = []
    for region, signature in signatures.items():
        table = store.features(scope=store_scope, kind=region)
        keep = filters.mask(table, signature.modality)
        keep &= np.isclose(table.pixel_size_um.astype(np.float64), signature.pixel_size_um, 0.01)
        if stored is not None:
            keep &= ~(
                (table.content_id == stored.content_id) & (table.country == stored.metadata.country)
            )
        keep &= table.signature_id != signature.id  # the same data stored under another ID
        rows = np.flatnonzero(keep)
        query_vector = prefilter.features(signature)
        scores = prefilter.similarity(query_vector, table.features[rows]) if rows.size else None
        order = rows[np.argsort(-scores, kind="stable")] if rows.size else rows
        pre_scores = dict(zip(rows.tolist(), scores.tolist(), strict=True)) if rows.size else {}
        plans.append((region, signature, table, order, pre_scores))

    total = sum(params.shortlist(len(order)) for _, _, _, order, _ in plans)
    done = 0
    loaded: dict[str, StoredExhibit] = {}
    per_region: dict[str, dict[str, RegionMatch]] = {}
    rows_of: dict[str, tuple[FeatureTable, int]] = {}
    for region, signature, table, order, pre_scores in plans:
        model = (calibration or {}).get(model_key(region, signature.modality))
        matches: dict[str, dict[str, Any]] = {}
        n_full = params.shortlist(len(order))
        for position, row in enumerate(order.tolist()):
            # the same exhibit may be held by two countries: key by owner and content
            key = f"{table.country[row]}/{table.content_id[row]}"
            rows_of.setdefault(key, (table, row))
            entry: dict[str, Any] = {
                "prefilter_rank": position + 1,
                "prefilter_score": float(pre_scores[row]),
                "score": None,
                "cmc_count": None,
                "log_lr": None,
            }
            if position < n_full:
                candidate = loaded.get(key)
                if candidate is None:
                    candidate = store.get(table.exhibit_id[row], country=table.country[row])
                    loaded[key] = candidate
                other = candidate.exhibit.signatures()[region]
                result = compare(signature, other, cmc_params[region])
                entry.update(
                    score=result.score,
                    cmc_count=result.cmc_count,
                    rotation_deg=result.registration.rotation_deg,
                    dx_um=result.registration.dx_um,
                    dy_um=result.registration.dy_um,
                )
                if model is not None:
                    entry["log_lr"] = float(model.log10_lr(result.score))
                done += 1
                if progress is not None:
                    progress(done, total)
            matches[key] = entry
        per_region[region] = _rank_region(matches)

    candidates = _combine(per_region, rows_of, top)
    by_region = {
        region: tuple(
            rows_of[key][0].exhibit_id[rows_of[key][1]]
            for key, match in sorted(per_region[region].items(), key=lambda kv: kv[1].rank)
            if match.rank <= top
        )
        for region in per_region
    }
    return SearchResult(
        query=exhibit.exhibit_id,
        searcher=searcher,
        scope=scope_text,
        countries=tuple(sorted(store_scope.countries or network.countries)),
        candidates=candidates,
        by_region=by_region,
        compared=done,
        considered=sum(len(order) for _, _, _, order, _ in plans),
        seconds=time.perf_counter() - started,
        provenance=_provenance(store, exhibit, stored, params, cmc_params, calibration, network),
    )


def _resolve_query(
    store: SignatureStore, query: Exhibit | StoredExhibit | str
) -> tuple[Exhibit, StoredExhibit | None]:
    if isinstance(query, StoredExhibit):
        return query.exhibit, query
    if isinstance(query, Exhibit):
        return query, None
    stored = store.get(query)
    return stored.exhibit, stored


def _rank_region(matches: dict[str, dict[str, Any]]) -> dict[str, RegionMatch]:
    """Fully compared candidates first (by score), then the rest in prefilter order."""

    def key(item: tuple[str, dict[str, Any]]) -> tuple:
        entry = item[1]
        compared = entry["score"] is not None
        return (not compared, -(entry["score"] or 0.0), entry["prefilter_rank"])

    ordered = sorted(matches.items(), key=key)
    return {cid: RegionMatch(rank=i + 1, **entry) for i, (cid, entry) in enumerate(ordered)}


def _combine(
    per_region: dict[str, dict[str, RegionMatch]],
    rows_of: dict[str, tuple[FeatureTable, int]],
    top: int,
) -> tuple[Candidate, ...]:
    """One list: by summed log10 LR where every compared region has one, else summed score."""
    combined = []
    for key in rows_of:
        regions = {r: per_region[r].get(key) for r in REGIONS if r in per_region}
        compared = [m for m in regions.values() if m is not None and m.score is not None]
        if not compared:
            continue
        score = float(sum(m.score for m in compared))
        lrs = [m.log_lr for m in compared]
        log_lr = float(sum(lrs)) if all(lr is not None for lr in lrs) else None
        combined.append((key, score, log_lr, regions))
    combined.sort(key=lambda c: (-(c[2] if c[2] is not None else -math.inf), -c[1], c[0]))
    out = []
    for rank, (key, score, log_lr, regions) in enumerate(combined[:top], start=1):
        table, row = rows_of[key]
        out.append(
            Candidate(
                rank=rank,
                exhibit_id=str(table.exhibit_id[row]),
                country=str(table.country[row]),
                site=str(table.site[row]),
                caliber=str(table.caliber[row]),
                role=str(table.role[row]),
                content_id=str(table.content_id[row]),
                score=score,
                log_lr=log_lr,
                breech_face=regions.get("breech_face"),
                firing_pin=regions.get("firing_pin"),
            )
        )
    return tuple(out)


def _provenance(
    store: SignatureStore,
    exhibit: Exhibit,
    stored: StoredExhibit | None,
    params: SearchParams,
    cmc_params: Mapping[str, CMCParams],
    calibration: Mapping[str, Calibration] | None,
    network: Network,
) -> dict[str, Any]:
    return {
        "software_version": __version__,
        "searched_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "store": str(store.path),
        "store_sequence": store.sequence,
        "query_source_sha256": exhibit.source_sha256,
        "query_content_id": stored.content_id if stored else None,
        "query_signature_ids": {k: s.id for k, s in exhibit.signatures().items()},
        "prefilter_version": prefilter.FEATURE_VERSION,
        "search_params": asdict(params),
        "cmc_params": {k: asdict(v) for k, v in cmc_params.items()},
        "calibration": {k: m.source for k, m in (calibration or {}).items()},
        "combination": "sum of region log10 LRs (regions taken as independent)"
        if calibration
        else "sum of region scores",
        "network": network.source,
    }


make_module_callable(__name__, search)
