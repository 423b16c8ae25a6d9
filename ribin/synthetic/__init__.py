"""Synthetic cartridge-case heads with ground truth, for tests, benchmarks and the demo.

A seeded generator: tool batches (:func:`make_batch`) give firearms (:func:`make_firearm`)
a breech face with a shared subclass pattern and individual marks, a firing pin and a
caliber; each shot (:func:`make_casing`) transfers them partially onto a primer; each
acquisition (:func:`render_casing`) images the casing in 3D (heights in metres) or 2D
(ring-lit grey levels) in a random pose. :func:`generate_set` writes files and a manifest;
:func:`truth_masks` gives the true regions of any manifest row. See ``docs/synthetic.md``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ribin.synthetic.dataset import (
    COLUMNS,
    DEFAULT_PIXEL_SIZE_UM,
    batch_plan,
    generate_set,
    load_manifest,
    render_entry,
)
from ribin.synthetic.firearm import (
    CALIBERS,
    FP_SHAPES,
    PATTERNS,
    Caliber,
    Firearm,
    FiringPin,
    ToolBatch,
    make_batch,
    make_firearm,
)
from ribin.synthetic.realism import bandpass, masked_correlation, surface_stats
from ribin.synthetic.shot import MODALITIES, Casing, make_casing, render_casing, render_shot
from ribin.synthetic.truth import REGIONS, to_breech_frame, truth_masks

#: The arguments that made the committed set ``data/synthetic_casings/``.
COMMITTED_SET: dict[str, Any] = {
    "firearms": 8,
    "shots": 3,
    "seed": 2024,
    "pixel_size_um": 12.5,
}
#: Where the committed set lives in a source checkout.
COMMITTED_DIR = Path("data") / "synthetic_casings"


def find_committed_set(start: str | os.PathLike | None = None) -> Path | None:
    """The committed set's folder: under `start` (default: the current directory), else
    under the source checkout this package was imported from (editable install); None
    when neither holds a manifest."""
    here = Path.cwd() if start is None else Path(start)
    repository = Path(__file__).resolve().parents[2]
    for root in (here, repository):
        candidate = root / COMMITTED_DIR
        if (candidate / "manifest.json").is_file():
            return candidate
    return None


def locate_or_generate(out: str | os.PathLike) -> list[dict[str, Any]]:
    """Manifest rows of the committed set, regenerating it under `out` when not found.

    Parameters
    ----------
    out : str or path-like
        Folder for a regenerated set (``out/synthetic_casings``) when no committed one is
        found (e.g. installed from a wheel); reused when it already holds one.

    Returns
    -------
    list of dict
        As :func:`load_manifest`.
    """
    found = find_committed_set()
    if found is None:
        found = Path(out) / "synthetic_casings"
        if not (found / "manifest.json").is_file():
            generate_set(found, **COMMITTED_SET)
    return load_manifest(found)


__all__ = [
    "CALIBERS",
    "COLUMNS",
    "COMMITTED_SET",
    "DEFAULT_PIXEL_SIZE_UM",
    "FP_SHAPES",
    "MODALITIES",
    "PATTERNS",
    "REGIONS",
    "Caliber",
    "Casing",
    "Firearm",
    "FiringPin",
    "ToolBatch",
    "bandpass",
    "batch_plan",
    "find_committed_set",
    "generate_set",
    "load_manifest",
    "locate_or_generate",
    "make_batch",
    "make_casing",
    "make_firearm",
    "masked_correlation",
    "render_casing",
    "render_entry",
    "render_shot",
    "surface_stats",
    "to_breech_frame",
    "truth_masks",
]
