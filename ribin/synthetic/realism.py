"""Figures that compare synthetic breech faces with real scans (band-pass, statistics)."""

from __future__ import annotations

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

# ISO 16610-61 Gaussian filter: 50 % transmission at the cut-off wavelength.
_SIGMA_PER_CUTOFF = np.sqrt(np.log(2) / (2 * np.pi**2))


def gaussian_nan(heights: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian low-pass that ignores NaN (normalised convolution); NaN stays NaN."""
    valid = np.isfinite(heights)
    filled = np.where(valid, heights, 0.0)
    num = ndimage.gaussian_filter(filled, sigma_px, mode="constant")
    den = ndimage.gaussian_filter(valid.astype(np.float64), sigma_px, mode="constant")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / den
    out[~valid] = np.nan
    return out


def bandpass(
    heights: np.ndarray,
    pixel_size_um: float,
    short_um: float = 16.0,
    long_um: float = 500.0,
) -> np.ndarray:
    """Gaussian band-pass of a masked surface, as applied to the Fadul breech-face scans.

    Parameters
    ----------
    heights : ndarray, shape (M, N)
        Heights (any unit), NaN where missing or outside the region.
    pixel_size_um : float
        Pixel size in micrometres.
    short_um, long_um : float
        Cut-off wavelengths: detail shorter than `short_um` (noise) and form longer than
        `long_um` are removed (cmcR's defaults are 16 and 500 um).

    Returns
    -------
    ndarray, shape (M, N)
        The band-passed surface, NaN where `heights` is NaN.
    """
    s_short = _SIGMA_PER_CUTOFF * short_um / pixel_size_um
    s_long = _SIGMA_PER_CUTOFF * long_um / pixel_size_um
    smooth = gaussian_nan(heights, s_short)
    return smooth - gaussian_nan(smooth, s_long)


def surface_stats(heights: np.ndarray, pixel_size_um: float) -> dict[str, float]:
    """Amplitude, tails and correlation length of a (band-passed) surface.

    Returns a dict with ``std``, ``p1``, ``p99``, ``kurtosis`` (excess), ``nan_fraction``
    (over the array), and ``corr_length_um``: the lag at which the isotropic
    autocorrelation falls to 1/e.
    """
    valid = np.isfinite(heights)
    values = heights[valid]
    centred = values - values.mean()
    std = float(centred.std())
    kurt = float(np.mean(centred**4) / std**4 - 3) if std > 0 else 0.0
    # Masked autocorrelation: correlate the zero-filled surface and normalise by the
    # overlap of the mask with itself at each lag.
    filled = np.where(valid, heights - values.mean(), 0.0)
    shape = [sfft.next_fast_len(2 * n) for n in heights.shape]
    f = sfft.rfft2(filled, shape)
    m = sfft.rfft2(valid.astype(np.float64), shape)
    acf = sfft.irfft2(np.abs(f) ** 2, shape)
    overlap = sfft.irfft2(np.abs(m) ** 2, shape)
    acf = np.where(overlap > 0.05 * overlap[0, 0], acf / np.maximum(overlap, 1), 0)
    acf = sfft.fftshift(acf / acf[0, 0])
    cy, cx = shape[0] // 2, shape[1] // 2
    yy, xx = np.indices(acf.shape)
    r = np.hypot(yy - cy, xx - cx).astype(int)
    limit = min(heights.shape) // 4
    keep = r < limit
    radial = np.bincount(r[keep], acf[keep]) / np.bincount(r[keep])
    below = np.nonzero(radial < np.exp(-1))[0]
    corr = float(below[0]) * pixel_size_um if below.size else float(limit * pixel_size_um)
    return {
        "std": std,
        "p1": float(np.percentile(values, 1)),
        "p99": float(np.percentile(values, 99)),
        "kurtosis": kurt,
        "nan_fraction": float(1 - valid.mean()),
        "corr_length_um": corr,
    }


def masked_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two surfaces over the pixels where both are finite."""
    both = np.isfinite(a) & np.isfinite(b)
    if both.sum() < 10:
        return float("nan")
    x = a[both] - a[both].mean()
    y = b[both] - b[both].mean()
    return float(np.sum(x * y) / np.sqrt(np.sum(x * x) * np.sum(y * y)))
