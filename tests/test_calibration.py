"""Score calibration to log10 likelihood ratios."""

from __future__ import annotations

import numpy as np
import pytest

from ribin.calibration import Calibration, fit_calibration
from ribin.errors import InputError


@pytest.fixture(scope="module")
def overlapping():
    rng = np.random.default_rng(7)
    return rng.normal(12.0, 3.0, 200), rng.normal(3.0, 2.0, 2000)


def test_lr_is_monotone_and_points_the_right_way(overlapping):
    km, knm = overlapping
    model = fit_calibration(km, knm, source={"data": "test"})
    grid = np.linspace(-5, 30, 400)
    lr = model.log10_lr(grid)
    assert np.all(np.diff(lr) >= 0)
    assert np.median(model.log10_lr(km)) > 1.0
    assert np.median(model.log10_lr(knm)) < -0.5
    assert model.source["data"] == "test" and "fitted_at" in model.source


def test_lr_crosses_zero_between_the_two_distributions(overlapping):
    km, knm = overlapping
    model = fit_calibration(km, knm)
    # Equal densities of N(12, 3) and N(3, 2) meet near 7.1: the LR should be near 1 there.
    assert abs(float(model.log10_lr(7.1))) < 0.5


def test_separated_scores_give_bounded_lrs():
    km = np.arange(20, 40, dtype=float)
    knm = np.arange(0, 10, dtype=float)
    model = fit_calibration(km, knm)
    assert np.isfinite(model.slope)
    assert model.log10_lr(1e6) == pytest.approx(np.log10(knm.size + 1))
    assert model.log10_lr(-1e6) == pytest.approx(-np.log10(km.size + 1))


def test_save_and_load_round_trip(tmp_path, overlapping):
    model = fit_calibration(*overlapping, source={"data": "round trip"})
    path = tmp_path / "calibration.json"
    model.save(path)
    again = Calibration.load(path)
    assert again == model
    assert list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize(
    ("km", "knm", "problem"),
    [
        ([1.0], [0.0, 0.1], "at least 2"),
        ([1.0, np.nan], [0.0, 0.1], "finite"),
        ([0.0, 0.1], [1.0, 2.0], "do not score higher"),
    ],
)
def test_refuses_unusable_scores(km, knm, problem):
    with pytest.raises(InputError, match=problem):
        fit_calibration(km, knm)


def test_bad_calibration_files(tmp_path):
    path = tmp_path / "cal.json"
    path.write_text("[1, 2]")
    with pytest.raises(InputError, match=r"cal\.json: calibration file is not a JSON object"):
        Calibration.load(path)
    path.write_text('{"model": "other"}')
    with pytest.raises(InputError, match="unknown calibration model"):
        Calibration.load(path)
    path.write_text('{"model": "balanced-logistic-v1", "slope": 1}')
    with pytest.raises(InputError, match="incomplete"):
        Calibration.load(path)


def test_default_calibration_ships_with_its_source(tmp_path):
    from ribin.calibration import models_for_store

    models, source = models_for_store(tmp_path)  # a store with no calibration of its own
    assert source == "<default>"
    assert set(models) == {"breech_face/2d", "breech_face/3d", "firing_pin/3d"}
    for model in models.values():
        assert "synthetic" in model.source["data"]
        assert model.slope > 0
        assert model.log10_lr(0.0) < 0 < model.log10_lr(40.0)
