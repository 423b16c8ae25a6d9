"""The Dask engine against the embedded one: latency, overhead and batch throughput.

    python benchmarks/bench_distributed.py            # 10^4 and 10^5 (10^5: ~1 h here)
    python benchmarks/bench_distributed.py --quick    # 2000 exhibits, 4 segments (~5 min)
    python benchmarks/bench_distributed.py --sizes 10000 --segments 8 --batch 100

Stores are written directly (``benchmarks/_common.py``: no rendering, no extraction). A
store of n exhibits holds ``--pool`` full-size exhibits (breech face 333 x 333 px, firing
pin 78 x 78 px, 3 shots per firearm), spread evenly over its segments, and n - pool "thin"
ones (16 x 16 px surfaces) whose stored feature vectors are a pool vector times 0.25: the
feature table, what the prefilter reads and scores, is as large as a real store's, and the
shortlist holds only full-size exhibits. Queries are fresh shots of stored firearms,
searched by BB at scope ``network`` with a fixed shortlist (``--shortlist``) per region.

Measured, in one run so that the machine's load hits every engine alike:

- latency of one search: embedded, and on a LocalCluster of 1 and 2 worker processes
  (already started and warm; cluster start-up is printed apart), best of ``--repeat``;
- the Dask path's overhead: its latency less the embedded one's;
- the scaling model's inputs, in this process: each segment's step 1 (open, read the
  features, mask, score, sort: :func:`ribin.distributed._segment_state`), the client's
  merge of the segments' rankings, and the time per full comparison;
- batch throughput: ``--batch`` queries in one :func:`ribin.search.search_batch`, each
  shortlisting ``--batch-shortlist`` per region, embedded and on each cluster.

Every Dask result is checked equal to the embedded one (ranking and scores).
"""

from __future__ import annotations

import argparse
import copy
import itertools
import logging
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import (
    direct_exhibit,
    direct_firearm,
    direct_metadata,
    machine,
    thin_exhibit,
    write_direct_store,
)
from results import record

from ribin import prefilter
from ribin.exhibit import Exhibit
from ribin.network import load_network
from ribin.search import (
    Filters,
    InProcessShards,
    SearchParams,
    search,
    search_batch,
)
from ribin.shards import _Merge, _prepare
from ribin.store import SignatureStore

SHOTS = 3
THIN_SCALE = 0.25
SEARCHER = "BB"


def make_pool(count: int) -> tuple[list[Exhibit], list[dict[str, np.ndarray]]]:
    exhibits = [direct_exhibit(i, direct_firearm(i // SHOTS), i) for i in range(count)]
    vectors = [{k: prefilter.features(s) for k, s in e.signatures().items()} for e in exhibits]
    return exhibits, vectors


def build(root: Path, n: int, segments: int, pool: list[Exhibit], vectors: list[dict]) -> Path:
    """n exhibits in ``segments`` segments; pool exhibit i is exhibit number i * stride."""
    path = root / f"store-{n}-{segments}"
    stride = max(1, n // len(pool))
    bounds = np.linspace(0, n, segments + 1).astype(int)

    def exhibit(number: int) -> Exhibit:
        index, rest = divmod(number, stride)
        if rest == 0 and index < len(pool):
            full = pool[index]
            return Exhibit(
                f"D-{number:07d}",
                full.breech_face,
                full.firing_pin,
                full.source_sha256,
                full.source_name,
                full.software_version,
            )
        return thin_exhibit(number)

    def features(item: Exhibit) -> dict[str, np.ndarray]:
        number = int(item.exhibit_id[2:])
        index, rest = divmod(number, stride)
        if rest == 0 and index < len(pool):
            return vectors[index]
        source = vectors[index % len(pool)]
        return {k: (v * THIN_SCALE).astype(np.float32) for k, v in source.items()}

    groups = (
        [(exhibit(k), direct_metadata(k)) for k in range(lo, hi)]
        for lo, hi in itertools.pairwise(bounds)
    )
    start = time.perf_counter()
    write_direct_store(path, groups, features)
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    print(
        f"\nstore: {n} exhibits ({len(pool)} full size) in {segments} segments, "
        f"{size / 1e9:.2f} GB, written in {time.perf_counter() - start:.0f} s",
        flush=True,
    )
    return path


def _same(a, b) -> bool:
    one, other = copy.deepcopy(a.to_json()), copy.deepcopy(b.to_json())
    for document in (one, other):
        document.pop("seconds")
        document["provenance"] = {}
    return one == other


def timed(run, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return min(times), result  # the least disturbed run: the machine is shared


def model_inputs(store: SignatureStore, query: Exhibit, params: SearchParams) -> dict:
    """Step 1 per segment and whole-store, and the client's merge, timed in this process.

    Each is the best of three (warm) runs.
    """
    from ribin.distributed import _segment_state

    prepared = _prepare(store, query, "network", SEARCHER, load_network())
    per_segment, parts = [], {r.region: [] for r in prepared.query.regions}
    for ref in store.segments():
        times = []
        for _ in range(3):
            start = time.perf_counter()
            state = _segment_state(str(ref.path), sorted(ref.removed), [prepared.query], Filters())
            times.append(time.perf_counter() - start)
        per_segment.append(min(times))
        for region, ranking in state.rankings[0].items():
            parts[region].append(ranking.scores)
    whole = []
    for _ in range(3):
        start = time.perf_counter()
        InProcessShards(store).prefilter([prepared.query], Filters())
        whole.append(time.perf_counter() - start)
    merges = []
    for _ in range(3):
        start = time.perf_counter()
        for region_parts in parts.values():
            _Merge.of(region_parts, params, 20)
        merges.append(time.perf_counter() - start)
    return {"segment_s": per_segment, "store_s": min(whole), "merge_s": min(merges)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2000 exhibits, 4 segments")
    parser.add_argument("--sizes", default="10000,100000", help="store sizes (exhibits)")
    parser.add_argument("--segments", default="8,16", help="segments per store, per size")
    parser.add_argument("--pool", type=int, default=30, help="full-size exhibits per store")
    parser.add_argument("--shortlist", type=int, default=4, help="per region, one search")
    parser.add_argument("--repeat", type=int, default=3, help="searches per engine (best)")
    parser.add_argument("--batch", type=int, default=100, help="queries in the batch")
    parser.add_argument("--batch-shortlist", type=int, default=1, help="per region, batch")
    parser.add_argument("--workers", default="1,2", help="LocalCluster sizes")
    parser.add_argument("--root", type=Path, help="where to write the stores (default: tmp)")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.segments, args.pool, args.batch, args.repeat = "2000", "4", 12, 10, 2
    sizes = [int(s) for s in args.sizes.split(",")]
    segment_counts = [int(s) for s in args.segments.split(",")]
    segment_counts += [segment_counts[-1]] * (len(sizes) - len(segment_counts))
    worker_counts = [int(w) for w in args.workers.split(",")]
    params = SearchParams(shortlist_min=args.shortlist, shortlist_fraction=0.0)
    batch_params = SearchParams(shortlist_min=args.batch_shortlist, shortlist_fraction=0.0)
    print(machine())
    print(
        f"shortlist {args.shortlist} per region (one search), {args.batch_shortlist} (batch); "
        f"latency: best of {args.repeat} searches"
    )

    from distributed import Client, LocalCluster

    pool, vectors = make_pool(args.pool)
    firearms = max(1, args.pool // SHOTS)
    queries = [
        direct_exhibit(10**7 + q, direct_firearm(q % firearms), 10**7 + q)
        for q in range(max(args.batch, args.repeat))
    ]
    root = args.root or Path(tempfile.mkdtemp(prefix="bench-distributed-"))
    rows = []
    try:
        for n, segments in zip(sizes, segment_counts, strict=True):
            path = build(root, n, segments, pool, vectors)
            with SignatureStore.open(path) as store:

                def one(**engine):
                    return search(store, queries[0], searcher=SEARCHER, params=params, **engine)

                def batch(**engine):
                    return search_batch(
                        store,
                        queries[: args.batch],
                        searcher=SEARCHER,
                        params=batch_params,
                        **engine,
                    )

                one()  # warm: JIT cache, page cache
                embedded, reference = timed(one, args.repeat)
                inputs = model_inputs(store, queries[0], params)
                compared = reference.compared
                start = time.perf_counter()
                batch_reference = batch()
                batch_rates = {"embedded": args.batch / (time.perf_counter() - start)}
                latency = {"embedded": embedded}
                startup = {}
                for workers in worker_counts:
                    start = time.perf_counter()
                    with (
                        LocalCluster(
                            n_workers=workers,
                            threads_per_worker=1,
                            processes=True,
                            dashboard_address=None,
                            silence_logs=logging.ERROR,
                        ) as cluster,
                        Client(cluster) as client,
                    ):
                        startup[workers] = time.perf_counter() - start
                        one(scheduler=client)  # warm the workers
                        latency[workers], result = timed(
                            lambda client=client: one(scheduler=client), args.repeat
                        )
                        assert _same(result, reference), "dask result differs from embedded"
                        start = time.perf_counter()
                        results = batch(scheduler=client)
                        batch_rates[workers] = args.batch / (time.perf_counter() - start)
                        assert all(
                            _same(a, b) for a, b in zip(results, batch_reference, strict=True)
                        ), "dask batch differs from embedded"
            seg = inputs["segment_s"]
            step1 = sum(seg)
            rest = embedded - inputs["store_s"] - inputs["merge_s"]
            per_compare = max(0.0, rest) / max(compared, 1)
            print(
                f"  model inputs (this process, best of 3): step 1 per segment median "
                f"{statistics.median(seg) * 1e3:.0f} ms, max {max(seg) * 1e3:.0f} ms, sum "
                f"{step1:.2f} s ({step1 / n * 1e6:.0f} us per exhibit); step 1 on the whole "
                f"store {inputs['store_s']:.2f} s; merge {inputs['merge_s'] * 1e3:.1f} ms; "
                f"{compared} full comparisons, {per_compare:.2f} s each (the embedded latency "
                f"less step 1 and merge)"
            )
            print(
                "  cluster start-up (not in the latencies): "
                + ", ".join(f"{w} worker(s) {s:.1f} s" for w, s in startup.items())
            )
            print("  every Dask result equal to the embedded one: True")
            rows.append((n, segments, latency, batch_rates))
            shutil.rmtree(path)
    finally:
        if args.root is None:
            shutil.rmtree(root, ignore_errors=True)

    print(
        "\n| exhibits | segments | embedded s | "
        + " | ".join(f"dask {w}w s (overhead)" for w in worker_counts)
        + f" | batch of {args.batch}, queries/s: embedded | "
        + " | ".join(f"dask {w}w" for w in worker_counts)
        + " |"
    )
    print("|" + "---|" * (3 + 2 * len(worker_counts) + 1))
    table = []
    for n, segments, latency, rates in rows:
        cells = [f"{n}", f"{segments}", f"{latency['embedded']:.2f}"]
        cells += [
            f"{latency[w]:.2f} ({latency[w] - latency['embedded']:+.2f})" for w in worker_counts
        ]
        cells += [f"{rates['embedded']:.2f}"] + [f"{rates[w]:.2f}" for w in worker_counts]
        print("| " + " | ".join(cells) + " |")
        table.append(cells)
    record(
        "distributed",
        "Embedded and Dask engines, same query (seconds; Dask overhead in brackets)",
        ["exhibits", "segments", "embedded s"]
        + [f"Dask {w} worker(s) s" for w in worker_counts]
        + [f"batch of {args.batch}: embedded queries/s"]
        + [f"Dask {w} worker(s) queries/s" for w in worker_counts],
        table,
        "Every Dask result equal to the embedded one (checked in the run). LocalCluster of "
        "worker processes on this machine; start-up not included. See docs/scaling.md for "
        "the scaling model built from these figures.",
    )


if __name__ == "__main__":
    main()
