"""Signature extraction: from one casing image to breech-face and firing-pin signatures."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
from scipy import fft as sfft
from scipy import ndimage, special, stats

from ribin.errors import InputError
from ribin.exhibit import Exhibit, Signature
from ribin.io.casing import Casing
from ribin.preprocess import (
    DETECTOR_VERSION,
    Detection,
    bandpass,
    detect_regions,
    gaussian_nan,
    level,
    resample_nan,
    robust_std,
)

__all__ = [
    "DEFAULT_ILLUMINATION_2D",
    "DEFAULT_PIXEL_SIZE_UM",
    "EXTRACTOR_VERSION",
    "ILLUMINATION_METHODS",
    "REGION_DEFAULTS",
    "extract",
    "pair_warnings",
]

EXTRACTOR_VERSION = "2"
#: Pixel size of every signature (um). Measured on the Fadul scans with ribin.compare (CMC,
#: 8 x 8 cells): 12.5 um separates known matches from non-matches as well as 6.25 um
#: (36 pairs: match CMC min 20 vs 19, non-match max 4 vs 4; all 171 pairs at 12.5 um:
#: AUC 1.0, match min 19, non-match max 6) at less than half the comparison time.
DEFAULT_PIXEL_SIZE_UM = 12.5
#: Shaping parameters per region (cut-offs in um; ISO 16610-61 Gaussian filters).
REGION_DEFAULTS: dict[str, dict[str, Any]] = {
    "breech_face": {
        "short_cutoff_um": 16.0,
        "long_cutoff_um": 250.0,
        "form_order": 2,
        "outlier_sigma": 5.0,
        "edge_trim_um": 12.5,
        "rim_margin_um": 120.0,
    },
    "firing_pin": {
        "short_cutoff_um": 16.0,
        "long_cutoff_um": 125.0,
        "form_order": 2,
        "outlier_sigma": 5.0,
        "edge_trim_um": 12.5,
        "rim_margin_um": 0.0,
    },
}
#: Breech face: below this valid fraction a warning, below the second an error.
VALID_WARN, VALID_MIN = 0.5, 0.1
#: Smallest usable breech-face area (mm^2).
MIN_AREA_MM2 = 0.5
#: 2D: grey levels at or beyond these are clipped (saturated or black) and not used.
CLIP_LOW, CLIP_HIGH = 1.0 / 255, 254.0 / 255
#: 2D: how grey levels become a signature (the lighting's share removed). Each is a
#: chain of steps: ``log`` (log grey level: the lighting's gain becomes an offset, the
#: form fit and the long cut-off remove its slow variation), ``rank`` (grey levels
#: replaced by their normal scores: any monotonic response of light, metal and camera
#: gives the same signature), ``glint`` (saturated and black pixels left out with a margin
#: of :data:`GLINT_MARGIN_UM`, where blur spreads them), ``lcn`` (local contrast
#: normalisation: the band-passed image divided by its local RMS over
#: :data:`LCN_WINDOW_UM`, so an unevenly lit side weighs as much as the bright one).
#: ``integrate`` (a shape-from-shading-like step: the band-passed image's spectrum divided
#: by the spatial frequency, floored at the long cut-off: a lit image follows the slopes,
#: which weigh short wavelengths by their frequency; this gives back the heights' balance,
#: where the marks one firearm leaves on every casing are, whatever the light's direction;
#: ``half-integrate`` goes half way, frequency to the power -1/2). ``smooth`` (breech face
#: only: the short cut-off raised to :data:`SMOOTH_CUTOFF_UM`: a ring-lit image follows the
#: slopes' magnitude, whose finest detail is each casing's own roughness and changes with
#: focus; the marks a firearm repeats survive at longer wavelengths; recorded as the
#: signature's ``short_cutoff_um``). ``whiten`` (breech face only: the short cut-off raised
#: to :data:`WHITEN_CUTOFF_UM`, then the band-passed signature's spectrum divided by its own
#: radially averaged amplitude, smoothed over :data:`WHITEN_SMOOTH_OCTAVES`: each shot's
#: defocus, and the tilt a lighting gives the spectrum (a ring or coaxial light follows the
#: slopes' magnitude, an oblique one their component along the light), drop out, and every
#: wavelength of the band weighs the same in the cells' correlation).
#: Every method ends at unit RMS.
ILLUMINATION_METHODS: dict[str, tuple[str, ...]] = {
    "log": ("log",),
    "lcn": ("log", "lcn"),
    "rank": ("rank",),
    "rank-lcn": ("rank", "lcn"),
    "glint-lcn": ("log", "glint", "lcn"),
    "glint-rank-lcn": ("rank", "glint", "lcn"),
    "integrate": ("log", "integrate"),
    "half-integrate": ("log", "half-integrate"),
    "rank-integrate": ("rank", "integrate"),
    "glint-integrate": ("log", "glint", "integrate"),
    "log-smooth": ("log", "smooth"),
    "rank-smooth": ("rank", "smooth"),
    "integrate-smooth": ("log", "integrate", "smooth"),
    "log-whiten": ("log", "whiten"),
    "rank-whiten": ("rank", "whiten"),
}
#: 2D methods whose firing pin is made with other steps than their breech face: ranked
#: grey levels lose the 2D firing pin's agreement (synthetic 2D set, 22 pins, 231 pairs:
#: AUC 0.89 ranked, 0.95 with ``log``), so ``rank-whiten`` makes its firing pin as ``log``.
FIRING_PIN_STEPS: dict[str, tuple[str, ...]] = {"rank-whiten": ("log",)}
#: The 2D method :func:`extract` uses unless told otherwise.
DEFAULT_ILLUMINATION_2D = "rank-whiten"
#: 2D: above this share of saturated (or black) pixels in the breech face, a warning.
SATURATED_WARN = 0.02
#: 2D: below this usable breech-face area (mm^2) a comparison rests on little; a warning.
#: A 9mm breech face minus the pin aperture holds about 10 mm^2; the Fadul scans 3 mm^2.
SMALL_AREA_2D_MM2 = 2.0
#: Margin left out around saturated or black 2D pixels by the ``glint`` step (um).
GLINT_MARGIN_UM = 12.5
#: Gaussian sigma of the local RMS of the ``lcn`` step (um).
LCN_WINDOW_UM = 100.0
#: Breech-face short cut-off of the ``smooth`` step (um).
SMOOTH_CUTOFF_UM = 32.0
#: Breech-face short cut-off of the ``whiten`` step (um).
WHITEN_CUTOFF_UM = 64.0
#: The breech-face short cut-off (um) a 2D step raises the band-pass's to, at least.
BF_SHORT_CUTOFF_UM = {"smooth": SMOOTH_CUTOFF_UM, "whiten": WHITEN_CUTOFF_UM}
#: Octave-scale smoothing of the radial amplitude spectrum of the ``whiten`` step.
WHITEN_SMOOTH_OCTAVES = 0.25


def extract(
    casing: Casing,
    *,
    exhibit_id: str | None = None,
    pixel_size_um: float = DEFAULT_PIXEL_SIZE_UM,
    primer_center: tuple[float, float] | None = None,
    primer_radius: float | None = None,
    fp_center: tuple[float, float] | None = None,
    fp_radius: float | None = None,
    caliber: str | None = None,
    fp_margin_um: float = 180.0,
    illumination: str | None = None,
) -> Exhibit:
    """Find the primer, firing pin and breech face of a casing and extract their signatures.

    Parameters
    ----------
    casing : Casing
        From :func:`ribin.read_casing`.
    exhibit_id : str, optional
        Default: the file name without extension.
    pixel_size_um : float
        Pixel size of the signatures (um).
    primer_center, primer_radius : optional
        Manual primer circle in **pixels of the input image**: centre ``(x, y)`` with
        ``x`` the column and ``y`` the row (origin at the centre of the top-left pixel),
        radius in pixels. Either may be given alone (the other is detected).
    fp_center, fp_radius : optional
        Manual firing-pin impression, same units: both give a round outline; one alone
        replaces that part of the detected outline.
    caliber : str, optional
        Caliber hint ("9mm", ".40 S&W", ".45 ACP", "small pistol", "large pistol").
    fp_margin_um : float
        Margin around the firing-pin impression left out of the breech face (um).
    illumination : str, optional
        2D only: how grey levels become a signature, one of :data:`ILLUMINATION_METHODS`
        (default :data:`DEFAULT_ILLUMINATION_2D`); recorded in the signature's params.
        Ignored for 3D.

    Returns
    -------
    Exhibit
        ``breech_face`` and ``firing_pin`` signatures (a missing one has its reason in
        ``missing``), quality ``warnings``, and ``detection``: centres, radii, the fitted
        firing-pin outline and the region masks (``primer_mask``, ``breech_face_mask``,
        ``firing_pin_mask``, bool arrays at input resolution).

    Raises
    ------
    InputError
        No primer found, a manual value outside the image, or too little valid breech face.

    Examples
    --------
    >>> exhibit = extract(read_casing("Fadul 1-1.x3p"))  # doctest: +SKIP
    >>> exhibit.breech_face.surface.shape, exhibit.missing  # doctest: +SKIP
    ((270, 267), {'firing_pin': 'firing-pin impression already removed from the input'})
    """
    source = casing.source or None
    if not (np.isfinite(pixel_size_um) and pixel_size_um > 0):
        raise InputError(source, f"signature pixel size must be positive, not {pixel_size_um!r}")
    surface = np.asarray(casing.surface)
    if surface.ndim != 2:
        raise InputError(source, f"surface must be 2-D, not {surface.ndim}-D")
    mask = np.asarray(casing.mask, bool) & np.isfinite(surface)
    if not mask.any():
        raise InputError(source, "no valid point in the image")
    method = DEFAULT_ILLUMINATION_2D if illumination is None else illumination
    if method not in ILLUMINATION_METHODS:
        raise InputError(
            source,
            f"unknown 2D illumination method {method!r}; use one of "
            + ", ".join(ILLUMINATION_METHODS),
        )
    # Detection sees clipped grey levels (a glint saturating the lit wall of the firing-pin
    # impression is part of its outline); the signatures leave them out.
    seen = mask.copy()
    if casing.modality == "2d":
        mask &= (surface > CLIP_LOW) & (surface < CLIP_HIGH)
    if mask.mean() < 0.01:
        raise InputError(source, f"only {100 * mask.mean():.1f} % of the image is valid")

    detection = detect_regions(
        surface,
        seen,
        casing.modality,
        casing.pixel_size_um,
        primer_center=primer_center,
        primer_radius=primer_radius,
        fp_center=fp_center,
        fp_radius=fp_radius,
        caliber=caliber,
        fp_margin_um=fp_margin_um,
        source=source,
    )
    overrides = {
        key: value
        for key, value in (
            ("primer_center_px", primer_center),
            ("primer_radius_px", primer_radius),
            ("fp_center_px", fp_center),
            ("fp_radius_px", fp_radius),
            ("caliber", caliber),
        )
        if value is not None
    }
    overrides = {
        k: (list(map(float, v)) if isinstance(v, tuple | list) else v) for k, v in overrides.items()
    }
    warnings: list[str] = list(detection.notes)
    if not detection.cropped and detection.confidence < 0.6:
        warnings.append(
            f"primer outline uncertain: {100 * detection.confidence:.0f} % of the rim agrees"
        )
    common = {
        "extractor_version": EXTRACTOR_VERSION,
        "detector_version": DETECTOR_VERSION,
        "input_pixel_size_um": round(float(casing.pixel_size_um), 6),
        "cropped_input": detection.cropped,
        "fp_margin_um": float(fp_margin_um),
        "overrides": overrides,
    }
    if casing.modality == "2d":
        common["illumination_method"] = method
    missing: dict[str, str] = {}

    # Breech face.
    bf_params = dict(REGION_DEFAULTS["breech_face"])
    bf_region = detection.breech_face_mask & mask
    rim = bf_params["rim_margin_um"] / casing.pixel_size_um
    nominal = _nominal_area(detection, "breech_face", rim)
    if detection.primer_radius is not None and not detection.cropped:
        bf_region = bf_region & _disc(surface.shape, detection, detection.primer_radius - rim)
    breech_face = _region_signature(
        "breech_face", casing, bf_region, nominal, pixel_size_um, bf_params, common, detection
    )
    area_mm2 = np.count_nonzero(np.isfinite(breech_face.surface)) * (pixel_size_um / 1e3) ** 2
    valid = breech_face.quality["valid_fraction"]
    if valid < VALID_MIN or area_mm2 < MIN_AREA_MM2:
        raise InputError(
            source,
            f"only {100 * valid:.0f} % of the breech face is valid ({area_mm2:.2f} mm^2); "
            "nothing usable to compare",
        )
    if valid < VALID_WARN:
        warnings.append(f"only {100 * valid:.0f} % of the breech face is valid")
    if casing.modality == "2d":
        warnings.extend(
            _photometric_quality(breech_face, surface, detection.breech_face_zone & seen)
        )

    # Firing pin.
    firing_pin = None
    if detection.firing_pin_mask is None:
        missing["firing_pin"] = detection.fp_missing_reason or "firing-pin impression not found"
    else:
        fp_params = dict(REGION_DEFAULTS["firing_pin"])
        firing_pin = _region_signature(
            "firing_pin",
            casing,
            detection.firing_pin_mask & mask,
            _nominal_area(detection, "firing_pin"),
            pixel_size_um,
            fp_params,
            common,
            detection,
        )
        fp_valid = firing_pin.quality["valid_fraction"]
        if fp_valid < VALID_MIN or np.count_nonzero(np.isfinite(firing_pin.surface)) < 64:
            missing["firing_pin"] = (
                f"only {100 * fp_valid:.0f} % of the firing-pin impression is valid"
            )
            firing_pin = None
        elif fp_valid < VALID_WARN:
            warnings.append(f"only {100 * fp_valid:.0f} % of the firing-pin impression is valid")
        if firing_pin is not None and detection.fp_confidence < 0.5:
            warnings.append(
                f"firing-pin outline uncertain (fit {100 * detection.fp_confidence:.0f} %)"
            )

    from ribin import __version__

    name = os.path.basename(casing.source) if casing.source else ""
    det: dict[str, Any] = detection.summary()
    det["primer_mask"] = detection.primer_mask
    det["breech_face_mask"] = detection.breech_face_mask & mask
    if detection.firing_pin_mask is not None:
        det["firing_pin_mask"] = detection.firing_pin_mask
    return Exhibit(
        exhibit_id=exhibit_id or (os.path.splitext(name)[0] if name else "exhibit"),
        breech_face=breech_face,
        firing_pin=firing_pin,
        source_sha256=casing.source_sha256,
        source_name=name,
        software_version=__version__,
        missing=missing,
        warnings=tuple(warnings),
        detection=det,
    )


def _disc(shape: tuple[int, int], detection: Detection, radius: float) -> np.ndarray:
    cx, cy = detection.primer_center
    yy, xx = np.ogrid[0 : shape[0], 0 : shape[1]]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= radius * radius


def _nominal_area(detection: Detection, kind: str, rim_px: float = 0.0) -> float:
    """Area (input pixels) the region would have with every point valid."""
    if kind == "firing_pin":
        fp = detection.firing_pin
        a, b = fp.semi_axes
        if fp.shape == "rectangular":
            rc = fp.corner_radius
            return 4 * a * b - (4 - math.pi) * rc * rc
        return math.pi * a * b
    zone = detection.breech_face_zone
    if rim_px > 0 and detection.primer_radius is not None and not detection.cropped:
        zone = zone & _disc(zone.shape, detection, detection.primer_radius - rim_px)
    return float(np.count_nonzero(zone))


def _region_signature(
    kind: str,
    casing: Casing,
    region: np.ndarray,
    nominal_area_px: float,
    pixel_size_um: float,
    params: dict[str, Any],
    common: dict[str, Any],
    detection: Detection,
) -> Signature:
    """Level, trim, band-pass and resample one region; crop to its valid bounding box."""
    in_px = float(casing.pixel_size_um)
    rows, cols = np.nonzero(region)
    if rows.size == 0:
        empty = np.full((1, 1), np.nan, np.float32)
        return Signature(
            kind,
            empty,
            pixel_size_um,
            casing.modality,
            {"valid_fraction": 0.0},
            {**common, **params, "region": kind},
        )
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    window = np.asarray(casing.surface[r0:r1, c0:c1], dtype=np.float32)
    values = np.where(region[r0:r1, c0:c1], window, np.nan).astype(np.float32)
    steps: tuple[str, ...] = ()
    if casing.modality == "2d":
        method = common["illumination_method"]
        steps = ILLUMINATION_METHODS[method]
        if kind == "firing_pin":
            steps = FIRING_PIN_STEPS.get(method, steps)
        values = _photometric(values, window, steps, in_px)
        if kind == "breech_face":
            floors = [BF_SHORT_CUTOFF_UM[step] for step in steps if step in BF_SHORT_CUTOFF_UM]
            short = max([params["short_cutoff_um"], *floors])
            params = {**params, "short_cutoff_um": short}
    values = level(values, params["form_order"]).astype(np.float32)
    sigma = robust_std(values)
    values[np.abs(values - np.nanmedian(values)) > params["outlier_sigma"] * sigma] = np.nan

    factor = pixel_size_um / in_px
    values = bandpass(values, in_px, params["short_cutoff_um"], None)
    values = resample_nan(values, factor)
    values = bandpass(values, pixel_size_um, None, params["long_cutoff_um"])

    if "integrate" in steps or "half-integrate" in steps:
        power = 1.0 if "integrate" in steps else 0.5
        values = _integrate(values, pixel_size_um, params["long_cutoff_um"], power)
    if "whiten" in steps and kind == "breech_face":
        values = _whiten(values, pixel_size_um, params["short_cutoff_um"], params["long_cutoff_um"])
    sigma = robust_std(values)
    values[np.abs(values) > params["outlier_sigma"] * sigma] = np.nan
    valid = np.isfinite(values)
    trim = round(params["edge_trim_um"] / pixel_size_um)
    if trim > 0:
        valid = ndimage.binary_erosion(valid, iterations=trim)
    # Drop islands too small to hold a correlation cell.
    labels, n = ndimage.label(valid)
    if n > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        valid = (sizes >= max(16, 0.01 * sizes.max()))[labels]
    values[~valid] = np.nan
    if "lcn" in steps and valid.any():
        values = _local_contrast(values, valid, pixel_size_um)
    if casing.modality == "2d" and valid.any():
        values /= float(np.sqrt(np.mean(values[valid] ** 2))) or 1.0
    vr, vc = np.nonzero(valid)
    if vr.size:
        values = values[vr.min() : vr.max() + 1, vc.min() : vc.max() + 1]
        offset_out = (vr.min(), vc.min())
    else:
        values = np.full((1, 1), np.nan, np.float32)
        offset_out = (0, 0)
    # Where the signature's top-left pixel sits in the input (input pixels, x, y).
    origin_x = c0 - 0.5 + (offset_out[1] + 0.5) * factor
    origin_y = r0 - 0.5 + (offset_out[0] + 0.5) * factor
    n_valid = int(np.count_nonzero(np.isfinite(values)))
    nominal_out = nominal_area_px / (factor * factor)
    quality = {
        "valid_fraction": round(min(1.0, n_valid / max(nominal_out, 1.0)), 4),
        "valid_area_mm2": round(n_valid * (pixel_size_um / 1e3) ** 2, 4),
        "detection_confidence": round(
            float(detection.confidence if kind == "breech_face" else detection.fp_confidence), 4
        ),
        "fp_found": detection.firing_pin is not None,
    }
    smooth = gaussian_nan(values, 1.0)
    noise = robust_std(values - smooth) if n_valid else float("nan")
    quality["noise_um" if casing.modality == "3d" else "noise_rms_units"] = (
        round(noise, 5) if np.isfinite(noise) else None
    )
    shaped = {
        **common,
        **params,
        "region": kind,
        "pixel_size_um": float(pixel_size_um),
        "illumination": (", ".join((*steps, "quadric", "unit rms")) if steps else None),
        "origin_input_px": [round(float(origin_x), 3), round(float(origin_y), 3)],
        "detection": detection.summary(),
    }
    return Signature(
        kind, values.astype(np.float32), float(pixel_size_um), casing.modality, quality, shaped
    )


def _photometric(
    values: np.ndarray, window: np.ndarray, steps: tuple[str, ...], in_px: float
) -> np.ndarray:
    """2D grey levels (NaN outside the region) to the quantity the signature filters."""
    if "glint" in steps:
        # Defocus spreads a glint or a shadow beyond its clipped core: leave a margin.
        clipped = np.isfinite(window) & ((window <= CLIP_LOW) | (window >= CLIP_HIGH))
        margin = round(GLINT_MARGIN_UM / in_px)
        if margin > 0 and clipped.any():
            clipped = ndimage.binary_dilation(clipped, iterations=margin)
        values = np.where(clipped, np.nan, values).astype(np.float32)
    if "rank" in steps:
        valid = np.isfinite(values)
        out = np.full(values.shape, np.nan, np.float32)
        if valid.any():
            ranks = stats.rankdata(values[valid])
            out[valid] = special.ndtri((ranks - 0.5) / ranks.size)
        return out
    return np.log(np.clip(values, CLIP_LOW, 1.0))


def _local_contrast(values: np.ndarray, valid: np.ndarray, pixel_size_um: float) -> np.ndarray:
    """Divide a band-passed 2D signature by its local RMS (NaN-aware Gaussian window)."""
    filled = np.where(valid, values, np.nan)
    power = gaussian_nan(filled * filled, LCN_WINDOW_UM / pixel_size_um)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = filled / np.sqrt(np.maximum(power, 1e-12))
    return np.where(valid, out, np.nan).astype(np.float32)


def _photometric_quality(signature: Signature, image: np.ndarray, zone: np.ndarray) -> list[str]:
    """Add the 2D breech face's clipped shares to its quality; warn where they are high."""
    grey = image[zone]
    saturated = float(np.mean(grey >= CLIP_HIGH)) if grey.size else 0.0
    dark = float(np.mean(grey <= CLIP_LOW)) if grey.size else 0.0
    signature.quality["saturated_fraction"] = round(saturated, 4)
    signature.quality["dark_fraction"] = round(dark, 4)
    warnings = []
    if saturated > SATURATED_WARN:
        warnings.append(
            f"{100 * saturated:.0f} % of the breech face is saturated (glare); those points "
            "are left out: re-image with less exposure"
        )
    if dark > SATURATED_WARN:
        warnings.append(
            f"{100 * dark:.0f} % of the breech face is black (shadow or under-exposure); "
            "those points are left out"
        )
    area = signature.quality.get("valid_area_mm2", 0.0)
    if area < SMALL_AREA_2D_MM2:
        warnings.append(
            f"only {area:.1f} mm^2 of the 2D breech face is usable: comparisons with it "
            "rest on a small area"
        )
    return warnings


def pair_warnings(a: Signature, b: Signature) -> tuple[str, ...]:
    """What an examiner should know before relying on a comparison of `a` and `b`.

    Empty for two 3D signatures. For 2D: a signature with a small usable area (below
    :data:`SMALL_AREA_2D_MM2`) or a saturated share above :data:`SATURATED_WARN`, and a 2D
    method that differs between the two (their grey levels were not turned into
    signatures the same way).

    Parameters
    ----------
    a, b : Signature
        The compared signatures.

    Returns
    -------
    tuple of str
        One line per concern, naming the side (A or B).
    """
    out = []
    for side, sig in (("A", a), ("B", b)):
        if sig.modality != "2d":
            continue
        area = sig.quality.get("valid_area_mm2")
        if area is not None and area < SMALL_AREA_2D_MM2:
            out.append(f"{side}: the 2D comparison rests on {area:.1f} mm^2 of usable surface")
        saturated = sig.quality.get("saturated_fraction")
        if saturated is not None and saturated > SATURATED_WARN:
            out.append(
                f"{side}: {100 * saturated:.0f} % of the 2D image is saturated (glare); "
                "the comparison uses the rest"
            )
    if a.modality == b.modality == "2d":
        ma, mb = a.params.get("illumination_method"), b.params.get("illumination_method")
        if ma != mb:
            out.append(f"2D methods differ (A {ma}, B {mb}): re-extract one of them")
    return tuple(out)


def _integrate(
    values: np.ndarray, pixel_size_um: float, long_um: float, power: float = 1.0
) -> np.ndarray:
    """Divide a band-passed 2D image's spectrum by its frequency (floored at 1 / `long_um`)
    to the `power` (1: integrate once; 0.5: half way).

    A lit image is close to a (non-linear) function of the surface slopes: integrating
    once in every direction at the same time restores the heights' spectral balance without
    knowing where the light was. NaN stay NaN (zero-filled while filtering).
    """
    valid = np.isfinite(values)
    if not valid.any():
        return values
    spectrum, shape, fx, fy = _padded_spectrum(values, valid, pixel_size_um)
    gain = (fx * fx + fy * fy + (1.0 / long_um) ** 2) ** (-power / 2)
    out = sfft.irfft2(spectrum * gain, shape)[: values.shape[0], : values.shape[1]]
    return np.where(valid, out, np.nan).astype(np.float32)


def _padded_spectrum(
    values: np.ndarray, valid: np.ndarray, pixel_size_um: float
) -> tuple[np.ndarray, list[int], np.ndarray, np.ndarray]:
    """The mean-removed, zero-filled image's real spectrum on a grid padded by 32 pixels,
    the grid's shape, and the frequencies of its columns and rows (cycles per um)."""
    filled = np.where(valid, values - np.mean(values[valid]), 0.0)
    shape = [sfft.next_fast_len(n + 32, real=True) for n in values.shape]
    spectrum = sfft.rfft2(filled, shape)
    fy = sfft.fftfreq(shape[0], pixel_size_um)[:, None]
    fx = sfft.rfftfreq(shape[1], pixel_size_um)[None, :]
    return spectrum, shape, fx, fy


def _whiten(
    values: np.ndarray, pixel_size_um: float, short_um: float, long_um: float
) -> np.ndarray:
    """Flatten a band-passed image's spectrum: divide it by its radially averaged amplitude
    (smoothed over log frequency), so that defocus and the lighting's spectral tilt drop out
    and every wavelength of the band weighs the same. NaN stay NaN (zero-filled)."""
    valid = np.isfinite(values)
    if not valid.any():
        return values
    spectrum, shape, fx, fy = _padded_spectrum(values, valid, pixel_size_um)
    f = np.sqrt(fx * fx + fy * fy)
    fmin = 0.25 / long_um
    logf = np.log2(np.maximum(f, fmin) / fmin)
    nbins = int(np.ceil(logf.max() / 0.125)) + 1
    idx = np.minimum((logf / 0.125).astype(int), nbins - 1)
    # Mean power per eighth of an octave, smoothed over log frequency (empty bins, below
    # the lowest frequency a small image holds, weigh nothing).
    sigma_bins = WHITEN_SMOOTH_OCTAVES / 0.125
    power = np.bincount(idx.ravel(), (np.abs(spectrum) ** 2).ravel(), nbins)
    count = np.bincount(idx.ravel(), None, nbins).astype(np.float64)
    power = ndimage.gaussian_filter1d(power, sigma_bins, mode="nearest")
    count = ndimage.gaussian_filter1d(count, sigma_bins, mode="nearest")
    radial = power / np.maximum(count, 1e-12)
    # The band's own Gaussian shape is kept: only the image's share is divided out.
    ln2 = math.log(2.0)
    band = np.exp(-ln2 * (f * short_um) ** 2) * (1 - np.exp(-ln2 * (f * long_um) ** 2))
    gain = band / np.sqrt(np.maximum(radial[idx], 1e-30))
    out = sfft.irfft2(spectrum * gain, shape)[: values.shape[0], : values.shape[1]]
    return np.where(valid, out, np.nan).astype(np.float32)
