"""Writing reports and figures: checked destinations, atomic writes."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ribin.calibration import Calibration
from ribin.errors import InputError
from ribin.exhibit import Exhibit
from ribin.report.search_page import search_entries, search_html

if TYPE_CHECKING:
    from ribin.search import SearchResult


def check_writable(path: str | os.PathLike) -> Path:
    """Fail early, with one line, when a report cannot be written at ``path``.

    Parameters
    ----------
    path : path
        The report file to be written.

    Returns
    -------
    Path
        ``path`` as a :class:`~pathlib.Path`.

    Raises
    ------
    InputError
        The folder does not exist or is not writable, or ``path`` is a folder.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise InputError(path, "is a folder, not a file to write the report to")
    if not parent.is_dir():
        raise InputError(path, f"cannot write the report: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(path, f"cannot write the report: folder {parent} is not writable")
    return path


def write_report(path: str | os.PathLike, document: str) -> None:
    """Write ``document`` to ``path`` atomically (a temporary file, then a rename).

    Parameters
    ----------
    path : path
        The report file; an existing one is replaced only once the new one is whole.
    document : str
        The HTML, written as UTF-8.

    Raises
    ------
    InputError
        The file cannot be written; nothing is left behind.
    """
    path = check_writable(path)
    _write_atomic(path, document.encode("utf-8"))


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = None
    try:
        # opened with "x" rather than mkstemp so the file gets the umask's usual mode
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        with open(tmp, "xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise InputError(path, f"cannot write: {exc.strerror or exc}") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def write_figures(folder: str | os.PathLike, figures: Mapping[str, bytes]) -> list[Path]:
    """Write figures into ``folder`` (created if missing), all or none of them.

    The files are written into a temporary folder inside ``folder`` and moved into place
    only once every one is written.

    Parameters
    ----------
    folder : path
        Where the figures go.
    figures : mapping
        File name -> PNG bytes (from :func:`pair_figures`).

    Returns
    -------
    list of Path
        The files written.

    Raises
    ------
    InputError
        ``folder`` cannot be created or written.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        problem = f"cannot create the figures folder: {exc.strerror or exc}"
        raise InputError(folder, problem) from None
    staging = None
    try:
        staging = Path(tempfile.mkdtemp(prefix=".ribin-figures-", dir=folder))
        for name, data in figures.items():
            with open(staging / name, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        written = []
        for name in figures:
            os.replace(staging / name, folder / name)
            written.append(folder / name)
        return written
    except OSError as exc:
        raise InputError(folder, f"cannot write figures: {exc.strerror or exc}") from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def write_search_report(
    store_path: str | os.PathLike,
    query: Exhibit | str,
    result: SearchResult,
    calibration: Mapping[str, Calibration] | None = None,
    *,
    report_path: str | os.PathLike | None = None,
    png_dir: str | os.PathLike | None = None,
    top: int = 5,
    calibration_source: str = "none",
    parameters: Mapping | None = None,
) -> None:
    """Compare a search's first ``top`` candidates again and write its report and figures.

    Parameters
    ----------
    store_path : path
        The store that was searched (opened read-only here).
    query : Exhibit or str
        The query exhibit, or its exhibit ID in the store.
    result : SearchResult
    calibration : mapping, optional
    report_path : path, optional
        HTML file to write.
    png_dir : path, optional
        Folder for the figures (``rank01-breech_face-cells.png``, ...).
    top : int
        Candidates compared in full in the report.
    calibration_source : str
    parameters : mapping, optional
        How the report was asked for, recorded in its provenance.

    Raises
    ------
    InputError
        An output cannot be written (nothing is left half-written).
    """
    from ribin.store import SignatureStore

    if report_path:
        check_writable(report_path)
    with SignatureStore.open(store_path, "r") as store:
        metadata: dict[str, Any] = {}
        if isinstance(query, str):
            stored = store.get(query)
            query, metadata = stored.exhibit, asdict(stored.metadata)
        entries = search_entries(
            store,
            result,
            query,
            calibration,
            top=top,
            calibration_source=calibration_source,
            query_metadata=metadata,
        )
    figures: dict[str, bytes] = {}
    document = search_html(result, query, entries, parameters=parameters, figures=figures)
    if png_dir:
        write_figures(png_dir, figures)
    if report_path:
        write_report(report_path, document)
