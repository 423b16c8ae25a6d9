"""Speed of CMC comparison against an OpenCV baseline doing the same work.

Comparisons per second of Fadul breech faces for the full-circle sweep and the aligned
-30..30 deg sweep, both directions, 8 x 8 cells: as breech-face signatures at the default
pixel size (``ribin.extract``, 12.5 um, about 270 x 270) and as scanned (6.25 um,
545 x 545, four times the pixels). The baseline, written
here in its most straightforward fast form, rotates the target with ``cv2.warpAffine`` per
rotation and finds every cell with ``cv2.matchTemplate(TM_CCOEFF_NORMED)`` in a region
three cells wide, with the same grid, sweep and vote. Two ways of running: one comparison at
a time with each method's own threads (pair by pair, each method runs the pair ``--repeats``
times in a row and then the other, as the machine may be shared; medians), and as many
comparisons at a time as there are
cores, each single-threaded (throughput, the way a search runs them). First-call compile
time is measured in fresh processes with an empty and with a warm Numba cache. Last, each
of ``--queries`` signatures is compared with every other one as a search runs them
(``compare_many``), with the comparison's per-surface cache (the query's grids, cell
spectra, rotation profile and rotated copies made once) and without it. The pair rows run
with that cache off, so that repeating a pair measures the comparison, not the cache. The
load average is printed and recorded at the start and the end (the ratios are measured in
the same run).

    python benchmarks/bench_compare_speed.py [--repeats 3] [--pairs 4] [--sets default,scan]
        [--queries 3] [--no-compile]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
from _common import FADUL_DIR, fadul_signatures, machine
from results import record

from ribin.compare import (
    CMCParams,
    _decide,
    _Grid,
    _Sweep,
    _window,
    compare,
    compare_many,
)

THREADS = os.cpu_count() or 1
ROUNDS = 4  # rounds of the pairs per throughput run

SWEEPS = {
    "full 360 deg": CMCParams(),
    "aligned +-30 deg": CMCParams(angle_range_deg=(-30.0, 30.0)),
}


def _opencv_sweep(ref: np.ndarray, target: np.ndarray, angles, params: CMCParams) -> _Sweep:
    grid = _Grid.of(ref, params, "ref")
    h, w = grid.h, grid.w
    mr, mc = (params.region_scale - 1) * h // 2, (params.region_scale - 1) * w // 2
    ref0 = np.nan_to_num(grid.image - np.nanmean(grid.image)).astype(np.float32)
    tgt0 = np.nan_to_num(target - np.nanmean(target)).astype(np.float32)
    c_t = ((target.shape[1] - 1) / 2, (target.shape[0] - 1) / 2)
    c_r = ((ref.shape[1] - 1) / 2, (ref.shape[0] - 1) / 2)
    n = len(grid.tops)
    dx = np.full((len(angles), n), np.nan)
    dy = np.full((len(angles), n), np.nan)
    corr = np.full((len(angles), n), np.nan)
    for a, theta in enumerate(angles):
        m = cv2.getRotationMatrix2D(c_t, float(theta), 1.0)
        m[:, 2] += (c_r[0] - c_t[0], c_r[1] - c_t[1])
        size = (grid.image.shape[1], grid.image.shape[0])
        moved = cv2.warpAffine(tgt0, m, size, flags=cv2.INTER_LINEAR, borderValue=0)
        moved = cv2.copyMakeBorder(moved, mr, mr, mc, mc, cv2.BORDER_CONSTANT, value=0)
        for k in range(n):
            top, left = int(grid.tops[k]), int(grid.lefts[k])
            cell = ref0[top : top + h, left : left + w]
            region = moved[top : top + h + 2 * mr, left : left + w + 2 * mc]
            res = cv2.matchTemplate(region, cell, cv2.TM_CCOEFF_NORMED)
            _, best, _, loc = cv2.minMaxLoc(res)
            dx[a, k], dy[a, k], corr[a, k] = loc[0] - mc, loc[1] - mr, best
    return _Sweep(angles=np.asarray(angles, float), dx=dx, dy=dy, corr=corr)


def opencv_compare(a, b, params: CMCParams) -> int:
    """CMC count of the baseline: both directions, the second at the first's rotation."""
    shift_max = params.shift_max_um / a.pixel_size_um
    fwd = _decide(_opencv_sweep(a.surface, b.surface, params.angles(), params), params, shift_max)
    back = _window(-fwd.rotation, params)
    bwd = _decide(_opencv_sweep(b.surface, a.surface, back, params), params, shift_max)
    return min(fwd.count, bwd.count)


@contextlib.contextmanager
def no_surface_cache():
    """RIBIN's per-surface cache off (:class:`ribin.compare._PartsCache` of size 0): every
    comparison makes both surfaces' grids, spectra and rotated copies, as the baseline does.
    The pair rows repeat each pair, which the cache would otherwise answer from memory;
    what it saves a search is measured apart (:func:`query_rates`)."""
    import ribin.compare as cmp

    size = cmp._PARTS.size
    cmp._PARTS.size = 0
    cmp._PARTS.clear()
    try:
        yield
    finally:
        cmp._PARTS.size = size
        cmp._PARTS.clear()


def concurrent_rates(sigs, chosen, params: CMCParams, repeats: int, threads: int):
    """Throughput (comparisons/s) of both methods running ``threads`` comparisons at once.

    Every comparison is single-threaded (RIBIN: :func:`ribin.compare.compare_many`; OpenCV:
    ``cv2.setNumThreads(1)`` in a thread pool, its calls release the GIL). The methods
    alternate ``repeats`` times; the best throughput of each is returned.
    """
    # Several rounds of the pairs per run, so that the last comparisons, when fewer than the
    # threads are left, weigh little (as in a search, with its many comparisons).
    pairs = [(sigs[i], sigs[j], params) for i, j in chosen] * ROUNDS
    n_cv = cv2.getNumThreads()
    ours, base = [], []
    for _ in range(repeats):
        with no_surface_cache():
            t = time.perf_counter()
            compare_many(pairs, threads=threads)
            ours.append(len(pairs) / (time.perf_counter() - t))
        cv2.setNumThreads(1)
        try:
            with ThreadPoolExecutor(threads) as ex:
                t = time.perf_counter()
                list(ex.map(lambda p: opencv_compare(*p), pairs))
                base.append(len(pairs) / (time.perf_counter() - t))
        finally:
            cv2.setNumThreads(n_cv)
    return max(ours), max(base)


def query_rates(sigs, params: CMCParams, queries: int, threads: int) -> tuple[float, float]:
    """Comparisons per second of queries each compared with every other signature.

    As a search runs them (:func:`ribin.compare.compare_many`, ``threads`` at a time), with
    the comparison's cache of each surface's grids and cell spectra (the query's made once
    per search) and with it off (every comparison makes both surfaces' parts); the two
    alternate per query, best of the two runs of each.
    """
    import ribin.compare as cmp

    size = cmp._PARTS.size
    rates = {True: [], False: []}
    try:
        for q in range(queries):
            pairs = [(sigs[q], sigs[j], params) for j in range(len(sigs)) if j != q]
            for cached in (True, False, True, False):
                cmp._PARTS.size = size if cached else 0
                cmp._PARTS.clear()
                t = time.perf_counter()
                compare_many(pairs, threads=threads)
                rates[cached].append(len(pairs) / (time.perf_counter() - t))
    finally:
        cmp._PARTS.size = size
        cmp._PARTS.clear()
    per_query = [max(rates[c][2 * q : 2 * q + 2]) for c in (True, False) for q in range(queries)]
    return float(np.median(per_query[:queries])), float(np.median(per_query[queries:]))


def _row(pixel, sweep, at_once, pairs, ours, base, ratio) -> list:
    """A table row, printed as it is recorded."""
    row = [pixel, sweep, at_once, pairs, round(ours, 2), round(base, 2), f"{ratio:.1f}x"]
    print(
        f"{pixel:<8} {sweep:<18} {at_once:>9} {pairs:>5} {ours:>12.2f} {base:>13.2f} {row[-1]:>6}",
        end="   ",
    )
    return row


def compile_seconds() -> tuple[float, float]:
    """First-call minus second-call time of compare(), empty cache then warm cache."""
    code = (
        "import sys, time; sys.path.insert(0, 'benchmarks');"
        "from _common import fadul_signatures; from ribin.compare import compare, CMCParams;"
        "_, _, s = fadul_signatures(); p = CMCParams(angle_range_deg=(-6, 6));"
        "t = time.perf_counter(); compare(s[0], s[1], p); first = time.perf_counter() - t;"
        "t = time.perf_counter(); compare(s[0], s[1], p); second = time.perf_counter() - t;"
        "print(first - second)"
    )
    out = []
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for _ in range(2):
            res = subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
            )
            out.append(float(res.stdout.strip().splitlines()[-1]))
    return out[0], out[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=4, help="pairs timed (half matches)")
    parser.add_argument("--no-compile", action="store_true", help="skip compile timing")
    parser.add_argument(
        "--queries", type=int, default=3, help="queries timed against every other signature"
    )
    parser.add_argument(
        "--sets", default="default,scan", help="default (12.5 um signatures), scan (6.25 um)"
    )
    args = parser.parse_args(argv)

    cv2.setNumThreads(os.cpu_count() or 1)
    print(f"machine: {machine()}; opencv {cv2.__version__} ({cv2.getNumThreads()} threads)")
    print(f"load average at the start: {load_text()}")
    names, labels, scans = fadul_signatures()
    sets = {}
    for key in args.sets.split(","):
        if key == "default":
            from ribin.ingest import extract_file

            sets["12.5 um"] = [
                extract_file(FADUL_DIR / f"{name}.x3p").breech_face for name in names
            ]
        elif key == "scan":
            sets["6.25 um"] = scans
        else:
            parser.error(f"unknown set {key!r}")
    matches = [(i, j) for i in range(len(scans)) for j in range(i + 1, len(scans))]
    km = [p for p in matches if labels[p[0]] == labels[p[1]]]
    knm = [p for p in matches if labels[p[0]] != labels[p[1]]]
    rng = np.random.default_rng(0)
    half = max(1, args.pairs // 2)
    chosen = [km[i] for i in rng.choice(len(km), half, replace=False)]
    chosen += [knm[i] for i in rng.choice(len(knm), args.pairs - half, replace=False)]
    compare(scans[0], scans[1], SWEEPS["aligned +-30 deg"])  # compile / load cache

    print(
        f"\n{'pixel':<8} {'sweep':<18} {'at a time':>9} {'pairs':>5} {'ribin cmp/s':>12} "
        f"{'opencv cmp/s':>13} {'ratio':>6}   CMC ribin / opencv per pair"
    )
    rows = []
    for (pixel, sigs), (label, params) in itertools.product(sets.items(), SWEEPS.items()):
        ours, base, ratios, counts = [], [], [], []
        for i, j in chosen:
            # Each method runs the pair several times in a row (the first run after the other
            # method's may wait on its threads), then the other; medians of each.
            t_ours, t_base = [], []
            with no_surface_cache():
                for _ in range(args.repeats):
                    t = time.perf_counter()
                    c_ours = compare(sigs[i], sigs[j], params).cmc_count
                    t_ours.append(time.perf_counter() - t)
            for _ in range(args.repeats):
                t = time.perf_counter()
                c_base = opencv_compare(sigs[i], sigs[j], params)
                t_base.append(time.perf_counter() - t)
            ours.append(np.median(t_ours))
            base.append(np.median(t_base))
            ratios.append(base[-1] / ours[-1])
            kind = "KM" if labels[i] == labels[j] else "KNM"
            counts.append(f"{kind} {c_ours}/{c_base}")
        rate = 1 / np.median(ours), 1 / np.median(base)
        rows.append(_row(pixel, label, 1, len(chosen), *rate, np.median(ratios)))
        print(", ".join(counts))
        rate = concurrent_rates(sigs, chosen, params, args.repeats, THREADS)
        rows.append(_row(pixel, label, THREADS, len(chosen), *rate, rate[0] / rate[1]))
        print(f"(throughput, best of {args.repeats})", flush=True)
    query_rows = []
    for (pixel, sigs), (label, params) in itertools.product(sets.items(), SWEEPS.items()):
        if label != "full 360 deg":
            continue
        cached, fresh = query_rates(sigs, params, args.queries, THREADS)
        query_rows.append(
            [pixel, label, len(sigs) - 1, args.queries, round(cached, 2), round(fresh, 2),
             f"{cached / fresh:.2f}x"]
        )  # fmt: skip
        print(
            f"{pixel}: one query against {len(sigs) - 1} candidates, {THREADS} at a time: "
            f"{cached:.2f} cmp/s with the query's parts cached, {fresh:.2f} without "
            f"({cached / fresh:.2f}x; median of {args.queries} queries)",
            flush=True,
        )
    notes = (
        "Target: 10x the OpenCV baseline on the full circle (same cells, sweep and vote; "
        "at 12.5 um RIBIN's coarse sweep visits only the rotations near its rotation "
        "estimates, at 6.25 um the whole circle). "
        "12.5 um: the breech-face "
        "signatures ribin.extract makes (the default pixel size); 6.25 um: the scans as "
        "measured, four times the pixels. One at a time: each "
        "method's own threads (Numba's and OpenCV's) within a comparison, medians pair by pair; "
        f"{THREADS} at a time: {THREADS} comparisons at once, each single-threaded "
        f"(ribin.compare.compare_many, and a thread pool for OpenCV), all pairs {ROUNDS} times, "
        "throughput."
    )
    if not args.no_compile:
        cold, warm = compile_seconds()
        print(f"\nfirst-call compile: {cold:.1f} s with an empty cache, {warm:.1f} s cached")
        notes += (
            f" First-call compile: {cold:.1f} s with an empty Numba cache, {warm:.1f} s cached."
        )
    record(
        "compare_speed",
        "Comparison speed (Fadul breech faces, both directions)",
        ["pixel", "sweep", "at a time", "pairs", "RIBIN cmp/s", "OpenCV cmp/s", "ratio"],
        rows,
        notes + f" Load average at the end: {load_text()}.",
    )
    record(
        "compare_query_speed",
        "Comparisons of one query with many candidates (full circle, as a search runs them)",
        ["pixel", "sweep", "candidates", "queries", "cmp/s cached", "cmp/s uncached", "ratio"],
        query_rows,
        f"Each query compared with every other Fadul signature, {THREADS} comparisons at a "
        "time (ribin.compare.compare_many); cached: each surface's grids and cell spectra "
        "kept by content (ribin.compare._PartsCache), so the query's are made once per "
        "search; uncached: made in every comparison. Median over the queries of the best of "
        f"two runs each. Load average at the end: {load_text()}.",
    )
    return 0


def load_text() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    sys.exit(main())
