"""Comparison and search reports: one self-contained HTML file an examiner can read.

A report holds everything in one file (figures embedded as ``data:`` URIs, no script, no
network): the exhibits' metadata and provenance, and for each region the two signatures
side by side, the second registered onto the first, the congruent cells drawn on both,
and the score, CMC count and log10 likelihood ratio against the calibration behind it.

Figures are drawn with matplotlib's Agg canvas on :class:`matplotlib.figure.Figure`
objects (no pyplot, no global state) with perceptually uniform colour maps, and stay
readable in grayscale: cells are told apart by outline style and numbers, not by colour.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib import patheffects
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import imsave
from matplotlib.patches import Polygon, Rectangle
from matplotlib.ticker import MaxNLocator
from PIL import Image, PngImagePlugin
from scipy import ndimage

from ribin import __version__
from ribin.calibration import Calibration, model_key
from ribin.compare import DEFAULT_PARAMS, CMCParams, Comparison
from ribin.compare import compare as compare_signatures
from ribin.errors import InputError
from ribin.exhibit import REGIONS, Exhibit, Signature
from ribin.signatures import pair_warnings

if TYPE_CHECKING:
    from ribin.search import Candidate, SearchResult
    from ribin.store import SignatureStore

HEIGHT_CMAP = "cividis"
REGION_NAMES = {"breech_face": "Breech face", "firing_pin": "Firing pin"}
DPI = 80
"""Resolution of embedded figures: enough for screen and print, small files."""

# Outline styles of cells: congruent cells solid, thick, coloured and numbered in a box;
# the others thin and dashed; a halo keeps both visible on dark and light pixels.
_CONGRUENT = {"edgecolor": "#e0115f", "linewidth": 2.0, "linestyle": "-"}
_OTHER = {"edgecolor": "white", "linewidth": 0.8, "linestyle": (0, (3, 2))}
_HALO = [patheffects.withStroke(linewidth=3.2, foreground="black")]
_THIN_HALO = [patheffects.withStroke(linewidth=1.8, foreground="black")]


@dataclass(frozen=True)
class RegionPair:
    """One region of two exhibits, compared.

    Attributes
    ----------
    region : {"breech_face", "firing_pin"}
    first, second : Signature
        The reference (``first``) and the target registered onto it.
    result : Comparison
        :func:`ribin.compare.compare` of ``first`` and ``second``.
    calibration : Calibration or None
        The model giving the log10 likelihood ratio, when there is one.
    """

    region: str
    first: Signature
    second: Signature
    result: Comparison
    calibration: Calibration | None = None

    @property
    def log_lr(self) -> float | None:
        """log10 likelihood ratio of the score, or None without a calibration."""
        if self.calibration is None:
            return None
        return float(self.calibration.log10_lr(self.result.score))

    @property
    def warnings(self) -> tuple[str, ...]:
        """What to know before relying on this comparison (2D: small area, glare)."""
        return pair_warnings(self.first, self.second)


@dataclass(frozen=True)
class PairReport:
    """Two exhibits compared region by region, with what a report says about them.

    Attributes
    ----------
    first, second : Exhibit
    regions : tuple of RegionPair
        The regions both exhibits have in the same modality, in :data:`REGIONS` order.
    first_metadata, second_metadata : dict
        What the lab recorded about each exhibit (country, site, caliber, role, ...);
        empty for an exhibit read from a file.
    skipped : dict
        Region -> why it was not compared.
    calibration_source : str
        Where the calibration came from (a path, ``"<default>"`` or ``"none"``).
    """

    first: Exhibit
    second: Exhibit
    regions: tuple[RegionPair, ...]
    first_metadata: dict[str, Any] = field(default_factory=dict)
    second_metadata: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    calibration_source: str = "none"


def compare_pair(
    first: Exhibit,
    second: Exhibit,
    calibration: Mapping[str, Calibration] | None = None,
    *,
    params: Mapping[str, CMCParams] | None = None,
    first_metadata: Mapping[str, Any] | None = None,
    second_metadata: Mapping[str, Any] | None = None,
    calibration_source: str = "none",
    results: Mapping[str, Comparison] | None = None,
) -> PairReport:
    """Compare every region two exhibits share and gather what a report needs.

    Parameters
    ----------
    first, second : Exhibit
        Reference and target.
    calibration : mapping, optional
        ``"region/modality"`` -> :class:`~ribin.calibration.Calibration`.
    params : mapping, optional
        Comparison parameters per region (default :data:`ribin.compare.DEFAULT_PARAMS`).
    first_metadata, second_metadata : mapping, optional
        Lab metadata of stored exhibits.
    calibration_source : str
        Where ``calibration`` came from, for the record.
    results : mapping, optional
        Comparisons already made, by region; the others are computed.

    Returns
    -------
    PairReport
    """
    params = {**DEFAULT_PARAMS, **(params or {})}
    results = dict(results or {})
    regions, skipped = [], {}
    for region in REGIONS:
        sig_a = first.signatures().get(region)
        sig_b = second.signatures().get(region)
        if sig_a is None or sig_b is None:
            missing = first if sig_a is None else second
            reason = missing.missing.get(region, "not extracted")
            skipped[region] = f"{missing.exhibit_id}: {reason}"
            continue
        if sig_a.modality != sig_b.modality:
            skipped[region] = f"modalities differ ({sig_a.modality} vs {sig_b.modality})"
            continue
        result = results.get(region) or compare_signatures(sig_a, sig_b, params[region])
        model = (calibration or {}).get(model_key(region, sig_a.modality))
        regions.append(RegionPair(region, sig_a, sig_b, result, model))
    return PairReport(
        first=first,
        second=second,
        regions=tuple(regions),
        first_metadata=dict(first_metadata or {}),
        second_metadata=dict(second_metadata or {}),
        skipped=skipped,
        calibration_source=calibration_source,
    )


# --- figures ----------------------------------------------------------------------------


def pair_figures(pair: PairReport, dpi: int = DPI) -> dict[str, bytes]:
    """The figures of a pairwise comparison as PNG files.

    Parameters
    ----------
    pair : PairReport
    dpi : int
        Resolution; the embedded images are drawn at this resolution, so it sets their size.

    Returns
    -------
    dict
        File name (``"breech_face-signatures.png"``, ...) -> PNG bytes, in reading order.
    """
    a_name, b_name = pair.first.exhibit_id, pair.second.exhibit_id
    return {
        f"{rp.region}-{kind}.png": region_figure(rp, kind, a_name, b_name, dpi)
        for rp in pair.regions
        for kind in FIGURE_KINDS
    }


FIGURE_KINDS = ("signatures", "registered", "cells", "score")
"""The figures of one compared region, in reading order (see :func:`region_figure`)."""


def region_figure(rp: RegionPair, kind: str, a_name: str, b_name: str, dpi: int = DPI) -> bytes:
    """One figure of one compared region as a PNG file (the report's and the web app's).

    Parameters
    ----------
    rp : RegionPair
    kind : {"signatures", "registered", "cells", "score"}
        Both signatures as measured; B registered onto A; the congruent cells drawn on
        both; the score against the calibration.
    a_name, b_name : str
        Names of the two exhibits in titles.
    dpi : int
        Resolution (sets the image size: a figure is about 8-10.5 inches wide).

    Returns
    -------
    bytes
        PNG file.
    """
    if kind == "signatures":
        figure = _signatures_figure(rp, a_name, b_name)
    elif kind == "registered":
        figure = _registered_figure(rp, a_name, b_name)
    elif kind == "cells":
        figure = _cells_figure(rp, a_name, b_name)
    elif kind == "score":
        figure = _score_figure(rp)
    else:
        raise ValueError(f"kind must be one of {FIGURE_KINDS}, not {kind!r}")
    return _png(figure, dpi)


def _png(figure: Figure, dpi: int) -> bytes:
    """Draw ``figure`` and encode it as a palette PNG.

    Surfaces are noise-like and compress poorly as 24-bit colour; 128 colours along a
    perceptual colour map are indistinguishable on screen and paper and a third the size.
    """
    canvas = FigureCanvasAgg(figure)
    figure.set_dpi(dpi)
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3]
    image = Image.fromarray(np.ascontiguousarray(rgb)).quantize(
        colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=_png_info())
    return buffer.getvalue()


def _png_info() -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", f"RIBIN {__version__}")
    return info


def _limits(*surfaces: np.ndarray) -> tuple[float, float]:
    """Shared robust colour limits (1st and 99th percentiles of the valid pixels)."""
    values = np.concatenate([s[np.isfinite(s)].ravel() for s in surfaces])
    if values.size == 0:
        return -1.0, 1.0
    lo, hi = np.percentile(values, [1, 99])
    return (float(lo), float(hi)) if hi > lo else (float(lo) - 1, float(lo) + 1)


def _value_label(signature: Signature) -> str:
    return "height (µm)" if signature.modality == "3d" else "normalised intensity"


def _extent(shape: tuple[int, int], pixel_size_um: float) -> tuple[float, float, float, float]:
    """imshow extent in millimetres, pixel centres at ``(i + 0.5) * pixel``."""
    mm = pixel_size_um / 1000.0
    return (0.0, shape[1] * mm, shape[0] * mm, 0.0)


def _show(ax, surface: np.ndarray, signature: Signature, limits, title: str):
    image = ax.imshow(
        np.ma.masked_invalid(surface),
        cmap=HEIGHT_CMAP,
        vmin=limits[0],
        vmax=limits[1],
        extent=_extent(surface.shape, signature.pixel_size_um),
        interpolation="antialiased",
    )
    ax.set_facecolor("white")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("x (mm)", fontsize=8)
    ax.set_ylabel("y (mm)", fontsize=8)
    ax.tick_params(labelsize=7)
    return image


def _panels(n: int, size: tuple[float, float]) -> tuple[Figure, list]:
    """A row of ``n`` image panels with room on the right for a colour bar.

    Laid out by hand: constrained layout would draw every figure twice.
    """
    figure = Figure(figsize=size)
    axes = figure.subplots(1, n)
    figure.subplots_adjust(left=0.06, right=0.88, bottom=0.12, top=0.8, wspace=0.3)
    return figure, list(axes)


def _colorbar(figure: Figure, image, label: str) -> None:
    cax = figure.add_axes((0.91, 0.18, 0.015, 0.56))
    bar = figure.colorbar(image, cax=cax)
    bar.set_label(label, fontsize=8)
    bar.ax.tick_params(labelsize=7)


def _signatures_figure(rp: RegionPair, a_name: str, b_name: str) -> Figure:
    a, b = rp.first.surface, rp.second.surface
    limits = _limits(a, b)
    figure, axes = _panels(2, (8.0, 3.9))
    _show(axes[0], a, rp.first, limits, f"A: {a_name} (as measured)")
    image = _show(axes[1], b, rp.second, limits, f"B: {b_name} (as measured)")
    _colorbar(figure, image, _value_label(rp.first))
    figure.suptitle(f"{REGION_NAMES[rp.region]} signatures", fontsize=10)
    return figure


def registered_target(rp: RegionPair) -> np.ndarray:
    """The second signature resampled onto the first's grid by the comparison's registration.

    Parameters
    ----------
    rp : RegionPair

    Returns
    -------
    ndarray of float32, shape of ``rp.first.surface``
        NaN where the registered target has no valid pixel.
    """
    reg = rp.result.registration
    return _map_target(
        rp.second.surface, rp.first.surface.shape, reg.rotation_deg, reg.dx_px, reg.dy_px
    )


def _target_points(
    x: np.ndarray,
    y: np.ndarray,
    ref_shape: tuple[int, int],
    target_shape: tuple[int, int],
    rotation_deg: float,
    dx: float,
    dy: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Target ``(x, y)`` of reference points: ``c_t + Rot(theta) (p + d - c_r)``."""
    theta = math.radians(rotation_deg)
    c, s = math.cos(theta), math.sin(theta)
    u = x + dx - (ref_shape[1] - 1) / 2.0
    v = y + dy - (ref_shape[0] - 1) / 2.0
    return (
        c * u - s * v + (target_shape[1] - 1) / 2.0,
        s * u + c * v + (target_shape[0] - 1) / 2.0,
    )


def _map_target(
    target: np.ndarray, shape: tuple[int, int], rotation_deg: float, dx: float, dy: float
) -> np.ndarray:
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    tx, ty = _target_points(cols, rows, shape, target.shape, rotation_deg, dx, dy)
    valid = np.isfinite(target)
    filled = np.where(valid, target, 0.0)
    coords = np.stack([ty, tx])
    values = ndimage.map_coordinates(filled, coords, order=1, mode="constant", cval=0.0)
    weight = ndimage.map_coordinates(valid.astype(np.float64), coords, order=1, cval=0.0)
    out = np.where(weight > 0.999, values, np.nan)
    return out.astype(np.float32)


def _checkerboard(a: np.ndarray, b: np.ndarray, tiles: int = 8) -> np.ndarray:
    """Alternate square tiles of ``a`` and ``b``: marks that continue across tile edges agree."""
    side = max(4, math.ceil(max(a.shape) / tiles))
    rows, cols = np.indices(a.shape)
    pick_a = ((rows // side) + (cols // side)) % 2 == 0
    return np.where(pick_a, a, b)


def _registered_figure(rp: RegionPair, a_name: str, b_name: str) -> Figure:
    a = rp.first.surface
    b = registered_target(rp)
    reg = rp.result.registration
    limits = _limits(a, b)
    figure, axes = _panels(3, (10.5, 3.7))
    _show(axes[0], a, rp.first, limits, f"A: {a_name}")
    _show(axes[1], b, rp.second, limits, f"B: {b_name}, registered onto A")
    image = _show(axes[2], _checkerboard(a, b), rp.first, limits, "A and B in alternate squares")
    _colorbar(figure, image, _value_label(rp.first))
    figure.suptitle(
        f"{REGION_NAMES[rp.region]}: B rotated {reg.rotation_deg:+.1f}° and shifted "
        f"({reg.dx_um:+.0f}, {reg.dy_um:+.0f}) µm onto A; "
        f"overall correlation {rp.result.overall_corr:.2f}",
        fontsize=10,
    )
    return figure


def _cell_size(surface: np.ndarray, grid: tuple[int, int]) -> tuple[int, int, int, int]:
    """Cell height and width, and the grid's top-left corner, as compare lays them out."""
    valid = np.isfinite(surface)
    rows = np.flatnonzero(valid.any(axis=1))
    cols = np.flatnonzero(valid.any(axis=0))
    if rows.size == 0:
        return 1, 1, 0, 0
    h = max(1, math.ceil((rows[-1] + 1 - rows[0]) / grid[0]))
    w = max(1, math.ceil((cols[-1] + 1 - cols[0]) / grid[1]))
    return h, w, int(rows[0]), int(cols[0])


def _cells_figure(rp: RegionPair, a_name: str, b_name: str) -> Figure:
    a, b = rp.first.surface, rp.second.surface
    result = rp.result
    h, w, _, _ = _cell_size(a, result.params.grid)
    mm = rp.first.pixel_size_um / 1000.0
    limits = _limits(a, b)
    figure, axes = _panels(2, (8.0, 4.3))
    _show(axes[0], a, rp.first, limits, f"A: {a_name}, all cells")
    image = _show(axes[1], b, rp.second, limits, f"B: {b_name}, where A's congruent cells match")
    for cell in result.cells:
        style = _CONGRUENT if cell.congruent else _OTHER
        halo = _HALO if cell.congruent else _THIN_HALO
        rect = Rectangle(
            (cell.left * mm, cell.top * mm), w * mm, h * mm, fill=False, zorder=3, **style
        )
        rect.set_path_effects(halo)
        axes[0].add_patch(rect)
        _cell_label(axes[0], (cell.left + w / 2) * mm, (cell.top + h / 2) * mm, cell)
        if not (cell.congruent and math.isfinite(cell.dx_px)):
            continue
        corners_x = np.array([cell.left, cell.left + w, cell.left + w, cell.left], float) - 0.5
        corners_y = np.array([cell.top, cell.top, cell.top + h, cell.top + h], float) - 0.5
        tx, ty = _target_points(
            corners_x, corners_y, a.shape, b.shape, cell.rotation_deg, cell.dx_px, cell.dy_px
        )
        quad = Polygon(
            np.column_stack([(tx + 0.5) * mm, (ty + 0.5) * mm]), closed=True, fill=False, zorder=3
        )
        quad.set(**_CONGRUENT)
        quad.set_path_effects(_HALO)
        axes[1].add_patch(quad)
        _cell_label(axes[1], (tx.mean() + 0.5) * mm, (ty.mean() + 0.5) * mm, cell)
    for ax, shape in ((axes[0], a.shape), (axes[1], b.shape)):
        ax.set_xlim(0, shape[1] * mm)
        ax.set_ylim(shape[0] * mm, 0)
    _colorbar(figure, image, _value_label(rp.first))
    figure.suptitle(
        f"{REGION_NAMES[rp.region]}: {result.forward.cmc_count} of {result.forward.n_cells} "
        "cells congruent (solid outline, boxed number); others dashed",
        fontsize=10,
    )
    return figure


def _cell_label(ax, x: float, y: float, cell) -> None:
    number = str(cell.index + 1)
    if cell.congruent:
        ax.text(
            x, y, number, ha="center", va="center", fontsize=7, fontweight="bold", zorder=4,
            color="black", bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "#e0115f"},
        )  # fmt: skip
    else:
        text = ax.text(x, y, number, ha="center", va="center", fontsize=6, color="white", zorder=4)
        text.set_path_effects(_THIN_HALO)


def _score_figure(rp: RegionPair) -> Figure:
    result = rp.result
    figure = Figure(figsize=(9.0, 3.3))
    left, right = figure.subplots(1, 2, width_ratios=[1, 1.4])
    figure.subplots_adjust(left=0.07, right=0.93, bottom=0.15, top=0.8, wspace=0.3)
    forward = result.forward
    order = np.argsort(forward.angles_deg)
    left.plot(
        forward.angles_deg[order], forward.counts_per_angle[order], color="black", lw=1.0,
        marker="o", ms=2.5,
    )  # fmt: skip
    left.axvline(result.registration.rotation_deg, color="black", ls="--", lw=1.0)
    left.yaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_xlabel("rotation of B (°)", fontsize=8)
    left.set_ylabel("congruent cells (A in B)", fontsize=8)
    chosen = result.registration.rotation_deg
    left.set_title(f"Votes per rotation; chosen {chosen:+.1f}°", fontsize=9)
    left.tick_params(labelsize=7)
    _calibration_axes(right, rp)
    figure.suptitle(
        f"{REGION_NAMES[rp.region]}: score {result.score:.2f}, CMC {result.cmc_count}"
        + (f", log10 LR {rp.log_lr:+.2f}" if rp.log_lr is not None else ""),
        fontsize=10,
    )
    return figure


def _calibration_axes(ax, rp: RegionPair) -> None:
    score = rp.result.score
    model = rp.calibration
    ax.tick_params(labelsize=7)
    ax.set_xlabel("score (CMC count + mean correlation)", fontsize=8)
    if model is None:
        ax.axvline(score, color="black", lw=2)
        ax.set_yticks([])
        ax.set_title("Uncalibrated: no likelihood ratio (ribin calibrate)", fontsize=9)
        ax.set_xlim(0, max(score * 1.5, 5))
        return
    km, knm = np.asarray(model.match_scores), np.asarray(model.nonmatch_scores)
    known = np.concatenate([km, knm, [score]])
    lo, hi = float(known.min()), float(known.max())
    slope = float(model.params.get("slope", 0.0))
    if not (km.size or knm.size) and slope > 0:
        # older calibration files keep no scores: stretch the curve across its bounds
        intercept = float(model.params["intercept"])
        lo = min(lo, (model.lower * math.log(10) - intercept) / slope)
        hi = max(hi, (model.upper * math.log(10) - intercept) / slope)
    pad = 0.08 * (hi - lo or 1.0)
    lo, hi = max(0.0, lo - pad), hi + pad
    curve_ax = ax
    if km.size or knm.size:
        bins = np.linspace(lo, hi, 31)
        ax.hist(knm, bins=bins, density=True, histtype="stepfilled", fc="white", ec="black",
                hatch="////", lw=0.8, label=f"known non-matches (n={knm.size})")  # fmt: skip
        ax.hist(km, bins=bins, density=True, histtype="stepfilled", fc="0.45", ec="black",
                alpha=0.8, lw=0.8, label=f"known matches (n={km.size})")  # fmt: skip
        ax.set_ylabel("density", fontsize=8)
        ax.set_yticks([])
        curve_ax = ax.twinx()
        curve_ax.tick_params(labelsize=7)
        title = "Where the score sits among the calibration scores"
    else:
        title = "Calibration curve (the file keeps no training scores)"
    xs = np.linspace(lo, hi, 200)
    curve_ax.plot(xs, model.log10_lr(xs), color="black", lw=1.5, label="log10 LR")
    curve_ax.axhline(0.0, color="0.5", lw=0.6, ls=":")
    curve_ax.set_ylabel("log10 LR", fontsize=8)
    ax.axvline(score, color="#e0115f", lw=2.2, ls="-.", label="this pair")
    curve_ax.plot([score], [rp.log_lr], marker="D", ms=7, mfc="white", mec="black", zorder=5)
    low_half = rp.log_lr < (model.lower + model.upper) / 2
    curve_ax.annotate(
        f"log10 LR {rp.log_lr:+.2f}", (score, rp.log_lr), textcoords="offset points",
        xytext=(8, 10 if low_half else -14), fontsize=8, fontweight="bold",
    )  # fmt: skip
    ax.set_xlim(lo, hi)
    ax.set_title(title, fontsize=9)
    handles, labels = ax.get_legend_handles_labels()
    extra_h, extra_l = curve_ax.get_legend_handles_labels() if curve_ax is not ax else ([], [])
    ax.legend(handles + extra_h, labels + extra_l, fontsize=7, loc="upper left", framealpha=0.9)


def thumbnail(signature: Signature, size: int = 96) -> bytes:
    """A small PNG of a signature (cividis, NaN transparent), about ``size`` pixels wide.

    Parameters
    ----------
    signature : Signature
    size : int
        Longest side in pixels, at most the surface's own.

    Returns
    -------
    bytes
        PNG file.
    """
    return surface_png(signature.surface, size=size)


def surface_png(
    surface: np.ndarray,
    limits: tuple[float, float] | None = None,
    *,
    size: int | None = None,
) -> bytes:
    """A surface as a bare PNG image, one pixel per surface pixel (or fewer).

    The colour map and robust limits are the report figures' own, so a web page can lay
    two such images over each other (see :func:`registered_target`) or zoom into one.

    Parameters
    ----------
    surface : ndarray, shape (M, N)
        NaN where there is no data (transparent in the image).
    limits : (float, float), optional
        Colour limits (default: the 1st and 99th percentiles of ``surface``); give the same
        limits to images meant to be compared.
    size : int, optional
        Longest side in pixels: larger surfaces are block-averaged down to it.

    Returns
    -------
    bytes
        PNG file (RGBA).
    """
    surface = np.asarray(surface, dtype=np.float64)
    step = max(1, math.ceil(max(surface.shape) / size)) if size else 1
    if step > 1:
        rows = (surface.shape[0] // step) * step
        cols = (surface.shape[1] // step) * step
        blocks = surface[:rows, :cols].reshape(rows // step, step, cols // step, step)
        with np.errstate(invalid="ignore"), _quiet_nanmean():
            surface = np.nanmean(blocks, axis=(1, 3))
    lo, hi = limits if limits is not None else _limits(surface)
    buffer = io.BytesIO()
    imsave(buffer, np.ma.masked_invalid(surface), cmap=HEIGHT_CMAP, vmin=lo, vmax=hi, format="png")
    return buffer.getvalue()


def surface_limits(*surfaces: np.ndarray) -> tuple[float, float]:
    """Shared robust colour limits of surfaces (1st and 99th percentiles of valid pixels)."""
    return _limits(*surfaces)


def cell_boxes(rp: RegionPair) -> list[dict[str, Any]]:
    """Where each of A's cells lies, in A's pixels, as the cells figure draws them.

    Parameters
    ----------
    rp : RegionPair

    Returns
    -------
    list of dict
        One per cell: ``index`` (1-based, the figures' numbering), ``congruent``,
        ``corr``, and ``left``, ``top``, ``width``, ``height`` in A's pixels.
    """
    h, w, _, _ = _cell_size(rp.first.surface, rp.result.params.grid)
    return [
        {
            "index": cell.index + 1,
            "congruent": bool(cell.congruent),
            "corr": None if not math.isfinite(cell.corr) else float(cell.corr),
            "left": int(cell.left),
            "top": int(cell.top),
            "width": int(w),
            "height": int(h),
        }
        for cell in rp.result.cells
    ]


class _quiet_nanmean:
    """Silence numpy's "mean of empty slice" warning for all-NaN blocks."""

    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        return self._catch.__exit__(*exc)


# --- HTML -------------------------------------------------------------------------------

_CSS = """
body{font-family:Helvetica,Arial,sans-serif;color:#111;background:#fff;margin:0}
main{max-width:1040px;margin:0 auto;padding:16px 24px}
h1{font-size:22px;margin:8px 0 4px}h2{font-size:18px;border-bottom:2px solid #111;
padding-bottom:2px;margin-top:28px}h3{font-size:15px;margin:18px 0 6px}
table{border-collapse:collapse;margin:6px 0 10px;font-size:13px}
th,td{border:1px solid #888;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#eee}td.num{text-align:right;font-variant-numeric:tabular-nums}
code,.hash{font-family:Menlo,Consolas,monospace;font-size:11px;word-break:break-all}
figure{margin:8px 0 14px}figure img{max-width:100%;height:auto;border:1px solid #ccc}
figcaption{font-size:12px;color:#333;margin-top:2px}
.note{font-size:12px;color:#333;border-left:3px solid #888;padding:2px 8px}
.big{font-size:15px;font-weight:bold}.congruent{font-weight:bold}
tr.congruent td:first-child::before{content:"\\25A0 "}
pre{font-size:11px;background:#f6f6f6;padding:6px;white-space:pre-wrap;border:1px solid #ddd}
table.params td{font-size:11px;font-family:Menlo,Consolas,monospace}
img.thumb{width:72px;height:auto;border:1px solid #999}
@media print{h2{page-break-before:auto}figure{page-break-inside:avoid}a{color:#000}}
"""


class _Html:
    """A small builder that escapes every text and closes every tag it opens."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def raw(self, text: str) -> None:
        self.parts.append(text)

    def tag(self, name: str, text: Any = "", **attrs: Any) -> None:
        self.parts.append(f"<{name}{_attrs(attrs)}>{_esc(text)}</{name}>")

    def open(self, name: str, **attrs: Any) -> None:
        self.parts.append(f"<{name}{_attrs(attrs)}>")

    def close(self, name: str) -> None:
        self.parts.append(f"</{name}>")

    def table(self, header: Sequence[str], rows: Iterable[Sequence[Any]], **attrs: Any) -> None:
        self.open("table", **attrs)
        self.open("thead")
        self.raw("<tr>" + "".join(f"<th>{_esc(h)}</th>" for h in header) + "</tr>")
        self.close("thead")
        self.open("tbody")
        for row in rows:
            row_attrs = {}
            if isinstance(row, _Row):
                row_attrs, row = row.attrs, row.cells
            self.raw(f"<tr{_attrs(row_attrs)}>" + "".join(_cell(v) for v in row) + "</tr>")
        self.close("tbody")
        self.close("table")

    def figure(self, png: bytes, alt: str, caption: str) -> None:
        self.open("figure")
        self.raw(f'<img src="{_data_uri(png)}" alt="{_esc(alt)}">')
        self.tag("figcaption", caption)
        self.close("figure")

    def text(self) -> str:
        return "".join(self.parts)


@dataclass(frozen=True)
class _Row:
    cells: Sequence[Any]
    attrs: dict[str, Any]


@dataclass(frozen=True)
class _Markup:
    """Text already escaped (a link, an image)."""

    html: str


def _esc(value: Any) -> str:
    if isinstance(value, _Markup):
        return value.html
    return html.escape("" if value is None else str(value), quote=True)


def _attrs(attrs: Mapping[str, Any]) -> str:
    return "".join(
        f' {name.rstrip("_").replace("_", "-")}="{_esc(value)}"'
        for name, value in attrs.items()
        if value is not None
    )


def _cell(value: Any) -> str:
    if isinstance(value, float | int) and not isinstance(value, bool):
        return f'<td class="num">{_esc(value)}</td>'
    return f"<td>{_esc(value)}</td>"


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _fmt(value: float | None, spec: str = ".2f") -> str:
    if value is None or not math.isfinite(value):
        return "–"
    text = format(value, spec)
    # no "-0.00": a value that rounds to zero has no sign worth printing
    return text.lstrip("-") if not text.strip("+-0.") else text


def _document(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="RIBIN {_esc(__version__)}">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


_LR_NOTE = (
    "The log10 likelihood ratio compares how probable this score is for pairs fired by the "
    "same firearm and by different firearms, as learnt from the known-match and known-"
    "non-match scores of the calibration named here. It supports the examiner's own "
    "comparison; it is not a conclusion, and it is only as good as those calibration data."
)


def compare_html(
    pair: PairReport,
    *,
    dpi: int = DPI,
    parameters: Mapping | None = None,
    figures: Mapping[str, bytes] | None = None,
) -> str:
    """A self-contained HTML report of a pairwise comparison.

    Parameters
    ----------
    pair : PairReport
    dpi : int
        Resolution of the embedded figures.
    parameters : mapping, optional
        How the report was asked for (command, options), recorded in its provenance.
    figures : mapping, optional
        :func:`pair_figures` of ``pair``, when already drawn.

    Returns
    -------
    str
        The HTML document.
    """
    out = _Html()
    title = f"RIBIN comparison: {pair.first.exhibit_id} vs {pair.second.exhibit_id}"
    out.tag("h1", title)
    out.tag("p", f"Report generated {_now()} by RIBIN {__version__}.", class_="note")
    figures = figures if figures is not None else pair_figures(pair, dpi)
    _pair_body(out, pair, figures=figures, anchor="", level=2)
    _provenance_section(out, {"report": dict(parameters or {})})
    return _document(title, out.text())


def _pair_body(out: _Html, pair: PairReport, figures: Mapping[str, bytes], anchor: str, level: int):
    h, h_sub = f"h{level}", f"h{level + 1}"
    out.tag(h, "Summary", id=f"{anchor}summary")
    rows = []
    for rp in pair.regions:
        r = rp.result
        rows.append(
            [
                _Markup(f'<a href="#{anchor}{rp.region}">{_esc(REGION_NAMES[rp.region])}</a>'),
                _fmt(r.score),
                f"{r.cmc_count} (A in B {r.forward.cmc_count} of {r.forward.n_cells}; "
                f"B in A {r.backward.cmc_count} of {r.backward.n_cells})",
                _lr_cell(rp.log_lr, rp.calibration.name if rp.calibration else None),
                f"{r.registration.rotation_deg:+.1f}°",
                f"({r.registration.dx_um:+.0f}, {r.registration.dy_um:+.0f})",
                _fmt(r.overall_corr),
            ]
        )
    for region, reason in pair.skipped.items():
        rows.append([REGION_NAMES[region], "not compared", reason, "–", "–", "–", "–"])
    out.table(
        [
            "region",
            "score",
            "CMC count",
            "log10 LR",
            "rotation of B",
            "shift of B (µm)",
            "overall corr.",
        ],
        rows,
    )
    out.tag(
        "p",
        "CMC count: cells whose best match agrees on one rotation and translation with "
        "correlation ≥ "
        + ", ".join(f"{rp.result.params.corr_min:g}" for rp in pair.regions[:1])
        + "; the pair's count is the smaller of the two directions. Calibration: "
        + pair.calibration_source
        + ". "
        + _LR_NOTE,
        class_="note",
    )
    cautions = [f"{REGION_NAMES[rp.region]}: {w}" for rp in pair.regions for w in rp.warnings]
    if cautions:
        out.tag("p", "Warnings: " + "; ".join(cautions) + ".", class_="note")
    out.tag(h, "Exhibits", id=f"{anchor}exhibits")
    _exhibits_table(out, pair)
    for rp in pair.regions:
        out.tag(h, f"{REGION_NAMES[rp.region]}", id=f"{anchor}{rp.region}")
        out.tag(h_sub, "Signatures")
        out.figure(
            figures[f"{rp.region}-signatures.png"],
            f"{rp.region} signatures of A and B",
            "Both signatures as measured, on one colour scale (cividis: lighter is higher).",
        )
        out.tag(h_sub, "Registration")
        out.figure(
            figures[f"{rp.region}-registered.png"],
            f"{rp.region}: B registered onto A",
            "B rotated and shifted by the registration the comparison found. Right: A and "
            "registered B in alternating squares; where they agree, marks run on across the "
            "squares' edges.",
        )
        out.tag(h_sub, "Congruent cells")
        out.figure(
            figures[f"{rp.region}-cells.png"],
            f"{rp.region}: cells of A and where they match in B",
            "A's grid of cells, numbered as in the table below. Congruent cells (solid "
            "outline, number in a box) are drawn again in B where they match; their "
            "outlines show B's rotation.",
        )
        _cells_table(out, rp)
        out.tag(h_sub, "Score and likelihood ratio")
        out.figure(
            figures[f"{rp.region}-score.png"],
            f"{rp.region}: score against the calibration",
            "Left: congruent cells at each rotation searched at full resolution (A's cells in "
            "B). Right: the "
            "score (dash-dot line) with the calibration's known-match (solid grey) and "
            "known-non-match (hatched) scores where the calibration keeps them, and the "
            "fitted log10 LR curve.",
        )
        _calibration_note(out, rp)
    _parameters_table(out, pair, h, anchor)


_HOW_TO_CALIBRATE = (
    "To calibrate, a laboratory scans test fires of its own firearms (several shots from "
    "each of several firearms) on its own instrument, ingests them into a store and runs "
    "`ribin calibrate STORE --truth test-fires.csv` (a CSV of exhibit_id and firearm); the "
    "command fits the model, validates it leaving one firearm out and writes a validation "
    "page. See docs/examiner-guide.md."
)


def _lr_cell(log_lr: float | None, calibration: str | None) -> str:
    """A log10 LR with the calibration it came from, or "uncalibrated"."""
    if log_lr is None:
        return "uncalibrated"
    return f"{_fmt(log_lr, '+.2f')} ({calibration})" if calibration else _fmt(log_lr, "+.2f")


def _calibration_note(out: _Html, rp: RegionPair) -> None:
    """Which calibration produced the region's LR, its provenance and validation figures."""
    key = model_key(rp.region, rp.first.modality)
    c = rp.calibration
    if c is None:
        out.tag(
            "p",
            f"Uncalibrated: no calibration for {key} is in use (RIBIN ships none for it: no "
            "real scans to fit one on), so this region gives a score and a rank but no "
            "likelihood ratio. " + _HOW_TO_CALIBRATE,
            class_="note",
        )
        return
    src = c.source
    rows = [
        ["calibration", f"{c.name or key} ({key})"],
        [
            "whose",
            "RIBIN's shipped default, not this laboratory's instrument or firearms: "
            "read its LR with caution. " + _HOW_TO_CALIBRATE
            if c.is_default
            else "the laboratory's own (ribin calibrate)",
        ],
        ["data", src.get("data", "–")],
        ["scanner", src.get("scanner", "–")],
        ["pairs", f"{c.n_match} same-source, {c.n_nonmatch} different-source"],
        ["method", f"{c.model}; log10 LR bounded (ELUB) to [{c.lower:+.2f}, {c.upper:+.2f}]"],
        ["fitted", f"{src.get('fitted_at', '–')}, RIBIN {src.get('software_version', '–')}"],
    ]
    for label, key_ in (
        ("leave one firearm out", "leave_one_firearm_out"),
        ("in sample", "in_sample"),
    ):
        v = c.validation.get(key_) or {}
        if "cllr" in v:
            rows.append(
                [
                    f"validation, {label}",
                    f"Cllr {v['cllr']:.3f}, Cllr_min {v['cllr_min']:.3f}, misleading "
                    f"evidence RMEP {v['rmep']:.3f} / RMED {v['rmed']:.3f} "
                    f"({v['n_match']} same-source, {v['n_nonmatch']} different-source LRs)",
                ]
            )
    out.table(["", ""], rows)


def _exhibits_table(out: _Html, pair: PairReport) -> None:
    a, b = pair.first, pair.second
    keys = ["country", "site", "caliber", "role", "case_ref", "acquired_at", "sharing"]
    rows: list[list[Any]] = [
        ["exhibit ID", a.exhibit_id, b.exhibit_id],
        ["source file", a.source_name, b.source_name],
        [
            "source SHA-256",
            _Markup(f'<span class="hash">{_esc(a.source_sha256)}</span>'),
            _Markup(f'<span class="hash">{_esc(b.source_sha256)}</span>'),
        ],
        ["extracted by", f"RIBIN {a.software_version}", f"RIBIN {b.software_version}"],
    ]
    extra = sorted((set(pair.first_metadata) | set(pair.second_metadata)) - set(keys))
    for key in keys + extra:
        va, vb = pair.first_metadata.get(key), pair.second_metadata.get(key)
        if va or vb:
            rows.append([key.replace("_", " "), va or "–", vb or "–"])
    for region in REGIONS:
        sa, sb = a.signatures().get(region), b.signatures().get(region)
        rows.append(
            [f"{REGION_NAMES[region]} signature", _sig_summary(a, sa, region),
             _sig_summary(b, sb, region)]
        )  # fmt: skip
    rows.append(["warnings", "; ".join(a.warnings) or "none", "; ".join(b.warnings) or "none"])
    out.table(["", f"A: {a.exhibit_id}", f"B: {b.exhibit_id}"], rows)


def _parameters_table(out: _Html, pair: PairReport, heading: str, anchor: str) -> None:
    """Extraction and comparison parameters, one column per signature."""
    columns, values = [], []
    for rp in pair.regions:
        short = "BF" if rp.region == "breech_face" else "FP"
        for side, sig in (("A", rp.first), ("B", rp.second)):
            columns.append(f"{short} {side}")
            values.append({k: v for k, v in sig.params.items() if k != "detection"})
        columns.append(f"{short} comparison")
        values.append(asdict(rp.result.params))
    if not columns:
        return
    out.tag(heading, "Parameters", id=f"{anchor}parameters")
    keys = sorted({k for v in values for k in v})
    rows = []
    for key in keys:
        row = [key]
        for v in values:
            row.append(json.dumps(v[key], default=str) if key in v else "")
        rows.append(row)
    out.table(["parameter", *columns], rows, class_="params")


def _sig_summary(exhibit: Exhibit, sig: Signature | None, region: str) -> Any:
    if sig is None:
        return f"none ({exhibit.missing.get(region, 'not extracted')})"
    quality = ", ".join(f"{k} {_short(v)}" for k, v in sig.quality.items())
    return _Markup(
        f"{_esc(sig.modality.upper())}, {sig.surface.shape[1]} × {sig.surface.shape[0]} px at "
        f"{sig.pixel_size_um:g} µm; {_esc(quality)}<br>ID "
        f'<span class="hash">{_esc(sig.id)}</span>'
    )


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _cells_table(out: _Html, rp: RegionPair) -> None:
    mm = rp.first.pixel_size_um
    rows = []
    for cell in sorted(rp.result.cells, key=lambda c: (not c.congruent, -np.nan_to_num(c.corr))):
        rows.append(
            _Row(
                [
                    cell.index + 1,
                    f"{cell.grid_row + 1}, {cell.grid_col + 1}",
                    "yes" if cell.congruent else "no",
                    _fmt(cell.corr),
                    f"{cell.rotation_deg:+.0f}",
                    _fmt(cell.dx_px * mm, "+.0f"),
                    _fmt(cell.dy_px * mm, "+.0f"),
                    f"{cell.valid_fraction:.0%}",
                ],
                {"class_": "congruent"} if cell.congruent else {},
            )
        )
    out.table(
        [
            "cell",
            "row, col",
            "congruent",
            "correlation",
            "rotation (°)",
            "dx (µm)",
            "dy (µm)",
            "valid",
        ],
        rows,
    )


def _provenance_section(out: _Html, provenance: Mapping[str, Any]) -> None:
    out.tag("h2", "Provenance", id="provenance")
    record = {"software": f"RIBIN {__version__}", "generated_at": _now(), **provenance}
    out.tag("pre", json.dumps(record, indent=1, sort_keys=True, default=str))


# --- search -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchEntry:
    """One listed candidate of a search report.

    Attributes
    ----------
    candidate : ribin.search.Candidate
    thumbnail : bytes or None
        PNG of its breech-face signature (else its first region).
    pair : PairReport or None
        Its full comparison with the query, for the first candidates only.
    """

    candidate: Candidate
    thumbnail: bytes | None = None
    pair: PairReport | None = None


def search_entries(
    store: SignatureStore,
    result: SearchResult,
    query: Exhibit,
    calibration: Mapping[str, Calibration] | None = None,
    *,
    top: int = 5,
    calibration_source: str = "none",
    query_metadata: Mapping[str, Any] | None = None,
) -> list[SearchEntry]:
    """Read the listed candidates back from the store and compare the first ``top``.

    Parameters
    ----------
    store : SignatureStore
        The open store that was searched.
    result : SearchResult
    query : Exhibit
        The query exhibit itself.
    calibration : mapping, optional
        Models by :func:`~ribin.calibration.model_key`.
    top : int
        How many candidates get a full comparison section.
    calibration_source : str
    query_metadata : mapping, optional

    Returns
    -------
    list of SearchEntry
    """
    entries = []
    for candidate in result.candidates:
        stored = store.get(candidate.exhibit_id, country=candidate.country)
        signatures = stored.exhibit.signatures()
        first = signatures.get("breech_face") or next(iter(signatures.values()), None)
        pair = None
        if candidate.rank <= top:
            pair = compare_pair(
                query,
                stored.exhibit,
                calibration,
                first_metadata=query_metadata,
                second_metadata=asdict(stored.metadata),
                calibration_source=calibration_source,
            )
        entries.append(SearchEntry(candidate, thumbnail(first) if first else None, pair))
    return entries


def search_html(
    result: SearchResult,
    query: Exhibit,
    entries: Sequence[SearchEntry],
    *,
    dpi: int = DPI,
    parameters: Mapping | None = None,
    figures: dict[str, bytes] | None = None,
) -> str:
    """A self-contained HTML report of a search: the ranked list and the top comparisons.

    Parameters
    ----------
    result : SearchResult
    query : Exhibit
    entries : sequence of SearchEntry
        From :func:`search_entries`.
    dpi : int
    parameters : mapping, optional
        How the report was asked for, recorded in its provenance.
    figures : dict, optional
        Filled with every figure drawn, named ``"rank01-breech_face-cells.png"`` and so on.

    Returns
    -------
    str
    """
    out = _Html()
    title = f"RIBIN search: {result.query}, scope {result.scope}"
    out.tag("h1", title)
    out.tag(
        "p",
        f"Searched by {result.searcher} over {', '.join(result.countries)}: "
        f"{result.compared} full comparisons of {result.considered} candidates in "
        f"{result.seconds:.1f} s. Report generated {_now()} by RIBIN {__version__}.",
        class_="note",
    )
    query_sig = query.signatures().get("breech_face") or next(iter(query.signatures().values()))
    out.open("p")
    out.raw(f'<img class="thumb" src="{_data_uri(thumbnail(query_sig))}" alt="query signature"> ')
    out.tag("span", f"Query {query.exhibit_id} ({query.source_name}), SHA-256 ")
    out.tag("span", query.source_sha256, class_="hash")
    out.close("p")
    out.tag("h2", "Ranked candidates", id="ranked")
    rows = []
    for entry in entries:
        c = entry.candidate
        anchor = f"rank{c.rank}-"
        thumb = (
            f'<img class="thumb" src="{_data_uri(entry.thumbnail)}" alt="{_esc(c.exhibit_id)}">'
            if entry.thumbnail
            else ""
        )
        if entry.pair is not None:
            thumb = f'<a href="#{anchor}summary">{thumb or _esc(c.exhibit_id)}</a>'
            name = _Markup(f'<a href="#{anchor}summary">{_esc(c.exhibit_id)}</a>')
        else:
            name = c.exhibit_id
        rows.append(
            [
                c.rank,
                _Markup(thumb),
                name,
                c.country,
                _fmt(c.score),
                _lr_cell(c.log_lr, getattr(c, "calibration", None)),
                _region_cell(c.breech_face),
                _region_cell(c.firing_pin),
            ]
        )
    out.table(
        [
            "rank",
            "signature",
            "exhibit",
            "country",
            "score",
            "log10 LR",
            "BF rank / score / CMC",
            "FP rank / score / CMC",
        ],
        rows,
    )
    n_full = sum(e.pair is not None for e in entries)
    out.tag(
        "p",
        f"The first {n_full} candidates are compared in full below (follow the links). "
        "Candidates are ranked by score (the sum of the regions' scores), which every "
        "candidate has; the log10 LR beside it sums the calibrated regions' LRs, treating "
        "them as independent evidence (an approximation), and names the calibration; "
        "'uncalibrated' means no LR exists for that region and modality. " + _LR_NOTE,
        class_="note",
    )
    for entry in entries:
        if entry.pair is None:
            continue
        c = entry.candidate
        anchor = f"rank{c.rank}-"
        pair_figs = pair_figures(entry.pair, dpi)
        if figures is not None:
            figures.update({f"rank{c.rank:02d}-{k}": v for k, v in pair_figs.items()})
        out.open("section", id=f"rank{c.rank}")
        out.tag("h2", f"Rank {c.rank}: {query.exhibit_id} vs {c.exhibit_id}")
        out.raw('<p><a href="#ranked">back to the ranked list</a></p>')
        _pair_body(out, entry.pair, pair_figs, anchor=anchor, level=3)
        out.close("section")
    _provenance_section(out, {"search": result.provenance, "report": dict(parameters or {})})
    return _document(title, out.text())


def exhibit_html(
    exhibit: Exhibit,
    metadata: Mapping[str, Any] | None = None,
    *,
    stored: Mapping[str, Any] | None = None,
    parameters: Mapping | None = None,
) -> str:
    """A self-contained HTML report of one exhibit: metadata, signatures, quality, provenance.

    Parameters
    ----------
    exhibit : Exhibit
    metadata : mapping, optional
        What the lab recorded (country, site, caliber, role, ...).
    stored : mapping, optional
        Where the store keeps it (content ID, segment, time of ingest).
    parameters : mapping, optional
        How the report was asked for, recorded in its provenance.

    Returns
    -------
    str
        The HTML document.
    """
    out = _Html()
    title = f"RIBIN exhibit: {exhibit.exhibit_id}"
    out.tag("h1", title)
    out.tag("p", f"Report generated {_now()} by RIBIN {__version__}.", class_="note")
    out.tag("h2", "Exhibit", id="exhibit")
    rows: list[list[Any]] = [["exhibit ID", exhibit.exhibit_id]]
    rows += [[k.replace("_", " "), v] for k, v in (metadata or {}).items() if v]
    rows += [[k.replace("_", " "), v] for k, v in (stored or {}).items() if v]
    rows += [
        ["source file", exhibit.source_name],
        ["source SHA-256", _Markup(f'<span class="hash">{_esc(exhibit.source_sha256)}</span>')],
        ["extracted by", f"RIBIN {exhibit.software_version}"],
        ["warnings", "; ".join(exhibit.warnings) or "none"],
    ]
    out.table(["", ""], rows)
    for region in REGIONS:
        sig = exhibit.signatures().get(region)
        out.tag("h2", REGION_NAMES[region], id=region)
        if sig is None:
            out.tag("p", f"Not extracted: {exhibit.missing.get(region, 'no reason recorded')}")
            continue
        out.figure(
            surface_png(sig.surface, size=480),
            f"{region} signature of {exhibit.exhibit_id}",
            f"{sig.modality.upper()} signature, {sig.surface.shape[1]} × {sig.surface.shape[0]} "
            f"px at {sig.pixel_size_um:g} µm (cividis: lighter is higher).",
        )
        out.table(["quality figure", "value"], [[k, _short(v)] for k, v in sig.quality.items()])
        out.tag("p", f"Signature ID {sig.id}", class_="note")
        params = {k: v for k, v in sig.params.items() if k != "detection"}
        out.tag("pre", json.dumps(params, indent=1, sort_keys=True, default=str))
    provenance = {"exhibit": {"detection": exhibit.detection}, "report": dict(parameters or {})}
    _provenance_section(out, provenance)
    return _document(title, out.text())


def _region_cell(match: Any) -> str:
    if match is None or match.score is None:
        return "–"
    return f"{match.rank} / {match.score:.2f} / {match.cmc_count}"


# --- output -----------------------------------------------------------------------------


def check_writable(path: str | os.PathLike) -> Path:
    """Fail early, with one line, when a report cannot be written at ``path``.

    Parameters
    ----------
    path : path
        The report file to be written.

    Returns
    -------
    Path
        ``path`` as a :class:`~pathlib.Path`.

    Raises
    ------
    InputError
        The folder does not exist or is not writable, or ``path`` is a folder.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise InputError(path, "is a folder, not a file to write the report to")
    if not parent.is_dir():
        raise InputError(path, f"cannot write the report: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(path, f"cannot write the report: folder {parent} is not writable")
    return path


def write_report(path: str | os.PathLike, document: str) -> None:
    """Write ``document`` to ``path`` atomically (a temporary file, then a rename).

    Parameters
    ----------
    path : path
        The report file; an existing one is replaced only once the new one is whole.
    document : str
        The HTML, written as UTF-8.

    Raises
    ------
    InputError
        The file cannot be written; nothing is left behind.
    """
    path = check_writable(path)
    _write_atomic(path, document.encode("utf-8"))


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = None
    try:
        # opened with "x" rather than mkstemp so the file gets the umask's usual mode
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        with open(tmp, "xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise InputError(path, f"cannot write: {exc.strerror or exc}") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def write_figures(folder: str | os.PathLike, figures: Mapping[str, bytes]) -> list[Path]:
    """Write figures into ``folder`` (created if missing), all or none of them.

    The files are written into a temporary folder inside ``folder`` and moved into place
    only once every one is written.

    Parameters
    ----------
    folder : path
        Where the figures go.
    figures : mapping
        File name -> PNG bytes (from :func:`pair_figures`).

    Returns
    -------
    list of Path
        The files written.

    Raises
    ------
    InputError
        ``folder`` cannot be created or written.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        problem = f"cannot create the figures folder: {exc.strerror or exc}"
        raise InputError(folder, problem) from None
    staging = None
    try:
        staging = Path(tempfile.mkdtemp(prefix=".ribin-figures-", dir=folder))
        for name, data in figures.items():
            with open(staging / name, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        written = []
        for name in figures:
            os.replace(staging / name, folder / name)
            written.append(folder / name)
        return written
    except OSError as exc:
        raise InputError(folder, f"cannot write figures: {exc.strerror or exc}") from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def write_search_report(
    store_path: str | os.PathLike,
    query: Exhibit | str,
    result: SearchResult,
    calibration: Mapping[str, Calibration] | None = None,
    *,
    report_path: str | os.PathLike | None = None,
    png_dir: str | os.PathLike | None = None,
    top: int = 5,
    calibration_source: str = "none",
    parameters: Mapping | None = None,
) -> None:
    """Compare a search's first ``top`` candidates again and write its report and figures.

    Parameters
    ----------
    store_path : path
        The store that was searched (opened read-only here).
    query : Exhibit or str
        The query exhibit, or its exhibit ID in the store.
    result : SearchResult
    calibration : mapping, optional
    report_path : path, optional
        HTML file to write.
    png_dir : path, optional
        Folder for the figures (``rank01-breech_face-cells.png``, ...).
    top : int
        Candidates compared in full in the report.
    calibration_source : str
    parameters : mapping, optional
        How the report was asked for, recorded in its provenance.

    Raises
    ------
    InputError
        An output cannot be written (nothing is left half-written).
    """
    from ribin.store import SignatureStore

    if report_path:
        check_writable(report_path)
    with SignatureStore.open(store_path, "r") as store:
        metadata: dict[str, Any] = {}
        if isinstance(query, str):
            stored = store.get(query)
            query, metadata = stored.exhibit, asdict(stored.metadata)
        entries = search_entries(
            store,
            result,
            query,
            calibration,
            top=top,
            calibration_source=calibration_source,
            query_metadata=metadata,
        )
    figures: dict[str, bytes] = {}
    document = search_html(result, query, entries, parameters=parameters, figures=figures)
    if png_dir:
        write_figures(png_dir, figures)
    if report_path:
        write_report(report_path, document)
