"""One entry point for every casing file: X3P topographies and 2D micrographs."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ribin.errors import InputError
from ribin.io._files import check_input_file, read_head
from ribin.io.image import read_image
from ribin.io.x3p import read_x3p

__all__ = ["Casing", "read_casing"]

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")


@dataclass(frozen=True, eq=False)
class Casing:
    """A casing-head surface, ready for region detection.

    Attributes
    ----------
    surface : ndarray, shape (M, N)
        3D: heights in micrometres, float64, NaN where missing. 2D: float32 intensity in
        [0, 1].
    modality : {"3d", "2d"}
    pixel_size_um : float
        Micrometres per pixel along X (columns). For a 3D scan with a different Y spacing,
        both are in ``metadata["pixel_size_x_um"]`` and ``metadata["pixel_size_y_um"]``.
    mask : ndarray of bool, shape (M, N)
        True where a point is valid: finite and, for X3P files with ``mask.png``, inside
        the mask. Points outside the mask keep their heights in ``surface``.
    metadata : dict
        The reader's metadata plus ``format`` and ``pixel_size_source``.
    source_sha256 : str
        SHA-256 of the file.
    source : str
        Path it was read from.
    """

    surface: np.ndarray
    modality: Literal["3d", "2d"]
    pixel_size_um: float
    mask: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)
    source_sha256: str = ""
    source: str = ""


def read_casing(
    path: str | os.PathLike,
    *,
    pixel_size_um: float | None = None,
    verify_checksum: bool = True,
) -> Casing:
    """Read an X3P topography or a PNG / TIFF / JPEG micrograph of a casing head.

    The format is decided by the content (a zip archive is read as X3P, anything else as
    an image), not by the file name.

    Parameters
    ----------
    path : str or path-like
        The file.
    pixel_size_um : float, optional
        Micrometres per pixel. Required for an image whose file records no plausible
        resolution; when given it overrides the file's value (for X3P too, recorded in
        ``metadata["pixel_size_source"]``).
    verify_checksum : bool, optional
        Passed to :func:`ribin.io.read_x3p`.

    Returns
    -------
    Casing

    Raises
    ------
    InputError
        The file is unusable (see :func:`read_x3p` and :func:`read_image`), an image has
        no pixel size, or no point is valid.

    Examples
    --------
    >>> casing = read_casing("Fadul A.x3p")  # doctest: +SKIP
    >>> casing.modality, casing.pixel_size_um  # doctest: +SKIP
    ('3d', 6.25)
    """
    path = check_input_file(path)
    if read_head(path, 4) in _ZIP_MAGIC:
        return _from_x3p(path, pixel_size_um, verify_checksum)
    return _from_image(path, pixel_size_um)


def _check_pixel_size(path: str, value: float | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not (np.isfinite(number) and number > 0):
        raise InputError(path, f"pixel size must be a positive number, not {value!r}")
    return number


def _from_x3p(path: str, pixel_size_um: float | None, verify_checksum: bool) -> Casing:
    user_pixel = _check_pixel_size(path, pixel_size_um)
    scan = read_x3p(path, verify_checksum=verify_checksum)
    surface = np.asarray(scan.heights, dtype=np.float64) * 1e6
    mask = np.isfinite(surface)
    if scan.mask is not None:
        mask &= scan.mask
    if not mask.any():
        raise InputError(path, "surface has no valid point inside its mask")
    metadata = dict(scan.metadata)
    metadata["format"] = "x3p"
    metadata["pixel_size_x_um"] = scan.pixel_size_x_um
    metadata["pixel_size_y_um"] = scan.pixel_size_y_um
    if user_pixel is not None:
        metadata["pixel_size_source"] = f"user (file says {scan.pixel_size_x_um:.6g} um)"
        pixel = user_pixel
    else:
        metadata["pixel_size_source"] = "file (X3P increment)"
        pixel = scan.pixel_size_x_um
    return Casing(
        surface=surface,
        modality="3d",
        pixel_size_um=float(pixel),
        mask=mask,
        metadata=metadata,
        source_sha256=scan.source_sha256 or "",
        source=path,
    )


def _from_image(path: str, pixel_size_um: float | None) -> Casing:
    image = read_image(path, pixel_size_um=pixel_size_um)
    if image.pixel_size_um is None:
        raise InputError(
            path,
            f"no pixel size: {image.metadata.get('pixel_size_note', 'none in the file')}; "
            "pass pixel_size_um (CLI: --pixel-size)",
        )
    surface = image.pixels
    mask = np.isfinite(surface)
    if not mask.any():
        raise InputError(path, "image has no valid pixel")
    metadata = dict(image.metadata)
    metadata["bit_depth"] = image.bit_depth
    return Casing(
        surface=surface,
        modality="2d",
        pixel_size_um=float(image.pixel_size_um),
        mask=mask,
        metadata=metadata,
        source_sha256=image.source_sha256 or "",
        source=path,
    )
