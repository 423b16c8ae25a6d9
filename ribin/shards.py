"""The search pipeline both engines share: shard steps, the merge and the combined ranking.

:func:`run_search` is the whole search; the embedded engine (:func:`ribin.search.search`)
runs it over :class:`InProcessShards` (the whole store in this process), the Dask engine
(:mod:`ribin.distributed`) over one task per store segment. Both run the shard steps
(:func:`rank_shard`, :func:`compare_shard`) and the merge below, so they return the same
ranking and scores. This module imports neither engine; every public name here is
importable from :mod:`ribin.search` too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np

from ribin import __version__, prefilter
from ribin.calibration import Calibration, model_key
from ribin.compare import DEFAULT_PARAMS, CMCParams, compare_many, effective_params
from ribin.errors import InputError
from ribin.exhibit import REGIONS, Exhibit, Signature
from ribin.network import Network, Scope, load_network
from ribin.search_types import (
    Candidate,
    Filters,
    Progress,
    RegionMatch,
    SearchParams,
    SearchResult,
)
from ribin.store import FeatureTable, SignatureStore, StoredExhibit

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
    # a copy, not a view: a view would keep the whole feature matrix alive
    slim = {
        name: replace(table, features=table.features[:0].copy()) for name, table in tables.items()
    }
    return ShardState(slim, rankings)


def join_states(
    parts: Sequence[ShardState], regions: Sequence[str], queries: Sequence[ShardQuery]
) -> ShardState:
    """The step 1 state of the concatenation of ``parts`` (consecutive shards, in order).

    Equal to :func:`rank_shard` over the concatenated tables: a score depends only on its
    candidate, and a stable sort of the shards' rankings, each sorted stably and placed in
    shard order, breaks ties by table row as the sort over the whole table does. Every part
    holds a table for each of ``regions`` and a ranking for each region of each query.
    """
    tables = {
        region: FeatureTable.concat([part.tables[region] for part in parts]) for region in regions
    }
    # where each part's rows start in the joined table of each region
    offsets = {
        region: np.cumsum([0] + [len(part.tables[region]) for part in parts]).tolist()
        for region in regions
    }
    rankings: list[dict[str, Ranking]] = []
    for index, query in enumerate(queries):
        per_region = {}
        for region in query.regions:
            if not parts:
                per_region[region.region] = Ranking(np.zeros(0, np.int64), np.zeros(0))
                continue
            rankings_of = [part.rankings[index][region.region] for part in parts]
            all_rows = np.concatenate(
                [r.rows + o for r, o in zip(rankings_of, offsets[region.region][:-1], strict=True)]
            ).astype(np.int64, copy=False)
            all_scores = np.concatenate([r.scores for r in rankings_of])
            order = np.argsort(-all_scores, kind="stable")
            per_region[region.region] = Ranking(all_rows[order], all_scores[order])
        rankings.append(per_region)
    return ShardState(tables, rankings)


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
    # The comparisons are planned first (what to compare does not depend on any result),
    # then run several at a time (:func:`ribin.compare.compare_many`), each candidate read
    # as its first comparison is handed out, while the earlier ones run; until then a
    # planned result is ``{"job": its index in jobs}``.
    jobs: list[tuple[RegionQuery, str, str, str]] = []

    def full(region: RegionQuery, table: FeatureTable, row: int, key: str) -> dict[str, Any]:
        jobs.append((region, key, str(table.exhibit_id[row]), str(table.country[row])))
        return {"job": len(jobs) - 1}

    def pairs() -> Iterator[tuple[Signature, Signature, CMCParams]]:
        loaded: dict[str, StoredExhibit] = {}
        for region, key, exhibit_id, country in jobs:
            candidate = loaded.get(key)
            if candidate is None:
                candidate = loaded[key] = load(exhibit_id, country)
            other = candidate.exhibit.signatures()[region.region]
            yield region.signature, other, cmc_params[region.region]

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
            # the rows whose content ID is wanted, in ranking order (a key per row of a
            # 10^5 ranking would cost more than the search's prefilter)
            # (every split of a key: neither part is trusted to be free of "/")
            content_ids = {k.split("/", i)[-1] for k in wanted for i in range(1, k.count("/") + 1)}
            ranked_ids = table.content_id[ranking.rows].tolist()
            for position in [p for p, c in enumerate(ranked_ids) if c in content_ids]:
                row = int(ranking.rows[position])
                key = _row_key(table, row)
                if key in wanted:
                    score = float(ranking.scores[position])
                    result = full(region, table, row, key)
                    listed.append(Found(position, key, _row(table, row), score, result))
        out.append(per_region)

    comparisons = compare_many(pairs(), on_done=on_compare)
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
        regions = tuple(dict.fromkeys(r.region for query in queries for r in query.regions))
        # Segment by segment: each segment's features are read once for every region and
        # query and dropped once scored, so the store's feature table is never held whole.
        parts = self.store.map_features(
            lambda tables: rank_shard(tables, queries, filters), scope=common, kinds=regions
        )
        self._state = join_states(parts, regions, queries)
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
            # a calibration holds for pairs of one modality: none for a query searched against
            # the other modality (--modality), which `ribin compare` refuses to compare
            same_modality = (filters.modality or r.signature.modality) == r.signature.modality
            model = (
                (calibration or {}).get(model_key(r.region, r.signature.modality))
                if same_modality
                else None
            )
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
            store, p.exhibit, p.stored, params, cmc_params, calibration, network, filters.modality
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
    """One list ranked by :func:`combined_score` of every compared region (2D firing pin
    included: docs/method.md, "2D firing pin"), the log10 LR shown beside it."""
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
    modality: str | None = None,
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
        **_cmc_params_2d(exhibit, cmc_params, modality),
        "calibration": {k: m.source for k, m in (calibration or {}).items()},
        "combination": "ranked by the sum of region scores; log_lr: sum of the calibrated "
        "regions' log10 LRs (regions taken as independent)",
        "network": network.source,
    }


def _cmc_params_2d(
    exhibit: Exhibit, cmc_params: Mapping[str, CMCParams], modality: str | None = None
) -> dict[str, Any]:
    """A 2D query's comparisons with 2D exhibits: the parameters they used, where these
    differ from ``cmc_params`` (:func:`ribin.compare.effective_params`). ``modality``: the
    candidates' (a search's modality filter; default the query's own)."""
    used = {
        k: effective_params(k, sig.modality, modality or sig.modality, cmc_params.get(k))
        for k, sig in exhibit.signatures().items()
        if sig.modality == "2d"
    }
    changed = {k: asdict(v) for k, v in used.items() if v != cmc_params.get(k)}
    return {"cmc_params_2d": changed} if changed else {}
