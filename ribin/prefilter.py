"""Prefilter features: a short, rotation- and translation-invariant summary of a signature.

The search's first stage ranks every candidate by these vectors, so they must be cheap to
compute, small to store and identical for the same surface. Version 1 is

- 56 values: the radially averaged power spectrum of the surface (NaN filled with the mean,
  Hann windowed), in 56 equal bins of spatial frequency from 0 to 0.5 cycles/pixel, divided
  by its mean over the bins and written as ``log10(p + 1e-4)`` (so contrast does not matter
  and power 40 dB under the mean, mostly noise, does not dominate); bins with no frequency
  sample (tiny surfaces) are interpolated from their neighbours;
- 8 moments of the valid pixels: valid fraction, mean, standard deviation, skewness,
  excess kurtosis, mean absolute gradient, and the 10th and 90th percentiles about the mean.

The magnitude spectrum does not change when the surface shifts, and its radial average does
not change when it rotates, so two scans of one casing give close vectors whatever their
registration. Features are a cache: the store records :data:`FEATURE_VERSION` beside them and
can recompute them from the surfaces when the definition changes.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ribin.exhibit import Signature

FEATURE_VERSION = 1
"""Bump when :func:`features` changes; stores rebuild features of older versions."""

N_SPECTRUM = 56
N_MOMENTS = 8
FEATURE_LENGTH = N_SPECTRUM + N_MOMENTS


@lru_cache(maxsize=32)
def _radial_bins(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bin index and weight of each rfft2 sample, bin counts and window, for one shape."""
    rows, cols = shape
    fy = np.fft.fftfreq(rows)[:, None]
    fx = np.fft.rfftfreq(cols)[None, :]
    radius = np.hypot(fy, fx)
    index = np.minimum((radius / 0.5 * N_SPECTRUM).astype(np.int64), N_SPECTRUM)
    # radii past 0.5 (the corners) fall into an overflow bin that is dropped. The rfft keeps
    # half the plane: columns other than 0 and Nyquist stand for two samples of the full one,
    # so weighting them 2 makes the average that of the full, rotation-symmetric plane.
    weight = np.full(index.shape, 2.0)
    weight[:, 0] = 1.0
    if cols % 2 == 0:
        weight[:, -1] = 1.0
    index = np.broadcast_to(index, weight.shape).ravel()
    counts = np.bincount(index, weights=weight.ravel(), minlength=N_SPECTRUM + 1)[:N_SPECTRUM]
    window = np.outer(np.hanning(rows), np.hanning(cols)).astype(np.float64)
    return index, weight.ravel(), counts, window


def features(signature: Signature | np.ndarray) -> np.ndarray:
    """Prefilter feature vector of one signature.

    Parameters
    ----------
    signature : Signature or ndarray, shape (M, N)
        The signature (or its surface); NaN marks pixels outside the region.

    Returns
    -------
    ndarray of float32, shape (FEATURE_LENGTH,)
        Finite values (an all-NaN surface gives zeros with valid fraction 0).

    Examples
    --------
    >>> import numpy as np
    >>> features(np.zeros((32, 32), np.float32)).shape
    (64,)
    """
    surface = signature.surface if isinstance(signature, Signature) else signature
    surface = np.asarray(surface, dtype=np.float64)
    if surface.ndim != 2:
        raise ValueError(f"surface must be 2-D, not {surface.ndim}-D")
    out = np.zeros(FEATURE_LENGTH, dtype=np.float64)
    valid = np.isfinite(surface)
    n_valid = int(valid.sum())
    if n_valid == 0 or min(surface.shape) < 2:
        return out.astype(np.float32)

    values = surface[valid]
    mean = values.mean()
    centred = values - mean
    std = centred.std()

    filled = np.where(valid, surface - mean, 0.0)
    index, weight, counts, window = _radial_bins(surface.shape)
    power = np.abs(np.fft.rfft2(filled * window)) ** 2
    sums = np.bincount(index, weights=power.ravel() * weight, minlength=N_SPECTRUM + 1)
    filled_bins = counts > 0
    mean_power = sums[:N_SPECTRUM][filled_bins] / counts[filled_bins]
    scale = mean_power.mean()
    if scale > 0:
        mean_power = mean_power / scale
    spectrum = np.log10(mean_power + 1e-4)
    centres = np.arange(N_SPECTRUM)
    out[:N_SPECTRUM] = np.interp(centres, centres[filled_bins], spectrum)

    if std > 0:
        squared = centred * centred
        skew = np.mean(squared * centred) / std**3
        kurt = np.mean(squared * squared) / std**4 - 3.0
    else:
        skew = kurt = 0.0
    gy, gx = np.gradient(filled)
    gradient = np.hypot(gy, gx)[valid].mean()
    p10, p90 = np.percentile(centred, [10, 90])
    out[N_SPECTRUM:] = [n_valid / surface.size, mean, std, skew, kurt, gradient, p10, p90]
    return out.astype(np.float32)


def features_many(signatures: list[Signature]) -> np.ndarray:
    """Feature vectors of several signatures, shape (len(signatures), FEATURE_LENGTH)."""
    out = np.empty((len(signatures), FEATURE_LENGTH), dtype=np.float32)
    for row, signature in enumerate(signatures):
        out[row] = features(signature)
    return out
