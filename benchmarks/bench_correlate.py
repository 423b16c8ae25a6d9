"""Ingest throughput with and without automatic correlation, at 10^3 and 10^4 stored exhibits.

    python benchmarks/bench_correlate.py                 # 10^3 and 10^4 (~10 min on 2 cores)
    python benchmarks/bench_correlate.py --sizes 1000 --new 4    # a smoke run

Stores are built as ``bench_search_speed.py`` builds them (``--pool`` full-size exhibits,
the rest thin 16 x 16 px rows whose feature vectors are a quarter of a pool vector, written
segment by segment), so the feature table the correlation's prefilter reads is as large as
a real store's. The new exhibits are fresh shots of pooled firearms, made directly (no
image extraction: extraction costs the same with or without correlation, and is measured
by ``bench_extraction.py``).

For each store size, measured:

- ``--new`` exhibits stored with :meth:`SignatureStore.add_many` and no correlation
  (what ``ribin ingest --no-correlate`` does after extraction);
- ``--new`` other exhibits stored and then correlated with :func:`ribin.workflow.correlate`
  under the default policy (scope ``network``, top 10 per region), leads recorded in the
  store's workflow database (what ``ribin ingest`` does after extraction);
- one :func:`ribin.search.search` of a new exhibit at the same scope, the yardstick: the
  issue asks that correlation cost at most one search per exhibit. It runs after the
  correlation, on exhibits the correlation just read (warm caches), so the ratio errs
  against the correlation.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from _common import direct_exhibit, direct_firearm, machine
from bench_search_speed import build, make_pool
from results import record

from ribin.search import search
from ribin.store import SignatureStore
from ribin.workflow import Workflow, correlate


def new_exhibits(first: int, count: int, pool_size: int, country: str) -> list:
    """``count`` fresh shots of pooled firearms (exhibit IDs past the store's)."""
    out = []
    for k in range(count):
        firearm_seed = (k * 5) % max(pool_size // 3, 1)
        exhibit = direct_exhibit(first + k, direct_firearm(firearm_seed), 10_000_000 + first + k)
        out.append((exhibit, {"country": country, "sharing": "network", "role": "questioned"}))
    return out


def measure(path: Path, n: int, count: int, pool_size: int) -> dict[str, float]:
    country = "BB"
    plain = new_exhibits(n + 1000, count, pool_size, country)
    with_leads = new_exhibits(n + 2000, count, pool_size, country)
    with SignatureStore.open(path, "a") as store:
        start = time.perf_counter()
        store.add_many(plain)
        t_plain = time.perf_counter() - start

        start = time.perf_counter()
        results = store.add_many(with_leads)
        t_add = time.perf_counter() - start
        store.refresh()
        keys = [(country, r.exhibit_id, r.content_id) for r in results]
        with Workflow.open(path) as wf:
            start = time.perf_counter()
            outcome = correlate(store, keys, workflow=wf, site_country=country)
            t_correlate = time.perf_counter() - start
            leads = len(wf.leads("all"))
        searches = []
        for key in keys[:2]:
            start = time.perf_counter()
            search(store, store.get(key[1], key[0]), scope="network")
            searches.append(time.perf_counter() - start)
    per_search = sum(searches) / len(searches)
    row = {
        "n": n,
        "without": count / t_plain,
        "with": count / (t_add + t_correlate),
        "correlate_per_exhibit": t_correlate / count,
        "search": per_search,
        "leads": leads,
        "ratio": (t_correlate / count) / per_search,
    }
    print(
        f"n={n}: ingest without correlation {row['without']:.2f} exhibits/s, with "
        f"{row['with']:.2f} exhibits/s; correlation {row['correlate_per_exhibit']:.2f} s per "
        f"exhibit vs one search {per_search:.2f} s (ratio {row['ratio']:.2f}); "
        f"{outcome.correlated} correlated, {leads} leads recorded",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--new", type=int, default=8, help="Exhibits ingested per mode.")
    parser.add_argument("--pool", type=int, default=30, help="Full-size stored exhibits.")
    args = parser.parse_args()
    print(machine())
    pool, vectors = make_pool(args.pool)
    root = Path(tempfile.mkdtemp(prefix="ribin-bench-correlate-"))
    rows = []
    try:
        for n in args.sizes:
            path = build(root, n, pool, vectors)
            rows.append(measure(path, n, args.new, args.pool))
            shutil.rmtree(path)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    record(
        "correlate",
        "Ingest throughput with and without automatic correlation",
        [
            "stored exhibits",
            "ingest without correlation (exhibits/s)",
            "ingest with correlation (exhibits/s)",
            "correlation per exhibit (s)",
            "one search (s)",
            "correlation / search",
        ],
        [
            [
                r["n"],
                round(r["without"], 2),
                round(r["with"], 2),
                round(r["correlate_per_exhibit"], 2),
                round(r["search"], 2),
                round(r["ratio"], 2),
            ]
            for r in rows
        ],
        notes=(
            f"{args.new} new exhibits per mode (directly made signatures; image extraction, "
            "the same in both modes, excluded); default policy: scope network, top 10 per "
            "region; the search column is one ribin.search.search of a new exhibit at that "
            "scope."
        ),
    )


if __name__ == "__main__":
    main()
