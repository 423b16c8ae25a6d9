"""read_casing: one entry point for X3P and images, dispatched on content."""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ribin
from ribin.errors import InputError
from ribin.io import X3P, Casing, read_casing, read_x3p, write_image, write_x3p


def _x3p(path: Path, heights: np.ndarray, mask: np.ndarray | None = None, **pixel) -> Path:
    sizes = {"pixel_size_x_um": 2.0, "pixel_size_y_um": 2.0, **pixel}
    write_x3p(path, X3P(heights=heights, mask=mask, **sizes))
    return path


def _heights(shape=(5, 7)) -> np.ndarray:
    heights = np.linspace(-3e-6, 3e-6, shape[0] * shape[1]).reshape(shape)
    heights[0, 0] = np.nan
    return heights


def test_x3p_becomes_micrometres(tmp_path: Path) -> None:
    heights = _heights()
    path = _x3p(tmp_path / "scan.x3p", heights)
    casing = read_casing(path)
    assert isinstance(casing, Casing)
    assert casing.modality == "3d"
    assert casing.surface.dtype == np.float64
    np.testing.assert_allclose(casing.surface, heights * 1e6, rtol=1e-12)
    np.testing.assert_array_equal(casing.mask, np.isfinite(heights))
    assert casing.pixel_size_um == 2.0
    assert casing.metadata["format"] == "x3p"
    assert casing.metadata["pixel_size_source"] == "file (X3P increment)"
    assert casing.source_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert casing.source == os.fspath(path)


def test_fadul_scan(fadul_dir: Path) -> None:
    casing = read_casing(fadul_dir / "Fadul 1-1.x3p")
    assert casing.surface.shape == (545, 545)
    assert casing.pixel_size_um == 6.25
    assert 1 < np.nanmax(np.abs(casing.surface)) < 100  # micrometres, not metres
    np.testing.assert_array_equal(casing.mask, np.isfinite(casing.surface))


def test_x3p_mask_png_restricts_the_valid_points(tmp_path: Path) -> None:
    heights = _heights()
    mask = np.zeros(heights.shape, bool)
    mask[1:4, 2:6] = True
    casing = read_casing(_x3p(tmp_path / "m.x3p", heights, mask=mask))
    np.testing.assert_array_equal(casing.mask, mask & np.isfinite(heights))
    assert np.isfinite(casing.surface[4, 6])  # heights outside the mask are kept


def test_x3p_mask_without_valid_points_is_refused(tmp_path: Path) -> None:
    heights = _heights()
    mask = np.zeros(heights.shape, bool)
    mask[0, 0] = True  # the only masked point is NaN
    with pytest.raises(InputError, match="no valid point inside its mask"):
        read_casing(_x3p(tmp_path / "m.x3p", heights, mask=mask))


def test_anisotropic_x3p_keeps_both_sizes(tmp_path: Path) -> None:
    casing = read_casing(_x3p(tmp_path / "a.x3p", _heights(), pixel_size_y_um=3.0))
    assert casing.pixel_size_um == 2.0
    assert casing.metadata["pixel_size_x_um"] == 2.0
    assert casing.metadata["pixel_size_y_um"] == 3.0


def test_dispatch_on_content_not_extension(tmp_path: Path) -> None:
    x3p_named_png = _x3p(tmp_path / "scan.png", _heights())
    assert read_casing(x3p_named_png).modality == "3d"
    image_named_x3p = tmp_path / "image.x3p"
    write_image(tmp_path / "tmp.png", np.full((6, 6), 0.5), 3.0)
    (tmp_path / "tmp.png").rename(image_named_x3p)
    casing = read_casing(image_named_x3p)
    assert casing.modality == "2d"
    assert casing.pixel_size_um == pytest.approx(3.0, rel=1e-6)


def test_image_with_pixel_size_in_file(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).random((9, 11))
    path = tmp_path / "bf.tif"
    write_image(path, pixels, 1.6, bit_depth=16)
    casing = read_casing(path)
    assert casing.modality == "2d"
    assert casing.surface.dtype == np.float32
    np.testing.assert_allclose(casing.surface, pixels, atol=1e-4)
    assert casing.mask.all() and casing.mask.shape == (9, 11)
    assert casing.pixel_size_um == pytest.approx(1.6)
    assert casing.metadata["bit_depth"] == 16
    assert casing.source_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_image_without_pixel_size_asks_for_one(tmp_path: Path) -> None:
    path = tmp_path / "plain.png"
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(path, dpi=(72, 72))
    with pytest.raises(InputError) as info:
        read_casing(path)
    message = str(info.value)
    assert message.startswith("plain.png: no pixel size")
    assert "--pixel-size" in message and "pixel_size_um" in message
    assert "\n" not in message
    assert read_casing(path, pixel_size_um=4.0).pixel_size_um == 4.0


def test_user_pixel_size_overrides_x3p(tmp_path: Path) -> None:
    casing = read_casing(_x3p(tmp_path / "s.x3p", _heights()), pixel_size_um=5.0)
    assert casing.pixel_size_um == 5.0
    assert casing.metadata["pixel_size_source"].startswith("user")


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan")])
def test_bad_user_pixel_size(tmp_path: Path, value: float) -> None:
    with pytest.raises(InputError, match="pixel size must be a positive number"):
        read_casing(_x3p(tmp_path / "s.x3p", _heights()), pixel_size_um=value)


def test_checksum_flag_is_passed_on(tmp_path: Path) -> None:
    path = _x3p(tmp_path / "s.x3p", _heights())
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members["bindata/data.bin"] = np.zeros(35, "<f8").tobytes()
    altered = tmp_path / "altered.x3p"
    with zipfile.ZipFile(altered, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(InputError, match="checksum mismatch"):
        read_casing(altered)
    assert read_casing(altered, verify_checksum=False).mask.all()


@pytest.mark.parametrize(
    ("content", "match"),
    [(None, "file not found"), (b"", "empty"), (b"PK\x03\x04 broken", "not an X3P file")],
)
def test_bad_files(tmp_path: Path, content: bytes | None, match: str) -> None:
    path = tmp_path / "bad.x3p"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=match):
        read_casing(path)


def test_package_level_exports() -> None:
    assert ribin.read_casing is read_casing
    assert ribin.read_x3p is read_x3p
    assert ribin.write_x3p is write_x3p
