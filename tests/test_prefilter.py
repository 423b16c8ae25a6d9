"""Prefilter features: fixed length, finite, deterministic, rotation and shift tolerant."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage

from ribin.exhibit import Signature
from ribin.prefilter import FEATURE_LENGTH, FEATURE_VERSION, features, features_many


def _surface(seed: int, size: int = 96, centre: float = 0.08) -> np.ndarray:
    """Band-limited random texture, like a filtered breech-face surface."""
    rng = np.random.default_rng(seed)
    spectrum = np.fft.fft2(rng.normal(size=(size, size)))
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size)))
    spectrum *= np.exp(-(((f - centre) / 0.04) ** 2))
    return np.fft.ifft2(spectrum).real.astype(np.float32)


def test_shape_dtype_and_determinism() -> None:
    surface = _surface(1)
    a = features(surface)
    b = features(Signature("breech_face", surface, 3.0, "3d"))
    assert a.shape == (FEATURE_LENGTH,) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert FEATURE_VERSION == 1
    assert features_many([Signature("breech_face", surface, 3.0, "3d")] * 2).shape == (
        2,
        FEATURE_LENGTH,
    )


def test_rotation_by_quarter_turns_and_flips_changes_nothing_much() -> None:
    surface = _surface(2)
    base = features(surface)
    for turned in (np.rot90(surface), np.rot90(surface, 2), surface.T):
        np.testing.assert_allclose(features(turned), base, rtol=1e-4, atol=1e-4)


def test_shift_and_arbitrary_rotation_stay_closer_than_another_surface() -> None:
    big = _surface(3, 160)
    base = features(big[20:116, 20:116])
    shifted = features(big[31:127, 26:122])
    other = features(_surface(4, 160, centre=0.12)[20:116, 20:116])  # finer texture
    rotated = features(ndimage.rotate(big, 33, reshape=False, order=3)[32:128, 32:128])
    spectrum = slice(0, 56)

    def distance(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.linalg.norm(a[spectrum] - b[spectrum]))

    assert distance(base, shifted) < 0.5 * distance(base, other)
    assert distance(base, rotated) < 0.5 * distance(base, other)


def test_nan_outside_the_region_and_edge_cases() -> None:
    surface = _surface(5)
    masked = surface.copy()
    masked[:, :30] = np.nan
    vector = features(masked)
    assert np.isfinite(vector).all()
    assert vector[56] == pytest.approx(66 / 96)  # valid fraction
    assert not features(np.full((8, 8), np.nan)).any()
    assert np.isfinite(features(np.ones((3, 3)))).all()
    assert np.isfinite(features(np.zeros((1, 5)))).all()
    with pytest.raises(ValueError, match="2-D"):
        features(np.zeros(5))


@settings(max_examples=40, deadline=None)
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
