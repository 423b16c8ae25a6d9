"""The synthetic casing generator: determinism, ground truth, difficulty, committed set."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from scipy import ndimage

from ribin.synthetic import (
    CALIBERS,
    FP_SHAPES,
    bandpass,
    batch_plan,
    generate_set,
    load_manifest,
    make_batch,
    make_casing,
    make_firearm,
    masked_correlation,
    render_casing,
    render_entry,
    to_breech_frame,
    truth_masks,
)
from ribin.synthetic.__main__ import main as synth_main

TRUTH_KEYS = (
    "rotation_deg", "translation_um", "primer_centre_px", "primer_radius_px", "fp_centre_px",
    "fp_axes_px", "fp_angle_deg", "seed", "pixel_size_um",
)  # fmt: skip
PIXEL = 12.5  # coarse and quick; the physics is the same at 3-6 um
MASTER = 8.0


def rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(99, spawn_key=key))


def firearm(batch_key: int, key: int, caliber: str = "9mm", shape: str = "round", **kw):
    batch = make_batch(rng(0, batch_key), f"B{batch_key}", caliber, shape, master_pixel_um=MASTER,
                       **kw)  # fmt: skip
    return make_firearm(rng(1, batch_key, key), batch, f"F{batch_key}{key}")


def breech_face_signature(image: np.ndarray, truth: dict) -> np.ndarray:
    """Band-passed inner breech face, resampled into the breech frame with the truth."""
    inner = ndimage.binary_erosion(truth_masks(truth)["breech_face"], iterations=16)
    heights = np.where(inner, image * 1e6, np.nan)
    return to_breech_frame(bandpass(heights, PIXEL), truth)


@pytest.fixture(scope="module")
def signatures() -> list[tuple[tuple[int, int], np.ndarray]]:
    """Two batches x two firearms x two shots, 3D, as breech-frame signatures."""
    out = []
    for b, shape, pattern in ((0, "round", "milling"), (1, "rectangular", "granular")):
        for f in range(2):
            gun = firearm(b, f, shape=shape, pattern=pattern)
            for s in range(2):
                casing = make_casing(gun, rng(2, b, f, s))
                image, truth = render_casing(casing, rng(3, b, f, s), "3d", PIXEL)
                out.append(((b, f), breech_face_signature(image, truth)))
    return out


def test_same_seed_same_arrays():
    gun_a, gun_b = firearm(5, 0), firearm(5, 0)
    np.testing.assert_array_equal(gun_a.breech_face, gun_b.breech_face)
    for modality in ("3d", "2d"):
        a, ta = render_casing(make_casing(gun_a, rng(2, 5)), rng(3, 5), modality, PIXEL)
        b, tb = render_casing(make_casing(gun_b, rng(2, 5)), rng(3, 5), modality, PIXEL)
        np.testing.assert_array_equal(a, b)
        assert ta == tb
    other = firearm(5, 1)
    assert not np.array_equal(gun_a.breech_face, other.breech_face)


def test_plan_covers_every_caliber_and_pin():
    plan = batch_plan(8)
    assert {p["caliber"] for p in plan} == set(CALIBERS)
    assert {p["fp_shape"] for p in plan} == set(FP_SHAPES)
    sizes = np.bincount([p["batch_index"] for p in plan])
    assert sizes.min() >= 2 and sizes.max() <= 3


@pytest.mark.parametrize(
    ("caliber", "shape"), [("9mm", "round"), (".40 S&W", "rectangular"), (".45 ACP", "elliptical")]
)
def test_every_caliber_and_pin_shape_renders(caliber, shape):
    gun = firearm(7, 0, caliber=caliber, shape=shape)
    image, truth = render_casing(make_casing(gun, rng(2, 7)), rng(3, 7), "3d", PIXEL)
    assert image.shape == tuple(truth["image_shape"])
    assert truth["fp_shape"] == shape and truth["caliber"] == caliber
    radius_um = truth["primer_radius_px"] * PIXEL
    assert radius_um == pytest.approx(CALIBERS[caliber].primer_diameter_um / 2)
    masks = truth_masks(truth)
    assert masks["primer"].sum() == pytest.approx(np.pi * truth["primer_radius_px"] ** 2, rel=0.02)
    pin = masks["firing_pin"]
    assert pin.any() and not (pin & masks["breech_face"]).any()
    assert not (masks["breech_face"] & ~masks["primer"]).any()
    # The impression is deep: its floor lies tens of um below the primer face.
    heights = image * 1e6
    face = np.nanmedian(heights[masks["breech_face"]])
    assert face - np.nanmin(heights[pin]) > 30
    # Heights in metres, some dropouts but mostly valid inside the breech face.
    assert np.nanmax(np.abs(image)) < 1e-3
    assert 0 < np.isnan(image[masks["breech_face"]]).mean() < 0.05


def test_rotation_convention_matches_skimage():
    from skimage.transform import rotate

    gun = firearm(8, 0, shape="elliptical", pattern="milling")
    image, truth = render_casing(make_casing(gun, rng(2, 8)), rng(3, 8), "3d", PIXEL,
                                 rotation_deg=70.0)  # fmt: skip
    inner = ndimage.binary_erosion(truth_masks(truth)["breech_face"], iterations=16)
    band_passed = bandpass(np.where(inner, image * 1e6, np.nan), PIXEL)
    signature = to_breech_frame(band_passed, truth)
    # Independently: shift the breech centre to the image centre, rotate back by -angle.
    filled = np.nan_to_num(band_passed)
    rows, cols = image.shape
    bx, by = truth["breech_centre_px"]
    shifted = ndimage.shift(filled, ((rows - 1) / 2 - by, (cols - 1) / 2 - bx), order=1)
    back = rotate(shifted, -truth["rotation_deg"], order=1, preserve_range=True)
    assert masked_correlation(signature, back) > 0.9
    wrong = rotate(shifted, truth["rotation_deg"], order=1, preserve_range=True)
    assert masked_correlation(signature, wrong) < 0.3


def test_truth_aligns_matches_and_separates_firearms(signatures):
    scores: dict[str, list[float]] = {"match": [], "batch": [], "non": []}
    for (ka, a), (kb, b) in itertools.combinations(signatures, 2):
        kind = "match" if ka == kb else "batch" if ka[0] == kb[0] else "non"
        scores[kind].append(masked_correlation(a, b))
    match, batch, non = (np.mean(scores[k]) for k in ("match", "batch", "non"))
    assert min(scores["match"]) > 0.35 and match < 0.95  # clearly positive, not perfect
    assert abs(non) < 0.08 and max(scores["non"]) < 0.2
    assert non + 0.1 < batch < match - 0.1  # subclass carry-over: close non-matches


def test_2d_in_unit_range_and_exposure_changes_it():
    gun = firearm(9, 0, shape="rectangular")
    casing = make_casing(gun, rng(2, 9))
    dark, truth = render_casing(casing, rng(3, 9), "2d", PIXEL, exposure=0.6)
    bright, _ = render_casing(casing, rng(3, 9), "2d", PIXEL, exposure=1.4)
    for image in (dark, bright):
        assert image.shape == tuple(truth["image_shape"])
        assert np.isfinite(image).all() and image.min() >= 0 and image.max() <= 1
    assert bright.mean() > dark.mean() + 0.05
    # Ring light: the walls of the firing-pin impression shine brighter than its floor.
    masks = truth_masks(truth)
    rim = ndimage.binary_dilation(masks["firing_pin"], iterations=2) & ~ndimage.binary_erosion(
        masks["firing_pin"], iterations=2
    )
    assert (
        bright[rim].mean()
        > bright[ndimage.binary_erosion(masks["firing_pin"], iterations=6)].mean()
    )


def test_generate_set_writes_manifest_and_regenerates(tmp_path):
    rows = generate_set(tmp_path / "a", firearms=2, shots=1, seed=3, pixel_size_um=25.0)
    assert len(rows) == 4 and {r["modality"] for r in rows} == {"3d", "2d"}
    loaded = load_manifest(tmp_path / "a")
    assert [r["file"] for r in loaded] == [r["file"] for r in rows]
    assert all((tmp_path / "a" / r["file"]).is_file() for r in rows)
    csv_lines = (tmp_path / "a" / "manifest.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + len(rows) and "rotation_deg" in csv_lines[0]
    assert synth_main(["--out", str(tmp_path / "b"), "--firearms", "2", "--shots", "1",
                       "--seed", "3", "--pixel-size", "25"]) == 0  # fmt: skip
    for row in rows:
        assert (tmp_path / "a" / row["file"]).read_bytes() == (
            tmp_path / "b" / row["file"]
        ).read_bytes()


def test_committed_set_matches_its_manifest(synthetic_dir):
    from ribin.io import read_image, read_x3p

    rows = load_manifest(synthetic_dir)
    document = json.loads((synthetic_dir / "manifest.json").read_text())
    generator = document["generator"]
    assert len(rows) == generator["firearms"] * generator["shots"] * len(generator["modalities"])
    assert {r["caliber"] for r in rows} == set(CALIBERS)
    assert {r["fp_shape"] for r in rows} == set(FP_SHAPES)
    assert len({r["batch"] for r in rows}) >= 3
    for row in rows:
        for key in TRUTH_KEYS:
            assert row[key] is not None, (row["file"], key)
        if row["modality"] == "3d":
            surface = read_x3p(row["path"])
            assert surface.heights.shape == tuple(row["image_shape"])
            assert surface.pixel_size_x_um == pytest.approx(row["pixel_size_um"])
        else:
            image = read_image(row["path"])
            assert image.pixels.shape == tuple(row["image_shape"])
        assert truth_masks(row)["primer"].shape == tuple(row["image_shape"])


def test_committed_file_regenerates_in_memory(synthetic_dir):
    from ribin.io import read_x3p

    row = next(r for r in load_manifest(synthetic_dir) if r["modality"] == "3d")
    stored = read_x3p(row["path"]).heights
    fresh = render_entry(row)
    np.testing.assert_array_equal(np.isnan(stored), np.isnan(fresh))
    valid = np.isfinite(fresh)
    step = stored.dtype.type(20e-9)
    assert np.max(np.abs(stored[valid] - fresh[valid])) <= step
