"""Masked resampling kernels: rotation and block downsampling of NaN-masked surfaces."""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .config import JIT, PARALLEL


@njit(**JIT)
def _rotate_masked(image, theta, out_rows, out_cols, cy_in, cx_in, cy_out, cx_out):
    """Rotate a NaN-masked image by bilinear interpolation onto a new grid.

    The output pixel ``p`` (column ``x``, row ``y``) takes the value of the input at
    ``c_in + Rot(theta) (p - c_out)``, where ``Rot`` is the usual rotation matrix acting on
    ``(x, y)``. With rows pointing down, a positive ``theta`` turns the picture
    counterclockwise on screen (the ``cv2.getRotationMatrix2D`` convention).

    Parameters
    ----------
    image : ndarray of float32, shape (M, N)
        NaN outside the region.
    theta : float
        Angle in radians.
    out_rows, out_cols : int
        Output shape.
    cy_in, cx_in, cy_out, cx_out : float
        Rotation centres in the input and output grids (row, column).

    Returns
    -------
    ndarray of float32, shape (out_rows, out_cols)
        NaN where the source point falls outside the input or any input pixel with a
        non-zero interpolation weight is NaN.
    """
    # Not a call to _rotate_stack: a cached kernel that calls a parallel one crashes when it
    # was compiled with the callee taken from the cache and is then loaded from the cache
    # itself (Numba 0.68; tests/test_kernel_cmc.py reloads them). Not parallel either: a
    # comparison rotates one image with it (under a millisecond), and a parallel kernel
    # takes twice as long to compile.
    out = np.empty((out_rows, out_cols), dtype=np.float32)
    c = math.cos(theta)
    s = math.sin(theta)
    for i in range(out_rows):
        for j in range(out_cols):
            out[i, j] = _rotated_at(image, c, s, i, j, cy_in, cx_in, cy_out, cx_out)
    return out


@njit(parallel=PARALLEL, **JIT)
def _rotate_stack(image, thetas, out_rows, out_cols, cy_in, cx_in, cy_out, cx_out):
    """:func:`_rotate_masked` at each of several angles, in one call.

    Parameters
    ----------
    image : ndarray of float32, shape (M, N)
    thetas : ndarray of float64, shape (m,)
        Angles in radians.
    out_rows, out_cols, cy_in, cx_in, cy_out, cx_out
        As in :func:`_rotate_masked`.

    Returns
    -------
    ndarray of float32, shape (m, out_rows, out_cols)
        ``[t]`` is bitwise ``_rotate_masked(image, thetas[t], ...)``.
    """
    out = np.empty((thetas.shape[0], out_rows, out_cols), dtype=np.float32)
    for r in prange(thetas.shape[0] * out_rows):
        t = r // out_rows
        i = r % out_rows
        c = math.cos(thetas[t])
        s = math.sin(thetas[t])
        for j in range(out_cols):
            out[t, i, j] = _rotated_at(image, c, s, i, j, cy_in, cx_in, cy_out, cx_out)
    return out


@njit(inline="always", **JIT)
def _rotated_at(image, c, s, i, j, cy_in, cx_in, cy_out, cx_out):
    """Value of output pixel ``(i, j)`` of :func:`_rotate_masked` (``c, s``: cos, sin)."""
    rows, cols = image.shape
    v = i - cy_out
    u = j - cx_out
    x = c * u - s * v + cx_in
    y = s * u + c * v + cy_in
    x0 = math.floor(x)
    y0 = math.floor(y)
    fx = x - x0
    fy = y - y0
    ix = int(x0)
    iy = int(y0)
    value = np.nan
    if ix >= 0 and iy >= 0 and ix < cols and iy < rows:
        # A neighbour with zero weight may lie outside the image or be NaN.
        ix1 = ix + 1 if fx > 0.0 else ix
        iy1 = iy + 1 if fy > 0.0 else iy
        if ix1 < cols and iy1 < rows:
            a = float(image[iy, ix])
            b = float(image[iy, ix1])
            d = float(image[iy1, ix])
            e = float(image[iy1, ix1])
            top = a if fx == 0.0 else a * (1.0 - fx) + b * fx
            bottom = d if fx == 0.0 else d * (1.0 - fx) + e * fx
            value = top if fy == 0.0 else top * (1.0 - fy) + bottom * fy
    return np.float32(value)


@njit(**JIT)
def _downsample_mean(image, factor, min_valid):
    """Mean over ``factor x factor`` blocks, ignoring NaN.

    Parameters
    ----------
    image : ndarray of float32, shape (M, N)
    factor : int
        Block side; trailing rows and columns that do not fill a block are dropped.
    min_valid : int
        A block with fewer valid pixels becomes NaN.

    Returns
    -------
    ndarray of float32, shape (M // factor, N // factor)
    """
    rows = image.shape[0] // factor
    cols = image.shape[1] // factor
    out = np.empty((rows, cols), dtype=np.float32)
    for i in range(rows):
        for j in range(cols):
            total = 0.0
            count = 0
            for a in range(i * factor, (i + 1) * factor):
                for b in range(j * factor, (j + 1) * factor):
                    value = float(image[a, b])
                    if not np.isnan(value):
                        total += value
                        count += 1
            out[i, j] = total / count if count >= min_valid and count > 0 else np.nan
    return out
