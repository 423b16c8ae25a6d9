"""Kernels of the CMC comparison against their NumPy references (tests/reference.py)."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numba
import numpy as np
import pytest
import reference as ref
import scipy.fft
from numpy.testing import assert_allclose, assert_array_equal
from ribin.kernels.cmc import (
    _carry_translations,
    _congruent_vote,
    _high_cmc,
    _vote_per_rotation,
)
from ribin.kernels.ncc import (
    _best_lags,
    _centred_templates,
    _extract_regions,
    _masked_corr_at,
    _masked_ncc_map,
    _overall_corr,
    _rotated_regions,
)
from ribin.kernels.resample import _downsample_mean, _rotate_masked, _rotate_stack
from ribin.kernels.signatures import any_types


@pytest.fixture(autouse=True)
def _kernels_take_any_types():
    """These tests pass types of their own (float64 correlations...): let kernels compile."""
    with any_types():
        yield


def masked_field(rng, shape, nan_fraction=0.3):
    """Random float32 surface with NaN holes (blobs and single pixels)."""
    field = rng.normal(size=shape).astype(np.float32)
    field[rng.random(shape) < nan_fraction / 3] = np.nan
    r0, c0 = rng.integers(0, shape[0]), rng.integers(0, shape[1])
    field[r0 : r0 + shape[0] // 3, c0 : c0 + shape[1] // 4] = np.nan
    return field


def extract_one(image, tops, lefts, rows, cols, fft_rows, fft_cols):
    """``_extract_regions`` with every region from one image."""
    which = np.zeros(len(tops), dtype=np.int64)
    return _extract_regions(image[None], which, tops, lefts, rows, cols, fft_rows, fft_cols)


@pytest.mark.parametrize("shape", [(13, 17), (16, 16), (9, 21)])
@pytest.mark.parametrize("theta", [0.0, 0.3, -1.1, math.pi / 2, 2.9])
def test_rotate_masked_matches_reference(shape, theta):
    rng = np.random.default_rng(hash((shape, theta)) % 2**32)
    image = masked_field(rng, shape)
    out_shape = (shape[0] + 2, shape[1] - 1)
    c_in = ((shape[0] - 1) / 2, (shape[1] - 1) / 2)
    c_out = ((out_shape[0] - 1) / 2 + 0.5, (out_shape[1] - 1) / 2)
    got = _rotate_masked(image, theta, *out_shape, *c_in, *c_out)
    want = ref.rotate_masked(image, theta, out_shape, c_in, c_out)
    assert got.dtype == np.float32
    assert_array_equal(np.isnan(got), np.isnan(want))
    assert_allclose(got, want, rtol=1e-5, atol=1e-5, equal_nan=True)


def test_rotate_stack_is_rotate_masked_per_angle():
    rng = np.random.default_rng(7)
    image = masked_field(rng, (15, 12))
    thetas = np.array([0.0, 0.4, -2.2, math.pi / 2, 0.4])
    out_shape, c_in, c_out = (14, 13), (7.0, 5.5), (6.5, 6.0)
    got = _rotate_stack(image, thetas, *out_shape, *c_in, *c_out)
    assert got.shape == (len(thetas), *out_shape) and got.dtype == np.float32
    for t, theta in enumerate(thetas):
        assert_array_equal(got[t], _rotate_masked(image, theta, *out_shape, *c_in, *c_out))
        want = ref.rotate_masked(image, theta, out_shape, c_in, c_out)
        assert_allclose(got[t], want, rtol=1e-5, atol=1e-5, equal_nan=True)
    assert _rotate_stack(image, thetas[:0], *out_shape, *c_in, *c_out).shape == (0, *out_shape)


@pytest.mark.slow  # three processes compile kernels into an empty cache
@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="about the Numba cache")
def test_rotation_kernels_reload_from_a_partly_filled_cache(tmp_path):
    # One process caches _rotate_stack; the next compiles _rotate_masked with _rotate_stack
    # from the cache; the third loads both. A cached kernel calling a parallel one crashed
    # (segmentation fault) in the third.
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_DISABLE_JIT"}
    env.update(NUMBA_CACHE_DIR=str(tmp_path), RIBIN_NUMBA_CACHE="1")
    setup = (
        "import numpy as np; from ribin.kernels.resample import _rotate_masked, _rotate_stack;"
        "im = np.ones((9, 9), np.float32);"
    )
    for step in (
        "_rotate_stack(im, np.zeros(2), 9, 9, 4.0, 4.0, 4.0, 4.0)",
        "_rotate_masked(im, 0.5, 9, 9, 4.0, 4.0, 4.0, 4.0)",
        "_rotate_masked(im, 0.5, 9, 9, 4.0, 4.0, 4.0, 4.0)",
    ):
        run = subprocess.run(
            [sys.executable, "-c", setup + step], env=env, capture_output=True, timeout=600
        )
        assert run.returncode == 0, (step, run.returncode, run.stderr[-2000:])


def test_rotate_identity_and_quarter_turn():
    rng = np.random.default_rng(1)
    image = masked_field(rng, (11, 11))
    c = (5.0, 5.0)
    assert_array_equal(_rotate_masked(image, 0.0, 11, 11, *c, *c), image)
    quarter = _rotate_masked(image, math.pi / 2, 11, 11, *c, *c)
    # Counterclockwise on screen: the output's first row is the input's last column.
    assert_allclose(quarter, np.rot90(image, 1), atol=1e-5, equal_nan=True)


def test_rotate_all_nan():
    image = np.full((8, 9), np.nan, dtype=np.float32)
    assert np.isnan(_rotate_masked(image, 0.4, 8, 9, 3.5, 4.0, 3.5, 4.0)).all()


@pytest.mark.parametrize("shape,factor,min_valid", [((13, 17), 2, 2), ((12, 9), 3, 1)])
def test_downsample_mean_matches_reference(shape, factor, min_valid):
    rng = np.random.default_rng(2)
    image = masked_field(rng, shape)
    got = _downsample_mean(image, factor, min_valid)
    want = ref.downsample_mean(image, factor, min_valid)
    assert_allclose(got, want, rtol=1e-6, atol=1e-6, equal_nan=True)


@pytest.mark.parametrize("seed", range(4))
def test_masked_corr_at_matches_reference(seed):
    rng = np.random.default_rng(seed)
    template = masked_field(rng, (5, 7))
    region = masked_field(rng, (11, 12))
    for u, v in [(0, 0), (6, 5), (3, 2)]:
        got = _masked_corr_at(template, region, u, v)
        want = ref.masked_corr_at(template, region, u, v)
        assert got[1] == want[1]
        assert_allclose(got[0], want[0], rtol=1e-9, equal_nan=True)


def test_masked_corr_at_degenerate():
    template = np.full((4, 4), np.nan, dtype=np.float32)
    region = np.ones((6, 6), dtype=np.float32)
    corr, n = _masked_corr_at(template, region, 1, 1)
    assert np.isnan(corr) and n == 0
    corr, n = _masked_corr_at(np.ones((4, 4), np.float32), region, 0, 0)
    assert np.isnan(corr) and n == 16  # constant: no correlation defined


@pytest.mark.parametrize("seed", range(3))
def test_masked_ncc_map_matches_reference(seed):
    rng = np.random.default_rng(10 + seed)
    template = masked_field(rng, (6, 5))
    region = masked_field(rng, (13, 11))
    got = _masked_ncc_map(template, region, 8)
    want = ref.masked_ncc_map(template, region, 8)
    assert_allclose(got, want, rtol=1e-9, atol=1e-12, equal_nan=True)


def test_masked_ncc_map_matches_padfield():
    """Padfield's FFT masked NCC (scikit-image) agrees where the template fits inside."""
    from skimage.registration._masked_phase_cross_correlation import cross_correlate_masked

    rng = np.random.default_rng(5)
    template = masked_field(rng, (7, 6), 0.2).astype(np.float64)
    region = masked_field(rng, (15, 14), 0.2).astype(np.float64)
    got = _masked_ncc_map(template.astype(np.float32), region.astype(np.float32), 1)
    full = cross_correlate_masked(
        np.nan_to_num(region),
        np.nan_to_num(template),
        ~np.isnan(region),
        ~np.isnan(template),
        mode="full",
        axes=(0, 1),
        overlap_ratio=0.0,
    )
    # skimage's "full" map holds lag (u, v) at index (u + h - 1, v + w - 1) for region
    # against a flipped template; keep the lags where the template lies inside.
    h, w = template.shape
    want = full[h - 1 : region.shape[0], w - 1 : region.shape[1]]
    finite = np.isfinite(got)
    assert finite.sum() > 0.8 * got.size
    assert_allclose(got[finite], want[finite], atol=1e-6)


def _cells_setup(seed, image_shape=(30, 34), h=7, w=6, margin=4):
    rng = np.random.default_rng(seed)
    image = masked_field(rng, image_shape)
    target = masked_field(rng, (image_shape[0] + 3, image_shape[1] - 2))
    tops = np.array([0, 7, 14, 20], dtype=np.int64)
    lefts = np.array([0, 12, 5, 27], dtype=np.int64)
    image[tops[2] : tops[2] + h, lefts[2] : lefts[2] + w] = np.nan  # an all-NaN cell
    rows, cols = h + 2 * margin, w + 2 * margin
    fft_shape = (rows + 1, cols + 3)
    return image, target, tops, lefts, h, w, rows, cols, fft_shape


@pytest.mark.parametrize("seed", range(3))
def test_centred_templates_and_regions_match_reference(seed):
    image, target, tops, lefts, h, w, rows, cols, fft_shape = _cells_setup(seed)
    templates, valid = _centred_templates(image, tops, lefts, h, w, *fft_shape)
    want_t, want_valid = ref.centred_templates(image, tops, lefts, h, w, fft_shape)
    assert_array_equal(valid, want_valid)
    assert valid[2] == 0
    assert_allclose(templates, want_t, atol=1e-5)
    # Region corners off the image on every side.
    r_tops = tops - 4 + np.array([-3, 0, 20, 2])
    r_lefts = lefts - 4 + np.array([0, -9, 0, 4])
    raw, centred = extract_one(target, r_tops, r_lefts, rows, cols, *fft_shape)
    want_raw, want_c = ref.extract_regions(target, r_tops, r_lefts, rows, cols, fft_shape)
    assert_allclose(raw, want_raw, equal_nan=True)
    assert_allclose(centred, want_c, atol=1e-5)


def test_extract_regions_takes_each_region_from_its_image():
    rng = np.random.default_rng(11)
    images = np.stack([masked_field(rng, (23, 19)) for _ in range(3)])
    which = np.array([2, 0, 1, 2, 0], dtype=np.int64)
    tops = np.array([-3, 0, 10, 4, 15], dtype=np.int64)  # some off the image
    lefts = np.array([2, -5, 8, 0, 12], dtype=np.int64)
    raw, centred = _extract_regions(images, which, tops, lefts, 9, 8, 10, 11)
    for k, image in enumerate(images[which]):
        one = extract_one(image, tops[k : k + 1], lefts[k : k + 1], 9, 8, 10, 11)
        want_raw, want_c = ref.extract_regions(
            image, tops[k : k + 1], lefts[k : k + 1], 9, 8, (10, 11)
        )
        assert_array_equal(raw[k], one[0][0])
        assert_array_equal(centred[k], one[1][0])
        assert_allclose(raw[k], want_raw[0], equal_nan=True)
        assert_allclose(centred[k], want_c[0], atol=1e-5)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("theta", [0.0, 0.7, -2.5])
def test_rotated_regions_matches_reference(seed, theta):
    image, target, tops, lefts, _h, _w, rows, cols, fft_shape = _cells_setup(seed)
    target[5:25, 3:30] = np.nan  # most of the target invalid: some regions all-NaN
    out_shape = (image.shape[0] + 1, image.shape[1])  # odd and even sides
    c_in = ((target.shape[0] - 1) / 2, (target.shape[1] - 1) / 2)
    c_out = ((out_shape[0] - 1) / 2, (out_shape[1] - 1) / 2)
    # Region corners off the grid on every side.
    r_tops = tops - 4 + np.array([-3, 0, 20, 2])
    r_lefts = lefts - 4 + np.array([0, -9, 0, 4])
    args = (r_tops, r_lefts, rows, cols, *fft_shape)
    thetas = np.full(len(r_tops), theta)
    raw, centred = _rotated_regions(target, thetas, *out_shape, *c_in, *c_out, *args)
    want_raw, want_c = ref.rotated_regions(
        target, thetas, out_shape, c_in, c_out, r_tops, r_lefts, rows, cols, fft_shape
    )
    assert_array_equal(np.isnan(raw), np.isnan(want_raw))
    assert_allclose(raw, want_raw, rtol=1e-5, atol=1e-5, equal_nan=True)
    assert_allclose(centred, want_c, atol=1e-4)
    # Bitwise the unfused path used by compare() for the coarse search.
    moved = _rotate_masked(target, theta, *out_shape, *c_in, *c_out)
    raw2, centred2 = extract_one(moved, *args)
    assert_array_equal(raw, raw2)
    assert_array_equal(centred, centred2)
    # One angle per region: each region as with its own angle.
    mixed = np.array([theta, 0.2, -1.0, 3.0])
    raw3, centred3 = _rotated_regions(target, mixed, *out_shape, *c_in, *c_out, *args)
    for k in range(len(mixed)):
        one = _rotated_regions(
            target, mixed[k : k + 1], *out_shape, *c_in, *c_out, r_tops[k : k + 1],
            r_lefts[k : k + 1], rows, cols, *fft_shape,
        )  # fmt: skip
        assert_array_equal(raw3[k], one[0][0])
        assert_array_equal(centred3[k], one[1][0])


def test_rotated_regions_all_nan():
    target = np.full((12, 11), np.nan, dtype=np.float32)
    tops = np.array([0, 3], dtype=np.int64)
    thetas = np.array([0.3, -0.3])
    raw, centred = _rotated_regions(
        target, thetas, 12, 11, 5.5, 5.0, 5.5, 5.0, tops, tops, 5, 4, 6, 7
    )
    assert np.isnan(raw).all() and raw.shape == (2, 5, 4)
    assert (centred == 0).all() and centred.shape == (2, 6, 7)


@pytest.mark.parametrize("seed", range(3))
def test_best_lags_matches_reference(seed):
    image, target, tops, lefts, h, w, rows, cols, fft_shape = _cells_setup(seed)
    templates, valid = _centred_templates(image, tops, lefts, h, w, *fft_shape)
    raw, centred = extract_one(target, tops - 4, lefts - 4, rows, cols, *fft_shape)
    lags = (rows - h + 1, cols - w + 1)
    ccf = ref.direct_ccf(templates, centred, h, w, lags)
    min_overlap = np.maximum(2, valid // 2).astype(np.int64)
    got = _best_lags(ccf, centred, raw, image, tops, lefts, h, w, min_overlap)
    want = ref.best_lags(ccf, centred, raw, image, tops, lefts, h, w, min_overlap)
    for g, x in zip(got[:2], want[:2], strict=True):
        assert_array_equal(g, x)
    assert_allclose(got[2], want[2], rtol=1e-9, equal_nan=True)
    assert_array_equal(got[3], want[3])
    assert got[0][2] == -1 and np.isnan(got[2][2])  # the all-NaN cell finds nothing


def test_best_lags_ties_go_to_the_first_lag():
    """Equal scores: the first lag in row-major order wins, as in the reference's scan."""
    image, target, tops, lefts, h, w, rows, cols, fft_shape = _cells_setup(4)
    target[:] = 1.0  # centred to 1 below: equal scores wherever a window is all valid
    target[0, :] = np.nan
    _, valid = _centred_templates(image, tops, lefts, h, w, *fft_shape)
    raw, centred = extract_one(target, tops - 4, lefts - 4, rows, cols, *fft_shape)
    centred[:, :rows, :cols] += np.where(np.isnan(raw), 0.0, 1.0).astype(np.float32)
    lags = (rows - h + 1, cols - w + 1)
    ccf = np.ones((len(tops), *lags), dtype=np.float32)
    min_overlap = np.maximum(2, valid // 2).astype(np.int64)
    got = _best_lags(ccf, centred, raw, image, tops, lefts, h, w, min_overlap)
    want = ref.best_lags(ccf, centred, raw, image, tops, lefts, h, w, min_overlap)
    for g, x in zip(got[:2], want[:2], strict=True):
        assert_array_equal(g, x)
    assert_array_equal(got[3], want[3])


def test_fft_ccf_equals_direct_sums():
    """The FFT cross-correlation used by compare() equals the explicit sums on valid lags."""
    image, target, tops, lefts, h, w, rows, cols, fft_shape = _cells_setup(7)
    templates, _ = _centred_templates(image, tops, lefts, h, w, *fft_shape)
    _, centred = extract_one(target, tops - 4, lefts - 4, rows, cols, *fft_shape)
    spectra = scipy.fft.rfft2(centred) * np.conj(scipy.fft.rfft2(templates))
    ccf = scipy.fft.irfft2(spectra, s=fft_shape)
    lags = (rows - h + 1, cols - w + 1)
    want = ref.direct_ccf(templates, centred, h, w, lags)
    assert_allclose(ccf[:, : lags[0], : lags[1]], want, atol=1e-4)


@pytest.mark.parametrize("shift", [(0, 0), (2, -3)])
def test_overall_corr_matches_reference(shift):
    rng = np.random.default_rng(3)
    a = masked_field(rng, (12, 15))
    b = masked_field(rng, (14, 13))
    got = _overall_corr(a, b, *shift)
    want = ref.overall_corr(a, b, *shift)
    assert got[1] == want[1]
    assert_allclose(got[0], want[0], rtol=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_congruent_vote_matches_reference(seed):
    rng = np.random.default_rng(seed)
    n = 20
    dx = np.round(rng.normal(0, 30, n))
    dy = np.round(rng.normal(0, 30, n))
    dx[:8] = 10 + rng.integers(-3, 4, 8)  # a congruent group
    dy[:8] = -5 + rng.integers(-3, 4, 8)
    corr = rng.uniform(0.2, 0.9, n)
    corr[3] = np.nan
    got = _congruent_vote(dx, dy, corr, 0.5, 10.0)
    want = ref.congruent_vote(dx, dy, corr, 0.5, 10.0)
    assert got[0] == want[0]
    assert_allclose(got[1:3], want[1:3], equal_nan=True)
    assert_array_equal(got[3], want[3])


def test_vote_no_candidate_and_per_rotation():
    dx = np.zeros((3, 4))
    dy = np.zeros((3, 4))
    corr = np.full((3, 4), np.nan)
    corr[1] = [0.6, 0.7, 0.1, 0.8]
    counts, consensus, congruent = _vote_per_rotation(dx, dy, corr, 0.5, 5.0)
    assert_array_equal(counts, [0, 3, 0])
    assert np.isnan(consensus[0]).all() and (consensus[1] == 0).all()
    assert_array_equal(congruent[1], [True, True, False, True])
    count, cx, _, flags = _congruent_vote(dx[0], dy[0], corr[0], 0.5, 5.0)
    assert count == 0 and np.isnan(cx) and not flags.any()


def _sweep_rows(rng, n_angles, n_cells, group_at):
    """Random per-rotation cell results with a congruent group at one rotation."""
    dx = np.round(rng.normal(0, 30, (n_angles, n_cells)))
    dy = np.round(rng.normal(0, 30, (n_angles, n_cells)))
    corr = rng.uniform(0.1, 0.8, (n_angles, n_cells))
    corr[rng.random(corr.shape) < 0.1] = np.nan
    dx[group_at, :6] = 4 + rng.integers(-2, 3, 6)
    dy[group_at, :6] = -7 + rng.integers(-2, 3, 6)
    corr[group_at, :6] = rng.uniform(0.55, 0.9, 6)
    return dx, dy, corr


@pytest.mark.parametrize("seed", range(6))
def test_high_cmc_matches_reference(seed):
    rng = np.random.default_rng(seed)
    angles = np.arange(-180.0, 180.0, 3.0)[rng.integers(0, 100) :][:13]
    dx, dy, corr = _sweep_rows(rng, len(angles), 17, group_at=seed % len(angles))
    if seed == 5:
        corr[:] = 0.2  # no cell passes anywhere: the modal translation
    got = _high_cmc(dx, dy, corr, angles, 0.5, 10.0, 6.0)
    want = ref.high_cmc(dx, dy, corr, angles, 0.5, 10.0, 6.0)
    assert got[0] == want[0]
    assert_allclose(got[1], want[1])
    for g, w in zip(got[2:], want[2:], strict=True):
        assert_array_equal(g, w)
    if seed < 5:
        assert got[0] == seed % len(angles) and got[4][:6].all()


def test_high_cmc_ties_go_to_the_stronger_then_the_first_rotation():
    dx = np.zeros((3, 4))
    dy = np.zeros((3, 4))
    corr = np.array([[0.6, 0.6, 0.1, 0.1], [0.7, 0.7, 0.1, 0.1], [0.7, 0.7, 0.1, 0.1]])
    angles = np.array([-3.0, 0.0, 3.0])
    best, _, counts, cell_angle, congruent = _high_cmc(dx, dy, corr, angles, 0.5, 5.0, 6.0)
    assert_array_equal(counts, [2, 2, 2])
    assert best == 1  # equal counts: larger summed correlation, then the first
    assert_array_equal(congruent, [True, True, False, False])
    assert_array_equal(cell_angle, [1, 1, 1, 1])


@pytest.mark.parametrize("seed", range(4))
def test_carry_translations_matches_reference(seed):
    rng = np.random.default_rng(seed)
    coarse = np.arange(-180.0, 180.0, 6.0) if seed % 2 else np.arange(-30.0, 31.0, 6.0)
    angles = np.arange(-186.0, 186.0, 3.0) if seed % 2 else np.arange(-36.0, 37.0, 3.0)
    dx, dy, corr = _sweep_rows(rng, len(coarse), 11, group_at=2)
    corr[:, 3] = np.nan  # a cell that never correlates
    dx[4, 5] = np.nan
    px, py = rng.uniform(-80, 80, 11), rng.uniform(-80, 80, 11)
    got = _carry_translations(px, py, coarse, dx, dy, corr, angles)
    want = ref.carry_translations(px, py, coarse, dx, dy, corr, angles)
    assert_allclose(got, want, rtol=0, atol=1e-9, equal_nan=True)
    # At a visited rotation the translation is kept as found.
    visited = np.flatnonzero(np.isin(angles, coarse))
    assert_allclose(got[visited, :, 0], dx[np.searchsorted(coarse, angles[visited])], atol=1e-9)
