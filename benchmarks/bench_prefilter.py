"""Prefilter accuracy and speed: does the true match survive the cut to the full comparison?

For every query, every other signature is ranked by the prefilter score; a true match
ranked below the cut K is lost to the search. Reports, for version 1 (radially averaged
spectrum, scored by minus the Euclidean distance of its 56 spectral values, as its tests
did) and version 2 (:mod:`ribin.prefilter`) in the same run:

- recall of true-match pairs at K = 1, 5, 10, 20, 50, 1 % and 5 % of N (N = all other
  signatures), and the rank of every true match;
- on the synthetic set also an extrapolation to N = 10^4 and 10^5: the expected rank of a
  true match is 1 + N * P(non-match score >= its score), P from all non-match pairs pooled;
- timings: features per signature, one query against 10^4 and 10^5 candidates.

Data: (a) the 19 Fadul breech faces (6.25 um), every scan against the other 18; (b) a
synthetic set of ``--batches`` tool batches x ``--per-batch`` firearms x ``--shots`` shots
(3D, 12.5 um, so same-batch close non-matches exist), turned into breech-face signatures
by ``ribin.extract`` (cached in ``--cache``: generation takes a few minutes)::

    python benchmarks/bench_prefilter.py --batches 25 --per-batch 4 --shots 3 --seed 11

``--bands 600:30,400:80,...`` measures instead the features' band (:data:`LONG_UM` :
:data:`SHORT_UM`, everything else as defined) on every set the band matters for: the
held-out synthetic set above, the committed synthetic 3D set (``data/synthetic_casings``,
breech face and firing pin, the 3D rows of ``bench_2d_search.py`` part 1) and the Fadul
scans as search sees them (``ribin.extract``, 12.5 um) and as measured (6.25 um). Per set
and band: the worst true-match z (each query's scores standardised by its non-matches),
the worst rank among all others, and the expected rank of the worst true match among 10^4
and 10^5 candidates (1 + N x the share of pooled non-match z at or above it; and under a
normal tail). Recorded as ``prefilter_bands``::

    nice -n 10 python benchmarks/bench_prefilter.py --bands 600:30,400:80,250:30
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from _common import FADUL_DIR, fadul_signatures, machine
from results import record
from scipy import special

from ribin import prefilter

V1_BINS = 56


def v1_spectrum(surface: np.ndarray) -> np.ndarray:
    """Version 1's 56 spectral values (radially averaged log power, Hann window)."""
    surface = np.asarray(surface, dtype=np.float64)
    valid = np.isfinite(surface)
    if valid.sum() == 0 or min(surface.shape) < 2:
        return np.zeros(V1_BINS)
    filled = np.where(valid, surface - surface[valid].mean(), 0.0)
    rows, cols = surface.shape
    radius = np.hypot(np.fft.fftfreq(rows)[:, None], np.fft.rfftfreq(cols)[None, :])
    index = np.minimum((radius / 0.5 * V1_BINS).astype(np.int64), V1_BINS)
    weight = np.full(index.shape, 2.0)
    weight[:, 0] = 1.0
    if cols % 2 == 0:
        weight[:, -1] = 1.0
    counts = np.bincount(index.ravel(), weight.ravel(), V1_BINS + 1)[:V1_BINS]
    window = np.outer(np.hanning(rows), np.hanning(cols))
    power = np.abs(np.fft.rfft2(filled * window)) ** 2
    sums = np.bincount(index.ravel(), (power * weight).ravel(), V1_BINS + 1)[:V1_BINS]
    seen = counts > 0
    mean_power = sums[seen] / counts[seen]
    if mean_power.mean() > 0:
        mean_power = mean_power / mean_power.mean()
    centres = np.arange(V1_BINS)
    return np.interp(centres, centres[seen], np.log10(mean_power + 1e-4))


def v1_scores(vectors: np.ndarray) -> np.ndarray:
    return -np.linalg.norm(vectors[:, None, :] - vectors[None, :, :], axis=-1)


def v2_scores(vectors: np.ndarray) -> np.ndarray:
    return np.stack([prefilter.similarity(v, vectors) for v in vectors])


def match_ranks(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Rank (1 = best) of every true match among all other signatures, per ordered pair."""
    out = []
    for i in range(len(labels)):
        row = scores[i].astype(np.float64).copy()
        row[i] = -np.inf
        for j in np.flatnonzero(labels == labels[i]):
            if j != i:
                out.append(int((row >= row[j]).sum()))  # ties count against the match
    return np.array(out)


def cuts(n_others: int) -> list[tuple[str, int]]:
    out = [(str(k), k) for k in (1, 5, 10, 20, 50)]
    out += [("1%", max(1, round(0.01 * n_others))), ("5%", max(1, round(0.05 * n_others)))]
    return out


def recall_line(name: str, ranks: np.ndarray, n_others: int) -> str:
    cells = [f"{label}({k}):{(ranks <= k).mean():.3f}" for label, k in cuts(n_others)]
    return f"  {name:3s} recall@K " + " ".join(cells) + f"  median {np.median(ranks):.0f}"


def report(title: str, labels: np.ndarray, v1: np.ndarray, v2: np.ndarray, full: bool) -> dict:
    n = len(labels)
    pairs = int(sum((labels == lab).sum() - 1 for lab in labels))
    print(f"\n{title}: {n} signatures, N = {n - 1} others per query, {pairs} true-match pairs")
    result = {}
    for name, scores in (("v1", v1), ("v2", v2)):
        ranks = match_ranks(scores, labels)
        result[name] = ranks
        print(recall_line(name, ranks, n - 1))
        if full:
            print(f"      ranks: {' '.join(str(r) for r in ranks)}")
        else:
            histogram = [
                ("<=1", ranks <= 1),
                ("2-5", (ranks > 1) & (ranks <= 5)),
                ("6-20", (ranks > 5) & (ranks <= 20)),
                (">20", ranks > 20),
            ]
            cells = ", ".join(f"{label} {int(hit.sum())}" for label, hit in histogram)
            print(f"      ranks: {cells}; worst {np.sort(ranks)[-8:].tolist()}")
        top = [scores[i][np.arange(n) != i].argmax() for i in range(n)]
        hits = np.mean([labels[np.arange(n) != i][t] == labels[i] for i, t in enumerate(top)])
        print(f"      top-1 hit rate (best other is a true match): {hits:.3f}")
    return result


def standardised(labels: np.ndarray, scores: np.ndarray):
    """Each query's scores standardised by its own non-matches' mean and spread.

    Returns
    -------
    z : (n, n) standardised scores; non : (n, n) bool, the non-match pairs;
    pool : sorted z of every non-match pair; match : z of every true-match pair;
    exceed : per true match, the share of pooled non-match z at or above it.
    """
    n = len(labels)
    off = ~np.eye(n, dtype=bool)
    same = (labels[:, None] == labels[None, :]) & off
    non = (labels[:, None] != labels[None, :]) & off
    z = np.empty_like(scores, dtype=np.float64)
    for i in range(n):
        row = scores[i][non[i]]
        z[i] = (scores[i] - row.mean()) / max(row.std(), 1e-12)
    pool = np.sort(z[non])
    match = z[same]
    exceed = (pool.size - np.searchsorted(pool, match, side="left")) / pool.size
    return z, non, pool, match, exceed


def extrapolate(labels, batches, scores: np.ndarray, name: str) -> None:
    """Expected recall at N = 10^4, 10^5 from the pooled non-match score distribution.

    Scores are first standardised per query (minus the mean, over the standard deviation,
    of that query's non-match scores): ranking within a query does not change, and queries
    whose scores run high or low as a whole become comparable. Then P(non-match >= match)
    is read off all non-match pairs pooled, and the expected rank of a true match among N
    candidates is 1 + N * P (so at N > pool size, one pooled non-match above it already
    costs N / pool size places).
    """
    z, non, pool, match, exceed = standardised(labels, scores)
    same_batch = non & (batches[:, None] == batches[None, :])
    print(
        f"  {name}: standardised scores: true match median {np.median(match):.2f}, 10th pct "
        f"{np.quantile(match, 0.1):.2f}; non-match p99.9 {np.quantile(pool, 0.999):.2f}, max "
        f"{pool.max():.2f}; same-batch non-match median {np.median(z[same_batch]):.2f}"
    )
    for big in (10_000, 100_000):
        rank = 1 + big * exceed
        cells = " ".join(
            f"{label}:{(rank <= k).mean():.3f}"
            for label, k in [(str(k), k) for k in (10, 20, 50)]
            + [("1%", big // 100), ("5%", big // 20)]
        )
        print(f"    N={big:>6} expected recall@K {cells} (P from {pool.size} non-match pairs)")


def synthetic(args) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Breech-face signatures of a synthetic set (cached), with firearm and batch labels."""
    cache = Path(args.cache) / (
        f"bf_{args.batches}x{args.per_batch}x{args.shots}_s{args.seed}_{args.pixel}.npz"
    )
    if cache.exists():
        data = np.load(cache)
        count = int(data["count"])
        return data["labels"], data["batches"], [data[f"s{i}"] for i in range(count)]
    import ribin
    from ribin.io import Casing
    from ribin.synthetic.firearm import make_batch, make_firearm
    from ribin.synthetic.shot import make_casing, render_casing

    labels, batches, surfaces = [], [], []
    root = np.random.SeedSequence(args.seed)
    start = time.perf_counter()
    for b, seq in enumerate(root.spawn(args.batches)):
        rng = np.random.default_rng(seq)
        batch = make_batch(rng, f"B{b}", "9mm", "round", master_pixel_um=args.pixel / 2)
        for f, fseq in enumerate(seq.spawn(args.per_batch)):
            frng = np.random.default_rng(fseq)
            firearm = make_firearm(frng, batch, f"F{b}-{f}")
            for shot in range(args.shots):
                crng = np.random.default_rng(frng.integers(1 << 62))
                image, _ = render_casing(
                    make_casing(firearm, crng, shot + 1), crng, "3d", args.pixel
                )
                heights = image * 1e6
                exhibit = ribin.extract(
                    Casing(heights, "3d", args.pixel, np.isfinite(heights)),
                    pixel_size_um=args.pixel,
                )
                if exhibit.breech_face is None:
                    continue
                surfaces.append(np.asarray(exhibit.breech_face.surface, np.float32))
                labels.append(b * args.per_batch + f)
                batches.append(b)
        print(f"  batch {b + 1}/{args.batches}: {time.perf_counter() - start:.0f} s", flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        cache,
        count=len(surfaces),
        labels=labels,
        batches=batches,
        **{f"s{i}": s for i, s in enumerate(surfaces)},
    )
    return np.array(labels), np.array(batches), surfaces


def timings(surfaces: list[np.ndarray], pixel: float) -> None:
    sample = surfaces[: min(len(surfaces), 40)]
    prefilter.features(sample[0], pixel)  # warm the polar-grid cache
    start = time.perf_counter()
    for s in sample:
        prefilter.features(s, pixel)
    per = (time.perf_counter() - start) / len(sample)
    start = time.perf_counter()
    for s in sample:
        v1_spectrum(s)
    per_v1 = (time.perf_counter() - start) / len(sample)
    shape = sample[0].shape
    print(
        f"\nfeatures per signature ({shape[0]}x{shape[1]} px): v2 {per * 1e3:.1f} ms, "
        f"v1 {per_v1 * 1e3:.1f} ms; v2 stores {prefilter.FEATURE_LENGTH} float32 = "
        f"{prefilter.FEATURE_LENGTH * 4} bytes"
    )
    rng = np.random.default_rng(0)
    for n in (10_000, 100_000):
        table = rng.normal(size=(n, prefilter.FEATURE_LENGTH)).astype(np.float32)
        query = table[0].copy()
        best = np.inf
        for _ in range(3):
            start = time.perf_counter()
            prefilter.similarity(query, table)
            best = min(best, time.perf_counter() - start)
        v1_table = table[:, :64]
        start = time.perf_counter()
        np.linalg.norm(v1_table - v1_table[0], axis=1)
        v1_time = time.perf_counter() - start
        print(
            f"similarity, 1 query vs {n:>6} candidates: v2 {best * 1e3:.0f} ms (best of 3), "
            f"v1 (L2 over 64) {v1_time * 1e3:.1f} ms"
        )
        del table, v1_table


# --------------------------------------------------------------------------- band sweep


def band_features(surface: np.ndarray, pixel: float, band: tuple[float, float]) -> np.ndarray:
    """:func:`ribin.prefilter.features` with its rings over ``band`` (longest, shortest um)."""
    return prefilter._vector(prefilter._polar_map(np.asarray(surface, np.float64), pixel, band))


def band_figures(labels: np.ndarray, vectors: np.ndarray) -> dict:
    """Worst true-match z and rank, and its expected rank at 10^4 and 10^5 candidates.

    Each query's scores are standardised by its non-matches (as :func:`extrapolate` and
    ``bench_search_accuracy.py``); the share of pooled non-match z at or above a true
    match's z gives its expected rank 1 + N x share (and 1 + N x the normal tail).
    """
    scores = v2_scores(vectors)
    n = len(labels)
    _, _, pool, match, exceed_all = standardised(labels, scores)
    exceed = exceed_all.max()
    out = {
        "z_min": float(match.min()),
        "z_median": float(np.median(match)),
        "non_max": float(pool.max()),
        "rank_max": int(match_ranks(scores, labels).max()),
        "others": n - 1,
    }
    for big in (10_000, 100_000):
        # kept by the default shortlist, max(10, 0.1 % of N)
        out[f"kept_{big}"] = float((1 + big * exceed_all <= max(10, big // 1000)).mean())
        out[f"rank_{big}"] = 1 + big * exceed
        out[f"normal_{big}"] = 1 + big * float(special.ndtr(-match.min()))
    return out


def band_sets(args) -> list[tuple[str, np.ndarray, list[np.ndarray], list[float]]]:
    """(name, labels, surfaces, pixel sizes) of every set the band sweep measures."""
    import csv

    import ribin
    from ribin.io import read_casing

    sets = []
    labels, _, surfaces = synthetic(args)
    sets.append(
        (
            f"held-out synthetic BF ({args.batches}x{args.per_batch}x{args.shots}, 12.5 um)",
            np.asarray(labels),
            surfaces,
            [args.pixel] * len(surfaces),
        )
    )
    folder = Path(__file__).resolve().parents[1] / "data" / "synthetic_casings"
    with open(folder / "manifest.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["modality"] == "3d"]
    extracted = [ribin.extract(read_casing(folder / r["file"])).signatures() for r in rows]
    for region, short in (("breech_face", "BF"), ("firing_pin", "FP")):
        keep = [i for i, e in enumerate(extracted) if region in e]
        sigs = [extracted[i][region] for i in keep]
        sets.append(
            (
                f"committed synthetic 3D {short} (12.5 um)",
                np.array([rows[i]["firearm"] for i in keep]),
                [s.surface for s in sigs],
                [s.pixel_size_um for s in sigs],
            )
        )
    if not args.skip_fadul and FADUL_DIR.exists():
        _, fadul_labels, raw = fadul_signatures()
        casings = [read_casing(FADUL_DIR / name) for name in _fadul_files()]
        sigs = [ribin.extract(c).breech_face for c in casings]
        sets.append(
            (
                "Fadul BF, extracted (12.5 um)",
                np.array(fadul_labels),
                [s.surface for s in sigs],
                [s.pixel_size_um for s in sigs],
            )
        )
        sets.append(
            (
                "Fadul BF, as measured (6.25 um)",
                np.array(fadul_labels),
                [s.surface for s in raw],
                [s.pixel_size_um for s in raw],
            )
        )
    return sets


def _fadul_files() -> list[str]:
    import csv

    with open(FADUL_DIR / "truth.csv", newline="") as fh:
        return [r["file"] for r in csv.DictReader(fh)]


def band_sweep(args) -> None:
    """Measure every band of ``--bands`` on every set of :func:`band_sets`; record a table."""
    bands = []
    for item in args.bands.split(","):
        long_um, short_um = (float(x) for x in item.split(":"))
        bands.append((long_um, short_um))
    sets = band_sets(args)
    print(
        "\nband sweep: the features' rings over LONG:SHORT um (v2: "
        f"{prefilter.LONG_UM:g}:{prefilter.SHORT_UM:g}); load {os.getloadavg()[0]:.1f}"
    )
    rows = []
    for name, labels, surfaces, pixels in sets:
        print(f"\n  {name}: {len(labels)} signatures, {len(set(labels.tolist()))} firearms")
        for band in bands:
            vectors = np.stack(
                [band_features(s, px, band) for s, px in zip(surfaces, pixels, strict=True)]
            )
            fig = band_figures(labels, vectors)
            label = f"{band[0]:g}-{band[1]:g}"
            print(
                f"    {label:>8} um: true-match z min {fig['z_min']:5.2f} med "
                f"{fig['z_median']:5.2f} (non-match max {fig['non_max']:4.2f}); rank max "
                f"{fig['rank_max']:3d} of {fig['others']}; worst expected at 10^4 "
                f"{fig['rank_10000']:.0f} (normal tail {fig['normal_10000']:.0f}), at 10^5 "
                f"{fig['rank_100000']:.0f} (normal tail {fig['normal_100000']:.0f}); kept by the "
                f"default shortlist at 10^4 {fig['kept_10000']:.3f}, at 10^5 "
                f"{fig['kept_100000']:.3f}",
                flush=True,
            )
            rows.append(
                [
                    name,
                    label,
                    round(fig["z_min"], 2),
                    round(fig["z_median"], 2),
                    f"{fig['rank_max']} of {fig['others']}",
                    f"{fig['rank_10000']:.0f} / {fig['normal_10000']:.0f}",
                    f"{fig['rank_100000']:.0f} / {fig['normal_100000']:.0f}",
                    f"{fig['kept_10000']:.3f} / {fig['kept_100000']:.3f}",
                ]
            )
    record(
        "prefilter_bands",
        "Prefilter band: worst true match per data set and band",
        [
            "data set",
            "band um",
            "true-match z min",
            "z median",
            "worst rank",
            "worst expected rank at 10^4 (pooled / normal tail)",
            "at 10^5",
            "true matches kept by the default shortlist at 10^4 / 10^5",
        ],
        rows,
        notes=(
            "The features of ribin.prefilter with their rings over the band (long-short "
            "wavelength, um; capped at 0.45 cycles per pixel), all else as defined. z: each "
            "query's scores standardised by its non-matches; expected rank: 1 + N x the "
            "share of pooled non-match z at or above the worst true match's (or its normal "
            "tail); kept: the share of true matches expected within max(10, 0.1 % of N). "
            "Held-out synthetic: the set the version 2 constants were chosen against "
            "(bench_prefilter.py's own); committed synthetic: the 3D rows of "
            "bench_2d_search.py part 1; Fadul: the 19 real scans, extracted as search stores "
            "them and as measured."
        ),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=25)
    parser.add_argument("--per-batch", type=int, default=4)
    parser.add_argument("--shots", type=int, default=3)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--pixel", type=float, default=12.5, help="signature pixel size (um)")
    parser.add_argument("--cache", default="/tmp/ribin_bench_prefilter")
    parser.add_argument("--skip-fadul", action="store_true")
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument(
        "--bands", help="measure these bands instead (LONG:SHORT um, comma-separated)"
    )
    args = parser.parse_args()
    print(machine())
    print(f"prefilter version {prefilter.FEATURE_VERSION}, {prefilter.FEATURE_LENGTH} values")
    if args.bands:
        band_sweep(args)
        return

    if not args.skip_fadul:
        _, labels, sigs = fadul_signatures()
        labels = np.array(labels)
        v1 = v1_scores(np.stack([v1_spectrum(s.surface) for s in sigs]))
        v2 = v2_scores(prefilter.features_many(sigs))
        report("Fadul subset (6.25 um, real)", labels, v1, v2, full=True)

    if not args.skip_synthetic:
        labels, batches, surfaces = synthetic(args)
        v1 = v1_scores(np.stack([v1_spectrum(s) for s in surfaces]))
        v2 = v2_scores(np.stack([prefilter.features(s, args.pixel) for s in surfaces]))
        report(
            f"Synthetic {args.batches} batches x {args.per_batch} firearms x {args.shots} shots "
            f"(3D, {args.pixel} um, ribin.extract)",
            labels,
            v1,
            v2,
            full=False,
        )
        print("  extrapolation to large N (pooled non-match scores):")
        extrapolate(labels, batches, v1, "v1")
        extrapolate(labels, batches, v2, "v2")
        timings(surfaces, args.pixel)


if __name__ == "__main__":
    main()
