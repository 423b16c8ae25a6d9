"""Ground truth of a rendered casing: region masks and the map back to the breech frame."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import ndimage

from ribin.synthetic.firearm import FiringPin, fp_signed_distance

REGIONS = ("primer", "firing_pin", "breech_face")


def _pin_px(entry: Mapping[str, Any]) -> FiringPin:
    a, b = entry["fp_axes_px"]
    return FiringPin(
        shape=entry["fp_shape"],
        semi_axes_um=(float(a), float(b)),
        angle_deg=float(entry["fp_angle_deg"]),
        corner_radius_um=float(entry["fp_corner_radius_px"]),
        depth_um=float(entry["fp_depth_um"]),
        aperture_margin_um=float(entry["aperture_margin_px"]),
    )


def truth_masks(entry: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Boolean masks of the true regions of one rendered casing, at its own resolution.

    Parameters
    ----------
    entry : mapping
        A manifest row (or the truth dict of :func:`ribin.synthetic.render_casing`).

    Returns
    -------
    dict of str to ndarray
        ``"primer"``: the primer face (inside the primer-cup gap); ``"firing_pin"``: the
        firing-pin impression; ``"breech_face"``: the primer face minus the firing-pin
        aperture, i.e. where breech-face marks can be. Each bool, shape ``image_shape``.
    """
    rows, cols = (int(n) for n in entry["image_shape"])
    x = np.arange(cols, dtype=np.float64)[None, :]
    y = np.arange(rows, dtype=np.float64)[:, None]
    px, py = entry["primer_centre_px"]
    primer = np.hypot(x - px, y - py) <= float(entry["primer_radius_px"])
    pin = _pin_px(entry)
    fx, fy = entry["fp_centre_px"]
    a = np.deg2rad(pin.angle_deg)
    dx, dy = x - fx, y - fy
    u = dx * np.cos(a) - dy * np.sin(a)
    v = -dx * np.sin(a) - dy * np.cos(a)
    firing_pin = fp_signed_distance(u, v, pin) < 0
    aperture = fp_signed_distance(u, v, pin, pin.aperture_margin_um) < 0
    return {
        "primer": primer,
        "firing_pin": firing_pin & primer,
        "breech_face": primer & ~aperture,
    }


def to_breech_frame(
    image: np.ndarray,
    entry: Mapping[str, Any],
    shape: tuple[int, int] | None = None,
    order: int = 1,
) -> np.ndarray:
    """Undo a casing's pose: resample `image` into the firearm's breech frame.

    The result has the firing-pin axis at its centre pixel and the firearm's reference
    orientation, so two shots of one firearm line up pixel for pixel.

    Parameters
    ----------
    image : ndarray, shape (M, N)
        A rendered casing (NaN allowed: pixels that touch a NaN come out NaN).
    entry : mapping
        Its manifest row or truth dict.
    shape : tuple of int, optional
        Output shape (default: the input's).
    order : int
        Spline order of the interpolation.
    """
    shape = image.shape if shape is None else shape
    a = np.deg2rad(float(entry["rotation_deg"]))
    c, s = np.cos(a), np.sin(a)
    bx, by = entry["breech_centre_px"]
    oy, ox = (shape[0] - 1) / 2, (shape[1] - 1) / 2
    # image p = b + R q with R = [[c, s], [-s, c]] in (x, y); index order is (row, col).
    matrix = np.array([[c, -s], [s, c]])
    offset = np.array([by - (c * oy - s * ox), bx - (s * oy + c * ox)])
    valid = np.isfinite(image)
    filled = np.where(valid, image, 0.0)
    out = ndimage.affine_transform(
        filled, matrix, offset, output_shape=shape, order=order, cval=np.nan
    )
    hit = ndimage.affine_transform(
        valid.astype(np.float64), matrix, offset, output_shape=shape, order=1, cval=0.0
    )
    out[hit < 0.999] = np.nan
    return out
