"""Prefilter features: a short, rotation- and translation-tolerant fingerprint of a signature.

The search's first stage ranks every candidate by these vectors, so they must be cheap to
compute, small to store, identical for the same surface and, above all, put the true match
near the top of 10^4-10^5 candidates. Version 2 keeps the individual "speckle" of the marks,
not only their texture statistics (version 1 averaged the power spectrum over rings and so
could not tell apart guns of one tool batch).

Definition (version 2)
----------------------
1. The surface minus its mean is set to 0 outside the region (optionally tapered over
   :data:`TAPER_PX` pixels inside its edge; off by default), then Fourier transformed,
   zero-padded to :data:`PAD` times its size. The power spectrum does not change when the
   surface shifts, and rotates with it.
2. The power is averaged on a polar grid of :data:`N_RINGS` rings, log-spaced in spatial
   frequency over wavelengths :data:`LONG_UM` down to :data:`SHORT_UM` (in micrometres, so
   the band means the same marks at every pixel size; capped at 0.45 cycles per pixel), by
   :data:`N_ANGLES` angles over 180 degrees (the spectrum of a real surface is symmetric).
   Each spectrum sample is shared bilinearly between its four nearest grid cells.
3. Per ring: log of the power, minus its mean, divided by its standard deviation (so the
   generic 1/f fall-off and the contrast go; what is left is where in angle the power sits).
4. Per ring, the Fourier series along the angle (angular frequencies 1 .. N_ANGLES/2 - 1;
   the Nyquist term, the noisiest, is dropped), weighted by :data:`LOW_WEIGHT` below angular
   frequency :data:`LOW_CUT` and 1 above: the slow variation over angle is mostly the
   machining direction that all slides of a tool batch share; the fast variation is the
   individual speckle. Kept at a reduced weight, the slow part still anchors the rotation.
   All rings together are scaled so that a feature scores 1 against itself.

The feature vector is these coefficients, shape (N_RINGS, N_COEFFS, 2) (real,
imaginary) flattened: 16 x 31 x 2 = 992 float32 values, 3968 bytes per signature.
:func:`similarity` scores a query against many candidates by the maximum over angular shifts
of the circular cross-correlation of their polar maps (one complex multiply-sum over rings
and one inverse FFT along angle per candidate; a rotated surface shifts its map along the
angle axis). :func:`rotation_estimate` returns the shift of that maximum as an angle, modulo
180 degrees.

The constants were chosen on synthetic breech faces (``ribin.synthetic``, 3D, 12.5 um,
``ribin.extract``, several firearms per tool batch), by the rank of true matches and their
margin over the non-matches, never on real scans; ``benchmarks/bench_prefilter.py`` measures
them on a held-out synthetic set and on the Fadul scans. The log-spaced band and the
down-weighting of slow angular variation mattered most; 2x zero padding with bilinear
splatting was clearly better than no padding; a taper did not help.

Features are a cache: the store records :data:`FEATURE_VERSION` beside them and recomputes
them from the surfaces when the definition changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

import numpy as np
from scipy import fft as sfft
from scipy import ndimage, sparse

from ribin.exhibit import Signature

FEATURE_VERSION = 2
"""Bump when :func:`features` changes; stores rebuild features of older versions."""

N_RINGS = 16
"""Rings of the polar grid (log-spaced in spatial frequency)."""
N_ANGLES = 64
"""Angles of the polar grid over 180 degrees (2.8 degrees each)."""
N_COEFFS = N_ANGLES // 2 - 1
"""Angular Fourier coefficients kept per ring: 1 .. N_ANGLES / 2 - 1 (the mean is 0 and the
Nyquist term, the noisiest, is dropped)."""
FEATURE_LENGTH = N_RINGS * N_COEFFS * 2

LONG_UM = 600.0
"""Longest wavelength of the band (um)."""
SHORT_UM = 30.0
"""Shortest wavelength of the band (um); capped at 1 / :data:`MAX_CYCLES_PER_PX` pixels."""
MAX_CYCLES_PER_PX = 0.45
TAPER_PX = 0.0
"""Width of a raised-cosine taper inside the region's edge (pixels; 0: none). A 3-6 pixel
taper measured no better on synthetic breech faces and costs a distance transform."""
PAD = 2.0
"""Zero padding of the Fourier transform (times the surface size): finer spectrum sampling."""
LOW_CUT = 10
"""Angular frequencies below this (cycles per 180 degrees) are weighted by LOW_WEIGHT."""
LOW_WEIGHT = 0.3
DEFAULT_PIXEL_SIZE_UM = 12.5
"""Pixel size assumed for a bare array (that of :func:`ribin.signatures.extract`)."""

_UPSAMPLE = 2  # the correlation is evaluated every 180 / (2 * N_ANGLES) degrees
_CHUNK = 16384  # candidates per block in similarity (bounds the temporaries to ~10 MB)
_WEIGHTS = np.where(np.arange(1, N_COEFFS + 1) < LOW_CUT, LOW_WEIGHT, 1.0)


@lru_cache(maxsize=4)  # ~10 MB each at 12.5 um, ~30 MB at 6.25 um
def _polar_bins(
    shape: tuple[int, int], pixel_size_um: float, band_um: tuple[float, float] | None = None
) -> tuple[sparse.csr_matrix, np.ndarray]:
    """Bilinear splat of the rfft2 samples of `shape` onto the polar grid.

    ``band_um``: (longest, shortest) wavelength of the rings in um; None: (:data:`LONG_UM`,
    :data:`SHORT_UM`). Returns the (N_RINGS * N_ANGLES, samples) matrix that sums weighted
    power into polar cells, and the total weight of each cell (reshaped to (N_RINGS,
    N_ANGLES)).
    """
    long_um, short_um = (LONG_UM, SHORT_UM) if band_um is None else band_um
    rows, cols = shape
    fy = sfft.fftfreq(rows, d=pixel_size_um)[:, None]
    fx = sfft.rfftfreq(cols, d=pixel_size_um)[None, :]
    radius = np.hypot(fy, fx)
    angle = np.mod(np.arctan2(fy, fx), np.pi)
    f_high = min(1.0 / short_um, MAX_CYCLES_PER_PX / pixel_size_um)
    f_low = min(1.0 / long_um, 0.5 * f_high)
    # the zero frequency falls far below the first ring
    t = (np.log(np.maximum(radius, 1e-3 * f_low)) - np.log(f_low)) / np.log(f_high / f_low)
    ring = t * N_RINGS - 0.5
    slot = angle / np.pi * N_ANGLES - 0.5
    r0 = np.floor(ring)
    a0 = np.floor(slot)
    fr = ring - r0
    fa = slot - a0
    r0 = r0.astype(np.int64)
    a0 = a0.astype(np.int64)
    # The rfft holds half the plane; columns other than 0 and Nyquist stand for two samples
    # of the full one, which fall in the same polar cell (the grid spans 180 degrees).
    twice = np.full((1, fx.shape[1]), 2.0)
    twice[0, 0] = 1.0
    if cols % 2 == 0:
        twice[0, -1] = 1.0
    sample = np.arange(radius.size).reshape(radius.shape)
    cells, samples, weights = [], [], []
    for dr, wr in ((0, 1.0 - fr), (1, fr)):
        for da, wa in ((0, 1.0 - fa), (1, fa)):
            r = r0 + dr
            ok = (r >= 0) & (r < N_RINGS)
            cells.append((r * N_ANGLES + (a0 + da) % N_ANGLES)[ok])
            samples.append(sample[ok])
            weights.append((wr * wa * twice)[ok])
    matrix = sparse.csr_matrix(
        (np.concatenate(weights), (np.concatenate(cells), np.concatenate(samples))),
        shape=(N_RINGS * N_ANGLES, radius.size),
    )
    counts = np.asarray(matrix.sum(axis=1)).reshape(N_RINGS, N_ANGLES)
    return matrix, counts


def _polar_map(
    surface: np.ndarray, pixel_size_um: float, band_um: tuple[float, float] | None = None
) -> np.ndarray:
    """Per-ring standardised log power on the polar grid, shape (N_RINGS, N_ANGLES).

    ``band_um``: the rings' (longest, shortest) wavelength, um (None: the features' band;
    other bands serve ``benchmarks/bench_2d_search.py``'s variants).
    """
    out = np.zeros((N_RINGS, N_ANGLES))
    valid = np.isfinite(surface)
    if valid.sum() < 4 or min(surface.shape) < 2:
        return out
    filled = np.where(valid, surface - surface[valid].mean(), 0.0)
    if TAPER_PX > 0:
        depth = ndimage.distance_transform_edt(np.pad(valid, 1))[1:-1, 1:-1]
        filled *= 0.5 - 0.5 * np.cos(np.pi * np.minimum(depth / TAPER_PX, 1.0))
    shape = tuple(sfft.next_fast_len(int(np.ceil(PAD * n))) for n in surface.shape)
    power = np.abs(sfft.rfft2(filled, shape)) ** 2
    matrix, counts = _polar_bins(shape, float(pixel_size_um), band_um)
    sums = (matrix @ power.ravel()).reshape(N_RINGS, N_ANGLES)
    scale = sums.sum() / max(counts.sum(), 1e-300)
    if not scale > 0:
        return out
    x = np.arange(N_ANGLES)
    for r in range(N_RINGS):
        seen = counts[r] > 1e-9
        if seen.sum() < 2:
            continue  # a ring the surface cannot resolve (tiny surfaces): left at 0
        level = np.log(sums[r, seen] / counts[r, seen] + 1e-9 * scale)
        row = np.interp(x, x[seen], level, period=N_ANGLES)
        row -= row.mean()
        spread = row.std()
        if spread > 1e-9 * max(1.0, abs(level).max()):
            out[r] = row / spread
    return out


def features(signature: Signature | np.ndarray, pixel_size_um: float | None = None) -> np.ndarray:
    """Prefilter feature vector of one signature.

    Parameters
    ----------
    signature : Signature or ndarray, shape (M, N)
        The signature (or its surface); NaN marks pixels outside the region.
    pixel_size_um : float, optional
        Pixel size (um). Default: the signature's, or :data:`DEFAULT_PIXEL_SIZE_UM` for an
        array.

    Returns
    -------
    ndarray of float32, shape (FEATURE_LENGTH,)
        Finite values; all zeros for a surface with too little data (it then scores 0
        against everything).

    Examples
    --------
    >>> import numpy as np
    >>> features(np.zeros((32, 32), np.float32)).shape
    (992,)
    """
    if isinstance(signature, Signature):
        surface = signature.surface
        if pixel_size_um is None:
            pixel_size_um = signature.pixel_size_um
    else:
        surface = signature
    pixel_size_um = DEFAULT_PIXEL_SIZE_UM if pixel_size_um is None else float(pixel_size_um)
    if not (np.isfinite(pixel_size_um) and pixel_size_um > 0):
        raise ValueError(f"pixel size must be positive, not {pixel_size_um!r}")
    surface = np.asarray(surface, dtype=np.float64)
    if surface.ndim != 2:
        raise ValueError(f"surface must be 2-D, not {surface.ndim}-D")
    return _vector(_polar_map(surface, pixel_size_um))


def _vector(polar: np.ndarray, weights: np.ndarray = _WEIGHTS) -> np.ndarray:
    """A polar map (N_RINGS, N_ANGLES) as its feature vector: the weighted angular Fourier
    coefficients (step 4 of the definition), scaled to score 1 against itself."""
    coeffs = np.fft.rfft(polar, axis=1)[:, 1 : N_COEFFS + 1] * weights
    # Scaled so that the correlation of the map with itself at shift 0 (2 sum |c|^2) is 1.
    energy = 2.0 * float((np.abs(coeffs) ** 2).sum())
    out = np.zeros((N_RINGS, N_COEFFS, 2))
    if energy > 1e-20:
        coeffs = coeffs / np.sqrt(energy)
        out[..., 0] = coeffs.real
        out[..., 1] = coeffs.imag
    return out.astype(np.float32).ravel()


def features_many(signatures: list[Signature]) -> np.ndarray:
    """Feature vectors of several signatures, shape (len(signatures), FEATURE_LENGTH)."""
    out = np.empty((len(signatures), FEATURE_LENGTH), dtype=np.float32)
    for row, signature in enumerate(signatures):
        out[row] = features(signature)
    return out


def _correlation_blocks(query: np.ndarray, candidates: np.ndarray) -> Iterator[np.ndarray]:
    """Circular cross-correlation over angle, (block, N_ANGLES * _UPSAMPLE) float32 each."""
    # (real, imaginary) float32 pairs are complex64 in memory: view, do not copy
    q = np.ascontiguousarray(query, dtype=np.float32).view(np.complex64)
    q = np.conj(q.reshape(N_RINGS, N_COEFFS))
    c = np.ascontiguousarray(candidates, dtype=np.float32).view(np.complex64)
    c = c.reshape(-1, N_RINGS, N_COEFFS)
    size = N_ANGLES * _UPSAMPLE
    spectrum = np.zeros((min(c.shape[0], _CHUNK), N_COEFFS + 1), dtype=np.complex64)
    for start in range(0, c.shape[0], _CHUNK):
        block = c[start : start + _CHUNK]
        # sum over rings of conj(q) * c; einsum's loops make each row's sum independent
        # of the other rows (unlike a BLAS product), so scores do not depend on the batch
        part = spectrum[: block.shape[0]]
        part[:, 1:] = np.einsum("nrk,rk->nk", block, q)
        yield sfft.irfft(part, n=size, axis=1) * size


def _checked(query: np.ndarray, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    query = np.asarray(query)
    candidates = np.asarray(candidates)
    if candidates.ndim == 1:
        candidates = candidates[None, :]
    if query.shape != (FEATURE_LENGTH,) or candidates.shape[1:] != (FEATURE_LENGTH,):
        raise ValueError(
            f"features must have length {FEATURE_LENGTH}, not {query.shape} and {candidates.shape}"
        )
    return query, candidates


def similarity(query: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Prefilter score of one query feature vector (L,) against candidate vectors (n, L).

    The maximum over rotations (steps of 180 / 128 degrees) of the correlation of the two
    polar spectrum maps: 1 for identical features, 0 against an all-zero feature; on
    synthetic breech faces about 0.15 (99th percentile 0.4) for different firearms and 0.5
    for two shots of one (it is a maximum over 128 shifts, so never much below 0). Computed in
    float32 (complex64), in blocks of 16384 candidates: about 3 ms per 1000 candidates.

    Returns
    -------
    ndarray of float64, shape (n,)
        Higher = more alike; deterministic (a candidate's score does not depend on the
        others).
    """
    query, candidates = _checked(query, candidates)
    if candidates.shape[0] == 0:
        return np.zeros(0)
    blocks = _correlation_blocks(query, candidates)
    return np.concatenate([block.max(axis=1) for block in blocks]).astype(np.float64)


def rotation_estimate(query: np.ndarray, candidate: np.ndarray) -> float:
    """Coarse rotation of `candidate`'s surface relative to `query`'s, degrees in [0, 180).

    Counter-clockwise as displayed (rows down), modulo 180 degrees (the power spectrum
    cannot tell a half turn), from the best angular shift of :func:`similarity`, refined
    by a parabola through the peak; good to a few degrees when the two match.
    """
    query, candidate = _checked(query, candidate)
    corr = next(_correlation_blocks(query, candidate[:1]))[0].astype(np.float64)
    size = corr.size
    best = int(np.argmax(corr))
    left, mid, right = corr[best - 1], corr[best], corr[(best + 1) % size]
    bend = left - 2.0 * mid + right
    offset = 0.5 * (left - right) / bend if bend < 0 else 0.0
    return float((-(best + offset) * 180.0 / size) % 180.0)
