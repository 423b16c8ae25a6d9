"""Search latency at 10^4 and 10^5 stored exhibits, measured end to end, and batch throughput.

    python benchmarks/make_docs.py --only search_speed   # records benchmarks/results/search_speed.*
    python benchmarks/bench_search_speed.py              # the same run, printed only
    python benchmarks/bench_search_speed.py --quick      # a smoke run (10^3 and 10^4)
    python benchmarks/bench_search_speed.py --workdir /tmp/stores   # keep (and reuse) the stores

Signatures are generated directly to save time: no rendering, no extraction. Each is a
band-passed (30-600 um) random surface of the default signature size at 12.5 um (breech
face 333 x 333 px with a firing-pin hole, firing pin 78 x 78 px), the firearm's own marks
plus per-shot noise, 3 shots per firearm, spread over the network's 9 countries. Queries
are fresh shots of stored firearms, searched at scope ``network`` by BB with the default
:class:`ribin.search.SearchParams` (shortlist max(10, 0.1 % of n) per region).

A store of n exhibits is written for every size (segments of 1000 exhibits, written by
``--workers`` processes with the pool's vectors given, as ``docs/formats.md`` describes):
the ``--pool`` full-size exhibits and n - pool "thin" ones, 16 x 16 px surfaces whose
stored vector is a pool vector times :data:`THIN_SCALE`, so they score a quarter of their
source and stay off the shortlist (each search counts the thin ones it compared: 0 means
every comparison was a full-size one). The feature table the prefilter reads and scores is
as large as a real store's; the surfaces behind it are smaller, which only shrinks the
store on disk (a real 10^5 store is ~33 GB).

Per size, in a fresh Python process (Numba's on-disk cache as the package leaves it, the
operating system's file cache as it is: the store was just written or read, so its
features are likely in memory, not read from disk):

- cold: :func:`ribin.search.search` of one query, the first call of the process, with its
  stages timed: prefilter (the features read segment by segment, and scored and sorted),
  comparisons (``compare_many``, 2 at a time; the candidates are read in the calling thread
  as their comparisons are handed out, overlapping the earlier ones: the time spent reading
  is shown apart, and is part of the comparison stage) and the rest (merge, ranking,
  provenance); peak memory (``ru_maxrss``) after it;
- warm: the same search again in the same process;
- batch: :func:`ribin.search.search_batch` of ``--batch`` other queries: queries per second;
- for reference, :meth:`~ribin.store.SignatureStore.features` of both regions as a whole
  table (what the search read before it went segment by segment): time and memory.

Also measured: write rates (``add_many``, which computes every vector, and the direct
segment write) and one exhaustive search over one country of a small store.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numba
import numpy as np
from _common import (
    direct_exhibit,
    direct_firearm,
    direct_metadata,
    machine,
    shortlist_params,
    thin_exhibit,
    write_direct_store,
)
from results import record

from ribin import prefilter
from ribin.exhibit import Exhibit
from ribin.search import SearchParams, search

THREADS = numba.get_num_threads()  # comparisons at a time (ribin.compare.compare_many)

SHOTS = 3
SEARCHER = "BB"
SEGMENT = 1000  # exhibits per segment
THIN_SCALE = 0.25
"""Thin exhibits store their source's vector times this: they score a quarter as high."""
BUILT = "bench-built.json"  # beside a finished store: how it was built (for --workdir reuse)


def make_pool(count: int) -> tuple[list[Exhibit], list[dict[str, np.ndarray]]]:
    """``count`` full-size exhibits (3 shots per firearm) and their feature vectors."""
    start = time.perf_counter()
    exhibits = [pool_exhibit(number) for number in range(count)]
    made = time.perf_counter() - start
    start = time.perf_counter()
    vectors = [{k: prefilter.features(s) for k, s in e.signatures().items()} for e in exhibits]
    per = (time.perf_counter() - start) / count
    bf = exhibits[0].breech_face.surface.shape
    fp = exhibits[0].firing_pin.surface.shape
    print(
        f"pool: {count} exhibits (BF {bf[0]}x{bf[1]}, FP {fp[0]}x{fp[1]} px, 12.5 um) made in "
        f"{made:.0f} s; feature vectors {per * 1e3:.0f} ms per exhibit (both regions)"
    )
    return exhibits, vectors


def pool_exhibit(number: int) -> Exhibit:
    """Full-size exhibit ``D-<number>``, shot ``number % 3`` of firearm ``number // 3``."""
    return direct_exhibit(number, direct_firearm(number // SHOTS), number)


def query_exhibit(q: int) -> Exhibit:
    """A fresh shot of firearm ``q`` (its stored shots: D-(3q) .. D-(3q + 2))."""
    return direct_exhibit(10**7 + q, direct_firearm(q), 10**7 + q)


def store_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def write_rates(root: Path, pool: list[Exhibit], vectors: list[dict]) -> tuple[float, float]:
    """Exhibits per second through add_many and through a direct segment write."""
    from ribin.store import SignatureStore

    sample = min(len(pool), 30)
    items = [(e, direct_metadata(n)) for n, e in enumerate(pool[:sample])]
    path = root / "rate-add-many"
    start = time.perf_counter()
    with SignatureStore.open(path, "x") as store:
        store.add_many(items)
        stored = store.features(kind="breech_face")
    add_many = sample / (time.perf_counter() - start)
    same = all(
        np.array_equal(stored.features[i], vectors[int(eid[2:])]["breech_face"])
        for i, eid in enumerate(stored.exhibit_id)
    )
    per_exhibit = store_bytes(path) / sample
    path = root / "rate-direct"
    start = time.perf_counter()
    write_direct_store(path, [items], lambda e: vectors[int(e.exhibit_id[2:])])
    direct = sample / (time.perf_counter() - start)
    shutil.rmtree(path)
    print(
        f"write rate (measured, {sample} exhibits): add_many {add_many:.1f} exhibits/s, direct "
        f"segment write with given vectors {direct:.1f} exhibits/s; {per_exhibit / 1e3:.0f} KB "
        f"per exhibit on disk; add_many's vectors equal the pool's: {same}"
    )
    return add_many, direct


# -- building a store: segments written in parallel --------------------------------------

_VECTORS: list[dict[str, np.ndarray]] = []


def _init_writer(vectors: list[dict[str, np.ndarray]]) -> None:
    _VECTORS[:] = vectors


def _vectors_of(exhibit: Exhibit) -> dict[str, np.ndarray]:
    number = int(exhibit.exhibit_id[2:])
    source = _VECTORS[number % len(_VECTORS)]
    if number < len(_VECTORS):
        return source
    return {k: (v * THIN_SCALE).astype(np.float32) for k, v in source.items()}


def _write_part(path: str, first: int, last: int, pool_size: int) -> None:
    """Write exhibits first .. last - 1 as a store of their own (segments of SEGMENT)."""

    def groups():
        for start in range(first, last, SEGMENT):
            yield [
                (
                    pool_exhibit(number) if number < pool_size else thin_exhibit(number),
                    direct_metadata(number),
                )
                for number in range(start, min(start + SEGMENT, last))
            ]

    write_direct_store(Path(path), groups(), _vectors_of)


def build(root: Path, n: int, pool: list[Exhibit], vectors: list[dict], workers: int = 1) -> Path:
    """A store of ``n`` exhibits under ``root``: ``workers`` processes write its segments.

    Each process writes a store of its share; their segments are then moved into one store
    and listed in its manifest in exhibit order, as one writer would have (the segment
    files are the direct write's; only where they were written differs).
    """
    from ribin.exhibit import canonical_json
    from ribin.store import MANIFEST, SEGMENTS

    path = root / f"store-{n}"
    marker = path / BUILT
    if marker.exists():
        built = json.loads(marker.read_text())
        # a store whose vectors are of another prefilter version would be recomputed on
        # every read (and measure that): rebuild it
        versions = {
            s["feature_version"] for s in json.loads((path / MANIFEST).read_text())["segments"]
        }
        if (
            built.get("n") == n
            and built.get("pool") == len(pool)
            and versions == {prefilter.FEATURE_VERSION}
        ):
            print(
                f"store of {n} exhibits: reused from {path} (written in "
                f"{built['seconds']:.0f} s by {built['workers']} processes, "
                f"{built['bytes'] / 1e9:.2f} GB)",
                flush=True,
            )
            return path
    shutil.rmtree(path, ignore_errors=True)
    start = time.perf_counter()
    segments = -(-n // SEGMENT)
    per_worker = -(-segments // max(1, workers))
    parts = [
        (
            str(root / f"part-{n}-{w}"),
            w * per_worker * SEGMENT,
            min(n, (w + 1) * per_worker * SEGMENT),
        )
        for w in range(max(1, workers))
        if w * per_worker * SEGMENT < n
    ]
    for part, _, _ in parts:
        shutil.rmtree(part, ignore_errors=True)
    with ProcessPoolExecutor(len(parts), initializer=_init_writer, initargs=(vectors,)) as ex:
        list(ex.map(_write_part, *zip(*[(p, a, b, len(pool)) for p, a, b in parts], strict=True)))
    # one store: the first part's, with the others' segments renumbered after its own
    first = Path(parts[0][0])
    manifest = json.loads((first / MANIFEST).read_text())
    for part, _, _ in parts[1:]:
        other = json.loads((Path(part) / MANIFEST).read_text())
        for entry in other["segments"]:
            sequence = len(manifest["segments"]) + 1
            name = f"seg-{sequence:08d}-{entry['name'].rsplit('-', 1)[1]}"
            os.replace(Path(part) / SEGMENTS / entry["name"], first / SEGMENTS / name)
            manifest["segments"].append({**entry, "name": name, "sequence": sequence})
        shutil.rmtree(part)
    manifest["sequence"] = len(manifest["segments"])
    (first / "manifest.bench.tmp").write_text(canonical_json(manifest) + "\n")
    os.replace(first / "manifest.bench.tmp", first / MANIFEST)
    os.replace(first, path)
    seconds = time.perf_counter() - start
    size = store_bytes(path)
    kind = f"{min(n, len(pool))} full size, the rest 16x16 px"
    print(
        f"store of {n} exhibits ({kind}; vectors of the pool): written in {seconds:.0f} s by "
        f"{len(parts)} processes ({n / seconds:.0f} exhibits/s), {size / 1e9:.2f} GB",
        flush=True,
    )
    built = {"n": n, "pool": len(pool), "seconds": seconds, "workers": len(parts), "bytes": size}
    marker.write_text(json.dumps(built))
    return path


# -- measuring, in a fresh process per store ----------------------------------------------


def _rss_mb() -> float:
    """Peak resident memory of this process so far (MB; VmHWM, which, unlike ``ru_maxrss``,
    does not carry over the parent's peak through fork and exec)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _timed_search(store, queries: list[Exhibit], params: SearchParams) -> tuple[list, dict]:
    """search_batch's embedded engine with its stages timed (the same calls it makes)."""
    from ribin.shards import InProcessShards, join_states, rank_shard, run_search, shard_scores

    stages = {"prefilter": 0.0, "score": 0.0, "compare": 0.0, "read": 0.0}

    class TimedShards(InProcessShards):
        def prefilter(self, shard_queries, filters):
            start = time.perf_counter()

            def scored(tables):
                began = time.perf_counter()
                state = rank_shard(tables, shard_queries, filters)
                stages["score"] += time.perf_counter() - began
                return state

            regions = tuple(dict.fromkeys(r.region for q in shard_queries for r in q.regions))
            scopes = {q.scope for q in shard_queries}
            common = scopes.pop() if len(scopes) == 1 else None
            parts = self.store.map_features(scored, scope=common, kinds=regions)
            self._state = join_states(parts, regions, shard_queries)
            stages["prefilter"] = time.perf_counter() - start
            return [shard_scores(self._state)]

        def compare(self, requests, shard_queries, cmc_params, progress):
            start = time.perf_counter()
            get = self.store.get

            def timed_get(exhibit_id, country=None):
                began = time.perf_counter()
                try:
                    return get(exhibit_id, country=country)
                finally:
                    stages["read"] += time.perf_counter() - began

            self.store.get = timed_get
            try:
                return super().compare(requests, shard_queries, cmc_params, progress)
            finally:
                del self.store.get
                stages["compare"] = time.perf_counter() - start

    start = time.perf_counter()
    results = run_search(
        store, queries, TimedShards(store), scope="network", searcher=SEARCHER, params=params
    )
    stages["total"] = time.perf_counter() - start
    stages["load"] = stages["prefilter"] - stages["score"]
    stages["comparisons"] = stages["compare"]  # candidate reads overlap it
    stages["rest"] = stages["total"] - stages["prefilter"] - stages["compare"]
    return results, stages


def child(path: Path, pool_size: int, batch: int, params: SearchParams) -> dict:
    """One store's measurements (run in a fresh process); a JSON-ready dict."""
    from ribin.search import search_batch
    from ribin.store import SignatureStore

    out: dict = {"rss_start_mb": _rss_mb()}
    query = query_exhibit(0)
    batch_queries = [query_exhibit(q) for q in range(1, batch + 1)]
    start = time.perf_counter()
    store = SignatureStore.open(path)
    store.same_source("0" * 64)  # reads every segment's index (the live view), as a search does
    out["open"] = time.perf_counter() - start
    out["rss_open_mb"] = _current_rss_mb()
    for label in ("cold", "warm"):
        (result,), stages = _timed_search(store, [query], params)
        # the cold search pays for opening the store (reading every segment's index) too
        stages["open"] = out["open"] if label == "cold" else 0.0
        stages["total"] += stages["open"]
        compared = {
            c.exhibit_id
            for c in result.candidates
            if any(m is not None and m.score is not None for m in (c.breech_face, c.firing_pin))
        }
        stages.update(
            compared=result.compared,
            considered=result.considered // 2,
            thin=sum(int(e[2:]) >= pool_size for e in compared),
            top=result.candidates[0].exhibit_id,
            rss_peak_mb=_rss_mb(),
        )
        out[label] = stages
    start = time.perf_counter()
    results = search_batch(
        store, batch_queries, scope="network", searcher=SEARCHER, params=params, top=10
    )
    seconds = time.perf_counter() - start
    out["batch"] = {
        "queries": batch,
        "seconds": seconds,
        "qps": batch / seconds,
        "compared": sum(r.compared for r in results),
        "top_right": sum(
            int(r.candidates[0].exhibit_id[2:]) // SHOTS == q for q, r in enumerate(results, 1)
        ),
        "rss_peak_mb": _rss_mb(),
    }
    # what the search read before it went segment by segment: the whole table per region
    before = _current_rss_mb()
    start = time.perf_counter()
    tables = [store.features(kind=kind) for kind in ("breech_face", "firing_pin")]
    out["whole_table"] = {
        "seconds": time.perf_counter() - start,
        "mb": sum(t.features.nbytes for t in tables) / 2**20,
        "rss_added_mb": _current_rss_mb() - before,
    }
    store.close()
    return out


def measure(path: Path, pool_size: int, batch: int, params: SearchParams) -> dict:
    """:func:`child` in a fresh Python process."""
    command = [
        sys.executable,
        __file__,
        "--child",
        str(path),
        "--pool",
        str(pool_size),
        "--batch",
        str(batch),
        "--shortlist-min",
        str(params.shortlist_min),
        "--shortlist-fraction",
        str(params.shortlist_fraction),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"measuring {path} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def exhaustive_small(root: Path) -> None:
    """A real exhaustive search over one country's exhibits of the write-rate store."""
    from ribin.store import SignatureStore

    with SignatureStore.open(root / "rate-add-many") as store:
        start = time.perf_counter()
        result = search(
            store,
            query_exhibit(0),
            scope="country",
            searcher=SEARCHER,
            exhaustive=True,
            top=10**9,
        )
        total = time.perf_counter() - start
    print(
        f"exhaustive search, measured: {result.considered // 2} candidates (scope country "
        f"{SEARCHER}) in {total:.1f} s = {result.compared} comparisons ({THREADS} at a time); "
        f"top candidate {result.candidates[0].exhibit_id} (true firearm: D-0000000..D-0000002)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--pool", type=int, default=300, help="full-size exhibits per store")
    parser.add_argument("--batch", type=int, default=4, help="queries per search_batch")
    parser.add_argument("--workers", type=int, default=2, help="processes writing a store")
    parser.add_argument("--workdir", type=Path, default=None, help="keep (reuse) stores here")
    parser.add_argument("--quick", action="store_true", help="sizes 1000 and 10^4, pool 30")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    shortlist_params(parser)
    args = parser.parse_args()
    params = SearchParams(args.shortlist_min, args.shortlist_fraction)
    if args.child is not None:
        print(json.dumps(child(args.child, args.pool, args.batch, params)))
        return
    if args.quick:
        args.sizes, args.pool, args.batch = [1000, 10_000], 30, 2
    root = args.workdir or Path(tempfile.mkdtemp(prefix="ribin-bench-search-"))
    root.mkdir(parents=True, exist_ok=True)
    print(machine())
    print(
        f"load average at start {os.getloadavg()[0]:.1f} (2 cores shared with other jobs: "
        f"absolute times are inflated; ratios within this run are comparable). Stores in {root}"
    )
    try:
        pool, vectors = make_pool(args.pool)
        shutil.rmtree(root / "rate-add-many", ignore_errors=True)
        write_rates(root, pool, vectors)
        exhaustive_small(root)
        rows = []
        for n in args.sizes:
            path = build(root, n, pool, vectors, args.workers)
            load = os.getloadavg()[0]
            m = measure(path, len(pool), args.batch, params)
            m.update(n=n, k=params.shortlist(n), load=(load + os.getloadavg()[0]) / 2)
            rows.append(m)
            for label in ("cold", "warm"):
                st = m[label]
                print(
                    f"  n={n} {label}: {st['total']:.1f} s = open {st['open']:.2f} (segment "
                    f"indexes) + prefilter {st['prefilter']:.2f} "
                    f"(features read {st['load']:.2f}, scored {st['score']:.2f}) + "
                    f"comparisons {st['comparisons']:.1f} ({st['compared']} of them, "
                    f"{st['thin']} thin; candidates read meanwhile {st['read']:.2f}) + rest "
                    f"{st['rest']:.2f}; top {st['top']} "
                    f"(true firearm D-0000000..D-0000002); peak RSS {st['rss_peak_mb']:.0f} MB",
                    flush=True,
                )
            b, w = m["batch"], m["whole_table"]
            print(
                f"  n={n} search_batch of {b['queries']}: {b['seconds']:.1f} s, "
                f"{b['qps']:.3f} queries/s ({b['compared']} comparisons; top-1 right "
                f"{b['top_right']}/{b['queries']}); peak RSS {b['rss_peak_mb']:.0f} MB",
                flush=True,
            )
            print(
                f"  n={n} for reference, the whole feature table (both regions, "
                f"store.features): {w['seconds']:.2f} s, {w['mb']:.0f} MB of vectors, RSS "
                f"+{w['rss_added_mb']:.0f} MB; process at start {m['rss_start_mb']:.0f} MB, "
                f"after open {m['rss_open_mb']:.0f} MB; load average {m['load']:.1f}",
                flush=True,
            )
            if args.workdir is None:
                shutil.rmtree(path, ignore_errors=True)
        report(rows, params)
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)


def report(rows: list[dict], params: SearchParams) -> None:
    print(
        f"\nlatency per query (s), measured end to end; shortlist max({params.shortlist_min}, "
        f"{params.shortlist_fraction} n) per region; {THREADS} comparisons at a time"
    )
    print(
        "  n        run   open  prefilter (read+score)  comparisons (n) [reads in it]   rest   "
        "total  peak RSS MB   batch q/s  load"
    )
    table = []
    for m in rows:
        for label in ("cold", "warm"):
            st = m[label]
            qps = f"{m['batch']['qps']:9.3f}" if label == "warm" else " " * 9
            print(
                f"  {m['n']:<8d} {label:5s} {st['open']:5.2f} {st['prefilter']:5.2f} "
                f"({st['load']:4.2f}+{st['score']:4.2f})      "
                f"{st['comparisons']:7.1f} ({st['compared']:3d}) [{st['read']:5.2f}]     "
                f"{st['rest']:5.2f} {st['total']:6.1f}  "
                f"{st['rss_peak_mb']:8.0f}   {qps}  {m['load']:4.1f}"
            )
            table.append(
                [
                    m["n"],
                    label,
                    m["k"],
                    round(st["open"], 2),
                    round(st["prefilter"], 2),
                    round(st["load"], 2),
                    st["compared"],
                    round(st["comparisons"], 1),
                    round(st["total"], 1),
                    round(st["rss_peak_mb"]),
                    round(m["batch"]["qps"], 3) if label == "warm" else None,
                    round(m["load"], 1),
                ]
            )
    record(
        "search_speed",
        "Search latency per query (3D, both regions, default shortlist), measured end to end",
        [
            "stored exhibits",
            "run",
            "shortlist K per region",
            "open s",
            "prefilter s",
            "of it, features read s",
            "comparisons",
            "comparisons s (candidate reads overlapped)",
            "search s",
            "peak RSS MB",
            "search_batch queries/s",
            "load average",
        ],
        table,
        "Each store written in full (300 full-size exhibits, the rest 16 x 16 px with the "
        "pool's feature vectors) and searched end to end in a fresh process: cold = opening "
        "the store (every segment's index read) and the process's first search (Numba cache "
        "on disk, the OS file cache as it was), warm = "
        f"the same search again; search_batch of {rows[0]['batch']['queries'] if rows else 0} "
        f"other queries. {THREADS} comparisons at a time. Targets: 10^4 under 5 s, 10^5 "
        "under 15 s on 2 cores.",
    )


if __name__ == "__main__":
    main()
