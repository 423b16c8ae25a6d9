"""Generated sets of casings on disk: files, a ground-truth manifest, and their regeneration.

Every random draw comes from a :class:`numpy.random.SeedSequence` keyed by the set's seed
and the role of the draw (batch, firearm, casing, acquisition), so any one file can be
rebuilt in memory from its manifest row (:func:`render_entry`) and a set regenerates
bit-identically with the same arguments.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ribin.synthetic.firearm import (
    CALIBERS,
    FP_SHAPES,
    PATTERNS,
    Firearm,
    ToolBatch,
    make_batch,
    make_firearm,
)
from ribin.synthetic.shot import MODALITIES, make_casing, render_casing

MANIFEST_FORMAT = "ribin-synthetic-casings"
MANIFEST_VERSION = 1
#: Pixel size of the committed set (um); generated files default to it too.
DEFAULT_PIXEL_SIZE_UM = 6.25
#: Metres per int16 step in the X3P files: 20 nm spans +-655 um.
Z_INCREMENT_M = 20e-9
#: A fixed date in the files, so a regenerated set is byte-identical.
FILE_DATE = "2024-01-01T00:00:00+00:00"
_CALIBER_ORDER = ("9mm", ".40 S&W", ".45 ACP")
# role of a draw -> first element of its SeedSequence spawn key
_BATCH, _FIREARM, _CASING, _ACQUISITION = 0, 1, 2, 3

#: Manifest columns, in order (lists are flattened to ``_x`` / ``_y`` columns in the CSV).
COLUMNS = (
    "file", "firearm", "batch", "shot", "modality", "caliber", "primer", "bf_pattern",
    "pixel_size_um", "image_shape", "rotation_deg", "translation_um", "breech_centre_px",
    "primer_centre_px", "primer_radius_px", "fp_shape", "fp_centre_px", "fp_axes_px",
    "fp_angle_deg", "fp_corner_radius_px", "fp_depth_um", "aperture_margin_px", "drag_mark",
    "exposure", "storage", "seed", "firearm_index", "batch_index", "master_pixel_um",
)  # fmt: skip


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def batch_plan(firearms: int) -> list[dict[str, Any]]:
    """How `firearms` firearms split into tool batches of 2-3 and what each batch makes.

    Batches cycle through the calibers, firing-pin shapes and machining patterns so that
    a set of 3 batches or more holds every caliber and every pin shape.

    Returns
    -------
    list of dict
        One per firearm: ``firearm_index``, ``batch_index``, ``caliber``, ``fp_shape``,
        ``bf_pattern``.
    """
    if firearms < 1:
        raise ValueError(f"need at least one firearm, not {firearms}")
    n_batches = max(1, -(-firearms // 3))
    sizes = [firearms // n_batches + (b < firearms % n_batches) for b in range(n_batches)]
    plan = []
    index = 0
    for b, size in enumerate(sizes):
        for _ in range(size):
            plan.append(
                {
                    "firearm_index": index,
                    "batch_index": b,
                    "caliber": _CALIBER_ORDER[b % 3],
                    "fp_shape": FP_SHAPES[(b + b // 3) % 3],
                    "bf_pattern": PATTERNS[b % len(PATTERNS)],
                }
            )
            index += 1
    return plan


def master_pixel_for(pixel_size_um: float) -> float:
    """Master-grid pixel of a set rendered at `pixel_size_um`: half of it, at least 2 um.

    Twice finer than the output is enough for anti-aliased resampling at any rotation and
    keeps coarse sets quick to make.
    """
    return max(2.0, float(pixel_size_um) / 2)


def _make_batch(seed: int, item: Mapping[str, Any], master_pixel_um: float) -> ToolBatch:
    b = int(item["batch_index"])
    return make_batch(
        _rng(seed, _BATCH, b),
        f"B{b + 1}",
        item["caliber"],
        item["fp_shape"],
        pattern=item["bf_pattern"],
        master_pixel_um=master_pixel_um,
    )


def _make_firearm(seed: int, item: Mapping[str, Any], batch: ToolBatch) -> Firearm:
    i = int(item["firearm_index"])
    return make_firearm(_rng(seed, _FIREARM, i), batch, f"F{i + 1:02d}")


def _file_name(firearm: str, shot: int, modality: str, number: int) -> tuple[str, str]:
    """File name and storage of one file: 3D as int16 X3P; 2D mostly 8-bit PNG."""
    if modality == "3d":
        return f"{firearm}-{shot}.x3p", "x3p int16"
    if number % 4 == 3:
        depth = 16 if number % 8 == 3 else 8
        return f"{firearm}-{shot}.tif", f"tiff {depth}-bit"
    return f"{firearm}-{shot}.png", "png 8-bit"


def _write(path: Path, image: np.ndarray, modality: str, storage: str, pixel_um: float) -> None:
    from ribin.io import X3P, write_image, write_x3p

    if modality == "3d":
        surface = X3P(
            heights=image,
            pixel_size_x_um=pixel_um,
            pixel_size_y_um=pixel_um,
            metadata={
                "creator": "ribin.synthetic",
                "date": FILE_DATE,
                "comment": "synthetic cartridge-case head; ground truth in manifest.json",
            },
        )
        write_x3p(path, surface, data_type="I", z_increment_m=Z_INCREMENT_M)
    else:
        write_image(path, image, pixel_um, bit_depth=16 if "16" in storage else 8)


def generate_set(
    out_dir: str | os.PathLike,
    *,
    firearms: int = 8,
    shots: int = 3,
    seed: int = 2024,
    pixel_size_um: float = DEFAULT_PIXEL_SIZE_UM,
    modalities: Iterable[str] = MODALITIES,
) -> list[dict[str, Any]]:
    """Generate a set of casings: image files plus ``manifest.json`` and ``manifest.csv``.

    Parameters
    ----------
    out_dir : str or path-like
        Folder to write (created if needed; files of the same names are replaced).
    firearms : int
        Number of firearms, in tool batches of 2-3 (see :func:`batch_plan`).
    shots : int
        Casings fired per firearm; each is imaged once per modality, in its own pose.
    seed : int
        Seed of the whole set.
    pixel_size_um : float
        Pixel size of every file.
    modalities : iterable of {"3d", "2d"}
        What to write per casing.

    Returns
    -------
    list of dict
        The manifest rows (see :data:`COLUMNS` and ``docs/synthetic.md``).
    """
    modalities = tuple(modalities)
    for modality in modalities:
        if modality not in MODALITIES:
            raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITIES}")
    if shots < 1:
        raise ValueError(f"need at least one shot per firearm, not {shots}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    batches: dict[int, ToolBatch] = {}
    for item in batch_plan(firearms):
        b = int(item["batch_index"])
        if b not in batches:
            # one batch in memory at a time
            batches = {b: _make_batch(seed, item, master_pixel_for(pixel_size_um))}
        firearm = _make_firearm(seed, item, batches[b])
        for shot in range(1, shots + 1):
            rows.extend(
                _render_files(out, seed, item, firearm, shot, modalities, pixel_size_um, len(rows))
            )
    write_manifest(out, rows, generator={"firearms": firearms, "shots": shots, "seed": seed,
                                         "pixel_size_um": pixel_size_um,
                                         "modalities": list(modalities)})  # fmt: skip
    return rows


def _render_files(
    out: Path,
    seed: int,
    item: Mapping[str, Any],
    firearm: Firearm,
    shot: int,
    modalities: tuple[str, ...],
    pixel_size_um: float,
    number: int,
) -> list[dict[str, Any]]:
    i = int(item["firearm_index"])
    casing = make_casing(firearm, _rng(seed, _CASING, i, shot), shot)
    rows = []
    for modality in modalities:
        m = MODALITIES.index(modality)
        image, truth = render_casing(
            casing, _rng(seed, _ACQUISITION, i, shot, m), modality, pixel_size_um
        )
        name, storage = _file_name(firearm.firearm_id, shot, modality, number + len(rows))
        _write(out / name, image, modality, storage, pixel_size_um)
        row = {
            "file": name,
            "firearm": firearm.firearm_id,
            "batch": firearm.batch.batch_id,
            "shot": shot,
            "bf_pattern": firearm.batch.pattern,
            **truth,
            "exposure": truth.get("exposure"),
            "storage": storage,
            "seed": seed,
            "firearm_index": i,
            "batch_index": int(item["batch_index"]),
            "master_pixel_um": firearm.master_pixel_um,
        }
        rows.append({key: _plain(row[key]) for key in COLUMNS} | _extra(truth))
    return rows


def _extra(truth: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _plain(v) for k, v in truth.items() if k not in COLUMNS}


def _plain(value: Any) -> Any:
    """JSON-ready Python scalars and lists (no NumPy types)."""
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_manifest(
    out_dir: str | os.PathLike, rows: list[dict[str, Any]], generator: Mapping[str, Any]
) -> None:
    """Write ``manifest.json`` (rows + how they were made) and a flat ``manifest.csv``."""
    out = Path(out_dir)
    document = {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_VERSION,
        "generator": dict(generator),
        "conventions": {
            "pixel": "x = column, y = row, origin at the centre of the top-left pixel, y down",
            "rotation_deg": "counter-clockwise as displayed, about the firing-pin axis, "
            "from the firearm's breech frame (as skimage.transform.rotate)",
            "translation_um": "firing-pin axis (breech centre) minus image centre",
        },
        "casings": rows,
    }
    (out / "manifest.json").write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    flat = [_flatten(row) for row in rows]
    fields = list(dict.fromkeys(k for row in flat for k in row))
    with open(out / "manifest.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(flat)


def _flatten(row: Mapping[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, list) and key == "image_shape":
            flat["image_rows"], flat["image_cols"] = value
        elif isinstance(value, list):
            stem = key.removesuffix("_um").removesuffix("_px")
            unit = key[len(stem) :]
            names = ("a", "b") if key == "fp_axes_px" else ("x", "y")
            for name, v in zip(names, value, strict=True):
                flat[f"{stem}_{name}{unit}"] = v
        else:
            flat[key] = "" if value is None else value
    return flat


def load_manifest(directory: str | os.PathLike) -> list[dict[str, Any]]:
    """Read the manifest of a generated set.

    Returns
    -------
    list of dict
        The rows of ``manifest.json``, each with ``path`` added: the file's absolute path.
    """
    from ribin.errors import InputError

    path = Path(directory) / "manifest.json"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError(path, "no manifest here; generate the set first") from exc
    except (OSError, ValueError) as exc:
        raise InputError(path, f"unreadable manifest ({exc})") from exc
    if document.get("format") != MANIFEST_FORMAT:
        raise InputError(path, f"not a {MANIFEST_FORMAT} manifest")
    if int(document.get("format_version", 0)) > MANIFEST_VERSION:
        raise InputError(path, f"manifest version {document['format_version']} is too new")
    rows = document["casings"]
    for row in rows:
        row["path"] = str((Path(directory) / row["file"]).resolve())
    return rows


def render_entry(entry: Mapping[str, Any]) -> np.ndarray:
    """Rebuild one file's image in memory from its manifest row.

    Returns the array exactly as :func:`render_casing` made it before it was written (3D:
    heights in metres before int16 storage; 2D: grey levels in [0, 1] before quantisation).
    """
    seed = int(entry["seed"])
    item = {
        "firearm_index": int(entry["firearm_index"]),
        "batch_index": int(entry["batch_index"]),
        "caliber": entry["caliber"],
        "fp_shape": entry["fp_shape"],
        "bf_pattern": entry["bf_pattern"],
    }
    pixel_size_um = float(entry["pixel_size_um"])
    batch = _make_batch(seed, item, master_pixel_for(pixel_size_um))
    firearm = _make_firearm(seed, item, batch)
    i, shot = item["firearm_index"], int(entry["shot"])
    casing = make_casing(firearm, _rng(seed, _CASING, i, shot), shot)
    m = MODALITIES.index(entry["modality"])
    image, _ = render_casing(
        casing, _rng(seed, _ACQUISITION, i, shot, m), entry["modality"], pixel_size_um
    )
    return image


__all__ = [
    "CALIBERS",
    "COLUMNS",
    "batch_plan",
    "generate_set",
    "load_manifest",
    "master_pixel_for",
    "render_entry",
    "write_manifest",
]
