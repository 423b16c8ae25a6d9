"""Ring-light shading: a 2D micrograph of a casing head from its heights.

A ring light at elevation ``e`` around a camera looking straight down lights the casing
from every azimuth at once. Primer metal is a rough mirror: its micro-facets scatter about
the local surface normal in a lobe of angular width ``gloss``. A facet returns ring light
into the camera where it bisects the ring and the camera, tilted ``(90 - e) / 2`` from
vertical, so the gloss term of a surface tilted by ``s`` is the lobe averaged around the
ring; in the small-angle approximation::

    glossy(s) = exp(-(h - s)^2 / (2 g^2)) * i0e(h s / g^2),   h = (90 - e) / 2

(``g`` the gloss width). It is smallest on flat metal and grows with the slope up to
``h``, so the walls of the firing-pin impression and the primer-cup gap shine as bright
rings and the breech-face marks show through the slopes of their flanks, whatever their
direction. The ring is low (20-35 degrees, as used to bring out toolmarks) and the lobe
narrow enough (``g`` 8-12 degrees, below ``h / sqrt(2)``) that flank slopes always
brighten: flat metal is dark grey, the marks light. Added to it: a weak diffuse term
(metal), a ring that is uneven around its circumference (one side 10-35 % brighter than
the other, for both terms), ambient occlusion in deep places, albedo variation,
vignetting, exposure, sensor noise and a camera gamma, clipped to [0, 1] (bright glints
saturate, as they do).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage, special

from ribin.synthetic import _fields

#: Range of the ring's elevation above the casing plane (degrees).
ELEVATION_DEG = (20.0, 35.0)
#: Range of the angular width of the metal's glossy lobe (degrees).
GLOSS_DEG = (8.0, 12.0)


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
        Elevation of the ring above the casing plane (drawn in :data:`ELEVATION_DEG` when
        omitted).

    Returns
    -------
    image : ndarray, shape (M, N), float64 in [0, 1]
    lighting : dict
        ``exposure``, ``elevation_deg``, ``gloss_deg``, ``uneven_azimuth_deg``.
    """
    exposure = float(rng.uniform(0.6, 1.5)) if exposure is None else float(exposure)
    elevation = float(rng.uniform(*ELEVATION_DEG)) if elevation_deg is None else elevation_deg
    elevation = float(elevation)
    gloss = float(rng.uniform(*GLOSS_DEG))
    azimuth = float(rng.uniform(0, 360))
    uneven = float(rng.uniform(0.05, 0.15))

    shading = ring_radiance(heights_um, pixel_size_um, elevation, gloss, azimuth, uneven)

    depth = ndimage.gaussian_filter(heights_um, 120 / pixel_size_um) - heights_um
    occlusion = np.exp(-np.maximum(depth, 0) / 80.0)
    albedo = 1 + 0.08 * _fields.smooth_noise(rng, heights_um.shape, 40 / pixel_size_um)
    x, y = _fields.grid_um(heights_um.shape, pixel_size_um)
    side = heights_um.shape[0] * pixel_size_um / 2
    vignette = 1 - 0.25 * ((x * x + y * y) / (2 * side * side))

    radiance = shading * occlusion * albedo * vignette
    # Nominal exposure is set for the breech face: flat metal mid-grey (about 0.45 after
    # the gamma), the strongest glints of its marks saturate.
    signal = np.clip(0.35 * exposure * radiance, 0, None)
    noisy = signal + np.sqrt(0.0004 * signal + 1e-5) * rng.standard_normal(signal.shape)
    image = np.clip(noisy, 0, 1) ** (1 / 2.2)
    lighting = {
        "exposure": round(exposure, 6),
        "elevation_deg": round(elevation, 6),
        "gloss_deg": round(gloss, 6),
        "uneven_azimuth_deg": round(azimuth, 6),
    }
    return image.astype(np.float64), lighting


def ring_radiance(
    heights_um: np.ndarray,
    pixel_size_um: float,
    elevation_deg: float,
    gloss_deg: float,
    azimuth_deg: float,
    uneven: float,
) -> np.ndarray:
    """Diffuse plus glossy radiance of a ring light towards the camera (module docstring).

    Parameters
    ----------
    heights_um : ndarray, shape (M, N)
        Heights in micrometres, no NaN.
    pixel_size_um : float
    elevation_deg, gloss_deg : float
        Ring elevation and glossy lobe width.
    azimuth_deg, uneven : float
        Direction of the ring's brighter side and its relative excess.

    Returns
    -------
    ndarray of float64, shape (M, N): relative radiance (flat metal's gloss term is 1).
    """
    elevation, gloss, azimuth = elevation_deg, gloss_deg, azimuth_deg
    gy, gx = np.gradient(heights_um, pixel_size_um)
    grad = np.hypot(gx, gy)
    norm = np.sqrt(1 + grad * grad)
    e = np.deg2rad(elevation)
    a = np.deg2rad(azimuth)
    # Cosine between the slope's downhill direction and the ring's bright side.
    with np.errstate(invalid="ignore", divide="ignore"):
        towards = np.where(grad > 0, -(gx * np.cos(a) - gy * np.sin(a)) / grad, 0.0)
    # n . l averaged over the ring, plus the first-order term of the uneven ring.
    diffuse = (np.sin(e) + uneven * np.cos(e) * grad * towards) / norm
    # The glossy lobe averaged over the ring: the ring's mean and its first harmonic.
    slope = np.degrees(np.arctan(grad))
    half = (90 - elevation) / 2
    k = half * slope / (gloss * gloss)
    lobe = np.exp(-0.5 * ((half - slope) / gloss) ** 2)
    glossy = lobe * (special.i0e(k) + uneven * towards * special.i1e(k))
    # Relative to flat metal (whose gloss the exposure sets); metal scatters little
    # diffuse light.
    glossy /= np.exp(-0.5 * (half / gloss) ** 2)
    return 0.1 * diffuse + 0.5 * glossy
