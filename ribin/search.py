"""Search: rank the stored exhibits of a scope against a query exhibit.

Two stages over every candidate in scope, per region (breech face, firing pin):

1. the prefilter (:mod:`ribin.prefilter`) scores all of them from their stored feature
   vectors, which are rotation and translation tolerant and cost microseconds each;
2. the full congruent-matching-cells comparison (:func:`ribin.compare.compare`) re-scores
   the best ``shortlist`` of that ranking, or every candidate with ``exhaustive=True``; a
   candidate shortlisted in one region is compared in its other region too.

The regions are ranked separately, as examiners read them, and combined into one list
ranked by the sum of the regions' scores, which every compared candidate has whether or not
a calibration exists for its regions (:func:`_combine`; docs/method.md). The log10
likelihood ratio is shown beside it: the sum over the calibrated regions (taken as
independent evidence), naming the calibrations and regions it covers; it never orders the
list, so a missing calibration or region cannot push a candidate below a weaker one.

The search runs embedded (this process) or on Dask (:mod:`ribin.distributed`, one task per
store segment); both engines run the shard steps and the merge below, so they return the
same ranking and scores. :func:`search_batch` runs many queries in one pass over the store.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import numpy as np

from ribin import __version__, prefilter
from ribin._callable import make_module_callable
from ribin.calibration import Calibration, model_key
from ribin.compare import DEFAULT_PARAMS, CMCParams, compare_many
from ribin.errors import InputError
from ribin.exhibit import REGIONS, Exhibit, Signature
from ribin.network import Network, Scope, load_network
from ribin.store import FeatureTable, SignatureStore, StoredExhibit
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
    of 2-3 while a query at 10^4 stays near 10 s on 2 cores. The 2D prefilter does not rank
    true matches high (same benchmark), so regions of other ``modality`` than
    ``shortlist_modalities`` are compared in full.
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


Engine = Literal["embedded", "dask"]
ENGINES: tuple[str, ...] = ("embedded", "dask")


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
    engine: Engine = "embedded",
    scheduler: Any = None,
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
        Called as ``progress(done, total)`` after each full comparison (with the Dask
        engine, after each store segment's comparisons).
    engine : {"embedded", "dask"}
        ``"embedded"`` searches in this process; ``"dask"`` spreads the store's segments
        over a Dask cluster (:mod:`ribin.distributed`). Both give the same ranking and
        scores.
    scheduler : str or distributed.Client, optional
        Dask scheduler address (``"tcp://host:8786"``); implies ``engine="dask"``. With
        the Dask engine and no address, a local cluster of worker processes is started.

    Returns
    -------
    SearchResult
        ``provenance`` names the engine, the scheduler and the segments searched.

    Raises
    ------
    InputError
        Unknown scope, country or engine, no searching country, a query exhibit not in
        the store.
    ribin.distributed.ShardError
        Dask engine: segments that could not be searched (never a partial answer).
    """
    return search_batch(
        store,
        [query],
        scope=scope,
        searcher=searcher,
        top=top,
        exhaustive=exhaustive,
        network=network,
        filters=filters,
        params=params,
        cmc_params=cmc_params,
        calibration=calibration,
        progress=progress,
        engine=engine,
        scheduler=scheduler,
    )[0]


def search_batch(
    store: SignatureStore,
    queries: Sequence[Exhibit | StoredExhibit | str],
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
    engine: Engine = "embedded",
    scheduler: Any = None,
) -> list[SearchResult]:
    """:func:`search` for many queries in one pass over the store.

    The store's prefilter features are read once for all queries, and each candidate
    exhibit is read once however many queries shortlist it. Each result is the one
    :func:`search` gives for that query alone; ``seconds`` is the whole batch's time.

    Parameters
    ----------
    store : SignatureStore
        Open store to search.
    queries : sequence of Exhibit, StoredExhibit or str
        The queries; a stored query searches as its own country unless ``searcher`` is
        given.
    scope, searcher, top, exhaustive, network, filters, params, cmc_params, calibration
        As for :func:`search`.
    progress, engine, scheduler
        As for :func:`search`; ``progress`` counts the comparisons of the whole batch.

    Returns
    -------
    list of SearchResult
        One per query, in order.
    """
    if engine not in ENGINES:
        raise InputError(None, f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if engine == "dask" or scheduler is not None:
        from ribin import distributed  # dask loads only when asked for

        return distributed.search_batch(
            store,
            queries,
            scheduler=scheduler,
            scope=scope,
            searcher=searcher,
            top=top,
            exhaustive=exhaustive,
            network=network,
            filters=filters,
            params=params,
            cmc_params=cmc_params,
            calibration=calibration,
            progress=progress,
        )
    return run_search(
        store,
        queries,
        InProcessShards(store),
        scope=scope,
        searcher=searcher,
        top=top,
        exhaustive=exhaustive,
        network=network,
        filters=filters,
        params=params,
        cmc_params=cmc_params,
        calibration=calibration,
        progress=progress,
    )


# ------------------------------------------------------------------ the shared pipeline
#
# Both engines run :func:`run_search`; they differ only in where the two shard steps run.
# A *shard* is part of the store (the embedded engine: the whole store; the Dask engine: one
# segment file). Per shard, step 1 (:func:`rank_shard`) ranks its candidates by prefilter
# score and hands the client the sorted scores; the client merges them into the global
# ranking (a stable sort, exactly as over the whole store) and picks the shortlist; step 2
# (:func:`compare_shard`) fully compares the shard's part of the shortlist. Scores depend
# only on the candidate, never on which others share its shard, so the engines agree.


@dataclass(frozen=True)
class RegionQuery:
    """One region of a query, with its prefilter feature vector (L,)."""

    region: str
    signature: Signature
    vector: np.ndarray


@dataclass(frozen=True)
class ShardQuery:
    """What a shard needs to know of one query (small; pickled to Dask workers)."""

    exhibit_id: str
    scope: Scope
    own: tuple[str, str] | None  # (country, content_id) of a stored query: not a candidate
    regions: tuple[RegionQuery, ...]
    # (country, content_id) of stored exhibits from the query's own source file (same
    # SHA-256): the same scan, never a candidate whatever ID or options it was stored with
    same_source: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True)
class Ranking:
    """One shard's prefilter ranking of one query region: table rows and scores, best first."""

    rows: np.ndarray
    scores: np.ndarray


@dataclass
class ShardState:
    """A shard after step 1: its feature tables (features dropped) and rankings per query."""

    tables: dict[str, FeatureTable]
    rankings: list[dict[str, Ranking]]


@dataclass(frozen=True)
class CandidateRow:
    """The stored exhibit behind a candidate row, as listed in the results."""

    exhibit_id: str
    country: str
    site: str
    caliber: str
    role: str
    content_id: str


@dataclass(frozen=True)
class Found:
    """Step 2 output: a candidate at ``position`` of a shard's ranking of one region.

    ``result`` holds the full comparison (score, cmc_count, registration) when it was on
    the shortlist, else None.
    """

    position: int
    key: str
    row: CandidateRow
    prefilter_score: float
    result: dict[str, Any] | None


# requests[query index] = {region: (n_compare, n_list)}: compare this shard's first
# n_compare candidates of that region and list its first n_list
Requests = list[dict[str, tuple[int, int]]]


def candidate_mask(
    table: FeatureTable,
    query: ShardQuery,
    region: RegionQuery,
    filters: Filters,
    removed: frozenset[str] = frozenset(),
) -> np.ndarray:
    """Rows of ``table`` that are candidates for ``region`` of ``query``.

    ``removed`` lists content IDs tombstoned in the table's segment (a shard read as a
    bare segment file does not know the store's tombstones).
    """
    signature = region.signature
    keep = query.scope.mask(table.country, table.sharing)
    keep &= filters.mask(table, signature.modality)
    keep &= np.isclose(table.pixel_size_um.astype(np.float64), signature.pixel_size_um, 0.01)
    if query.own is not None:
        country, content_id = query.own
        keep &= ~((table.content_id == content_id) & (table.country == country))
    keep &= table.signature_id != signature.id  # the same data stored under another ID
    for country, content_id in query.same_source:
        keep &= ~((table.content_id == content_id) & (table.country == country))
    if removed:
        keep &= ~np.isin(table.content_id.astype(str), sorted(removed))
    return np.asarray(keep, dtype=bool)


def rank_shard(
    tables: Mapping[str, FeatureTable],
    queries: Sequence[ShardQuery],
    filters: Filters,
    removed: frozenset[str] = frozenset(),
) -> ShardState:
    """Step 1 on one shard: prefilter-rank its candidates for every query region."""
    rankings = []
    for query in queries:
        per_region = {}
        for region in query.regions:
            table = tables[region.region]
            rows = np.flatnonzero(candidate_mask(table, query, region, filters, removed))
            scores = (
                prefilter.similarity(region.vector, table.features[rows])
                if rows.size
                else np.zeros(0)
            )
            order = np.argsort(-scores, kind="stable")
            per_region[region.region] = Ranking(rows[order], scores[order])
        rankings.append(per_region)
    slim = {name: replace(table, features=table.features[:0]) for name, table in tables.items()}
    return ShardState(slim, rankings)


def shard_scores(state: ShardState) -> list[dict[str, np.ndarray]]:
    """The part of step 1 the client needs: sorted prefilter scores per query region."""
    return [{region: r.scores for region, r in per.items()} for per in state.rankings]


def compare_shard(
    state: ShardState,
    requests: Requests,
    queries: Sequence[ShardQuery],
    cmc_params: Mapping[str, CMCParams],
    load: Callable[[str, str], StoredExhibit],
    on_compare: Callable[[], None] | None = None,
) -> list[dict[str, list[Found]]]:
    """Step 2 on one shard: fully compare and list the requested candidates.

    A candidate compared in one region of a query is also compared in its other regions
    (an exhibit's signatures share a segment), so that every compared candidate has a full
    result in each region where it is a candidate. ``load(exhibit_id, country)`` reads a
    stored exhibit; each is read once per call.
    """
    loaded: dict[str, StoredExhibit] = {}
    # The comparisons are planned first (what to compare does not depend on any result),
    # then run several at a time (:func:`ribin.compare.compare_many`); until then a planned
    # result is ``{"job": its index in jobs}``.
    jobs: list[tuple[Signature, Signature, CMCParams]] = []

    def full(region: RegionQuery, table: FeatureTable, row: int, key: str) -> dict[str, Any]:
        candidate = loaded.get(key)
        if candidate is None:
            candidate = load(str(table.exhibit_id[row]), str(table.country[row]))
            loaded[key] = candidate
        other = candidate.exhibit.signatures()[region.region]
        jobs.append((region.signature, other, cmc_params[region.region]))
        return {"job": len(jobs) - 1}

    out = []
    for index, (query, request) in enumerate(zip(queries, requests, strict=True)):
        rankings = state.rankings[index]
        per_region: dict[str, list[Found]] = {}
        for region in query.regions:
            n_compare, n_list = request.get(region.region, (0, 0))
            ranking, table = rankings[region.region], state.tables[region.region]
            found = []
            for position in range(n_list):
                row = int(ranking.rows[position])
                key = _row_key(table, row)
                result = full(region, table, row, key) if position < n_compare else None
                score = float(ranking.scores[position])
                found.append(Found(position, key, _row(table, row), score, result))
            per_region[region.region] = found
        # A candidate shortlisted in one region is compared in every region where it is a
        # candidate, so the combined ranking never weighs a one-region comparison against a
        # two-region one (a weak firing-pin prefilter then cannot cost a breech-face match).
        compared = {f.key for found in per_region.values() for f in found if f.result is not None}
        for region in query.regions:
            listed = per_region[region.region]
            ranking, table = rankings[region.region], state.tables[region.region]
            for i, item in enumerate(listed):
                if item.result is None and item.key in compared:
                    row = int(ranking.rows[item.position])
                    listed[i] = replace(item, result=full(region, table, row, item.key))
            wanted = compared - {f.key for f in listed}
            if not wanted:
                continue
            for position, row in enumerate(ranking.rows.tolist()):
                key = _row_key(table, row)
                if key in wanted:
                    score = float(ranking.scores[position])
                    result = full(region, table, row, key)
                    listed.append(Found(position, key, _row(table, row), score, result))
        out.append(per_region)

    comparisons = compare_many(jobs, on_done=on_compare)
    results = [
        {
            "score": c.score,
            "cmc_count": c.cmc_count,
            "rotation_deg": c.registration.rotation_deg,
            "dx_um": c.registration.dx_um,
            "dy_um": c.registration.dy_um,
        }
        for c in comparisons
    ]
    for per_region in out:
        for region_name, found in per_region.items():
            per_region[region_name] = [
                f if f.result is None else replace(f, result=results[f.result["job"]])
                for f in found
            ]
    return out


def _row_key(table: FeatureTable, row: int) -> str:
    # the same exhibit may be held by two countries: key by owner and content
    return f"{table.country[row]}/{table.content_id[row]}"


def _row(table: FeatureTable, row: int) -> CandidateRow:
    return CandidateRow(
        exhibit_id=str(table.exhibit_id[row]),
        country=str(table.country[row]),
        site=str(table.site[row]),
        caliber=str(table.caliber[row]),
        role=str(table.role[row]),
        content_id=str(table.content_id[row]),
    )


class Shards(Protocol):
    """Where the two shard steps run (one engine)."""

    def prefilter(
        self, queries: Sequence[ShardQuery], filters: Filters
    ) -> list[list[dict[str, np.ndarray]]]:
        """Step 1 on every shard; per shard, :func:`shard_scores`."""
        ...

    def compare(
        self,
        requests: list[Requests],
        queries: Sequence[ShardQuery],
        cmc_params: Mapping[str, CMCParams],
        progress: Callable[[int], None],
    ) -> list[list[dict[str, list[Found]]]]:
        """Step 2 on every shard (``requests`` per shard); calls ``progress(n_compared)``."""
        ...

    def provenance(self) -> dict[str, Any]:
        """``engine``, ``scheduler`` and ``shards`` (segment names searched)."""
        ...


class InProcessShards:
    """The embedded engine: the whole store is one shard, searched in this process."""

    def __init__(self, store: SignatureStore):
        self.store = store
        self._state: ShardState | None = None

    def prefilter(
        self, queries: Sequence[ShardQuery], filters: Filters
    ) -> list[list[dict[str, np.ndarray]]]:
        scopes = {query.scope for query in queries}
        common = scopes.pop() if len(scopes) == 1 else None  # read less when all agree
        regions = dict.fromkeys(r.region for query in queries for r in query.regions)
        tables = {region: self.store.features(scope=common, kind=region) for region in regions}
        self._state = rank_shard(tables, queries, filters)
        return [shard_scores(self._state)]

    def compare(
        self,
        requests: list[Requests],
        queries: Sequence[ShardQuery],
        cmc_params: Mapping[str, CMCParams],
        progress: Callable[[int], None],
    ) -> list[list[dict[str, list[Found]]]]:
        assert self._state is not None, "prefilter first"
        found = compare_shard(
            self._state,
            requests[0],
            queries,
            cmc_params,
            lambda exhibit_id, country: self.store.get(exhibit_id, country=country),
            lambda: progress(1),
        )
        return [found]

    def provenance(self) -> dict[str, Any]:
        return {
            "engine": "embedded",
            "scheduler": None,
            "shards": [ref.name for ref in self.store.segments()],
        }


@dataclass(frozen=True)
class _Merge:
    """The global prefilter ranking of one query region, merged from the shards' rankings."""

    offsets: np.ndarray  # where each shard's scores start in the concatenation
    rank_of: np.ndarray  # concatenated index -> 0-based global prefilter rank
    n: int
    n_full: int
    compare_counts: np.ndarray  # per shard: how many of its best are fully compared
    list_counts: np.ndarray  # per shard: how many of its best are listed

    @classmethod
    def of(
        cls, parts: Sequence[np.ndarray], params: SearchParams, top: int, modality: str = "3d"
    ) -> _Merge:
        sizes = [len(part) for part in parts]
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        scores = np.concatenate(parts) if parts else np.zeros(0)
        # stable: ties keep store order, as in one ranking over the whole store
        order = np.argsort(-scores, kind="stable")
        rank_of = np.empty(len(order), dtype=np.int64)
        rank_of[order] = np.arange(len(order))
        n = len(order)
        n_full = params.shortlist(n, modality)
        n_list = min(n, max(n_full, top))
        shard_of = np.searchsorted(offsets, order, side="right") - 1
        return cls(
            offsets,
            rank_of,
            n,
            n_full,
            np.bincount(shard_of[:n_full], minlength=len(parts)),
            np.bincount(shard_of[:n_list], minlength=len(parts)),
        )

    def rank(self, shard: int, position: int) -> int:
        return int(self.rank_of[self.offsets[shard] + position]) + 1


@dataclass(frozen=True)
class _Prepared:
    query: ShardQuery
    exhibit: Exhibit
    stored: StoredExhibit | None
    searcher: str
    scope: Scope


def run_search(
    store: SignatureStore,
    queries: Sequence[Exhibit | StoredExhibit | str],
    shards: Shards,
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
) -> list[SearchResult]:
    """The search of :func:`search_batch`, with the shard steps run by ``shards``."""
    started = time.perf_counter()
    network = network or load_network()
    filters = filters or Filters()
    params = params or SearchParams()
    if exhaustive:
        params = replace(params, exhaustive=True)
    cmc_params = {**DEFAULT_PARAMS, **(cmc_params or {})}
    if top < 1:
        raise InputError(None, f"top must be at least 1, not {top}")
    scope_text = scope if isinstance(scope, str) else ",".join(scope)
    prepared = [_prepare(store, query, scope, searcher, network) for query in queries]
    shard_queries = [p.query for p in prepared]

    scores = shards.prefilter(shard_queries, filters)
    merges = [
        {
            r.region: _Merge.of(
                [part[i][r.region] for part in scores], params, top, r.signature.modality
            )
            for r in p.query.regions
        }
        for i, p in enumerate(prepared)
    ]
    requests: list[Requests] = [
        [
            {
                region: (int(m.compare_counts[s]), int(m.list_counts[s]))
                for region, m in per.items()
                if m.list_counts[s]
            }
            for per in merges
        ]
        for s in range(len(scores))
    ]
    total = sum(m.n_full for per in merges for m in per.values())
    done = 0

    def advance(n: int) -> None:
        # the total is the shortlists' size; a candidate shortlisted in one region only is
        # compared in its other region too, which may take the count past it
        nonlocal done
        done += n
        if progress is not None:
            progress(done, max(total, done))

    found = shards.compare(requests, shard_queries, cmc_params, advance)
    shard_provenance = shards.provenance()
    results = []
    for i, p in enumerate(prepared):
        per_region: dict[str, dict[str, RegionMatch]] = {}
        rows_of: dict[str, CandidateRow] = {}
        for r in p.query.regions:
            merge = merges[i][r.region]
            model = (calibration or {}).get(model_key(r.region, r.signature.modality))
            matches: dict[str, dict[str, Any]] = {}
            for s, shard_found in enumerate(found):
                for item in shard_found[i].get(r.region, ()):
                    rows_of.setdefault(item.key, item.row)
                    entry: dict[str, Any] = {
                        "prefilter_rank": merge.rank(s, item.position),
                        "prefilter_score": item.prefilter_score,
                        "score": None,
                        "cmc_count": None,
                        "log_lr": None,
                    }
                    if item.result is not None:
                        entry.update(item.result)
                        if model is not None:
                            entry["log_lr"] = float(model.log10_lr(item.result["score"]))
                            entry["calibration"] = model.name or model_key(
                                r.region, r.signature.modality
                            )
                    matches[item.key] = entry
            per_region[r.region] = _rank_region(matches)
        by_region = {
            region: tuple(
                rows_of[key].exhibit_id
                for key, match in sorted(matches.items(), key=lambda kv: kv[1].rank)
                if match.rank <= top
            )
            for region, matches in per_region.items()
        }
        provenance = _provenance(
            store, p.exhibit, p.stored, params, cmc_params, calibration, network
        )
        provenance.update(shard_provenance)
        if len(prepared) > 1:
            provenance["batch_size"] = len(prepared)
        results.append(
            SearchResult(
                query=p.exhibit.exhibit_id,
                searcher=p.searcher,
                scope=scope_text,
                countries=tuple(sorted(p.scope.countries or network.countries)),
                candidates=_combine(per_region, rows_of, top),
                by_region=by_region,
                compared=sum(
                    1
                    for matches in per_region.values()
                    for m in matches.values()
                    if m.score is not None
                ),
                considered=sum(m.n for m in merges[i].values()),
                seconds=time.perf_counter() - started,
                provenance=provenance,
            )
        )
    return results


def _prepare(
    store: SignatureStore,
    query: Exhibit | StoredExhibit | str,
    scope: str | list[str],
    searcher: str | None,
    network: Network,
) -> _Prepared:
    exhibit, stored = _resolve_query(store, query)
    if searcher is None:
        if stored is None:
            raise InputError(None, "say which country is searching (--country CC)")
        searcher = stored.metadata.country
    store_scope = Scope.from_network(network, scope, searcher)
    signatures = exhibit.signatures()
    if not signatures:
        raise InputError(None, f"query {exhibit.exhibit_id!r} has no signature to search with")
    regions = tuple(
        RegionQuery(region, signature, prefilter.features(signature))
        for region, signature in signatures.items()
    )
    own = (stored.metadata.country, stored.content_id) if stored is not None else None
    same_source = frozenset(store.same_source(exhibit.source_sha256))
    return _Prepared(
        ShardQuery(exhibit.exhibit_id, store_scope, own, regions, same_source),
        exhibit,
        stored,
        searcher,
        store_scope,
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
    """Fully compared candidates first (by score), then the rest in prefilter order.

    The compared ones are the head of the prefilter ranking, so every other candidate's
    rank is its prefilter rank: ``matches`` need only hold the compared candidates and the
    others that will be shown.
    """
    compared = sorted(
        ((key, e) for key, e in matches.items() if e["score"] is not None),
        key=lambda item: item[1]["prefilter_rank"],
    )
    compared.sort(key=lambda item: (-(item[1]["score"] or 0.0), item[1]["prefilter_rank"]))
    ranked = {key: RegionMatch(rank=i + 1, **entry) for i, (key, entry) in enumerate(compared)}
    for key, entry in sorted(matches.items(), key=lambda item: item[1]["prefilter_rank"]):
        if entry["score"] is None:
            ranked[key] = RegionMatch(rank=entry["prefilter_rank"], **entry)
    return ranked


def combined_score(regions: Mapping[str, RegionMatch | None]) -> float | None:
    """The score the combined list is ranked by: the sum of the compared regions' scores.

    Every compared candidate has it, calibrated or not, and it never falls when one
    region's score rises (each region's score is its CMC count plus a tie-break in [0, 1),
    never negative), so a candidate at least as strong as another in every region the
    other was compared in ranks at least as high. A region that was not compared adds
    nothing. None when no region was compared.
    """
    scores = [m.score for m in regions.values() if m is not None and m.score is not None]
    return float(sum(scores)) if scores else None


def combined_log_lr(
    regions: Mapping[str, RegionMatch | None],
) -> tuple[float | None, str | None, tuple[str, ...]]:
    """Sum of the calibrated compared regions' log10 LRs, the calibrations, the regions.

    Regions are taken as independent given the source (docs/method.md gives the measured
    dependence); an uncalibrated region adds no LR and is not among the regions returned.
    ``(None, None, ())`` when no compared region is calibrated.
    """
    calibrated = [
        (region, m)
        for region, m in regions.items()
        if m is not None and m.score is not None and m.log_lr is not None
    ]
    if not calibrated:
        return None, None, ()
    names = sorted({m.calibration or "unnamed" for _, m in calibrated})
    return (
        float(sum(m.log_lr for _, m in calibrated)),
        " + ".join(names),
        tuple(region for region, _ in calibrated),
    )


def _combine(
    per_region: dict[str, dict[str, RegionMatch]],
    rows_of: dict[str, CandidateRow],
    top: int,
) -> tuple[Candidate, ...]:
    """One list ranked by :func:`combined_score`, the log10 LR shown beside it."""
    combined = []
    for key in rows_of:
        regions = {r: per_region[r].get(key) for r in REGIONS if r in per_region}
        score = combined_score(regions)
        if score is None:
            continue
        combined.append((key, score, regions))
    combined.sort(key=lambda c: (-c[1], c[0]))
    out = []
    for rank, (key, score, regions) in enumerate(combined[:top], start=1):
        row = rows_of[key]
        log_lr, calibration, lr_regions = combined_log_lr(regions)
        out.append(
            Candidate(
                rank=rank,
                exhibit_id=row.exhibit_id,
                country=row.country,
                site=row.site,
                caliber=row.caliber,
                role=row.role,
                content_id=row.content_id,
                score=score,
                log_lr=log_lr,
                breech_face=regions.get("breech_face"),
                firing_pin=regions.get("firing_pin"),
                calibration=calibration,
                lr_regions=lr_regions,
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
        "combination": "ranked by the sum of region scores; log_lr: sum of the calibrated "
        "regions' log10 LRs (regions taken as independent)",
        "network": network.source,
    }


make_module_callable(__name__, search)
