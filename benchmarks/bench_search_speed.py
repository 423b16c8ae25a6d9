"""Search latency against scope size: prefilter over everything, full comparison of a shortlist.

    python benchmarks/bench_search_speed.py                    # 10^3, 10^4, 10^5 (~10 min)
    python benchmarks/bench_search_speed.py --quick            # a smoke run (~1 min)
    python benchmarks/bench_search_speed.py --shortlist-min 10 --shortlist-fraction 0

Signatures are generated directly to save time: no rendering, no extraction. Each is a
band-passed (30-600 um) random surface of the default signature size at 12.5 um (breech
face 333 x 333 px with a firing-pin hole, firing pin 78 x 78 px), the firearm's own marks
plus per-shot noise, 3 shots per firearm, spread over the network's 9 countries. Queries
are fresh shots of stored firearms, searched at scope ``network`` by BB.

What is measured and what is extrapolated (the output says which, line by line):

- write rates: ``add_many`` (computes every feature vector) and a direct segment write
  with the vectors given; from them, the time and disk a full-size store would take
  (5-20 full-size exhibits/s on this shared machine: 10^4 of them would take 10-30 min,
  10^5 hours and ~33 GB, so neither is written);
- a store of n exhibits holds the ``--pool`` full-size exhibits (their own vectors) and
  n - pool "thin" ones: 16 x 16 px surfaces whose stored vector is a pool vector times
  :data:`THIN_SCALE`, so they score a quarter of their source and stay off the short
  shortlists measured here (each real search counts the thin ones it compared: 0 means
  every comparison timed was a full-size one). The feature table, what the prefilter
  reads and scores, is as large as a real store's; the surfaces behind it are not;
- stores up to ``--store-up-to`` (10^4) are written; beyond, the prefilter stage is
  split: the feature-table load is extrapolated linearly from the largest store, the
  scoring and sorting measured on that store's table tiled to n rows in memory;
- prefilter stage: the search's first stage (load the scope's feature table, mask,
  score, sort; both regions) timed with the same calls, cold (store just opened) and warm;
- search: :func:`ribin.search.search` end to end with ``--measure-shortlist`` per region
  (10, the default shortlist up to 10^4); the time per comparison (breech face or firing
  pin, run one per core at a time, reads before them) is the mean interval between
  comparisons finishing, from its progress callbacks, and the latency of
  ``--shortlist-min/--shortlist-fraction`` (default :class:`ribin.search.SearchParams`) is
  prefilter + 4 x shortlist x that time (at most 2 x shortlist candidates, the union of
  the regions' shortlists, each compared in both regions);
- exhaustive: a real exhaustive search over one country's exhibits of a small store, and
  ``2n x`` the time per comparison beyond that (never run at 10^3 and up).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
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
from ribin.network import load_network
from ribin.search import Filters, SearchParams, search
from ribin.store import Scope, SignatureStore

THREADS = numba.get_num_threads()  # comparisons at a time (ribin.compare.compare_many)

SHOTS = 3
SEARCHER = "BB"
SEGMENT = 1000  # exhibits per segment
THIN_SCALE = 0.25
"""Thin exhibits store their source's vector times this: they score a quarter as high."""


def make_pool(count: int) -> tuple[list[Exhibit], list[dict[str, np.ndarray]]]:
    """``count`` full-size exhibits (3 shots per firearm) and their feature vectors."""
    start = time.perf_counter()
    firearm = None
    exhibits = []
    for number in range(count):
        if number % SHOTS == 0:
            firearm = direct_firearm(number // SHOTS)
        exhibits.append(direct_exhibit(number, firearm, number))
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


def store_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def write_rates(root: Path, pool: list[Exhibit], vectors: list[dict]) -> tuple[float, float]:
    """Exhibits per second through add_many and through a direct segment write."""
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
    for n in (10_000, 100_000):
        print(
            f"  a full-size store of {n} exhibits would take {n / add_many / 60:.0f} min "
            f"(add_many) or {n / direct / 60:.0f} min (direct) and "
            f"{n * per_exhibit / 1e9:.1f} GB (projected)"
        )
    return add_many, direct


def build(root: Path, n: int, pool: list[Exhibit], vectors: list[dict]) -> Path:
    path = root / f"store-{n}"
    start = time.perf_counter()

    def groups():
        for first in range(0, n, SEGMENT):
            items = []
            for number in range(first, min(first + SEGMENT, n)):
                exhibit = pool[number] if number < len(pool) else thin_exhibit(number)
                items.append((exhibit, direct_metadata(number)))
            yield items

    def features(exhibit: Exhibit) -> dict[str, np.ndarray]:
        number = int(exhibit.exhibit_id[2:])
        source = vectors[number % len(pool)]
        if number < len(pool):
            return source
        return {k: (v * THIN_SCALE).astype(np.float32) for k, v in source.items()}

    write_direct_store(path, groups(), features)
    kind = f"{min(n, len(pool))} full size, the rest 16x16 px"
    print(
        f"store of {n} exhibits ({kind}; vectors of the pool): written in "
        f"{time.perf_counter() - start:.0f} s, {store_bytes(path) / 1e9:.2f} GB",
        flush=True,
    )
    return path


def prefilter_stage(
    store: SignatureStore | None, query: Exhibit, scope: Scope, tables: dict | None = None
) -> tuple[float, float, int, dict]:
    """The search's first stage for both regions, as :func:`ribin.search.search` runs it.

    Returns the seconds spent loading the feature tables and scoring and sorting them,
    the candidates per region and the tables (given ``tables``, no store is read).
    """
    loaded = {}
    load = score = 0.0
    n = 0
    for region, signature in query.signatures().items():
        start = time.perf_counter()
        if tables is None:
            table = store.features(scope=scope, kind=region)
            keep = Filters().mask(table, signature.modality)
            keep &= np.isclose(
                table.pixel_size_um.astype(np.float64), signature.pixel_size_um, 0.01
            )
            keep &= table.signature_id != signature.id
            rows = np.flatnonzero(keep)
            matrix = table.features
        else:
            matrix = tables[region]
            rows = np.arange(matrix.shape[0])
        loaded[region] = matrix
        middle = time.perf_counter()
        scores = prefilter.similarity(prefilter.features(signature), matrix[rows])
        _order = rows[np.argsort(-scores, kind="stable")]
        load += middle - start
        score += time.perf_counter() - middle
        n = max(n, rows.size)
    return load, score, n, loaded


def timed_search(store: SignatureStore, query: Exhibit, params: SearchParams, **kw):
    """Search with progress timestamps: (result, total s, s per comparison).

    A search reads its shortlist first, then runs the comparisons several at a time
    (:func:`ribin.compare.compare_many`, one per core); the time per comparison is the mean
    interval between two finishing, so it is the effective time at that concurrency, reads
    not included (they are in the total).
    """
    stamps = []
    start = time.perf_counter()
    result = search(
        store,
        query,
        scope=kw.pop("scope", "network"),
        searcher=SEARCHER,
        top=10**9,
        params=params,
        progress=lambda done, total: stamps.append(time.perf_counter()),
        **kw,
    )
    total = time.perf_counter() - start
    # up to the first finish: prefilter, reads and the first comparisons, left out
    per = (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) > 1 else float("nan")
    return result, total, per


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--store-up-to", type=int, default=10_000, help="larger: in memory")
    parser.add_argument("--pool", type=int, default=300, help="full-size exhibits per store")
    parser.add_argument("--queries", type=int, default=2)
    parser.add_argument(
        "--measure-shortlist", type=int, default=10, help="per region, for the real searches"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="keep the stores here")
    parser.add_argument("--quick", action="store_true", help="sizes 100, 1000, 10^4")
    shortlist_params(parser)
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.store_up_to, args.pool = [100, 1000, 10_000], 1000, 30
        args.queries, args.measure_shortlist = 1, 3
    params = SearchParams(args.shortlist_min, args.shortlist_fraction)
    measure = SearchParams(args.measure_shortlist, 0.0)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="ribin-bench-search-"))
    root.mkdir(parents=True, exist_ok=True)
    print(machine())
    print(
        "NOTE: 2 cores shared with other jobs: absolute times are inflated; ratios within "
        f"this run are comparable. Stores in {root}"
    )
    scope = Scope.from_network(load_network(), "network", SEARCHER)
    try:
        pool, vectors = make_pool(args.pool)
        write_rates(root, pool, vectors)
        queries = [
            direct_exhibit(10**7 + q, direct_firearm(q), 10**7 + q) for q in range(args.queries)
        ]

        # exhaustive, measured at a small scope (one country of a small store)
        with SignatureStore.open(root / "rate-add-many") as store:
            result, total, per = timed_search(
                store, queries[0], SearchParams(), exhaustive=True, scope="country"
            )
        print(
            f"exhaustive search, measured: {result.considered // 2} candidates (scope country "
            f"{SEARCHER}) in {total:.1f} s = {result.compared} comparisons, {per:.3f} s each "
            f"({THREADS} at a time); top candidate "
            f"{result.candidates[0].exhibit_id} (true firearm: D-0000000..D-0000002)"
        )

        rows = []
        per_compare = float("nan")
        tables = None
        stored_n = 0
        for n in args.sizes:
            line: dict = {"n": n}
            if n <= args.store_up_to:
                path = build(root, n, pool, vectors)
                store = SignatureStore.open(path)
                load, score, count, tables = prefilter_stage(store, queries[0], scope)
                warm = min(sum(prefilter_stage(store, q, scope)[:2]) for q in queries)
                store.close()
                line.update(n=count, cold=load + score, warm=warm, how="measured")
                stored_n, stored_load = count, load
                totals, pers = [], []
                for number, query in enumerate(queries):
                    with SignatureStore.open(path) as store:  # fresh: as a CLI query
                        result, total, per = timed_search(store, query, measure)
                    totals.append(total)
                    pers.append(per)
                    compared = [
                        c.exhibit_id
                        for c in result.candidates
                        if any(
                            m is not None and m.score is not None
                            for m in (c.breech_face, c.firing_pin)
                        )
                    ]
                    thin = sum(int(e[2:]) >= len(pool) for e in compared)
                    print(
                        f"  n={count}: real search {number + 1} (shortlist "
                        f"{args.measure_shortlist}/region, {result.compared} comparisons, "
                        f"{thin} of them thin): {total:.1f} s; {per:.3f} s per comparison; "
                        f"top {result.candidates[0].exhibit_id} (true firearm: "
                        f"D-{3 * number:07d}..D-{3 * number + 2:07d})",
                        flush=True,
                    )
                line["measured_total"] = float(np.median(totals))
                per_compare = float(np.nanmean(pers))
                shutil.rmtree(path, ignore_errors=True)
            else:
                reps = -(-n // stored_n)
                big = {k: np.tile(v, (reps, 1))[:n] for k, v in tables.items()}
                score = min(prefilter_stage(None, q, scope, big)[1] for q in queries)
                load = stored_load * n / stored_n
                del big
                line.update(cold=load + score, warm=score, how=f"load x{n / stored_n:.0f}")
            line["per_compare"] = per_compare
            rows.append(line)
            print(
                f"  n={line['n']}: prefilter stage (both regions; {line['how']}) cold "
                f"{line['cold']:.2f} s, warm {line['warm']:.2f} s",
                flush=True,
            )

        per = per_compare
        print(
            f"\nlatency per query (s); {per:.3f} s per comparison (BF or FP, {THREADS} at a "
            "time, from the largest store's searches)"
        )
        print(
            f"  n        prefilter      | measured search       | shortlist "
            f"max({params.shortlist_min}, {params.shortlist_fraction} n) | exhaustive"
        )
        print(
            "           cold   warm    | K/reg  total compare  | K/reg  compare    total  "
            "| total     growth"
        )
        previous = None
        table = []
        for line in rows:
            k = params.shortlist(line["n"])
            compare_s = 4 * k * per  # at most 2K candidates (the union), both regions
            total = line["cold"] + compare_s
            exhaustive = line["cold"] + line["n"] * 2 * per
            if "measured_total" in line:
                m = line["measured_total"]
                measured = f"{args.measure_shortlist:5d} {m:6.1f} {m - line['cold']:6.1f} m"
            else:
                measured = "    -      -      -  "
            mark = "m" if line["how"] == "measured" else "x"
            growth = f"x{total / previous:.2f}" if previous else ""
            print(
                f"  {line['n']:<7d} {line['cold']:6.2f} {line['warm']:6.2f} {mark} | {measured} | "
                f"{k:5d} {compare_s:8.1f} e {total:8.1f} e | {exhaustive:8.0f} e {growth}"
            )
            previous = total
            table.append(
                [
                    line["n"],
                    round(line["cold"], 2),
                    k,
                    round(line["measured_total"], 1) if "measured_total" in line else None,
                    f"{total:.1f} - {line['cold'] + 2 * compare_s:.1f}",
                    round(exhaustive),
                ]
            )
        record(
            "search_speed",
            "Search latency per query (3D, both regions, default shortlist)",
            [
                "candidates",
                "prefilter s (cold)",
                "shortlist K per region",
                "measured search s",
                "estimated search s",
                "exhaustive s (estimated)",
            ],
            table,
            f"Measured search: shortlist {args.measure_shortlist} per region, end to end from "
            "a fresh store handle. Estimates: prefilter plus at most 2K candidates (a candidate on "
            f"either region's shortlist is compared in both, BF and FP) at {per:.3f} s per "
            f"comparison ({THREADS} at a time) measured here; above the largest written store the "
            "feature-table load is extrapolated and the scoring measured. Target: under 10 s "
            "at 10^4.",
        )
        print(
            "  m = measured end to end; x = feature-table load extrapolated, scoring measured; "
            "e = prefilter + 4K x per-comparison time (extrapolated); growth = total over the "
            "previous row"
        )
        target = 10.0
        worst = max(line["cold"] for line in rows if line["n"] <= 10_000)
        room = int((target - worst) // (2 * per))
        print(
            f"  a {target:.0f} s query at n <= 10^4 leaves room for {room} candidates per region "
            f"(BF + FP) at this run's comparison speed (prefilter {worst:.2f} s cold)"
        )
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
