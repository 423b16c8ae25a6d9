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
from ribin.errors import InputError, RibinError
from ribin.exhibit import Exhibit
from ribin.io import read_casing
from ribin.signatures import extract
from ribin.store import AddResult, SignatureStore
from ribin.store_format import ExhibitMetadata, check_exhibit_id

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
    metadata = batch_metadata(metadata, extract_options)
    batch, _ = extract_files(
        files,
        exhibit_ids=exhibit_ids,
        pixel_size_um=pixel_size_um,
        progress=progress,
        **extract_options,
    )
    return store_extracted(store, batch, metadata)


def batch_metadata(
    metadata: ExhibitMetadata | Mapping[str, Any], extract_options: Mapping[str, Any]
) -> ExhibitMetadata:
    """Checked metadata of a batch; the caliber hint fills an empty caliber."""
    metadata = ExhibitMetadata.from_mapping(metadata)
    if not metadata.caliber and extract_options.get("caliber"):
        metadata = dataclasses.replace(metadata, caliber=extract_options["caliber"])
    return metadata


def extract_files(
    files: Sequence[str | os.PathLike],
    *,
    exhibit_ids: Iterable[str] | None = None,
    pixel_size_um: float | None = None,
    progress: Progress | None = None,
    keep_going: bool = False,
    **extract_options: Any,
) -> tuple[list[Exhibit], list[tuple[str, str]]]:
    """Extract a batch of files (the first half of :func:`ingest`; no store involved).

    Parameters
    ----------
    files, exhibit_ids, pixel_size_um, progress, **extract_options
        As for :func:`ingest`.
    keep_going : bool
        False: the first bad file raises :class:`InputError`. True: bad files are skipped
        and listed.

    Returns
    -------
    exhibits : list of Exhibit
        The files that extracted, in order.
    failures : list of (str, str)
        ``(file, one-line reason)`` of each file skipped (only with ``keep_going``).
    """
    if not files:
        raise InputError(None, "no files to ingest")
    ids = list(exhibit_ids) if exhibit_ids is not None else [exhibit_id_for(f) for f in files]
    if len(ids) != len(files):
        raise InputError(None, f"{len(ids)} exhibit IDs for {len(files)} files")
    duplicated = sorted({i for i in ids if ids.count(i) > 1})
    if duplicated:
        raise InputError(None, f"exhibit IDs repeat in this batch: {', '.join(duplicated)}")
    for path, exhibit_id in zip(files, ids, strict=True):
        check_exhibit_id(exhibit_id, str(path))
    exhibits: list[Exhibit] = []
    failures: list[tuple[str, str]] = []
    for done, (path, exhibit_id) in enumerate(zip(files, ids, strict=True), start=1):
        try:
            exhibit = extract_file(
                path, exhibit_id=exhibit_id, pixel_size_um=pixel_size_um, **extract_options
            )
        except RibinError as exc:
            if not keep_going:
                raise
            failures.append((str(path), _one_line(exc, path)))
        else:
            exhibits.append(
                dataclasses.replace(exhibit, detection=slim_detection(exhibit.detection))
            )
        if progress is not None:
            progress(done, len(files))
    return exhibits, failures


def _one_line(exc: Exception, path: str | os.PathLike) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if text.startswith(str(path)) else f"{path}: {text}"


def store_extracted(
    store: SignatureStore, exhibits: Sequence[Exhibit], metadata: ExhibitMetadata
) -> list[IngestResult]:
    """Add extracted exhibits to ``store`` in one write (the second half of :func:`ingest`)."""
    results = store.add_many([(exhibit, metadata) for exhibit in exhibits])
    return [
        IngestResult(
            **dataclasses.asdict(result),
            quality={k: dict(sig.quality) for k, sig in exhibit.signatures().items()},
            detection={k: exhibit.detection[k] for k in _DETECTION_KEYS if k in exhibit.detection},
            missing=dict(exhibit.missing),
            warnings=tuple(exhibit.warnings),
        )
        for result, exhibit in zip(results, exhibits, strict=True)
    ]


make_module_callable(__name__, ingest)
