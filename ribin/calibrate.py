"""Fit calibration models from a lab's own known test fires held in a store."""

from __future__ import annotations

import csv
import itertools
import os
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path

from ribin import __version__
from ribin.calibration import Calibration, fit_calibration, model_key
from ribin.compare import compare_many
from ribin.errors import InputError
from ribin.exhibit import Signature
from ribin.store import SignatureStore

Progress = Callable[[int, int], None]


def read_truth(path: str | os.PathLike) -> dict[str, str]:
    """exhibit_id -> firearm from a CSV with columns ``exhibit_id`` (or ``file``) and ``firearm``.

    A ``file`` column maps to exhibit IDs by dropping the extension, as ``ribin ingest`` does.
    """
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(path, f"cannot read truth CSV: {exc}") from None
    if not rows or "firearm" not in rows[0] or not ({"exhibit_id", "file"} & set(rows[0])):
        raise InputError(path, "truth CSV needs a firearm column and an exhibit_id or file column")
    truth = {}
    for row in rows:
        exhibit_id = row.get("exhibit_id") or Path(row["file"]).stem
        truth[exhibit_id] = row["firearm"]
    return truth


def calibrate_store(
    store: SignatureStore,
    truth: Mapping[str, str],
    *,
    source: str = "",
    progress: Progress | None = None,
) -> dict[str, Calibration]:
    """Compare every pair of known exhibits per region and modality; fit one model each.

    Parameters
    ----------
    store : SignatureStore
        Store holding the test fires.
    truth : mapping
        exhibit_id -> firearm, for the exhibits to use (others in the store are ignored).
    source : str
        Description of where the truth came from, recorded in each model.
    progress : callable, optional
        ``progress(done, total)`` after each comparison.

    Returns
    -------
    dict
        :func:`~ribin.calibration.model_key` -> fitted model, for every region and modality
        with at least two known-match and two known-non-match pairs.
    """
    groups: dict[str, list[tuple[str, Signature]]] = defaultdict(list)
    for exhibit_id in sorted(truth):
        if exhibit_id not in store:
            continue
        exhibit = store.get(exhibit_id).exhibit
        for region, signature in exhibit.signatures().items():
            groups[model_key(region, signature.modality)].append((exhibit_id, signature))
    total = sum(len(v) * (len(v) - 1) // 2 for v in groups.values())
    if total == 0:
        raise InputError(None, "none of the truth CSV's exhibits are in the store")
    done = 0

    def advance() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    models = {}
    for key, members in sorted(groups.items()):
        scores: dict[bool, list[float]] = {True: [], False: []}
        pairs = list(itertools.combinations(members, 2))
        results = compare_many(((a, b, None) for (_, a), (_, b) in pairs), on_done=advance)
        for ((id_a, _), (id_b, _)), result in zip(pairs, results, strict=True):
            scores[truth[id_a] == truth[id_b]].append(result.score)
        if len(scores[True]) >= 2 and len(scores[False]) >= 2:
            models[key] = fit_calibration(
                scores[True],
                scores[False],
                source={
                    "data": source or str(store.path),
                    "exhibits": len(members),
                    "software_version": __version__,
                },
            )
    if not models:
        raise InputError(None, "not enough known-match and non-match pairs to calibrate")
    return models
