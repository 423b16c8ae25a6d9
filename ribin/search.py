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
store segment); both engines run the shard steps and the merge of :mod:`ribin.shards`, so
they return the same ranking and scores. :func:`search_batch` runs many queries in one pass
over the store. The parameters, filters and results live in :mod:`ribin.search_types`; they
and the pipeline's public names are importable from here as before. Imports run one way:
``search`` -> ``shards`` -> ``search_types``, and ``distributed`` -> ``shards`` (``search``
loads ``distributed`` only when a search asks for Dask).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from ribin._callable import make_module_callable
from ribin.calibration import Calibration
from ribin.compare import CMCParams
from ribin.errors import InputError
from ribin.exhibit import Exhibit
from ribin.network import Network
from ribin.search_types import (
    Candidate,
    Filters,
    Progress,
    RegionMatch,
    SearchParams,
    SearchResult,
)
from ribin.shards import (
    CandidateRow,
    Found,
    InProcessShards,
    Ranking,
    RegionQuery,
    Requests,
    ShardQuery,
    Shards,
    ShardState,
    candidate_mask,
    combined_log_lr,
    combined_score,
    compare_shard,
    rank_shard,
    run_search,
    shard_scores,
)
from ribin.shards import _combine as _combine  # re-exported for tests and docs/method.md
from ribin.store import SignatureStore, StoredExhibit

# The search's types (ribin.search_types) and pipeline (ribin.shards) are importable from
# here as before.
__all__ = [
    "ENGINES",
    "Candidate",
    "CandidateRow",
    "Engine",
    "Filters",
    "Found",
    "InProcessShards",
    "Progress",
    "Ranking",
    "RegionMatch",
    "RegionQuery",
    "Requests",
    "SearchParams",
    "SearchResult",
    "ShardQuery",
    "ShardState",
    "Shards",
    "candidate_mask",
    "combined_log_lr",
    "combined_score",
    "compare_shard",
    "rank_shard",
    "run_search",
    "search",
    "search_batch",
    "shard_scores",
]

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


make_module_callable(__name__, search)
