"""2D image reading and writing: formats, bit depths, colour, pixel sizes, bad files."""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image

from ribin.errors import InputError
from ribin.io import read_image, write_image


def _gradient(shape=(12, 17)) -> np.ndarray:
    rows, cols = np.indices(shape)
    return ((rows * shape[1] + cols) / (shape[0] * shape[1] - 1)).astype(np.float64)


def _expect(path: Path, match: str, **kwargs) -> None:
    with pytest.raises(InputError, match=match) as info:
        read_image(path, **kwargs)
    assert str(info.value).startswith(f"{path.name}: ")
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("suffix", [".png", ".tif", ".tiff"])
@pytest.mark.parametrize("bit_depth", [8, 16])
def test_write_read_round_trip(tmp_path: Path, suffix: str, bit_depth: int) -> None:
    pixels = _gradient()
    path = tmp_path / f"casing{suffix}"
    write_image(path, pixels, 3.7, bit_depth=bit_depth)
    image = read_image(path)
    assert image.pixels.dtype == np.float32
    assert image.pixels.shape == pixels.shape
    assert image.bit_depth == bit_depth
    top = 2**bit_depth - 1
    np.testing.assert_allclose(image.pixels, pixels, atol=0.5 / top + 1e-7)
    # PNG stores whole pixels per metre (270270 for 3.7 um)
    assert image.pixel_size_um == pytest.approx(3.7, rel=2e-6 if suffix == ".png" else 1e-9)
    assert image.metadata["pixel_size_source"].startswith(("PNG pHYs", "TIFF resolution"))
    assert image.source_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert image.source == os.fspath(path)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_png_resolution_is_exact_for_whole_pixels_per_metre(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", _gradient(), 6.25)
    assert read_image(tmp_path / "a.png").pixel_size_um == 6.25


def test_tiff_resolution_in_centimetres(tmp_path: Path) -> None:
    write_image(tmp_path / "a.tif", _gradient(), 2.5)
    with tifffile.TiffFile(tmp_path / "a.tif") as tif:
        page = tif.pages.first
        assert int(page.tags["ResolutionUnit"].value) == 3
    assert read_image(tmp_path / "a.tif").pixel_size_um == pytest.approx(2.5, rel=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"pixels": np.zeros((3, 3)), "pixel_size_um": 1.0, "suffix": ".jpg"}, "png"),
        ({"pixels": np.zeros(3), "pixel_size_um": 1.0}, "2-D"),
        ({"pixels": np.full((3, 3), np.nan), "pixel_size_um": 1.0}, "NaN"),
        ({"pixels": np.full((3, 3), 1.5), "pixel_size_um": 1.0}, r"\[0, 1\]"),
        ({"pixels": np.zeros((3, 3)), "pixel_size_um": 0.0}, "pixel_size_um"),
        ({"pixels": np.zeros((3, 3)), "pixel_size_um": 1.0, "bit_depth": 12}, "bit_depth"),
    ],
)
def test_write_image_refuses_bad_arguments(tmp_path: Path, kwargs: dict, match: str) -> None:
    suffix = kwargs.pop("suffix", ".png")
    with pytest.raises(ValueError, match=match):
        write_image(tmp_path / f"x{suffix}", **kwargs)
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- colour, modes


def test_colour_png_uses_luma_weights(tmp_path: Path) -> None:
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    Image.fromarray(rgb).save(tmp_path / "c.png")
    image = read_image(tmp_path / "c.png", pixel_size_um=1.0)
    expected = (0.299 * 200 + 0.587 * 100 + 0.114 * 50) / 255
    np.testing.assert_allclose(image.pixels, expected, rtol=1e-6)
    assert image.metadata["converted_from_colour"] is True
    assert image.bit_depth == 8


def test_sixteen_bit_colour_png_keeps_its_precision(tmp_path: Path) -> None:
    rgb = np.zeros((3, 4, 3), np.uint16)
    rgb[..., 0] = 1001  # red: cv2 writes BGR, so this is channel 2 there
    cv2.imwrite(str(tmp_path / "c16.png"), rgb[..., ::-1])
    image = read_image(tmp_path / "c16.png", pixel_size_um=1.0)
    assert image.bit_depth == 16
    np.testing.assert_allclose(image.pixels, 0.299 * 1001 / 65535, rtol=1e-5)


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGBA", "I;16", "CMYK"])
def test_pillow_modes(tmp_path: Path, mode: str) -> None:
    base = Image.fromarray((_gradient() * 255).astype(np.uint8))
    if mode == "I;16":
        image = Image.fromarray((_gradient() * 65535).astype(np.uint16))
        suffix = ".png"
    else:
        image = base.convert(mode)
        suffix = ".tif" if mode == "CMYK" else ".png"
    if mode == "CMYK":
        image.save(tmp_path / f"m{suffix}", format="TIFF")
        # tifffile refuses separated (CMYK) TIFFs with a clear message
        _expect(tmp_path / f"m{suffix}", "colour space SEPARATED is not supported")
        return
    image.save(tmp_path / f"m{suffix}")
    result = read_image(tmp_path / f"m{suffix}", pixel_size_um=2.0)
    assert result.pixels.shape == (12, 17)
    assert result.pixels.dtype == np.float32
    assert 0.0 <= result.pixels.min() <= result.pixels.max() <= 1.0
    if mode != "1":
        np.testing.assert_allclose(result.pixels, _gradient(), atol=0.01)


def test_jpeg_grayscale(tmp_path: Path) -> None:
    Image.fromarray(np.full((16, 16), 128, np.uint8)).save(tmp_path / "g.jpg", quality=95)
    image = read_image(tmp_path / "g.jpg", pixel_size_um=1.0)
    assert image.metadata["format"] == "jpeg"
    np.testing.assert_allclose(image.pixels, 128 / 255, atol=2 / 255)


def test_tiff_sixteen_bit_rgb_planar(tmp_path: Path) -> None:
    planes = np.zeros((3, 5, 6), np.uint16)
    planes[1] = 65535  # pure green
    tifffile.imwrite(tmp_path / "p.tif", planes, photometric="rgb", planarconfig="separate")
    image = read_image(tmp_path / "p.tif", pixel_size_um=1.0)
    assert image.pixels.shape == (5, 6)
    assert image.bit_depth == 16
    np.testing.assert_allclose(image.pixels, 0.587, rtol=1e-5)


def test_tiff_min_is_white_is_inverted(tmp_path: Path) -> None:
    data = np.array([[0, 255]], np.uint8)
    tifffile.imwrite(tmp_path / "w.tif", data, photometric="miniswhite")
    np.testing.assert_array_equal(read_image(tmp_path / "w.tif", pixel_size_um=1).pixels, [[1, 0]])


def test_float_tiff_is_rescaled(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "f.tif", np.array([[10.0, 20.0], [30.0, 50.0]], np.float32))
    image = read_image(tmp_path / "f.tif", pixel_size_um=1)
    np.testing.assert_allclose(image.pixels, [[0, 0.25], [0.5, 1]])
    assert any("rescaled" in w for w in image.metadata["warnings"])


def test_multi_page_tiff_reads_the_first_page(tmp_path: Path) -> None:
    stack = np.stack([np.zeros((4, 4), np.uint8), np.full((4, 4), 255, np.uint8)])
    tifffile.imwrite(tmp_path / "s.tif", stack, photometric="minisblack")
    with tifffile.TiffFile(tmp_path / "s.tif") as tif:
        assert len(tif.pages) == 2
    image = read_image(tmp_path / "s.tif", pixel_size_um=1)
    assert image.pixels.max() == 0
    assert image.metadata["pages"] == 2
    assert any("first is used" in w for w in image.metadata["warnings"])


# --------------------------------------------------------------------------- pixel sizes


@pytest.mark.parametrize("dpi", [72, 96, 300])
def test_screen_default_resolutions_are_ignored(tmp_path: Path, dpi: int) -> None:
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "d.png", dpi=(dpi, dpi))
    image = read_image(tmp_path / "d.png")
    assert image.pixel_size_um is None
    assert image.metadata["pixel_size_source"] is None
    assert f"({dpi} dpi" in image.metadata["pixel_size_note"]
    assert "not a plausible" in image.metadata["pixel_size_note"]


def test_no_resolution_in_file(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "n.png")
    image = read_image(tmp_path / "n.png")
    assert image.pixel_size_um is None
    assert image.metadata["pixel_size_note"] == "the file records no resolution"


def test_user_pixel_size_wins(tmp_path: Path) -> None:
    write_image(tmp_path / "u.png", _gradient(), 5.0)
    image = read_image(tmp_path / "u.png", pixel_size_um=3.0)
    assert image.pixel_size_um == 3.0
    assert image.metadata["pixel_size_source"] == "user"
    assert image.metadata["file_pixel_size_um"] == pytest.approx(5.0)


@pytest.mark.parametrize("value", [0, -2.0, float("nan"), float("inf"), "abc"])
def test_bad_user_pixel_size(tmp_path: Path, value) -> None:
    write_image(tmp_path / "u.png", _gradient(), 5.0)
    _expect(tmp_path / "u.png", "pixel size must be a positive number", pixel_size_um=value)


def test_jpeg_density_in_dots_per_inch(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "j.jpg", dpi=(5080, 5080))
    image = read_image(tmp_path / "j.jpg")
    assert image.pixel_size_um == pytest.approx(5.0)
    assert "JPEG density" in image.metadata["pixel_size_source"]


def test_imagej_tiff_unit(tmp_path: Path) -> None:
    data = np.zeros((4, 4), np.uint16)
    tifffile.imwrite(
        tmp_path / "ij.tif",
        data,
        imagej=True,
        resolution=(1 / 0.8, 1 / 0.8),
        metadata={"unit": "um"},
    )
    image = read_image(tmp_path / "ij.tif")
    assert image.pixel_size_um == pytest.approx(0.8)
    assert "ImageJ" in image.metadata["pixel_size_source"]


def test_tiff_resolution_without_unit(tmp_path: Path) -> None:
    tifffile.imwrite(
        tmp_path / "nu.tif", np.zeros((4, 4), np.uint8), resolution=(4, 4), resolutionunit=1
    )
    image = read_image(tmp_path / "nu.tif")
    assert image.pixel_size_um is None
    assert "no physical unit" in image.metadata["pixel_size_note"]


def test_anisotropic_resolution_is_reported(tmp_path: Path) -> None:
    tifffile.imwrite(
        tmp_path / "an.tif", np.zeros((4, 4), np.uint8), resolution=(5000, 2500), resolutionunit=3
    )
    image = read_image(tmp_path / "an.tif")
    assert image.pixel_size_um == pytest.approx(2.0)
    assert image.metadata["pixel_size_y_um"] == pytest.approx(4.0)


# --------------------------------------------------------------------------- bad input


def test_missing_file(tmp_path: Path) -> None:
    _expect(tmp_path / "nope.png", "file not found")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "e.png").write_bytes(b"")
    _expect(tmp_path / "e.png", r"file is empty \(0 bytes\)")


def test_directory(tmp_path: Path) -> None:
    (tmp_path / "d.png").mkdir()
    _expect(tmp_path / "d.png", "is a directory")


def test_not_an_image(tmp_path: Path) -> None:
    (tmp_path / "t.png").write_text("just some text, not pixels\n")
    _expect(tmp_path / "t.png", "not an image")


@pytest.mark.parametrize("suffix", [".png", ".tif", ".jpg"])
def test_truncated_image(tmp_path: Path, suffix: str) -> None:
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 255, (64, 64), dtype=np.uint8)
    path = tmp_path / f"full{suffix}"
    if suffix == ".tif":
        tifffile.imwrite(path, noise, compression="zlib")
    else:
        Image.fromarray(noise).save(path)
    data = path.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    _expect(cut, "truncated or damaged")


def _png_with_size(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` with a tiny compressed body."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = zlib.compress(b"\x00" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    )


def test_decompression_bomb_png(tmp_path: Path) -> None:
    (tmp_path / "bomb.png").write_bytes(_png_with_size(100_000, 100_000))
    _expect(tmp_path / "bomb.png", "decompression bomb")


def test_max_pixels_png_and_tiff(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", _gradient((10, 10)), 1.0)
    write_image(tmp_path / "a.tif", _gradient((10, 10)), 1.0)
    for name in ("a.png", "a.tif"):
        _expect(tmp_path / name, "exceeds the limit of 99 pixels", max_pixels=99)
        assert read_image(tmp_path / name, max_pixels=100).pixels.shape == (10, 10)


def test_zero_size_image(tmp_path: Path) -> None:
    (tmp_path / "zero.png").write_bytes(_png_with_size(0, 10))
    with pytest.raises(InputError, match=r"^zero\.png: "):
        read_image(tmp_path / "zero.png")


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_no_file_handles_left_open(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", _gradient(), 1.0)
    write_image(tmp_path / "a.tif", _gradient(), 1.0)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    read_image(tmp_path / "a.png")
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(10):
        read_image(tmp_path / "a.png")
        read_image(tmp_path / "a.tif")
        with pytest.raises(InputError):
            read_image(tmp_path / "bad.png")
    assert len(os.listdir("/proc/self/fd")) == before
