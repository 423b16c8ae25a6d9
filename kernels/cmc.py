"""Congruent-matching-cells vote (which cells agree on one registration) and the carrying of
coarse translations between the rotations of a sweep."""

from __future__ import annotations

import numpy as np
from numba import njit

from .config import JIT


@njit(**JIT)
def _median(values):
    # An insertion sort (NaN last, as np.sort) of at most a grid's cells: np.sort would add
    # Numba's quicksort to the vote's compilation (about 2 s of CPU; sorted values alike).
    ordered = values.copy()
    n = ordered.shape[0]
    for i in range(1, n):
        value = ordered[i]
        j = i - 1
        while j >= 0 and (ordered[j] > value or (np.isnan(ordered[j]) and not np.isnan(value))):
            ordered[j + 1] = ordered[j]
            j -= 1
        ordered[j + 1] = value
    if n % 2 == 1:
        return ordered[n // 2]
    return 0.5 * (ordered[n // 2 - 1] + ordered[n // 2])


@njit(**JIT)
def _congruent_vote(dx, dy, corr, corr_min, shift_max):
    """Find the translation most cells agree on, and the cells congruent with it.

    A cell is a candidate when its correlation is at least ``corr_min``. The consensus is
    the median translation of the largest group of candidates lying within ``shift_max``
    (in each axis) of one candidate's translation; ties go to the group with the larger
    summed correlation, then to the lower cell index. Congruent cells are the candidates
    within ``shift_max`` of the consensus.

    Parameters
    ----------
    dx, dy : ndarray of float64, shape (n,)
        Best translation of each cell (pixels).
    corr : ndarray of float64, shape (n,)
        Correlation at that translation (NaN: no match).
    corr_min, shift_max : float

    Returns
    -------
    count : int
    consensus_dx, consensus_dy : float
        NaN when no cell is a candidate.
    congruent : ndarray of bool, shape (n,)
    """
    n = dx.shape[0]
    congruent = np.zeros(n, dtype=np.bool_)
    candidate = np.zeros(n, dtype=np.bool_)
    for k in range(n):
        candidate[k] = corr[k] >= corr_min  # False for NaN
    best_count = 0
    best_sum = -np.inf
    best = -1
    for i in range(n):
        if not candidate[i]:
            continue
        count = 0
        total = 0.0
        for j in range(n):
            if candidate[j] and abs(dx[j] - dx[i]) <= shift_max and abs(dy[j] - dy[i]) <= shift_max:
                count += 1
                total += corr[j]
        if count > best_count or (count == best_count and total > best_sum):
            best_count = count
            best_sum = total
            best = i
    if best < 0:
        return 0, np.nan, np.nan, congruent
    group_x = np.empty(best_count, dtype=np.float64)
    group_y = np.empty(best_count, dtype=np.float64)
    m = 0
    for j in range(n):
        if (
            candidate[j]
            and abs(dx[j] - dx[best]) <= shift_max
            and abs(dy[j] - dy[best]) <= shift_max
        ):
            group_x[m] = dx[j]
            group_y[m] = dy[j]
            m += 1
    cx = _median(group_x)
    cy = _median(group_y)
    count = 0
    for j in range(n):
        if candidate[j] and abs(dx[j] - cx) <= shift_max and abs(dy[j] - cy) <= shift_max:
            congruent[j] = True
            count += 1
    return count, cx, cy, congruent


@njit(**JIT)
def _vote_per_rotation(dx, dy, corr, corr_min, shift_max):
    """:func:`_congruent_vote` for every rotation of a sweep.

    Parameters
    ----------
    dx, dy, corr : ndarray of float64, shape (n_angles, n_cells)

    Returns
    -------
    counts : ndarray of int64, shape (n_angles,)
    consensus : ndarray of float64, shape (n_angles, 2)
        ``(dx, dy)`` per rotation.
    congruent : ndarray of bool, shape (n_angles, n_cells)
    """
    n_angles, n_cells = dx.shape
    counts = np.zeros(n_angles, dtype=np.int64)
    consensus = np.empty((n_angles, 2), dtype=np.float64)
    congruent = np.zeros((n_angles, n_cells), dtype=np.bool_)
    for a in range(n_angles):
        count, cx, cy, flags = _congruent_vote(dx[a], dy[a], corr[a], corr_min, shift_max)
        counts[a] = count
        consensus[a, 0] = cx
        consensus[a, 1] = cy
        # element by element: a row assignment compiles Numba's broadcasting checks and their
        # error messages (about 4 s of CPU on the first run)
        for k in range(n_cells):
            congruent[a, k] = flags[k]
    return counts, consensus, congruent


@njit(inline="always", **JIT)
def _angle_diff(a, b):
    """Signed difference of two angles in degrees, wrapped to [-180, 180)."""
    return (a - b + 180.0) % 360.0 - 180.0


@njit(**JIT)
def _carry_translations(px, py, coarse_angles, dx, dy, corr, angles):
    """Coarse translations carried over to other rotations of the sweep.

    For each of ``angles``, each cell takes the translation found at the nearest coarse
    rotation (of equally near ones, where the cell correlates best; NaN lowest, the first
    of equals), turned by the angle between the two rotations about the reference centre,
    so that the cell's centre stays on the same target point.

    Parameters
    ----------
    px, py : ndarray of float64, shape (n,)
        Cell centres relative to the reference centre (x: column, y: row).
    coarse_angles : ndarray of float64, shape (C,)
        Rotations of the coarse sweep (degrees).
    dx, dy, corr : ndarray of float64, shape (C, n)
        The coarse sweep's translations (full-resolution pixels) and correlations.
    angles : ndarray of float64, shape (A,)
        Rotations to carry them to (degrees).

    Returns
    -------
    ndarray of float64, shape (A, n, 2)
        ``(dx, dy)`` per rotation and cell; NaN where the cell found nothing there.
    """
    n_angles = angles.shape[0]
    n_coarse, n = dx.shape
    out = np.empty((n_angles, n, 2), dtype=np.float64)
    gap = np.empty(n_coarse, dtype=np.float64)
    for i in range(n_angles):
        least = np.inf
        for j in range(n_coarse):
            gap[j] = abs(_angle_diff(coarse_angles[j], angles[i]))
            least = min(least, gap[j])
        for k in range(n):
            pick = -1
            best = -np.inf
            for j in range(n_coarse):
                if gap[j] <= least + 1e-6:
                    c = -2.0 if np.isnan(corr[j, k]) else corr[j, k]
                    if c > best:
                        best = c
                        pick = j
            delta = np.radians(_angle_diff(coarse_angles[pick], angles[i]))
            cos = np.cos(delta)
            sin = np.sin(delta)
            x = px[k] + dx[pick, k]
            y = py[k] + dy[pick, k]
            out[i, k, 0] = cos * x - sin * y - px[k]
            out[i, k, 1] = sin * x + cos * y - py[k]
    return out


@njit(**JIT)
def _high_cmc(dx, dy, corr, angles, corr_min, shift_max, theta_max):
    """High-CMC decision of one direction (Tong 2015), from a sweep's per-cell results.

    The registration is the rotation with the most congruent cells (:func:`_congruent_vote`;
    ties: larger summed correlation of those cells, then the first) and its consensus
    translation; with no congruent cell anywhere, the modal translation of every cell at
    that rotation (0 where there is none). A cell is congruent when, at a rotation within
    ``theta_max`` degrees of it, its correlation reaches ``corr_min`` and its translation
    lies within ``shift_max`` of the consensus; it is reported at the rotation where it
    correlates best among those (the registration's rotation when it is not congruent).

    Parameters
    ----------
    dx, dy, corr : ndarray of float64, shape (n_angles, n_cells)
    angles : ndarray of float64, shape (n_angles,)
        Degrees.
    corr_min, shift_max, theta_max : float

    Returns
    -------
    best : int
        Index of the registration's rotation.
    consensus : ndarray of float64, shape (2,)
        ``(dx, dy)`` of the registration.
    counts : ndarray of int64, shape (n_angles,)
        Congruent cells per rotation.
    cell_angle : ndarray of int64, shape (n_cells,)
    congruent : ndarray of bool, shape (n_cells,)
    """
    n_angles, n = dx.shape
    counts, consensus, flags = _vote_per_rotation(dx, dy, corr, corr_min, shift_max)
    best = 0
    best_strength = -np.inf
    for a in range(n_angles):
        strength = 0.0
        for k in range(n):
            if flags[a, k] and not np.isnan(corr[a, k]):
                strength += corr[a, k]
        if counts[a] > counts[best] or (counts[a] == counts[best] and strength > best_strength):
            best = a
            best_strength = strength
    cx = consensus[best, 0]
    cy = consensus[best, 1]
    if not np.isfinite(cx):
        # No cell passes anywhere: the modal translation at the best rotation.
        _, mode, _ = _vote_per_rotation(
            dx[best : best + 1], dy[best : best + 1], corr[best : best + 1], -1.0, shift_max
        )
        cx = mode[0, 0] if np.isfinite(mode[0, 0]) else 0.0
        cy = mode[0, 1] if np.isfinite(mode[0, 1]) else 0.0
    near = np.empty(n_angles, dtype=np.bool_)
    for a in range(n_angles):
        near[a] = abs(_angle_diff(angles[a], angles[best])) <= theta_max + 1e-9
    cell_angle = np.full(n, best, dtype=np.int64)
    congruent = np.zeros(n, dtype=np.bool_)
    for k in range(n):
        top = -np.inf
        for a in range(n_angles):
            c = corr[a, k]
            if (
                near[a]
                and c >= corr_min
                and abs(dx[a, k] - cx) <= shift_max
                and abs(dy[a, k] - cy) <= shift_max
                and c > top
            ):
                top = c
                cell_angle[k] = a
                congruent[k] = True
    return best, np.array([cx, cy]), counts, cell_angle, congruent
