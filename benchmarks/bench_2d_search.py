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
   per model and pooled (a query under one light, candidates under all).
   **What a shortlist must keep:** every pair of each 2D set is also compared in full
   (:func:`ribin.compare.compare_many`, the search's own comparison); a true match the
   exhaustive search would list in its top :data:`TOP` among 10^4 candidates (:func:`listed`)
   must be inside the default shortlist (K = 10 per region at 10^4); printed: how many are
   listed and how many of those each feature would drop (skip with ``--skip-exhaustive``).
   ``--variants`` also scores the 2D feature variants tried (see docs/method.md, "2D
   prefilter"): ``ringnorm`` (the lighting's common angular factor removed from the polar
   spectrum), ``energy`` (polar map of the local mark energy around the centre), ``band``
   (the rings over the signature's own pass band, :data:`BAND_UM`), ``rectified`` (the
   spectrum of the signature's magnitude), ``energyspec`` (the spectrum of its log local
   energy), and ``coarse``, a cheap partial comparison for a second stage: the largest
   correlation over rotations and translations of the signatures smoothed and sampled at
   :data:`COARSE_UM` (:func:`coarse_scores`; its measured cost per candidate is printed).
   ``--keypoints`` scores ``coarse`` and local features (:data:`KEYPOINT_SETTINGS`: SIFT
   with a Hough vote on rotation and translation, ORB with a ratio test and RANSAC) on the
   2D signatures and on the 3D ones beside them (:func:`keypoint_scores`; measured cost per
   candidate, descriptors precomputed, printed).
   With the variants, a lighting-invariance check: one Fadul scan under two lights (and
   its 3D scan) scored against itself, as z against the non-matches (:func:`same_scan`).
2. **2D firing pin.** Detected firing pins on the synthetic 2D set, and the 2D firing-pin
   comparison: ROC AUC, EER, weakest known match and strongest known non-match score, 3D
   beside it.
3. **2D search time.** Measured: the time of one 2D exhibit's comparison (breech face and
   firing pin of real-size signatures, two at a time) and, in the same run, of a 3D one;
   each region's comparison one at a time; the prefilter stage over 10^3 and 10^4 feature
   vectors. Extrapolated (printed as such): an exhaustive 2D search over n stored exhibits
   = prefilter + n x (breech face + firing pin comparison time); a shortlisted one =
   prefilter + 2K x that, for the K that would hold every true match measured in part 1,
   and every one the exhaustive search lists.

::

    nice -n 10 python benchmarks/make_docs.py --only 2d_search    # --variants, records, docs
    nice -n 10 python benchmarks/bench_2d_search.py --variants    # the same, printed (~15 min)
    nice -n 10 python benchmarks/bench_2d_search.py --models ring --skip-time --skip-exhaustive
    nice -n 10 python benchmarks/bench_2d_search.py --illumination integrate --variants
    nice -n 10 python benchmarks/bench_2d_search.py --keypoints --skip-time --skip-firing-pin

Nothing is cached: renderings are made in memory.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from scipy import fft as sfft
from scipy import ndimage, special

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import FADUL_DIR, REPO, all_pairs, equal_error_rate, machine, roc_auc
from bench_2d_real import fadul_casings, parse_fix, rendered
from results import record

from ribin import prefilter
from ribin.compare import compare_many
from ribin.exhibit import REGIONS, Signature
from ribin.io import read_casing
from ribin.preprocess import gaussian_nan
from ribin.signatures import DEFAULT_ILLUMINATION_2D, ILLUMINATION_METHODS, extract
from ribin.synthetic import COMMITTED_SET, generate_set
from ribin.synthetic.lighting import LIGHTING_MODELS, LIGHTING_PARAMETERS

SYNTHETIC_DIR = REPO / "data" / "synthetic_casings"
BIG = 10_000
TOP = 20  # the search's default list length
K_DEFAULT = 10  # the default shortlist per region at BIG: max(10, ceil(0.001 BIG))
RECIPE = "{firearms} firearms x {shots} shots per modality, {pixel_size_um} um".format(
    **COMMITTED_SET
)


# ----------------------------------------------------------------- feature variants tried


def _coefficients(polar: np.ndarray, low_weight: float, low_cut: int) -> np.ndarray:
    """A (N_RINGS, N_ANGLES) map as a prefilter vector (angular Fourier coefficients)."""
    weights = np.where(np.arange(1, prefilter.N_COEFFS + 1) < low_cut, low_weight, 1.0)
    return prefilter._vector(polar, weights)


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


#: Rings of the ``band`` variant: the 2D breech-face signature's own pass band (it is
#: band-passed 32-250 um; the stored features span 30-600 um), the band of the comparison's
#: rotation estimate (2.2-12.8 px at 12.5 um).
BAND_UM = (160.0, 27.0)


def band(surface: np.ndarray, pixel_um: float) -> np.ndarray:
    """The stored definition with its rings over :data:`BAND_UM` only."""
    polar = prefilter._polar_map(np.asarray(surface, np.float64), pixel_um, BAND_UM)
    return _coefficients(polar, prefilter.LOW_WEIGHT, prefilter.LOW_CUT)


def rectified(surface: np.ndarray, pixel_um: float) -> np.ndarray:
    """The stored features of the signature's magnitude: ring and coaxial light follow the
    slopes' magnitude, an oblique light their signed derivative along its direction."""
    return prefilter.features(np.abs(np.asarray(surface, np.float64)), pixel_um)


def energy_spectrum(surface: np.ndarray, pixel_um: float) -> np.ndarray:
    """The stored definition (rings over 600-60 um) applied to the log local energy of the
    signature (Gaussian, sigma 10 um): where the marks are strong, translation tolerant."""
    values = np.asarray(surface, np.float64)
    local = np.log(gaussian_nan(values * values, 25.0 / pixel_um / 2.5) + 1e-3)
    polar = prefilter._polar_map(local, pixel_um, (600.0, 60.0))
    return _coefficients(polar, prefilter.LOW_WEIGHT, prefilter.LOW_CUT)


FEATURES: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "stored": lambda s, px: prefilter.features(s, px),
    "ringnorm": ringnorm,
    "energy": energy,
    "band": band,
    "rectified": rectified,
    "energyspec": energy_spectrum,
}


# ------------------------------------------------ a cheap partial comparison (second stage)

COARSE_UM = 50.0
"""Pixel (and Gaussian smoothing scale) of the coarse correlation."""
COARSE_STEP_DEG = 4.0


def coarse_image(signature: Signature) -> np.ndarray:
    """The signature smoothed over and sampled at :data:`COARSE_UM`, zero-mean, unit norm,
    0 outside the region (a block is kept when more than half of it is valid)."""
    values = gaussian_nan(
        np.asarray(signature.surface, np.float64), COARSE_UM / signature.pixel_size_um / 2.5
    )
    down = max(1, round(COARSE_UM / signature.pixel_size_um))
    rows, cols = (values.shape[0] // down) * down, (values.shape[1] // down) * down
    valid = np.isfinite(values)[:rows, :cols]
    blocks = (rows // down, down, cols // down, down)
    share = valid.reshape(blocks).mean(axis=(1, 3))
    total = np.where(valid, values[:rows, :cols], 0.0).reshape(blocks).sum(axis=(1, 3))
    keep = share > 0.5
    image = np.where(keep, total / np.maximum(share * down * down, 1e-9), 0.0)
    image = np.where(keep, image - image[keep].mean() if keep.any() else 0.0, 0.0)
    return image / (np.sqrt((image**2).sum()) or 1.0)


def coarse_scores(signatures: list[Signature]) -> tuple[np.ndarray, float]:
    """Score of every pair: the largest correlation of their :func:`coarse_image` over
    rotations (every :data:`COARSE_STEP_DEG`) and translations (FFT); and the measured
    seconds per candidate (one candidate against a query whose rotations are made once)."""
    images = [coarse_image(s) for s in signatures]
    size = sfft.next_fast_len(2 * max(max(x.shape) for x in images))
    angles = np.arange(0.0, 360.0, COARSE_STEP_DEG)
    plain = [sfft.rfft2(x, (size, size)) for x in images]
    turned = [
        np.stack(
            [sfft.rfft2(ndimage.rotate(x, a, reshape=True, order=1), (size, size)) for a in angles]
        )
        for x in images
    ]
    n = len(images)
    scores = np.full((n, n), -np.inf)
    started = time.perf_counter()
    for i in range(n):
        for j in range(i + 1, n):
            corr = sfft.irfft2(np.conj(plain[i])[None] * turned[j], (size, size))
            scores[i, j] = scores[j, i] = corr.max()
    per_pair = (time.perf_counter() - started) / max(n * (n - 1) / 2, 1)
    return scores, per_pair


# ------------------------------------------ local features (keypoints), a score per pair

KEYPOINT_TILE_PX = 4.0
"""Translation cell of the keypoint vote (signature pixels: 50 um at 12.5 um)."""
KEYPOINT_ANGLE_DEG = 15.0
"""Rotation cell of the keypoint vote."""
KEYPOINT_SCALE = 1.3
"""A match is voted only when its keypoints' sizes agree within this factor (one scale)."""
KEYPOINT_EDGE_PX = 6
"""Keypoints within this many pixels of the region's edge are not detected."""
#: Settings tried: (detector, upsampling of the image, geometric check). ``keypoints``:
#: SIFT on the signature, each descriptor's nearest neighbour among the candidate's, a
#: Hough vote on rotation (the keypoints' orientations) and translation; score = keypoints in
#: the best (rotation, translation) cell and its upper neighbours. ``orb``: ORB (2000
#: keypoints) on the signature upsampled x2, Lowe's ratio test at 0.8, then a rotation +
#: translation (+ scale within 10 %) by RANSAC (3 px); score = inliers.
KEYPOINT_SETTINGS: dict[str, tuple[str, int, str]] = {
    "keypoints": ("sift", 1, "hough"),
    "orb": ("orb", 2, "ransac"),
}


def keypoint_image(signature: Signature, upsample: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The signature as an 8-bit image (1st-99th percentile of its valid values to 0-255) and
    the detection mask (valid pixels at least :data:`KEYPOINT_EDGE_PX` from the edge)."""
    values = np.asarray(signature.surface, np.float64)
    valid = np.isfinite(values)
    if not valid.any():
        return np.zeros(values.shape, np.uint8), np.zeros(values.shape, np.uint8)
    low, high = np.percentile(values[valid], [1.0, 99.0])
    scaled = (np.where(valid, values, (low + high) / 2) - low) / max(high - low, 1e-12)
    image = (np.clip(scaled, 0.0, 1.0) * 255).astype(np.uint8)
    mask = ndimage.binary_erosion(valid, iterations=KEYPOINT_EDGE_PX).astype(np.uint8) * 255
    if upsample > 1:
        image = cv2.resize(image, None, fx=upsample, fy=upsample, interpolation=cv2.INTER_LINEAR)
        mask = cv2.resize(mask, None, fx=upsample, fy=upsample, interpolation=cv2.INTER_NEAREST)
    return image, mask


def keypoint_features(signature: Signature, setting: str) -> dict:
    """Keypoints (positions in signature pixels, orientations, sizes) and descriptors."""
    kind, upsample, _ = KEYPOINT_SETTINGS[setting]
    detector = cv2.SIFT_create() if kind == "sift" else cv2.ORB_create(2000)
    image, mask = keypoint_image(signature, upsample)
    points, descriptors = detector.detectAndCompute(image, mask)
    return {
        "xy": np.float32([p.pt for p in points]).reshape(-1, 2) / upsample,
        "angle": np.float32([p.angle for p in points]),
        "size": np.float32([p.size for p in points]),
        "descriptors": descriptors,
        "norm": cv2.NORM_L2 if kind == "sift" else cv2.NORM_HAMMING,
    }


def _hough(a: dict, b: dict) -> float:
    """Keypoints of `a` whose nearest descriptor in `b` agrees on one rotation + translation."""
    matches = cv2.BFMatcher(a["norm"]).match(a["descriptors"], b["descriptors"])
    q = np.array([m.queryIdx for m in matches])
    t = np.array([m.trainIdx for m in matches])
    same_scale = np.abs(np.log(b["size"][t] / a["size"][q])) < np.log(KEYPOINT_SCALE)
    q, t = q[same_scale], t[same_scale]
    if q.size == 0:
        return 0.0
    turn = np.deg2rad(b["angle"][t] - a["angle"][q])
    cos, sin = np.cos(turn), np.sin(turn)
    x, y = a["xy"][q, 0], a["xy"][q, 1]
    shift_x = b["xy"][t, 0] - (cos * x - sin * y)
    shift_y = b["xy"][t, 1] - (sin * x + cos * y)
    n_angles = round(360 / KEYPOINT_ANGLE_DEG)
    cell_a = np.floor(np.mod(np.rad2deg(turn), 360) / KEYPOINT_ANGLE_DEG).astype(np.int64)
    cell_x = np.floor(shift_x / KEYPOINT_TILE_PX).astype(np.int64) + 4096
    cell_y = np.floor(shift_y / KEYPOINT_TILE_PX).astype(np.int64) + 4096
    keys = []
    for da in (0, 1):  # each vote also in the upper neighbour cells (soft binning)
        for dx in (0, 1):
            for dy in (0, 1):
                cell = ((cell_a + da) % n_angles * 8192 + cell_x + dx) * 8192 + cell_y + dy
                keys.append(cell * 65536 + q)
    cells = np.unique(np.concatenate(keys)) // 65536  # one vote per query keypoint and cell
    return float(np.unique(cells, return_counts=True)[1].max())


def _ransac(a: dict, b: dict) -> float:
    """Inliers of a rotation + translation (+ scale within 10 %) fitted to ratio-test matches."""
    pairs = cv2.BFMatcher(a["norm"]).knnMatch(a["descriptors"], b["descriptors"], k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.8 * p[1].distance]
    if len(good) < 3:
        return float(len(good))
    source = a["xy"][[m.queryIdx for m in good]]
    target = b["xy"][[m.trainIdx for m in good]]
    model, inliers = cv2.estimateAffinePartial2D(
        source, target, method=cv2.RANSAC, ransacReprojThreshold=3.0, maxIters=2000
    )
    if model is None or not 0.9 < np.hypot(model[0, 0], model[1, 0]) < 1.1:
        return 0.0
    return float(inliers.sum())


def keypoint_pair(a: dict, b: dict, setting: str) -> float:
    """Score of one pair of :func:`keypoint_features` under `setting`."""
    if any(x["descriptors"] is None or len(x["descriptors"]) < 3 for x in (a, b)):
        return 0.0
    return _hough(a, b) if KEYPOINT_SETTINGS[setting][2] == "hough" else _ransac(a, b)


def keypoint_scores(signatures: list[Signature], setting: str) -> tuple[np.ndarray, dict]:
    """Score of every pair (query the lower index; symmetric) and the measured costs: seconds
    per candidate (matching + geometric check, features precomputed), of which descriptor
    matching alone, and the median number of keypoints per signature."""
    features = [keypoint_features(s, setting) for s in signatures]
    n = len(features)
    scores = np.full((n, n), -np.inf)
    started = time.perf_counter()
    for i in range(n):
        for j in range(i + 1, n):
            scores[i, j] = scores[j, i] = keypoint_pair(features[i], features[j], setting)
    pairs = max(n * (n - 1) / 2, 1)
    per_pair = (time.perf_counter() - started) / pairs
    usable = [f for f in features if f["descriptors"] is not None]
    started = time.perf_counter()
    for i in range(len(usable)):
        for j in range(i + 1, len(usable)):
            cv2.BFMatcher(usable[i]["norm"]).match(
                usable[i]["descriptors"], usable[j]["descriptors"]
            )
    matching = (time.perf_counter() - started) / max(len(usable) * (len(usable) - 1) / 2, 1)
    return scores, {
        "pair_s": per_pair,
        "match_s": matching,
        "keypoints": float(np.median([len(f["xy"]) for f in features])),
    }


# ------------------------------------------------------------------------------ recall


def listed(labels: list, sources: list, matrix: np.ndarray) -> set[tuple[int, int]]:
    """True matches (ordered pairs) an exhaustive search of BIG candidates would list.

    A true match's expected rank among BIG candidates is 1 + BIG x the share of the set's
    non-match comparison scores (all queries pooled) at or above its score; listed: within
    the search's default list of :data:`TOP`.
    """
    n = len(labels)
    pool, mates = [], []
    for i in range(n):
        for j in range(n):
            if sources[i] == sources[j] or not np.isfinite(matrix[i, j]):
                continue
            (mates if labels[i] == labels[j] else pool).append((i, j))
    scores = np.sort([matrix[i, j] for i, j in pool])
    out = set()
    for i, j in mates:
        above = scores.size - np.searchsorted(scores, matrix[i, j], side="left")
        if 1 + BIG * above / max(scores.size, 1) <= TOP:
            out.add((i, j))
    return out


def recall(labels: list, sources: list, vectors: np.ndarray, found: set | None = None) -> dict:
    """Rank and z-margin of every true match (ordered pairs) among all other candidates.

    ``found``: the true matches the exhaustive search lists (:func:`listed`); how many of
    them the default shortlist at BIG candidates would drop is counted.
    """
    scores = np.stack([prefilter.similarity(v, vectors) for v in vectors])
    return recall_scores(labels, sources, scores, found)


def recall_scores(labels: list, sources: list, scores: np.ndarray, found: set | None) -> dict:
    """:func:`recall` from a score matrix (row: query, column: candidate)."""
    n = len(labels)
    ranks, z_true, z_pool, sizes, pairs = [], [], [], [], []
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
            pairs.append((i, j))
        z_pool += ((row[non] - mean) / spread).tolist()
    ranks_a, z_true_a, pool = np.array(ranks), np.array(z_true), np.sort(z_pool)
    exceed = (pool.size - np.searchsorted(pool, z_true_a, side="left")) / pool.size
    expected = 1 + BIG * exceed
    normal = 1 + BIG * special.ndtr(-z_true_a)
    held = [e for p, e in zip(pairs, expected, strict=True) if found is not None and p in found]
    return {
        "listed": None if found is None else len(held),
        "listed_dropped": sum(e > K_DEFAULT for e in held),
        "listed_worst": float(max(held, default=0.0)),
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
    found = ""
    if fig["listed"] is not None:
        found = (
            f" | exhaustive lists {fig['listed']} of {fig['matches']}; K = {K_DEFAULT} drops"
            f" {fig['listed_dropped']} of them (worst at {fig['listed_worst']:.0f})"
        )
    print(
        f"  {name:<28} {variant:<10} ranks med {fig['rank_median']:4.0f} max {fig['rank_max']:3d}"
        f" of {fig['candidates']:3d} | z true min {fig['z_min']:5.2f} med {fig['z_median']:5.2f};"
        f" non-match p99.9 {fig['non_p999']:4.2f} max {fig['non_max']:4.2f} | N = {BIG}: worst"
        f" true match expected at {fig['big_max']:.0f} (normal tail {fig['big_normal_max']:.0f})"
        + found,
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
            "-" if fig["listed"] is None else f"{fig['listed']}",
            "-"
            if fig["listed"] is None
            else f"{fig['listed_dropped']} ({fig['listed_worst']:.0f})",
        ]
    )


def synthetic_set(
    method: str | None, folder: Path = SYNTHETIC_DIR
) -> dict[str, tuple[list, list, list[Signature]]]:
    """A synthetic set (default the committed one) per modality: (labels, sources,
    signatures by region)."""
    with open(folder / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    out: dict[str, tuple[list, list, list]] = {}
    for modality in ("3d", "2d"):
        labels, sigs = [], []
        for row in (r for r in rows if r["modality"] == modality):
            options = {"illumination": method} if modality == "2d" else {}
            ex = extract(read_casing(folder / row["file"]), **options)
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


def same_scan(vectors: dict[str, np.ndarray], labels: list) -> list[tuple[str, float, float]]:
    """Is a variant lighting invariant? One scan's vectors under two lights (or a light and
    the 3D scan) scored against each other, as z against that query's non-matches (scans of
    other firearms) under the second light: (light pair, median z, min z) over the scans."""
    n = len(labels)
    names = list(vectors)
    cells = []
    for a, name_a in enumerate(names):
        for name_b in names[a + 1 :]:
            z = []
            for i in range(n):
                row = prefilter.similarity(vectors[name_a][i], vectors[name_b])
                non = np.array([labels[j] != labels[i] for j in range(n)])
                z.append((row[i] - row[non].mean()) / max(row[non].std(), 1e-12))
            cells.append((f"{name_a} / {name_b}", float(np.median(z)), float(np.min(z))))
    return cells


def keypoint_lighting(
    casings: list, shots: dict, lights: dict, sigs3: list[Signature], seed: int, method: str
) -> None:
    """Do keypoints survive a change of light? Each Fadul shot's keypoint score against the
    same scan rendered again (a) with the same lighting parameters, new albedo and noise,
    (b) under a new lighting draw of the same model, (c) measured in 3D; printed: the median
    same-scan score, the median and largest score against the other scans of that second
    set, and on how many scans the same scan beats every other one."""
    print("\n  Keypoints and lighting: one scan against itself re-rendered (Fadul)", flush=True)
    for model in shots:
        again: dict[str, list[Signature]] = {"same light, new noise": [], "new lighting draw": []}
        for i, casing in enumerate(casings):
            held = {k: v for k, v in lights[model][i].items() if k in LIGHTING_PARAMETERS}
            index = LIGHTING_MODELS.index(model)
            shot, _ = rendered(casing, model, (seed, index, i), fix=held)
            again["same light, new noise"].append(extract(shot, illumination=method).breech_face)
            shot, _ = rendered(casing, model, (seed + 1000, index, i))
            again["new lighting draw"].append(extract(shot, illumination=method).breech_face)
        again["3d scan"] = sigs3
        for setting in KEYPOINT_SETTINGS:
            mine = [keypoint_features(s, setting) for s in shots[model]]
            for name, others in again.items():
                theirs = [keypoint_features(s, setting) for s in others]
                score = np.array([[keypoint_pair(a, b, setting) for b in theirs] for a in mine])
                same = np.diag(score)
                other = score[~np.eye(len(mine), dtype=bool)].reshape(len(mine), -1)
                print(
                    f"  {model:<8} {setting:<9} vs {name:<22}: same scan median"
                    f" {np.median(same):5.1f};"
                    f" other scans median {np.median(other):4.1f} max {other.max():5.1f}; same scan"
                    f" above every other on {(same > other.max(axis=1)).sum()} of {len(same)}",
                    flush=True,
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
    """AUC, EER, extremes, search top-1 (a mate strictly above every non-mate) and the
    smallest top-1 margin (best mate minus best non-mate score, over the queries)."""
    n = len(labels)
    pairs = [(i, j) for i, j in all_pairs(n) if np.isfinite(matrix[i, j])]
    scores = np.array([matrix[i, j] for i, j in pairs])
    match = np.array([labels[i] == labels[j] for i, j in pairs])
    hits = queries = 0
    misses, margins = [], []
    for q in range(n):
        row = np.where(np.isfinite(matrix[q]), matrix[q], -np.inf)
        mates = [k for k in range(n) if k != q and labels[k] == labels[q]]
        others = [k for k in range(n) if k != q and labels[k] != labels[q]]
        if mates and np.isfinite(row[mates]).any():
            queries += 1
            mate, best = row[mates].max(), others[int(np.argmax(row[others]))]
            margins.append(float(mate - row[best]))
            hits += bool(mate > row[best])
            if mate <= row[best]:
                misses.append(f"{q}({labels[q]}) {mate:.2f}<={row[best]:.2f} {best}")
    return {
        "pairs": len(pairs),
        "matches": int(match.sum()),
        "auc": roc_auc(scores, match),
        "eer": equal_error_rate(scores, match),
        "weakest_match": float(scores[match].min()),
        "strongest_non": float(scores[~match].max()),
        "top1": hits / max(queries, 1),
        "misses": misses,
        "margin": min(margins, default=float("nan")),
    }


# ------------------------------------------------------------------------------- timing


def _per_exhibit(sigs: list[dict]) -> tuple[float, dict[str, float], str]:
    """Seconds per exhibit compared (breech face + firing pin, two comparisons at a time),
    milliseconds per comparison of each region run alone (one thread), signature sizes."""
    both = [s for s in sigs if "firing_pin" in s][:6]
    pairs = list(zip(both[::2], both[1::2], strict=False))
    jobs = [(a[region], b[region], None) for a, b in pairs for region in REGIONS]
    compare_many(jobs[:2])  # compile
    started = time.perf_counter()
    compare_many(jobs)
    per_exhibit = (time.perf_counter() - started) / len(pairs)
    alone = {}
    for region in REGIONS:
        started = time.perf_counter()
        compare_many([(a[region], b[region], None) for a, b in pairs], threads=1)
        alone[region] = 1e3 * (time.perf_counter() - started) / len(pairs)
    shapes = {r: np.median([s[r].surface.shape for s in both], axis=0) for r in REGIONS}
    valid = {r: np.median([np.isfinite(s[r].surface).mean() for s in both]) for r in REGIONS}
    sizes = ", ".join(
        f"{r} {shapes[r][0]:.0f} x {shapes[r][1]:.0f} px ({valid[r]:.0%} valid)" for r in REGIONS
    )
    return per_exhibit, alone, sizes


def time_search(sigs2d: list[dict], sigs3d: list[dict], ranks: dict[str, float]) -> list[list]:
    """Measured comparison and prefilter times; extrapolated 2D search latency.

    ``ranks``: label -> the expected rank at BIG of the worst true match a shortlist must
    hold (part 1); the K it needs at n is scaled from BIG.
    """
    per_exhibit, alone2, sizes2 = _per_exhibit(sigs2d)
    per_3d, alone3, sizes3 = _per_exhibit(sigs3d)
    vector = prefilter.features(sigs2d[0]["breech_face"])
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
        f" {per_exhibit:.3f} s measured, one 3D exhibit {per_3d:.3f} s in the same run (2D /"
        f" 3D {per_exhibit / per_3d:.2f}); one comparison at a time 2D breech face"
        f" {alone2['breech_face']:.0f} ms, firing pin {alone2['firing_pin']:.0f} ms; 3D"
        f" {alone3['breech_face']:.0f} ms, {alone3['firing_pin']:.0f} ms; signatures 2D"
        f" {sizes2}; 3D {sizes3}; prefilter stage (score + sort, both regions, vectors in"
        f" memory) {stage[1_000]:.3f} s at 10^3, {stage[10_000]:.3f} s at 10^4 measured"
    )
    rows = []
    for n in (1_000, 10_000):
        exhaustive = stage[n] + n * per_exhibit
        k_default = max(10, int(np.ceil(0.001 * n)))
        default = stage[n] + 2 * k_default * per_exhibit
        holding = []
        for label, rank in ranks.items():
            k = min(n, max(k_default, int(np.ceil(rank * n / BIG))))
            holding.append(f"{label} {k}: {stage[n] + 2 * k * per_exhibit:.0f}")
        print(
            f"  n = {n}: exhaustive {exhaustive:.0f} s (extrapolated: prefilter + n x"
            f" {per_exhibit:.3f} s); shortlist K = {k_default} per region {default:.1f} s;"
            f" the K that holds {'; '.join(holding)} s"
        )
        rows.append(
            [
                n,
                f"{per_exhibit:.3f}",
                f"{per_3d:.3f}",
                f"{stage[n]:.2f}",
                f"{exhaustive:.0f}",
                f"{k_default}: {default:.1f}",
                "; ".join(holding),
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
    parser.add_argument(
        "--keypoints",
        action="store_true",
        help="also the keypoint scores (KEYPOINT_SETTINGS) and the coarse correlation",
    )
    parser.add_argument("--skip-fadul", action="store_true")
    parser.add_argument("--skip-time", action="store_true")
    parser.add_argument("--skip-firing-pin", action="store_true")
    parser.add_argument(
        "--skip-prefilter",
        action="store_true",
        help="skip part 1 (prefilter recall; needs --skip-time, which uses its ranks)",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--synthetic-dir",
        type=Path,
        help="another synthetic set (a folder with manifest.csv) instead of the committed one",
    )
    where.add_argument(
        "--synthetic-seed",
        type=int,
        help="generate a held-out synthetic set: the committed set's recipe "
        "(ribin.synthetic.COMMITTED_SET) with this seed, in a temporary folder",
    )
    parser.add_argument(
        "--skip-exhaustive",
        action="store_true",
        help="do not compare every 2D pair (the reference of what a shortlist must keep)",
    )
    parser.add_argument(
        "--fix",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="hold one lighting parameter in every Fadul rendering (repeatable; as in "
        "bench_2d_real.py): what a lighting protocol would buy",
    )
    parser.add_argument("--name", default="2d_search", help="stem of the recorded tables")
    args = parser.parse_args(argv)
    args.fix = parse_fix(parser, args.fix)
    models = [m for m in args.models.split(",") if m]
    if bad := [m for m in models if m not in LIGHTING_MODELS]:
        parser.error(f"unknown lighting models {bad}")
    if args.skip_prefilter and not args.skip_time:
        parser.error("--skip-prefilter needs --skip-time (part 3 uses part 1's ranks)")
    if args.synthetic_dir is not None and not (args.synthetic_dir / "manifest.csv").is_file():
        parser.error(f"{args.synthetic_dir}: no manifest.csv (not a synthetic set)")
    if args.synthetic_seed is not None:
        with tempfile.TemporaryDirectory(prefix="ribin-synthetic-") as folder:
            recipe = {**COMMITTED_SET, "seed": args.synthetic_seed}
            generate_set(folder, **recipe)
            set_name = f"held-out synthetic set ({RECIPE}, seed {args.synthetic_seed})"
            return _run(args, models, Path(folder), set_name)
    if args.synthetic_dir is not None:
        return _run(args, models, args.synthetic_dir, f"synthetic set {args.synthetic_dir}")
    return _run(args, models, SYNTHETIC_DIR, f"committed synthetic set ({RECIPE})")


def _run(args: argparse.Namespace, models: list[str], folder: Path, set_name: str) -> int:
    """The benchmark's parts on the synthetic set in ``folder`` (named ``set_name``)."""
    variants = list(FEATURES) if args.variants else ["stored"]
    print(f"machine: {machine()}; 2D method {args.illumination}; load {os.getloadavg()[0]:.1f}")
    if args.fix:
        print(f"Fadul renderings with lighting held: {args.fix}")
    print(f"synthetic set: {set_name}")

    table: list[list] = []
    worst = 0.0  # share of pooled non-matches above the worst 2D true match (stored vectors)
    worst_listed = 0.0  # expected rank of the worst true match the exhaustive search lists
    synthetic = synthetic_set(args.illumination, folder)
    matrices: dict[tuple[str, str], np.ndarray] = {}
    coarse_cost: list[float] = []  # seconds per candidate of the coarse correlation
    pair_variants = (["coarse"] if args.variants or args.keypoints else []) + (
        list(KEYPOINT_SETTINGS) if args.keypoints else []
    )
    keypoint_cost: dict[str, list[dict]] = {name: [] for name in KEYPOINT_SETTINGS}

    def pair_variant(variant: str, chosen: list[Signature]) -> np.ndarray:
        """Score matrix of a per-pair variant (coarse, keypoints), its cost kept."""
        if variant == "coarse":
            scores, cost = coarse_scores(chosen)
            coarse_cost.append(cost)
            return scores
        scores, costs = keypoint_scores(chosen, variant)
        keypoint_cost[variant].append(costs)
        return scores

    def matrix_of(modality: str, region: str) -> np.ndarray:
        """Comparison scores of every pair of the synthetic set (NaN: region missing)."""
        if (modality, region) not in matrices:
            sigs = synthetic[modality][2]
            matrices[modality, region] = pair_scores([s.get(region) for s in sigs])
        return matrices[modality, region]

    if not args.skip_prefilter:
        print(
            "\n1. Prefilter recall (ranks among all candidates; z against each query's"
            " non-matches); beside it, the true matches the exhaustive comparison lists in its"
            f" top {TOP} at N = {BIG} and how many of those the default shortlist"
            f" (K = {K_DEFAULT}) would drop"
        )
    for modality in () if args.skip_prefilter else ("3d", "2d"):
        labels, sources, sigs = synthetic[modality]
        for region in ("breech_face", "firing_pin"):
            keep = [i for i, s in enumerate(sigs) if region in s]
            found = None
            if modality == "2d" and not args.skip_exhaustive:
                sub = matrix_of(modality, region)[np.ix_(keep, keep)]
                found = listed([labels[i] for i in keep], [sources[i] for i in keep], sub)
            for variant in variants if modality == "2d" else ["stored"]:
                lab, src, vec, _ = region_vectors(labels, sources, sigs, region, FEATURES[variant])
                fig = recall(lab, src, vec, found)
                print_recall(f"synthetic {modality} {region}", variant, fig, table)
                if modality == "2d" and variant == "stored":
                    worst = max(worst, fig["exceed_max"])
                    worst_listed = max(worst_listed, fig["listed_worst"])
            for variant in pair_variants:
                if modality == "3d" and variant == "coarse":
                    continue
                scores = pair_variant(variant, [sigs[i][region] for i in keep])
                fig = recall_scores(
                    [labels[i] for i in keep], [sources[i] for i in keep], scores, found
                )
                print_recall(f"synthetic {modality} {region}", variant, fig, table)
    lighting_rows: list[list] = []
    lighting_columns: list[str] = []
    if not (args.skip_prefilter or args.skip_fadul) and FADUL_DIR.exists():
        names, labels, casings = fadul_casings()
        sigs3 = [extract(c).breech_face for c in casings]
        vec3 = np.stack([prefilter.features(s) for s in sigs3])
        print_recall("Fadul 3d breech_face", "stored", recall(labels, names, vec3), table)
        for variant in pair_variants[1:]:  # the keypoint scores of the 3D scans
            fig = recall_scores(labels, names, pair_variant(variant, sigs3), None)
            print_recall("Fadul 3d breech_face", variant, fig, table)
        shots: dict[str, list[Signature]] = {}
        lights: dict[str, list[dict]] = {}
        for model_index, model in enumerate(LIGHTING_MODELS):
            if model not in models:
                continue
            shots[model], lights[model] = [], []
            for i, casing in enumerate(casings):
                shot, light = rendered(casing, model, (args.seed, model_index, i), fix=args.fix)
                shots[model].append(extract(shot, illumination=args.illumination).breech_face)
                lights[model].append(light)
        everything = [s for model in shots for s in shots[model]]
        pooled_labels = labels * len(shots)
        pooled_sources = names * len(shots)
        big_matrix = None if args.skip_exhaustive else pair_scores(list(everything))
        n = len(labels)
        for m, model in enumerate(list(shots) + (["pooled lights"] if len(shots) > 1 else [])):
            if model == "pooled lights":
                lab, src, rows = pooled_labels, pooled_sources, slice(None)
                title = "Fadul 2d pooled lights"
            else:
                lab, src, rows = labels, names, slice(m * n, (m + 1) * n)
                title = f"Fadul 2d {model} breech_face"
            chosen = everything[rows]
            found = None if big_matrix is None else listed(lab, src, big_matrix[rows, rows])
            for variant in variants:
                vec = np.stack([FEATURES[variant](s.surface, s.pixel_size_um) for s in chosen])
                fig = recall(lab, src, vec, found)
                print_recall(title, variant, fig, table)
                if variant == "stored":
                    worst = max(worst, fig["exceed_max"])
                    worst_listed = max(worst_listed, fig["listed_worst"])
            for variant in pair_variants:
                scores = pair_variant(variant, chosen)
                print_recall(title, variant, recall_scores(lab, src, scores, found), table)
        if args.keypoints:
            keypoint_lighting(casings, shots, lights, sigs3, args.seed, args.illumination)
        if len(shots) > 1:
            print("\n  Lighting invariance: one scan under two lights (and its 3D scan)")
            for variant in variants:
                vectors = {
                    model: np.stack([FEATURES[variant](s.surface, s.pixel_size_um) for s in shot])
                    for model, shot in shots.items()
                }
                vectors["3d"] = np.stack(
                    [FEATURES[variant](s.surface, s.pixel_size_um) for s in sigs3]
                )
                cells = same_scan(vectors, labels)
                print(
                    f"  same scan, {variant:<10} z median / min: "
                    + "; ".join(f"{k} {med:.1f} / {low:.1f}" for k, med, low in cells),
                    flush=True,
                )
                lighting_columns = ["features"] + [k for k, _, _ in cells]
                lighting_rows.append(
                    [variant] + [f"{med:.1f} / {low:.1f}" for _, med, low in cells]
                )
    if coarse_cost:
        print(
            f"  coarse correlation: {1e3 * np.median(coarse_cost):.1f} ms per candidate measured"
            f" ({len(coarse_cost)} sets, median; load {os.getloadavg()[0]:.1f}), so"
            f" {BIG * np.median(coarse_cost):.0f} s over {BIG} candidates on one core",
            flush=True,
        )
    for name, costs in keypoint_cost.items():
        if not costs:
            continue
        pair_s = float(np.median([c["pair_s"] for c in costs]))
        match_s = float(np.median([c["match_s"] for c in costs]))
        print(
            f"  {name}: {1e3 * pair_s:.2f} ms per candidate measured (descriptor matching"
            f" {1e3 * match_s:.2f} ms of it; median"
            f" {np.median([c['keypoints'] for c in costs]):.0f} keypoints per signature;"
            f" {len(costs)} sets, median; load {os.getloadavg()[0]:.1f}), so"
            f" {BIG * pair_s:.0f} s over {BIG} candidates on one core",
            flush=True,
        )
    listed_note = (
        ""
        if args.skip_exhaustive
        else f" 'listed by the exhaustive search': true matches whose comparison score an "
        f"exhaustive search of {BIG} candidates would put in its top {TOP} (1 + {BIG} x the "
        "share of the set's non-match comparison scores at or above it); 'dropped': of those, "
        f"the ones whose expected prefilter rank at {BIG} is beyond the default shortlist "
        f"(K = {K_DEFAULT} per region), with the worst expected prefilter rank among them."
    )
    held = ", Fadul lighting held" if args.fix else ""
    if table:
        record(
            f"{args.name}_prefilter",
            "2D prefilter: rank of every true match among all candidates (3D beside it)" + held,
            [
                "set / region",
                "features",
                "true-match pairs",
                "candidates per query",
                "rank median / max",
                "true-match z min / median",
                "non-match z p99.9",
                "worst true match, expected rank at N = 10^4",
                "listed by the exhaustive search at 10^4",
                "of those dropped by K = 10 (worst expected rank)",
            ],
            table,
            f"2D method {args.illumination}"
            + (f"; Fadul lighting held: {args.fix}" if args.fix else "")
            + ". 'stored': the vectors a store holds for every "
            "signature (ribin.prefilter.features); the others: 2D variants tried "
            "(bench_2d_search.py; docs/method.md, '2D prefilter'). Fadul 2d: the 19 scans "
            "rendered per lighting model, lighting varied per shot; 'pooled lights': a query "
            "under one light, candidates under all. Renderings of the query's own scan are never "
            "candidates (same source). 'coarse': not a stored vector but a cheap partial "
            f"comparison (signatures at {COARSE_UM:.0f} um, correlation over rotations and "
            "translations), measured as a second stage would use it. 'keypoints', 'orb': local "
            "features matched per pair (bench_2d_search.py KEYPOINT_SETTINGS)." + listed_note,
        )
    if lighting_rows:
        record(
            f"{args.name}_lighting",
            "2D prefilter variants: one Fadul scan under two lights (z against non-matches)" + held,
            lighting_columns,
            lighting_rows,
            "Each of the 19 Fadul scans: its vector under one light (or measured in 3D, same "
            "features of the 3D signature) scored against its own vector under the other and "
            "against the other firearms' scans under the other, as z against those non-matches; "
            "median / min over the 19 scans. A lighting-invariant fingerprint scores high here; "
            "one that also keeps true matches scores high on different casings of one firearm "
            f"(table '2D prefilter'). 2D method {args.illumination}.",
        )

    fp_rows = []
    if not args.skip_firing_pin:
        print(f"\n2. 2D firing pin ({set_name}): detection and comparison")
    for modality in () if args.skip_firing_pin else ("3d", "2d"):
        labels, _, sigs = synthetic[modality]
        found = sum("firing_pin" in s for s in sigs)
        bf = matrix_of(modality, "breech_face")
        fp = matrix_of(modality, "firing_pin")
        both = bf + np.nan_to_num(fp, nan=0.0)  # the search's combined score (sum of regions)
        for name, matrix in (("firing pin", fp), ("breech face", bf), ("BF + FP", both)):
            fig = figures(labels, matrix)
            print(
                f"  {modality} {name:<11}: AUC {fig['auc']:.3f} EER {fig['eer']:.3f} weakest "
                f"match {fig['weakest_match']:.2f} strongest non-match "
                f"{fig['strongest_non']:.2f} top-1 {fig['top1']:.3f} "
                f"(smallest margin {fig['margin']:.2f})"
                + (
                    f" (firing pin detected on {found} of {len(sigs)})"
                    if name == "firing pin"
                    else ""
                )
                + (f"; top-1 missed: {', '.join(fig['misses'])}" if fig["misses"] else "")
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
                    f"{fig['margin']:.2f}",
                ]
            )
    if fp_rows:
        record(
            f"{args.name}_firing_pin",
            f"2D firing pin, {set_name.split(' (')[0]}: detection and comparison (3D beside it)",
            [
                "modality",
                "score",
                "firing pin detected",
                "ROC AUC",
                "EER",
                "weakest match / strongest non-match score",
                "search top-1",
                "smallest top-1 margin",
            ],
            fp_rows,
            f"{set_name[0].upper()}{set_name[1:]}, every pair; 2D method "
            f"{args.illumination}. 'BF + FP': the search's combined score (sum of the compared "
            "regions' scores; a casing without a detected pin adds 0). Smallest top-1 margin: "
            "over the queries, the best mate's score minus the best non-mate's (negative: a "
            "non-mate ranked first).",
        )

    if not args.skip_time:
        ranks = {"every measured 2D true match": 1 + BIG * worst}
        if not args.skip_exhaustive:
            ranks["every 2D true match the exhaustive search lists"] = worst_listed
        rows = time_search(synthetic["2d"][2], synthetic["3d"][2], ranks)
        record(
            f"{args.name}_time",
            "2D search latency (per query, 2 cores shared)",
            [
                "stored 2D exhibits",
                "s per 2D exhibit compared (BF + FP), measured",
                "s per 3D exhibit, same run",
                "prefilter stage s, measured",
                "exhaustive s, extrapolated",
                "default shortlist K: s",
                "K holding ...: s, extrapolated",
                "load average",
            ],
            rows,
            "Exhaustive = prefilter + n x per-exhibit time; shortlisted = prefilter + 2K x "
            "per-exhibit time (the union of the regions' shortlists). K holding every true "
            "match: the worst expected rank at that n of the stored vectors from part 1 "
            "(pooled non-match tail); of every true match the exhaustive search lists: the "
            "same over the true matches it would put in its top 20 at 10^4. Per-exhibit "
            "times: synthetic casings, two comparisons at a time, 2D and 3D in one run.",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
