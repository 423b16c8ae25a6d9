"""Per-shot rendering: one fired casing, then one acquisition of it (3D or 2D).

A *casing* (:func:`make_casing`) is what one shot leaves: the breech-face marks transferred
partially and unevenly, the primer's own roughness, sometimes a drag mark, the play of the
primer in the chamber. An *acquisition* (:func:`render_casing`) images it: a random
rotation in [0, 360) and translation, tilt, scanner noise and dropouts for 3D, a ring-light
shading with varying exposure for 2D.

Coordinates (the manifest's convention): pixel ``(row, col)`` has ``x = col`` and
``y = row``, origin at the centre of the top-left pixel, y pointing down. The *image centre*
is ``((N - 1) / 2, (M - 1) / 2)``. A shot is the firearm's breech frame rotated
counter-clockwise *as displayed* by ``rotation_deg`` about the firing-pin axis and moved so
that the axis lands at ``image centre + translation``. In formulas, a breech-frame point
``q`` (pixels, x right, y down) lands at::

    p = centre + t + R q,   R = [[cos a, sin a], [-sin a, cos a]]

which is the rotation of :func:`cv2.getRotationMatrix2D` and
:func:`skimage.transform.rotate` with angle ``a``; undo it with angle ``-a``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage, special

from ribin.synthetic import _fields
from ribin.synthetic.firearm import (
    GAP_WIDTH_UM,
    MAX_SEAT_OFFSET_UM,
    Firearm,
    fp_depth_profile,
    fp_signed_distance,
    smooth_step,
)
from ribin.synthetic.render2d import ring_light

MODALITIES = ("3d", "2d")
#: Case head kept around the primer-cup gap in the field of view.
CASE_MARGIN_UM = 140.0
#: Largest distance of the primer centre from the image centre.
MAX_SHIFT_UM = 120.0


@dataclass
class Casing:
    """One fired casing: everything that stays the same between acquisitions of it."""

    firearm: Firearm
    shot: int
    seat_offset_um: tuple[float, float]  # primer centre in the breech frame
    primer_protrusion_um: float
    edge_width_um: float
    edge_drop_um: float
    gap_width_um: float
    gap_depth_um: float
    lip_um: float
    drag: bool
    head_profile: tuple[np.ndarray, np.ndarray] = field(repr=False)
    texture: np.ndarray = field(repr=False)  # master grid, um


def _rotation(angle_deg: float) -> tuple[float, float]:
    a = np.deg2rad(angle_deg)
    return float(np.cos(a)), float(np.sin(a))


def _pin_coords(x: np.ndarray, y: np.ndarray, angle_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates along/across an axis at `angle_deg` (counter-clockwise as displayed)."""
    c, s = _rotation(angle_deg)
    return x * c - y * s, -x * s - y * c


def make_casing(firearm: Firearm, rng: np.random.Generator, shot: int = 1) -> Casing:
    """Fire one casing in `firearm`.

    Parameters
    ----------
    firearm : Firearm
        The firearm (its breech face, firing pin, chamber play).
    rng : numpy.random.Generator
        Source of the shot's randomness.
    shot : int
        Number of the shot, recorded in the result.

    Returns
    -------
    Casing
        With ``texture``: the relief (um) of the primer surface on the firearm's master
        grid, in the breech frame: breech-face marks times a transfer gain that varies over
        the primer (some areas absent), fine detail attenuated by an amount that varies per
        shot, the primer's own roughness, the firing-pin tip's micro-texture and, on about
        a third of the shots, a drag mark.
    """
    pix = firearm.master_pixel_um
    shape = firearm.breech_face.shape
    pin = firearm.firing_pin
    x, y = _fields.grid_um(shape, pix)
    u, v = _pin_coords(x, y, pin.angle_deg)
    sd_pin = fp_signed_distance(u, v, pin)
    in_pin = smooth_step(-sd_pin, 25.0)
    contact = smooth_step(fp_signed_distance(u, v, pin, pin.aperture_margin_um), 40.0)

    seat = np.asarray(firearm.seat_offset_um) + rng.normal(0, 35, 2)
    seat *= min(1.0, 0.9 * MAX_SEAT_OFFSET_UM / max(float(np.hypot(*seat)), 1e-9))
    radius = firearm.caliber.primer_diameter_um / 2

    # Transfer gain: the primer meets the breech face harder on one side (set-back, tilt)
    # and not at all in patches; a logistic of a smooth field gives both.
    slope = rng.uniform(0.5, 1.5)
    c, s = _rotation(rng.uniform(0, 360))
    gain_field = _fields.smooth_noise(rng, shape, rng.uniform(250, 450) / pix)
    gain_field += slope * (x * c - y * s) / radius
    gain = special.expit((gain_field - rng.uniform(-1.2, 0.2)) / 0.4) * rng.uniform(0.6, 1.0)

    breech = firearm.breech_face
    coarse = ndimage.gaussian_filter(breech, 4.0 / pix)
    transferred = coarse + rng.uniform(0.5, 1.0) * (breech - coarse)
    own = rng.uniform(0.7, 1.2) * _fields.smooth_noise(rng, shape, rng.uniform(14, 24) / pix)
    fine = rng.uniform(0.06, 0.15) * _fields.smooth_noise(rng, shape, 0.6)
    face = gain * transferred + (1 - gain) * own
    texture = contact * face + (1 - contact) * 0.8 * own
    texture = in_pin * firearm.fp_texture + (1 - in_pin) * texture + fine

    drag = bool(rng.random() < 0.35)
    if drag:
        along, across = _pin_coords(x, y, firearm.drag_angle_deg + rng.normal(0, 6))
        half_width = 0.7 * min(pin.semi_axes_um)
        length = rng.uniform(150, 400)
        reach = np.clip(1 - np.maximum(sd_pin, 0) / length, 0, 1) * (along > 0)
        band = smooth_step(half_width - np.abs(across), 30.0) * reach * (sd_pin > -5)
        striae = _fields.sample_profile(across, firearm.drag_profile)
        depth = rng.uniform(0.15, 0.3) * pin.depth_um
        texture = texture + band * (-depth * reach + 1.5 * striae)

    return Casing(
        firearm=firearm,
        shot=shot,
        seat_offset_um=(float(seat[0]), float(seat[1])),
        primer_protrusion_um=float(rng.uniform(-30, 10)),
        edge_width_um=float(rng.uniform(110, 180)),
        edge_drop_um=float(rng.uniform(25, 60)),
        gap_width_um=float(rng.uniform(*GAP_WIDTH_UM)),
        gap_depth_um=float(rng.uniform(60, 140)),
        lip_um=float(rng.uniform(2, 8)),
        drag=drag,
        head_profile=_fields.random_profile(rng, 16000, rng.uniform(25, 60), fine_um=3.0),
        texture=texture.astype(np.float32),
    )


def field_of_view_um(firearm: Firearm) -> float:
    """Side of the square field of view for casings of `firearm`'s caliber (um)."""
    return firearm.caliber.primer_diameter_um + 2 * (
        GAP_WIDTH_UM[1] + CASE_MARGIN_UM + MAX_SHIFT_UM
    )


def _sample_master(
    master: np.ndarray,
    master_pixel_um: float,
    shape: tuple[int, int],
    pixel_size_um: float,
    rotation_deg: float,
    breech_px: tuple[float, float],
) -> np.ndarray:
    """Resample a breech-frame master grid into an image (anti-aliased, bilinear)."""
    k = pixel_size_um / master_pixel_um
    if k > 1:
        # The scanner integrates over its pixel; a Gaussian of ~pixel/3 mimics that.
        master = ndimage.gaussian_filter(master, 0.35 * k)
    c, s = _rotation(rotation_deg)
    mc = (master.shape[0] - 1) / 2
    ox = (shape[1] - 1) / 2 + breech_px[0]
    oy = (shape[0] - 1) / 2 + breech_px[1]
    # breech q = R^T (p - o): q_x = c dx - s dy, q_y = s dx + c dy; index order (row, col).
    matrix = k * np.array([[c, s], [-s, c]])
    offset = np.array([mc - k * (s * ox + c * oy), mc - k * (c * ox - s * oy)])
    return ndimage.affine_transform(
        master, matrix, offset, output_shape=shape, order=1, mode="nearest"
    )


def _geometry(
    casing: Casing,
    shape: tuple[int, int],
    pixel_size_um: float,
    rotation_deg: float,
    breech_px: tuple[float, float],
    primer_px: tuple[float, float],
    rng: np.random.Generator,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Form of the casing head in the image (um): primer face, gap, case head, pin."""
    pin = casing.firearm.firing_pin
    x, y = _fields.grid_um(shape, pixel_size_um)
    radius = casing.firearm.caliber.primer_diameter_um / 2
    r = np.hypot(x - primer_px[0] * pixel_size_um, y - primer_px[1] * pixel_size_um)

    # Primer face: slightly dished, its edge rolled down into the cup.
    t = np.clip((r - (radius - casing.edge_width_um)) / casing.edge_width_um, 0, 1)
    face = casing.primer_protrusion_um - 2.0 * (r / radius) ** 2
    face = face - casing.edge_drop_um * (1 - np.sqrt(1 - t * t))
    gap_floor = -casing.gap_depth_um
    head_r = radius + casing.gap_width_um
    head = _fields.sample_profile(r - head_r, casing.head_profile) * 0.5
    head += 0.3 * _fields.smooth_noise(rng, shape, 10 / pixel_size_um)
    # The primer pocket's chamfer rises from the gap to the head face.
    head -= 20.0 * np.clip(1 - (r - head_r) / 60.0, 0, 1) ** 2
    in_face = smooth_step(radius - r, 0.8 * pixel_size_um)
    in_head = smooth_step(r - head_r, 0.8 * pixel_size_um)
    form = in_face * face + in_head * head + (1 - in_face - in_head) * gap_floor

    u, v = _pin_coords(
        x - breech_px[0] * pixel_size_um,
        y - breech_px[1] * pixel_size_um,
        pin.angle_deg + rotation_deg,
    )
    sd = fp_signed_distance(u, v, pin)
    lip = casing.lip_um * np.exp(-(((sd - 50.0) / 45.0) ** 2)) * (sd > 0)
    form = form + in_face * (fp_depth_profile(u, v, pin) + lip)
    regions = {"face": in_face > 0.5, "gap": (in_face + in_head) < 0.5, "pin": sd < 0}
    return form.astype(np.float32), regions


def _pose(
    casing: Casing,
    rng: np.random.Generator,
    pixel_size_um: float,
    rotation_deg: float | None,
    shift_um: tuple[float, float] | None,
) -> tuple[float, tuple[float, float], tuple[float, float]]:
    """Rotation, breech-axis position and primer-centre position (pixels from centre)."""
    rotation = float(rng.uniform(0, 360)) if rotation_deg is None else float(rotation_deg) % 360
    if shift_um is None:
        rho = MAX_SHIFT_UM * np.sqrt(rng.random())
        phi = rng.uniform(0, 2 * np.pi)
        shift_um = (rho * np.cos(phi), rho * np.sin(phi))
    c, s = _rotation(rotation)
    ox, oy = casing.seat_offset_um
    primer = (shift_um[0] / pixel_size_um, shift_um[1] / pixel_size_um)
    seat = ((c * ox + s * oy) / pixel_size_um, (-s * ox + c * oy) / pixel_size_um)
    breech = (primer[0] - seat[0], primer[1] - seat[1])
    return rotation, breech, primer


def render_casing(
    casing: Casing,
    rng: np.random.Generator,
    modality: str = "3d",
    pixel_size_um: float = 6.25,
    *,
    rotation_deg: float | None = None,
    shift_um: tuple[float, float] | None = None,
    exposure: float | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Image one casing: a 3D topography or a 2D ring-lit micrograph.

    Parameters
    ----------
    casing : Casing
        From :func:`make_casing`.
    rng : numpy.random.Generator
        Source of the acquisition's randomness (pose, noise, dropouts, lighting).
    modality : {"3d", "2d"}
        3D: heights in **metres**, float64 ``(M, N)``, NaN where the scanner saw nothing.
        2D: grey levels in [0, 1], float64 ``(M, N)``.
    pixel_size_um : float
        Pixel size of the image (3-6 um is typical of both kinds of instrument).
    rotation_deg, shift_um : optional
        Fix the pose instead of drawing it: rotation (counter-clockwise as displayed) and
        position of the primer centre relative to the image centre (um, x right, y down).
    exposure : float, optional
        2D only: exposure factor (1 is nominal; drawn in [0.6, 1.5] when omitted).

    Returns
    -------
    image : ndarray, shape (M, N)
    truth : dict
        Ground truth in the manifest's convention (see the module docstring): pose,
        primer centre and radius, firing-pin shape and outline, image shape.
    """
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITIES}")
    firearm = casing.firearm
    pin = firearm.firing_pin
    side = round(field_of_view_um(firearm) / pixel_size_um)
    shape = (side, side)
    rotation, breech, primer = _pose(casing, rng, pixel_size_um, rotation_deg, shift_um)

    form, regions = _geometry(casing, shape, pixel_size_um, rotation, breech, primer, rng)
    texture = _sample_master(
        casing.texture, firearm.master_pixel_um, shape, pixel_size_um, rotation, breech
    )
    in_face = regions["face"] | regions["pin"]
    surface = form + np.where(in_face, texture, 0.0).astype(np.float32)

    centre = ((side - 1) / 2, (side - 1) / 2)
    a, b = pin.semi_axes_um
    truth: dict[str, Any] = {
        "modality": modality,
        "caliber": firearm.caliber.name,
        "primer": firearm.caliber.primer,
        "pixel_size_um": float(pixel_size_um),
        "image_shape": [side, side],
        "rotation_deg": round(rotation, 6),
        "translation_um": [
            round(breech[0] * pixel_size_um, 4),
            round(breech[1] * pixel_size_um, 4),
        ],
        "breech_centre_px": [round(centre[0] + breech[0], 4), round(centre[1] + breech[1], 4)],
        "primer_centre_px": [round(centre[0] + primer[0], 4), round(centre[1] + primer[1], 4)],
        "primer_radius_px": round(firearm.caliber.primer_diameter_um / 2 / pixel_size_um, 4),
        "fp_shape": pin.shape,
        "fp_centre_px": [round(centre[0] + breech[0], 4), round(centre[1] + breech[1], 4)],
        "fp_axes_px": [round(a / pixel_size_um, 4), round(b / pixel_size_um, 4)],
        "fp_angle_deg": round((pin.angle_deg + rotation) % 360, 6),
        "fp_corner_radius_px": round(pin.corner_radius_um / pixel_size_um, 4),
        "fp_depth_um": round(pin.depth_um, 3),
        "aperture_margin_px": round(pin.aperture_margin_um / pixel_size_um, 4),
        "drag_mark": casing.drag,
    }

    if modality == "2d":
        image, lighting = ring_light(surface, pixel_size_um, rng, exposure=exposure)
        truth.update(lighting)
        return image, truth

    heights = _acquire_3d(surface, regions, pixel_size_um, rng)
    return heights * 1e-6, truth


def _acquire_3d(
    surface: np.ndarray,
    regions: dict[str, np.ndarray],
    pixel_size_um: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Tilt, noise, spikes and dropouts of a confocal / focus-variation scanner (um)."""
    shape = surface.shape
    gy, gx = np.gradient(surface, pixel_size_um)
    slope_deg = np.degrees(np.arctan(np.hypot(gx, gy)))
    x, y = _fields.grid_um(shape, pixel_size_um)
    tilt = np.tan(np.deg2rad(rng.uniform(0, 0.6)))
    c, s = _rotation(rng.uniform(0, 360))
    heights = surface + tilt * (x * c - y * s) + rng.uniform(-0.5, 0.5) * 1e-6 * (x * x + y * y)
    heights = heights + rng.uniform(0.02, 0.08) * rng.standard_normal(shape)
    spikes = rng.random(shape) < rng.uniform(2e-5, 1e-4)
    heights[spikes] += rng.normal(0, 8, int(spikes.sum()))

    # The objective loses steep walls (ragged limit), specular glints on the flat primer,
    # the bottom of the deep gap, and scattered single pixels.
    limit = rng.uniform(32, 45) + 6 * _fields.smooth_noise(rng, shape, 1.5)
    lost = slope_deg > limit
    glints = _fields.smooth_noise(rng, shape, rng.uniform(1.0, 2.5)) > special.ndtri(
        1 - rng.uniform(0.0005, 0.006)
    )
    lost |= glints & regions["face"]
    lost |= regions["gap"] & (_fields.smooth_noise(rng, shape, 2.0) > -0.3)
    lost |= rng.random(shape) < rng.uniform(2e-5, 3e-4)
    heights = heights.astype(np.float64)
    heights[lost] = np.nan
    return heights


def render_shot(
    firearm: Firearm,
    rng: np.random.Generator,
    modality: str = "3d",
    pixel_size_um: float = 6.25,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Fire one casing in `firearm` and image it: :func:`make_casing` + :func:`render_casing`.

    Returns the image and its ground truth, as :func:`render_casing`.
    """
    casing = make_casing(firearm, rng)
    return render_casing(casing, rng, modality, pixel_size_um)
