"""2D micrographs of any height map under a chosen lighting: ring, oblique or coaxial.

:func:`render_micrograph` turns a measured (or synthetic) topography into the grey-level
image a camera would record, so that real 3D scans (the Fadul breech faces) can serve as a
2D validation set with lighting varied between shots. Every model treats the primer metal
as a rough mirror (a glossy lobe of angular width ``gloss`` about the local normal) plus a
weak diffuse term, and differs in where the light comes from:

``ring``
    A ring of light at elevation ``e`` around the camera (the shading of
    :mod:`ribin.synthetic.render2d`, with one side of the ring brighter than the other):
    flat metal dark grey, the flanks of the marks light, whatever their direction.
``oblique``
    One small light at azimuth ``a`` and elevation ``e``: the marks are lit on the flanks
    that face the light (half-way between light and camera) and dark on the others, so the
    image is a directional derivative of the surface and changes with ``a``.
``coaxial``
    Light along the optical axis (through a beam splitter): flat metal is bright and every
    slope darkens the image (bright-field), glints saturate widely.

Between shots every model varies the light's direction and elevation, the gloss, the
exposure, focus (a Gaussian defocus blur of the optical image), sensor noise (read noise
and shot noise), albedo variation, vignetting and a small tilt of the casing. Not modelled:
cast shadows (marks are shallow; walls deeper than the light's elevation allows are rare on
a breech face), inter-reflections, colour, lens distortion, JPEG compression.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from ribin.synthetic import _fields
from ribin.synthetic.render2d import GLOSS_DEG, ring_radiance

#: The lighting models :func:`render_micrograph` knows.
LIGHTING_MODELS = ("ring", "oblique", "coaxial")
#: The lighting parameters of a shot, each drawn at random unless given.
LIGHTING_PARAMETERS = (
    "elevation_deg",
    "azimuth_deg",
    "gloss_deg",
    "exposure",
    "defocus_um",
    "read_noise",
    "tilt_deg",
    "tilt_azimuth_deg",
    "uneven",
)
#: Per model, the range each random lighting parameter is drawn from between shots.
#: ``azimuth_deg`` of the oblique light is relative to a protocol direction (labs place
#: the casing in a set orientation under a fixed light); ``uneven`` is the ring's
#: brighter-side excess.
SHOT_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "ring": {"elevation_deg": (20.0, 35.0), "azimuth_deg": (0.0, 360.0)},
    "oblique": {"elevation_deg": (20.0, 40.0), "azimuth_deg": (-30.0, 30.0)},
    "coaxial": {"elevation_deg": (90.0, 90.0), "azimuth_deg": (0.0, 360.0)},
}
#: Ranges shared by every model: exposure factor, defocus blur (Gaussian sigma, um),
#: read noise (fraction of full scale), casing tilt (degrees).
EXPOSURE = (0.5, 2.5)
DEFOCUS_UM = (0.0, 10.0)
READ_NOISE = (0.002, 0.01)
TILT_DEG = (0.0, 1.0)
#: Median grey level of the breech face at nominal exposure (before the camera gamma).
_MEDIAN_SIGNAL = {"ring": 0.17, "oblique": 0.12, "coaxial": 0.35}


def render_micrograph(
    heights_um: np.ndarray,
    pixel_size_um: float,
    model: str,
    rng: np.random.Generator,
    **lighting: float,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Render a height map as a 2D micrograph under one lighting model.

    Parameters
    ----------
    heights_um : ndarray, shape (M, N)
        Surface heights in micrometres; NaN where unmeasured (filled smoothly for the
        shading; the caller keeps its own mask).
    pixel_size_um : float
        Pixel size in micrometres (the image has the height map's grid).
    model : {"ring", "oblique", "coaxial"}
    rng : numpy.random.Generator
        Source of every random choice (lighting, albedo, noise): one seed, one image.
    **lighting : float
        Fixes any of ``elevation_deg``, ``azimuth_deg``, ``gloss_deg``, ``exposure``,
        ``defocus_um``, ``read_noise``, ``tilt_deg``, ``tilt_azimuth_deg``, ``uneven``;
        the others are drawn (:data:`SHOT_RANGES` and the module ranges).

    Returns
    -------
    image : ndarray of float32, shape (M, N), in [0, 1]
        Grey levels after a 2.2 camera gamma; saturated glints are 1.
    lighting : dict
        Every parameter used, with ``model``.

    Raises
    ------
    ValueError
        Unknown model or parameter, or a height map with no finite value.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> image, used = render_micrograph(heights, 6.25, "oblique", rng)  # doctest: +SKIP
    """
    if model not in LIGHTING_MODELS:
        raise ValueError(f"lighting model must be one of {LIGHTING_MODELS}, not {model!r}")
    unknown = sorted(set(lighting) - set(LIGHTING_PARAMETERS))
    if unknown:
        raise ValueError(f"unknown lighting parameters {unknown}")
    heights = np.asarray(heights_um, dtype=np.float64)
    valid = np.isfinite(heights)
    if not valid.any():
        raise ValueError("the height map has no finite value")

    def draw(name: str, low_high: tuple[float, float]) -> float:
        value = lighting.get(name)
        return float(rng.uniform(*low_high)) if value is None else float(value)

    ranges = SHOT_RANGES[model]
    used: dict[str, Any] = {"model": model}
    used["elevation_deg"] = draw("elevation_deg", ranges["elevation_deg"])
    used["azimuth_deg"] = draw("azimuth_deg", ranges["azimuth_deg"])
    used["gloss_deg"] = draw("gloss_deg", GLOSS_DEG)
    used["exposure"] = draw("exposure", EXPOSURE)
    used["defocus_um"] = draw("defocus_um", DEFOCUS_UM)
    used["read_noise"] = draw("read_noise", READ_NOISE)
    used["tilt_deg"] = draw("tilt_deg", TILT_DEG)
    used["tilt_azimuth_deg"] = draw("tilt_azimuth_deg", (0.0, 360.0))
    used["uneven"] = draw("uneven", (0.05, 0.15))

    filled = _fill(heights, valid, pixel_size_um)
    x, y = _fields.grid_um(heights.shape, pixel_size_um)
    t = np.tan(np.deg2rad(used["tilt_deg"]))
    ta = np.deg2rad(used["tilt_azimuth_deg"])
    filled = filled + t * (np.cos(ta) * x + np.sin(ta) * y)

    if model == "ring":
        radiance = ring_radiance(
            filled,
            pixel_size_um,
            used["elevation_deg"],
            used["gloss_deg"],
            used["azimuth_deg"],
            used["uneven"],
        )
    else:
        radiance = _point_radiance(
            filled, pixel_size_um, used["elevation_deg"], used["azimuth_deg"], used["gloss_deg"]
        )
    depth = ndimage.gaussian_filter(filled, 120 / pixel_size_um) - filled
    occlusion = np.exp(-np.maximum(depth, 0) / 80.0)
    albedo = 1 + 0.08 * _fields.smooth_noise(rng, heights.shape, 40 / pixel_size_um)
    side = heights.shape[0] * pixel_size_um / 2
    vignette = 1 - 0.25 * ((x * x + y * y) / (2 * side * side))
    radiance = radiance * occlusion * albedo * vignette
    if used["defocus_um"] > 0:
        radiance = ndimage.gaussian_filter(radiance, used["defocus_um"] / pixel_size_um)
    # Exposure: the breech face's median at the model's nominal grey, times the factor.
    scale = _MEDIAN_SIGNAL[model] / max(float(np.median(radiance[valid])), 1e-12)
    signal = np.clip(used["exposure"] * scale * radiance, 0, None)
    noise = np.sqrt(0.0004 * signal + used["read_noise"] ** 2)
    noisy = signal + noise * rng.standard_normal(signal.shape)
    image = np.clip(noisy, 0, 1) ** (1 / 2.2)
    return image.astype(np.float32), {k: _round(v) for k, v in used.items()}


def _round(value: Any) -> Any:
    return round(value, 6) if isinstance(value, float) else value


def _fill(heights: np.ndarray, valid: np.ndarray, pixel_size_um: float) -> np.ndarray:
    """Heights with NaN replaced by a smooth continuation of the surface (for gradients)."""
    if valid.all():
        return heights.copy()
    filled = np.where(valid, heights, 0.0)
    out = heights.copy()
    for sigma_um in (25.0, 100.0, 400.0):
        num = ndimage.gaussian_filter(filled, sigma_um / pixel_size_um)
        den = ndimage.gaussian_filter(valid.astype(np.float64), sigma_um / pixel_size_um)
        take = ~np.isfinite(out) & (den > 1e-3)
        out[take] = num[take] / den[take]
    out[~np.isfinite(out)] = float(np.median(heights[valid]))
    return out


def _point_radiance(
    heights: np.ndarray,
    pixel_size_um: float,
    elevation_deg: float,
    azimuth_deg: float,
    gloss_deg: float,
) -> np.ndarray:
    """Diffuse plus glossy radiance towards a camera looking down, one distant light.

    Azimuth counter-clockwise as displayed from +x (image y points down); elevation above
    the casing plane (90: along the optical axis).
    """
    gy, gx = np.gradient(heights, pixel_size_um)
    norm = np.sqrt(1 + gx * gx + gy * gy)
    e, a = np.deg2rad(elevation_deg), np.deg2rad(azimuth_deg)
    light = np.array([np.cos(e) * np.cos(a), -np.cos(e) * np.sin(a), np.sin(e)])
    half = light + np.array([0.0, 0.0, 1.0])
    half /= np.linalg.norm(half)
    # Unit normal (-gx, -gy, 1) / norm.
    n_dot_l = (-gx * light[0] - gy * light[1] + light[2]) / norm
    n_dot_h = np.clip((-gx * half[0] - gy * half[1] + half[2]) / norm, -1.0, 1.0)
    angle = np.degrees(np.arccos(n_dot_h))
    glossy = np.exp(-0.5 * (angle / gloss_deg) ** 2)
    # Relative to the glossy return of flat metal's own lobe peak; metal scatters little
    # diffuse light.
    return 0.1 * np.maximum(n_dot_l, 0.0) + 0.5 * glossy
