"""Pairwise comparison of two signatures by congruent matching cells (CMC).

The method follows NIST's congruent matching cells (Song 2013) with the "high CMC" vote of
Tong et al. (2015), as implemented openly in cmcR (Zemmels et al., R Journal 2022):

1. The reference's valid bounding box is split into a grid of cells (8 x 8 by default);
   cells with less than 15 % valid pixels are dropped.
2. For each rotation of a sweep, the target is rotated onto the reference grid (about the
   two arrays' centres) and every cell is searched for in a target region three times its
   side (cmcR's ``regionSizeMult = 9``): the lag comes from an FFT cross-correlation, and
   the cell's correlation is the exact Pearson correlation over the pixels valid in both.
3. At each rotation, cells with correlation >= 0.5 vote on a consensus translation; cells
   within 20 px (125 um at 6.25 um) of it in x and y are congruent there. A cell's
   correlation counts in the vote as that of a whole cell of equal significance
   (``area_weighted``): ``tanh(atanh(r) sqrt(f))``, ``f`` the fraction of the cell's area
   valid in both surfaces, so a small edge cell needs a higher correlation (0.80 at a
   quarter of its area); without it, such cells made most of the non-matches' CMCs. The modal
   rotation is the one with the most congruent cells; the direction's CMC count is the
   number of distinct cells that reach 0.5 at some rotation within +-6 deg of it with a
   translation within 20 px of its consensus (Tong's "high CMC" union over neighbouring
   rotations, held to one translation).
4. Both directions are run (reference vs target and target vs reference, the second at the
   inverse of the first's registration); the CMC count of the pair is the smaller of the
   two, so a pair needs support both ways. The two signatures are taken in a canonical
   order (by a hash of their content), so ``compare(a, b)`` and ``compare(b, a)`` give the
   same count and score, with the directions exchanged and the registration inverted.

For casings in any orientation the sweep covers the full circle. By default it runs coarse
to fine, as an image pyramid: the sweep at half resolution (cmcR's procedure on 2 x 2 block
means: each cell finds its own best translation over the whole region), then, at +-6 deg
around the two rotations with the most congruent cells, each cell is searched again at full
resolution within +-4 px of its own coarse translation, so the correlations and
translations that are voted on are full-resolution ones and non-matching cells scatter as
they do in a full search. The backward direction does the same at the inverse rotations.
``search="exhaustive"`` runs every rotation at full resolution (cmcR); the accuracy
benchmark compares the two.

The half-resolution sweep visits every other rotation (6 deg apart; a matching pair's count
changes little over one 3 deg step), and in the backward direction every other rotation of
its window. At a rotation it skipped, a cell starts from the translation found at the
nearest rotation it visited, turned about the reference centre so that the cell lands on
the same target point (exact for a matching cell; ``coarse_angle_stride=1`` visits them
all). A candidate whose forward count is below the best pair count found so far gets no
backward search, which cannot change the result.

On the full circle the half-resolution sweep does not visit every rotation: a
rotation-invariant estimate names where to look. The Fourier magnitude of a surface does
not move when the surface is translated and turns with it, so in polar coordinates
(radius, angle) a rotation is a shift along the angle; the circular cross-correlation of
the two surfaces' polar log magnitudes (40 radii over wavelengths of 2.2 to 12.5 pixels,
1 deg steps, each radius normalised) peaks at the turn, modulo a half turn. The sweep
visits the rotations within ``theta_max_deg`` of the 3 highest peaks (``theta_max_deg``
apart) and of their half turns (``rotation_estimates``; 0: the whole circle; 13 of 60 on
the Fadul signatures), then the neighbours of the chosen candidates that the refinement
carries translations from, so a match whose turn is among the estimates gets the whole
sweep's result bit for bit. On every Fadul and synthetic known match the turn was the
highest peak, within 3 deg. Only surfaces of 10 um pixels or coarser (the signatures
``ribin.extract`` makes: band-passed, 12.5 um) are estimated: on the unfiltered 6.25 um
Fadul scans the turn of 9 of 28 known matches was not among the 3 peaks, so finer pixels
sweep the whole circle.

Each surface's grids, coarse image, polar profile and cell spectra do not depend on the
other surface; they are kept by content for the last few surfaces (``_PartsCache``), so a
search makes its query's once, not once per candidate.

Score: ``cmc_count + t`` with ``t`` in [0, 1) the mean correlation of the registered cells
(both directions) clipped to [0, 0.999]; the integer part is the CMC count, the fraction
only breaks ties and orders pairs with equal counts.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Literal

import ducc0
import numba
import numpy as np
import scipy.fft

from ribin._callable import make_module_callable
from ribin.errors import InputError
from ribin.exhibit import Signature
from ribin.kernels.cmc import _carry_translations, _high_cmc, _vote_per_rotation
from ribin.kernels.ncc import (
    _best_lags,
    _centred_templates,
    _extract_regions,
    _overall_corr,
    _rotated_regions,
)
from ribin.kernels.resample import _downsample_mean, _rotate_masked, _rotate_stack
from ribin.kernels.signatures import ready as _kernels_ready

Search = Literal["coarse_to_fine", "exhaustive"]


@dataclass(frozen=True)
class CMCParams:
    """Parameters of a CMC comparison (defaults from cmcR / Song 2013 / Tong 2015).

    Attributes
    ----------
    grid : (int, int)
        Cells per side of the reference's valid bounding box (rows, columns).
    min_valid_fraction : float
        A cell with a smaller fraction of valid pixels is not compared (cmcR: 0.15).
    region_scale : int
        Side of the target search region over the cell side (cmcR ``regionSizeMult`` 9).
    corr_min : float
        Correlation a congruent cell needs (cmcR ``corrThresh`` 0.5).
    shift_max_um : float
        Largest x and y distance from the consensus translation (cmcR ``xThresh`` 20 px
        at 6.25 um = 125 um).
    theta_max_deg : float
        Rotation tolerance (cmcR ``thetaThresh`` 6 deg).
    angle_step_deg : float
        Rotation step of the sweep (3 deg in Song 2013 and cmcR).
    angle_range_deg : (float, float) or None
        Inclusive sweep range; None is the full circle [-180, 180).
    search : {"coarse_to_fine", "exhaustive"}
    coarse_factor : int
        Downsampling of the coarse sweep.
    coarse_candidates : int
        Rotations from the coarse sweep refined at full resolution.
    coarse_angle_stride : int
        The coarse sweeps visit every ``coarse_angle_stride``-th rotation (of the sweep,
        and of the backward window); the refinement carries their translations over to
        the rotations skipped.
    coarse_keep_fraction : float
        A coarse candidate with fewer congruent cells than this fraction of the best
        one's is not refined (0, the default: always ``coarse_candidates``). Faster, but it
        can only lower counts: 0.5 lowered two Fadul known-match counts by one.
    min_overlap_fraction : float
        Fraction of a cell's valid pixels that must meet valid target pixels at a lag.
    area_weighted : bool
        Hold a cell's correlation to the significance ``corr_min`` has over a whole cell:
        the vote uses ``tanh(atanh(r) sqrt(f))``, ``f`` the fraction of the cell's area
        valid in both surfaces at its lag (Fisher's z grows with the root of the sample
        size). A cell a quarter valid then needs r >= 0.80 where a full one needs 0.5.
        False: every cell's own ``r`` (cmcR).
    rotation_estimates : int
        Full-circle coarse-to-fine sweeps only: the coarse sweep visits the rotations
        within ``theta_max_deg`` of the best ``rotation_estimates`` peaks of a
        rotation-invariant estimate (the two surfaces' Fourier magnitudes compared in
        polar coordinates, :func:`_rotation_peaks`), each peak and its half-turn, instead
        of the whole circle. 0: the whole circle (the firing pin's default: too small an
        area for the estimate). Pixels finer than 10 um always sweep the whole circle
        (the estimate was validated on band-passed 12.5 um signatures only).
    """

    grid: tuple[int, int] = (8, 8)
    min_valid_fraction: float = 0.15
    region_scale: int = 3
    corr_min: float = 0.5
    shift_max_um: float = 125.0
    theta_max_deg: float = 6.0
    angle_step_deg: float = 3.0
    angle_range_deg: tuple[float, float] | None = None
    search: Search = "coarse_to_fine"
    coarse_factor: int = 2
    coarse_candidates: int = 2
    coarse_angle_stride: int = 2
    coarse_keep_fraction: float = 0.0
    min_overlap_fraction: float = 0.5
    area_weighted: bool = True
    rotation_estimates: int = 3

    def angles(self) -> np.ndarray:
        """The sweep's rotations in degrees."""
        if self.angle_range_deg is None:
            return np.arange(-180.0, 180.0, self.angle_step_deg)
        lo, hi = self.angle_range_deg
        n = math.floor((hi - lo) / self.angle_step_deg + 1e-9) + 1
        return lo + self.angle_step_deg * np.arange(n)


# Firing-pin signatures cover a much smaller area than breech faces: fewer, larger cells.
DEFAULT_PARAMS: dict[str, CMCParams] = {
    "breech_face": CMCParams(),
    # Rotation estimates need more surface than a firing pin has (on the 2D synthetic firing
    # pins, about 50 px across, 6 of 21 known matches lost a turn found by the whole sweep).
    "firing_pin": CMCParams(grid=(4, 4), rotation_estimates=0),
}
#: Two 2D breech faces: a lit image follows the slopes, not the heights, and its cells
#: correlate less between mates than measured heights do (Fadul renderings: most known
#: matches held no cell at 0.5 while no known non-match held one), so a congruent cell
#: needs a lower correlation: 0.25 with the default 2D method ``rank-whiten`` (whitened
#: signatures spread a mate's agreement over the whole band; chosen on the Fadul renderings,
#: seed 21, among 0.2-0.4; checked on another lighting draw and the synthetic 2D set,
#: ``docs/validation.md``). :func:`compare` uses these for a pair of 2D signatures given no
#: parameters or the region's :data:`DEFAULT_PARAMS`.
DEFAULT_PARAMS_2D: dict[str, CMCParams] = {
    "breech_face": CMCParams(corr_min=0.25),
    "firing_pin": DEFAULT_PARAMS["firing_pin"],
}


def effective_params(
    kind: str, modality_a: str, modality_b: str, params: CMCParams | None = None
) -> CMCParams:
    """The parameters :func:`compare` uses for a pair of `kind` signatures.

    ``params``, or ``DEFAULT_PARAMS[kind]`` when None; for two 2D signatures None or the
    object ``DEFAULT_PARAMS[kind]`` itself (what search passes) becomes
    ``DEFAULT_PARAMS_2D[kind]``. Any other parameters are kept as given, even when equal
    to the 3D defaults.
    """
    if params is None:
        params = DEFAULT_PARAMS[kind]
    if modality_a == modality_b == "2d" and params is DEFAULT_PARAMS.get(kind):
        params = DEFAULT_PARAMS_2D.get(kind, params)
    return params


@dataclass(frozen=True)
class Registration:
    """Rotation and translation that map the target onto the reference.

    Reference pixel ``p = (x, y)`` (column, row) matches target point
    ``c_target + Rot(rotation) (p + (dx, dy) - c_reference)``, with ``c`` the arrays'
    centres and ``Rot`` the rotation matrix on ``(x, y)``: a positive rotation turns the
    target counterclockwise on screen to align it.
    """

    rotation_deg: float
    dx_px: float
    dy_px: float
    dx_um: float
    dy_um: float


@dataclass(frozen=True)
class CellResult:
    """One reference cell's best match in the target."""

    index: int
    grid_row: int
    grid_col: int
    top: int
    left: int
    valid_fraction: float
    rotation_deg: float
    dx_px: float
    dy_px: float
    corr: float
    congruent: bool


@dataclass(frozen=True)
class DirectionResult:
    """CMC result of one direction (reference cells searched in the target).

    ``cells`` is built on first use from the arrays the search left (most comparisons of
    a search are never reported cell by cell).
    """

    cmc_count: int
    n_cells: int
    registration: Registration
    angles_deg: np.ndarray = field(repr=False)
    counts_per_angle: np.ndarray = field(repr=False)
    _cell_table: tuple = field(repr=False, compare=False)

    @cached_property
    def cells(self) -> tuple[CellResult, ...]:
        """Each usable reference cell's best match, in grid order."""
        index, gc, tops, lefts, valid, rotation, dx, dy, corr, congruent = self._cell_table
        return tuple(
            CellResult(
                index=int(index[k]),
                grid_row=int(index[k]) // gc,
                grid_col=int(index[k]) % gc,
                top=int(tops[k]),
                left=int(lefts[k]),
                valid_fraction=float(valid[k]),
                rotation_deg=float(rotation[k]),
                dx_px=float(dx[k]),
                dy_px=float(dy[k]),
                corr=float(corr[k]),
                congruent=bool(congruent[k]),
            )
            for k in range(len(index))
        )


@dataclass(frozen=True)
class Comparison:
    """Result of :func:`compare`.

    Attributes
    ----------
    score : float
        ``cmc_count`` plus a tie-breaking fraction in [0, 1) (see module docstring).
    cmc_count : int
        Combined CMC count: the smaller of the two directions' counts.
    forward, backward : DirectionResult
        ``a``'s cells in ``b``, and ``b``'s cells in ``a``.
    registration : Registration
        Maps ``b`` onto ``a``: the registration of the direction run first, which is
        ``a`` in ``b`` or, when the two were compared in the other order, the inverse of
        ``b`` in ``a`` (the result does not depend on the order of the arguments).
    overall_corr : float
        Masked correlation of ``a`` and registered ``b`` over their whole overlap.
    params : CMCParams
    """

    score: float
    cmc_count: int
    forward: DirectionResult
    backward: DirectionResult
    registration: Registration
    overall_corr: float
    params: CMCParams

    @property
    def cells(self) -> tuple[CellResult, ...]:
        """Per-cell results of the forward direction."""
        return self.forward.cells


def compare(a: Signature, b: Signature, params: CMCParams | None = None) -> Comparison:
    """Compare two signatures of the same region by congruent matching cells.

    Parameters
    ----------
    a, b : Signature
        Same ``kind``; pixel sizes within 1 % (signatures are made at a fixed pixel size;
        resample before comparing otherwise). Shapes may differ.
    params : CMCParams, optional
        Defaults to ``DEFAULT_PARAMS[a.kind]`` (full-circle, coarse-to-fine search); for two
        2D signatures, no parameters or the object ``DEFAULT_PARAMS[a.kind]`` mean
        ``DEFAULT_PARAMS_2D[a.kind]`` (recorded in the result's ``params``).

    Returns
    -------
    Comparison

    Raises
    ------
    InputError
        Different kinds or pixel sizes, or a signature with no valid cell.

    Examples
    --------
    >>> result = compare(sig_a, sig_b)  # doctest: +SKIP
    >>> result.cmc_count, result.registration.rotation_deg  # doctest: +SKIP
    (24, -9.0)
    """
    if a.kind != b.kind:
        raise InputError(None, f"cannot compare a {a.kind} signature with a {b.kind} one")
    if not math.isclose(a.pixel_size_um, b.pixel_size_um, rel_tol=0.01):
        raise InputError(
            None,
            f"pixel sizes differ ({a.pixel_size_um} vs {b.pixel_size_um} um); "
            "make both signatures at the same pixel size",
        )
    params = effective_params(a.kind, a.modality, b.modality, params)
    return compare_surfaces(a.surface, b.surface, float(a.pixel_size_um), params)


def compare_surfaces(
    a: np.ndarray, b: np.ndarray, pixel_size_um: float, params: CMCParams | None = None
) -> Comparison:
    """:func:`compare` on bare NaN-masked surfaces of the same pixel size.

    Parameters
    ----------
    a, b : ndarray, shapes (M, N) and (M', N')
        Surfaces, NaN outside the region.
    pixel_size_um : float
    params : CMCParams, optional
        Defaults to the breech-face parameters.

    Returns
    -------
    Comparison
    """
    params = params or DEFAULT_PARAMS["breech_face"]
    _kernels_ready()  # one compiled specialization per kernel (ribin.kernels.signatures)
    a = np.ascontiguousarray(a, dtype=np.float32)
    b = np.ascontiguousarray(b, dtype=np.float32)
    # Symmetric by construction: the two surfaces are compared in one canonical order (by
    # content), and the other order gets the same result seen from the other side.
    key_a, key_b = _order_key(a), _order_key(b)
    if key_b < key_a:
        parts = _PARTS.get(b, key_b, params, "b"), _PARTS.get(a, key_a, params, "a")
        return _swapped(_compare_ordered(b, a, pixel_size_um, params, *parts), pixel_size_um)
    parts = _PARTS.get(a, key_a, params, "a"), _PARTS.get(b, key_b, params, "b")
    return _compare_ordered(a, b, pixel_size_um, params, *parts)


def _order_key(surface: np.ndarray) -> bytes:
    """Content key of a float32 surface (shape and bytes, NaN bit patterns included)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(np.asarray(surface.shape, dtype=np.int64).tobytes())
    digest.update(surface.tobytes())
    return digest.digest()


def _inverse(reg: Registration, pixel_size_um: float) -> Registration:
    """The registration mapping the reference onto the target, from one mapping back.

    With ``q = c_t + Rot(theta) (p + d - c_r)``, ``p = c_r + Rot(-theta) (q + d' - c_t)``
    for ``d' = -Rot(theta) d``.
    """
    theta = math.radians(reg.rotation_deg)
    c, s = math.cos(theta), math.sin(theta)
    dx = -(c * reg.dx_px - s * reg.dy_px)
    dy = -(s * reg.dx_px + c * reg.dy_px)
    return Registration(
        rotation_deg=float(_angle_diff(-reg.rotation_deg, 0.0)),
        dx_px=dx,
        dy_px=dy,
        dx_um=dx * pixel_size_um,
        dy_um=dy * pixel_size_um,
    )


def _swapped(result: Comparison, pixel_size_um: float) -> Comparison:
    """``result`` of ``(b, a)`` as the result of ``(a, b)``: directions exchanged,
    registration inverted; count, score and overall correlation unchanged."""
    return replace(
        result,
        forward=result.backward,
        backward=result.forward,
        registration=_inverse(result.registration, pixel_size_um),
    )


def _compare_ordered(
    a: np.ndarray,
    b: np.ndarray,
    pixel_size_um: float,
    params: CMCParams,
    parts_a: _Parts | None = None,
    parts_b: _Parts | None = None,
) -> Comparison:
    """:func:`compare_surfaces` in the order given (float32, C-contiguous surfaces).

    ``parts_a`` and ``parts_b``: each surface's grids and cell spectra, when already made
    (:class:`_PartsCache`); made here otherwise.
    """
    parts_a = parts_a or _Parts.of(a, params, "a")
    parts_b = parts_b or _Parts.of(b, params, "b")
    grid_a, grid_b = parts_a.grid, parts_b.grid
    shift_max = params.shift_max_um / pixel_size_um
    angles = params.angles()

    if params.search == "exhaustive":
        fwd = _sweep(grid_a, b, angles, params, memo=_Memo(templates=parts_a.templates))
        fwd_dec = _decide(fwd, params, shift_max)
        candidates = [(fwd, fwd_dec)]
    else:
        low_grid_a, low_grid_b = parts_a.low_grid, parts_b.low_grid
        low_a, low_b = parts_a.low_image, parts_b.low_image
        visit = None
        if (
            params.rotation_estimates > 0
            and params.angle_range_deg is None
            and pixel_size_um >= _ESTIMATE_MIN_PIXEL_UM
        ):
            visit = _rotation_peaks(
                parts_a.profile, parts_b.profile, params.rotation_estimates, params.theta_max_deg
            )
        coarse, rotations = _coarse_search(
            low_grid_a, low_b, angles, params, shift_max, parts_a.low_templates, visit,
            parts_b.rotated(low=True),
        )  # fmt: skip
        candidates = []
        # Windows of nearby candidates overlap: a rotation is searched once per stage.
        fine_memo = _Memo(templates=parts_a.templates, rotated=parts_b.rotated())
        # All windows' rotations in one sweep first (larger batches), each window from it.
        windows = np.concatenate([_window(theta, params) for theta in rotations])
        _refine(grid_a, b, coarse, np.unique(windows.round(6)), params, fine_memo)
        for theta in rotations:
            fwd = _refine(grid_a, b, coarse, _window(theta, params), params, fine_memo)
            candidates.append((fwd, _decide(fwd, params, shift_max)))

    best = None
    if params.search != "exhaustive":
        back_coarse_memo = _Memo(templates=parts_b.low_templates, rotated=parts_a.rotated(True))
        back_fine_memo = _Memo(templates=parts_b.templates, rotated=parts_a.rotated())
    # The pair's count is min(forward, backward), so a candidate whose forward count is below
    # the best pair count so far cannot win and its backward search is skipped (one that can
    # tie on count may still win on the tie-break). Candidates are visited by forward count
    # to skip the most; ties go to the earlier one.
    order = sorted(range(len(candidates)), key=lambda i: -candidates[i][1].count)
    for i in order:
        fwd, fwd_dec = candidates[i]
        if best is not None and fwd_dec.count < best[0][0]:
            continue
        back_angles = _window(-fwd_dec.rotation, params)
        if params.search == "exhaustive":
            bwd = _sweep(grid_b, a, back_angles, params, memo=_Memo(templates=parts_b.templates))
        else:
            coarse_back = _sweep(
                low_grid_b,
                low_a,
                back_angles[:: max(1, params.coarse_angle_stride)],
                params,
                scale=params.coarse_factor,
                memo=back_coarse_memo,
            )
            bwd = _refine(grid_b, a, coarse_back, back_angles, params, back_fine_memo)
        bwd_dec = _decide(bwd, params, shift_max)
        combined = min(fwd_dec.count, bwd_dec.count)
        tiebreak = _tiebreak(fwd, fwd_dec, bwd, bwd_dec)
        key = (combined, tiebreak, -i)
        if best is None or key > best[0]:
            best = (key, fwd, fwd_dec, bwd, bwd_dec)
    assert best is not None
    (combined, tiebreak, _), fwd, fwd_dec, bwd, bwd_dec = best

    forward = _direction_result(grid_a, fwd, fwd_dec, pixel_size_um)
    backward = _direction_result(grid_b, bwd, bwd_dec, pixel_size_um)
    moved = _rotate_onto(b, a.shape, fwd_dec.rotation)
    overall, _ = _overall_corr(a, moved, round(fwd_dec.dy), round(fwd_dec.dx))
    return Comparison(
        score=float(combined + tiebreak),
        cmc_count=int(combined),
        forward=forward,
        backward=backward,
        registration=forward.registration,
        overall_corr=float(overall),
        params=params,
    )


def compare_many(
    pairs: Iterable[tuple[Signature, Signature, CMCParams | None]],
    threads: int | None = None,
    on_done: Callable[[], None] | None = None,
) -> list[Comparison]:
    """:func:`compare` on many pairs, several at a time.

    Each of ``threads`` Python threads runs whole comparisons with single-threaded Numba
    kernels and FFTs: whole comparisons in parallel keep the cores busier than one
    comparison's parallel kernels (``benchmarks/bench_compare_speed.py`` measures both).
    Results are those of :func:`compare`, bit for bit, in the order of ``pairs``.

    ``pairs`` is read as the comparisons go: a generator that reads its signatures from a
    store (as a search does) reads the next ones while the first are being compared.

    Parameters
    ----------
    pairs : iterable of (Signature, Signature, CMCParams or None)
    threads : int, optional
        Comparisons at a time; defaults to Numba's thread count (``NUMBA_NUM_THREADS``).
        1 runs them one after the other, each with Numba's parallel kernels.
    on_done : callable, optional
        Called (in the calling thread) after each comparison finishes.

    Returns
    -------
    list of Comparison
    """
    threads = _workers() if threads is None else max(1, int(threads))
    if threads == 1 or (isinstance(pairs, Sequence) and len(pairs) < 2):
        out = []
        for a, b, params in pairs:
            out.append(compare(a, b, params))
            if on_done is not None:
                on_done()
        return out

    def single(pair: tuple[Signature, Signature, CMCParams | None]) -> Comparison:
        numba.set_num_threads(1)  # thread-local: this pool thread only
        return compare(*pair)

    pool = ThreadPoolExecutor(threads, thread_name_prefix="ribin-compare")
    futures: list[Future] = []
    pending: set[Future] = set()

    def finished(block: bool) -> None:
        nonlocal pending
        done, pending = wait(pending, None if block else 0, FIRST_COMPLETED)
        for future in done:
            future.result()  # the first error (or Ctrl-C) stops the rest
            if on_done is not None:
                on_done()

    try:
        for pair in pairs:
            future = pool.submit(single, pair)
            futures.append(future)
            pending.add(future)
            finished(block=False)
        while pending:
            finished(block=True)
        return [future.result() for future in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# --- internals ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Grid:
    """Reference surface (NaN-padded to hold whole cells) and its usable cells."""

    image: np.ndarray  # float32, padded
    shape: tuple[int, int]  # unpadded shape (rotation centre is its centre)
    tops: np.ndarray  # int64 (n,)
    lefts: np.ndarray
    index: np.ndarray  # row-major grid index of each cell
    valid_fraction: np.ndarray
    h: int
    w: int
    grid: tuple[int, int]

    @classmethod
    def of(cls, image: np.ndarray, params: CMCParams, name: str) -> _Grid:
        valid = ~np.isnan(image)
        if not valid.any():
            raise InputError(None, f"signature {name} has no valid pixel")
        rows = np.flatnonzero(valid.any(axis=1))
        cols = np.flatnonzero(valid.any(axis=0))
        r0, c0 = int(rows[0]), int(cols[0])
        gr, gc = params.grid
        h = max(1, math.ceil((rows[-1] + 1 - r0) / gr))
        w = max(1, math.ceil((cols[-1] + 1 - c0) / gc))
        pad_r = max(0, r0 + gr * h - image.shape[0])
        pad_c = max(0, c0 + gc * w - image.shape[1])
        padded = image
        if pad_r or pad_c:
            padded = np.pad(image, ((0, pad_r), (0, pad_c)), constant_values=np.nan)
        cells = ~np.isnan(padded[r0 : r0 + gr * h, c0 : c0 + gc * w])
        fraction = cells.reshape(gr, h, gc, w).sum(axis=(1, 3)).ravel() / (h * w)
        index = np.flatnonzero((fraction >= params.min_valid_fraction) & (fraction > 0))
        if not index.size:
            raise InputError(None, f"signature {name} has no cell with enough valid pixels")
        return cls(
            image=np.ascontiguousarray(padded, dtype=np.float32),
            shape=image.shape,
            tops=(r0 + index // gc * h).astype(np.int64),
            lefts=(c0 + index % gc * w).astype(np.int64),
            index=index.astype(np.int64),
            valid_fraction=fraction[index],
            h=h,
            w=w,
            grid=(gr, gc),
        )

    def downsampled(self, factor: int) -> _Grid:
        image = _downsample_mean(self.image, factor, max(1, factor * factor // 2))
        return replace(
            self,
            image=image,
            shape=(self.shape[0] // factor, self.shape[1] // factor),
            tops=self.tops // factor,
            lefts=self.lefts // factor,
            h=self.h // factor,
            w=self.w // factor,
        )


@dataclass(frozen=True)
class _Sweep:
    """Per-rotation, per-cell best translation (full-resolution pixels) and correlation."""

    angles: np.ndarray  # (A,)
    dx: np.ndarray  # (A, n)
    dy: np.ndarray
    corr: np.ndarray
    # Pixels valid in both over the cell's full area (h * w), at the best lag; None: 1.
    support: np.ndarray | None = None


@dataclass(frozen=True)
class _Decision:
    rotation: float
    dx: float
    dy: float
    count: int
    angle_index: int
    cell_angle: np.ndarray  # (n,) index of the rotation reported per cell
    congruent: np.ndarray  # (n,) bool
    counts: np.ndarray  # (A,)


@dataclass
class _Memo:
    """What one search stage (same grid, target and region rule) has computed so far.

    ``rows`` maps a rotation (degrees, rounded) to its ``(dx, dy, corr)`` rows;
    ``templates`` holds the reference cells' spectra and minimum overlaps by FFT shape
    (shared by every memo of one grid: :class:`_Parts`); ``rotated``, when given, the
    target's whole rotated copies (shared by every comparison with that target).
    """

    rows: dict = field(default_factory=dict)
    templates: dict = field(default_factory=dict)
    rotated: _Rotated | None = None


class _Rotated:
    """Whole rotated copies of one surface, by rotation, up to a budget.

    A search compares its query with every candidate, each at rotations on the sweep's
    step: the query, rotated at such a rotation, is then interpolated once, not once per
    candidate. The copies are made on a canvas ``margin`` pixels wider than the surface on
    each side and centred like it; the grid of a reference of another size (up to the
    canvas, of the same parity, so that the centres differ by whole pixels) is a window of
    it, bit for bit what rotating onto that grid gives. Only surfaces compared more than
    once keep copies (:class:`_PartsCache`). Thread-safe.
    """

    def __init__(self, shape: tuple[int, int], budget_bytes: int, margin: int = 0) -> None:
        self.base = (shape[0] + 2 * margin, shape[1] + 2 * margin)
        self.budget = budget_bytes
        self.images: dict = {}
        self.nbytes = 0
        self._lock = threading.Lock()

    def canvas(self, grid: tuple[int, int]) -> tuple[int, int] | None:
        """The canvas a grid of this shape is a window of, or None when it does not fit."""
        out = tuple(b + (b - g) % 2 for b, g in zip(self.base, grid, strict=True))
        return out if out[0] >= grid[0] and out[1] >= grid[1] else None

    def get(self, key: tuple) -> np.ndarray | None:
        return self.images.get(key)

    def put(self, key: tuple, image: np.ndarray) -> None:
        with self._lock:
            if key not in self.images and self.nbytes + image.nbytes <= self.budget:
                self.images[key] = image
                self.nbytes += image.nbytes


# Bytes of rotated copies one shared surface keeps: every rotation of a 333 x 333 px breech
# face (120, at full and at half resolution, on canvases a tenth wider) takes 80 MB; the
# parts cache holds 8 surfaces.
_ROTATED_BUDGET = 80 << 20


def _canvas_margin(shape: tuple[int, int]) -> int:
    """Margin of a surface's rotated copies: references up to a tenth larger fit."""
    return max(shape) // 20 + 2


@dataclass(frozen=True)
class _Parts:
    """What a comparison needs of one surface that does not depend on the other one.

    Its grid of cells at full and at the coarse sweep's resolution, the coarse surface,
    and its cells' spectra by FFT shape (filled as sweeps need them, the same for every
    target: :class:`_Memo` ``templates``).
    """

    surface: np.ndarray
    grid: _Grid
    low_grid: _Grid
    low_image: np.ndarray
    templates: dict = field(default_factory=dict)
    low_templates: dict = field(default_factory=dict)
    # Whole rotated copies, at full and coarse resolution, once the surface is shared.
    shared: dict = field(default_factory=dict)

    def rotated(self, low: bool = False) -> _Rotated | None:
        """This surface's rotated copies as a target, or None while it is not shared."""
        return self.shared.get("low" if low else "full")

    def share(self) -> None:
        """Keep rotated copies from now on (a second comparison needs this surface)."""
        if not self.shared:
            full, low = self.surface.shape, self.low_image.shape
            self.shared.update(
                full=_Rotated(full, _ROTATED_BUDGET * 4 // 5, _canvas_margin(full)),
                low=_Rotated(low, _ROTATED_BUDGET // 5, _canvas_margin(low)),
            )

    @cached_property
    def profile(self) -> np.ndarray:
        """The surface's :func:`_rotation_profile`, made on first use."""
        return _rotation_profile(self.surface)

    @classmethod
    def of(cls, surface: np.ndarray, params: CMCParams, name: str) -> _Parts:
        grid = _Grid.of(surface, params, name)
        low = _low(grid, params)
        # The grids pad their images at the end only: the unpadded image's block means are
        # the grid's first ones.
        low_image = np.ascontiguousarray(low.image[: low.shape[0], : low.shape[1]])
        return cls(surface=surface, grid=grid, low_grid=low, low_image=low_image)


# Rotation-invariant estimate: the Fourier magnitude of a surface does not move with it
# and turns with it, so in polar coordinates a rotation is a shift along the angle.
_PROFILE_ANGLES = 180  # 1 deg steps over the half turn (the magnitude repeats after it)
_PROFILE_RADII = 40
_PROFILE_BAND = (0.08, 0.45)  # cycles per pixel: wavelengths 2.2 to 12.5 pixels
# The estimate was validated on the signatures ribin.extract makes (band-passed, 12.5 um;
# Fadul, synthetic 3D and 2D: every known match's turn its highest peak). On the Fadul scans
# as measured (6.25 um, unfiltered) the turn was the highest peak of 13 of 28 known matches
# and not among the 3 visited for 9: finer pixels sweep the whole circle.
_ESTIMATE_MIN_PIXEL_UM = 10.0


def _rotation_profile(surface: np.ndarray) -> np.ndarray:
    """Log Fourier magnitude of a surface in polar coordinates, each radius normalised.

    Parameters
    ----------
    surface : ndarray of float32, shape (M, N)
        NaN outside the region (mean-centred and zero-filled here).

    Returns
    -------
    ndarray of float64, shape (_PROFILE_RADII, _PROFILE_ANGLES)
        Rows: radii spaced geometrically over :data:`_PROFILE_BAND` of the sampling
        frequency; columns: angles 0, 1, ..., 179 deg. Each row has mean 0 and norm 1
        (0 where the row is constant).
    """
    n = scipy.fft.next_fast_len(max(surface.shape), real=True)
    x = np.zeros((n, n), dtype=np.float32)
    valid = ~np.isnan(surface)
    mean = float(surface[valid].mean()) if valid.any() else 0.0
    x[: surface.shape[0], : surface.shape[1]] = np.where(valid, surface - mean, 0.0)
    mag = np.log1p(np.abs(ducc0.fft.r2c(x, axes=(0, 1), nthreads=1))).astype(np.float64)
    radius = np.geomspace(_PROFILE_BAND[0] * n, _PROFILE_BAND[1] * n, _PROFILE_RADII)
    phi = np.radians(np.arange(_PROFILE_ANGLES) * 180.0 / _PROFILE_ANGLES)
    kx = radius[:, None] * np.cos(phi)[None, :]
    ky = radius[:, None] * np.sin(phi)[None, :]
    # The real transform holds kx >= 0; the magnitude at -k is that at k.
    flip = kx < 0
    kx, ky = np.where(flip, -kx, kx), np.where(flip, -ky, ky)
    x0, y0 = np.floor(kx), np.floor(ky)
    fx, fy = kx - x0, ky - y0
    c0, r0 = x0.astype(np.int64), y0.astype(np.int64)
    c1 = np.minimum(c0 + 1, mag.shape[1] - 1)  # past the last column only on tiny odd sizes
    r1 = (r0 + 1) % n
    r0 %= n
    profile = (
        mag[r0, c0] * (1 - fx) * (1 - fy) + mag[r0, c1] * fx * (1 - fy)
        + mag[r1, c0] * (1 - fx) * fy + mag[r1, c1] * fx * fy
    )  # fmt: skip
    profile -= profile.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(profile, axis=1, keepdims=True)
    return np.divide(profile, norm, out=np.zeros_like(profile), where=norm > 0)


def _rotation_peaks(
    reference: np.ndarray, target: np.ndarray, count: int, apart: float = 6.0
) -> list[float]:
    """Rotations (degrees, of the target onto the reference) the profiles suggest.

    The profiles' circular cross-correlation along the angle, summed over the radii; its
    ``count`` highest local maxima more than ``apart`` degrees from every higher one kept
    (ties: the smaller angle), each with its half-turn (the magnitude cannot tell them
    apart).

    Parameters
    ----------
    reference, target : ndarray, shape (_PROFILE_RADII, _PROFILE_ANGLES)
        :func:`_rotation_profile` of the two surfaces.
    count : int
    apart : float
        Degrees; a maximum this near a higher one is a shoulder of it, not another turn.

    Returns
    -------
    list of float
        ``2 * count`` rotations (fewer when the score has fewer maxima) in [-180, 180).
    """
    spectra = np.fft.rfft(reference, axis=1) * np.conj(np.fft.rfft(target, axis=1))
    score = np.fft.irfft(spectra.sum(axis=0), n=reference.shape[1])
    peaks = np.flatnonzero((score >= np.roll(score, 1)) & (score >= np.roll(score, -1)))
    step = 180.0 / reference.shape[1]
    kept: list[float] = []
    for q in peaks[np.lexsort((peaks, -score[peaks]))]:
        # Angles modulo the half turn: distances wrap at 180 deg.
        if all(abs((q * step - k + 90.0) % 180.0 - 90.0) > apart for k in kept):
            kept.append(float(q * step))
        if len(kept) == count:
            break
    # score[q] peaks where the reference's angle phi + q meets the target's phi: the target
    # turns by -q (or -q + 180) onto the reference.
    out = []
    for angle in kept:
        theta = float(_angle_diff(-angle, 0.0))
        out += [theta, float(_angle_diff(theta + 180.0, 0.0))]
    return out


class _PartsCache:
    """The last few surfaces' :class:`_Parts`, by content and parameters.

    A search compares its query with every candidate: the query's grids and cell spectra
    are then made once, not once per comparison. Thread-safe; a surface is looked up by
    the content key :func:`compare_surfaces` computes anyway (its shape and bytes), so
    equal keys mean equal surfaces and the parts are those a fresh comparison would make.
    """

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._entries: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, surface: np.ndarray, key: bytes, params: CMCParams, name: str) -> _Parts:
        """The parts of ``surface`` (content ``key``) under ``params``; made when missing."""
        entry = (key, params)
        with self._lock:
            parts = self._entries.get(entry)
            if parts is not None:
                self._entries.move_to_end(entry)
                parts.share()
                return parts
        parts = _Parts.of(surface, params, name)
        with self._lock:
            parts = self._entries.setdefault(entry, parts)
            self._entries.move_to_end(entry)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return parts

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_PARTS = _PartsCache()


# FFT pixels per batch of rotations in :func:`_sweep`: batches that stay in cache, two
# comparisons at a time (smaller ones pay more calls, larger ones wait on memory). Measured
# best at 0.26 M: the search benchmark's 333 px breech faces 12 % faster than at 0.5 M (one
# rotation per batch instead of 2-3), the Fadul 270 px ones the same.
_BATCH_PIXELS = 1 << 18


def _workers() -> int:
    return numba.get_num_threads()


def _rotate_onto(target: np.ndarray, shape: tuple[int, int], theta_deg: float) -> np.ndarray:
    """Target rotated onto a grid of ``shape``, the two arrays' centres coinciding."""
    return _rotate_masked(
        target,
        math.radians(theta_deg),
        shape[0],
        shape[1],
        (target.shape[0] - 1) / 2.0,
        (target.shape[1] - 1) / 2.0,
        (shape[0] - 1) / 2.0,
        (shape[1] - 1) / 2.0,
    )


def _rfft2(x: np.ndarray, workers: int | None = None) -> np.ndarray:
    """Real 2-D FFT over the last two axes (``scipy.fft.rfft2``), by ducc0."""
    return ducc0.fft.r2c(x, axes=(-2, -1), nthreads=workers or _workers())


def _lag_rows_ccf(
    spectra: np.ndarray, fft_shape: tuple[int, int], n_rows: int, workers: int | None = None
) -> np.ndarray:
    """``scipy.fft.irfft2(spectra, s=fft_shape)[:, :n_rows]`` with less work.

    Only the first ``n_rows`` rows (the lags searched) are wanted: the inverse runs along
    the columns first and then along the rows kept only.
    """
    workers = workers or _workers()
    # inorm=2: each transform divides by its length, as irfft2 scales by their product.
    tmp = ducc0.fft.c2c(spectra, axes=(-2,), forward=False, inorm=2, nthreads=workers)
    return ducc0.fft.c2r(
        tmp[:, :n_rows], axes=(-1,), lastsize=fft_shape[1], forward=False, inorm=2,
        nthreads=workers, allow_overwriting_input=True,
    )  # fmt: skip


def _sweep(
    grid: _Grid,
    target: np.ndarray,
    angles: np.ndarray,
    params: CMCParams,
    centres: np.ndarray | None = None,
    margin: int | None = None,
    scale: int = 1,
    memo: _Memo | None = None,
) -> _Sweep:
    """Best translation and correlation of every cell at every rotation.

    By default each cell is searched in a region ``region_scale`` cells wide around its
    own position (cmcR). ``centres`` (A, n, 2) instead centres each cell's search, at each
    rotation, on a predicted ``(dx, dy)`` in full-resolution pixels (NaN: no prediction,
    the cell is skipped), ``margin`` pixels either way. ``scale`` is the downsampling of
    ``grid`` and ``target``; translations come back in full-resolution pixels. ``memo``
    holds the rows of rotations already searched with the same grid, target and
    centres (by rotation) and the cells' spectra, and takes the new ones.
    """
    n = grid.tops.shape[0]
    dx = np.full((len(angles), n), np.nan)
    dy = np.full((len(angles), n), np.nan)
    corr = np.full((len(angles), n), np.nan)
    support = np.full((len(angles), n), np.nan)
    memo = _Memo() if memo is None else memo
    todo = []
    for a, theta in enumerate(angles):
        key = round(float(theta), 6)
        if key in memo.rows:
            dx[a], dy[a], corr[a], support[a] = memo.rows[key]
        else:
            todo.append(a)
    if not todo:
        return _Sweep(np.asarray(angles, dtype=float), dx, dy, corr, support)
    h, w = grid.h, grid.w
    if margin is None:
        mr = (params.region_scale - 1) * h // 2
        mc = (params.region_scale - 1) * w // 2
    else:
        mr = mc = max(1, margin // scale)
    rows, cols = h + 2 * mr, w + 2 * mc
    fft_shape = (scipy.fft.next_fast_len(rows, real=True), scipy.fft.next_fast_len(cols, True))
    workers = _workers()
    if fft_shape not in memo.templates:
        templates, valid = _centred_templates(grid.image, grid.tops, grid.lefts, h, w, *fft_shape)
        memo.templates[fft_shape] = (
            np.conj(_rfft2(templates, workers)),
            np.maximum(2, np.ceil(params.min_overlap_fraction * valid)).astype(np.int64),
        )
    template_spectra, min_overlap = memo.templates[fft_shape]
    # Interpolate only the regions' pixels where they cover less than the whole grid (the
    # fine search); the coarse regions overlap, so there rotating the target once is cheaper.
    # A target kept rotated (memo.rotated: a search's query) is taken whole from there.
    canvas = None if memo.rotated is None else memo.rotated.canvas(grid.shape)
    fused = canvas is None and n * rows * cols < grid.shape[0] * grid.shape[1]
    centre_in = ((target.shape[0] - 1) / 2.0, (target.shape[1] - 1) / 2.0)
    centre_out = ((grid.shape[0] - 1) / 2.0, (grid.shape[1] - 1) / 2.0)
    # Rotations go through the kernels and FFTs in batches: a call per batch rather than per
    # rotation keeps both cores busy (results are the same region by region).
    per_batch = max(1, _BATCH_PIXELS // (n * fft_shape[0] * fft_shape[1]))
    # Regions of every rotation to search, then taken batch by batch.
    todo = np.asarray(todo)
    off = np.zeros((len(todo), n, 2), dtype=np.int64)
    skip = np.zeros((len(todo), n), dtype=bool)
    if centres is not None:
        skip = ~np.isfinite(centres[todo]).all(axis=2)
        off = np.round(np.where(skip[..., None], 0.0, centres[todo]) / scale).astype(np.int64)
    all_tops = grid.tops - mr + off[..., 1]
    all_lefts = grid.lefts - mc + off[..., 0]
    all_thetas = np.repeat(np.radians(angles[todo].astype(float)), n)
    m = min(per_batch, len(todo))
    cells = (np.tile(grid.tops, m), np.tile(grid.lefts, m), np.tile(min_overlap, m))
    for first in range(0, len(todo), per_batch):
        part = slice(first, first + per_batch)
        batch = todo[part]
        m = len(batch)
        tops, lefts = all_tops[part].ravel(), all_lefts[part].ravel()
        thetas = all_thetas[first * n : (first + m) * n]
        if fused:
            raw, centred = _rotated_regions(
                target, thetas, *grid.shape, *centre_in, *centre_out,
                tops, lefts, rows, cols, *fft_shape,
            )  # fmt: skip
        else:
            moved = _rotated_targets(
                target, angles[batch], thetas[::n], grid.shape, centre_in, centre_out,
                memo.rotated, canvas,
            )  # fmt: skip
            which = np.repeat(np.arange(m), n)
            raw, centred = _extract_regions(moved, which, tops, lefts, rows, cols, *fft_shape)
        spectra = _rfft2(centred, workers)
        spectra = spectra.reshape(m, n, *spectra.shape[1:])
        spectra *= template_spectra
        ccf = _lag_rows_ccf(
            spectra.reshape(m * n, *spectra.shape[2:]), fft_shape, rows - h + 1, workers
        )
        cell_tops, cell_lefts, least = (x[: m * n] for x in cells)
        lag_u, lag_v, c, both = _best_lags(
            ccf, centred, raw, grid.image, cell_tops, cell_lefts, h, w, least
        )
        lag_u, lag_v, c = lag_u.reshape(m, n), lag_v.reshape(m, n), c.reshape(m, n)
        ok = (lag_u >= 0) & ~skip[part]
        dy[batch] = np.where(ok, (lag_u - mr + off[part, :, 1]) * scale, np.nan)
        dx[batch] = np.where(ok, (lag_v - mc + off[part, :, 0]) * scale, np.nan)
        corr[batch] = np.where(ok, c, np.nan)
        support[batch] = np.where(ok, both.reshape(m, n) / (h * w), np.nan)
        for a in batch:
            memo.rows[round(float(angles[a]), 6)] = (dx[a], dy[a], corr[a], support[a])
    return _Sweep(np.asarray(angles, dtype=float), dx, dy, corr, support)


def _rotated_targets(
    target: np.ndarray,
    angles: np.ndarray,
    thetas: np.ndarray,
    shape: tuple[int, int],
    centre_in: tuple[float, float],
    centre_out: tuple[float, float],
    rotated: _Rotated | None = None,
    canvas: tuple[int, int] | None = None,
) -> np.ndarray:
    """``_rotate_stack`` of the target onto a grid of ``shape`` at ``thetas`` (radians of
    ``angles``): windows of the target's kept rotated copies on ``canvas``
    (:meth:`_Rotated.canvas`), made and kept when missing; made directly when no canvas."""
    if rotated is None or canvas is None:
        return _rotate_stack(target, thetas, *shape, *centre_in, *centre_out)
    keys = [(round(float(angle), 6), canvas) for angle in angles]
    found = [rotated.get(key) for key in keys]
    missing = [i for i, image in enumerate(found) if image is None]
    if missing:
        centre = ((canvas[0] - 1) / 2.0, (canvas[1] - 1) / 2.0)
        made = _rotate_stack(target, thetas[missing], *canvas, *centre_in, *centre)
        for i, image in zip(missing, made, strict=True):
            found[i] = image
            rotated.put(keys[i], image)
    # The grid's centre lies a whole number of pixels from the canvas's (same parity).
    top, left = (canvas[0] - shape[0]) // 2, (canvas[1] - shape[1]) // 2
    return np.stack([image[top : top + shape[0], left : left + shape[1]] for image in found])


def _angle_diff(a: np.ndarray | float, b: float) -> np.ndarray:
    """Signed difference of angles in degrees, wrapped to [-180, 180)."""
    return (np.asarray(a) - b + 180.0) % 360.0 - 180.0


def _vote_corr(sweep: _Sweep, params: CMCParams) -> np.ndarray:
    """The correlations the vote uses: each held to a whole cell's significance.

    Fisher's ``z = atanh(r)`` has a standard error falling with the root of the number of
    independent samples, here proportional to the area valid in both surfaces. A cell
    whose overlap covers a fraction ``f`` of its area counts as a whole cell with
    ``tanh(atanh(r) sqrt(f))``: ``corr_min`` then means the same evidence for every cell,
    and the many small edge cells, whose few pixels correlate highly by chance, no longer
    pass on a correlation a whole cell would need.
    """
    if not params.area_weighted or sweep.support is None:
        return sweep.corr
    r = np.clip(sweep.corr, -0.999999, 0.999999)
    return np.tanh(np.arctanh(r) * np.sqrt(np.clip(sweep.support, 0.0, 1.0)))


def _decide(sweep: _Sweep, params: CMCParams, shift_max: float) -> _Decision:
    """High-CMC vote of one direction: the registration and the cells congruent with it.

    The registration is the rotation with the most congruent cells (ties: larger summed
    correlation of those cells) and its consensus translation. A cell is congruent when, at
    some rotation within ``theta_max_deg`` of it, its correlation reaches ``corr_min`` and
    its translation lies within ``shift_max`` of the consensus: Tong's high-CMC union over
    neighbouring rotations, held to one translation so that non-matching cells, which agree
    on nothing, are not collected from several rotations.
    """
    best, (dx, dy), counts, cell_angle, cell_congruent = _high_cmc(
        sweep.dx, sweep.dy, _vote_corr(sweep, params), sweep.angles, params.corr_min, shift_max,
        params.theta_max_deg,
    )  # fmt: skip
    return _Decision(
        rotation=float(sweep.angles[best]),
        dx=float(dx),
        dy=float(dy),
        count=int(cell_congruent.sum()),
        angle_index=int(best),
        cell_angle=cell_angle,
        congruent=cell_congruent,
        counts=counts,
    )


def _tiebreak(fwd: _Sweep, fwd_dec: _Decision, bwd: _Sweep, bwd_dec: _Decision) -> float:
    values = []
    for sweep, dec in ((fwd, fwd_dec), (bwd, bwd_dec)):
        c = sweep.corr[dec.cell_angle, np.arange(sweep.corr.shape[1])]
        values.append(c[np.isfinite(c)])
    allc = np.concatenate(values)
    if allc.size == 0:
        return 0.0
    return float(np.clip(allc.mean(), 0.0, 0.999))


def _window(theta: float, params: CMCParams) -> np.ndarray:
    """Rotations within ``theta_max_deg`` of ``theta`` on the sweep's step."""
    k = math.floor(params.theta_max_deg / params.angle_step_deg + 1e-9)
    angles = theta + params.angle_step_deg * np.arange(-k, k + 1)
    return _angle_diff(angles, 0.0)


def _low(grid: _Grid, params: CMCParams) -> _Grid:
    return grid.downsampled(params.coarse_factor)


def _coarse_rotations(coarse: _Sweep, params: CMCParams, shift_max: float) -> list[float]:
    """Best rotations of the reduced-resolution sweep, at least ``theta_max`` apart.

    A rotation with fewer than ``coarse_keep_fraction`` times the best one's congruent
    cells is not kept. The pair's count is that of its best candidate, so leaving one out
    can only lower a count; it saves a refinement window and its backward search.
    """
    counts, _, congruent = _vote_per_rotation(
        coarse.dx, coarse.dy, _vote_corr(coarse, params), params.corr_min, shift_max
    )
    corr = np.nan_to_num(coarse.corr)
    strength = np.where(congruent, corr, 0.0).sum(axis=1)
    valid = (~np.isnan(coarse.corr)).sum(axis=1)
    mean = corr.sum(axis=1) / np.maximum(valid, 1)  # nanmean, 0 where all NaN
    # Rotations by vote, then summed correlation of their congruent cells, then mean corr.
    order = np.lexsort((-mean, -strength, -counts))
    least = params.coarse_keep_fraction * counts[order[0]]
    chosen: list[float] = []
    for i in order:
        if counts[i] < least:
            break
        theta = float(coarse.angles[i])
        if all(abs(_angle_diff(theta, c)) > params.theta_max_deg for c in chosen):
            chosen.append(theta)
        if len(chosen) == params.coarse_candidates:
            break
    return chosen


def _coarse_search(
    grid: _Grid,
    target: np.ndarray,
    angles: np.ndarray,
    params: CMCParams,
    shift_max: float,
    templates: dict | None = None,
    near: list[float] | None = None,
    rotated: _Rotated | None = None,
) -> tuple[_Sweep, list[float]]:
    """Reduced-resolution sweep and the rotations to refine at full resolution.

    The sweep visits every ``coarse_angle_stride``-th rotation of ``angles``: a matching
    pair's count changes little over one sweep step, so its best rotation is found from
    its neighbours, and :func:`_refine` carries the coarse translations over to the
    rotations skipped. ``rotated``: the target's kept rotated copies (:class:`_Rotated`).
    """
    visited = np.asarray(angles[:: max(1, params.coarse_angle_stride)], dtype=float)
    memo = _Memo(templates={} if templates is None else templates, rotated=rotated)
    if near is None:
        coarse = _sweep(grid, target, visited, params, scale=params.coarse_factor, memo=memo)
        return coarse, _coarse_rotations(coarse, params, shift_max)
    # Only the rotations near the estimates, then the candidates' neighbours that the
    # refinement carries translations from (as it would from the whole sweep's).
    tol = params.theta_max_deg + 1e-6
    keep = np.zeros(len(visited), dtype=bool)
    for theta in near:
        keep |= np.abs(_angle_diff(visited, theta)) <= tol
    coarse = _sweep(grid, target, visited[keep], params, scale=params.coarse_factor, memo=memo)
    rotations = _coarse_rotations(coarse, params, shift_max)
    for theta in rotations:
        for w in _window(theta, params):
            gap = np.abs(_angle_diff(visited, w))
            keep |= gap <= gap.min() + 1e-6
    coarse = _sweep(grid, target, visited[keep], params, scale=params.coarse_factor, memo=memo)
    return coarse, rotations


def _carried_centres(grid: _Grid, coarse: _Sweep, angles: np.ndarray) -> np.ndarray:
    """Each cell's coarse translation carried over to each of ``angles``.

    At a rotation the coarse sweep did not visit, a cell takes the translation found at the
    nearest visited rotation (of two as near, the one where it correlates better), moved so
    that the cell's centre lands on the same target point: reference point ``p`` at
    translation ``d'`` and rotation ``t'`` meets the target point that ``p`` meets at
    rotation ``t`` with ``d = Rot(t' - t) (p + d' - c) - (p - c)``, ``c`` the reference
    centre. A matching cell thus keeps its place in the target, as a search at ``t``
    would find it; a non-matching one keeps a translation of its own.

    Returns
    -------
    ndarray, shape (len(angles), n_cells, 2)
        ``(dx, dy)`` in full-resolution pixels; NaN where the cell found nothing.
    """
    px = grid.lefts + (grid.w - 1) / 2.0 - (grid.shape[1] - 1) / 2.0
    py = grid.tops + (grid.h - 1) / 2.0 - (grid.shape[0] - 1) / 2.0
    return _carry_translations(
        px, py, coarse.angles, coarse.dx, coarse.dy, coarse.corr, np.asarray(angles, dtype=float)
    )


def _refine(
    grid: _Grid,
    target: np.ndarray,
    coarse: _Sweep,
    angles: np.ndarray,
    params: CMCParams,
    memo: _Memo | None = None,
) -> _Sweep:
    """Full-resolution search of each cell near its own coarse translation.

    Each cell keeps the translation it found at reduced resolution over the whole cmcR
    region (so cells of non-matching pairs scatter as they would in a full-resolution
    search), carried over to rotations the coarse sweep skipped
    (:func:`_carried_centres`); only the last ``2 * coarse_factor`` pixels are searched at
    full resolution.
    """
    centres = _carried_centres(grid, coarse, angles)
    margin = 2 * params.coarse_factor
    return _sweep(grid, target, angles, params, centres=centres, margin=margin, memo=memo)


def _direction_result(
    grid: _Grid, sweep: _Sweep, dec: _Decision, pixel_size_um: float
) -> DirectionResult:
    k = np.arange(grid.tops.shape[0])
    a = dec.cell_angle
    table = (
        grid.index, grid.grid[1], grid.tops, grid.lefts, grid.valid_fraction, sweep.angles[a],
        sweep.dx[a, k], sweep.dy[a, k], sweep.corr[a, k], dec.congruent,
    )  # fmt: skip
    reg = Registration(
        rotation_deg=dec.rotation,
        dx_px=dec.dx,
        dy_px=dec.dy,
        dx_um=dec.dx * pixel_size_um,
        dy_um=dec.dy * pixel_size_um,
    )
    return DirectionResult(
        cmc_count=dec.count,
        n_cells=int(grid.tops.shape[0]),
        registration=reg,
        angles_deg=sweep.angles,
        counts_per_angle=dec.counts,
        _cell_table=table,
    )


make_module_callable(__name__, compare)
