"""Read and write X3P surface topographies (ISO 5436-2 / ISO 25178-72).

An X3P file is a zip archive holding ``main.xml`` (axes, sizes, instrument, checksums) and
the point data, usually ``bindata/data.bin``: little-endian values with X varying fastest,
then Y. Heights here are a (M, N) = (SizeY, SizeX) array in metres, row ``i`` holding the
``i``-th run of SizeX values, so ``heights[i, j]`` is the point at X = j, Y = i.

Missing points are NaN for the floating-point types D and F. For the integer types I and L
the standard marks them in a bit array ``bindata/valid.bin`` (one bit per point, least
significant bit first, 1 = valid); this module reads and writes it.

Masks (``bindata/mask.png``) follow the x3ptools / CSAFE convention: an RGB(A) image of
SizeY rows and SizeX columns whose pixels equal ``<Record3><Mask><Background>`` (black
when the file names none) mark points outside the region of interest; every other colour
(and not fully transparent) marks a valid point. A mask with no such pixel (nothing
annotated) is ignored. The writer stores valid points white and the rest in the
background colour (``#cd7f32``, the x3ptools default, unless the metadata names another).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import math
import numbers
import os
import re
import struct
import xml.etree.ElementTree as ET
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Any

import defusedxml
import defusedxml.ElementTree as SafeET
import numpy as np

from ribin.errors import InputError
from ribin.io._files import atomic_output, check_input_file, sha256_file
from ribin.memory import INGEST_BYTES_PER_POINT, check_expansion, check_memory, memory_budget

__all__ = ["X3P", "read_x3p", "write_x3p"]

NAMESPACE = "http://www.opengps.eu/2008/ISO5436_2"
_SCHEMA_LOCATION = f"{NAMESPACE} {NAMESPACE}/ISO5436_2.xsd"

# X3P data type letter -> little-endian NumPy dtype of one stored value
DATA_TYPES: dict[str, str] = {"D": "<f8", "F": "<f4", "I": "<i2", "L": "<i4"}

# A lateral increment above this cannot be metres for a microscope (1 mm pixels): the
# instrument wrote micrometres.
_MAX_LATERAL_INCREMENT_M = 1e-3
# No cartridge-case surface has 1 cm of relief at microscope scale: heights beyond it were
# written in micrometres.
_MAX_HEIGHT_M = 1e-2
_MAX_XML_BYTES = 16 << 20
# Plausible lateral pixel sizes (um): from an AFM's nanometre to a millimetre.
_PIXEL_UM_RANGE = (1e-3, 1e3)
# Coarsest pixel a scan over the memory budget may be averaged down to while it is read:
# the Fadul scans' 6.25 um, under half the 16 um short cut-off of the signatures.
MAX_STREAMED_PIXEL_UM = 6.25
_MAX_MASK_BYTES = 64 << 20
_DEFAULT_MASK_BACKGROUND = "#cd7f32"
_MASK_VALID_COLOUR = "#ffffff"
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_HEX_COLOUR = re.compile(r"^#?([0-9a-fA-F]{6})([0-9a-fA-F]{2})?$")


@dataclass(frozen=True, eq=False)
class X3P:
    """A surface topography as stored in an X3P file.

    Attributes
    ----------
    heights : ndarray, shape (M, N)
        Heights in metres, float32 or float64, NaN where a point is missing. Rows run along
        Y (M = SizeY), columns along X (N = SizeX).
    pixel_size_x_um, pixel_size_y_um : float
        Lateral spacing of the columns and of the rows, in micrometres.
    mask : ndarray of bool, shape (M, N), or None
        True where a point is valid according to ``bindata/mask.png``; None when the file
        has no (usable) mask.
    metadata : dict
        ``instrument`` (manufacturer, model, serial, version), ``date``, ``creator``,
        ``comment``, ``calibration_date``, ``probing_system``, the storage details
        (``data_type``, ``increment_unit``, ``z_unit``, ``z_increment_m``,
        ``z_offset_m``, ...), ``checksums`` and ``warnings``.
    source_sha256 : str or None
        SHA-256 of the file read; None for a surface made in memory.
    source : str or None
        Path it was read from.
    """

    heights: np.ndarray
    pixel_size_x_um: float
    pixel_size_y_um: float
    mask: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    source_sha256: str | None = None
    source: str | None = None


# --------------------------------------------------------------------------- reading


def read_x3p(
    path: str | os.PathLike, *, verify_checksum: bool = True, max_points: int = 2**28
) -> X3P:
    """Read an X3P file.

    Parameters
    ----------
    path : str or path-like
        The ``.x3p`` file.
    verify_checksum : bool, optional
        Check the MD5 of the point data (and of ``main.xml`` when the archive carries
        ``md5checksum.hex``). With False a mismatch is recorded in
        ``metadata["warnings"]`` instead of raising.
    max_points : int, optional
        Refuse surfaces with more points than this, before reading any point data.

    Returns
    -------
    X3P
        Heights in metres, shape (SizeY, SizeX).

    Raises
    ------
    InputError
        For every unusable file: missing, not a zip, truncated, no ``main.xml`` or point
        data, unsafe or malformed XML, missing or absurd header fields, sizes that
        disagree, checksum mismatch, no valid point. The message is one line naming the
        file and the problem.

    Examples
    --------
    >>> scan = read_x3p("Fadul A.x3p")  # doctest: +SKIP
    >>> scan.heights.shape, scan.pixel_size_x_um  # doctest: +SKIP
    ((537, 537), 6.25)
    """
    path = check_input_file(path)
    source_sha256 = sha256_file(path)
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise InputError(path, "not an X3P file (not a zip archive, or truncated)") from None
    except (OSError, EOFError, ValueError) as exc:
        raise InputError(path, f"cannot open the zip archive ({exc})") from None
    with archive:
        try:
            return _read_archive(path, archive, source_sha256, verify_checksum, max_points)
        except InputError:
            raise
        except (zipfile.BadZipFile, zlib.error, EOFError, struct.error) as exc:
            raise InputError(path, f"corrupt zip archive ({_one_line(exc)})") from None
        except (NotImplementedError, RuntimeError) as exc:
            # unsupported compression method or an encrypted member
            raise InputError(path, f"cannot unpack the archive ({_one_line(exc)})") from None
        except MemoryError:
            raise InputError(path, "not enough memory to read the surface") from None


def _read_archive(
    path: str,
    archive: zipfile.ZipFile,
    source_sha256: str,
    verify_checksum: bool,
    max_points: int,
) -> X3P:
    members = {info.filename: info for info in archive.infolist()}
    warnings: list[str] = []
    checksums: dict[str, str] = {}

    xml_info = members.get("main.xml")
    if xml_info is None:
        # some writers put the whole tree in one folder
        candidates = [name for name in members if name.endswith("/main.xml")]
        if len(candidates) != 1:
            raise InputError(path, "zip archive has no main.xml (not an X3P file)")
        xml_info = members[candidates[0]]
    prefix = xml_info.filename[: -len("main.xml")]
    xml_bytes = _read_member(path, archive, xml_info, _MAX_XML_BYTES, "main.xml")

    root = _parse_xml(path, xml_bytes)
    record1 = _child(root, "Record1")
    if record1 is None:
        raise InputError(path, "main.xml has no <Record1> (axes)")
    record2 = _child(root, "Record2")
    record3 = _child(root, "Record3")
    if record3 is None:
        raise InputError(path, "main.xml has no <Record3> (matrix dimensions)")
    record4 = _child(root, "Record4")

    # md5checksum.hex holds the MD5 of main.xml
    checksum_name = _text(record4, "ChecksumFile") if record4 is not None else ""
    checksum_info = members.get(prefix + (checksum_name or "md5checksum.hex"))
    if checksum_info is not None:
        hex_bytes = _read_member(path, archive, checksum_info, 4096, "md5checksum.hex")
        expected = _first_md5(hex_bytes)
        actual = hashlib.md5(xml_bytes).hexdigest()
        if expected is None:
            warnings.append("md5checksum.hex holds no MD5 sum")
            checksums["main_xml"] = "unreadable"
        elif expected != actual:
            if verify_checksum:
                raise InputError(path, "main.xml checksum mismatch (file altered or damaged)")
            warnings.append("main.xml checksum mismatch (ignored: verify_checksum=False)")
            checksums["main_xml"] = "mismatch"
        else:
            checksums["main_xml"] = "verified"
    else:
        checksums["main_xml"] = "absent"

    feature_type = _text(record1, "FeatureType") or "SUR"
    if feature_type.upper() != "SUR":
        raise InputError(
            path, f"feature type {feature_type!r} is not supported (only SUR surfaces)"
        )
    axes = _child(record1, "Axes")
    if axes is None:
        raise InputError(path, "main.xml has no <Axes> in <Record1>")
    cx, cy, cz = (_axis(path, axes, name) for name in ("CX", "CY", "CZ"))

    data_type = cz["data_type"]
    if not data_type:
        raise InputError(path, "main.xml has no <DataType> for Z")
    if data_type not in DATA_TYPES:
        raise InputError(path, f"unknown Z data type {data_type!r} (expected D, F, I or L)")
    dtype = np.dtype(DATA_TYPES[data_type])

    # lateral increments: metres by the standard, micrometres from some instruments
    increments: list[float] = []
    increments_m: list[float] = []
    units = set()
    for name, axis in (("X", cx), ("Y", cy)):
        if axis["axis_type"] and axis["axis_type"].upper() != "I":
            raise InputError(
                path,
                f"{name} axis is not incremental (AxisType {axis['axis_type']}): "
                "explicit coordinates are not supported",
            )
        increment = axis["increment"]
        if increment is None:
            raise InputError(path, f"main.xml has no <Increment> for {name}")
        if not (math.isfinite(increment) and increment > 0):
            raise InputError(path, f"{name} increment {increment!r} is not a positive number")
        if increment > _MAX_LATERAL_INCREMENT_M:
            increments.append(increment)
            units.add("um (detected)")
        else:
            increments.append(increment * 1e6)
            units.add("m")
        increments_m.append(increment / 1e6 if increment > _MAX_LATERAL_INCREMENT_M else increment)
        low, high = _PIXEL_UM_RANGE
        if not low <= increments[-1] <= high:
            raise InputError(
                path,
                f"{name} increment {increment!r} gives a pixel of {increments[-1]:.3g} um, "
                f"outside the plausible {low:g} to {high:g} um",
            )
    if len(units) > 1:
        warnings.append("X and Y increments look like different units; each taken on its own")
    increment_unit = "um (detected)" if "um (detected)" in units else "m"

    size_x, size_y = _matrix_size(path, record3)
    n_points = size_x * size_y
    if n_points > max_points:
        raise InputError(
            path,
            f"surface of {size_x} x {size_y} points exceeds the limit of {max_points} points",
        )

    data_link = _child(record3, "DataLink")
    if data_link is None:
        if _child(record3, "DataList") is not None:
            raise InputError(path, "point data inline in main.xml (<DataList>) not supported")
        raise InputError(path, "main.xml has no <DataLink> to the point data")
    data_name = _text(data_link, "PointDataLink") or "bindata/data.bin"
    data_info = members.get(prefix + data_name) or members.get(data_name)
    if data_info is None:
        raise InputError(path, f"zip archive has no {data_name} (point data)")
    expected_bytes = n_points * dtype.itemsize
    if data_info.file_size != expected_bytes:
        raise InputError(
            path,
            f"{data_name} holds {data_info.file_size} bytes but the header says "
            f"{size_x} x {size_y} points of type {data_type} ({expected_bytes} bytes)",
        )
    check_expansion(path, data_name, data_info.file_size, data_info.compress_size)
    block = _downsampling(path, size_x, size_y, increments)
    z_increment = cz["increment"] if cz["increment"] is not None else 1.0
    z_offset = cz["offset"] if cz["offset"] is not None else 0.0
    if not (math.isfinite(z_increment) and z_increment != 0 and math.isfinite(z_offset)):
        raise InputError(path, f"Z increment {z_increment!r} / offset {z_offset!r} unusable")
    if block > 1:
        valid_raw = _valid_points(
            path, archive, members, prefix, data_link, n_points, warnings, unpack=False
        )
        heights, data_md5 = _read_averaged(
            path,
            archive,
            data_info,
            dtype,
            (size_y, size_x),
            block,
            valid_raw,
            z_increment,
            z_offset,
        )
        warnings.append(
            f"{size_x} x {size_y} points averaged {block} x {block} while reading, to stay "
            f"within the memory budget ({increments[0]:.4g} um -> {increments[0] * block:.4g} um)"
        )
        increments = [value * block for value in increments]
        increments_m = [value * block for value in increments_m]
        size_y, size_x = heights.shape
        raw = None
    else:
        raw = _read_member(path, archive, data_info, expected_bytes, data_name, exact=True)
        data_md5 = hashlib.md5(raw).hexdigest()

    stated_md5 = _text(data_link, "MD5ChecksumPointData").lower()
    if stated_md5:
        if data_md5 != stated_md5:
            if verify_checksum:
                raise InputError(path, f"{data_name} checksum mismatch (file altered or damaged)")
            warnings.append(f"{data_name} checksum mismatch (ignored: verify_checksum=False)")
            checksums["point_data"] = "mismatch"
        else:
            checksums["point_data"] = "verified"
    else:
        checksums["point_data"] = "absent"

    if raw is not None:
        values = np.frombuffer(raw, dtype=dtype).reshape(size_y, size_x)
        valid_bits = _valid_points(path, archive, members, prefix, data_link, n_points, warnings)
        if data_type in ("D", "F") and z_increment == 1.0 and z_offset == 0.0:
            # the common case: values are metres already; keep their exact bits and type
            heights = values.astype(values.dtype.newbyteorder("="), copy=False)
        else:
            heights = values.astype(np.float64) * z_increment + z_offset
        if valid_bits is not None:
            heights[~valid_bits.reshape(size_y, size_x)] = np.nan
    infinite = np.isinf(heights)
    if infinite.any():
        heights[infinite] = np.nan
        warnings.append(f"{int(infinite.sum())} infinite heights treated as missing")
    finite = np.isfinite(heights)
    if not finite.any():
        raise InputError(path, "surface has no valid point (all heights missing)")

    z_unit = "m"
    if float(np.max(np.abs(heights[finite]))) > _MAX_HEIGHT_M:
        heights = heights.astype(np.float64) * 1e-6
        z_unit = "um (detected)"

    if block > 1:
        mask, mask_meta = None, {}
        if members.get(prefix + "bindata/mask.png") is not None:
            warnings.append("mask.png ignored: the surface was averaged while reading")
    else:
        mask, mask_meta = _read_mask(path, archive, members, prefix, record3, size_x, size_y)
    warnings.extend(mask_meta.pop("warnings", []))

    metadata: dict[str, Any] = {
        **_general_info(record2),
        "revision": _text(record1, "Revision"),
        "feature_type": feature_type.upper(),
        "origin": _text(axes, "Origin"),
        "data_type": data_type,
        "increment_unit": increment_unit,
        "z_unit": z_unit,
        "x_increment_m": increments_m[0],
        "y_increment_m": increments_m[1],
        "x_offset_m": cx["offset"] or 0.0,
        "y_offset_m": cy["offset"] or 0.0,
        "z_increment_m": z_increment,
        "z_offset_m": z_offset,
        **mask_meta,
        "checksums": checksums,
        "warnings": warnings,
    }
    heights.setflags(write=True)
    return X3P(
        heights=heights,
        pixel_size_x_um=float(increments[0]),
        pixel_size_y_um=float(increments[1]),
        mask=mask,
        metadata=metadata,
        source_sha256=source_sha256,
        source=path,
    )


def _read_member(
    path: str,
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    limit: int,
    label: str,
    *,
    exact: bool = False,
) -> bytearray:
    """Read one archive member, never more than ``limit`` bytes whatever its header says.

    The declared size is checked before reading, and the read itself is bounded, so a
    member whose header lies about its size (a zip bomb) cannot fill memory.
    """
    if info.file_size > limit:
        raise InputError(path, f"{label} is {info.file_size} bytes, more than the {limit} allowed")
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
        raise InputError(path, f"{label}: zip header sizes disagree (damaged archive)")
    buffer = bytearray(info.file_size)
    view = memoryview(buffer)
    filled = 0
    with archive.open(info) as member:
        while filled < len(buffer):
            count = member.readinto(view[filled:])
            if not count:
                break
            filled += count
        extra = member.read(1)
    if filled != len(buffer) or extra:
        raise InputError(path, f"{label} is not the size its zip header says (damaged archive)")
    if exact and filled != limit:
        raise InputError(path, f"{label} holds {filled} bytes, expected {limit}")
    return buffer


def _parse_xml(path: str, xml_bytes: bytes) -> ET.Element:
    try:
        root = SafeET.fromstring(xml_bytes, forbid_dtd=False)
    except defusedxml.DefusedXmlException as exc:
        raise InputError(
            path, f"main.xml uses forbidden XML constructs ({type(exc).__name__})"
        ) from None
    except ET.ParseError as exc:
        raise InputError(path, f"main.xml is not well-formed XML ({exc})") from None
    except (ValueError, UnicodeError, RecursionError) as exc:
        raise InputError(path, f"main.xml cannot be parsed ({_one_line(exc)})") from None
    if _local(root.tag) != "ISO5436_2":
        raise InputError(path, f"main.xml root is <{_local(root.tag)}>, not <ISO5436_2>")
    return root


def _local(tag: Any) -> str:
    return tag.rsplit("}", 1)[-1].split(":")[-1] if isinstance(tag, str) else ""


def _child(parent: ET.Element | None, name: str) -> ET.Element | None:
    if parent is None:
        return None
    for element in parent:
        if _local(element.tag) == name:
            return element
    return None


def _text(parent: ET.Element | None, name: str) -> str:
    element = _child(parent, name)
    return "" if element is None or element.text is None else element.text.strip()


def _float(path: str, parent: ET.Element, name: str, what: str) -> float | None:
    text = _text(parent, name)
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise InputError(path, f"main.xml <{name}> for {what} is not a number: {text!r}") from None


def _axis(path: str, axes: ET.Element, name: str) -> dict[str, Any]:
    element = _child(axes, name)
    label = name[1]
    if element is None:
        raise InputError(path, f"main.xml has no <{name}> axis ({label})")
    return {
        "axis_type": _text(element, "AxisType"),
        "data_type": _text(element, "DataType").upper(),
        "increment": _float(path, element, "Increment", label),
        "offset": _float(path, element, "Offset", label),
    }


def _matrix_size(path: str, record3: ET.Element) -> tuple[int, int]:
    dims = _child(record3, "MatrixDimension")
    if dims is None:
        if _child(record3, "ListDimension") is not None:
            raise InputError(path, "point lists (<ListDimension>) are not supported")
        raise InputError(path, "main.xml has no <MatrixDimension>")
    sizes = []
    for name in ("SizeX", "SizeY", "SizeZ"):
        text = _text(dims, name)
        if not text and name == "SizeZ":
            text = "1"
        if not text:
            raise InputError(path, f"main.xml has no <{name}>")
        try:
            value = int(text)
        except ValueError:
            raise InputError(path, f"main.xml <{name}> is not an integer: {text[:40]!r}") from None
        if value <= 0:
            raise InputError(path, f"main.xml <{name}> is {value}; it must be positive")
        sizes.append(value)
    if sizes[2] != 1:
        raise InputError(path, f"SizeZ is {sizes[2]}: only single-layer surfaces are supported")
    return sizes[0], sizes[1]


def _first_md5(data: bytes) -> str | None:
    match = re.match(rb"\s*([0-9a-fA-F]{32})\b", data)
    return match.group(1).decode().lower() if match else None


def _valid_points(
    path: str,
    archive: zipfile.ZipFile,
    members: dict[str, zipfile.ZipInfo],
    prefix: str,
    data_link: ET.Element,
    n_points: int,
    warnings: list[str],
    *,
    unpack: bool = True,
) -> np.ndarray | None:
    """The ISO 5436-2 validity bits (``bindata/valid.bin``), or None when absent.

    With ``unpack=False``, the packed bytes (uint8, one bit per point, LSB first).
    """
    name = _text(data_link, "ValidPointsLink")
    if not name:
        return None
    info = members.get(prefix + name) or members.get(name)
    if info is None:
        raise InputError(path, f"zip archive has no {name} (valid points)")
    n_bytes = (n_points + 7) // 8
    if info.file_size != n_bytes:
        raise InputError(
            path, f"{name} holds {info.file_size} bytes, expected {n_bytes} for {n_points} points"
        )
    raw = _read_member(path, archive, info, n_bytes, name, exact=True)
    stated = _text(data_link, "MD5ChecksumValidPoints").lower()
    if stated and hashlib.md5(raw).hexdigest() != stated:
        warnings.append(f"{name} checksum mismatch")
    if not unpack:
        return np.frombuffer(raw, dtype=np.uint8)
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8), bitorder="little")
    return bits[:n_points].astype(bool)


def _downsampling(path: str, size_x: int, size_y: int, increments: list[float]) -> int:
    """Block size (1: none) that keeps reading and extracting a scan within the budget.

    A scan whose full-resolution ingest would pass the memory budget is averaged in
    ``k x k`` blocks while its point data streams in, never held whole; if even the
    coarsest allowed pixel (:data:`MAX_STREAMED_PIXEL_UM`) does not fit, it is refused.
    """
    need = size_x * size_y * INGEST_BYTES_PER_POINT
    budget = memory_budget()
    if need <= budget:
        return 1
    block = math.ceil(math.sqrt(need / budget))
    while (size_x // block) * (size_y // block) * INGEST_BYTES_PER_POINT > budget:
        block += 1
    if max(increments) * block > MAX_STREAMED_PIXEL_UM or min(size_x, size_y) < block * 16:
        check_memory(path, f"a surface of {size_x} x {size_y} points", need)
    return block


def _read_averaged(
    path: str,
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    dtype: np.dtype,
    shape: tuple[int, int],
    block: int,
    valid_raw: np.ndarray | None,
    z_increment: float,
    z_offset: float,
) -> tuple[np.ndarray, str]:
    """Heights averaged over ``block x block`` points, read ``block`` rows at a time.

    Returns the (SizeY // block, SizeX // block) heights in metres (NaN where under half
    the points of a block are valid) and the MD5 of all the point data. Never holds more
    than ``block`` rows of the input.
    """
    size_y, size_x = shape
    out_y, out_x = size_y // block, size_x // block
    heights = np.empty((out_y, out_x), dtype=np.float64)
    row_bytes = size_x * dtype.itemsize
    buffer = bytearray(row_bytes * block)
    view = memoryview(buffer)
    digest = hashlib.md5()
    with archive.open(info) as member:

        def fill(count: int) -> None:
            filled = 0
            while filled < count:
                got = member.readinto(view[filled:count])
                if not got:
                    raise InputError(path, f"{info.filename} is shorter than its zip header says")
                filled += got
            digest.update(view[:count])

        for i in range(out_y):
            fill(len(buffer))
            values = np.frombuffer(buffer, dtype=dtype).reshape(block, size_x)[:, : out_x * block]
            values = values.astype(np.float64) * z_increment + z_offset
            if valid_raw is not None:
                first = i * block * size_x
                bits = np.unpackbits(
                    valid_raw[first // 8 : (first + block * size_x + 7) // 8 + 1],
                    bitorder="little",
                )[first % 8 : first % 8 + block * size_x]
                values[~bits.reshape(block, size_x)[:, : out_x * block].astype(bool)] = np.nan
            values[~np.isfinite(values)] = np.nan
            cells = values.reshape(block, out_x, block)
            count = np.count_nonzero(np.isfinite(cells), axis=(0, 2))
            total = np.nansum(cells, axis=(0, 2))
            with np.errstate(invalid="ignore", divide="ignore"):
                row = total / count
            row[count * 2 < block * block] = np.nan
            heights[i] = row
        for _ in range(size_y - out_y * block):
            fill(row_bytes)
        if member.read(1):
            raise InputError(path, f"{info.filename} is longer than its zip header says")
    return heights, digest.hexdigest()


def _parse_colour(text: str) -> tuple[int, int, int] | None:
    match = _HEX_COLOUR.match(text.strip()) if text else None
    if match is None:
        return None
    value = match.group(1)
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def _read_mask(
    path: str,
    archive: zipfile.ZipFile,
    members: dict[str, zipfile.ZipInfo],
    prefix: str,
    record3: ET.Element,
    size_x: int,
    size_y: int,
) -> tuple[np.ndarray | None, dict[str, Any]]:
    """Valid-point mask from ``bindata/mask.png`` (see the module docstring)."""
    info = members.get(prefix + "bindata/mask.png")
    if info is None:
        return None, {}
    from PIL import Image  # Pillow is only needed for masked files

    mask_element = _child(record3, "Mask")
    background_text = _text(mask_element, "Background") if mask_element is not None else ""
    background = _parse_colour(background_text) or (0, 0, 0)
    annotations = {}
    notes = _child(mask_element, "Annotations") if mask_element is not None else None
    if notes is not None:
        for note in notes:
            colour = note.get("color") or note.get("colour") or ""
            annotations[colour.lower()] = (note.text or "").strip()
    meta: dict[str, Any] = {
        "mask_background": "#{:02x}{:02x}{:02x}".format(*background),
        "mask_annotations": annotations,
        "warnings": [],
    }
    data = _read_member(path, archive, info, _MAX_MASK_BYTES, "bindata/mask.png")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.size != (size_x, size_y):
                meta["warnings"].append(
                    f"mask.png is {image.size[0]} x {image.size[1]}, the surface "
                    f"{size_x} x {size_y}: mask ignored"
                )
                return None, meta
            rgba = np.asarray(image.convert("RGBA"))
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        meta["warnings"].append(f"mask.png unreadable ({_one_line(exc)}): mask ignored")
        return None, meta
    is_background = np.all(rgba[..., :3] == np.array(background, dtype=np.uint8), axis=-1)
    mask = ~is_background & (rgba[..., 3] > 0)
    if not mask.any() or is_background.all():
        meta["warnings"].append("mask.png marks no point: mask ignored")
        return None, meta
    return mask, meta


def _general_info(record2: ET.Element | None) -> dict[str, Any]:
    instrument = _child(record2, "Instrument")
    probing = _child(record2, "ProbingSystem")
    return {
        "date": _text(record2, "Date"),
        "creator": _text(record2, "Creator"),
        "instrument": {
            "manufacturer": _text(instrument, "Manufacturer"),
            "model": _text(instrument, "Model"),
            "serial": _text(instrument, "Serial"),
            "version": _text(instrument, "Version"),
        },
        "calibration_date": _text(record2, "CalibrationDate"),
        "probing_system": {
            "type": _text(probing, "Type"),
            "identification": _text(probing, "Identification"),
        },
        "comment": _text(record2, "Comment"),
    }


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --------------------------------------------------------------------------- writing


def write_x3p(
    path: str | os.PathLike,
    x3p: X3P,
    *,
    data_type: str | None = None,
    z_increment_m: float | None = None,
) -> None:
    """Write a surface as an X3P file (ISO 5436-2), atomically.

    Parameters
    ----------
    path : str or path-like
        Output ``.x3p`` file; replaced in one step when it exists.
    x3p : X3P
        Heights in metres (NaN = missing), pixel sizes and metadata. ``metadata`` may hold
        ``date``, ``creator``, ``comment``, ``calibration_date``, ``instrument`` (dict of
        manufacturer, model, serial, version), ``probing_system`` (dict of type,
        identification) and, for a faithful re-write, ``data_type``, ``z_increment_m``,
        ``z_offset_m``, ``revision``, ``origin``, ``x_offset_m``, ``y_offset_m`` and
        ``mask_background``.
    data_type : {"D", "F", "I", "L"}, optional
        Storage type: float64, float32, int16, int32. Default: ``metadata["data_type"]``,
        else F for float32 heights and D otherwise.
    z_increment_m : float, optional
        Metres per integer step for I and L. Default: ``metadata["z_increment_m"]`` when
        the data type comes from the metadata, else chosen to span the height range.

    Raises
    ------
    ValueError
        When the surface or the arguments cannot be written (not 2-D, no valid point,
        infinite heights, non-positive pixel size, heights beyond the integer range).

    Examples
    --------
    >>> surface = X3P(heights=np.zeros((4, 5)), pixel_size_x_um=3.0, pixel_size_y_um=3.0)
    >>> write_x3p("flat.x3p", surface)  # doctest: +SKIP
    """
    metadata = dict(x3p.metadata or {})
    heights = np.asarray(x3p.heights)
    if heights.ndim != 2 or heights.size == 0:
        raise ValueError(f"heights must be a non-empty 2-D array, not shape {heights.shape}")
    if not (np.issubdtype(heights.dtype, np.floating) or np.issubdtype(heights.dtype, np.integer)):
        raise ValueError(f"heights must be real numbers, not {heights.dtype}")
    if np.isinf(heights).any():
        raise ValueError("heights hold infinite values; use NaN for missing points")
    missing = np.isnan(heights) if np.issubdtype(heights.dtype, np.floating) else None
    if missing is not None and missing.all():
        raise ValueError("heights hold no valid point")
    for name in ("pixel_size_x_um", "pixel_size_y_um"):
        value = getattr(x3p, name)
        is_number = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if not (is_number and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number, not {value!r}")
    size_y, size_x = heights.shape

    from_metadata = data_type is None and metadata.get("data_type") in DATA_TYPES
    if data_type is None:
        data_type = metadata.get("data_type") if from_metadata else None
        if data_type is None:
            data_type = "F" if heights.dtype == np.float32 else "D"
    data_type = str(data_type).upper()
    if data_type not in DATA_TYPES:
        raise ValueError(f"data_type must be one of D, F, I, L, not {data_type!r}")

    z_offset = 0.0
    z_increment = 1.0
    valid_bits = None
    if data_type in ("D", "F"):
        stored = heights.astype(DATA_TYPES[data_type])
    else:
        if z_increment_m is None and from_metadata and metadata.get("z_increment_m"):
            z_increment_m = float(metadata["z_increment_m"])
            z_offset = float(metadata.get("z_offset_m") or 0.0)
        stored, z_increment, z_offset = _quantise(heights, data_type, z_increment_m, z_offset)
        if missing is not None and missing.any():
            valid_bits = np.packbits(~missing.ravel(), bitorder="little").tobytes()
    data_bytes = stored.tobytes()
    mask_png = _mask_png(x3p.mask, (size_y, size_x), metadata)

    xml_bytes = _main_xml(
        x3p, metadata, size_x, size_y, data_type, z_increment, z_offset,
        hashlib.md5(data_bytes).hexdigest(),
        None if valid_bits is None else hashlib.md5(valid_bits).hexdigest(),
        mask_png is not None,
    )  # fmt: skip
    members = [("main.xml", xml_bytes), ("bindata/data.bin", data_bytes)]
    if valid_bits is not None:
        members.append(("bindata/valid.bin", valid_bits))
    if mask_png is not None:
        members.append(("bindata/mask.png", mask_png))
    members.append(
        ("md5checksum.hex", f"{hashlib.md5(xml_bytes).hexdigest()} *main.xml\n".encode())
    )

    with atomic_output(path) as handle, zipfile.ZipFile(handle, "w") as archive:
        folder = zipfile.ZipInfo("bindata/", date_time=_ZIP_DATE)
        folder.external_attr = 0o40755 << 16 | 0x10
        archive.writestr(folder, b"")
        for name, payload in members:
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, payload, compresslevel=6)


def _quantise(
    heights: np.ndarray, data_type: str, z_increment: float | None, z_offset: float
) -> tuple[np.ndarray, float, float]:
    """Integers, increment and offset for the I/L types (missing points stored as 0)."""
    limit = np.iinfo(DATA_TYPES[data_type]).max
    values = heights.astype(np.float64)
    finite = np.isfinite(values)
    if z_increment is None:
        low, high = float(values[finite].min()), float(values[finite].max())
        z_offset = (low + high) / 2
        z_increment = (high - low) / (2 * (limit - 1)) or 1e-12
    if not (math.isfinite(z_increment) and z_increment > 0):
        raise ValueError(f"z_increment_m must be a positive number, not {z_increment!r}")
    steps = np.zeros_like(values)
    steps[finite] = np.rint((values[finite] - z_offset) / z_increment)
    if np.abs(steps).max() > limit:
        raise ValueError(
            f"heights span more than type {data_type} holds at z_increment_m={z_increment!r}"
        )
    return steps.astype(DATA_TYPES[data_type]), float(z_increment), float(z_offset)


def _mask_png(mask: np.ndarray | None, shape: tuple[int, int], metadata: dict) -> bytes | None:
    if mask is None:
        return None
    from PIL import Image

    mask = np.asarray(mask, dtype=bool)
    if mask.shape != shape:
        raise ValueError(f"mask shape {mask.shape} differs from heights shape {shape}")
    background = _parse_colour(str(metadata.get("mask_background") or ""))
    if background is None or background == _parse_colour(_MASK_VALID_COLOUR):
        background = _parse_colour(_DEFAULT_MASK_BACKGROUND)
    rgb = np.empty((*shape, 3), dtype=np.uint8)
    rgb[...] = np.array(background, dtype=np.uint8)
    rgb[mask] = 255
    out = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(out, format="PNG", optimize=False)
    return out.getvalue()


def _increment_m(pixel_um: float, stated_m: Any) -> float:
    """Metres per pixel; the increment read from a file when it still gives this pixel size."""
    if isinstance(stated_m, float) and stated_m > 0 and stated_m * 1e6 == float(pixel_um):
        return stated_m
    return float(pixel_um) / 1e6


def _number(value: float) -> str:
    """Shortest text that reads back as the same float."""
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def _main_xml(
    x3p: X3P,
    metadata: dict[str, Any],
    size_x: int,
    size_y: int,
    data_type: str,
    z_increment: float,
    z_offset: float,
    data_md5: str,
    valid_md5: str | None,
    has_mask: bool,
) -> bytes:
    root = ET.Element(
        "p:ISO5436_2",
        {
            "xmlns:p": NAMESPACE,
            "xmlns:xsi": "http://www.w3.org/2001/XMLSchema-instance",
            "xsi:schemaLocation": _SCHEMA_LOCATION,
        },
    )

    def add(parent: ET.Element, tag: str, text: Any = None) -> ET.Element:
        element = ET.SubElement(parent, tag)
        if text is not None:
            element.text = str(text)
        return element

    record1 = add(root, "Record1")
    add(record1, "Revision", metadata.get("revision") or "ISO5436 - 2000")
    add(record1, "FeatureType", "SUR")
    axes = add(record1, "Axes")
    lateral = (
        ("CX", x3p.pixel_size_x_um, metadata.get("x_offset_m")),
        ("CY", x3p.pixel_size_y_um, metadata.get("y_offset_m")),
    )
    for name, pixel_um, offset in lateral:
        axis = add(axes, name)
        add(axis, "AxisType", "I")
        add(axis, "DataType", "D")
        add(
            axis,
            "Increment",
            _number(_increment_m(pixel_um, metadata.get(f"{name[1].lower()}_increment_m"))),
        )
        add(axis, "Offset", _number(offset or 0.0))
    axis = add(axes, "CZ")
    add(axis, "AxisType", "A")
    add(axis, "DataType", data_type)
    add(axis, "Increment", _number(z_increment))
    add(axis, "Offset", _number(z_offset))
    if metadata.get("origin"):
        add(axes, "Origin", metadata["origin"])

    record2 = add(root, "Record2")
    date = metadata.get("date") or _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()
    add(record2, "Date", date)
    add(record2, "Creator", metadata.get("creator", "RIBIN"))
    instrument = add(record2, "Instrument")
    given = metadata.get("instrument") or {}
    for key in ("manufacturer", "model", "serial", "version"):
        add(instrument, key.capitalize(), given.get(key, "unknown"))
    add(record2, "CalibrationDate", metadata.get("calibration_date") or date)
    probing = add(record2, "ProbingSystem")
    given = metadata.get("probing_system") or {}
    add(probing, "Type", given.get("type", "NonContacting"))
    add(probing, "Identification", given.get("identification", "unknown"))
    add(record2, "Comment", metadata.get("comment", ""))

    record3 = add(root, "Record3")
    dims = add(record3, "MatrixDimension")
    add(dims, "SizeX", size_x)
    add(dims, "SizeY", size_y)
    add(dims, "SizeZ", 1)
    link = add(record3, "DataLink")
    add(link, "PointDataLink", "bindata/data.bin")
    add(link, "MD5ChecksumPointData", data_md5)
    if valid_md5 is not None:
        add(link, "ValidPointsLink", "bindata/valid.bin")
        add(link, "MD5ChecksumValidPoints", valid_md5)
    if has_mask:
        mask = add(record3, "Mask")
        background = _parse_colour(str(metadata.get("mask_background") or ""))
        if background is None or background == _parse_colour(_MASK_VALID_COLOUR):
            background = _parse_colour(_DEFAULT_MASK_BACKGROUND)
        add(mask, "Background", "#{:02x}{:02x}{:02x}".format(*background))
        notes = add(mask, "Annotations")
        note = add(notes, "Annotation", "valid")
        note.set("color", _MASK_VALID_COLOUR)
        add(mask, "Version", 2)

    record4 = add(root, "Record4")
    add(record4, "ChecksumFile", "md5checksum.hex")

    ET.indent(root, space="  ")
    text = ET.tostring(root, encoding="unicode")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + text + "\n").encode("utf-8")
