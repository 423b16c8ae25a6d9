"""What the store hands back: stored exhibits, segment refs, feature tables, reports."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from ribin import prefilter
from ribin.exhibit import Exhibit
from ribin.store_format import ExhibitMetadata

# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class StoredExhibit:
    """An exhibit read from the store, with its metadata and where it lives.

    Attributes
    ----------
    exhibit : Exhibit
        Signatures and provenance, as ingested.
    metadata : ExhibitMetadata
        Country, site, caliber, role, case_ref, acquired_at, sharing.
    content_id : str
        Exhibit content ID (see :func:`ribin.store_format.exhibit_content_id`).
    segment : str
        File name of the segment holding it.
    stored_at : str
        UTC time of the ingest (ISO 8601).
    """

    exhibit: Exhibit
    metadata: ExhibitMetadata
    content_id: str
    segment: str
    stored_at: str

    @property
    def exhibit_id(self) -> str:
        return self.exhibit.exhibit_id


@dataclass(frozen=True)
class AddResult:
    """Outcome of adding one exhibit: ``added`` is False when it was already stored."""

    exhibit_id: str
    content_id: str
    added: bool
    message: str


@dataclass(frozen=True)
class SegmentRef:
    """A live segment: its path, manifest checksum and the exhibits tombstoned in it."""

    name: str
    path: Path
    sha256: str
    removed: frozenset[str]  # content IDs to skip


# Exhibit index columns copied onto each feature row, for the search's filters.
_TABLE_FIELDS = (
    "content_id",
    "exhibit_id",
    "country",
    "sharing",
    "site",
    "caliber",
    "role",
    "acquired_at",
)


@dataclass
class FeatureTable:
    """Prefilter features of live signatures, one row each, in store order.

    ``features`` is float32, shape (n, F); the other fields are arrays of shape (n,).
    """

    features: np.ndarray
    signature_id: np.ndarray
    content_id: np.ndarray
    exhibit_id: np.ndarray
    kind: np.ndarray
    modality: np.ndarray
    pixel_size_um: np.ndarray
    country: np.ndarray
    sharing: np.ndarray
    segment: np.ndarray
    site: np.ndarray
    caliber: np.ndarray
    role: np.ndarray
    acquired_at: np.ndarray
    feature_version: int = prefilter.FEATURE_VERSION

    def __len__(self) -> int:
        return len(self.signature_id)

    @classmethod
    def concat(cls, tables: Sequence[FeatureTable]) -> FeatureTable:
        """The rows of ``tables`` one after the other; an empty table when there are none."""
        columns = [f.name for f in fields(cls) if f.name != "feature_version"]
        if not tables:
            empty = np.empty(0, dtype=object)
            return cls(
                features=np.empty((0, prefilter.FEATURE_LENGTH), np.float32),
                **{name: empty for name in columns if name != "features"},
            )
        return cls(**{name: np.concatenate([getattr(t, name) for t in tables]) for name in columns})


@dataclass
class StoreInfo:
    """Counts and sizes of a store (what ``ribin store info`` prints)."""

    path: str
    format_version: int
    created_by: str
    sequence: int
    segments: int
    exhibits: int
    signatures: int
    removed: int
    bytes: int
    by_country: dict[str, int]
    by_region: dict[str, int]
    by_modality: dict[str, int]
    by_caliber: dict[str, int]
    by_sharing: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class VerifyReport:
    """Outcome of :meth:`SignatureStore.verify`; ``problems`` lists every mismatch."""

    path: str
    segments: int = 0
    exhibits: int = 0
    signatures: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


@dataclass(frozen=True)
class PreparedExhibit:
    """An exhibit checked for storing, with IDs and features computed from its surfaces."""

    exhibit: Exhibit
    metadata: ExhibitMetadata
    content_id: str
    signature_ids: dict[str, str]
    features: dict[str, np.ndarray]


def _features(item: PreparedExhibit) -> Mapping[str, np.ndarray]:
    """Prefilter features of a prepared exhibit (computed now if it was prepared without)."""
    if item.features:
        return item.features
    return {kind: prefilter.features(s) for kind, s in item.exhibit.signatures().items()}


@dataclass(frozen=True)
class MergeResult:
    """Outcome of :meth:`SignatureStore.merge`."""

    added: int
    unchanged: int
    removed: int
    sequence: int
    audit: dict[str, Any]
