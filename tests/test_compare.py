"""compare(): registration recovery on made-up surfaces, input checks, a Fadul known match."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import scipy.ndimage
from numpy.testing import assert_array_equal
from ribin.kernels.resample import _downsample_mean, _rotate_masked

from ribin.compare import CMCParams, Comparison, compare
from ribin.errors import InputError
from ribin.exhibit import Signature

# Coarse pixels keep the 125 um congruence tolerance (10 px) well inside the small cells.
PIXEL_UM = 12.5
SMALL = CMCParams(grid=(4, 4), angle_range_deg=(-30.0, 30.0))


def ring_surface(rng, size=120, blur=1.0):
    """Band-limited random surface on an annulus, NaN outside (a small breech face)."""
    field = scipy.ndimage.gaussian_filter(rng.normal(size=(size, size)), blur)
    field = (field / field.std()).astype(np.float32)
    y, x = np.indices(field.shape) - (size - 1) / 2
    r = np.hypot(x, y)
    field[(r > 0.48 * size) | (r < 0.18 * size)] = np.nan
    return field


def rotated(surface, degrees, shift=(0, 0)):
    c = (surface.shape[0] - 1) / 2
    out = _rotate_masked(surface, math.radians(degrees), *surface.shape, c, c, c, c)
    return np.roll(out, shift, axis=(0, 1))


def low_image(image, params):
    """The image's block means at the coarse search's resolution."""
    f = params.coarse_factor
    return _downsample_mean(np.ascontiguousarray(image), f, max(1, f * f // 2))


def signature(surface, pixel_um=PIXEL_UM, kind="breech_face"):
    return Signature(kind, surface, pixel_um, "3d")


@pytest.mark.parametrize("search", ["coarse_to_fine", "exhaustive"])
def test_recovers_rotation_and_translation(search):
    rng = np.random.default_rng(0)
    a = ring_surface(rng)
    b = rotated(a, 12.0, shift=(4, -6))
    noise = rng.normal(scale=0.3, size=b.shape).astype(np.float32)
    result = compare(
        signature(a), signature(b + noise), CMCParams(**{**SMALL.__dict__, "search": search})
    )
    assert isinstance(result, Comparison)
    # b is a turned 12 deg counterclockwise: turning b back takes -12 deg.
    assert abs(result.registration.rotation_deg + 12.0) <= SMALL.angle_step_deg
    assert result.cmc_count >= 0.7 * min(result.forward.n_cells, result.backward.n_cells)
    assert result.overall_corr > 0.5
    congruent = [c for c in result.cells if c.congruent]
    assert congruent and all(c.corr >= SMALL.corr_min for c in congruent)
    for direction in (result.forward, result.backward):
        assert len(direction.cells) == direction.n_cells
        assert sum(c.congruent for c in direction.cells) == direction.cmc_count
        assert all(c.index == c.grid_row * SMALL.grid[1] + c.grid_col for c in direction.cells)
    assert result.registration.dx_um == pytest.approx(result.registration.dx_px * PIXEL_UM)
    assert int(result.score) == result.cmc_count


def test_unrelated_surfaces_have_few_cmcs():
    rng = np.random.default_rng(1)
    a, b = ring_surface(rng), ring_surface(rng)
    match = compare(signature(a), signature(rotated(a, -9.0)), SMALL)
    other = compare(signature(a), signature(b), SMALL)
    assert other.cmc_count <= 2
    assert match.score > other.score


def test_full_circle_finds_large_rotation_and_shapes_may_differ():
    rng = np.random.default_rng(2)
    a = ring_surface(rng)
    b = np.pad(rotated(a, 150.0), ((3, 0), (0, 5)), constant_values=np.nan)
    result = compare(signature(a), signature(b), CMCParams(grid=(4, 4)))
    assert abs((result.registration.rotation_deg + 150.0 + 180) % 360 - 180) <= 3.0
    assert result.cmc_count >= 0.7 * result.forward.n_cells


def test_symmetric_counts_and_empty_cells_ignored():
    rng = np.random.default_rng(3)
    a = ring_surface(rng)
    a[:30, :30] = np.nan  # the top-left cell has no valid pixel
    b = rotated(a, 6.0)
    ab = compare(signature(a), signature(b), SMALL)
    ba = compare(signature(b), signature(a), SMALL)
    assert ab.cmc_count == pytest.approx(ba.cmc_count, abs=2)
    assert ab.forward.n_cells == 15
    assert 0 not in {cell.index for cell in ab.forward.cells}


def target_point(reg, ref_shape, target_shape, x, y):
    """Where reference pixel (x, y) lands in the target under ``reg`` (its docstring)."""
    t = math.radians(reg.rotation_deg)
    u = x + reg.dx_px - (ref_shape[1] - 1) / 2
    v = y + reg.dy_px - (ref_shape[0] - 1) / 2
    return (
        math.cos(t) * u - math.sin(t) * v + (target_shape[1] - 1) / 2,
        math.sin(t) * u + math.cos(t) * v + (target_shape[0] - 1) / 2,
    )


def assert_mirrored(ab, ba, shape_a, shape_b):
    """``ba`` is ``ab`` seen from the other side: same count and score, directions
    exchanged, registrations inverse to each other."""
    assert ab.cmc_count == ba.cmc_count
    assert ab.score == ba.score
    assert ab.overall_corr == ba.overall_corr
    for one, other in ((ab.forward, ba.backward), (ab.backward, ba.forward)):
        assert (one.cmc_count, one.n_cells, one.registration) == (
            other.cmc_count,
            other.n_cells,
            other.registration,
        )
        assert_array_equal(one.counts_per_angle, other.counts_per_angle)
        assert_array_equal(  # NaN where a cell found nothing
            [dataclasses.astuple(c) for c in one.cells],
            [dataclasses.astuple(c) for c in other.cells],
        )
    assert ((ab.registration.rotation_deg + ba.registration.rotation_deg + 180) % 360) - 180 == (
        pytest.approx(0.0, abs=1e-9)
    )
    for x, y in ((0.0, 0.0), (shape_a[1] - 1.0, 7.0), (11.0, shape_a[0] - 1.0)):
        qx, qy = target_point(ab.registration, shape_a, shape_b, x, y)
        px, py = target_point(ba.registration, shape_b, shape_a, qx, qy)
        assert (px, py) == pytest.approx((x, y), abs=1e-6)


@pytest.mark.parametrize("seed", [5, 6, 7])
def test_compare_is_symmetric(seed):
    """compare(a, b) and compare(b, a): one result, seen from either side, for a match
    (turned, shifted, noisy, another shape) and a non-match."""
    rng = np.random.default_rng(seed)
    a = ring_surface(rng)
    b = np.pad(rotated(a, 4.0 * seed, shift=(3, -2)), ((2, 0), (0, 4)), constant_values=np.nan)
    b = b + rng.normal(scale=0.5, size=b.shape).astype(np.float32)
    other = ring_surface(rng)
    for x, y in ((a, b), (a, other), (b, other)):
        ab = compare(signature(x), signature(y), SMALL)
        ba = compare(signature(y), signature(x), SMALL)
        assert_mirrored(ab, ba, x.shape, y.shape)
    # the match is found either way
    assert compare(signature(b), signature(a), SMALL).cmc_count >= 10


@pytest.mark.slow
def test_compare_is_symmetric_on_every_fadul_pair(fadul_dir):
    """Every pair of the 19 real scans, as search compares them (default extraction and
    parameters): the same count, score and (inverse) registration in either order."""
    import csv
    import itertools

    from ribin.ingest import extract_file

    with open(fadul_dir / "truth.csv", newline="") as fh:
        files = [row["file"] for row in csv.DictReader(fh)]
    sigs = [extract_file(fadul_dir / name).breech_face for name in files]
    assert len(sigs) == 19
    for a, b in itertools.combinations(sigs, 2):
        assert_mirrored(compare(a, b), compare(b, a), a.surface.shape, b.surface.shape)


def test_vote_corr_holds_each_cell_to_a_whole_cells_significance():
    """Fisher's z scaled by the root of the area valid in both: a whole cell keeps its
    correlation, a quarter cell needs 0.8 to count as 0.5 (tanh(atanh(0.8) / 2) = 0.5),
    no overlap counts 0."""
    import ribin.compare as cmp

    corr = np.array([[0.5, 0.8005, 0.7995, -0.6, np.nan, 0.9]])
    support = np.array([[1.0, 0.25, 0.25, 0.5, np.nan, 0.0]])
    sweep = cmp._Sweep(np.zeros(1), np.zeros_like(corr), np.zeros_like(corr), corr, support)
    got = cmp._vote_corr(sweep, CMCParams())
    assert got[0, 0] == pytest.approx(0.5)
    assert got[0, 1] >= 0.5 > got[0, 2]
    assert got[0, 3] == pytest.approx(math.tanh(math.atanh(-0.6) * math.sqrt(0.5)))
    assert np.isnan(got[0, 4]) and got[0, 5] == 0.0
    assert_array_equal(cmp._vote_corr(sweep, CMCParams(area_weighted=False)), corr)


def test_input_checks():
    rng = np.random.default_rng(4)
    a = ring_surface(rng)
    with pytest.raises(InputError, match="pixel sizes differ"):
        compare(signature(a), signature(a, pixel_um=14.0))
    with pytest.raises(InputError, match="firing_pin"):
        compare(signature(a), signature(a, kind="firing_pin"))
    with pytest.raises(InputError, match="no valid pixel"):
        compare(signature(a), signature(np.full((50, 50), np.nan, np.float32)))


@pytest.mark.slow
def test_fadul_known_match_outranks_every_non_match_of_its_query(fadul_dir):
    """Query F (firearm 1): its known match 1-1 scores above all 16 other-firearm scans."""
    import csv

    from ribin.io import read_x3p

    with open(fadul_dir / "truth.csv", newline="") as fh:
        firearm = {row["file"]: int(row["firearm"]) for row in csv.DictReader(fh)}

    def load(name):
        scan = read_x3p(fadul_dir / name)
        surface = (np.asarray(scan.heights) * 1e6).astype(np.float32)
        return signature(surface, scan.pixel_size_x_um)

    query = load("Fadul F.x3p")
    params = CMCParams(angle_range_deg=(-30.0, 30.0))  # these scans are roughly aligned
    match = compare(query, load("Fadul 1-1.x3p"), params)
    non_matches = [
        compare(query, load(name), params).score
        for name in sorted(firearm)
        if firearm[name] != firearm["Fadul F.x3p"]
    ]
    assert len(non_matches) == 16
    assert match.score > max(non_matches)


@pytest.mark.parametrize("fine", [False, True])
def test_batched_rotations_equal_one_at_a_time(monkeypatch, fine):
    """A sweep's rotations searched in batches are bitwise the ones searched one by one."""
    import ribin.compare as cmp

    rng = np.random.default_rng(8)
    a = ring_surface(rng, size=91)
    b = rotated(a, 5.0, shift=(-2, 3)) + rng.normal(scale=0.3, size=a.shape).astype(np.float32)
    params = CMCParams(grid=(4, 4), angle_range_deg=(-12.0, 12.0))
    grid = cmp._Grid.of(a, params, "a")
    angles = params.angles()
    low_grid, low_b = cmp._low(grid, params), low_image(b, params)

    def run():
        coarse = cmp._sweep(low_grid, low_b, angles, params, scale=2)
        return cmp._refine(grid, b, coarse, angles, params) if fine else coarse

    monkeypatch.setattr(cmp, "_BATCH_PIXELS", 1 << 40)  # all rotations in one batch
    batched = run()
    monkeypatch.setattr(cmp, "_BATCH_PIXELS", 1)  # one rotation per batch
    single = run()
    for name in ("dx", "dy", "corr"):
        np.testing.assert_array_equal(getattr(batched, name), getattr(single, name))
    assert np.isfinite(batched.corr).sum() > len(angles)


def test_compare_many_equals_compare_in_order():
    from ribin.compare import compare_many

    rng = np.random.default_rng(9)
    a = ring_surface(rng)
    surfaces = [a, rotated(a, 9.0, shift=(2, 1)), ring_surface(rng), ring_surface(rng)]
    sigs = [signature(s) for s in surfaces]
    pairs = [(sigs[0], sigs[k], SMALL) for k in (1, 2, 3)] + [(sigs[1], sigs[2], SMALL)]
    expected = [compare(x, y, p) for x, y, p in pairs]
    done = []
    for threads in (1, 2, 3):
        got = compare_many(pairs, threads=threads, on_done=lambda: done.append(1))
        assert [c.score for c in got] == [c.score for c in expected]
        assert [c.registration for c in got] == [c.registration for c in expected]
    assert len(done) == 3 * len(pairs)
    assert expected[0].cmc_count > max(c.cmc_count for c in expected[1:])
    mismatched = [(sigs[0], signature(surfaces[1], pixel_um=2 * PIXEL_UM), SMALL)]
    with pytest.raises(InputError, match="pixel sizes differ"):
        compare_many(pairs + mismatched, threads=2)


def test_compare_many_compares_while_its_pairs_are_still_being_read(monkeypatch):
    """A generator of pairs (a search reading candidates) is consumed as comparisons run:
    the first comparison starts before the second pair is asked for."""
    import threading

    import ribin.compare as cmp

    rng = np.random.default_rng(4)
    sigs = [signature(ring_surface(rng)) for _ in range(3)]
    started = threading.Event()
    real = cmp.compare
    monkeypatch.setattr(cmp, "compare", lambda *a: started.set() or real(*a))
    seen_started = []

    def pairs():
        yield sigs[0], sigs[1], SMALL
        seen_started.append(started.wait(timeout=30))
        yield sigs[0], sigs[2], SMALL
        yield sigs[1], sigs[2], SMALL

    got = cmp.compare_many(pairs(), threads=2)
    assert seen_started == [True]
    expected = [
        real(x, y, SMALL) for x, y in ((0, 1), (0, 2), (1, 2)) for x, y in [(sigs[x], sigs[y])]
    ]
    assert [c.score for c in got] == [c.score for c in expected]

    def failing():
        yield sigs[0], sigs[1], SMALL
        raise InputError("candidate.h5", "unreadable")

    with pytest.raises(InputError, match="unreadable"):
        cmp.compare_many(failing(), threads=2)


def test_memoised_sweeps_equal_fresh_ones():
    """Rotations reused from an overlapping window are bitwise the ones searched afresh."""
    import ribin.compare as cmp

    rng = np.random.default_rng(5)
    a = ring_surface(rng, size=97)  # odd size
    b = rotated(a, -7.0, shift=(3, 2)) + rng.normal(scale=0.3, size=a.shape).astype(np.float32)
    b[:, :30] = np.nan
    params = CMCParams(grid=(4, 4), angle_range_deg=(-15.0, 15.0))
    grid = cmp._Grid.of(a, params, "a")
    angles = params.angles()
    coarse = cmp._sweep(cmp._low(grid, params), low_image(b, params), angles, params, scale=2)
    memo = cmp._Memo()
    cmp._refine(grid, b, coarse, angles[2:], params, memo)
    again = cmp._refine(grid, b, coarse, angles[:5], params, memo)  # 3 of 5 from the memo
    assert len(memo.rows) == len(angles) and len(memo.templates) == 1
    fresh = cmp._refine(grid, b, coarse, angles[:5], params)
    for name in ("dx", "dy", "corr"):
        np.testing.assert_array_equal(getattr(again, name), getattr(fresh, name))
    assert np.isfinite(fresh.corr).any()


@pytest.mark.parametrize("fft_shape,n_rows", [((108, 108), 69), ((80, 81), 9), ((15, 22), 15)])
def test_lag_rows_ccf_is_irfft2(fft_shape, n_rows):
    import scipy.fft

    from ribin.compare import _lag_rows_ccf

    rng = np.random.default_rng(n_rows)
    x, t = rng.normal(size=(2, 3, *fft_shape)).astype(np.float32)
    spectra = scipy.fft.rfft2(x) * np.conj(scipy.fft.rfft2(t))
    want = scipy.fft.irfft2(spectra, s=fft_shape)[:, :n_rows]
    got = _lag_rows_ccf(spectra, fft_shape, n_rows)
    assert got.dtype == want.dtype
    # Single precision: equal to a few units in the last place of the largest value.
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * np.abs(want).max())


def test_rfft2_is_scipy_rfft2():
    import scipy.fft

    from ribin.compare import _rfft2

    x = np.random.default_rng(3).normal(size=(4, 15, 22)).astype(np.float32)
    want = scipy.fft.rfft2(x)
    got = _rfft2(x)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * np.abs(want).max())


def _ring_pair(seed, degrees):
    rng = np.random.default_rng(seed)
    a = ring_surface(rng, size=97)  # odd size
    b = rotated(a, degrees, shift=(3, 2)) + rng.normal(scale=0.3, size=a.shape).astype(np.float32)
    return a, b


@pytest.mark.parametrize("range_deg", [None, (-30.0, 30.0)])
def test_coarse_search_visits_every_other_rotation(range_deg):
    import ribin.compare as cmp

    a, b = _ring_pair(6, 33.0)
    params = CMCParams(grid=(4, 4), angle_range_deg=range_deg)
    grid = cmp._low(cmp._Grid.of(a, params, "a"), params)
    angles = params.angles()
    shift_max = params.shift_max_um / PIXEL_UM
    coarse, rotations = cmp._coarse_search(grid, low_image(b, params), angles, params, 10.0)
    assert coarse.angles.tolist() == angles[::2].tolist()
    assert rotations == cmp._coarse_rotations(coarse, params, shift_max)
    # b is a turned 33 deg counterclockwise: -33 is found between the visited -36 and -30.
    assert abs(cmp._angle_diff(rotations[0], -33.0)) <= params.angle_step_deg


def test_carried_centres_keep_each_cell_on_its_target_point():
    """A translation carried to a rotation not visited is the one a search there finds."""
    import ribin.compare as cmp

    rng = np.random.default_rng(9)
    a = ring_surface(rng, size=201, blur=2.0)  # outer cells ~85 px from the centre
    b = rotated(a, 21.0, shift=(3, 2)) + rng.normal(scale=0.3, size=a.shape).astype(np.float32)
    params = CMCParams(grid=(4, 4), angle_range_deg=(-30.0, -12.0))
    grid = cmp._Grid.of(a, params, "a")
    low_grid, low_b = cmp._low(grid, params), low_image(b, params)
    every = cmp._sweep(low_grid, low_b, params.angles(), params, scale=2)  # -30, -27, ..., -12
    visited = cmp._Sweep(every.angles[::2], every.dx[::2], every.dy[::2], every.corr[::2])
    carried = cmp._carried_centres(grid, visited, every.angles)
    # At visited rotations the coarse translations are kept as they are.
    np.testing.assert_allclose(carried[::2, :, 0], visited.dx, atol=1e-9)
    np.testing.assert_allclose(carried[::2, :, 1], visited.dy, atol=1e-9)
    # At -21 (b's rotation, skipped), matching cells land where a search at -21 finds them,
    # within the coarse search's own error (a pixel of the half-resolution grid); kept
    # unturned, the outer cells would be r * sin(3 deg), about 4.5 px, off.
    k = np.flatnonzero(every.angles == -21.0)[0]
    good = every.corr[k] > 0.8
    assert good.sum() >= 6
    off = carried[k, good] - np.stack([every.dx[k, good], every.dy[k, good]], axis=1)
    assert np.abs(off).max() <= 2.0 + 1e-9
    # The default refinement finds the same cells congruent as one from a full coarse sweep.
    fine_every = cmp._refine(grid, b, every, every.angles, params)
    fine_carried = cmp._refine(grid, b, visited, every.angles, params)
    shift_max = params.shift_max_um / PIXEL_UM
    assert cmp._decide(fine_carried, params, shift_max).count >= (
        cmp._decide(fine_every, params, shift_max).count - 1
    )


@pytest.mark.parametrize("size", [90, 97])
def test_low_grid_holds_the_low_image(size):
    """compare() takes the half-resolution target from its grid's: the same block means."""
    import ribin.compare as cmp

    a = ring_surface(np.random.default_rng(size), size=size)
    low = cmp._low(cmp._Grid.of(a, SMALL, "a"), SMALL)
    np.testing.assert_array_equal(low.image[: low.shape[0], : low.shape[1]], low_image(a, SMALL))


def test_coarse_rotations_drops_clearly_weaker_peaks():
    import ribin.compare as cmp

    n = 10
    angles = np.arange(-30.0, 31.0, 3.0)
    dx = np.zeros((len(angles), n))
    corr = np.full((len(angles), n), 0.2)
    corr[4, :8] = 0.8  # 8 congruent cells at -18 deg
    corr[15, :3] = 0.8  # 3 at +15 deg
    sweep = cmp._Sweep(angles=angles, dx=dx, dy=dx.copy(), corr=corr)
    half = CMCParams(coarse_keep_fraction=0.5)
    assert cmp._coarse_rotations(sweep, half, 10.0) == [-18.0]
    assert cmp._coarse_rotations(sweep, CMCParams(), 10.0) == [-18.0, 15.0]  # default: keep
    corr[15, :4] = 0.8  # 4 of 8: kept
    assert cmp._coarse_rotations(sweep, half, 10.0) == [-18.0, 15.0]


@pytest.mark.parametrize("degrees", [-7.0, 40.0])
def test_faster_coarse_search_keeps_a_clear_match(degrees):
    """Every other coarse rotation, even with fewer candidates: a clear match is the same."""
    a, b = _ring_pair(7, degrees)
    params = CMCParams(grid=(4, 4), coarse_keep_fraction=0.5)
    fast = compare(signature(a), signature(b), params)
    every = compare(
        signature(a),
        signature(b),
        CMCParams(grid=(4, 4), coarse_angle_stride=1),
    )
    assert fast.score <= every.score
    assert fast.cmc_count == every.cmc_count  # a clear match: the same registration
    assert fast.registration == every.registration


@pytest.mark.parametrize("degrees", [-150.0, -33.0, 12.0, 71.0, 120.0])
def test_rotation_peaks_include_the_turn(degrees):
    """The polar Fourier-magnitude estimate names the turn (or its half-turn) first."""
    import ribin.compare as cmp

    rng = np.random.default_rng(11)
    a = ring_surface(rng, size=160)
    b = rotated(a, degrees, shift=(5, -3))
    b = b + rng.normal(scale=0.2, size=b.shape).astype(np.float32)
    peaks = cmp._rotation_peaks(cmp._rotation_profile(a), cmp._rotation_profile(b), 1)
    assert len(peaks) == 2 and abs(cmp._angle_diff(peaks[0], peaks[1])) == 180.0
    # b is a turned counterclockwise: turning it back takes -degrees.
    assert min(abs(cmp._angle_diff(p, -degrees)) for p in peaks) <= 3.0


def test_rotation_profile_of_a_constant_or_empty_surface_is_zero():
    import ribin.compare as cmp

    flat = np.full((40, 50), 2.0, dtype=np.float32)
    flat[:5] = np.nan
    assert not cmp._rotation_profile(flat).any()
    empty = np.full((30, 30), np.nan, dtype=np.float32)
    assert not cmp._rotation_profile(empty).any()
    # Tiny odd sizes: the band's outer radius reaches the real transform's last column.
    for size in (5, 9, 15):
        tiny = np.random.default_rng(size).normal(size=(size, size)).astype(np.float32)
        profile = cmp._rotation_profile(tiny)
        assert profile.shape == (cmp._PROFILE_RADII, cmp._PROFILE_ANGLES)
        assert np.isfinite(profile).all()


def test_firing_pins_sweep_the_whole_circle():
    from ribin.compare import DEFAULT_PARAMS

    assert DEFAULT_PARAMS["breech_face"].rotation_estimates == 3
    assert DEFAULT_PARAMS["firing_pin"].rotation_estimates == 0


@pytest.mark.parametrize("degrees", [-100.0, 47.0])
def test_estimated_sweep_gives_the_whole_sweeps_result_on_a_match(degrees):
    """Visiting only the rotations near the estimates: a match's result is the same, bit
    for bit (the rows visited are those of the whole sweep, and the refinement carries
    from the same neighbours)."""
    a, b = _ring_pair(8, degrees)
    near = compare(signature(a), signature(b), CMCParams(grid=(4, 4)))
    whole = compare(signature(a), signature(b), CMCParams(grid=(4, 4), rotation_estimates=0))
    assert near.params.rotation_estimates == 3
    assert repr(dataclasses.replace(near, params=whole.params)) == repr(whole)


def test_coarse_search_near_estimates_visits_their_rotations_and_neighbours():
    import ribin.compare as cmp

    a, b = _ring_pair(6, 33.0)
    params = CMCParams(grid=(4, 4))
    grid = cmp._low(cmp._Grid.of(a, params, "a"), params)
    angles = params.angles()
    whole, _ = cmp._coarse_search(grid, low_image(b, params), angles, params, 10.0)
    near, rotations = cmp._coarse_search(
        grid, low_image(b, params), angles, params, 10.0, near=[-40.0, 140.0]
    )
    # -40 +- 6: -42 and -36; 140 +- 6: 138 and 144; the candidates' neighbours +- 6.
    expected = {-42.0, -36.0, 138.0, 144.0}
    for theta in rotations:
        expected |= {float(cmp._angle_diff(theta + d, 0.0)) for d in (-6.0, 0.0, 6.0)}
    assert sorted(near.angles.tolist()) == sorted(expected)
    assert near.angles.tolist() == [t for t in angles[::2].tolist() if t in expected]
    rows = [whole.angles.tolist().index(t) for t in near.angles]
    for name in ("dx", "dy", "corr", "support"):
        assert_array_equal(getattr(near, name), getattr(whole, name)[rows])
    assert abs(cmp._angle_diff(rotations[0], -33.0)) <= params.angle_step_deg


def test_parts_are_made_once_per_surface_and_give_the_same_result(monkeypatch):
    """A query compared with several candidates: its grids and cell spectra are made once,
    and the results are those of comparisons with nothing cached."""
    import ribin.compare as cmp

    rng = np.random.default_rng(9)
    query = signature(ring_surface(rng))
    candidates = [signature(ring_surface(rng)) for _ in range(3)]
    candidates.append(signature(rotated(query.surface, 20.0)))
    params = CMCParams(grid=(4, 4))
    cmp._PARTS.clear()
    fresh = []
    for c in candidates:
        cmp._PARTS.clear()
        fresh.append(compare(query, c, params))
    made = []
    real = cmp._Parts.of.__func__
    monkeypatch.setattr(
        cmp._Parts, "of", classmethod(lambda cls, *a: made.append(a[2]) or real(cls, *a))
    )
    cmp._PARTS.clear()
    cached = [compare(query, c, params) for c in candidates]
    assert len(made) == len(candidates) + 1  # the query's once, each candidate's once
    assert [repr(r) for r in cached] == [repr(r) for r in fresh]
    cmp._PARTS.clear()
    assert cmp._PARTS.get(query.surface, b"k", params, "q") is not None
    assert len(cmp._PARTS._entries) == 1


def test_a_shared_query_is_rotated_once_per_rotation(monkeypatch):
    """From its second comparison on, the query's rotated copies are kept and reused, for
    candidates of other sizes too (a window of the copy's canvas): fewer images are
    interpolated, and every result is bit for bit that of a fresh comparison."""
    import ribin.compare as cmp

    rng = np.random.default_rng(11)
    query = signature(ring_surface(rng))
    sizes = (120, 120, 117, 123, 118, 140)  # both parities; 140 is past the canvas
    candidates = [signature(ring_surface(rng, size)) for size in sizes]
    params = CMCParams(grid=(4, 4))
    fresh = []
    for c in candidates:
        cmp._PARTS.clear()
        fresh.append(compare(query, c, params))
    rotated = []
    real = cmp._rotate_stack
    monkeypatch.setattr(
        cmp,
        "_rotate_stack",
        lambda image, thetas, *a: rotated.append(len(thetas)) or real(image, thetas, *a),
    )
    cmp._PARTS.clear()
    cached = [compare(query, c, params) for c in candidates]
    assert [repr(r) for r in cached] == [repr(r) for r in fresh]
    parts = cmp._PARTS.get(query.surface, cmp._order_key(query.surface), params, "q")
    assert parts.rotated() is not None and parts.rotated().images
    shared = sum(rotated)
    rotated.clear()
    with monkeypatch.context() as m:
        m.setattr(cmp._Parts, "share", lambda self: None)
        cmp._PARTS.clear()
        [compare(query, c, params) for c in candidates]
    assert shared < sum(rotated)


def test_a_window_of_the_rotated_canvas_is_the_rotation_onto_the_grid():
    """Grids of either parity, smaller or larger than the surface (up to the canvas): the
    window of a kept copy equals, bit for bit, rotating onto the grid; a grid past the
    canvas is rotated directly."""
    import ribin.compare as cmp

    rng = np.random.default_rng(2)
    target = ring_surface(rng, 101)
    angles = np.array([-33.0, 0.0, 12.0])
    thetas = np.radians(angles)
    centre_in = (50.0, 50.0)
    rotated = cmp._Rotated(target.shape, 1 << 24, margin=7)
    for shape in ((101, 101), (96, 103), (110, 115), (115, 115), (130, 90)):
        centre_out = ((shape[0] - 1) / 2.0, (shape[1] - 1) / 2.0)
        direct = cmp._rotate_stack(target, thetas, *shape, *centre_in, *centre_out)
        canvas = rotated.canvas(shape)
        kept = cmp._rotated_targets(
            target, angles, thetas, shape, centre_in, centre_out, rotated, canvas
        )
        assert_array_equal(kept.view(np.uint32), direct.view(np.uint32))
    assert rotated.canvas((130, 90)) is None
    assert {key[1] for key in rotated.images} == {(115, 115), (116, 115)}


def test_rotated_copies_stop_at_their_budget():
    import ribin.compare as cmp

    kept = cmp._Rotated((10, 10), budget_bytes=3 * 400)
    for k in range(5):
        kept.put((k, (10, 10)), np.zeros((10, 10), dtype=np.float32))
    assert len(kept.images) == 3 and kept.nbytes == 1200
    assert kept.get((4, (10, 10))) is None and kept.get((0, (10, 10))) is not None


def test_fine_pixels_sweep_the_whole_circle(monkeypatch):
    """Below 10 um per pixel there is no rotation estimate: the whole sweep's result."""
    import ribin.compare as cmp

    a, b = _ring_pair(8, 47.0)
    whole = compare(
        signature(a, pixel_um=6.25), signature(b, pixel_um=6.25), CMCParams(rotation_estimates=0)
    )

    def refuse(*args):
        raise AssertionError("estimated")

    monkeypatch.setattr(cmp, "_rotation_peaks", refuse)
    fine = compare(signature(a, pixel_um=6.25), signature(b, pixel_um=6.25))
    assert repr(dataclasses.replace(fine, params=whole.params)) == repr(whole)
    with pytest.raises(AssertionError, match="estimated"):
        compare(signature(a), signature(b))
