"""Ingest: casing files to signatures in a store, as one all-or-nothing write."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ribin._callable import make_module_callable
from ribin.errors import InputError
from ribin.exhibit import Exhibit
from ribin.io import read_casing
from ribin.signatures import extract
from ribin.store import AddResult, SignatureStore
from ribin.store_format import ExhibitMetadata

Progress = Callable[[int, int], None]

_DETECTION_KEYS = (
    "primer_center_px",
    "primer_radius_px",
    "firing_pin",
    "cropped_input",
    "primer_confidence",
    "fp_confidence",
)


@dataclass(frozen=True)
class IngestResult(AddResult):
    """Outcome of ingesting one file: the store's answer plus the extraction's quality.

    ``quality`` maps each extracted region to its figures (``valid_fraction``,
    ``valid_area_mm2``, ``detection_confidence``, noise); ``missing`` gives the reason a
    region was not extracted; ``warnings`` says when to consider re-imaging; ``detection``
    where the primer and firing pin were found (input pixels), to check before relying on
    the signatures and to start a manual override from.
    """

    quality: dict[str, dict[str, Any]] = field(default_factory=dict)
    detection: dict[str, Any] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


def exhibit_id_for(path: str | os.PathLike) -> str:
    """Default exhibit ID: the file name without its extension."""
    return Path(path).stem


def slim_detection(detection: Mapping[str, Any]) -> dict[str, Any]:
    """Detection results without full-resolution masks (numbers and short lists only).

    The masks can be re-derived from the centres and radii; storing them would multiply the
    size of every exhibit.
    """
    slim: dict[str, Any] = {}
    for key, value in detection.items():
        if isinstance(value, np.ndarray):
            if value.size <= 16:
                slim[key] = value.tolist()
        elif isinstance(value, Mapping):
            slim[key] = slim_detection(value)
        else:
            slim[key] = value
    return slim


def extract_file(
    path: str | os.PathLike,
    *,
    exhibit_id: str | None = None,
    pixel_size_um: float | None = None,
    **extract_options: Any,
) -> Exhibit:
    """Read one casing file and extract its signatures (see :func:`ribin.extract`)."""
    casing = read_casing(path, pixel_size_um=pixel_size_um)
    return extract(casing, exhibit_id=exhibit_id or exhibit_id_for(path), **extract_options)


def ingest(
    store: SignatureStore,
    files: Sequence[str | os.PathLike],
    metadata: ExhibitMetadata | Mapping[str, Any],
    *,
    exhibit_ids: Iterable[str] | None = None,
    pixel_size_um: float | None = None,
    progress: Progress | None = None,
    **extract_options: Any,
) -> list[IngestResult]:
    """Extract every file and add them to ``store`` in one crash-safe write.

    Nothing is written unless every file extracts: a bad file raises before the store is
    touched.

    Parameters
    ----------
    store : SignatureStore
        Store opened for writing.
    files : sequence of path
        Casing images (X3P, PNG, TIFF, JPEG).
    metadata : ExhibitMetadata or mapping
        Country, site, caliber, role, case_ref, acquired_at, sharing, shared by all files.
    exhibit_ids : iterable of str, optional
        One per file; default the file names without extension.
    pixel_size_um : float, optional
        Pixel size of 2D images that do not record one.
    progress : callable, optional
        ``progress(done, total)`` after each file.
    **extract_options
        Passed to :func:`ribin.extract` (manual primer/firing-pin circles, caliber hint).

    Returns
    -------
    list of IngestResult
        One per file; ``added`` is False for an exhibit that was already stored.
    """
    if not files:
        raise InputError(None, "no files to ingest")
    ids = list(exhibit_ids) if exhibit_ids is not None else [exhibit_id_for(f) for f in files]
    if len(ids) != len(files):
        raise InputError(None, f"{len(ids)} exhibit IDs for {len(files)} files")
    duplicated = sorted({i for i in ids if ids.count(i) > 1})
    if duplicated:
        raise InputError(None, f"exhibit IDs repeat in this batch: {', '.join(duplicated)}")
    metadata = ExhibitMetadata.from_mapping(metadata)
    if not metadata.caliber and extract_options.get("caliber"):
        metadata = dataclasses.replace(metadata, caliber=extract_options["caliber"])
    batch = []
    for done, (path, exhibit_id) in enumerate(zip(files, ids, strict=True), start=1):
        exhibit = extract_file(
            path, exhibit_id=exhibit_id, pixel_size_um=pixel_size_um, **extract_options
        )
        exhibit = dataclasses.replace(exhibit, detection=slim_detection(exhibit.detection))
        batch.append((exhibit, metadata))
        if progress is not None:
            progress(done, len(files))
    results = store.add_many(batch)
    return [
        IngestResult(
            **dataclasses.asdict(result),
            quality={k: dict(sig.quality) for k, sig in exhibit.signatures().items()},
            detection={k: exhibit.detection[k] for k in _DETECTION_KEYS if k in exhibit.detection},
            missing=dict(exhibit.missing),
            warnings=tuple(exhibit.warnings),
        )
        for result, (exhibit, _) in zip(results, batch, strict=True)
    ]


make_module_callable(__name__, ingest)
