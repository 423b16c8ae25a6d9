"""Ring-light shading: a 2D micrograph of a casing head from its heights.

A ring light at elevation ``e`` lights a flat surface evenly; a facet tilted by
``(90 - e) / 2`` reflects it straight into the camera, so the walls of the firing-pin
impression and the primer-cup gap shine as bright rings and the breech-face marks appear
through the slopes of their flanks. The model: a diffuse term (the ring averaged over
azimuth, with a slightly uneven ring that lights one side more), a glossy lobe around the
specular slope, ambient occlusion in deep places, vignetting, exposure, sensor noise and a
camera gamma, clipped to [0, 1] (bright glints saturate, as they do).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from ribin.synthetic import _fields


def ring_light(
    heights_um: np.ndarray,
    pixel_size_um: float,
    rng: np.random.Generator,
    *,
    exposure: float | None = None,
    elevation_deg: float | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Shade a height map as a ring-lit grey-level image.

    Parameters
    ----------
    heights_um : ndarray, shape (M, N)
        Surface heights in micrometres, no NaN.
    pixel_size_um : float
        Pixel size in micrometres.
    rng : numpy.random.Generator
        Source of the lighting and sensor randomness.
    exposure : float, optional
        Exposure factor, 1 nominal (drawn in [0.6, 1.5] when omitted).
    elevation_deg : float, optional
        Elevation of the ring above the casing plane (drawn in [25, 55] when omitted).

    Returns
    -------
    image : ndarray, shape (M, N), float64 in [0, 1]
    lighting : dict
        ``exposure``, ``elevation_deg``, ``gloss_deg``, ``uneven_azimuth_deg``.
    """
    exposure = float(rng.uniform(0.6, 1.5)) if exposure is None else float(exposure)
    elevation = float(rng.uniform(25, 55)) if elevation_deg is None else float(elevation_deg)
    gloss = float(rng.uniform(6, 11))
    azimuth = float(rng.uniform(0, 360))
    uneven = float(rng.uniform(0.2, 0.45))

    gy, gx = np.gradient(heights_um, pixel_size_um)
    norm = np.sqrt(1 + gx * gx + gy * gy)
    e = np.deg2rad(elevation)
    a = np.deg2rad(azimuth)
    # n . l averaged over the ring, plus the first-order term of an uneven ring.
    diffuse = (np.sin(e) - uneven * np.cos(e) * (gx * np.cos(a) - gy * np.sin(a))) / norm
    slope = np.degrees(np.arctan(np.hypot(gx, gy)))
    glossy = np.exp(-0.5 * ((slope - (90 - elevation) / 2) / gloss) ** 2)
    # Flat metal also returns some light near the mirror direction of the ring's inner edge.
    sheen = np.exp(-0.5 * (slope / (1.5 * gloss)) ** 2)

    depth = ndimage.gaussian_filter(heights_um, 120 / pixel_size_um) - heights_um
    occlusion = np.exp(-np.maximum(depth, 0) / 80.0)
    albedo = 1 + 0.08 * _fields.smooth_noise(rng, heights_um.shape, 40 / pixel_size_um)
    x, y = _fields.grid_um(heights_um.shape, pixel_size_um)
    half = heights_um.shape[0] * pixel_size_um / 2
    vignette = 1 - 0.25 * ((x * x + y * y) / (2 * half * half))

    radiance = (0.55 * diffuse + 0.9 * glossy + 0.25 * sheen) * occlusion * albedo * vignette
    signal = np.clip(0.55 * exposure * radiance, 0, None)
    noisy = signal + np.sqrt(0.0004 * signal + 1e-5) * rng.standard_normal(signal.shape)
    image = np.clip(noisy, 0, 1) ** (1 / 2.2)
    lighting = {
        "exposure": round(exposure, 6),
        "elevation_deg": round(elevation, 6),
        "gloss_deg": round(gloss, 6),
        "uneven_azimuth_deg": round(azimuth, 6),
    }
    return image.astype(np.float64), lighting
