"""Congruent-matching-cells vote: which cells agree on one registration."""

from __future__ import annotations

import numpy as np
from numba import njit

from .config import JIT


@njit(**JIT)
def _median(values):
    ordered = np.sort(values)
    n = ordered.shape[0]
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
        congruent[a] = flags
    return counts, consensus, congruent
