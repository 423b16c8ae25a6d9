"""Region detection (primer, firing pin, breech face) and the filters that shape signatures.

Coordinates: a pixel ``(row, col)`` has ``x = col`` and ``y = row`` in pixels of the input
image, origin at the centre of the top-left pixel. Centres are ``(x, y)``; radii in pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from scipy import fft as sfft
from scipy import ndimage, special

from ribin.errors import InputError

__all__ = [
    "PRIMER_RADIUS_UM",
    "Detection",
    "FiringPinShape",
    "bandpass",
    "detect_regions",
    "fp_shape_mask",
    "gaussian_nan",
    "level",
    "resample_nan",
]

DETECTOR_VERSION = "2"
#: Primer radius by primer size (um): small pistol 4.45 mm, large pistol 5.33 mm diameter.
PRIMER_RADIUS_UM = {"small pistol": 2225.0, "large pistol": 2665.0}
#: Caliber hint -> primer radius (um).
CALIBER_PRIMER_RADIUS_UM = {
    "9mm": 2225.0,
    "9mm luger": 2225.0,
    ".380 acp": 2225.0,
    ".40 s&w": 2225.0,
    ".40": 2225.0,
    ".38 special": 2225.0,
    ".357 sig": 2225.0,
    ".45 acp": 2665.0,
    ".45": 2665.0,
    "10mm": 2665.0,
}
#: Search range of the primer radius without a caliber hint (um).
PRIMER_RADIUS_RANGE_UM = (1500.0, 3200.0)
#: Pixel size of the coarse primer search (um).
COARSE_PIXEL_UM = 40.0
#: Pixel size at which regions are detected (finer inputs are reduced to it) (um).
DETECT_PIXEL_UM = 8.0
# ISO 16610-61 Gaussian: 50 % transmission at the cut-off wavelength.
SIGMA_PER_CUTOFF = math.sqrt(math.log(2) / (2 * math.pi**2))


# --------------------------------------------------------------------------------------
# NaN-aware filters


def gaussian_nan(values: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian low-pass that ignores NaN (normalised convolution); NaN stays NaN.

    Parameters
    ----------
    values : ndarray, shape (M, N)
        NaN where missing.
    sigma_px : float
        Standard deviation of the Gaussian in pixels.

    Returns
    -------
    ndarray of float32, shape (M, N)
    """
    valid = np.isfinite(values)
    if sigma_px <= 0:
        return np.where(valid, values, np.nan).astype(np.float32)
    filled = np.where(valid, values, 0.0).astype(np.float32)
    weight = valid.astype(np.float32)
    k = math.ceil(4 * sigma_px) * 2 + 1
    num = cv2.GaussianBlur(filled, (k, k), sigma_px, borderType=cv2.BORDER_CONSTANT)
    den = cv2.GaussianBlur(weight, (k, k), sigma_px, borderType=cv2.BORDER_CONSTANT)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / den
    out[~valid | (den < 1e-6)] = np.nan
    return out


def bandpass(
    values: np.ndarray, pixel_size_um: float, short_um: float | None, long_um: float | None
) -> np.ndarray:
    """Gaussian band-pass of a masked surface (NaN-aware, ISO 16610-61 cut-offs).

    Parameters
    ----------
    values : ndarray, shape (M, N)
        NaN outside the region.
    pixel_size_um : float
    short_um, long_um : float or None
        Wavelengths shorter than `short_um` (noise) and longer than `long_um` (form,
        waviness) are removed; None skips that side.

    Returns
    -------
    ndarray of float32, shape (M, N), NaN where `values` is NaN.
    """
    out = np.asarray(values, dtype=np.float32)
    if short_um:
        out = gaussian_nan(out, SIGMA_PER_CUTOFF * short_um / pixel_size_um)
    if long_um:
        out = out - gaussian_nan(out, SIGMA_PER_CUTOFF * long_um / pixel_size_um)
    return out


def resample_nan(values: np.ndarray, factor: float, min_weight: float = 0.5) -> np.ndarray:
    """Area-average resampling by `factor` (output pixel / input pixel) that ignores NaN.

    An output pixel is NaN when less than `min_weight` of its footprint was valid.
    """
    if abs(factor - 1) < 1e-9:
        return np.asarray(values, dtype=np.float32).copy()
    valid = np.isfinite(values)
    rows = max(1, round(values.shape[0] / factor))
    cols = max(1, round(values.shape[1] / factor))
    interp = cv2.INTER_AREA if factor > 1 else cv2.INTER_LINEAR
    filled = np.where(valid, values, 0.0).astype(np.float32)
    num = cv2.resize(filled, (cols, rows), interpolation=interp)
    den = cv2.resize(valid.astype(np.float32), (cols, rows), interpolation=interp)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / den
    out[den < min_weight] = np.nan
    return out


def _poly_terms(x: np.ndarray, y: np.ndarray, order: int) -> np.ndarray:
    terms = [np.ones_like(x)]
    for total in range(1, order + 1):
        for i in range(total + 1):
            terms.append(x ** (total - i) * y**i)
    return np.stack(terms, axis=1)


def level(
    values: np.ndarray,
    order: int = 2,
    where: np.ndarray | None = None,
    iterations: int = 4,
    clip_sigma: float = 3.0,
) -> np.ndarray:
    """Remove form: subtract a robust least-squares polynomial surface.

    Parameters
    ----------
    values : ndarray, shape (M, N)
        NaN where missing.
    order : int
        Polynomial order (1: plane, 2: quadric).
    where : ndarray of bool, optional
        Points the fit uses (default: all finite points).
    iterations, clip_sigma : int, float
        Iteratively refit without points beyond `clip_sigma` robust standard deviations.

    Returns
    -------
    ndarray of float64, shape (M, N): residual heights, NaN where `values` is NaN.
    """
    valid = np.isfinite(values)
    fit_on = valid if where is None else valid & where
    rows, cols = np.nonzero(fit_on)
    if rows.size < 10:
        return values - np.nanmedian(values[valid]) if valid.any() else values.copy()
    if rows.size > 20000:
        step = math.ceil(rows.size / 20000)
        rows, cols = rows[::step], cols[::step]
    scale = max(values.shape) / 2
    cy, cx = (values.shape[0] - 1) / 2, (values.shape[1] - 1) / 2
    x = (cols - cx) / scale
    y = (rows - cy) / scale
    z = values[rows, cols].astype(np.float64)
    design = _poly_terms(x, y, order)
    keep = np.ones(z.size, bool)
    coef = np.zeros(design.shape[1])
    for _ in range(iterations):
        coef, *_ = np.linalg.lstsq(design[keep], z[keep], rcond=None)
        res = z - design @ coef
        sigma = 1.4826 * np.median(np.abs(res[keep] - np.median(res[keep]))) + 1e-12
        new_keep = np.abs(res) < clip_sigma * sigma
        if new_keep.sum() < design.shape[1] * 3 or np.array_equal(new_keep, keep):
            break
        keep = new_keep
    yy, xx = np.mgrid[0 : values.shape[0], 0 : values.shape[1]]
    full = _poly_terms(((xx - cx) / scale).ravel(), ((yy - cy) / scale).ravel(), order)
    form = (full @ coef).reshape(values.shape)
    return np.where(valid, values - form, np.nan)


def robust_std(values: np.ndarray) -> float:
    """1.4826 x median absolute deviation of the finite values."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return float("nan")
    return float(1.4826 * np.median(np.abs(v - np.median(v))))


# --------------------------------------------------------------------------------------
# Firing-pin shapes


@dataclass(frozen=True)
class FiringPinShape:
    """A fitted firing-pin outline in input pixels.

    Attributes
    ----------
    shape : {"round", "elliptical", "rectangular"}
    center : (float, float)
        ``(x, y)``.
    semi_axes : (float, float)
        Half length along ``angle_deg`` and half width across it.
    angle_deg : float
        Direction of the first axis, counter-clockwise as displayed, from +x.
    corner_radius : float
        Corner radius of the rectangular outline (0 otherwise).
    """

    shape: str
    center: tuple[float, float]
    semi_axes: tuple[float, float]
    angle_deg: float = 0.0
    corner_radius: float = 0.0

    def scaled(self, factor: float) -> FiringPinShape:
        """The same outline with every length times `factor` about its centre."""
        a, b = self.semi_axes
        return FiringPinShape(
            self.shape,
            self.center,
            (a * factor, b * factor),
            self.angle_deg,
            self.corner_radius * factor,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "shape": self.shape,
            "center_px": [round(float(c), 3) for c in self.center],
            "semi_axes_px": [round(float(s), 3) for s in self.semi_axes],
            "angle_deg": round(float(self.angle_deg) % 180.0, 3),
            "corner_radius_px": round(float(self.corner_radius), 3),
        }


def _fp_signed_distance(
    shape: tuple[int, int], fp: FiringPinShape, grow: float = 0.0, offset=(0, 0)
) -> np.ndarray:
    """Approximate signed distance (pixels, negative inside) to the outline grown by `grow`."""
    rows, cols = shape
    x = np.arange(cols, dtype=np.float32)[None, :] + offset[1] - fp.center[0]
    y = np.arange(rows, dtype=np.float32)[:, None] + offset[0] - fp.center[1]
    a_rad = math.radians(fp.angle_deg)
    c, s = math.cos(a_rad), math.sin(a_rad)
    u = x * c - y * s
    v = -x * s - y * c
    a, b = fp.semi_axes[0] + grow, fp.semi_axes[1] + grow
    if fp.shape == "rectangular":
        rc = min(fp.corner_radius + grow, a, b)
        qx = np.abs(u) - (a - rc)
        qy = np.abs(v) - (b - rc)
        outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
        return outside + np.minimum(np.maximum(qx, qy), 0) - rc
    rho = np.hypot(u / max(a, 1e-6), v / max(b, 1e-6))
    return (rho - 1) * min(a, b)


def fp_shape_mask(shape: tuple[int, int], fp: FiringPinShape, grow: float = 0.0) -> np.ndarray:
    """Boolean mask, shape `shape`, of the firing-pin outline grown by `grow` pixels."""
    return _fp_signed_distance(shape, fp, grow) < 0


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 0.0


def _fit_fp_shape(
    seed: np.ndarray, target: np.ndarray, scales: np.ndarray
) -> tuple[FiringPinShape, float]:
    """Fit circle, ellipse and rounded rectangle to `seed`'s moments, scale each to best
    match `target` (IoU), and keep the best. Masks are windows; centre in window pixels."""
    rows, cols = np.nonzero(seed)
    cx, cy = cols.mean(), rows.mean()
    dx, dy = cols - cx, rows - cy
    cov = np.cov(np.stack([dx, -dy]))  # y up, so angles are counter-clockwise as displayed
    evals, evecs = np.linalg.eigh(cov)
    l2, l1 = max(evals[0], 1e-6), max(evals[1], 1e-6)
    angle = math.degrees(math.atan2(evecs[1, 1], evecs[0, 1])) % 180.0
    centre = (float(cx), float(cy))
    ratio = math.sqrt(l1 / l2)
    candidates = [FiringPinShape("round", centre, (2 * math.sqrt((l1 + l2) / 2),) * 2)]
    if ratio > 1.08:
        candidates.append(
            FiringPinShape("elliptical", centre, (2 * math.sqrt(l1), 2 * math.sqrt(l2)), angle)
        )
        # A rounded rectangle with corner radius ~b/2 has second moments ~ a^2/3.3, b^2/4.
        a, b = math.sqrt(3.3 * l1), 2 * math.sqrt(l2)
        candidates.append(FiringPinShape("rectangular", centre, (a, b), angle, 0.5 * b))
    best, best_score, best_target = candidates[0], -1.0, 0.0

    def best_scale(fp: FiringPinShape, mask: np.ndarray, grid: np.ndarray) -> tuple:
        score, scale = max((_iou(fp_shape_mask(mask.shape, fp.scaled(s)), mask), s) for s in grid)
        step = grid[1] - grid[0] if grid.size > 1 else 0.0
        fine = scale + np.linspace(-0.75, 0.75, 5) * step
        return max(
            [(score, scale)]
            + [(_iou(fp_shape_mask(mask.shape, fp.scaled(s)), mask), s) for s in fine]
        )

    for cand in candidates:
        seed_score, seed_scale = best_scale(cand, seed, np.arange(0.9, 1.101, 0.05))
        cand = cand.scaled(seed_scale)
        score, scale = best_scale(cand, target, scales)
        # Prefer the simpler shape unless the richer one fits the seed clearly better.
        penalty = 0.0 if cand.shape == "round" else 0.01
        if seed_score - penalty > best_score:
            best_score = seed_score - penalty
            best = cand.scaled(scale)
            best_target = score
    return best, best_target


# --------------------------------------------------------------------------------------
# Detection


@dataclass
class Detection:
    """Where the regions are, in input pixels, and how sure the detector is.

    Attributes
    ----------
    primer_center : (float, float) or None
        ``(x, y)`` of the primer centre; None when the input was already cropped and no
        outline could be fitted.
    primer_radius : float or None
    firing_pin : FiringPinShape or None
    breech_face_mask, firing_pin_mask, primer_mask : ndarray of bool
        Regions at input resolution (the breech face before edge trimming; valid points).
    breech_face_zone : ndarray of bool
        The breech face's geometric extent, valid or not (primer minus pin aperture).
    cropped : bool
        The input arrived as a cropped breech face (outside and firing pin already NaN).
    confidence : float
        0-1: edge support of the primer circle (1 for a cropped input or manual values).
    fp_confidence : float
    notes : list of str
    fp_missing_reason : str or None
    """

    primer_center: tuple[float, float] | None
    primer_radius: float | None
    firing_pin: FiringPinShape | None
    breech_face_mask: np.ndarray
    firing_pin_mask: np.ndarray | None
    primer_mask: np.ndarray
    breech_face_zone: np.ndarray
    cropped: bool
    confidence: float
    fp_confidence: float
    notes: list[str] = field(default_factory=list)
    fp_missing_reason: str | None = None
    source: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures (no masks)."""
        return {
            "primer_center_px": None
            if self.primer_center is None
            else [round(float(c), 3) for c in self.primer_center],
            "primer_radius_px": None
            if self.primer_radius is None
            else round(float(self.primer_radius), 3),
            "firing_pin": None if self.firing_pin is None else self.firing_pin.as_dict(),
            "cropped_input": self.cropped,
            "primer_confidence": round(float(self.confidence), 4),
            "fp_confidence": round(float(self.fp_confidence), 4),
            "source": dict(self.source),
            "detector_version": DETECTOR_VERSION,
        }


def _large_invalid(mask: np.ndarray, min_area: int) -> np.ndarray:
    """Invalid points in connected components of at least `min_area` pixels."""
    invalid = ~mask
    labels, n = ndimage.label(invalid)
    if n == 0:
        return invalid
    sizes = np.bincount(labels.ravel())
    big = sizes >= min_area
    big[0] = False
    return big[labels]


def _feature_image(
    surface: np.ndarray, mask: np.ndarray, modality: str, pixel_um: float
) -> np.ndarray:
    """One image where region edges are strong: heights (3D, large holes set low, small
    ones filled) or log-intensity (2D)."""
    if modality == "2d":
        img = np.log(np.clip(np.where(mask, surface, np.nan), 1e-3, None)).astype(np.float32)
        if not mask.all():
            img = np.where(mask, img, np.nanmedian(img[mask])).astype(np.float32)
        return img
    values = np.where(mask, surface, np.nan).astype(np.float32)
    big = _large_invalid(mask, max(9, int((60.0 / pixel_um) ** 2)))
    low = np.float32(np.nanpercentile(values, 1) - 0.5 * robust_std(values))
    smooth = gaussian_nan(values, max(1.0, 15.0 / pixel_um))
    filled = np.where(mask, values, smooth)
    filled = np.where(big | ~np.isfinite(filled), low, filled)
    return filled.astype(np.float32)


def _edge_strength(img: np.ndarray, sigma: float) -> np.ndarray:
    smooth = cv2.GaussianBlur(img, (0, 0), sigma)
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3)
    mag = np.hypot(gx, gy)
    # Saturate a few extreme edges (spikes, deep holes) so they cannot outvote a rim.
    top = np.percentile(mag, 99.0)
    return np.minimum(mag, top if top > 0 else 1.0)


def _ring_search(
    edges: np.ndarray, radii: np.ndarray, width: float
) -> tuple[float, float, float, float]:
    """Hough-style search: mean edge strength on circles of each radius, every centre.

    Returns ``(x, y, radius, contrast)``; contrast compares the peak with the median.
    """
    rows, cols = edges.shape
    pad = int(radii.max()) + 2
    shape = (sfft.next_fast_len(rows + 2 * pad), sfft.next_fast_len(cols + 2 * pad, real=True))
    e_hat = sfft.rfft2(edges - edges.mean(), shape, workers=-1)
    fy = sfft.fftfreq(shape[0])[:, None]
    fx = sfft.rfftfreq(shape[1])[None, :]
    rho = np.hypot(fx, fy)
    blur = np.exp(-2 * (math.pi * width * rho) ** 2)
    best = (-np.inf, 0, 0, 0.0)
    for r in radii:
        # The Fourier transform of a unit-mean ring of radius r is J0(2 pi r rho).
        resp = sfft.irfft2(e_hat * (special.j0(2 * math.pi * r * rho) * blur), shape, workers=-1)
        resp = resp[:rows, :cols]
        idx = int(np.argmax(resp))
        if resp.flat[idx] > best[0]:
            best = (float(resp.flat[idx]), idx // cols, idx % cols, float(r))
    score, y, x, r = best
    contrast = score / (float(np.std(edges)) + 1e-12)
    return float(x), float(y), r, contrast


def _fit_circle(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Algebraic (Kasa) least-squares circle: centre x, y and radius."""
    a = np.stack([x, y, np.ones_like(x)], axis=1)
    b = x * x + y * y
    (c0, c1, c2), *_ = np.linalg.lstsq(a, b, rcond=None)
    cx, cy = c0 / 2, c1 / 2
    return float(cx), float(cy), float(math.sqrt(max(c2 + cx * cx + cy * cy, 0)))


def _robust_circle(
    x: np.ndarray, y: np.ndarray, min_tol: float
) -> tuple[float, float, float, np.ndarray]:
    keep = np.ones(x.size, bool)
    cx = cy = r = 0.0
    for _ in range(6):
        if keep.sum() < 8:
            break
        cx, cy, r = _fit_circle(x[keep], y[keep])
        res = np.hypot(x - cx, y - cy) - r
        tol = max(3.0 * 1.4826 * np.median(np.abs(res[keep])), min_tol)
        new_keep = np.abs(res) < tol
        if np.array_equal(new_keep, keep):
            break
        keep = new_keep
    return cx, cy, r, keep


def _rays(
    img: np.ndarray, cx: float, cy: float, r_lo: float, r_hi: float, n_angles: int, step: float
) -> tuple[np.ndarray, np.ndarray]:
    """Sample `img` along rays from (cx, cy): profiles (n_angles, n_r) and the radii."""
    radii = np.arange(r_lo, r_hi, step)
    theta = np.linspace(0, 2 * math.pi, n_angles, endpoint=False)
    xs = cx + np.cos(theta)[:, None] * radii[None, :]
    ys = cy + np.sin(theta)[:, None] * radii[None, :]
    prof = cv2.remap(
        np.asarray(img, np.float32),
        xs.astype(np.float32),
        ys.astype(np.float32),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return prof, radii


def _primer_rim(
    feature: np.ndarray,
    pixel_um: float,
    cx: float,
    cy: float,
    r0: float,
    window_um: float,
) -> tuple[float, float, float, float, float]:
    """Refine the primer circle about a first guess.

    The centre is where the angle-averaged radial profile of the rim (primer edge, gap,
    pocket wall) is sharpest: the edges are concentric there, so the mean radial derivative
    has the most energy. This uses every edge of the rim at once and no per-ray decision.
    The radius is then read from that profile: the innermost strong fall (the primer face
    dropping into the gap) inside the strongest rise (the pocket wall).
    Returns ``(x, y, radius, support, wall_radius)``; support is the fraction of rays whose
    own profile agrees with the mean (correlation > 0.5).
    """
    from scipy.optimize import minimize

    sigma = max(0.8, 6.0 / pixel_um)
    smooth = cv2.GaussianBlur(feature, (0, 0), sigma)
    half = window_um / pixel_um
    step = max(0.5, min(1.0, 4.0 / pixel_um))
    n_angles = 180
    r_lo, r_hi = max(r0 - half, 2.0), r0 + half

    def energy(c: np.ndarray) -> float:
        prof, _ = _rays(smooth, c[0], c[1], r_lo, r_hi, n_angles, step)
        return -float(np.sum(np.diff(prof.mean(axis=0)) ** 2))

    best = minimize(
        energy,
        np.array([cx, cy]),
        method="Nelder-Mead",
        options={
            "initial_simplex": np.array([[cx, cy], [cx + 2, cy], [cx, cy + 2]]),
            "xatol": 0.1,
            "fatol": 1e-12,
            "maxiter": 120,
        },
    )
    fx, fy = (float(v) for v in best.x)
    n_angles = 360
    prof, radii = _rays(smooth, fx, fy, r_lo, r_hi, n_angles, step)
    deriv = np.diff(prof, axis=1)
    mean_d = deriv.mean(axis=0)
    if not np.any(mean_d):
        return fx, fy, r0, 0.0, r0
    dc = deriv - deriv.mean(axis=1, keepdims=True)
    mc = mean_d - mean_d.mean()
    corr = (dc @ mc) / (np.linalg.norm(dc, axis=1) * np.linalg.norm(mc) + 1e-12)
    support = float(np.mean(corr > 0.5))
    mids = 0.5 * (radii[1:] + radii[:-1])
    i_wall = int(np.argmax(mean_d))
    wall = float(mids[i_wall])
    inside = (mids < wall) & (mids > wall - 200.0 / pixel_um)
    d = np.where(inside, mean_d, 0.0)
    if d.min() >= 0:
        return fx, fy, wall, support, wall
    strong = d <= 0.5 * d.min()
    local = np.r_[False, (d[1:-1] <= d[:-2]) & (d[1:-1] <= d[2:]), False]
    idx = np.nonzero(strong & local)[0]
    i = int(idx[0]) if idx.size else int(np.argmin(d))
    # Sub-pixel: parabola through the minimum of the derivative.
    i_f = float(i)
    if 0 < i < d.size - 1:
        den = d[i - 1] - 2 * d[i] + d[i + 1]
        if den > 0:
            i_f = i + 0.5 * (d[i - 1] - d[i + 1]) / den
    return fx, fy, float(mids[0] + i_f * step), support, wall


def _radius_range_px(pixel_um: float, caliber: str | None, source: str | None) -> tuple:
    if caliber is None:
        lo, hi = PRIMER_RADIUS_RANGE_UM
    else:
        key = caliber.strip().lower()
        nominal = CALIBER_PRIMER_RADIUS_UM.get(key) or PRIMER_RADIUS_UM.get(key)
        if nominal is None:
            known = sorted(set(CALIBER_PRIMER_RADIUS_UM) | set(PRIMER_RADIUS_UM))
            raise InputError(source, f"unknown caliber {caliber!r}; known: {', '.join(known)}")
        lo, hi = 0.9 * nominal, 1.1 * nominal
    return lo / pixel_um, hi / pixel_um


def _is_cropped(mask: np.ndarray) -> bool:
    """A cropped breech face: the image border is mostly invalid (the outside of the
    region was set to NaN) and a good part of the image is invalid."""
    border = np.concatenate([mask[0], mask[-1], mask[:, 0], mask[:, -1]])
    return border.mean() < 0.25 and mask.mean() < 0.85


def _cropped_detection(mask: np.ndarray, pixel_um: float) -> Detection:
    labels, _n = ndimage.label(mask)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    region = labels == int(np.argmax(sizes))
    filled = ndimage.binary_fill_holes(region)
    holes = filled & ~region
    hole_labels, n_holes = ndimage.label(holes)
    notes = ["input is a cropped breech face: primer detection skipped"]
    # The outline of the region gives the primer centre (for reports and alignment).
    contour = filled ^ ndimage.binary_erosion(filled)
    ys, xs = np.nonzero(contour)
    cx, cy, r, _ = _robust_circle(xs.astype(float), ys.astype(float), 2.0)
    centre = (cx, cy) if xs.size >= 8 else None
    fp_hole = False
    if n_holes:
        hsizes = np.bincount(hole_labels.ravel())
        hsizes[0] = 0
        biggest = int(np.argmax(hsizes))
        hy, hx = np.nonzero(hole_labels == biggest)
        near = centre is not None and math.hypot(hx.mean() - cx, hy.mean() - cy) < 0.5 * r
        fp_hole = near and hsizes[biggest] > 0.01 * filled.sum()
    zone = filled.copy()
    if fp_hole:
        zone &= hole_labels != biggest
    reason = (
        "firing-pin impression already removed from the input"
        if fp_hole
        else "no firing-pin impression in the cropped input"
    )
    return Detection(
        primer_center=centre,
        primer_radius=r if centre else None,
        firing_pin=None,
        breech_face_mask=region,
        firing_pin_mask=None,
        primer_mask=filled,
        breech_face_zone=zone,
        cropped=True,
        confidence=1.0,
        fp_confidence=0.0,
        notes=notes,
        fp_missing_reason=reason,
        source={"primer": "cropped input"},
    )


def _find_primer(
    feature: np.ndarray,
    pixel_um: float,
    r_range: tuple[float, float],
) -> tuple[float, float, float, float]:
    """Coarse ring search at ~40 um pixels, then rim refinement at full resolution."""
    f = max(1.0, COARSE_PIXEL_UM / pixel_um)
    small = cv2.resize(feature, None, fx=1 / f, fy=1 / f, interpolation=cv2.INTER_AREA)
    fy_, fx_ = feature.shape[0] / small.shape[0], feature.shape[1] / small.shape[1]
    edges = _edge_strength(small, 1.0)
    lo, hi = r_range[0] / f, r_range[1] / f
    hi = min(hi, 0.75 * max(small.shape))
    if hi <= lo:
        return 0.0, 0.0, 0.0, 0.0
    radii = np.arange(lo, hi + 1.0, 1.0)
    x, y, r, _ = _ring_search(edges, radii, 1.0)
    x, y, r = (x + 0.5) * fx_ - 0.5, (y + 0.5) * fy_ - 0.5, r * f
    # The ring search finds one of the gap's walls; search both, then refine near the wall.
    window = 2.0 * COARSE_PIXEL_UM + 0.05 * r * pixel_um
    x, y, radius, support, wall = _primer_rim(feature, pixel_um, x, y, r, window)
    if support > 0:
        # Second pass about the found rim: primer edge up to ~200 um inside the wall.
        x, y, radius, support, wall = _primer_rim(
            feature, pixel_um, x, y, wall - 50.0 / pixel_um, 160.0
        )
    return x, y, radius, support


def _fp_candidates_3d(
    surface: np.ndarray,
    mask: np.ndarray,
    pixel_um: float,
    cx: float,
    cy: float,
    r: float,
) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Crater masks inside the primer: deep core (seed) and its full extent (target)."""
    yy, xx = np.mgrid[0 : surface.shape[0], 0 : surface.shape[1]]
    rr = np.hypot(xx - cx, yy - cy)
    values = np.where(mask, surface, np.nan)
    ring = (rr > 0.5 * r) & (rr < 0.85 * r)
    resid = level(values, 2, where=ring)
    noise = robust_std(resid[ring])
    inner = rr < 0.6 * r
    big_hole = _large_invalid(mask, max(9, int((40.0 / pixel_um) ** 2))) & inner
    depth = -np.nanpercentile(np.where(inner, resid, np.nan), 0.5)
    low = max(4.0 * noise, 4.0)
    if not np.isfinite(depth) or depth < 2 * low:
        return None
    core = ((resid < -0.4 * depth) & inner) | big_hole
    extent = ((resid < -low) & inner) | big_hole
    return core, extent, float(depth / max(noise, 1e-6))


def _polar_contour(gain: np.ndarray, max_jump: int) -> np.ndarray:
    """Closed path through a polar map: one radius index per angle, at most `max_jump`
    apart between neighbouring angles, maximising the summed `gain` (dynamic programming).

    The angles are run twice around; the path of the second turn, which no longer depends
    on where the first one started, closes the contour.
    """
    n, m = gain.shape
    tiled = np.concatenate([gain, gain], axis=0)
    score = tiled[0].copy()
    back = np.zeros((2 * n, m), np.int32)
    idx = np.arange(m)
    for t in range(1, 2 * n):
        best = score.copy()
        arg = idx.copy()
        for d in range(1, max_jump + 1):
            for shifted_idx in (np.clip(idx - d, 0, m - 1), np.clip(idx + d, 0, m - 1)):
                cand = score[shifted_idx]
                better = cand > best
                best = np.where(better, cand, best)
                arg = np.where(better, shifted_idx, arg)
        score = best + tiled[t]
        back[t] = arg
    path = np.empty(2 * n, np.int64)
    path[-1] = int(np.argmax(score))
    for t in range(2 * n - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path[n:]


def _fp_candidates_2d(
    image: np.ndarray,
    pixel_um: float,
    cx: float,
    cy: float,
    r: float,
) -> tuple[np.ndarray, np.ndarray, float] | None:
    """2D: under a ring light the impression's cap or wall shines, so its outline is the
    closed contour around the primer centre along which the image falls most from inside
    to outside. Short, bright toolmark glints also make strong edges; a contour found by
    dynamic programming over all angles at once cannot follow them far.

    Under glare (a high ring light, a long exposure) the wall is one saturated band and the
    face around it is strewn with saturated glints, so the fall at the outline is no larger
    than the glints' own edges. Then the outline is traced on the glint-masked saturation
    map instead (:func:`_glare_map`): the saturated pixels left after an opening that
    removes thin glints, whose outer edge is the impression's outline."""
    sigma = max(1.0, 8.0 / pixel_um)
    smooth = cv2.GaussianBlur(image, (0, 0), sigma)
    found = _fp_contour_2d(smooth, pixel_um, cx, cy, r)
    if found is not None and found[2] >= FP_CONTRAST_2D:
        return found[:3]
    glare = _glare_map(image, pixel_um, cx, cy, r)
    if glare is not None:
        traced = _fp_contour_2d(cv2.GaussianBlur(glare, (0, 0), sigma), pixel_um, cx, cy, r)
        # a 0/1 map has no noise to measure contrast against: the outline must run along
        # the saturated band's edge nearly all the way round instead
        if traced is not None and traced[3] >= GLARE_SUPPORT:
            return traced[:3]
    return None


#: 2D: the least contrast (mean fall along the outline over the robust spread of the falls)
#: of a firing-pin outline.
FP_CONTRAST_2D = 3.0
#: 2D glare: the share of saturated pixels near the impression above which the glare path
#: is tried, and the width (um) of the glints an opening removes before tracing.
GLARE_SHARE = 0.05
GLINT_WIDTH_UM = 32.0
#: 2D glare: the least share of the outline's rays that cross the saturated band's edge.
GLARE_SUPPORT = 0.8


def _glare_map(
    image: np.ndarray, pixel_um: float, cx: float, cy: float, r: float
) -> np.ndarray | None:
    """Saturated pixels near the primer centre minus thin glints, as float32 0/1; None when
    there is no glare (fewer than :data:`GLARE_SHARE` saturated pixels within 0.55 r)."""
    yy, xx = np.ogrid[0 : image.shape[0], 0 : image.shape[1]]
    near = (xx - cx) ** 2 + (yy - cy) ** 2 <= (0.55 * r) ** 2
    if not near.any():
        return None
    top = float(np.max(image[near]))
    saturated = near & (image >= top - 0.03)  # log intensity: within 3 % of the brightest
    if saturated.sum() < GLARE_SHARE * near.sum():
        return None
    radius = max(1, round(0.5 * GLINT_WIDTH_UM / pixel_um))
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    opened = cv2.morphologyEx(saturated.astype(np.uint8), cv2.MORPH_OPEN, disc)
    if not opened.any():
        return None
    return opened.astype(np.float32)


def _fp_contour_2d(
    smooth: np.ndarray, pixel_um: float, cx: float, cy: float, r: float
) -> tuple[np.ndarray, np.ndarray, float, float] | None:
    """The closed outline around (cx, cy) along which `smooth` falls most from inside to
    outside, as ``(mask, mask, contrast, support)``; None for a degenerate outline.

    ``support`` is the share of rays where the fall at the outline is at least a quarter
    of the largest fall."""
    step = max(1.0, 4.0 / pixel_um)
    n_angles = 360
    # The outline's radius changes by at most ~30 um per degree (corners of a Glock pin
    # seen from an off-centre primer centre).
    max_jump = max(1, math.ceil(30.0 / (step * pixel_um)))
    theta = np.linspace(0, 2 * math.pi, n_angles, endpoint=False)
    ox, oy = cx, cy
    mask = None
    contrast = support = 0.0
    for _ in range(2):
        prof, radii = _rays(smooth, ox, oy, 0.06 * r, 0.55 * r, n_angles, step)
        fall = -np.gradient(prof, axis=1)
        fall = ndimage.uniform_filter1d(fall, 3, axis=0, mode="wrap")
        spread = float(np.percentile(np.abs(fall), 99)) + 1e-12
        # Saturate: a few extreme glints must not outweigh a long, steady outline.
        fall = np.clip(fall, -spread, spread)
        rays = np.arange(n_angles)
        path = _polar_contour(fall, max_jump)
        # A lit rim (the lip raised around the impression) can make a second falling edge
        # just outside the outline; the outline is the inner one when it is nearly as
        # strong.
        index = np.arange(radii.size)[None, :]
        inside = (index < path[:, None] - max(2, round(20.0 / (step * pixel_um)))) & (
            index > 0.7 * path[:, None]
        )
        inner = _polar_contour(np.where(inside, fall, -spread), max_jump)
        if np.mean(fall[rays, inner]) > 0.6 * np.mean(fall[rays, path]):
            path = inner
        r_use = radii[path]
        noise = 1.4826 * float(np.median(np.abs(fall - np.median(fall)))) + 1e-12
        contrast = float(np.mean(fall[rays, path]) / noise)
        support = float(np.mean(fall[rays, path] >= 0.25 * spread))
        pts = np.stack([ox + np.cos(theta) * r_use, oy + np.sin(theta) * r_use], axis=1)
        mask = np.zeros(smooth.shape, np.uint8)
        cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], 1, shift=4)
        mask = mask.astype(bool)
        rows, cols = np.nonzero(mask)
        if rows.size < 20:
            return None
        ox, oy = cols.mean(), rows.mean()
    return mask, mask, contrast, support


def detect_regions(
    surface: np.ndarray,
    mask: np.ndarray,
    modality: str,
    pixel_size_um: float,
    *,
    primer_center: tuple[float, float] | None = None,
    primer_radius: float | None = None,
    fp_center: tuple[float, float] | None = None,
    fp_radius: float | None = None,
    caliber: str | None = None,
    fp_margin_um: float = 180.0,
    source: str | None = None,
) -> Detection:
    """Find the primer, the firing-pin impression and the breech face of a casing image.

    Parameters
    ----------
    surface : ndarray, shape (M, N)
        3D heights (um, NaN missing) or 2D intensity in [0, 1].
    mask : ndarray of bool, shape (M, N)
        Valid points.
    modality : {"3d", "2d"}
    pixel_size_um : float
    primer_center, primer_radius : optional
        Manual primer circle: centre ``(x, y)`` and radius in input pixels (x = column,
        y = row). The centre alone fixes the search; the radius alone restricts it.
    fp_center, fp_radius : optional
        Manual firing-pin impression: centre ``(x, y)`` and radius in input pixels; a round
        outline is used when both are given, the radius alone keeps the detected centre.
    caliber : str, optional
        Caliber hint ("9mm", ".40 S&W", ".45 ACP", "small pistol", ...) narrowing the
        primer radius search to +-10 % of its nominal value.
    fp_margin_um : float
        The breech face excludes the impression grown by this margin (the pin aperture).
    source : str, optional
        File name for error messages.

    Returns
    -------
    Detection

    Raises
    ------
    InputError
        No primer found, or a manual value outside the image.
    """
    rows, cols = surface.shape
    for name, point in (("primer_center", primer_center), ("fp_center", fp_center)):
        if point is not None:
            px, py = (float(v) for v in point)
            if not (0 <= px <= cols - 1 and 0 <= py <= rows - 1):
                raise InputError(
                    source, f"{name} ({px:g}, {py:g}) px is outside the {cols} x {rows} image"
                )
    for name, value in (("primer_radius", primer_radius), ("fp_radius", fp_radius)):
        if value is not None and not (np.isfinite(value) and 0 < value < max(rows, cols)):
            raise InputError(source, f"{name} {value!r} px is not a usable radius")

    manual = primer_center is not None or primer_radius is not None
    if not manual and _is_cropped(mask):
        return _cropped_detection(mask, pixel_size_um)

    # Detect on a reduced copy (fine inputs gain nothing here); map results back.
    k = max(1.0, DETECT_PIXEL_UM / pixel_size_um)
    values = np.where(mask, surface, np.nan).astype(np.float32)
    work = resample_nan(values, k) if k > 1.05 else values
    sy, sx = rows / work.shape[0], cols / work.shape[1]
    work_px = pixel_size_um * sx
    work_mask = np.isfinite(work)

    def to_work(p):
        return (
            None if p is None else ((float(p[0]) + 0.5) / sx - 0.5, (float(p[1]) + 0.5) / sy - 0.5)
        )

    def to_input(x, y):
        return (x + 0.5) * sx - 0.5, (y + 0.5) * sy - 0.5

    feature = _feature_image(work, work_mask, modality, work_px)
    if not np.isfinite(feature).all() or float(np.ptp(feature)) <= 1e-6:
        raise InputError(source, "no primer found: the image is blank (no contrast)")
    src: dict[str, str] = {}
    if primer_center is not None and primer_radius is not None:
        cx, cy = to_work(primer_center)
        r = float(primer_radius) / sx
        conf = 1.0
        src["primer"] = "manual"
    else:
        if primer_radius is not None:
            r_range = (0.97 * primer_radius / sx, 1.03 * primer_radius / sx)
        else:
            lo, hi = _radius_range_px(pixel_size_um, caliber, source)
            r_range = (lo / sx, hi / sx)
        if primer_center is not None:
            cx, cy = to_work(primer_center)
            r0 = 0.5 * (r_range[0] + r_range[1]) + 60.0 / work_px
            window = 0.5 * (r_range[1] - r_range[0]) * work_px + 150.0
            _, _, r, conf, _ = _primer_rim(feature, work_px, cx, cy, r0, window)
            src["primer"] = "manual centre, detected radius"
        else:
            cx, cy, r, conf = _find_primer(feature, work_px, r_range)
            src["primer"] = "detected"
            if primer_radius is not None:
                r = float(primer_radius) / sx
                src["primer"] = "detected centre, manual radius"
        if conf < 0.25 or r <= 0:
            raise InputError(
                source,
                "no primer found: no circular primer edge in the image "
                f"(edge support {100 * conf:.0f} %); pass primer_center and primer_radius "
                "(CLI: --primer-center X,Y --primer-radius R) to set it by hand",
            )
    if not (
        -0.1 * r <= cx <= work.shape[1] + 0.1 * r and -0.1 * r <= cy <= work.shape[0] + 0.1 * r
    ):
        raise InputError(source, "no primer found: the fitted circle lies outside the image")

    # Firing pin (work pixels).
    fp: FiringPinShape | None = None
    fp_conf = 0.0
    fp_reason = None
    if fp_center is not None and fp_radius is not None:
        fp = FiringPinShape("round", to_work(fp_center), (fp_radius / sx,) * 2)
        fp_conf = 1.0
        src["firing_pin"] = "manual"
    else:
        if modality == "3d":
            cand = _fp_candidates_3d(work, work_mask, work_px, cx, cy, r)
        else:
            cand = _fp_candidates_2d(feature, work_px, cx, cy, r)
        if cand is not None:
            core, extent, _ = cand
            fp, fp_conf = _segment_fp(core, extent, cx, cy, r, modality)
        if fp is None:
            fp_reason = "no firing-pin impression found inside the primer"
        else:
            src["firing_pin"] = "detected"
            if fp_center is not None:
                fp = FiringPinShape(
                    fp.shape, to_work(fp_center), fp.semi_axes, fp.angle_deg, fp.corner_radius
                )
                src["firing_pin"] = "manual centre, detected outline"
            if fp_radius is not None:
                fp = FiringPinShape("round", fp.center, (float(fp_radius) / sx,) * 2)
                src["firing_pin"] = "detected centre, manual radius"

    # Back to input pixels; masks at input resolution.
    cx, cy = to_input(cx, cy)
    r = r * sx
    if fp is not None:
        fp = FiringPinShape(
            fp.shape,
            to_input(*fp.center),
            (fp.semi_axes[0] * sx, fp.semi_axes[1] * sx),
            fp.angle_deg,
            fp.corner_radius * sx,
        )
    notes: list[str] = []
    yy, xx = np.ogrid[0:rows, 0:cols]
    primer = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    inside = primer.sum() / (math.pi * r * r)
    if inside < 0.9:
        notes.append(f"only {100 * inside:.0f} % of the primer is inside the image")
    fp_mask = None
    zone = primer.copy()
    if fp is not None:
        fp_mask = fp_shape_mask(surface.shape, fp) & primer
        zone &= ~fp_shape_mask(surface.shape, fp, fp_margin_um / pixel_size_um)
    breech = zone & mask
    return Detection(
        primer_center=(cx, cy),
        primer_radius=r,
        firing_pin=fp,
        breech_face_mask=breech,
        firing_pin_mask=fp_mask,
        primer_mask=primer,
        breech_face_zone=zone,
        cropped=False,
        confidence=float(conf),
        fp_confidence=float(fp_conf),
        notes=notes,
        fp_missing_reason=fp_reason,
        source=src,
    )


def _segment_fp(
    core: np.ndarray, extent: np.ndarray, cx: float, cy: float, r: float, modality: str
) -> tuple[FiringPinShape | None, float]:
    """Pick the crater component nearest the primer centre and fit its outline."""
    pad = int(0.6 * r)
    y0, y1 = max(0, int(cy) - pad), min(core.shape[0], int(cy) + pad + 1)
    x0, x1 = max(0, int(cx) - pad), min(core.shape[1], int(cx) + pad + 1)
    core_w = core[y0:y1, x0:x1]
    extent_w = extent[y0:y1, x0:x1]
    open_r = max(1, int(0.02 * r))
    core_w = ndimage.binary_opening(core_w, iterations=open_r)
    labels, n = ndimage.label(core_w)
    if n == 0:
        return None, 0.0
    idx = np.arange(1, n + 1)
    sizes = ndimage.sum_labels(np.ones_like(labels), labels, idx)
    centres = ndimage.center_of_mass(core_w, labels, idx)
    dist = np.array([math.hypot(c[1] + x0 - cx, c[0] + y0 - cy) for c in centres])
    ok = (sizes > (0.05 * r) ** 2) & (dist < 0.4 * r)
    if not ok.any():
        return None, 0.0
    score = np.where(ok, sizes / (1 + dist / (0.1 * r)), -1)
    label = int(idx[np.argmax(score)])
    seed = ndimage.binary_fill_holes(labels == label)
    tlabels, _ = ndimage.label(extent_w | seed)
    target = ndimage.binary_fill_holes(tlabels == tlabels[seed][0])
    seed_area = np.count_nonzero(seed)
    if seed_area > 0.5 * math.pi * r * r * 0.25:
        return None, 0.0
    scales = np.arange(1.0, 1.8, 0.05) if modality == "3d" else np.arange(0.9, 1.15, 0.05)
    # Fit on a reduced window (~60 px across the impression): the outline is smooth.
    f = max(1.0, math.sqrt(seed_area / math.pi) / 30.0)
    if f > 1.2:
        size = (max(1, round(seed.shape[1] / f)), max(1, round(seed.shape[0] / f)))
        seed_s = cv2.resize(seed.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0.5
        target_s = cv2.resize(target.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0.5
        fy, fx = seed.shape[0] / seed_s.shape[0], seed.shape[1] / seed_s.shape[1]
    else:
        seed_s, target_s, fx, fy = seed, target, 1.0, 1.0
    if not seed_s.any():
        return None, 0.0
    fp, fit = _fit_fp_shape(seed_s, target_s, scales)
    fp = FiringPinShape(
        fp.shape,
        ((fp.center[0] + 0.5) * fx - 0.5 + x0, (fp.center[1] + 0.5) * fy - 0.5 + y0),
        (fp.semi_axes[0] * fx, fp.semi_axes[1] * fx),
        fp.angle_deg,
        fp.corner_radius * fx,
    )
    return fp, float(fit)
