"""The report's figures: signatures, registration, congruent cells and score, as PNG.

Drawn with matplotlib's Agg canvas on :class:`matplotlib.figure.Figure` objects (no pyplot,
no global state) with perceptually uniform colour maps, and readable in grayscale: cells
are told apart by outline style and numbers, not by colour.
"""

from __future__ import annotations

import io
import math
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
from ribin.exhibit import Signature
from ribin.report.pairs import DPI, HEIGHT_CMAP, REGION_NAMES, PairReport, RegionPair

if TYPE_CHECKING:
    pass


# Outline styles of cells: congruent cells solid, thick, coloured and numbered in a box;
# the others thin and dashed; a halo keeps both visible on dark and light pixels.
_CONGRUENT = {"edgecolor": "#e0115f", "linewidth": 2.0, "linestyle": "-"}
_OTHER = {"edgecolor": "white", "linewidth": 0.8, "linestyle": (0, (3, 2))}
_HALO = [patheffects.withStroke(linewidth=3.2, foreground="black")]
_THIN_HALO = [patheffects.withStroke(linewidth=1.8, foreground="black")]


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
