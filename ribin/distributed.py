"""Network-scale search on Dask: a store's segments spread over a cluster, same results.

The sibling of the embedded engine in :mod:`ribin.search`, running the same shard steps
(:func:`ribin.shards.rank_shard`, :func:`ribin.shards.compare_shard`) with one store
segment per task:

1. per segment, a task opens the segment file itself, ranks its candidates by prefilter
   score and keeps that ranking in worker memory; the client fetches only the sorted
   scores, merges them into the global ranking and picks the shortlist with the embedded
   engine's rule;
2. per segment holding part of the shortlist, a task (on the worker that holds step 1's
   ranking) fully compares those candidates and returns their scores.

Tasks receive file paths and the manifest's view of each segment (its tombstoned content
IDs), never h5py objects or stores, so the workers must see the store at the same path
(a shared file system, or a copy at the same place). A task that raises is retried
(``retries``); a task whose worker dies is rerun on another worker (Dask's
``distributed.scheduler.allowed-failures``, 3 by default). A search either uses every
segment or raises :class:`ShardError` naming the ones it could not search.

Dask is imported only here, and only when a search asks for it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ribin.compare import CMCParams
from ribin.errors import InputError, RibinError
from ribin.exhibit import Exhibit
from ribin.search_types import Filters, SearchResult
from ribin.shards import (
    Found,
    Requests,
    ShardQuery,
    ShardState,
    compare_shard,
    rank_shard,
    run_search,
    shard_scores,
)
from ribin.store import SegmentRef, SignatureStore, StoredExhibit

RETRIES = 2  # reruns of a task that raised (an I/O hiccup); dead workers are handled apart


class ShardError(RibinError):
    """Store segments that could not be searched; the search returns nothing."""


def search(
    store: SignatureStore,
    query: Exhibit | StoredExhibit | str,
    *,
    scheduler: Any = None,
    workers: int | None = None,
    retries: int = RETRIES,
    **options: Any,
) -> SearchResult:
    """:func:`ribin.search.search` on a Dask cluster, one task per store segment.

    Parameters
    ----------
    store : SignatureStore
        Open store; its segment files must be readable by the workers at the same paths.
    query : Exhibit, StoredExhibit or str
        As for :func:`ribin.search.search`.
    scheduler : str or distributed.Client, optional
        Scheduler address (``"tcp://host:8786"``) or a connected client. None starts a
        ``LocalCluster`` of worker processes (h5py holds a global lock, so threads would
        read one file at a time) for this search.
    workers : int, optional
        Worker processes of that local cluster (default: one per CPU, at most one per
        segment).
    retries : int
        Reruns of a task that raised before its segment counts as failed.
    **options
        The keyword arguments of :func:`ribin.search.search` (``scope``, ``top``, ...).

    Returns
    -------
    SearchResult
        The embedded engine's result: same ranking and scores. ``provenance`` adds
        ``engine="dask"``, the ``scheduler`` address, ``workers`` and ``shards``.

    Raises
    ------
    ShardError
        Segments that failed on every try (one line naming them); nothing is returned.
    InputError
        The scheduler cannot be reached, and every error of :func:`ribin.search.search`.
    """
    return search_batch(
        store, [query], scheduler=scheduler, workers=workers, retries=retries, **options
    )[0]


def search_batch(
    store: SignatureStore,
    queries: Sequence[Exhibit | StoredExhibit | str],
    *,
    scheduler: Any = None,
    workers: int | None = None,
    retries: int = RETRIES,
    **options: Any,
) -> list[SearchResult]:
    """Many queries against the same segments in one pass (the nightly cross-check).

    Each segment's features are read once for the whole batch and each candidate exhibit
    once however many queries shortlist it; each result equals :func:`search` of that
    query alone.

    Parameters
    ----------
    store, scheduler, workers, retries, **options
        As for :func:`search`.
    queries : sequence of Exhibit, StoredExhibit or str
        The queries.

    Returns
    -------
    list of SearchResult
        One per query, in order.
    """
    segments = store.segments()
    with _connect(scheduler, workers, len(segments)) as client:
        shards = DaskShards(client, store, segments, retries)
        return run_search(store, queries, shards, **options)


@contextlib.contextmanager
def _connect(scheduler: Any, workers: int | None, n_segments: int) -> Iterator[Any]:
    """A connected ``distributed.Client``: to ``scheduler``, or to a new LocalCluster."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise InputError(
            None, "the Dask engine needs dask[distributed]: pip install 'ribin[dask]'"
        ) from None
    if scheduler is None:
        n_workers = workers or max(1, min(os.cpu_count() or 1, n_segments))
        with (
            LocalCluster(
                n_workers=n_workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client
        return
    if not isinstance(scheduler, str):
        yield scheduler  # a client the caller connected, and closes
        return
    try:
        client = Client(scheduler, timeout="20s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise InputError(None, f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    with client:
        yield client


class DaskShards:
    """The two shard steps of :func:`ribin.shards.run_search` as Dask tasks, per segment.

    Parameters
    ----------
    client : distributed.Client
        Connected client.
    store : SignatureStore
        The store searched (named in errors).
    segments : list of SegmentRef
        Its live segments (``store.segments()``), one shard each.
    retries : int
        Reruns of a task that raised.
    """

    def __init__(
        self, client: Any, store: SignatureStore, segments: list[SegmentRef], retries: int
    ):
        self.client = client
        self.store = store
        self.segments = segments
        self.retries = retries
        self._token = uuid.uuid4().hex[:12]
        self._queries: Any = None
        self._states: list[Any] = []

    def _key(self, step: str, name: str) -> str:
        return f"ribin-{step}-{name}-{self._token}"

    def prefilter(
        self, queries: Sequence[ShardQuery], filters: Filters
    ) -> list[list[dict[str, np.ndarray]]]:
        submit = self.client.submit
        # a task rather than scatter: the scheduler can recompute it if its worker dies. It
        # carries the query surfaces once (a batch of 100 full-size queries: ~45 MB), so
        # Dask's warning about a large graph says nothing useful here.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Sending large graph", UserWarning)
            self._queries = submit(_identity, list(queries), key=self._key("queries", "all"))
        self._states = [
            submit(
                _segment_state,
                str(ref.path),
                sorted(ref.removed),
                self._queries,
                filters,
                key=self._key("prefilter", ref.name),
                retries=self.retries,
            )
            for ref in self.segments
        ]
        scores = [
            submit(shard_scores, state, key=self._key("scores", ref.name), retries=self.retries)
            for ref, state in zip(self.segments, self._states, strict=True)
        ]
        return self._gather(scores, self.segments)

    def compare(
        self,
        requests: list[Requests],
        queries: Sequence[ShardQuery],
        cmc_params: Mapping[str, CMCParams],
        progress: Callable[[int], None],
    ) -> list[list[dict[str, list[Found]]]]:
        from distributed import as_completed

        found: list[list[dict[str, list[Found]]]] = [[{} for _ in queries] for _ in requests]
        futures, refs, counts = [], [], {}
        for index, (ref, state, request) in enumerate(
            zip(self.segments, self._states, requests, strict=True)
        ):
            if not any(request):
                continue  # nothing of this segment is listed
            future = self.client.submit(
                _segment_compare,
                str(ref.path),
                state,
                request,
                self._queries,
                dict(cmc_params),
                key=self._key("compare", ref.name),
                retries=self.retries,
            )
            futures.append(future)
            refs.append((index, ref))
            counts[future.key] = sum(n for per in request for n, _ in per.values())
        for future in as_completed(futures):
            if future.status == "finished":
                progress(counts[future.key])
        for (index, _), result in zip(
            refs, self._gather(futures, [ref for _, ref in refs]), strict=True
        ):
            found[index] = result
        self._states, self._queries = [], None  # release the workers' rankings
        return found

    def _gather(self, futures: list[Any], refs: list[SegmentRef]) -> list[Any]:
        """Every result, or :class:`ShardError` naming each segment that failed."""
        from distributed import wait

        wait(futures)
        failed = []
        for future, ref in zip(futures, refs, strict=True):
            if future.status == "finished":
                continue
            try:
                reason = _one_line(future.exception(timeout=10))
            except Exception as exc:  # a lost or cancelled task has no exception to fetch
                reason = f"task {future.status}: {_one_line(exc)}"
            failed.append(f"{ref.name} ({reason})")
        if failed:
            raise ShardError(
                f"{Path(self.store.path).name}: could not search {len(failed)} of "
                f"{len(self.segments)} segments, so no result: " + "; ".join(failed)
            )
        return self.client.gather(futures)

    def provenance(self) -> dict[str, Any]:
        info = self.client.scheduler_info()
        return {
            "engine": "dask",
            "scheduler": self.client.scheduler.address,
            "workers": len(info.get("workers", {})),
            "shards": [ref.name for ref in self.segments],
        }


def _one_line(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# ---------------------------------------------------------------- tasks (run on workers)


def _identity(value: Any) -> Any:
    return value


def _segment_state(
    path: str, removed: list[str], queries: Sequence[ShardQuery], filters: Filters
) -> ShardState:
    """Step 1 on one segment file, opened here (read-only, as a one-segment store)."""
    scopes = {query.scope for query in queries}
    common = scopes.pop() if len(scopes) == 1 else None
    regions = dict.fromkeys(r.region for query in queries for r in query.regions)
    with SignatureStore.open(path, "r") as segment:
        tables = {region: segment.features(scope=common, kind=region) for region in regions}
    return rank_shard(tables, queries, filters, frozenset(removed))


def _segment_compare(
    path: str,
    state: ShardState,
    requests: Requests,
    queries: Sequence[ShardQuery],
    cmc_params: Mapping[str, CMCParams],
) -> list[dict[str, list[Found]]]:
    """Step 2 on one segment file: full comparisons of its shortlisted candidates."""
    with SignatureStore.open(path, "r") as segment:
        return compare_shard(
            state,
            requests,
            queries,
            cmc_params,
            lambda exhibit_id, country: segment.get(exhibit_id, country=country),
        )
