"""Prefilter features: fixed length, finite, deterministic, rotation and shift tolerant."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage

from ribin import prefilter
from ribin.exhibit import Signature
from ribin.prefilter import (
    FEATURE_LENGTH,
    FEATURE_VERSION,
    features,
    features_many,
    rotation_estimate,
    similarity,
)

PIXEL_UM = 12.5


def _texture(seed: int, size: int) -> np.ndarray:
    """Random breech-face-like texture: smooth bumps 2-6 pixels wide and a few striae."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.normal(size=(size, size)), 2.0)
    field += 0.5 * ndimage.gaussian_filter(rng.normal(size=(size, size)), 5.0) * 3
    field += 0.002 * np.cumsum(rng.normal(size=size))[None, :]  # striae along the rows
    return field.astype(np.float64)


def _annulus(size: int, outer: float, inner: float) -> np.ndarray:
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    r = np.hypot(x, y)
    return (r <= outer) & (r >= inner)


def _breech_face(big: np.ndarray, centre: tuple[int, int], angle: float, size: int = 120):
    """An annular breech face cut from `big` around `centre`, rotated by `angle` degrees."""
    half = size  # cut twice the size so the rotation has data everywhere
    cy, cx = centre
    patch = big[cy - half : cy + half, cx - half : cx + half]
    if angle:
        patch = ndimage.rotate(patch, angle, reshape=False, order=3)
    patch = patch[half - size // 2 : half + size // 2, half - size // 2 : half + size // 2]
    out = patch.astype(np.float32).copy()
    out[~_annulus(size, size / 2 - 2, size / 7)] = np.nan
    return out


@pytest.fixture(scope="module")
def gallery() -> tuple[np.ndarray, list[np.ndarray]]:
    """One firearm's texture and 12 unrelated textures, as (big field, others)."""
    big = _texture(0, 400)
    others = [_breech_face(_texture(100 + i, 400), (200, 200), 0.0) for i in range(12)]
    return big, others


def test_shape_dtype_and_determinism() -> None:
    surface = _texture(1, 96).astype(np.float32)
    a = features(surface)
    b = features(Signature("breech_face", surface, PIXEL_UM, "3d"))
    assert a.shape == (FEATURE_LENGTH,) and a.dtype == np.float32
    assert FEATURE_LENGTH * 4 <= 4096
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, features(surface.copy()))
    assert not np.array_equal(a, features(surface, pixel_size_um=6.25))  # band in um
    assert FEATURE_VERSION == 2
    assert features_many([Signature("breech_face", surface, PIXEL_UM, "3d")] * 2).shape == (
        2,
        FEATURE_LENGTH,
    )
    assert similarity(a, a[None, :])[0] == pytest.approx(1.0, abs=1e-5)


def test_shifted_copy_ranks_first(gallery) -> None:
    big, others = gallery
    query = features(_breech_face(big, (200, 200), 0.0))
    shifted = features(_breech_face(big, (211, 193), 0.0))  # 11 and 7 pixels off
    table = np.stack([shifted] + [features(o) for o in others])
    scores = similarity(query, table)
    assert scores.shape == (13,) and scores.dtype == np.float64
    assert np.argmax(scores) == 0
    assert scores[0] > scores[1:].max() + 0.1


@pytest.mark.parametrize("angle", [33.0, 121.0, 250.0])
def test_rotated_and_shifted_copy_ranks_first_and_gives_its_angle(gallery, angle) -> None:
    big, others = gallery
    query = features(_breech_face(big, (200, 200), 0.0))
    turned = features(_breech_face(big, (206, 195), angle))
    table = np.stack(
        [features(o) for o in others[:6]] + [turned] + [features(o) for o in others[6:]]
    )
    scores = similarity(query, table)
    assert np.argmax(scores) == 6
    assert scores[6] > np.delete(scores, 6).max() + 0.1
    error = (rotation_estimate(query, turned) - angle) % 180.0
    assert min(error, 180.0 - error) < 3.0


def test_similarity_is_symmetric_bounded_and_independent_of_the_batch(gallery) -> None:
    _, others = gallery
    table = features_many([Signature("breech_face", o, PIXEL_UM, "3d") for o in others])
    scores = similarity(table[0], table)
    assert np.all(scores <= 1.0 + 1e-5) and np.all(scores >= -1.0)
    assert np.argmax(scores) == 0
    reverse = np.array([similarity(row, table[:1])[0] for row in table])
    np.testing.assert_allclose(scores, reverse, atol=1e-5)
    # a candidate's score does not depend on which others are scored with it
    np.testing.assert_array_equal(similarity(table[0], table[3:7]), scores[3:7])
    assert similarity(table[0], table[:0]).shape == (0,)
    with pytest.raises(ValueError, match="length"):
        similarity(table[0][:10], table)


def test_nan_outside_the_region_and_edge_cases() -> None:
    surface = _texture(5, 96)
    masked = surface.copy()
    masked[:, :30] = np.nan
    vector = features(masked)
    assert np.isfinite(vector).all() and vector.any()
    empty = features(np.full((8, 8), np.nan))
    assert not empty.any()
    assert np.isfinite(similarity(empty, np.stack([empty, vector]))).all()
    assert similarity(vector, empty[None, :])[0] == 0.0
    for tiny in (np.ones((3, 3)), np.zeros((1, 5)), np.arange(6.0).reshape(2, 3)):
        assert np.isfinite(features(tiny)).all()
    with pytest.raises(ValueError, match="2-D"):
        features(np.zeros(5))
    with pytest.raises(ValueError, match="pixel size"):
        features(surface, pixel_size_um=0.0)


@settings(max_examples=30, deadline=None)
@given(
    arrays(
        np.float32,
        st.tuples(st.integers(1, 40), st.integers(1, 40)),
        elements=st.one_of(st.floats(-1e3, 1e3, width=32), st.just(np.nan)),
    )
)
def test_any_surface_gives_finite_fixed_length_features(surface: np.ndarray) -> None:
    vector = features(surface)
    assert vector.shape == (FEATURE_LENGTH,)
    assert np.isfinite(vector).all()
    score = similarity(vector, np.stack([vector, np.zeros_like(vector)]))
    assert np.isfinite(score).all() and score[1] == 0.0


def test_polar_map_band_chooses_the_wavelengths_its_rings_see() -> None:
    """The rings span the band asked for: stripes of 400 um put the peak of several rings at
    their angle in the features' band (600-30 um) and of none in a 160-27 um band (the
    ``band`` variant of benchmarks/bench_2d_search.py); the default band is the features'."""
    rng = np.random.default_rng(3)
    pixel = 12.5
    y, x = (np.mgrid[0:160, 0:160] - 79.5) * pixel
    envelope = np.exp(-(x**2 + y**2) / (2 * 350.0**2))  # no leakage from a hard edge
    surface = envelope * np.sin(2 * np.pi * x / 400.0) + 0.1 * rng.standard_normal(x.shape)
    default = prefilter._polar_map(surface, pixel)
    assert np.array_equal(
        default, prefilter._polar_map(surface, pixel, (prefilter.LONG_UM, prefilter.SHORT_UM))
    )
    narrow = prefilter._polar_map(surface, pixel, (160.0, 27.0))
    # stripes across x put their power at angle 0 (slots 0 and N_ANGLES - 1 straddle it)
    at_zero = [0, 1, prefilter.N_ANGLES - 2, prefilter.N_ANGLES - 1]
    assert np.isin(default.argmax(axis=1), at_zero).sum() >= 4
    assert np.isin(narrow.argmax(axis=1), at_zero).sum() <= 1


def test_the_band_benchmark_measures_the_features_definition(monkeypatch) -> None:
    """benchmarks/bench_prefilter.py --bands rebuilds the vector from a band's polar map: at
    the features' own band it must give the features exactly, and another band must differ
    (else the band sweep would measure something other than what a store holds)."""
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import bench_prefilter

    surface = _breech_face(_texture(5, 400), (200, 200), 0.0)
    for pixel in (PIXEL_UM, 6.25):
        own = bench_prefilter.band_features(surface, pixel, (prefilter.LONG_UM, prefilter.SHORT_UM))
        np.testing.assert_array_equal(own, features(surface, pixel))
        other = bench_prefilter.band_features(surface, pixel, (400.0, 80.0))
        assert other.shape == own.shape and not np.allclose(other, own, atol=1e-3)
