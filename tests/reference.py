"""Plain NumPy references of the kernels in ``kernels/``: slow, obviously correct."""

from __future__ import annotations

import numpy as np


def rotate_masked(image, theta, out_shape, centre_in, centre_out):
    """Bilinear rotation with the kernel's conventions (see ``_rotate_masked``)."""
    rows, cols = image.shape
    i, j = np.indices(out_shape, dtype=np.float64)
    u = j - centre_out[1]
    v = i - centre_out[0]
    c, s = np.cos(theta), np.sin(theta)
    x = c * u - s * v + centre_in[1]
    y = s * u + c * v + centre_in[0]
    out = np.full(out_shape, np.nan)
    for idx in np.ndindex(*out_shape):
        xx, yy = x[idx], y[idx]
        x0, y0 = np.floor(xx), np.floor(yy)
        fx, fy = xx - x0, yy - y0
        total = 0.0
        ok = True
        for dy, wy in ((0, 1 - fy), (1, fy)):
            for dx, wx in ((0, 1 - fx), (1, fx)):
                weight = wy * wx
                if weight == 0:
                    continue
                a, b = int(y0) + dy, int(x0) + dx
                if not (0 <= a < rows and 0 <= b < cols) or np.isnan(image[a, b]):
                    ok = False
                    break
                total += weight * image[a, b]
            if not ok:
                break
        if ok:
            out[idx] = total
    return out


def downsample_mean(image, factor, min_valid):
    rows, cols = image.shape[0] // factor, image.shape[1] // factor
    blocks = image[: rows * factor, : cols * factor].reshape(rows, factor, cols, factor)
    blocks = blocks.transpose(0, 2, 1, 3).reshape(rows, cols, -1).astype(np.float64)
    count = (~np.isnan(blocks)).sum(axis=-1)
    total = np.nansum(blocks, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
    return np.where((count >= min_valid) & (count > 0), mean, np.nan)


def pearson_valid(a, b):
    """Pearson correlation over the pixels valid in both, and their number."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    ok = ~(np.isnan(a) | np.isnan(b))
    n = int(ok.sum())
    if n < 2:
        return np.nan, n
    da = a[ok] - a[ok].mean()
    db = b[ok] - b[ok].mean()
    saa, sbb = (da * da).sum(), (db * db).sum()
    if saa <= 0 or sbb <= 0:
        return np.nan, n
    return float((da * db).sum() / np.sqrt(saa * sbb)), n


def masked_corr_at(template, region, u, v):
    h, w = template.shape
    return pearson_valid(template, region[u : u + h, v : v + w])


def masked_ncc_map(template, region, min_overlap):
    h, w = template.shape
    out = np.full((region.shape[0] - h + 1, region.shape[1] - w + 1), np.nan)
    for u, v in np.ndindex(*out.shape):
        corr, n = masked_corr_at(template, region, u, v)
        if n >= min_overlap:
            out[u, v] = corr
    return out


def centred_templates(image, tops, lefts, h, w, fft_shape):
    out = np.zeros((len(tops), *fft_shape))
    valid = np.zeros(len(tops), dtype=int)
    for k, (t, c) in enumerate(zip(tops, lefts, strict=True)):
        cell = image[t : t + h, c : c + w].astype(np.float64)
        ok = ~np.isnan(cell)
        valid[k] = ok.sum()
        if valid[k]:
            out[k, :h, :w] = np.where(ok, cell - cell[ok].mean(), 0.0)
    return out, valid


def extract_regions(image, tops, lefts, rows, cols, fft_shape):
    padded = np.full((image.shape[0] + 2 * rows, image.shape[1] + 2 * cols), np.nan)
    padded[rows : rows + image.shape[0], cols : cols + image.shape[1]] = image
    raw = np.empty((len(tops), rows, cols))
    centred = np.zeros((len(tops), *fft_shape))
    for k, (t, c) in enumerate(zip(tops, lefts, strict=True)):
        raw[k] = padded[t + rows : t + 2 * rows, c + cols : c + 2 * cols]
        ok = ~np.isnan(raw[k])
        if ok.any():
            centred[k, :rows, :cols] = np.where(ok, raw[k] - raw[k][ok].mean(), 0.0)
    return raw, centred


def rotated_regions(
    target, thetas, out_shape, centre_in, centre_out, tops, lefts, rows, cols, fft_shape
):
    """Regions of the target rotated (by ``thetas[k]`` for region k) onto ``out_shape``."""
    raw, centred = [], []
    for k, theta in enumerate(thetas):
        moved = rotate_masked(target, theta, out_shape, centre_in, centre_out)
        r, c = extract_regions(moved, tops[k : k + 1], lefts[k : k + 1], rows, cols, fft_shape)
        raw.append(r)
        centred.append(c)
    return np.concatenate(raw), np.concatenate(centred)


def direct_ccf(templates, centred, h, w, lags):
    """Cross-correlation of zero-filled templates with regions, by explicit sums."""
    n = templates.shape[0]
    out = np.zeros((n, *lags))
    for k in range(n):
        t = templates[k, :h, :w]
        for u, v in np.ndindex(*lags):
            out[k, u, v] = (t * centred[k, u : u + h, v : v + w]).sum()
    return out


def best_lags(ccf, centred, raw, image, tops, lefts, h, w, min_overlap):
    n, rows, cols = raw.shape
    lag_u = np.full(n, -1)
    lag_v = np.full(n, -1)
    corr = np.full(n, np.nan)
    overlap = np.zeros(n, dtype=int)
    for k in range(n):
        best, bu, bv = -np.inf, -1, -1
        for u, v in np.ndindex(rows - h + 1, cols - w + 1):
            count = (~np.isnan(raw[k, u : u + h, v : v + w])).sum()
            energy = (centred[k, u : u + h, v : v + w] ** 2).sum()
            if count < min_overlap[k] or energy <= 0:
                continue
            score = ccf[k, u, v] / np.sqrt(energy)
            if score > best:
                best, bu, bv = score, u, v
        if bu < 0:
            continue
        template = image[tops[k] : tops[k] + h, lefts[k] : lefts[k] + w]
        value, both = masked_corr_at(template, raw[k], bu, bv)
        overlap[k] = both
        if both >= min_overlap[k]:
            lag_u[k], lag_v[k], corr[k] = bu, bv, value
    return lag_u, lag_v, corr, overlap


def overall_corr(reference, moved, shift_rows, shift_cols):
    rows, cols = reference.shape
    a = np.full(moved.shape, np.nan)
    b = np.full(moved.shape, np.nan)
    for i, j in np.ndindex(rows, cols):
        ii, jj = i + shift_rows, j + shift_cols
        if 0 <= ii < moved.shape[0] and 0 <= jj < moved.shape[1]:
            a[ii, jj] = reference[i, j]
            b[ii, jj] = moved[ii, jj]
    return pearson_valid(a, b)


def congruent_vote(dx, dy, corr, corr_min, shift_max):
    n = len(dx)
    with np.errstate(invalid="ignore"):
        candidate = corr >= corr_min
    best_key, best = None, -1
    for i in np.flatnonzero(candidate):
        group = candidate & (np.abs(dx - dx[i]) <= shift_max) & (np.abs(dy - dy[i]) <= shift_max)
        key = (int(group.sum()), float(corr[group].sum()))
        if best_key is None or key > best_key:
            best_key, best = key, i
    if best < 0:
        return 0, np.nan, np.nan, np.zeros(n, dtype=bool)
    group = candidate & (np.abs(dx - dx[best]) <= shift_max) & (np.abs(dy - dy[best]) <= shift_max)
    cx, cy = float(np.median(dx[group])), float(np.median(dy[group]))
    congruent = candidate & (np.abs(dx - cx) <= shift_max) & (np.abs(dy - cy) <= shift_max)
    return int(congruent.sum()), cx, cy, congruent


def high_cmc(dx, dy, corr, angles, corr_min, shift_max, theta_max):
    """The high-CMC decision of one direction, from per-rotation votes."""
    votes = [congruent_vote(dx[a], dy[a], corr[a], corr_min, shift_max) for a in range(len(dx))]
    counts = np.array([v[0] for v in votes])
    strength = np.array([np.nansum(np.where(v[3], corr[a], 0.0)) for a, v in enumerate(votes)])
    best = int(np.lexsort((-strength, -counts))[0])
    cx, cy = votes[best][1:3]
    if not np.isfinite(cx):
        _, mx, my, _ = congruent_vote(dx[best], dy[best], corr[best], -1.0, shift_max)
        cx, cy = (v if np.isfinite(v) else 0.0 for v in (mx, my))
    near = np.abs((angles - angles[best] + 180.0) % 360.0 - 180.0) <= theta_max + 1e-9
    with np.errstate(invalid="ignore"):
        agree = (
            near[:, None]
            & (corr >= corr_min)
            & (np.abs(dx - cx) <= shift_max)
            & (np.abs(dy - cy) <= shift_max)
        )
    congruent = agree.any(axis=0)
    cell_angle = np.where(congruent, np.argmax(np.where(agree, corr, -np.inf), axis=0), best)
    return best, np.array([cx, cy]), counts, cell_angle, congruent


def carry_translations(px, py, coarse_angles, dx, dy, corr, angles):
    """Coarse translations carried to ``angles``, turned to keep each cell's target point."""
    gap = np.abs((coarse_angles[None, :] - angles[:, None] + 180.0) % 360.0 - 180.0)
    nearest = gap <= gap.min(axis=1, keepdims=True) + 1e-6
    key = np.where(nearest[:, :, None], np.where(np.isnan(corr), -2.0, corr)[None], -3.0)
    pick = np.argmax(key, axis=1)
    cells = np.arange(dx.shape[1])
    delta = np.radians((coarse_angles[pick] - angles[:, None] + 180.0) % 360.0 - 180.0)
    x, y = px + dx[pick, cells], py + dy[pick, cells]
    c, s = np.cos(delta), np.sin(delta)
    return np.stack([c * x - s * y - px, s * x + c * y - py], axis=2)
