"""Where benchmarks leave their headline figures for the documentation's validation tables.

A benchmark calls :func:`record` with a small table; ``make_docs.py`` renders every recorded
table into ``docs/validation.md``. Files go to ``$RIBIN_RESULTS`` when set (``make_docs.py``
sets it), else nowhere, so an ad-hoc run never rewrites the committed figures.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import machine

import ribin


def record(
    name: str,
    title: str,
    columns: list[str],
    rows: list[list[Any]],
    notes: str = "",
) -> Path | None:
    """Write one table of figures as ``NAME.json`` under ``$RIBIN_RESULTS``.

    Parameters
    ----------
    name : str
        File stem, unique per table (``compare_accuracy``).
    title : str
        Heading of the table in the documentation.
    columns : list of str
        Column headings.
    rows : list of list
        Cells; floats are written as given, so round them first.
    notes : str
        One or two sentences printed under the table (what was measured, on what).

    Returns
    -------
    Path or None
        The file written, or None when ``$RIBIN_RESULTS`` is not set.
    """
    folder = os.environ.get("RIBIN_RESULTS")
    if not folder:
        return None
    path = Path(folder) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "name": name,
        "title": title,
        "columns": columns,
        "rows": rows,
        "notes": notes,
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "ribin_version": ribin.__version__,
        "machine": machine(),
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
