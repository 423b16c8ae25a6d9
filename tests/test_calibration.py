"""Score calibration to log10 likelihood ratios (lir), its files, ``ribin calibrate``'s input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from ribin.calibrate import PairScores, leave_one_firearm_out, read_truth
from ribin.calibration import (
    FORMAT_VERSION,
    METHODS,
    Calibration,
    fit_calibration,
    load_models,
    models_for_store,
    save_models,
)
from ribin.errors import InputError


@pytest.fixture(scope="module")
def overlapping():
    rng = np.random.default_rng(7)
    return rng.normal(12.0, 3.0, 200), rng.normal(3.0, 2.0, 2000)


@pytest.mark.parametrize("method", METHODS)
def test_lr_is_monotone_and_points_the_right_way(overlapping, method):
    km, knm = overlapping
    model = fit_calibration(km, knm, method=method, source={"data": "test"})
    grid = np.linspace(-5, 30, 400)
    lr = model.log10_lr(grid)
    if method != "kde":  # a density ratio need not be monotone between the data
        assert np.all(np.diff(lr) >= -1e-12)
    assert np.median(model.log10_lr(km)) > 1.0
    assert np.median(model.log10_lr(knm)) < -0.5
    assert model.source["data"] == "test" and "fitted_at" in model.source
    assert model.source["n_same_source"] == 200 and model.source["n_different_source"] == 2000
    assert model.validation["in_sample"]["cllr"] < model.validation["in_sample"]["cllr"] + 1


@pytest.mark.parametrize("method", METHODS)
def test_saved_model_evaluates_as_lir_does_without_refitting(overlapping, method):
    """The model's own NumPy evaluation equals lir's calibrator (bounded by the same ELUB)."""
    from lir.algorithms.bayeserror import elub
    from lir.algorithms.isotonic_regression import IsotonicCalibrator
    from lir.algorithms.kde import KDECalibrator
    from lir.algorithms.logistic_regression import LogitCalibrator

    km, knm = (np.round(v, 6) for v in overlapping)
    x = np.concatenate([km, knm])
    y = np.concatenate([np.ones(km.size, int), np.zeros(knm.size, int)])
    lir_cal = {
        "logistic": LogitCalibrator,
        "kde": lambda: KDECalibrator(bandwidth="silverman"),
        "isotonic": IsotonicCalibrator,
    }[method]().fit(x, y)
    lower, upper = elub(np.clip(lir_cal.transform(x), -999, 999), y)
    model = fit_calibration(km, knm, method=method)
    assert (model.lower, model.upper) == pytest.approx((lower, upper))
    grid = np.linspace(x.min(), x.max(), 97)
    expected = np.clip(lir_cal.transform(grid), lower, upper)
    again = load_round_trip(model)
    np.testing.assert_allclose(again.log10_lr(grid), expected, atol=1e-6)


def load_round_trip(model: Calibration) -> Calibration:
    return Calibration.from_dict(json.loads(json.dumps(model.to_dict())))


def test_lr_crosses_zero_between_the_two_distributions(overlapping):
    km, knm = overlapping
    model = fit_calibration(km, knm)
    # Equal densities of N(12, 3) and N(3, 2) meet near 7.1: the LR should be near 1 there.
    assert abs(float(model.log10_lr(7.1))) < 0.5


@pytest.mark.parametrize("method", METHODS)
def test_separated_scores_give_elub_bounded_lrs(method):
    km = np.arange(20, 40, dtype=float)
    knm = np.arange(0, 10, dtype=float)
    model = fit_calibration(km, knm, method=method)
    # ELUB never exceeds what the pair counts allow, and both bounds are used
    assert 0 < model.upper <= np.log10(knm.size + 1) + 1e-9
    assert -np.log10(km.size + 1) - 1e-9 <= model.lower < 0
    assert model.log10_lr(1e6) == pytest.approx(model.upper)
    assert model.log10_lr(-1e6) == pytest.approx(model.lower)


def test_save_and_load_round_trip(tmp_path, overlapping):
    model = fit_calibration(*overlapping, name="round trip", region="breech_face", modality="3d")
    path = tmp_path / "calibration.json"
    save_models(path, {"breech_face/3d": model})
    assert json.loads(path.read_text())["format_version"] == FORMAT_VERSION
    again = load_models(path)["breech_face/3d"]
    assert again == model
    assert again.name == "round trip" and not again.is_default
    assert [p.name for p in tmp_path.iterdir()] == ["calibration.json"]


def test_format_1_files_are_still_read(tmp_path):
    """A format-1 file (RIBIN's logistic models before lir) gives the same LRs as then."""
    old = {
        "intercept": -6.8,
        "slope": 0.39,
        "lower": -1.4,
        "upper": 2.4,
        "n_match": 24,
        "n_nonmatch": 252,
        "model": "balanced-logistic-v1",
        "source": {"data": "lab test fires"},
    }
    path = tmp_path / "cal.json"
    path.write_text(
        json.dumps(
            {"format": "ribin-calibration", "format_version": 1, "models": {"breech_face/3d": old}}
        )
    )
    model = load_models(path)["breech_face/3d"]
    assert model.method == "logistic" and model.region == "breech_face"
    expected = np.clip((-6.8 + 0.39 * np.array([0.0, 17.0, 40.0])) / np.log(10), -1.4, 2.4)
    np.testing.assert_allclose(model.log10_lr([0.0, 17.0, 40.0]), expected)


def test_bad_calibration_files(tmp_path):
    path = tmp_path / "cal.json"
    path.write_text("[1, 2]")
    with pytest.raises(InputError, match=r"cal\.json: not a RIBIN calibration file"):
        load_models(path)
    path.write_text(json.dumps({"format": "ribin-calibration", "format_version": 9, "models": {}}))
    with pytest.raises(InputError, match=r"cal\.json: written by calibration format 9"):
        load_models(path)
    path.write_text(
        json.dumps(
            {"format": "ribin-calibration", "format_version": 1, "models": {"x/3d": {"model": "o"}}}
        )
    )
    with pytest.raises(InputError, match="unknown calibration model 'o'"):
        load_models(path)
    path.write_text(
        json.dumps(
            {
                "format": "ribin-calibration",
                "format_version": 2,
                "models": {
                    "x/3d": {
                        "method": "logistic",
                        "params": {},
                        "lower": -1,
                        "upper": 1,
                        "n_match": 2,
                        "n_nonmatch": 2,
                    }
                },
            }
        )
    )
    with pytest.raises(InputError, match=r"cal\.json: logistic calibration lacks intercept"):
        load_models(path)


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


def test_default_calibration_is_real_3d_breech_face_only(tmp_path):
    models, source = models_for_store(tmp_path)  # a store with no calibration of its own
    assert source == "<default>"
    # no default LR where no real scans exist: 2D and the firing pin stay uncalibrated
    assert set(models) == {"breech_face/3d"}
    model = models["breech_face/3d"]
    assert model.is_default and model.shipped
    assert "Fadul" in model.source["data"] and "synthetic" not in model.source["data"]
    assert (model.n_match, model.n_nonmatch) == (28, 143)  # all 171 pairs of 19 scans
    assert model.source["scanner"] and model.source["software_version"]
    assert model.source["region"] == "breech_face" and model.source["modality"] == "3d"
    assert model.log10_lr(0.0) < 0 < model.log10_lr(40.0)
    lofo = model.validation["leave_one_firearm_out"]
    assert {"cllr", "cllr_min", "rmep", "rmed"} <= set(lofo)
    assert len(lofo["folds"]) == 5


def test_search_and_ingest_do_not_import_lir():
    """lir (and scikit-learn) load only to fit or validate: seconds saved on every search."""
    code = (
        "import sys; import ribin.search, ribin.ingest, ribin.report, ribin.cli;"
        "from ribin.calibration import models_for_store;"
        "m, _ = models_for_store(None); m['breech_face/3d'].log10_lr([1.0, 30.0]);"
        "print(sorted(k for k in ('lir', 'sklearn') if k in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _pairs(firearms: list[str], scores_of) -> PairScores:
    n = len(firearms)
    pairs = tuple((i, j) for i in range(n) for j in range(i + 1, n))
    return PairScores(
        "breech_face/3d",
        tuple(f"E{i}" for i in range(n)),
        tuple(firearms),
        pairs,
        tuple(scores_of(firearms[i] == firearms[j], k) for k, (i, j) in enumerate(pairs)),
    )


def test_leave_one_firearm_out_holds_each_firearm_out():
    firearms = [f"G{g}" for g in range(4) for _ in range(3)]  # 4 firearms x 3 shots
    rng = np.random.default_rng(3)
    data = _pairs(firearms, lambda same, k: float(rng.normal(20, 2) if same else rng.normal(3, 1)))
    result = leave_one_firearm_out(data)
    assert [f["firearm"] for f in result["folds"]] == ["G0", "G1", "G2", "G3"]
    # each fold trains on the other 3 firearms' 9 shots: 3*3 same-source, 27 different
    assert all((f["train_match"], f["train_nonmatch"]) == (9, 27) for f in result["folds"])
    # held out: 12 same-source pairs once, 54 different-source pairs twice
    assert (result["n_match"], result["n_nonmatch"]) == (12, 108)
    assert result["rmep"] == 0 and result["rmed"] == 0 and result["cllr"] < 0.2


# ------------------------------------------------------------------ the truth file (issue 22)


def test_truth_reads_file_or_exhibit_id_columns(tmp_path):
    path = tmp_path / "truth.csv"
    path.write_text("file,firearm\nA 1.x3p,1\nB.png,2\n")
    assert read_truth(path) == {"A 1": "1", "B": "2"}
    path.write_text("exhibit_id,firearm\nA,G1\nB,G1\n")
    assert read_truth(path) == {"A": "G1", "B": "G1"}


def test_truth_with_a_utf8_bom_is_accepted(tmp_path):
    path = tmp_path / "truth.csv"
    path.write_bytes("exhibit_id,firearm\r\nA,G1\r\nB,G2\r\n".encode("utf-8-sig"))
    assert read_truth(path) == {"A": "G1", "B": "G2"}


def test_truth_rows_with_an_empty_firearm_are_refused(tmp_path):
    """Empty firearms are not one firearm: pairs of them would be counted as same-source."""
    path = tmp_path / "truth.csv"
    path.write_text("exhibit_id,firearm\nA,G1\nB,\nC,\n")
    with pytest.raises(InputError, match=r"truth\.csv: row 3 \(B\) has no firearm"):
        read_truth(path)


def test_truth_row_with_an_empty_exhibit_id_is_one_line_error(tmp_path):
    path = tmp_path / "truth.csv"
    path.write_text("exhibit_id,firearm\nA,G1\n,G2\n")
    with pytest.raises(InputError, match=r"truth\.csv: row 3 has no exhibit_id"):
        read_truth(path)


def test_truth_exhibit_with_two_firearms_is_refused(tmp_path):
    path = tmp_path / "truth.csv"
    path.write_text("exhibit_id,firearm\nA,G1\nA,G2\n")
    with pytest.raises(InputError, match="A given two firearms"):
        read_truth(path)


def test_calibrate_cli_reports_a_bad_truth_file_in_one_line(tmp_path):
    from click.testing import CliRunner

    from ribin.cli import main
    from ribin.store import SignatureStore

    store = tmp_path / "store"
    SignatureStore.open(store, "a").close()
    truth = tmp_path / "truth.csv"
    truth.write_text("exhibit_id,firearm\nA,G1\n,G2\n")
    result = CliRunner().invoke(main, ["calibrate", str(store), "--truth", str(truth)])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == ["Error: truth.csv: row 3 has no exhibit_id (or file)"]
