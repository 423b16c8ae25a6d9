"""On-disk encoding of store segments: plain HDF5 with anndata-style encoding attributes.

A segment is one immutable HDF5 file (layout in ``docs/formats.md``). Every element carries
``encoding-type`` and ``encoding-version``; readers dispatch on them through the small
registry below, so an element written by a newer RIBIN fails with a clear message instead of
being misread. This module knows nothing of manifests, locks or directories: a search worker
can read one segment with :func:`read_segment_index`, :func:`read_segment_features` and
:func:`read_exhibit` alone.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import h5py
import numpy as np

from ribin.errors import FormatVersionError, InputError, StoreError
from ribin.exhibit import REGIONS, Exhibit, Signature, canonical_json, signature_id

FORMAT = "ribin-store"
FORMAT_VERSION = 1
"""Integer major version of the store format; a reader refuses anything newer."""

ROLES = ("known", "questioned", "other")
SHARING = ("local", "cluster", "network")
METADATA_FIELDS = ("country", "site", "caliber", "role", "case_ref", "acquired_at", "sharing")
INDEX_FIELDS = ("exhibit_id", "source_sha256", *METADATA_FIELDS)
MAX_ID_LENGTH = 128

_COUNTRY = re.compile(r"[A-Z]{2}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_STR = h5py.string_dtype("utf-8")  # variable length: attributes


# ----------------------------------------------------------------------------- metadata


@dataclass(frozen=True)
class ExhibitMetadata:
    """What the lab says about an exhibit (not measured from the image).

    Attributes
    ----------
    country : str
        ISO 3166 alpha-2 code of the owning site, upper case (``"JM"``).
    site : str
        Owning site (laboratory) within the country.
    caliber : str
        Free text, e.g. ``"9mm Luger"``.
    role : {"known", "questioned", "other"}
        Test fire from a known gun, casing from a scene, or anything else.
    case_ref : str
        The lab's case reference.
    acquired_at : str
        ISO 8601 date or date-time of acquisition, or ``""``.
    sharing : {"local", "cluster", "network"}
        Who may see the exhibit in a search: the owning country only, its clusters, or all.
    """

    country: str
    site: str = ""
    caliber: str = ""
    role: str = "other"
    case_ref: str = ""
    acquired_at: str = ""
    sharing: str = "network"

    @classmethod
    def from_mapping(
        cls, value: ExhibitMetadata | Mapping[str, Any], source: str | None = None
    ) -> ExhibitMetadata:
        """Validated metadata from a mapping; :class:`InputError` names the bad field."""
        if isinstance(value, ExhibitMetadata):
            value = {f.name: getattr(value, f.name) for f in fields(cls)}
        unknown = sorted(set(value) - set(METADATA_FIELDS))
        if unknown:
            raise InputError(source, f"unknown metadata field(s): {', '.join(unknown)}")
        if "country" not in value:
            raise InputError(source, "metadata needs a country (ISO 3166 alpha-2 code)")
        clean: dict[str, str] = {}
        for name in METADATA_FIELDS:
            raw = value.get(name, getattr(cls, name, ""))
            raw = "" if raw is None else raw
            if not isinstance(raw, str):
                raise InputError(source, f"metadata {name} must be text, not {type(raw).__name__}")
            if any(ord(c) < 32 for c in raw) or len(raw) > 256:
                raise InputError(source, f"metadata {name} has control characters or is too long")
            clean[name] = raw.strip()
        if not _COUNTRY.fullmatch(clean["country"]):
            raise InputError(
                source,
                f"country {clean['country']!r} is not an ISO 3166 alpha-2 code "
                "(two upper-case letters)",
            )
        if clean["role"] not in ROLES:
            raise InputError(source, f"role {clean['role']!r} is not one of {', '.join(ROLES)}")
        if clean["sharing"] not in SHARING:
            raise InputError(
                source, f"sharing {clean['sharing']!r} is not one of {', '.join(SHARING)}"
            )
        if clean["acquired_at"]:
            try:
                _dt.datetime.fromisoformat(clean["acquired_at"])
            except ValueError:
                raise InputError(
                    source, f"acquired_at {clean['acquired_at']!r} is not an ISO 8601 date"
                ) from None
        return cls(**clean)

    def as_dict(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in METADATA_FIELDS}


def check_exhibit_id(exhibit_id: Any, source: str | None = None) -> str:
    """Return ``exhibit_id`` if usable as a store key, else raise :class:`InputError`."""
    if not isinstance(exhibit_id, str) or not exhibit_id:
        raise InputError(source, "exhibit_id must be non-empty text")
    if exhibit_id != exhibit_id.strip():
        raise InputError(source, f"exhibit_id {exhibit_id!r} has leading or trailing spaces")
    if len(exhibit_id) > MAX_ID_LENGTH:
        raise InputError(source, f"exhibit_id is longer than {MAX_ID_LENGTH} characters")
    # '/' is allowed (lab case numbers such as 2026/0412): segments key exhibits by content
    # ID, never by exhibit_id; see SignatureStore._locate for reading "CC/ID" names.
    if any(c == "\\" or ord(c) < 32 or ord(c) == 127 for c in exhibit_id):
        raise InputError(source, f"exhibit_id {exhibit_id!r} contains '\\' or a control code")
    return exhibit_id


def exhibit_content_id(exhibit_id: str, signature_ids: Mapping[str, str]) -> str:
    """Content ID of a stored exhibit: SHA-256 of its exhibit_id and signature IDs.

    Two ingests of the same casing image under the same exhibit_id get the same content ID
    at any site; any change to a surface or its shaping parameters gives a new one.
    """
    body = canonical_json({"exhibit_id": exhibit_id, "signatures": dict(signature_ids)})
    return hashlib.sha256(body.encode()).hexdigest()


def utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def loose_json(value: Any) -> str:
    """JSON for figures that may hold numpy scalars or NaN (quality, warnings)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_json_default)


# ----------------------------------------------------------------------------- registry

Reader = Callable[[Any, Any], Any]
_READERS: dict[tuple[str, str], Reader] = {}


def _reads(encoding_type: str, encoding_version: str) -> Callable[[Reader], Reader]:
    def register(func: Reader) -> Reader:
        _READERS[(encoding_type, encoding_version)] = func
        return func

    return register


def _file_name(element: h5py.HLObject) -> str:
    return os.path.basename(element.file.filename)


def _where(element: h5py.HLObject) -> str:
    name = element.name.lstrip("/")
    return f"{_file_name(element)}: {name}" if name else _file_name(element)


_SCALAR = h5py.h5s.create(h5py.h5s.SCALAR)
_ATTR_TYPES = {
    str: h5py.h5t.py_create(_STR, logical=True),
    int: h5py.h5t.py_create(np.dtype("<i8")),
    float: h5py.h5t.py_create(np.dtype("<f8")),
}


def _put_attrs(element: h5py.HLObject, values: Mapping[str, str | int | float]) -> None:
    """Write new scalar attributes (text as UTF-8 variable-length strings).

    The low-level calls take half the time of ``attrs[name] = value``, which checks for an
    existing attribute first; a segment is always written from scratch, so none exists.
    """
    for name, value in values.items():
        kind = type(value)
        if kind is str:
            data = np.array(value.encode(), dtype=_STR)
        elif kind is int or kind is float:
            data = np.array(value, dtype=np.int64 if kind is int else np.float64)
        else:
            raise TypeError(f"attribute {name}: {kind.__name__}")
        attr = h5py.h5a.create(element.id, name.encode(), _ATTR_TYPES[kind], _SCALAR)
        attr.write(data)


def _set_encoding(element: h5py.HLObject, encoding_type: str, version: str = "1") -> None:
    _put_attrs(element, {"encoding-type": encoding_type, "encoding-version": version})


class _Attrs:
    """An element's attributes read in one pass (each HDF5 attribute read costs ~0.1 ms)."""

    def __init__(self, element: h5py.HLObject):
        self.element = element
        self.values = {
            name: value.decode() if isinstance(value, bytes) else value
            for name, value in element.attrs.items()
        }

    def __contains__(self, name: str) -> bool:
        return name in self.values

    def get(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise StoreError(f"{_where(self.element)}: missing attribute {name!r}") from None

    def text(self, name: str) -> str:
        value = self.get(name)
        if not isinstance(value, str):
            raise StoreError(f"{_where(self.element)}: attribute {name!r} is not text")
        return value

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.text(name))
        except ValueError:
            raise StoreError(
                f"{_where(self.element)}: attribute {name!r} is not valid JSON"
            ) from None

    def encoding(self) -> tuple[str, str]:
        if "encoding-type" not in self or "encoding-version" not in self:
            raise StoreError(
                f"{_where(self.element)}: missing encoding-type/encoding-version attributes"
            )
        return str(self.values["encoding-type"]), str(self.values["encoding-version"])


def read_element(element: h5py.HLObject, expected: str | None = None) -> Any:
    """Read one element through the reader registered for its encoding."""
    attrs = _Attrs(element)
    encoding = attrs.encoding()
    if expected is not None and encoding[0] != expected:
        raise StoreError(f"{_where(element)}: encoding-type {encoding[0]!r}, expected {expected!r}")
    reader = _READERS.get(encoding)
    if reader is None:
        raise StoreError(
            f"{_where(element)}: unknown encoding {encoding[0]!r} version {encoding[1]!r} "
            "(written by a newer RIBIN?)"
        )
    return reader(element, attrs)


# ----------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class SegmentRecord:
    """One exhibit as it goes into a segment."""

    exhibit: Exhibit
    metadata: ExhibitMetadata
    content_id: str
    stored_at: str
    features: Mapping[str, np.ndarray]  # region -> feature vector


def _write_dict(parent: h5py.Group, name: str, value: Mapping[str, Any]) -> None:
    """Nested dict: arrays become datasets, dicts groups, the rest one JSON attribute."""
    group = parent.create_group(name)
    _set_encoding(group, "dict")
    plain = {}
    for key, item in value.items():
        key = str(key)
        if isinstance(item, np.ndarray) and item.dtype.kind in "biuf":
            data = group.create_dataset(key, data=item, **_compression(item))
            _set_encoding(data, "array")
        elif isinstance(item, Mapping):
            _write_dict(group, key, item)
        else:
            plain[key] = item
    _put_attrs(group, {"values": loose_json(plain)})


def _compression(array: np.ndarray) -> dict[str, Any]:
    if array.size < 256 or array.ndim == 0:
        return {}
    chunks = tuple(min(n, 256) for n in array.shape)
    return {"compression": "gzip", "compression_opts": 4, "shuffle": True, "chunks": chunks}


def _write_signature(parent: h5py.Group, signature: Signature) -> None:
    surface = np.ascontiguousarray(signature.surface, dtype="<f4")
    data = parent.create_dataset(signature.kind, data=surface, **_compression(surface))
    _put_attrs(
        data,
        {
            "encoding-type": "ribin-signature",
            "encoding-version": "1",
            "kind": signature.kind,
            "modality": signature.modality,
            "pixel_size_um": float(signature.pixel_size_um),
            "params": canonical_json(signature.params),
            "quality": loose_json(signature.quality),
            "signature_id": signature.id,
        },
    )


def _write_exhibit(parent: h5py.Group, record: SegmentRecord) -> None:
    exhibit = record.exhibit
    group = parent.create_group(record.content_id)
    _put_attrs(
        group,
        {
            "encoding-type": "ribin-exhibit",
            "encoding-version": "1",
            "content_id": record.content_id,
            "exhibit_id": exhibit.exhibit_id,
            **record.metadata.as_dict(),
            "source_sha256": exhibit.source_sha256,
            "source_name": exhibit.source_name,
            "software_version": exhibit.software_version,
            "stored_at": record.stored_at,
            "missing": loose_json(dict(exhibit.missing)),
            "warnings": loose_json(list(exhibit.warnings)),
        },
    )
    for signature in exhibit.signatures().values():
        _write_signature(group, signature)
    if exhibit.detection:
        _write_dict(group, "detection", exhibit.detection)


def _string_dataset(parent: h5py.Group, name: str, values: list[str]) -> None:
    """Fixed-length UTF-8 strings (NUL padded): read back in one copy, unlike vlen strings."""
    encoded = [v.encode() for v in values]
    width = max([1, *map(len, encoded)])
    utf8 = h5py.string_dtype("utf-8", width)  # S<width> tagged as UTF-8 for HDF5
    data = parent.create_dataset(name, data=np.array(encoded, dtype=utf8), dtype=utf8)
    _set_encoding(data, "string-array")


def _ascii_dataset(parent: h5py.Group, name: str, values: list[str], width: int) -> None:
    data = parent.create_dataset(name, data=np.array(values, dtype=f"S{width}"))
    _set_encoding(data, "string-array")


class SegmentWriter:
    """Write one segment file, exhibit by exhibit; the tables go in at :meth:`finish`.

    Exhibits stream to disk as they are added, so a compaction never holds the whole store
    in memory; only the small index and prefilter rows wait for the end.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        sequence: int,
        created_by: str,
        feature_version: int,
        feature_length: int,
    ):
        self.feature_version = int(feature_version)
        self.feature_length = int(feature_length)
        self._records: list[dict[str, str]] = []
        self._signatures: list[tuple[int, str, str, str, float]] = []
        self._vectors: list[np.ndarray] = []
        self._sink = _GuardedFile(path)
        try:
            # HDF5 1.10 object formats: a third of the overhead of the 1.8 ones, still widely read
            self._file = h5py.File(self._sink, "w", libver=("v110", "v110"), locking=False)
        except BaseException:
            self._sink.close()
            raise
        f = self._file
        _put_attrs(
            f,
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "created_by": created_by,
                "created_at": utc_now(),
                "sequence": int(sequence),
                "encoding-type": "ribin-segment",
                "encoding-version": "1",
            },
        )
        self._exhibits = f.create_group("exhibits")
        _set_encoding(self._exhibits, "ribin-exhibits")

    def _check_sink(self) -> None:
        if self._sink.error is not None:
            raise self._sink.failure()

    def add(self, record: SegmentRecord) -> None:
        self._check_sink()
        _write_exhibit(self._exhibits, record)
        row = len(self._records)
        self._records.append(
            {
                "content_id": record.content_id,
                "exhibit_id": record.exhibit.exhibit_id,
                "source_sha256": record.exhibit.source_sha256,
                **record.metadata.as_dict(),
            }
        )
        for kind, signature in record.exhibit.signatures().items():
            self._signatures.append(
                (row, signature.id, kind, signature.modality, float(signature.pixel_size_um))
            )
            vector = np.asarray(record.features[kind], dtype=np.float32)
            if vector.shape != (self.feature_length,):
                raise ValueError(f"feature vector of shape {vector.shape}")
            self._vectors.append(vector)

    def copy_exhibit(
        self,
        source: h5py.Group,
        row: Mapping[str, str],
        signatures: Iterable[tuple[str, str, str, float]],
        vectors: Iterable[np.ndarray],
    ) -> None:
        """Copy an exhibit group of another segment as it is (HDF5 object copy, no decode).

        ``row`` holds ``content_id`` and the :data:`INDEX_FIELDS` of the exhibit;
        ``signatures`` its (signature_id, kind, modality, pixel_size_um) rows and ``vectors``
        their prefilter features, as the source segment's tables give them.
        """
        self._check_sink()
        self._exhibits.copy(source, row["content_id"])
        index = len(self._records)
        self._records.append({key: str(row[key]) for key in ("content_id", *INDEX_FIELDS)})
        for (sig_id, kind, modality, pixel_size), vector in zip(signatures, vectors, strict=True):
            self._signatures.append((index, sig_id, kind, modality, float(pixel_size)))
            vector = np.asarray(vector, dtype=np.float32)
            if vector.shape != (self.feature_length,):
                raise ValueError(f"feature vector of shape {vector.shape}")
            self._vectors.append(vector)

    def finish(self) -> None:
        f = self._file
        index = f.create_group("index")
        _set_encoding(index, "ribin-index")
        _ascii_dataset(index, "content_id", [r["content_id"] for r in self._records], 64)
        for name in INDEX_FIELDS:
            _string_dataset(index, name, [r[name] for r in self._records])

        prefilter = f.create_group("prefilter")
        _set_encoding(prefilter, "ribin-prefilter")
        _put_attrs(
            prefilter,
            {"feature_version": self.feature_version, "feature_length": self.feature_length},
        )
        matrix = np.zeros((len(self._vectors), self.feature_length), dtype=np.float32)
        if self._vectors:
            matrix[:] = self._vectors
        data = prefilter.create_dataset("features", data=matrix)  # contiguous: one read
        _set_encoding(data, "array")
        rows = np.asarray([s[0] for s in self._signatures], dtype=np.int32)
        _ascii_dataset(prefilter, "signature_id", [s[1] for s in self._signatures], 64)
        data = prefilter.create_dataset("exhibit", data=rows)
        _set_encoding(data, "array")
        _string_dataset(prefilter, "kind", [s[2] for s in self._signatures])
        _string_dataset(prefilter, "modality", [s[3] for s in self._signatures])
        sizes = np.asarray([s[4] for s in self._signatures], dtype=np.float64)
        _set_encoding(prefilter.create_dataset("pixel_size_um", data=sizes), "array")
        f.close()
        self._sink.close()
        self._check_sink()

    def index(self, name: str, sequence: int) -> SegmentIndex:
        """The tables just written, as :func:`read_segment_index` would read them back."""
        exhibits = {
            key: np.array([r[key] for r in self._records], dtype=object)
            for key in ("content_id", *INDEX_FIELDS)
        }
        signatures = {
            "exhibit": np.array([s[0] for s in self._signatures], dtype=np.int64),
            "signature_id": np.array([s[1] for s in self._signatures], dtype=object),
            "kind": np.array([s[2] for s in self._signatures], dtype=object),
            "modality": np.array([s[3] for s in self._signatures], dtype=object),
            "pixel_size_um": np.array([s[4] for s in self._signatures], dtype=np.float64),
        }
        return SegmentIndex(name, exhibits, signatures, self.feature_version, sequence)

    def abort(self) -> None:
        """Close without finishing; the caller deletes the file."""
        try:
            self._file.close()
        except Exception:  # the file is thrown away anyway
            pass
        self._sink.close()


class _GuardedFile:
    """The file HDF5 writes a segment through (h5py's ``fileobj`` driver).

    A write that fails (disk full, file size limit, I/O error) is never reported to HDF5:
    HDF5 left in an error state mid-file has crashed the process on close. The first
    error is kept instead, later writes are dropped, the writer stops at the next exhibit
    and raises :class:`StoreError`, and the caller deletes the partial file.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self.error: OSError | None = None
        try:
            self._fh = open(path, "x+b", buffering=0)  # closed by close()
        except FileExistsError:
            raise
        except OSError as exc:
            raise StoreError(
                f"{os.path.basename(self.path)}: cannot create the segment ({exc.strerror or exc})"
            ) from None

    def failure(self) -> StoreError:
        error = self.error
        reason = (error.strerror or str(error)) if error is not None else "unknown error"
        return StoreError(f"{os.path.basename(self.path)}: cannot write the segment ({reason})")

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def read(self, size: int = -1) -> bytes:
        return self._fh.read(size)

    def readinto(self, buffer: Any) -> int:
        return self._fh.readinto(buffer)

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        start = self._fh.tell()
        if self.error is None:
            try:
                done = 0
                while done < len(view):
                    done += self._fh.write(view[done:]) or 0
                return len(view)
            except OSError as exc:
                self.error = exc
        self._fh.seek(start + len(view))  # as if written: HDF5 must not notice
        return len(view)

    def truncate(self, size: int | None = None) -> int:
        if self.error is None:
            try:
                return self._fh.truncate(size)
            except OSError as exc:
                self.error = exc
        return self._fh.tell() if size is None else size

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()


# ----------------------------------------------------------------------------- structure

MAX_SURFACE_SIDE = 8192
"""Largest side of a stored signature surface (a breech face at 1 um is ~5000 points)."""
MAX_SURFACE_POINTS = 1 << 24
"""Largest stored surface: 16.7 M points, 64 MB as float32, checked before it is read."""
MAX_DETECTION_POINTS = 1 << 16
"""Largest array in an exhibit's ``detection`` dict (only small vectors are stored)."""
MAX_DETECTION_DEPTH = 4
MAX_ROWS = 1 << 26
"""Largest index or prefilter table of one segment (rows)."""
MAX_STORAGE_RATIO = 1000.0
"""Largest uncompressed/stored size of a large dataset: beyond it, a decompression bomb."""

_ENCODING_ATTRS = frozenset({"encoding-type", "encoding-version"})
SEGMENT_ATTRS = _ENCODING_ATTRS | {
    "format",
    "format_version",
    "created_by",
    "created_at",
    "sequence",
}
EXHIBIT_ATTRS = frozenset(
    {
        *_ENCODING_ATTRS,
        "content_id",
        "exhibit_id",
        *METADATA_FIELDS,
        "source_sha256",
        "source_name",
        "software_version",
        "stored_at",
        "missing",
        "warnings",
    }
)
SIGNATURE_ATTRS = frozenset(
    {
        *_ENCODING_ATTRS,
        "kind",
        "modality",
        "pixel_size_um",
        "params",
        "quality",
        "signature_id",
    }
)
EXHIBIT_MEMBERS = frozenset({*REGIONS, "detection"})
PREFILTER_DATASETS = ("features", "signature_id", "exhibit", "kind", "modality", "pixel_size_um")
_ALLOWED_FILTERS = {
    h5py.h5z.FILTER_DEFLATE,
    h5py.h5z.FILTER_SHUFFLE,
    h5py.h5z.FILTER_FLETCHER32,
}
_PLAIN_LAYOUTS = {h5py.h5d.COMPACT, h5py.h5d.CONTIGUOUS, h5py.h5d.CHUNKED}


def _member(group: h5py.Group, name: str, kind: type) -> Any:
    """``group[name]`` if it is a hard link to a ``kind`` (Group or Dataset), else StoreError.

    Soft and external links are refused before they are followed: a segment is one
    self-contained file, and a link could point anywhere (another file, ``/dev/zero``).
    """
    try:
        link = group.get(name, getlink=True)
    except (KeyError, ValueError, RuntimeError, OSError) as exc:
        raise StoreError(f"{_where(group)}/{name}: unreadable link ({_first_line(exc)})") from None
    if link is None:
        what = "dataset " if kind is h5py.Dataset else ""
        raise StoreError(f"{_where(group)}: missing {what}{name!r}")
    if not isinstance(link, h5py.HardLink):
        raise StoreError(
            f"{_where(group)}/{name}: is a {type(link).__name__}; only plain groups and "
            "datasets are allowed"
        )
    item = group[name]
    if not isinstance(item, kind):
        raise StoreError(f"{_where(group)}/{name}: is not a {kind.__name__.lower()}")
    return item


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__


def check_dataset(
    data: h5py.Dataset,
    *,
    kinds: str,
    ndim: int | tuple[int, ...],
    max_points: int,
    max_side: int | None = None,
) -> None:
    """Refuse a dataset that is not plain stored data of an expected type and size.

    Checked from the header alone, before any element is read: no virtual layout, no
    external raw storage, only gzip/shuffle/fletcher32 filters, dtype kind in ``kinds``,
    ``ndim`` dimensions, at most ``max_points`` elements (and ``max_side`` per side), and
    a large dataset's stored bytes not over :data:`MAX_STORAGE_RATIO` times smaller than
    its size (unwritten chunks read back as the fill value: a bomb).
    """
    where = _where(data)
    plist = data.id.get_create_plist()
    if plist.get_layout() not in _PLAIN_LAYOUTS:
        raise StoreError(f"{where}: virtual or unknown dataset layout is not allowed")
    if plist.get_external_count():
        raise StoreError(f"{where}: external raw storage is not allowed")
    for i in range(plist.get_nfilters()):
        if plist.get_filter(i)[0] not in _ALLOWED_FILTERS:
            raise StoreError(f"{where}: filter {plist.get_filter(i)[0]} is not allowed")
    dtype = data.dtype
    kind = "T" if h5py.check_string_dtype(dtype) is not None and dtype.kind == "O" else dtype.kind
    if kind not in kinds or dtype.fields is not None or dtype.subdtype is not None:
        raise StoreError(f"{where}: data type {dtype} is not allowed here")
    shape = data.shape
    dims = (ndim,) if isinstance(ndim, int) else ndim
    if shape is None or len(shape) not in dims:
        raise StoreError(f"{where}: has {len(shape or ())} dimensions, expected {ndim}")
    points = int(np.prod(shape, dtype=object)) if shape else 1
    if points > max_points or (max_side is not None and shape and max(shape) > max_side):
        raise StoreError(
            f"{where}: shape {'x'.join(map(str, shape))} is over the limit of "
            f"{max_points} points{f' or {max_side} per side' if max_side else ''}"
        )
    nbytes = points * dtype.itemsize
    if nbytes > (1 << 20) and data.id.get_storage_size() * MAX_STORAGE_RATIO < nbytes:
        raise StoreError(
            f"{where}: {nbytes} bytes stored in {data.id.get_storage_size()}: refused as a "
            "decompression bomb"
        )


def _check_attr_names(element: h5py.HLObject, allowed: frozenset[str]) -> None:
    names = set(element.attrs.keys())
    unknown = names - allowed
    if unknown:
        raise StoreError(
            f"{_where(element)}: attribute(s) the format does not define: "
            f"{', '.join(sorted(unknown))[:120]}"
        )


def check_exhibit_group(group: h5py.Group) -> None:
    """Check one exhibit group's structure (links, members, attributes, surface sizes)."""
    _check_attr_names(group, EXHIBIT_ATTRS)
    for name in group.keys():
        if name in REGIONS:
            data = _member(group, name, h5py.Dataset)
            check_dataset(
                data,
                kinds="f",
                ndim=2,
                max_points=MAX_SURFACE_POINTS,
                max_side=MAX_SURFACE_SIDE,
            )
            _check_attr_names(data, SIGNATURE_ATTRS)
        elif name == "detection":
            _check_dict_group(_member(group, name, h5py.Group), 1)
        else:
            raise StoreError(
                f"{_where(group)}: holds {name[:40]!r}, which the format does not define"
            )


def _check_dict_group(group: h5py.Group, depth: int) -> None:
    if depth > MAX_DETECTION_DEPTH:
        raise StoreError(f"{_where(group)}: nested deeper than {MAX_DETECTION_DEPTH} levels")
    _check_attr_names(group, _ENCODING_ATTRS | {"values"})
    names = list(group.keys())
    if len(names) > 256:
        raise StoreError(f"{_where(group)}: holds {len(names)} items (limit 256)")
    for name in names:
        link = group.get(name, getlink=True)
        if not isinstance(link, h5py.HardLink):
            _member(group, name, h5py.Group)  # raises, naming the link type
        item = group[name]
        if isinstance(item, h5py.Group):
            _check_dict_group(item, depth + 1)
        elif isinstance(item, h5py.Dataset):
            check_dataset(item, kinds="biuf", ndim=(0, 1, 2), max_points=MAX_DETECTION_POINTS)
            _check_attr_names(item, _ENCODING_ATTRS)
        else:
            raise StoreError(f"{_where(group)}/{name}: not a group or dataset")


def check_segment_structure(f: h5py.File, *, exhibits: bool = True) -> None:
    """Refuse a segment holding anything the format does not define.

    Checks the root, ``index`` and ``prefilter`` (plain datasets of the expected types
    and sizes, no links), and with ``exhibits`` every exhibit group too
    (:func:`check_exhibit_group`). Used on every bundle payload before anything in it is
    read, and by ``store verify``; readers check each exhibit group as they read it.
    """
    _check_attr_names(f, SEGMENT_ATTRS)
    names = set(f.keys())
    if names != {"exhibits", "index", "prefilter"}:
        extra = sorted(names - {"exhibits", "index", "prefilter"})
        raise StoreError(
            f"{_file_name(f)}: top level holds {', '.join(extra)[:120] or 'too little'}; "
            "expected exhibits, index and prefilter"
        )
    index = _member(f, "index", h5py.Group)
    _check_attr_names(index, _ENCODING_ATTRS)
    if set(index.keys()) != {"content_id", *INDEX_FIELDS}:
        raise StoreError(f"{_where(index)}: datasets differ from the format's")
    for name in ("content_id", *INDEX_FIELDS):
        data = _member(index, name, h5py.Dataset)
        check_dataset(data, kinds="ST", ndim=1, max_points=MAX_ROWS)
        _check_attr_names(data, _ENCODING_ATTRS)
    prefilter = _member(f, "prefilter", h5py.Group)
    _check_attr_names(prefilter, _ENCODING_ATTRS | {"feature_version", "feature_length"})
    if set(prefilter.keys()) != set(PREFILTER_DATASETS):
        raise StoreError(f"{_where(prefilter)}: datasets differ from the format's")
    for name in PREFILTER_DATASETS:
        data = _member(prefilter, name, h5py.Dataset)
        if name == "features":
            check_dataset(data, kinds="f", ndim=2, max_points=MAX_ROWS * 4096)
        elif name in ("exhibit", "pixel_size_um"):
            check_dataset(data, kinds="iuf", ndim=1, max_points=MAX_ROWS)
        else:
            check_dataset(data, kinds="ST", ndim=1, max_points=MAX_ROWS)
        _check_attr_names(data, _ENCODING_ATTRS)
    groups = _member(f, "exhibits", h5py.Group)
    _check_attr_names(groups, _ENCODING_ATTRS)
    if exhibits:
        for name in groups.keys():
            if not is_hex64(name):
                raise StoreError(f"{_where(groups)}: {name[:40]!r} is not a content ID")
            check_exhibit_group(_member(groups, name, h5py.Group))


# ----------------------------------------------------------------------------- reading


def open_segment(path: str | os.PathLike) -> h5py.File:
    """Open a segment read-only and check its format attributes.

    Raises
    ------
    FileNotFoundError
        When the file is gone (a reader then refreshes its manifest).
    StoreError
        Not HDF5, truncated, not a RIBIN store, or missing attributes.
    FormatVersionError
        Written by a newer major format version.
    """
    name = os.path.basename(os.fspath(path))
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    try:
        f = h5py.File(path, "r", locking=False)
    except OSError:
        if not os.path.exists(path):  # deleted between the check and the open
            raise FileNotFoundError(path) from None
        reason = (
            "truncated or damaged (an HDF5 file RIBIN cannot read)"
            if h5py.is_hdf5(path)
            else "not an HDF5 file, so not a RIBIN store or segment"
        )
        raise StoreError(f"{name}: {reason}") from None
    try:
        attrs = _Attrs(f)
        check_format(attrs.values, name)
        encoding = attrs.encoding()
        if encoding != ("ribin-segment", "1"):
            raise StoreError(f"{name}: unknown encoding {encoding[0]!r} version {encoding[1]!r}")
    except StoreError:
        f.close()
        raise
    except Exception as exc:  # damaged attributes: h5py raises KeyError, RuntimeError, ...
        f.close()
        raise StoreError(f"{name}: damaged segment attributes ({_first_line(exc)})") from None
    return f


def check_format(attrs: Mapping[str, Any], name: str) -> int:
    """Check ``format``/``format_version`` in a segment's or manifest's attributes."""
    if "format" not in attrs:
        raise StoreError(f"{name}: no 'format' attribute (not a RIBIN store)")
    fmt = attrs["format"]
    fmt = fmt.decode() if isinstance(fmt, bytes) else str(fmt)
    if fmt != FORMAT:
        raise StoreError(f"{name}: format is {fmt!r}, not {FORMAT!r}")
    if "format_version" not in attrs:
        raise StoreError(f"{name}: missing attribute 'format_version'")
    try:
        version = int(attrs["format_version"])
    except (TypeError, ValueError):
        bad = attrs["format_version"]
        raise StoreError(f"{name}: format_version {bad!r} is not an integer") from None
    if version > FORMAT_VERSION:
        raise FormatVersionError(
            f"{name}: written by store format {version}, this RIBIN reads format "
            f"{FORMAT_VERSION} (upgrade RIBIN)"
        )
    if version < 1:
        raise StoreError(f"{name}: format_version {version} is not valid")
    if "created_by" not in attrs:
        raise StoreError(f"{name}: missing attribute 'created_by'")
    return version


@dataclass(frozen=True)
class SegmentIndex:
    """The small per-segment tables a store keeps in memory.

    Exhibit rows: ``content_id`` and the :data:`INDEX_FIELDS` arrays, shape (n,).
    Signature rows: ``signature_id``, ``exhibit`` (row into the exhibit arrays), ``kind``,
    ``modality``, shape (m,).
    """

    name: str
    exhibits: dict[str, np.ndarray]
    signatures: dict[str, np.ndarray]
    feature_version: int
    sequence: int

    @property
    def n_exhibits(self) -> int:
        return len(self.exhibits["content_id"])

    @property
    def n_signatures(self) -> int:
        return len(self.signatures["signature_id"])


def _whole(data: h5py.Dataset) -> np.ndarray:
    """A checked fixed-size dataset read whole, by the low-level call ``data[()]`` ends in
    (a third of the time for the small index columns a store opens by the hundred)."""
    out = np.empty(data.shape, dtype=data.dtype)
    data.id.read(h5py.h5s.ALL, h5py.h5s.ALL, out)
    return out


def _strings(group: h5py.Group, name: str) -> np.ndarray:
    data = _member(group, name, h5py.Dataset)
    check_dataset(data, kinds="ST", ndim=1, max_points=MAX_ROWS)
    try:
        if data.dtype.kind != "S":  # variable-length strings, as other tools may write them
            return np.asarray(data.asstr()[()], dtype=object)
        raw = _whole(data)
        try:
            text = raw.astype(str)  # numpy decodes ASCII in one pass
        except UnicodeDecodeError:
            text = np.char.decode(raw, "utf-8")
    except UnicodeDecodeError:
        raise StoreError(f"{_where(data)}: text that is not valid UTF-8") from None
    return text.astype(object)  # plain Python str, cheap to hash and compare


@_reads("ribin-index", "1")
def _read_index(group: h5py.Group, attrs: _Attrs) -> dict[str, np.ndarray]:
    out = {"content_id": _strings(group, "content_id")}
    for name in INDEX_FIELDS:
        out[name] = _strings(group, name)
    n = len(out["content_id"])
    if any(len(v) != n for v in out.values()):
        raise StoreError(f"{_where(group)}: index datasets differ in length")
    return out


@_reads("ribin-prefilter", "1")
def _read_prefilter(group: h5py.Group, attrs: _Attrs) -> dict[str, Any]:
    out: dict[str, Any] = {
        "signature_id": _strings(group, "signature_id"),
        "kind": _strings(group, "kind"),
        "modality": _strings(group, "modality"),
    }
    for name, dtype in (("exhibit", np.int64), ("pixel_size_um", np.float64)):
        data = _member(group, name, h5py.Dataset)
        check_dataset(data, kinds="iuf", ndim=1, max_points=MAX_ROWS)
        out[name] = _whole(data).astype(dtype)
    out["feature_version"] = int(attrs.get("feature_version"))
    n = len(out["signature_id"])
    if any(len(out[k]) != n for k in ("kind", "modality", "exhibit", "pixel_size_um")):
        raise StoreError(f"{_where(group)}: prefilter datasets differ in length")
    return out


def _child(group: h5py.Group, name: str) -> h5py.HLObject:
    return _member(group, name, h5py.HLObject)


def read_segment_index(f: h5py.File, name: str | None = None) -> SegmentIndex:
    """Exhibit and signature tables of an open segment (no surfaces, no features)."""
    exhibits = read_element(_child(f, "index"), "ribin-index")
    prefilter = read_element(_child(f, "prefilter"), "ribin-prefilter")
    feature_version = prefilter.pop("feature_version")
    if len(prefilter["exhibit"]) and (
        prefilter["exhibit"].min() < 0 or prefilter["exhibit"].max() >= len(exhibits["content_id"])
    ):
        raise StoreError(f"{_file_name(f)}: prefilter/exhibit points outside the index")
    sequence = int(f.attrs.get("sequence", 0))
    return SegmentIndex(name or _file_name(f), exhibits, prefilter, feature_version, sequence)


def read_segment_features(f: h5py.File) -> np.ndarray:
    """The segment's prefilter matrix, shape (m, F), float32, in one read."""
    group = _member(f, "prefilter", h5py.Group)
    data = _member(group, "features", h5py.Dataset)
    check_dataset(data, kinds="f", ndim=2, max_points=MAX_ROWS * 4096)
    rows = _member(group, "signature_id", h5py.Dataset).shape
    width = group.attrs.get("feature_length", data.shape[1])
    version = group.attrs.get("feature_version")
    from ribin import prefilter  # here: only for the current feature length

    if version == prefilter.FEATURE_VERSION:
        width = prefilter.FEATURE_LENGTH
    if data.shape != (rows[0], width):
        raise StoreError(
            f"{_where(data)}: shape {data.shape}, expected ({rows[0]}, {width}) "
            "(one row per signature, one column per feature)"
        )
    return np.asarray(data[()], dtype=np.float32)


@_reads("ribin-signature", "1")
def _read_signature(data: h5py.Dataset, attrs: _Attrs) -> tuple[Signature, str]:
    try:
        signature = Signature(
            kind=attrs.text("kind"),
            surface=data[()],
            pixel_size_um=float(attrs.get("pixel_size_um")),
            modality=attrs.text("modality"),
            quality=attrs.json("quality"),
            params=attrs.json("params"),
        )
    except ValueError as exc:
        raise StoreError(f"{_where(data)}: {exc}") from None
    return signature, attrs.text("signature_id")


@_reads("dict", "1")
def _read_dict(group: h5py.Group, attrs: _Attrs) -> dict[str, Any]:
    out = dict(attrs.json("values")) if "values" in attrs else {}
    for key, item in group.items():
        out[key] = read_element(item)
    return out


@_reads("array", "1")
def _read_array(data: h5py.Dataset, attrs: _Attrs) -> np.ndarray:
    return data[()]


@dataclass(frozen=True)
class ExhibitRecord:
    """An exhibit read back from a segment, with what the store recorded beside it."""

    exhibit: Exhibit
    metadata: ExhibitMetadata
    content_id: str
    stored_at: str
    stored_signature_ids: dict[str, str]


@_reads("ribin-exhibit", "1")
def _read_exhibit(group: h5py.Group, attrs: _Attrs) -> ExhibitRecord:
    check_exhibit_group(group)
    regions: dict[str, Signature] = {}
    stored_ids: dict[str, str] = {}
    detection: dict[str, Any] = {}
    for key, item in group.items():
        if key in REGIONS:
            regions[key], stored_ids[key] = read_element(item, "ribin-signature")
        elif key == "detection":
            detection = read_element(item, "dict")
    metadata = ExhibitMetadata(**{k: attrs.text(k) for k in METADATA_FIELDS})
    exhibit = Exhibit(
        exhibit_id=attrs.text("exhibit_id"),
        breech_face=regions.get("breech_face"),
        firing_pin=regions.get("firing_pin"),
        source_sha256=attrs.text("source_sha256"),
        source_name=attrs.text("source_name"),
        software_version=attrs.text("software_version"),
        missing=dict(attrs.json("missing")),
        warnings=tuple(attrs.json("warnings")),
        detection=detection,
    )
    return ExhibitRecord(
        exhibit, metadata, attrs.text("content_id"), attrs.text("stored_at"), stored_ids
    )


def read_exhibit(f: h5py.File, content_id: str) -> ExhibitRecord:
    """One exhibit of an open segment, by content ID."""
    exhibits = _member(f, "exhibits", h5py.Group)
    try:
        return read_element(_member(exhibits, content_id, h5py.Group), "ribin-exhibit")
    except StoreError:
        raise
    except Exception as exc:  # damaged HDF5 objects: h5py raises many types
        raise StoreError(
            f"{_file_name(f)}: exhibits/{content_id[:16]}… unreadable ({_first_line(exc)})"
        ) from None


def recompute_ids(record: ExhibitRecord) -> tuple[dict[str, str], str]:
    """Signature IDs and exhibit content ID recomputed from the stored bytes."""
    sig_ids = {
        kind: signature_id(s.kind, s.modality, s.surface, s.pixel_size_um, s.params)
        for kind, s in record.exhibit.signatures().items()
    }
    return sig_ids, exhibit_content_id(record.exhibit.exhibit_id, sig_ids)


def iter_exhibit_names(f: h5py.File) -> Iterable[str]:
    return list(_child(f, "exhibits").keys())


def file_sha256(path: str | os.PathLike, fsync: bool = False) -> tuple[str, int]:
    """SHA-256 and size of a file; with ``fsync`` also force it to disk."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
            size += len(block)
        if fsync:
            os.fsync(fh.fileno())
    return digest.hexdigest(), size


def is_hex64(value: str) -> bool:
    return bool(_HEX64.fullmatch(value))


__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ExhibitMetadata",
    "ExhibitRecord",
    "SegmentIndex",
    "SegmentRecord",
    "SegmentWriter",
    "check_exhibit_id",
    "exhibit_content_id",
    "open_segment",
    "read_exhibit",
    "read_segment_features",
    "read_segment_index",
]
