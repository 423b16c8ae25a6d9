"""2D search and 2D firing pins: prefilter vectors of 2D exhibits, old stores, glare."""

from __future__ import annotations

import cv2
import h5py
import numpy as np
import pytest
from scipy import ndimage

from ribin import prefilter
from ribin.exhibit import Exhibit, Signature
from ribin.preprocess import FP_CONTRAST_2D, _fp_candidates_2d, _fp_contour_2d
from ribin.search import SearchParams, search
from ribin.store import SignatureStore
from ribin.store_format import read_segment_index

PIXEL_UM = 12.5
SIZE = 120


def _view(firearm: int, shot: int) -> np.ndarray:
    """A noisy, shifted view of one firearm's texture, NaN outside a disc."""
    base = np.random.default_rng(firearm).normal(size=(SIZE + 20, SIZE + 20))
    texture = ndimage.gaussian_filter(base, 2.0)
    rng = np.random.default_rng(100 * firearm + shot)
    dy, dx = rng.integers(-4, 5, size=2)
    view = texture[10 + dy : 10 + dy + SIZE, 10 + dx : 10 + dx + SIZE] / texture.std()
    view = view + 0.3 * rng.normal(size=view.shape)
    yy, xx = np.mgrid[:SIZE, :SIZE] - (SIZE - 1) / 2
    return np.where(np.hypot(yy, xx) < SIZE / 2 - 2, view, np.nan).astype(np.float32)


def _exhibit_2d(name: str, firearm: int, shot: int) -> Exhibit:
    bf = Signature("breech_face", _view(firearm, shot), PIXEL_UM, "2d")
    fp = Signature("firing_pin", _view(firearm + 50, shot)[30:90, 30:90].copy(), PIXEL_UM, "2d")
    return Exhibit(name, bf, fp, f"{firearm:032x}{shot:032x}", f"{name}.png", "test")


ROWS = [("Q", 1, 0), ("A", 1, 1), ("B", 2, 1), ("C", 3, 1), ("D", 4, 1)]


def _write(path, monkeypatch=None, version: int | None = None) -> None:
    if version is not None:
        monkeypatch.setattr(prefilter, "FEATURE_VERSION", version)
    with SignatureStore.open(path, "a") as writer:
        writer.add_many([(_exhibit_2d(*row), {"country": "BB"}) for row in ROWS])
    if version is not None:
        monkeypatch.undo()


def test_2d_exhibits_carry_prefilter_vectors(tmp_path):
    _write(tmp_path / "store")
    with SignatureStore.open(tmp_path / "store", "r") as reader:
        for region in ("breech_face", "firing_pin"):
            table = reader.features(kind=region)
            assert len(table) == len(ROWS)
            assert set(table.modality.astype(str)) == {"2d"}
            for row, exhibit_id in enumerate(table.exhibit_id.astype(str)):
                signature = reader.get(exhibit_id).exhibit.signatures()[region]
                expected = prefilter.features(signature)
                assert np.abs(expected).sum() > 0
                np.testing.assert_allclose(table.features[row], expected, atol=1e-6)


def test_2d_search_is_exhaustive_unless_2d_shortlisting_is_asked_for(tmp_path):
    _write(tmp_path / "store")
    with SignatureStore.open(tmp_path / "store", "r") as reader:
        tight = SearchParams(shortlist_min=1, shortlist_fraction=0)
        default = search(reader, "Q", scope="country", params=tight)
        # the 2D prefilter does not keep true matches (benchmarks/bench_2d_search.py):
        # every 2D candidate is compared in both regions, whatever the shortlist
        assert default.compared == 2 * (len(ROWS) - 1)
        assert default.candidates[0].exhibit_id == "A"

        shortlisted = search(
            reader,
            "Q",
            scope="country",
            params=SearchParams(1, 0.0, shortlist_modalities=("3d", "2d")),
        )
        # the stored 2D vectors rank the candidates: only each region's first is compared
        assert shortlisted.compared <= 4
        compared = [c for c in shortlisted.candidates if c.breech_face.score is not None]
        firsts = {c.exhibit_id for c in compared}
        for candidate in shortlisted.candidates:
            ranks = (candidate.breech_face.prefilter_rank, candidate.firing_pin.prefilter_rank)
            assert (candidate.exhibit_id in firsts) == (1 in ranks)


def test_a_store_with_older_vectors_still_searches_2d(tmp_path, monkeypatch):
    """A segment written with another feature version: vectors recomputed on the fly."""
    _write(tmp_path / "store", monkeypatch, version=prefilter.FEATURE_VERSION - 1)
    with SignatureStore.open(tmp_path / "store", "r") as reader:
        versions = set()
        for ref in reader.segments():
            with h5py.File(ref.path, "r") as handle:
                versions.add(read_segment_index(handle).feature_version)
        assert versions == {prefilter.FEATURE_VERSION - 1}
        table = reader.features(kind="breech_face")
        signature = reader.get(str(table.exhibit_id[0])).exhibit.breech_face
        np.testing.assert_allclose(table.features[0], prefilter.features(signature), atol=1e-6)
        result = search(reader, "Q", scope="country")
    assert result.compared == 2 * (len(ROWS) - 1)
    assert result.candidates[0].exhibit_id == "A"


# ------------------------------------------------------------------ firing pin under glare


def _glare_image(with_pin: bool) -> np.ndarray:
    """Log intensity at 8 um: a bright face strewn with thin saturated glints, and (with a
    pin) the impression's saturated wall around a grey cap, centred at (200, 200)."""
    rng = np.random.default_rng(1)
    n = 400
    image = np.full((n, n), np.log(0.85), np.float32)
    image += 0.12 * rng.standard_normal((n, n)).astype(np.float32)
    for _ in range(2500):
        x0, y0 = rng.uniform(0, n, 2)
        angle, length = rng.uniform(0, np.pi), rng.uniform(10, 40)
        end = (int(x0 + length * np.cos(angle)), int(y0 + length * np.sin(angle)))
        cv2.line(image, (int(x0), int(y0)), end, 0.0, 1)
    if with_pin:
        cv2.rectangle(image, (160, 120), (240, 280), 0.0, -1)
        cap = np.zeros((n, n), np.uint8)
        cv2.rectangle(cap, (172, 132), (228, 268), 1, -1)
        grey = np.log(0.5) + 0.05 * rng.standard_normal(np.count_nonzero(cap))
        image[cap > 0] = grey.astype(np.float32)
    return np.minimum(image, 0.0)


def test_firing_pin_outline_is_found_under_glare():
    image = _glare_image(with_pin=True)
    truth = np.zeros(image.shape, np.uint8)
    cv2.rectangle(truth, (160, 120), (240, 280), 1, -1)
    truth = truth.astype(bool)
    # the plain outline search sees no more contrast than the glints' own edges
    plain = _fp_contour_2d(cv2.GaussianBlur(image, (0, 0), 1.0), 8.0, 200.0, 200.0, 300.0)
    assert plain is not None and plain[2] < FP_CONTRAST_2D
    found = _fp_candidates_2d(image, 8.0, 200.0, 200.0, 300.0)
    assert found is not None
    mask = found[0]
    assert np.count_nonzero(mask & truth) / np.count_nonzero(mask | truth) > 0.9


def test_glare_alone_makes_no_firing_pin():
    assert _fp_candidates_2d(_glare_image(with_pin=False), 8.0, 200.0, 200.0, 300.0) is None


@pytest.mark.slow
def test_firing_pin_detected_on_a_rendered_casing_under_glare():
    """A 9mm rectangular pin under a high ring light (exposure 2.5): missed before."""
    from ribin.preprocess import detect_regions
    from ribin.synthetic.firearm import make_batch, make_firearm
    from ribin.synthetic.shot import make_casing, render_casing
    from ribin.synthetic.truth import truth_masks

    rng = np.random.default_rng(6)
    firearm = make_firearm(rng, make_batch(rng, "G", "9mm", "rectangular"), "F0")
    image, truth = render_casing(make_casing(firearm, rng, 0), rng, "2d", 12.5, exposure=2.5)
    detection = detect_regions(image, np.isfinite(image), "2d", 12.5)
    pin = truth_masks(truth)["firing_pin"]
    assert detection.firing_pin_mask is not None
    overlap = detection.firing_pin_mask & pin
    assert np.count_nonzero(overlap) / np.count_nonzero(detection.firing_pin_mask | pin) > 0.7


def test_a_2d_firing_pin_is_added_to_the_score(tmp_path):
    """Scored since the rank-whiten re-measure (docs/method.md, "2D firing pin"): a
    candidate whose firing pin alone matches the query's ranks above those with neither."""
    pin_only = Exhibit(
        "E",
        Signature("breech_face", _view(5, 1), PIXEL_UM, "2d"),
        _exhibit_2d("E", 1, 2).firing_pin,  # the query firearm's firing pin, another shot
        f"{5:032x}{2:032x}",
        "E.png",
        "test",
    )
    with SignatureStore.open(tmp_path / "store", "a") as writer:
        writer.add_many([(_exhibit_2d(*row), {"country": "BB"}) for row in ROWS])
        writer.add(pin_only, {"country": "BB"})
    with SignatureStore.open(tmp_path / "store", "r") as reader:
        result = search(reader, "Q", scope="country")
    assert "firing_pin" in result.by_region
    by_id = {c.exhibit_id: c for c in result.candidates}
    assert set(by_id) == {"A", "B", "C", "D", "E"}
    for candidate in result.candidates:
        assert candidate.firing_pin is not None and candidate.firing_pin.score is not None
        expected = candidate.breech_face.score + candidate.firing_pin.score
        assert candidate.score == pytest.approx(expected)
    # E's breech face is another firearm's: no better than B, C, D on that region alone
    assert by_id["E"].breech_face.score < by_id["A"].breech_face.score
    assert by_id["E"].firing_pin.score > 1 + max(by_id[k].firing_pin.score for k in "BCD")
    assert [c.exhibit_id for c in result.candidates[:2]] == ["A", "E"]
    assert "not added" not in result.provenance["combination"]


def test_no_likelihood_ratio_across_modalities(tmp_path):
    """A 3D query searched against 2D exhibits (``--modality 2d``) gets no LR: the shipped
    calibration is of 3D pairs, and ``ribin compare`` refuses a 3D-2D pair."""
    from ribin.calibration import models_for_store
    from ribin.search_types import Filters

    def exhibit(name: str, firearm: int, shot: int, modality: str) -> Exhibit:
        bf = Signature("breech_face", _view(firearm, shot), PIXEL_UM, modality)
        return Exhibit(name, bf, None, f"{firearm:031x}{shot:031x}{modality}", f"{name}", "test")

    rows = [("Q3", 1, 0, "3d"), ("A3", 1, 1, "3d"), ("A2", 1, 1, "2d"), ("B2", 2, 1, "2d")]
    with SignatureStore.open(tmp_path / "store", "a") as writer:
        writer.add_many([(exhibit(*row), {"country": "BB"}) for row in rows])
    models, _ = models_for_store(tmp_path / "store")
    assert "breech_face/3d" in models
    with SignatureStore.open(tmp_path / "store", "r") as reader:
        same = search(reader, "Q3", scope="country", calibration=models)
        across = search(
            reader, "Q3", scope="country", calibration=models, filters=Filters(modality="2d")
        )
    assert [c.exhibit_id for c in same.candidates] == ["A3"]
    assert same.candidates[0].log_lr is not None
    assert {c.exhibit_id for c in across.candidates} == {"A2", "B2"}
    for candidate in across.candidates:
        assert candidate.breech_face.score is not None
        assert candidate.log_lr is None and candidate.breech_face.log_lr is None
