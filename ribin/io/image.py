"""Read and write 2D casing micrographs (PNG, TIFF, JPEG) as grayscale in [0, 1].

Headers are read before any pixel is decoded, so an image too large for ``max_pixels`` is
refused without allocating it. TIFF goes through tifffile (16-bit colour, planar samples,
resolution tags, ImageJ units); everything else through Pillow, with OpenCV decoding the
16-bit colour PNGs that Pillow would cut to 8 bits.

Pixel size, in order of precedence:

1. ``pixel_size_um`` given by the caller;
2. the file: TIFF ``XResolution`` with ``ResolutionUnit`` inch or centimetre, or an ImageJ
   ``unit`` (um, nm, mm); PNG ``pHYs`` in pixels per metre; JPEG JFIF density in dots per
   inch or per centimetre;
3. none (``pixel_size_um`` is None and ``metadata["pixel_size_note"]`` says why).

A file value outside 0.01-50 um per pixel is ignored: it is a software default such as 72,
96 or 300 dpi (353, 265 and 85 um), not a micrograph calibration.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ribin.errors import InputError
from ribin.io._files import atomic_output, check_input_file, read_head, sha256_file
from ribin.memory import INGEST_BYTES_PER_POINT, check_memory

__all__ = ["Image2D", "read_image", "write_image"]

# ITU-R BT.601 luma, as Pillow's convert("L") and OpenCV's cvtColor use
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
MIN_PLAUSIBLE_PIXEL_UM = 0.01
MAX_PLAUSIBLE_PIXEL_UM = 50.0
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
# A real micrograph holds at least a bit per pixel after compression; far fewer bytes
# per pixel is a decompression bomb or an empty frame.
_MAX_PIXELS_PER_BYTE = 1000
_UNIT_UM = {"um": 1.0, "micron": 1.0, "microns": 1.0, "µm": 1.0, "\u03bcm": 1.0}
_UNIT_UM.update({"nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6})


@dataclass(frozen=True, eq=False)
class Image2D:
    """A grayscale micrograph.

    Attributes
    ----------
    pixels : ndarray of float32, shape (M, N)
        Intensity in [0, 1]; colour images converted with the BT.601 luma weights.
    pixel_size_um : float or None
        Micrometres per pixel, from the caller or the file; None when unknown.
    bit_depth : {8, 16}
        Bits per sample of the stored image (16 for 16-bit, 32-bit and float images).
    metadata : dict
        ``format``, ``mode`` (colour layout as stored), ``pixel_size_source``
        (``"user"``, ``"file (...)"`` or None), ``pixel_size_note``, ``pages`` and
        ``warnings``.
    source_sha256 : str or None
        SHA-256 of the file read.
    source : str or None
        Path it was read from.
    """

    pixels: np.ndarray
    pixel_size_um: float | None
    bit_depth: int
    metadata: dict[str, Any] = field(default_factory=dict)
    source_sha256: str | None = None
    source: str | None = None


# --------------------------------------------------------------------------- reading


def read_image(
    path: str | os.PathLike, *, pixel_size_um: float | None = None, max_pixels: int = 2**27
) -> Image2D:
    """Read a PNG, TIFF or JPEG micrograph as grayscale float32 in [0, 1].

    Parameters
    ----------
    path : str or path-like
        Image file; the format is found from its content, not its name.
    pixel_size_um : float, optional
        Micrometres per pixel. Overrides any value in the file (the file's value is kept
        in ``metadata["file_pixel_size_um"]``).
    max_pixels : int, optional
        Refuse images with more pixels than this, checked on the header before decoding.

    Returns
    -------
    Image2D
        ``pixels`` of shape (M, N). Only the first page of a multi-page file is read.

    Raises
    ------
    InputError
        Missing, empty, truncated or damaged file, not an image, too many pixels, zero
        size, unusable layout, or a non-positive ``pixel_size_um``.

    Examples
    --------
    >>> image = read_image("casing.png", pixel_size_um=3.2)  # doctest: +SKIP
    >>> image.pixels.dtype, image.pixel_size_um  # doctest: +SKIP
    (dtype('float32'), 3.2)
    """
    path = check_input_file(path)
    if pixel_size_um is not None and not _positive(pixel_size_um):
        raise InputError(path, f"pixel size must be a positive number, not {pixel_size_um!r}")
    source_sha256 = sha256_file(path)
    head = read_head(path, 8)
    try:
        if head[:4] in _TIFF_MAGIC:
            decoded = _read_tiff(path, max_pixels)
        else:
            decoded = _read_with_pillow(path, max_pixels)
    except InputError:
        raise
    except MemoryError:
        raise InputError(path, "not enough memory to decode the image") from None
    samples, meta, resolution = decoded

    pixels, bit_depth = _to_gray(path, samples, meta)
    if not np.isfinite(pixels).all():
        raise InputError(path, "image holds NaN or infinite values")

    file_pixel, source_note, why = _plausible(resolution)
    meta["file_pixel_size_um"] = file_pixel
    if pixel_size_um is not None:
        chosen: float | None = float(pixel_size_um)
        meta["pixel_size_source"] = "user"
        meta["pixel_size_note"] = "given by the user" + (
            f" (file says {file_pixel:.6g} um)" if file_pixel is not None else ""
        )
    elif file_pixel is not None:
        chosen = file_pixel
        meta["pixel_size_source"] = source_note
        meta["pixel_size_note"] = f"from the file ({source_note})"
    else:
        chosen = None
        meta["pixel_size_source"] = None
        meta["pixel_size_note"] = why
    if resolution is not None and resolution.get("y_um") is not None:
        y_um, x_um = resolution["y_um"], resolution["x_um"]
        if x_um and not math.isclose(x_um, y_um, rel_tol=1e-6):
            meta["pixel_size_y_um"] = y_um
            meta["warnings"].append(
                f"file gives different X and Y pixel sizes ({x_um:.6g} / {y_um:.6g} um); X used"
            )
    pixels.setflags(write=True)
    return Image2D(
        pixels=pixels,
        pixel_size_um=chosen,
        bit_depth=bit_depth,
        metadata=meta,
        source_sha256=source_sha256,
        source=path,
    )


def _positive(value: Any) -> bool:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return False
    return math.isfinite(value) and value > 0


def _check_size(path: str, width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise InputError(path, f"image has zero size ({width} x {height} pixels)")
    if width * height > max_pixels:
        raise InputError(
            path,
            f"image of {width} x {height} pixels exceeds the limit of {max_pixels} pixels "
            "(possible decompression bomb)",
        )
    pixels = width * height
    size = os.path.getsize(path)
    if pixels > (1 << 20) and pixels > _MAX_PIXELS_PER_BYTE * size:
        raise InputError(
            path,
            f"{size} bytes declare {width} x {height} pixels ({pixels / size:.0f} per byte): "
            "refused as a decompression bomb or blank image",
        )
    check_memory(path, f"an image of {width} x {height} pixels", pixels * INGEST_BYTES_PER_POINT)


def _read_with_pillow(
    path: str, max_pixels: int
) -> tuple[np.ndarray, dict[str, Any], dict[str, Any] | None]:
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # the size is checked against max_pixels below, before decoding
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                _check_size(path, image.width, image.height, max_pixels)
                pages = getattr(image, "n_frames", 1)
                meta: dict[str, Any] = {
                    "format": (image.format or "unknown").lower(),
                    "mode": image.mode,
                    "pages": pages,
                    "warnings": [],
                }
                if pages > 1:
                    meta["warnings"].append(f"file holds {pages} frames; the first is used")
                    image.seek(0)
                info = dict(image.info)
                rawmode = image.tile[0].args if image.tile else None
                if image.format == "PNG" and isinstance(rawmode, str) and rawmode.endswith(";16B"):
                    image.close()
                    samples = _decode_png16_colour(path)
                    meta["mode"] = rawmode
                else:
                    image.load()
                    samples = _pillow_samples(image)
    except InputError:
        raise
    except Image.DecompressionBombError:
        raise InputError(
            path, "image is too large to decode (possible decompression bomb)"
        ) from None
    except UnidentifiedImageError:
        raise InputError(path, "not an image RIBIN can read (PNG, TIFF or JPEG expected)") from None
    except MemoryError:
        raise
    except Exception as exc:
        # Pillow's and OpenCV's decoders raise OSError, SyntaxError, zlib.error, ...
        raise InputError(path, f"image is truncated or damaged ({_one_line(exc)})") from None
    return samples, meta, _pillow_resolution(meta["format"], info)


def _decode_png16_colour(path: str) -> np.ndarray:
    """16-bit colour PNG as RGB(A) uint16 (Pillow would reduce it to 8 bits)."""
    import cv2

    data = np.fromfile(path, dtype=np.uint8)
    decoded = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if decoded is None:
        raise OSError("PNG data cannot be decoded")
    if decoded.ndim == 3:
        decoded = decoded[..., [2, 1, 0, 3][: decoded.shape[2]]]  # BGR(A) -> RGB(A)
    return decoded


def _pillow_samples(image: Any) -> np.ndarray:
    """Pixels of a loaded Pillow image: (M, N) gray or (M, N, 3/4) colour."""
    mode = image.mode
    if mode in ("1", "L", "I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return np.array(image)
    if mode == "LA":
        return np.array(image)[..., 0]
    if mode in ("P", "PA"):
        image = image.convert("RGBA")
        return np.array(image)
    if mode not in ("RGB", "RGBA", "RGBX"):
        image = image.convert("RGB")  # CMYK, YCbCr, LAB, HSV
    return np.array(image)


def _pillow_resolution(fmt: str, info: dict[str, Any]) -> dict[str, Any] | None:
    """Pixel size in um from Pillow's header info, or None when the file gives none."""
    if fmt == "jpeg" and "jfif_density" in info:
        unit = info.get("jfif_unit", 0)
        per = {1: 25400.0, 2: 10000.0}.get(unit)
        if per is None:
            return {"x_um": None, "y_um": None, "why": "JPEG density has no physical unit"}
        dx, dy = info["jfif_density"]
        label = "JPEG density, dots per " + ("inch" if unit == 1 else "cm")
        return _resolution(per, dx, dy, label)
    if "dpi" in info:
        dx, dy = info["dpi"]
        if fmt == "png":
            # pHYs stores whole pixels per metre; undo Pillow's conversion to dpi exactly
            ppm_x, ppm_y = round(float(dx) / 0.0254), round(float(dy) / 0.0254)
            found = _resolution(1e6, ppm_x, ppm_y, "PNG pHYs, pixels per metre")
            # whole pixels per metre carry ~6 significant digits: 3 um reads 3.000003
            for key in ("x_um", "y_um"):
                if found[key] is not None:
                    found[key] = float(f"{found[key]:.6g}")
            return found
        return _resolution(25400.0, dx, dy, f"{fmt.upper()} resolution, dots per inch")
    if "aspect" in info:
        return {"x_um": None, "y_um": None, "why": "PNG pHYs has no physical unit"}
    return None


def _resolution(per: float, dx: Any, dy: Any, label: str) -> dict[str, Any]:
    """Pixel sizes for densities ``dx``, ``dy`` in pixels per (``per`` um)."""

    def size(density: Any) -> float | None:
        try:
            density = float(density)
        except (TypeError, ValueError, ZeroDivisionError):
            return None
        return per / density if math.isfinite(density) and density > 0 else None

    x_um, y_um = size(dx), size(dy)
    return {"x_um": x_um, "y_um": y_um if y_um is not None else x_um, "label": label}


def _read_tiff(
    path: str, max_pixels: int
) -> tuple[np.ndarray, dict[str, Any], dict[str, Any] | None]:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.pages:
                raise InputError(path, "TIFF file holds no image")
            page = tif.pages.first
            width, length = int(page.imagewidth), int(page.imagelength)
            _check_size(path, width, length, max_pixels)
            if page.imagedepth > 1:
                raise InputError(path, "volumetric TIFF (ImageDepth > 1) is not supported")
            pages = len(tif.pages)
            meta: dict[str, Any] = {
                "format": "tiff",
                "mode": f"{page.photometric.name} {page.samplesperpixel}x{page.dtype}",
                "pages": pages,
                "warnings": [],
            }
            if pages > 1:
                meta["warnings"].append(f"file holds {pages} pages; the first is used")
            photometric = int(page.photometric)
            if photometric not in (0, 1, 2, 3, 6):
                raise InputError(
                    path, f"TIFF colour space {page.photometric.name} is not supported"
                )
            samples = page.asarray()
            axes = page.axes
            resolution = _tiff_resolution(tif, page)
            if photometric == 3 and page.colormap is not None:
                colormap = np.asarray(page.colormap)  # (3, 2**bits) uint16
                samples = colormap[:, samples].transpose(1, 2, 0)
                axes = "YXS"
    except InputError:
        raise
    except MemoryError:
        raise
    except Exception as exc:
        # tifffile and its codecs raise many unrelated types on damaged data
        raise InputError(path, f"TIFF is truncated or damaged ({_one_line(exc)})") from None
    samples = np.asarray(samples)
    if "S" in axes and axes.index("S") != len(axes) - 1:
        samples = np.moveaxis(samples, axes.index("S"), -1)
    samples = np.squeeze(samples) if samples.ndim > 3 else samples
    if samples.ndim == 3 and samples.shape[-1] == 1:
        samples = samples[..., 0]
    if photometric == 0:  # min-is-white: invert so that bright means bright
        if np.issubdtype(samples.dtype, np.integer):
            samples = np.iinfo(samples.dtype).max - samples
        elif samples.dtype.kind == "b":
            samples = ~samples
    if samples.ndim == 3 and samples.shape[-1] == 2:
        samples = samples[..., 0]  # gray + alpha
    return samples, meta, resolution


def _tiff_resolution(tif: Any, page: Any) -> dict[str, Any] | None:
    def rational(tag_name: str) -> float | None:
        tag = page.tags.get(tag_name)
        if tag is None:
            return None
        value = tag.value
        if isinstance(value, tuple) and len(value) == 2:
            return value[0] / value[1] if value[1] else None
        try:
            return float(value)
        except (TypeError, ValueError):
            return None

    x_res, y_res = rational("XResolution"), rational("YResolution")
    if x_res is None:
        return None
    imagej = tif.imagej_metadata or {}
    unit = str(imagej.get("unit", "")).strip().lower().replace("\\u00b5", "µ")
    if unit in _UNIT_UM:
        return _resolution(_UNIT_UM[unit], x_res, y_res, f"ImageJ TIFF, pixels per {unit}")
    tag = page.tags.get("ResolutionUnit")
    unit_code = int(tag.value) if tag is not None else 2  # TIFF default: inch
    if unit_code == 2:
        return _resolution(25400.0, x_res, y_res, "TIFF resolution, pixels per inch")
    if unit_code == 3:
        return _resolution(10000.0, x_res, y_res, "TIFF resolution, pixels per cm")
    return {"x_um": None, "y_um": None, "why": "TIFF resolution has no physical unit"}


def _plausible(resolution: dict[str, Any] | None) -> tuple[float | None, str | None, str]:
    """(pixel size um or None, source label, reason when None)."""
    if resolution is None:
        return None, None, "the file records no resolution"
    x_um = resolution.get("x_um")
    if x_um is None:
        return None, None, resolution.get("why", "the file's resolution is unusable")
    if not MIN_PLAUSIBLE_PIXEL_UM <= x_um <= MAX_PLAUSIBLE_PIXEL_UM:
        dpi = 25400.0 / x_um
        return (
            None,
            None,
            f"the file's resolution ({dpi:.3g} dpi, {x_um:.4g} um per pixel) is not a "
            f"plausible micrograph pixel size ({MIN_PLAUSIBLE_PIXEL_UM:g}-"
            f"{MAX_PLAUSIBLE_PIXEL_UM:g} um); it looks like a software default",
        )
    return float(x_um), resolution["label"], ""


def _to_gray(path: str, samples: np.ndarray, meta: dict[str, Any]) -> tuple[np.ndarray, int]:
    """(M, N) float32 in [0, 1] and the stored bit depth."""
    if samples.ndim == 3 and samples.shape[-1] in (3, 4):
        samples = samples[..., :3]
        colour = True
    elif samples.ndim == 2:
        colour = False
    else:
        raise InputError(path, f"unsupported image layout {samples.shape} ({meta['mode']})")
    if samples.shape[0] == 0 or samples.shape[1] == 0:
        raise InputError(path, "image has zero size")

    dtype = samples.dtype
    if dtype.kind == "b":
        values, bit_depth = samples.astype(np.float32), 8
    elif dtype == np.uint8:
        values, bit_depth = samples.astype(np.float32) / np.float32(255), 8
    elif dtype == np.uint16:
        values, bit_depth = samples.astype(np.float32) / np.float32(65535), 16
    elif np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating):
        values = samples.astype(np.float64)
        finite = np.isfinite(values)
        if not finite.all():
            raise InputError(path, "image holds NaN or infinite values")
        low, high = float(values.min()), float(values.max())
        if np.issubdtype(dtype, np.integer) and low >= 0 and high <= 65535:
            values = values / 65535  # 32-bit container of 16-bit data (Pillow mode "I")
        elif np.issubdtype(dtype, np.floating) and low >= 0 and high <= 1:
            pass
        else:
            values = (values - low) / (high - low) if high > low else np.zeros_like(values)
            meta["warnings"].append(f"{dtype} samples rescaled from [{low:g}, {high:g}] to [0, 1]")
        values, bit_depth = values.astype(np.float32), 16
    else:
        raise InputError(path, f"unsupported sample type {dtype}")

    if colour:
        weights = np.asarray(LUMA_WEIGHTS, dtype=np.float32)
        values = values @ weights
        meta["converted_from_colour"] = True
    else:
        meta["converted_from_colour"] = False
    pixels = np.clip(values, 0.0, 1.0).astype(np.float32, copy=False)
    return np.ascontiguousarray(pixels), bit_depth


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --------------------------------------------------------------------------- writing


def write_image(
    path: str | os.PathLike, pixels: np.ndarray, pixel_size_um: float, *, bit_depth: int = 8
) -> None:
    """Write a grayscale image as PNG or TIFF with its pixel size recorded, atomically.

    Parameters
    ----------
    path : str or path-like
        Output file; ``.png`` or ``.tif`` / ``.tiff``.
    pixels : array_like, shape (M, N)
        Intensities in [0, 1] (values a rounding error outside are clipped).
    pixel_size_um : float
        Micrometres per pixel: PNG ``pHYs`` (whole pixels per metre, so the value read back
        may differ in the 7th significant digit), or TIFF ``XResolution`` /
        ``YResolution`` in pixels per centimetre.
    bit_depth : {8, 16}, optional
        Bits per pixel stored.

    Raises
    ------
    ValueError
        Unknown extension, not 2-D, empty, NaN or values outside [0, 1], bad pixel size or
        bit depth.

    Examples
    --------
    >>> write_image("casing.png", np.zeros((64, 64)), 3.2)  # doctest: +SKIP
    """
    suffix = Path(path).suffix.lower()
    if suffix not in (".png", ".tif", ".tiff"):
        raise ValueError(f"write_image writes .png, .tif or .tiff files, not {suffix or path!r}")
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, not {bit_depth!r}")
    if not _positive(pixel_size_um):
        raise ValueError(f"pixel_size_um must be a positive number, not {pixel_size_um!r}")
    values = np.asarray(pixels, dtype=np.float64)
    if values.ndim != 2 or values.size == 0:
        raise ValueError(f"pixels must be a non-empty 2-D array, not shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("pixels hold NaN or infinite values")
    if values.min() < -1e-6 or values.max() > 1 + 1e-6:
        raise ValueError(f"pixels must lie in [0, 1], not [{values.min():g}, {values.max():g}]")
    top = 255 if bit_depth == 8 else 65535
    stored = np.rint(np.clip(values, 0.0, 1.0) * top).astype(
        np.uint8 if bit_depth == 8 else np.uint16
    )
    pixel_size_um = float(pixel_size_um)

    if suffix == ".png":
        from PIL import Image

        dpi = 25400.0 / pixel_size_um
        buffer = io.BytesIO()
        Image.fromarray(stored).save(buffer, format="PNG", dpi=(dpi, dpi))
        with atomic_output(path) as handle:
            handle.write(buffer.getvalue())
    else:
        import tifffile

        per_cm = 10000.0 / pixel_size_um
        with atomic_output(path) as handle:
            tifffile.imwrite(
                handle,
                stored,
                photometric="minisblack",
                resolution=(per_cm, per_cm),
                resolutionunit="CENTIMETER",
            )
