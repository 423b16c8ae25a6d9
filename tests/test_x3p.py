"""X3P reading and writing: real scans, round trips, and every kind of bad file."""

from __future__ import annotations

import hashlib
import io
import os
import re
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ribin.errors import InputError
from ribin.io import X3P, read_x3p, write_x3p

FADUL_FILES = [
    "Fadul 1-1.x3p", "Fadul 1-2.x3p", "Fadul 2-1.x3p", "Fadul 2-2.x3p", "Fadul 3-1.x3p",
    "Fadul 3-2.x3p", "Fadul 4-1.x3p", "Fadul 4-2.x3p", "Fadul 5-1.x3p", "Fadul 5-2.x3p",
    "Fadul A.x3p", "Fadul B.x3p", "Fadul C.x3p", "Fadul F.x3p", "Fadul H.x3p",
    "Fadul M.x3p", "Fadul N.x3p", "Fadul T.x3p", "Fadul Z.x3p",
]  # fmt: skip


def _surface(shape=(6, 9), seed=0, holes=True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    heights = rng.normal(0, 5e-6, shape)
    if holes:
        heights[rng.random(shape) < 0.2] = np.nan
        heights.flat[0] = 1e-6  # at least one valid point
    return heights


def _write(path: Path, heights: np.ndarray, **kwargs) -> Path:
    write_x3p(path, X3P(heights=heights, pixel_size_x_um=2.5, pixel_size_y_um=2.5), **kwargs)
    return path


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def _rebuild(
    src: Path,
    dst: Path,
    *,
    xml: Callable[[str], str] | None = None,
    replace: dict[str, bytes | None] | None = None,
    fix_xml_checksum: bool = True,
) -> Path:
    """Copy an X3P with main.xml edited and members replaced (None removes one)."""
    members = _members(src)
    if xml is not None:
        members["main.xml"] = xml(members["main.xml"].decode()).encode()
    for name, data in (replace or {}).items():
        if data is None:
            members.pop(name, None)
        else:
            members[name] = data
    if fix_xml_checksum and "main.xml" in members and "md5checksum.hex" in members:
        members["md5checksum.hex"] = hashlib.md5(members["main.xml"]).hexdigest().encode()
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return dst


def _sub(pattern: str, repl: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        new, count = re.subn(pattern, repl, text, count=1, flags=re.S)
        assert count == 1, pattern
        return new

    return edit


def _expect(path: Path, match: str, **kwargs) -> InputError:
    with pytest.raises(InputError, match=match) as info:
        read_x3p(path, **kwargs)
    message = str(info.value)
    assert message.startswith(f"{path.name}: ")
    assert "\n" not in message
    return info.value


# --------------------------------------------------------------------------- real scans


@pytest.mark.parametrize("name", FADUL_FILES)
def test_fadul_reads_and_round_trips_exactly(fadul_dir: Path, tmp_path: Path, name: str) -> None:
    original = fadul_dir / name
    scan = read_x3p(original)
    header = _members(original)["main.xml"].decode()
    size_x = int(re.search(r"<SizeX>(\d+)", header).group(1))
    size_y = int(re.search(r"<SizeY>(\d+)", header).group(1))
    assert scan.heights.shape == (size_y, size_x)
    assert scan.heights.dtype == np.float64
    assert scan.pixel_size_x_um == scan.pixel_size_y_um == 6.25
    assert scan.mask is None
    assert scan.metadata["instrument"]["manufacturer"] == "NanoFocus"
    assert scan.metadata["increment_unit"] == "m"
    assert scan.metadata["checksums"] == {"main_xml": "verified", "point_data": "verified"}
    # rows are Y, X varies fastest in data.bin
    raw = np.frombuffer(_members(original)["bindata/data.bin"], "<f8")
    np.testing.assert_array_equal(scan.heights.ravel(), raw)
    assert 0.1 < np.isfinite(scan.heights).mean() < 0.9
    assert scan.source_sha256 == hashlib.sha256(original.read_bytes()).hexdigest()
    assert scan.source == os.fspath(original)

    copy = tmp_path / name
    write_x3p(copy, scan)
    again = read_x3p(copy)
    assert again.heights.dtype == scan.heights.dtype
    assert again.heights.tobytes() == scan.heights.tobytes()  # NaN positions included
    assert again.pixel_size_x_um == scan.pixel_size_x_um
    assert again.pixel_size_y_um == scan.pixel_size_y_um
    assert again.metadata == scan.metadata


def test_fadul_truncated_file(fadul_dir: Path, tmp_path: Path) -> None:
    data = (fadul_dir / "Fadul A.x3p").read_bytes()
    cut = tmp_path / "cut.x3p"
    cut.write_bytes(data[: len(data) // 2])
    _expect(cut, "not an X3P file")


# --------------------------------------------------------------------------- writing


def test_keyword_construction_and_layout(tmp_path: Path) -> None:
    heights = np.arange(15, dtype=np.float64).reshape(3, 5) * 1e-6
    heights[1, 2] = np.nan
    path = tmp_path / "small.x3p"
    write_x3p(path, X3P(heights=heights, pixel_size_x_um=1.5, pixel_size_y_um=2.0))
    members = _members(path)
    assert {"main.xml", "bindata/data.bin", "md5checksum.hex"} <= set(members)
    header = members["main.xml"].decode()
    assert 'xmlns:p="http://www.opengps.eu/2008/ISO5436_2"' in header
    assert "<SizeX>5</SizeX>" in header and "<SizeY>3</SizeY>" in header
    assert "<Increment>1.5e-06</Increment>" in header
    assert "<DataType>D</DataType>" in header
    raw = np.frombuffer(members["bindata/data.bin"], "<f8")
    np.testing.assert_array_equal(raw[:5], heights[0])  # first row is the first X run
    assert hashlib.md5(members["bindata/data.bin"]).hexdigest() in header
    assert members["md5checksum.hex"].startswith(
        hashlib.md5(members["main.xml"]).hexdigest().encode()
    )

    scan = read_x3p(path)
    assert scan.heights.tobytes() == heights.tobytes()
    assert (scan.pixel_size_x_um, scan.pixel_size_y_um) == (1.5, 2.0)
    assert scan.metadata["creator"] == "RIBIN"
    assert [p.name for p in tmp_path.iterdir()] == ["small.x3p"]  # no temporary left


def test_metadata_written_and_read(tmp_path: Path) -> None:
    metadata = {
        "date": "2024-05-01T10:00:00",
        "creator": "Lab <B&C>",
        "comment": "test fire 3",
        "instrument": {
            "manufacturer": "Sensofar",
            "model": "S neox",
            "serial": "42",
            "version": "1",
        },
    }
    path = tmp_path / "meta.x3p"
    write_x3p(path, X3P(_surface(), 3.0, 3.0, metadata=metadata))
    scan = read_x3p(path)
    for key in ("date", "creator", "comment", "instrument"):
        assert scan.metadata[key] == metadata[key]


def test_float32_stays_float32(tmp_path: Path) -> None:
    heights = _surface().astype(np.float32)
    scan = read_x3p(_write(tmp_path / "f.x3p", heights))
    assert scan.metadata["data_type"] == "F"
    assert scan.heights.dtype == np.float32
    assert scan.heights.tobytes() == heights.tobytes()


@pytest.mark.parametrize("data_type", ["I", "L"])
def test_integer_types_quantise_and_keep_missing_points(tmp_path: Path, data_type: str) -> None:
    heights = _surface((7, 4))
    scan = read_x3p(_write(tmp_path / "i.x3p", heights, data_type=data_type))
    assert "bindata/valid.bin" in _members(tmp_path / "i.x3p")
    assert scan.metadata["data_type"] == data_type
    np.testing.assert_array_equal(np.isnan(scan.heights), np.isnan(heights))
    step = scan.metadata["z_increment_m"]
    assert np.nanmax(np.abs(scan.heights - heights)) <= step / 2 * 1.0001
    # a re-write with the metadata's increment is exact
    write_x3p(tmp_path / "again.x3p", scan)
    assert read_x3p(tmp_path / "again.x3p").heights.tobytes() == scan.heights.tobytes()


def test_integer_type_with_given_increment(tmp_path: Path) -> None:
    heights = np.array([[0.0, 1e-6], [2e-6, np.nan]])
    path = _write(tmp_path / "l.x3p", heights, data_type="L", z_increment_m=1e-9)
    stored = np.frombuffer(_members(path)["bindata/data.bin"], "<i4")
    np.testing.assert_array_equal(stored[:3], [0, 1000, 2000])
    with pytest.raises(ValueError, match="span more than"):
        _write(tmp_path / "i.x3p", heights * 1e3, data_type="I", z_increment_m=1e-9)


@pytest.mark.parametrize(
    ("heights", "kwargs", "match"),
    [
        (np.zeros(5), {}, "2-D"),
        (np.zeros((0, 3)), {}, "2-D"),
        (np.full((2, 2), np.nan), {}, "no valid point"),
        (np.array([[np.inf, 0.0]]), {}, "infinite"),
        (np.zeros((2, 2)), {"data_type": "Q"}, "data_type"),
    ],
)
def test_writer_refuses_bad_surfaces(tmp_path: Path, heights, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        _write(tmp_path / "bad.x3p", heights, **kwargs)
    assert not list(tmp_path.iterdir())


def test_writer_refuses_bad_pixel_size(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="pixel_size_x_um"):
        write_x3p(tmp_path / "bad.x3p", X3P(np.zeros((2, 2)), 0.0, 1.0))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.integers(1, 17),
    cols=st.integers(1, 17),
    data_type=st.sampled_from(["D", "F", "I", "L"]),
    hole_fraction=st.floats(0, 0.9),
    seed=st.integers(0, 2**16),
)
def test_round_trip_property(tmp_path: Path, rows, cols, data_type, hole_fraction, seed) -> None:
    rng = np.random.default_rng(seed)
    heights = rng.normal(0, 1e-5, (rows, cols))
    heights[rng.random((rows, cols)) < hole_fraction] = np.nan
    heights[rng.integers(rows), rng.integers(cols)] = 3e-6
    if data_type == "F":
        heights = heights.astype(np.float32)
    path = _write(tmp_path / "p.x3p", heights, data_type=data_type)
    scan = read_x3p(path)
    assert scan.heights.shape == (rows, cols)
    np.testing.assert_array_equal(np.isnan(scan.heights), np.isnan(heights))
    if data_type in ("D", "F"):
        assert scan.heights.dtype == heights.dtype
        assert scan.heights.tobytes() == heights.tobytes()
    else:
        tolerance = scan.metadata["z_increment_m"] * 0.5001
        assert np.nanmax(np.abs(scan.heights - heights)) <= tolerance
    write_x3p(path, scan)
    assert read_x3p(path).heights.tobytes() == scan.heights.tobytes()


# --------------------------------------------------------------------------- masks


def test_mask_round_trip(tmp_path: Path) -> None:
    heights = _surface((8, 11), holes=False)
    mask = np.zeros(heights.shape, bool)
    mask[2:6, 3:9] = True
    path = tmp_path / "masked.x3p"
    write_x3p(path, X3P(heights, 2.0, 2.0, mask=mask))
    png = Image.open(io.BytesIO(_members(path)["bindata/mask.png"]))
    assert png.size == (11, 8)  # width = SizeX, height = SizeY
    scan = read_x3p(path)
    np.testing.assert_array_equal(scan.mask, mask)
    assert scan.metadata["mask_background"] == "#cd7f32"
    write_x3p(path, scan)
    np.testing.assert_array_equal(read_x3p(path).mask, mask)


def _png(rgb: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG")
    return out.getvalue()


def test_x3ptools_style_mask(tmp_path: Path) -> None:
    """Background colour named in <Mask>; any other colour marks the region."""
    src = _write(tmp_path / "plain.x3p", _surface((4, 6), holes=False))
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[...] = (0xCD, 0x7F, 0x32)
    rgb[1:3, 2:5] = (0x1F, 0x78, 0xB4)
    mask_xml = (
        "<Mask><Background>#CD7F32</Background><Annotations>"
        '<Annotation color="#1F78B4">breech face</Annotation></Annotations></Mask></Record3>'
    )
    path = _rebuild(
        src,
        tmp_path / "annotated.x3p",
        xml=_sub("</Record3>", mask_xml),
        replace={"bindata/mask.png": _png(rgb)},
    )
    scan = read_x3p(path)
    expected = np.zeros((4, 6), bool)
    expected[1:3, 2:5] = True
    np.testing.assert_array_equal(scan.mask, expected)
    assert scan.metadata["mask_annotations"] == {"#1f78b4": "breech face"}


@pytest.mark.parametrize(
    ("rgb_shape", "fill", "warning"),
    [((5, 6, 3), 255, "mask ignored"), ((4, 6, 3), 0, "marks no point")],
)
def test_unusable_mask_is_ignored_with_a_warning(tmp_path: Path, rgb_shape, fill, warning) -> None:
    src = _write(tmp_path / "plain.x3p", _surface((4, 6), holes=False))
    rgb = np.full(rgb_shape, fill, np.uint8)
    path = _rebuild(src, tmp_path / "m.x3p", replace={"bindata/mask.png": _png(rgb)})
    scan = read_x3p(path)
    assert scan.mask is None
    assert any(warning in w for w in scan.metadata["warnings"])


# --------------------------------------------------------------------------- units


def test_increment_in_micrometres_is_detected(tmp_path: Path) -> None:
    src = _write(tmp_path / "m.x3p", _surface())
    path = _rebuild(src, tmp_path / "um.x3p", xml=lambda t: t.replace("2.5e-06", "2.5"))
    scan = read_x3p(path)
    assert scan.pixel_size_x_um == scan.pixel_size_y_um == 2.5
    assert scan.metadata["increment_unit"] == "um (detected)"
    write_x3p(tmp_path / "back.x3p", scan)
    assert "<Increment>2.5e-06</Increment>" in _members(tmp_path / "back.x3p")["main.xml"].decode()


def test_heights_in_micrometres_are_detected(tmp_path: Path) -> None:
    heights = _surface()
    scan = read_x3p(_write(tmp_path / "um.x3p", heights * 1e6))
    assert scan.metadata["z_unit"] == "um (detected)"
    np.testing.assert_allclose(scan.heights, heights, rtol=1e-12)


def test_z_increment_and_offset_scale_float_data(tmp_path: Path) -> None:
    heights = np.array([[1.0, 2.0], [np.nan, 4.0]])
    src = _write(tmp_path / "a.x3p", heights)
    edit = _sub(
        r"(<CZ>.*?)<Increment>1</Increment>\s*<Offset>0</Offset>",
        r"\1<Increment>1e-06</Increment><Offset>5e-06</Offset>",
    )
    scan = read_x3p(_rebuild(src, tmp_path / "b.x3p", xml=edit))
    np.testing.assert_allclose(scan.heights, heights * 1e-6 + 5e-6)


# --------------------------------------------------------------------------- bad input


def test_missing_file(tmp_path: Path) -> None:
    _expect(tmp_path / "nope.x3p", "file not found")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.x3p").write_bytes(b"")
    _expect(tmp_path / "empty.x3p", "empty")


def test_not_a_zip(tmp_path: Path) -> None:
    (tmp_path / "text.x3p").write_text("hello, I am not a zip archive\n")
    _expect(tmp_path / "text.x3p", "not an X3P file")


def test_truncated_zip(tmp_path: Path) -> None:
    data = _write(tmp_path / "a.x3p", _surface((40, 40))).read_bytes()
    (tmp_path / "cut.x3p").write_bytes(data[: len(data) // 2])
    _expect(tmp_path / "cut.x3p", "not an X3P file")


@pytest.mark.parametrize(
    ("member", "match"),
    [("main.xml", "no main.xml"), ("bindata/data.bin", r"no bindata/data\.bin")],
)
def test_missing_member(tmp_path: Path, member: str, match: str) -> None:
    src = _write(tmp_path / "a.x3p", _surface())
    _expect(_rebuild(src, tmp_path / "b.x3p", replace={member: None}), match)


def test_data_size_disagrees_with_header(tmp_path: Path) -> None:
    src = _write(tmp_path / "a.x3p", np.zeros((4, 4)))
    path = _rebuild(src, tmp_path / "b.x3p", xml=_sub("<SizeX>4", "<SizeX>5"))
    _expect(path, "holds 128 bytes but the header says 5 x 4 points")


def test_zip_bomb_size_is_refused_before_reading(tmp_path: Path) -> None:
    """A small archive that inflates to 40 MB, header saying 10 x 10 doubles."""
    src = _write(tmp_path / "a.x3p", np.zeros((10, 10)))
    bomb = tmp_path / "bomb.x3p"
    members = _members(src)
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in ("main.xml", "md5checksum.hex"):
            archive.writestr(name, members[name])
        with archive.open("bindata/data.bin", "w", force_zip64=True) as member:
            zeros = bytes(1 << 20)
            for _ in range(40):
                member.write(zeros)
    assert bomb.stat().st_size < 1 << 20
    _expect(bomb, "holds 41943040 bytes but the header says")


def _patch_sizes(path: Path, name: str, new_size: int) -> None:
    """Make the zip headers of ``name`` lie about its uncompressed size."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name)
    data = bytearray(path.read_bytes())
    local = info.header_offset
    assert data[local : local + 4] == b"PK\x03\x04"
    struct.pack_into("<I", data, local + 22, new_size)
    central = data.find(b"PK\x01\x02")
    while central != -1:
        name_len = struct.unpack_from("<H", data, central + 28)[0]
        if data[central + 46 : central + 46 + name_len] == name.encode():
            struct.pack_into("<I", data, central + 24, new_size)
            break
        central = data.find(b"PK\x01\x02", central + 4)
    else:
        raise AssertionError("central directory entry not found")
    path.write_bytes(bytes(data))


def test_lying_zip_header_cannot_inflate_past_its_claim(tmp_path: Path) -> None:
    """Header claims 8 x 8 doubles (512 bytes) but the member inflates to 64 MB."""
    src = _write(tmp_path / "a.x3p", np.zeros((8, 8)))
    members = _members(src)
    liar = tmp_path / "liar.x3p"
    with zipfile.ZipFile(liar, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("main.xml", members["main.xml"])
        archive.writestr("bindata/data.bin", bytes(64 << 20))
    _patch_sizes(liar, "bindata/data.bin", 512)
    _expect(liar, "corrupt zip archive|checksum mismatch|not the size")


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (
            '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">'
            '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
            '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><r>&c;</r>',
            "forbidden XML constructs",
        ),
        (
            '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>',
            "forbidden XML constructs",
        ),
        ("<p:ISO5436_2 xmlns:p='x'><Record1>", "not well-formed XML"),
        ("<html><body/></html>", "root is <html>"),
    ],
    ids=["billion-laughs", "external-entity", "malformed", "wrong-root"],
)
def test_hostile_or_broken_xml(tmp_path: Path, payload: str, match: str) -> None:
    src = _write(tmp_path / "a.x3p", _surface())
    _expect(_rebuild(src, tmp_path / "b.x3p", xml=lambda _: payload), match)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (
            _sub(r"(<CX>.*?)<Increment>[^<]*</Increment>", r"\1"),
            "main.xml has no <Increment> for X",
        ),
        (
            _sub(r"(<CY>.*?)<Increment>[^<]*</Increment>", r"\1"),
            "main.xml has no <Increment> for Y",
        ),
        (_sub(r"(<CX>.*?<Increment>)[^<]*", r"\1-1"), "X increment -1.0 is not a positive"),
        (_sub(r"(<CX>.*?<Increment>)[^<]*", r"\1abc"), "not a number"),
        (_sub(r"<Record1>.*</Record1>", ""), "no <Record1>"),
        (_sub(r"<MatrixDimension>.*</MatrixDimension>", ""), "no <MatrixDimension>"),
        (_sub(r"<SizeX>\d+", "<SizeX>0"), "SizeX> is 0"),
        (_sub(r"<SizeY>\d+", "<SizeY>-3"), "SizeY> is -3"),
        (_sub(r"<SizeX>\d+", "<SizeX>9.5"), "not an integer"),
        (_sub(r"<SizeZ>1", "<SizeZ>2"), "SizeZ is 2"),
        (_sub(r"<SizeX>\d+", "<SizeX>99999999"), "exceeds the limit"),
        (_sub(r"(<CZ>.*?<DataType>)D", r"\1Q"), "unknown Z data type 'Q'"),
        (_sub(r"(<CZ>.*?)<DataType>D</DataType>", r"\1"), "no <DataType> for Z"),
        (_sub(r"<FeatureType>SUR", "<FeatureType>PCL"), "feature type 'PCL'"),
        (_sub(r"(<CX>.*?<AxisType>)I", r"\1A"), "X axis is not incremental"),
        (_sub(r"<DataLink>.*</DataLink>", ""), "no <DataLink>"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_bad_header(tmp_path: Path, edit, match: str) -> None:
    src = _write(tmp_path / "a.x3p", _surface())
    _expect(
        _rebuild(src, tmp_path / "b.x3p", xml=edit), re.escape(match) if "<" in match else match
    )


def test_max_points_argument(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.x3p", _surface((10, 10)))
    _expect(path, "exceeds the limit of 99 points", max_points=99)
    assert read_x3p(path, max_points=100).heights.shape == (10, 10)


def test_all_nan_surface(tmp_path: Path) -> None:
    src = _write(tmp_path / "a.x3p", np.zeros((3, 3)))
    nan_data = np.full(9, np.nan, "<f8").tobytes()
    edit = _sub(
        r"<MD5ChecksumPointData>\w+", f"<MD5ChecksumPointData>{hashlib.md5(nan_data).hexdigest()}"
    )
    path = _rebuild(src, tmp_path / "nan.x3p", xml=edit, replace={"bindata/data.bin": nan_data})
    _expect(path, "no valid point")


def test_point_data_checksum_mismatch(tmp_path: Path) -> None:
    heights = _surface((5, 5), holes=False)
    src = _write(tmp_path / "a.x3p", heights)
    altered = heights.copy()
    altered[2, 2] += 1e-6
    path = _rebuild(
        src, tmp_path / "b.x3p", replace={"bindata/data.bin": altered.astype("<f8").tobytes()}
    )
    _expect(path, r"bindata/data\.bin checksum mismatch")
    scan = read_x3p(path, verify_checksum=False)
    np.testing.assert_array_equal(scan.heights, altered)
    assert scan.metadata["checksums"]["point_data"] == "mismatch"
    assert any("checksum mismatch" in w for w in scan.metadata["warnings"])


def test_main_xml_checksum_mismatch(tmp_path: Path) -> None:
    src = _write(tmp_path / "a.x3p", _surface())
    path = _rebuild(
        src, tmp_path / "b.x3p", xml=lambda t: t.replace("RIBIN", "Someone"), fix_xml_checksum=False
    )
    _expect(path, "main.xml checksum mismatch")
    scan = read_x3p(path, verify_checksum=False)
    assert scan.metadata["creator"] == "Someone"
    assert scan.metadata["checksums"]["main_xml"] == "mismatch"


def test_archive_without_checksum_file(tmp_path: Path) -> None:
    src = _write(tmp_path / "a.x3p", _surface())
    scan = read_x3p(_rebuild(src, tmp_path / "b.x3p", replace={"md5checksum.hex": None}))
    assert scan.metadata["checksums"]["main_xml"] == "absent"


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_no_file_handles_left_open(tmp_path: Path) -> None:
    good = _write(tmp_path / "a.x3p", _surface())
    bad = _rebuild(good, tmp_path / "b.x3p", xml=_sub(r"<SizeX>\d+", "<SizeX>0"))
    read_x3p(good)
    before = _open_descriptors()
    for _ in range(20):
        read_x3p(good)
        with pytest.raises(InputError):
            read_x3p(bad)
    assert _open_descriptors() == before
