"""Signature extraction: region detection on synthetic casings, real scans, failure paths."""

from __future__ import annotations

import csv
import math
from functools import cache

import numpy as np
import pytest

import ribin
from ribin.errors import InputError
from ribin.io.casing import Casing
from ribin.signatures import extract
from ribin.synthetic.firearm import make_batch, make_firearm
from ribin.synthetic.shot import make_casing, render_casing
from ribin.synthetic.truth import truth_masks

# Coarse pixels keep the synthetic casings small (~400 px) and the tests fast.
PIXEL_UM = 12.5


@cache
def synthetic(shape: str, modality: str, caliber: str = "9mm", seed: int = 7):
    rng = np.random.default_rng(seed)
    firearm = make_firearm(rng, make_batch(rng, "B", caliber, shape))
    image, truth = render_casing(make_casing(firearm, rng), rng, modality, PIXEL_UM)
    surface = image * 1e6 if modality == "3d" else image.astype(np.float32)
    casing = Casing(
        surface=surface,
        modality=modality,
        pixel_size_um=PIXEL_UM,
        mask=np.isfinite(surface),
        source=f"{shape}-{modality}.x3p",
    )
    return casing, truth


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return np.count_nonzero(a & b) / max(np.count_nonzero(a | b), 1)


def _casing(surface: np.ndarray, modality: str = "3d", pixel: float = 6.25) -> Casing:
    return Casing(
        surface=surface,
        modality=modality,
        pixel_size_um=pixel,
        mask=np.isfinite(surface),
        source="bad.x3p",
    )


@pytest.mark.parametrize("modality", ["3d", "2d"])
@pytest.mark.parametrize(
    ("shape", "caliber"), [("round", "9mm"), ("elliptical", ".45 ACP"), ("rectangular", ".40 S&W")]
)
def test_synthetic_regions_match_truth(shape, caliber, modality):
    casing, truth = synthetic(shape, modality, caliber)
    exhibit = extract(casing)
    det = exhibit.detection
    masks = truth_masks(truth)
    tx, ty = truth["primer_centre_px"]
    cx, cy = det["primer_center_px"]
    assert math.hypot(cx - tx, cy - ty) < 0.02 * truth["primer_radius_px"]
    assert (
        _iou(det["breech_face_mask"] | ~casing.mask & det["primer_mask"], masks["breech_face"])
        > 0.85
    )
    assert exhibit.firing_pin is not None, exhibit.missing
    assert _iou(det["firing_pin_mask"], masks["firing_pin"]) > 0.75
    for sig in exhibit.signatures().values():
        assert sig.surface.dtype == np.float32
        assert sig.pixel_size_um == ribin.signatures.DEFAULT_PIXEL_SIZE_UM
        assert sig.modality == modality
        # 2D: the ring light glints on the impression's cap and walls; saturated grey levels
        # carry no signature, so the firing pin keeps only its unsaturated part.
        low = 0.5 if modality == "3d" or sig.kind == "breech_face" else 0.0
        assert low < sig.quality["valid_fraction"] <= 1
        assert sig.params["extractor_version"]
        assert np.isfinite(sig.surface).any()
    assert exhibit.breech_face.quality["fp_found"] is True
    assert det["firing_pin"]["shape"] == shape


@cache
def _fadul_exhibits(directory):
    with open(directory / "truth.csv", newline="") as fh:
        files = [row["file"] for row in csv.DictReader(fh)]
    return [extract(ribin.read_casing(directory / f)) for f in files]


def test_all_real_scans_give_breech_face_only(fadul_dir):
    exhibits = _fadul_exhibits(fadul_dir)
    assert len(exhibits) == 19
    for ex in exhibits:
        assert ex.firing_pin is None
        assert ex.missing["firing_pin"] == "firing-pin impression already removed from the input"
        bf = ex.breech_face
        assert bf.kind == "breech_face" and bf.modality == "3d"
        assert bf.quality["valid_fraction"] > 0.8
        # Band-passed heights in micrometres: the Fadul marks are about a micrometre.
        assert 0.2 < np.nanstd(bf.surface) < 5
        assert ex.detection["cropped_input"] is True
        assert ex.source_sha256


def test_real_scan_signature_is_deterministic(fadul_dir):
    casing = ribin.read_casing(fadul_dir / "Fadul 1-1.x3p")
    a, b = extract(casing), extract(casing)
    assert a.breech_face.id == b.breech_face.id
    other = extract(casing, pixel_size_um=6.25)
    assert other.breech_face.id != a.breech_face.id


def test_manual_override_changes_and_is_recorded():
    casing, truth = synthetic("round", "3d")
    auto = extract(casing)
    cx, cy = truth["primer_centre_px"]
    r = truth["primer_radius_px"]
    manual = extract(
        casing,
        primer_center=(cx + 5, cy - 3),
        primer_radius=0.9 * r,
        fp_center=(cx, cy),
        fp_radius=0.25 * r,
    )
    params = manual.breech_face.params
    assert params["overrides"]["primer_center_px"] == [cx + 5, cy - 3]
    assert params["overrides"]["fp_radius_px"] == 0.25 * r
    assert manual.detection["source"] == {"primer": "manual", "firing_pin": "manual"}
    assert manual.detection["primer_radius_px"] == pytest.approx(0.9 * r, abs=1e-3)
    assert manual.firing_pin.params["detection"]["firing_pin"]["shape"] == "round"
    assert manual.breech_face.id != auto.breech_face.id
    # The centre alone: the radius is still detected.
    centred = extract(casing, primer_center=(cx, cy))
    assert centred.detection["primer_radius_px"] == pytest.approx(r, rel=0.03)


def test_caliber_hint():
    casing, _ = synthetic("elliptical", "3d", ".45 ACP")
    assert extract(casing, caliber=".45 ACP").detection["primer_radius_px"] > 0
    with pytest.raises(InputError, match="unknown caliber"):
        extract(casing, caliber="12 gauge")


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_blank_image_fails_with_reason():
    flat = np.full((300, 300), 0.5, np.float32)
    with pytest.raises(InputError) as exc:
        extract(_casing(flat, "2d"))
    assert "no primer found" in _one_line(exc)


def test_flat_3d_surface_fails_with_reason():
    rng = np.random.default_rng(0)
    flat = rng.normal(0, 0.05, (300, 300))
    with pytest.raises(InputError) as exc:
        extract(_casing(flat))
    assert "no primer found" in _one_line(exc)


def test_all_nan_fails_with_reason():
    with pytest.raises(InputError) as exc:
        extract(_casing(np.full((100, 100), np.nan)))
    assert _one_line(exc) == "bad.x3p: no valid point in the image"


def test_tiny_valid_area_fails_with_reason():
    surface = np.full((400, 400), np.nan)
    surface[190:210, 190:210] = 0.0
    with pytest.raises(InputError) as exc:
        extract(_casing(surface))
    assert "valid" in _one_line(exc)


def test_override_outside_image_fails_with_reason():
    casing, _ = synthetic("round", "3d")
    with pytest.raises(InputError) as exc:
        extract(casing, primer_center=(-50, 10), primer_radius=100)
    assert "primer_center (-50, 10) px is outside" in _one_line(exc)
    with pytest.raises(InputError) as exc:
        extract(casing, fp_radius=-3)
    assert "fp_radius" in _one_line(exc)


def test_bad_signature_pixel_size():
    casing, _ = synthetic("round", "3d")
    with pytest.raises(InputError, match="pixel size"):
        extract(casing, pixel_size_um=0)


def test_lazy_name():
    assert ribin.extract is extract
