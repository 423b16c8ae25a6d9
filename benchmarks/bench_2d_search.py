"""2D search: does the prefilter keep true matches of 2D images, and what does a 2D search cost?

Three parts, each printed with the 3D figures of the same surfaces beside it:

1. **Prefilter recall.** For every 2D signature, every other signature of the set (same
   region, same pixel size, never another rendering of the same scan: the store excludes a
   query's own source) is ranked by :func:`ribin.prefilter.similarity` of the vectors the
   store holds (:func:`ribin.prefilter.features` of the signature's surface). Printed: the
   rank of every true match (median, max, of how many), the margin as
   ``bench_search_accuracy.py`` prints it (each query's scores standardised by its
   non-matches; true-match z against the pooled non-match z) and the expected rank of the
   worst true match among 10^4 candidates (1 + N P(pooled z >= its z), and under a normal
   tail). Sets: the committed synthetic 2D casings (breech face and firing pin) and the 19
   Fadul scans rendered under each lighting model of :mod:`ribin.synthetic.lighting`
   (ring, oblique, coaxial; lighting varied per shot, seeded as in ``bench_2d_real.py``),
   per model and pooled (a query under one light, candidates under any).
   ``--variants`` also scores the 2D feature variants that were tried (see docs/method.md,
   "2D prefilter"): ``ringnorm`` (the lighting's common angular factor removed from the
   polar spectrum), ``energy`` (polar map of the local mark energy around the centre).
2. **2D firing pin.** Detected firing pins on the synthetic 2D set, and the 2D firing-pin
   comparison: ROC AUC, EER, weakest known match and strongest known non-match score, 3D
   beside it.
3. **2D search time.** Measured: the time of one 2D comparison (breech face and firing
   pin of real-size signatures, two at a time) and the prefilter stage over 10^3 and 10^4
   feature vectors. Extrapolated (printed as such): an exhaustive 2D search over n stored
   exhibits = prefilter + n x (breech face + firing pin comparison time); a shortlisted one
   = prefilter + 2K x that, for the K that would hold every true match measured in part 1.

::

    nice -n 10 python benchmarks/bench_2d_search.py                  # everything (~10 min)
    nice -n 10 python benchmarks/bench_2d_search.py --models ring --skip-time
    nice -n 10 python benchmarks/bench_2d_search.py --illumination integrate --variants

Nothing is cached: renderings are made in memory.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage, special

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import FADUL_DIR, REPO, all_pairs, equal_error_rate, machine, roc_auc
from bench_2d_real import fadul_casings, rendered
from results import record

from ribin import prefilter
from ribin.compare import compare_many
from ribin.exhibit import Signature
from ribin.io import read_casing
from ribin.preprocess import gaussian_nan
from ribin.signatures import DEFAULT_ILLUMINATION_2D, ILLUMINATION_METHODS, extract
from ribin.synthetic.lighting import LIGHTING_MODELS

SYNTHETIC_DIR = REPO / "data" / "synthetic_casings"
BIG = 10_000


# ----------------------------------------------------------------- feature variants tried


def _coefficients(polar: np.ndarray, low_weight: float, low_cut: int) -> np.ndarray:
    """A (N_RINGS, N_ANGLES) map as a prefilter vector (angular Fourier coefficients)."""
    weights = np.where(np.arange(1, prefilter.N_COEFFS + 1) < low_cut, low_weight, 1.0)
    coeffs = np.fft.rfft(polar, axis=1)[:, 1 : prefilter.N_COEFFS + 1] * weights
    energy = 2.0 * float((np.abs(coeffs) ** 2).sum())
    out = np.zeros((prefilter.N_RINGS, prefilter.N_COEFFS, 2))
    if energy > 1e-20:
        coeffs = coeffs / np.sqrt(energy)
        out[..., 0], out[..., 1] = coeffs.real, coeffs.imag
    return out.astype(np.float32).ravel()


def _standardise_rows(polar: np.ndarray) -> np.ndarray:
    out = np.zeros_like(polar)
    for r, row in enumerate(polar):
        ok = np.isfinite(row)
        if ok.sum() < 8:
            continue
        row = np.where(ok, row - row[ok].mean(), 0.0)
        spread = row[ok].std()
        if spread > 1e-9:
            out[r] = row / spread
    return out


def ringnorm(surface: np.ndarray, pixel_um: float) -> np.ndarray:
    """Polar log spectrum minus its mean over rings per angle (an oblique light multiplies
    the power by a function of angle alone, which this removes), rings re-standardised."""
    polar = prefilter._polar_map(np.asarray(surface, np.float64), pixel_um)
    polar = _standardise_rows(polar - polar.mean(axis=0, keepdims=True))
    return _coefficients(polar, prefilter.LOW_WEIGHT, prefilter.LOW_CUT)


def energy(surface: np.ndarray, pixel_um: float, long_um: float = 100.0) -> np.ndarray:
    """Polar map (16 radii x 64 angles over 360 degrees, about the surface's centre) of the
    log local energy of the marks shorter than 40 um, smoothed over `long_um`: where the
    marks are strong, whatever the light's direction (not translation tolerant)."""
    values = np.asarray(surface, np.float64)
    high = values - gaussian_nan(values, 40.0 / pixel_um / 2.5)
    local = np.log(gaussian_nan(high * high, long_um / pixel_um / 2.5) + 1e-6)
    rows, cols = local.shape
    radii = np.linspace(0.2, 0.95, prefilter.N_RINGS) * min(rows, cols) / 2
    theta = np.arange(prefilter.N_ANGLES) * 2 * np.pi / prefilter.N_ANGLES
    yy = (rows - 1) / 2 + radii[:, None] * np.sin(theta)[None, :]
    xx = (cols - 1) / 2 + radii[:, None] * np.cos(theta)[None, :]
    valid = np.isfinite(local)
    v = ndimage.map_coordinates(np.where(valid, local, 0.0), [yy, xx], order=1)
    w = ndimage.map_coordinates(valid.astype(float), [yy, xx], order=1)
    polar = np.where(w > 0.5, v / np.maximum(w, 1e-9), np.nan)
    return _coefficients(_standardise_rows(polar), 1.0, 0)


FEATURES: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "stored": lambda s, px: prefilter.features(s, px),
    "ringnorm": ringnorm,
    "energy": energy,
}


# ------------------------------------------------------------------------------ recall


def recall(labels: list, sources: list, vectors: np.ndarray) -> dict:
    """Rank and z-margin of every true match (ordered pairs) among all other candidates."""
    scores = np.stack([prefilter.similarity(v, vectors) for v in vectors])
    n = len(labels)
    ranks, z_true, z_pool, sizes = [], [], [], []
    for i in range(n):
        candidate = np.array([sources[j] != sources[i] for j in range(n)])
        mate = np.array([labels[j] == labels[i] for j in range(n)])
        row = scores[i]
        non = candidate & ~mate
        if not non.any():
            continue
        sizes.append(int(candidate.sum()))
        mean, spread = row[non].mean(), max(row[non].std(), 1e-12)
        for j in np.flatnonzero(candidate & mate):
            ranks.append(int((row[candidate] >= row[j]).sum()))  # ties count against
            z_true.append((row[j] - mean) / spread)
        z_pool += ((row[non] - mean) / spread).tolist()
    ranks_a, z_true_a, pool = np.array(ranks), np.array(z_true), np.sort(z_pool)
    exceed = (pool.size - np.searchsorted(pool, z_true_a, side="left")) / pool.size
    expected = 1 + BIG * exceed
    normal = 1 + BIG * special.ndtr(-z_true_a)
    return {
        "matches": len(ranks),
        "candidates": int(np.median(sizes)),
        "rank_median": float(np.median(ranks_a)),
        "rank_max": int(ranks_a.max()),
        "z_min": float(z_true_a.min()),
        "z_median": float(np.median(z_true_a)),
        "non_p999": float(np.quantile(pool, 0.999)),
        "non_max": float(pool.max()),
        "big_max": float(expected.max()),
        "big_normal_max": float(normal.max()),
        "exceed_max": float(exceed.max()),
    }


def print_recall(name: str, variant: str, fig: dict, table: list) -> None:
    print(
        f"  {name:<28} {variant:<9} ranks med {fig['rank_median']:4.0f} max {fig['rank_max']:3d}"
        f" of {fig['candidates']:3d} | z true min {fig['z_min']:5.2f} med {fig['z_median']:5.2f};"
        f" non-match p99.9 {fig['non_p999']:4.2f} max {fig['non_max']:4.2f} | N = {BIG}: worst"
        f" true match expected at {fig['big_max']:.0f} (normal tail {fig['big_normal_max']:.0f})",
        flush=True,
    )
    table.append(
        [
            name,
            variant,
            fig["matches"],
            fig["candidates"],
            f"{fig['rank_median']:.0f} / {fig['rank_max']}",
            f"{fig['z_min']:.2f} / {fig['z_median']:.2f}",
            f"{fig['non_p999']:.2f}",
            f"{fig['big_max']:.0f}",
        ]
    )


def synthetic_set(method: str | None) -> dict[str, tuple[list, list, list[Signature]]]:
    """The committed synthetic set per modality: (labels, sources, signatures by region)."""
    with open(SYNTHETIC_DIR / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    out: dict[str, tuple[list, list, list]] = {}
    for modality in ("3d", "2d"):
        labels, sigs = [], []
        for row in (r for r in rows if r["modality"] == modality):
            options = {"illumination": method} if modality == "2d" else {}
            ex = extract(read_casing(SYNTHETIC_DIR / row["file"]), **options)
            labels.append(row["firearm"])
            sigs.append(ex.signatures())
        out[modality] = (labels, list(range(len(labels))), sigs)
    return out


def region_vectors(
    labels: list, sources: list, sigs: list[dict], region: str, fn: Callable
) -> tuple[list, list, np.ndarray, list[Signature]]:
    keep = [i for i, s in enumerate(sigs) if region in s]
    chosen = [sigs[i][region] for i in keep]
    vectors = np.stack([fn(s.surface, s.pixel_size_um) for s in chosen])
    return [labels[i] for i in keep], [sources[i] for i in keep], vectors, chosen


def same_scan(
    per_model: list[np.ndarray], vec3: np.ndarray, labels: list, names: list[str]
) -> None:
    """Why the stored vectors fail in 2D: one scan's renderings against each other and
    against its own 3D signature, beside the non-match level."""
    n = len(labels)
    lines = []
    pairs = [(a, b) for a in range(len(per_model)) for b in range(a + 1, len(per_model))]
    for a, b in pairs:
        same = [prefilter.similarity(per_model[a][i], per_model[b][i : i + 1])[0] for i in range(n)]
        lines.append(f"{names[a]} vs {names[b]}: {np.median(same):.3f}")
    for a, vec in enumerate(per_model):
        same = [prefilter.similarity(vec3[i], vec[i : i + 1])[0] for i in range(n)]
        lines.append(f"3D vs {names[a]}: {np.median(same):.3f}")
    non = [
        prefilter.similarity(vec[i], vec[[j for j in range(n) if labels[j] != labels[i]]])
        for vec in per_model
        for i in range(n)
    ]
    non_all = np.concatenate(non)
    mates3 = [
        prefilter.similarity(
            vec3[i], vec3[[j for j in range(n) if j != i and labels[j] == labels[i]]]
        )
        for i in range(n)
    ]
    print(
        "  same scan, stored vectors, median similarity: "
        + "; ".join(lines)
        + f" | 2D non-matches median {np.median(non_all):.3f}, p99 {np.quantile(non_all, 0.99):.3f}"
        f" | 3D mates (other casing, same firearm) median {np.median(np.concatenate(mates3)):.3f}"
    )


# ----------------------------------------------------------------------- firing pin 2D


def pair_scores(sigs: list[Signature | None]) -> np.ndarray:
    """Score matrix of every pair (NaN where either signature is missing)."""
    n = len(sigs)
    pairs = [(i, j) for i, j in all_pairs(n) if sigs[i] is not None and sigs[j] is not None]
    results = compare_many([(sigs[i], sigs[j], None) for i, j in pairs])
    matrix = np.full((n, n), np.nan)
    for (i, j), result in zip(pairs, results, strict=True):
        matrix[i, j] = matrix[j, i] = result.score
    return matrix


def figures(labels: list, matrix: np.ndarray) -> dict:
    """AUC, EER, extremes and search top-1 (a mate strictly above every non-mate)."""
    n = len(labels)
    pairs = [(i, j) for i, j in all_pairs(n) if np.isfinite(matrix[i, j])]
    scores = np.array([matrix[i, j] for i, j in pairs])
    match = np.array([labels[i] == labels[j] for i, j in pairs])
    hits = queries = 0
    for q in range(n):
        row = np.where(np.isfinite(matrix[q]), matrix[q], -np.inf)
        mates = [k for k in range(n) if k != q and labels[k] == labels[q]]
        others = [k for k in range(n) if k != q and labels[k] != labels[q]]
        if mates and np.isfinite(row[mates]).any():
            queries += 1
            hits += bool(row[mates].max() > row[others].max())
    return {
        "pairs": len(pairs),
        "matches": int(match.sum()),
        "auc": roc_auc(scores, match),
        "eer": equal_error_rate(scores, match),
        "weakest_match": float(scores[match].min()),
        "strongest_non": float(scores[~match].max()),
        "top1": hits / max(queries, 1),
    }


# ------------------------------------------------------------------------------- timing


def time_search(sigs2d: list[dict], exceed: float) -> list[list]:
    """Measured comparison and prefilter times; extrapolated 2D search latency."""
    both = [s for s in sigs2d if "firing_pin" in s][:6]
    jobs = []
    for a, b in zip(both[::2], both[1::2], strict=False):
        for region in ("breech_face", "firing_pin"):
            jobs.append((a[region], b[region], None))
    compare_many(jobs[:2])  # compile
    started = time.perf_counter()
    compare_many(jobs)
    per_exhibit = (time.perf_counter() - started) / (len(jobs) / 2)
    vector = prefilter.features(both[0]["breech_face"])
    stage = {}
    for n in (1_000, 10_000):
        table = np.tile(vector, (n, 1))
        started = time.perf_counter()
        for _ in range(2):  # both regions
            order = np.argsort(-prefilter.similarity(vector, table), kind="stable")
        stage[n] = time.perf_counter() - started
        del order
    load = os.getloadavg()
    print(
        f"\n2D search time (load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; 2 cores):"
        f" one 2D exhibit compared (breech face + firing pin, two comparisons at a time)"
        f" {per_exhibit:.3f} s measured; prefilter stage (score + sort, both regions, vectors"
        f" in memory) {stage[1_000]:.3f} s at 10^3, {stage[10_000]:.3f} s at 10^4 measured"
    )
    rows = []
    for n in (1_000, 10_000):
        exhaustive = stage[n] + n * per_exhibit
        k_default = max(10, int(np.ceil(0.001 * n)))
        default = stage[n] + 2 * k_default * per_exhibit
        k_all = int(np.ceil(1 + n * exceed))
        k_all = min(n, max(k_all, k_default))
        holding = stage[n] + 2 * k_all * per_exhibit
        print(
            f"  n = {n}: exhaustive {exhaustive:.0f} s (extrapolated: prefilter + n x"
            f" {per_exhibit:.3f} s); shortlist K = {k_default} per region {default:.1f} s;"
            f" the K that holds every measured 2D true match ({k_all}) {holding:.0f} s"
        )
        rows.append(
            [
                n,
                f"{per_exhibit:.3f}",
                f"{stage[n]:.2f}",
                f"{exhaustive:.0f}",
                f"{k_default}: {default:.1f}",
                f"{k_all}: {holding:.0f}",
                f"{load[0]:.1f}",
            ]
        )
    return rows


# -------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(LIGHTING_MODELS), help="lighting models")
    parser.add_argument(
        "--illumination",
        default=DEFAULT_ILLUMINATION_2D,
        choices=sorted(ILLUMINATION_METHODS),
        help="2D method of the signatures",
    )
    parser.add_argument("--seed", type=int, default=21, help="seed of the lighting draws")
    parser.add_argument("--variants", action="store_true", help="also the variants tried")
    parser.add_argument("--skip-fadul", action="store_true")
    parser.add_argument("--skip-time", action="store_true")
    parser.add_argument("--skip-firing-pin", action="store_true")
    parser.add_argument("--name", default="2d_search", help="stem of the recorded tables")
    args = parser.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    if bad := [m for m in models if m not in LIGHTING_MODELS]:
        parser.error(f"unknown lighting models {bad}")
    variants = list(FEATURES) if args.variants else ["stored"]
    print(f"machine: {machine()}; 2D method {args.illumination}; load {os.getloadavg()[0]:.1f}")

    table: list[list] = []
    worst = 0.0  # share of pooled non-matches above the worst 2D true match
    print("\n1. Prefilter recall (ranks among all candidates; z against each query's non-matches)")
    synthetic = synthetic_set(args.illumination)
    for modality in ("3d", "2d"):
        labels, sources, sigs = synthetic[modality]
        for region in ("breech_face", "firing_pin"):
            for variant in variants if modality == "2d" else ["stored"]:
                lab, src, vec, _ = region_vectors(labels, sources, sigs, region, FEATURES[variant])
                fig = recall(lab, src, vec)
                print_recall(f"synthetic {modality} {region}", variant, fig, table)
                if modality == "2d" and variant == "stored":
                    worst = max(worst, fig["exceed_max"])
    if not args.skip_fadul and FADUL_DIR.exists():
        names, labels, casings = fadul_casings()
        sigs3 = [extract(c).breech_face for c in casings]
        vec3 = np.stack([prefilter.features(s) for s in sigs3])
        print_recall("Fadul 3d breech_face", "stored", recall(labels, names, vec3), table)
        pooled: dict[str, list] = {v: [] for v in variants}
        pooled_labels, pooled_sources = [], []
        for model_index, model in enumerate(LIGHTING_MODELS):
            if model not in models:
                continue
            sigs2 = []
            for i, casing in enumerate(casings):
                shot, _ = rendered(casing, model, (args.seed, model_index, i))
                sigs2.append(extract(shot, illumination=args.illumination).breech_face)
            pooled_labels += labels
            pooled_sources += names
            for variant in variants:
                vec = np.stack([FEATURES[variant](s.surface, s.pixel_size_um) for s in sigs2])
                pooled[variant].append(vec)
                fig = recall(labels, names, vec)
                print_recall(f"Fadul 2d {model} breech_face", variant, fig, table)
                if variant == "stored":
                    worst = max(worst, fig["exceed_max"])
        if len(pooled[variants[0]]) > 1:
            for variant in variants:
                fig = recall(pooled_labels, pooled_sources, np.concatenate(pooled[variant]))
                print_recall("Fadul 2d pooled lights", variant, fig, table)
            same_scan(pooled["stored"], vec3, labels, [m for m in LIGHTING_MODELS if m in models])
    record(
        f"{args.name}_prefilter",
        "2D prefilter: rank of every true match among all candidates (3D beside it)",
        [
            "set / region",
            "features",
            "true-match pairs",
            "candidates per query",
            "rank median / max",
            "true-match z min / median",
            "non-match z p99.9",
            "worst true match, expected rank at N = 10^4",
        ],
        table,
        f"2D method {args.illumination}. 'stored': the vectors a store holds for every "
        "signature (ribin.prefilter.features); 'ringnorm' and 'energy': 2D variants tried "
        "(bench_2d_search.py). Fadul 2d: the 19 scans rendered per lighting model, lighting "
        "varied per shot; 'pooled lights': a query under one light, candidates under all. "
        "Renderings of the query's own scan are never candidates (same source).",
    )

    fp_rows = []
    if not args.skip_firing_pin:
        print("\n2. 2D firing pin (synthetic set): detection and comparison")
    for modality in () if args.skip_firing_pin else ("3d", "2d"):
        labels, _, sigs = synthetic[modality]
        found = sum("firing_pin" in s for s in sigs)
        bf = pair_scores([s["breech_face"] for s in sigs])
        fp = pair_scores([s.get("firing_pin") for s in sigs])
        both = bf + np.nan_to_num(fp, nan=0.0)  # the search's combined score (sum of regions)
        for name, matrix in (("firing pin", fp), ("breech face", bf), ("BF + FP", both)):
            fig = figures(labels, matrix)
            print(
                f"  {modality} {name:<11}: AUC {fig['auc']:.3f} EER {fig['eer']:.3f} weakest "
                f"match {fig['weakest_match']:.2f} strongest non-match "
                f"{fig['strongest_non']:.2f} top-1 {fig['top1']:.3f}"
                + (
                    f" (firing pin detected on {found} of {len(sigs)})"
                    if name == "firing pin"
                    else ""
                )
            )
            fp_rows.append(
                [
                    modality,
                    name,
                    f"{found} / {len(sigs)}" if name != "breech face" else "-",
                    f"{fig['auc']:.3f}",
                    f"{fig['eer']:.3f}",
                    f"{fig['weakest_match']:.2f} / {fig['strongest_non']:.2f}",
                    f"{fig['top1']:.3f}",
                ]
            )
    if fp_rows:
        record(
            f"{args.name}_firing_pin",
            "2D firing pin on the synthetic set: detection and comparison (3D beside it)",
            [
                "modality",
                "score",
                "firing pin detected",
                "ROC AUC",
                "EER",
                "weakest match / strongest non-match score",
                "search top-1",
            ],
            fp_rows,
            f"Committed synthetic set (8 firearms x 3 shots per modality), every pair; 2D method "
            f"{args.illumination}. 'BF + FP': the search's combined score (sum of the compared "
            "regions' scores; a casing without a detected pin adds 0).",
        )

    if not args.skip_time:
        rows = time_search(synthetic["2d"][2], worst)
        record(
            f"{args.name}_time",
            "2D search latency (per query, 2 cores shared)",
            [
                "stored 2D exhibits",
                "s per exhibit compared (BF + FP), measured",
                "prefilter stage s, measured",
                "exhaustive s, extrapolated",
                "default shortlist K: s",
                "K holding every measured 2D true match: s",
                "load average",
            ],
            rows,
            "Exhaustive = prefilter + n x per-exhibit time; shortlisted = prefilter + 2K x "
            "per-exhibit time (the union of the regions' shortlists). K holding every true "
            "match: the worst expected rank at that n from part 1 (pooled non-match tail).",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
