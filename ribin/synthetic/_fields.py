"""Random surface fields on regular grids: the building blocks of synthetic toolmarks."""

from __future__ import annotations

import numpy as np
from scipy import fft as sfft
from scipy import ndimage


def grid_um(shape: tuple[int, int], pixel_um: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates (x right, y down) in micrometres of a grid centred on its middle pixel.

    Returns two float32 arrays broadcastable to `shape`: `x` of shape ``(1, N)`` and `y` of
    shape ``(M, 1)``.
    """
    rows, cols = shape
    x = (np.arange(cols, dtype=np.float32) - (cols - 1) / 2) * pixel_um
    y = (np.arange(rows, dtype=np.float32) - (rows - 1) / 2) * pixel_um
    return x[None, :], y[:, None]


def standardise(field: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
    """Shift and scale `field` to zero mean and unit standard deviation (over `where`)."""
    values = field if where is None else field[where]
    std = float(values.std())
    return ((field - values.mean()) / (std if std > 0 else 1.0)).astype(np.float32)


def smooth_noise(
    rng: np.random.Generator,
    shape: tuple[int, int],
    sigma_px: float,
) -> np.ndarray:
    """White noise low-passed by a Gaussian of `sigma_px`, standardised to unit variance.

    Filtered in the Fourier domain (periodic), so large sigmas cost no more than small ones.
    """
    return oriented_noise(rng, shape, sigma_px, sigma_px, 0.0)


def oriented_noise(
    rng: np.random.Generator,
    shape: tuple[int, int],
    sigma_along_px: float,
    sigma_across_px: float,
    angle_deg: float,
) -> np.ndarray:
    """Anisotropic Gaussian-filtered noise: streaks along `angle_deg` (x towards y).

    The filter is applied in the Fourier domain (on a grid padded to a fast FFT size), so any
    orientation costs one FFT pair.
    """
    rows, cols = sfft.next_fast_len(shape[0], real=True), sfft.next_fast_len(shape[1], real=True)
    fy = sfft.fftfreq(rows).astype(np.float32)[:, None]
    fx = sfft.rfftfreq(cols).astype(np.float32)[None, :]
    a = np.deg2rad(angle_deg)
    f_along = fx * np.cos(a) + fy * np.sin(a)
    f_across = -fx * np.sin(a) + fy * np.cos(a)
    # Fourier transform of a Gaussian of std s (pixels) is exp(-2 pi^2 s^2 f^2).
    gain = np.exp(
        np.float32(-2 * np.pi**2)
        * ((sigma_along_px * f_along) ** 2 + (sigma_across_px * f_across) ** 2)
    )
    noise = rng.standard_normal((rows, cols), dtype=np.float32)
    field = sfft.irfft2(sfft.rfft2(noise, workers=-1) * gain, s=(rows, cols), workers=-1)
    return standardise(field[: shape[0], : shape[1]])


def random_profile(
    rng: np.random.Generator,
    length_um: float,
    spacing_um: float,
    *,
    step_um: float = 1.0,
    jitter: float = 0.15,
    fine_um: float = 6.0,
    fine_weight: float = 0.35,
) -> tuple[np.ndarray, np.ndarray]:
    """A 1-D machining profile: cusps every `spacing_um` with jittered pitch and depth.

    Fly-cutting and milling leave a train of scallops, one per tool pass; the pitch and the
    depth of each pass vary a little, and the tool edge adds fine striations. Returns
    ``(u, height)`` sampled every `step_um` over ``[-length_um / 2, length_um / 2]``,
    height standardised.
    """
    n_pass = int(np.ceil(length_um / spacing_um)) + 4
    pitch = spacing_um * (1 + jitter * rng.standard_normal(n_pass))
    edges = np.cumsum(np.clip(pitch, 0.3 * spacing_um, None)) - length_um / 2 - spacing_um
    depth = 1 + 0.35 * rng.standard_normal(n_pass)
    u = np.arange(-length_um / 2, length_um / 2 + step_um, step_um)
    k = np.clip(np.searchsorted(edges, u) - 1, 0, n_pass - 2)
    t = (u - edges[k]) / (edges[k + 1] - edges[k])
    scallop = depth[k] * (4 * (t - 0.5) ** 2)
    fine = ndimage.gaussian_filter1d(rng.standard_normal(u.size), fine_um / step_um)
    fine /= fine.std() + 1e-12
    height = standardise(scallop[None, :])[0] + fine_weight * fine
    return u, standardise(height[None, :])[0]


def sample_profile(u: np.ndarray, profile: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Evaluate a 1-D profile from `random_profile` at positions `u` (linear interpolation)."""
    grid, height = profile
    return np.interp(u.ravel(), grid, height).reshape(u.shape).astype(np.float32)


def pits(
    rng: np.random.Generator,
    shape: tuple[int, int],
    density: float,
    sigma_px: float,
) -> np.ndarray:
    """Sparse rounded pits (negative), as left by casting porosity or blasting grit.

    `density` is the expected number of pits per pixel; the result is >= 0 and is meant to
    be subtracted, giving the heavy tails seen in real breech-face scans. A lone pit is as deep
    as its depth, drawn from an exponential distribution of mean 1.
    """
    seeds = (rng.random(shape, dtype=np.float32) < density).astype(np.float32)
    seeds *= rng.exponential(1.0, shape).astype(np.float32)
    # Scaled so that a lone pit is as deep as its drawn (exponential) depth.
    return ndimage.gaussian_filter(seeds, sigma_px, mode="wrap") * np.float32(
        2 * np.pi * sigma_px**2
    )


def scratches(
    rng: np.random.Generator,
    shape: tuple[int, int],
    pixel_um: float,
    count: int,
    length_um: tuple[float, float],
    width_um: tuple[float, float],
) -> np.ndarray:
    """Straight random scratches (depth 1 at the centre line), summed.

    Each scratch touches only its bounding box, so the cost stays proportional to the
    scratched area.
    """
    rows, cols = shape
    out = np.zeros(shape, dtype=np.float32)
    for _ in range(count):
        length = rng.uniform(*length_um) / pixel_um
        half_width = rng.uniform(*width_um) / pixel_um / 2
        angle = rng.uniform(0, np.pi)
        cx, cy = rng.uniform(0, cols), rng.uniform(0, rows)
        dx, dy = np.cos(angle) * length / 2, np.sin(angle) * length / 2
        pad = 3 * half_width + 2
        x0, x1 = (
            int(max(0, min(cx - dx, cx + dx) - pad)),
            int(min(cols, max(cx - dx, cx + dx) + pad)),
        )
        y0, y1 = (
            int(max(0, min(cy - dy, cy + dy) - pad)),
            int(min(rows, max(cy - dy, cy + dy) + pad)),
        )
        if x1 <= x0 or y1 <= y0:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        along = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
        across = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
        taper = np.clip(1 - (2 * np.abs(along) / length) ** 4, 0, 1)
        out[y0:y1, x0:x1] += taper * np.exp(-0.5 * (across / max(half_width, 0.5)) ** 2)
    return out
