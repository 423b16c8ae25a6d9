"""Fit and validate calibration models from a lab's own known test fires held in a store.

``ribin calibrate`` compares every pair of known exhibits per region and modality, fits one
lir model per region and modality on all pairs, and validates the method by leaving one
firearm out at a time (fit on the pairs of the other firearms, measure on the pairs that
involve the one left out). The figures go with the model (:attr:`Calibration.validation`)
and into an HTML validation page (:mod:`ribin.calibration_report`).
"""

from __future__ import annotations

import csv
import io
import itertools
import os
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ribin import __version__
from ribin.calibration import DEFAULT_METHOD, Calibration, fit_calibration, fit_llr, model_key
from ribin.errors import InputError

Progress = Callable[[int, int], None]


def read_truth(path: str | os.PathLike) -> dict[str, str]:
    """exhibit_id -> firearm from a CSV with columns ``exhibit_id`` (or ``file``) and ``firearm``.

    A ``file`` column maps to exhibit IDs by dropping the extension, as ``ribin ingest`` does.
    A UTF-8 byte-order mark (spreadsheet exports) is accepted.

    Raises
    ------
    InputError
        Unreadable file, missing columns, a row with no firearm or no exhibit, or one
        exhibit given two firearms; the message names the file and the row.
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(path, f"cannot read truth CSV: {exc}") from None
    columns = {(c or "").strip() for c in (rows[0].keys() if rows else ())}
    if not rows or "firearm" not in columns or not ({"exhibit_id", "file"} & columns):
        raise InputError(path, "truth CSV needs a firearm column and an exhibit_id or file column")
    truth: dict[str, str] = {}
    for line, raw in enumerate(rows, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        exhibit_id = row.get("exhibit_id") or (Path(row["file"]).stem if row.get("file") else "")
        if not exhibit_id:
            raise InputError(path, f"row {line} has no exhibit_id (or file)")
        firearm = row.get("firearm", "")
        if not firearm:
            raise InputError(path, f"row {line} ({exhibit_id}) has no firearm")
        if truth.get(exhibit_id, firearm) != firearm:
            raise InputError(
                path,
                f"row {line}: {exhibit_id} given two firearms ({truth[exhibit_id]}, {firearm})",
            )
        truth[exhibit_id] = firearm
    return truth


@dataclass(frozen=True)
class PairScores:
    """Scores of every pair of known exhibits in one region and modality."""

    key: str
    exhibits: tuple[str, ...]
    firearms: tuple[str, ...]
    pairs: tuple[tuple[int, int], ...]
    scores: tuple[float, ...]

    @property
    def same(self) -> np.ndarray:
        """True where a pair's two exhibits come from one firearm."""
        return np.array([self.firearms[i] == self.firearms[j] for i, j in self.pairs], bool)

    def split(self) -> tuple[np.ndarray, np.ndarray]:
        """(same-source scores, different-source scores)."""
        s = np.asarray(self.scores, float)
        return s[self.same], s[~self.same]


def pair_scores(
    store: Any, truth: Mapping[str, str], progress: Progress | None = None
) -> dict[str, PairScores]:
    """Compare every pair of the truth's exhibits in ``store``, per region and modality."""
    from ribin.compare import compare_many

    groups: dict[str, list[tuple[str, Any]]] = defaultdict(list)
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

    out = {}
    for key, members in sorted(groups.items()):
        pairs = list(itertools.combinations(range(len(members)), 2))
        results = compare_many(
            ((members[i][1], members[j][1], None) for i, j in pairs), on_done=advance
        )
        out[key] = PairScores(
            key,
            tuple(m[0] for m in members),
            tuple(truth[m[0]] for m in members),
            tuple(pairs),
            tuple(round(float(r.score), 6) for r in results),
        )
    return out


def leave_one_firearm_out(data: PairScores, method: str = DEFAULT_METHOD) -> dict[str, Any]:
    """Validate ``method`` on ``data`` by leaving out one firearm at a time.

    For each firearm, a model is fitted on the pairs of the other firearms only and
    applied to every pair that involves the one left out: its same-source pairs and its
    different-source pairs with the others (so each different-source pair is tested twice,
    once with each of its firearms left out).

    Returns
    -------
    dict
        The :func:`ribin.calibration.performance` figures of all held-out log10 LRs, the
        ELUB bounds of each fold, and the folds skipped (too few pairs to fit).
    """
    from ribin.calibration import Calibration, performance

    firearms = sorted(set(data.firearms))
    scores = np.asarray(data.scores, float)
    same = data.same
    fa = np.array([data.firearms[i] for i, _ in data.pairs])
    fb = np.array([data.firearms[j] for _, j in data.pairs])
    llr_match, llr_nonmatch, folds, skipped = [], [], [], []
    for firearm in firearms:
        held = (fa == firearm) | (fb == firearm)
        train = ~held
        km, knm = scores[train & same], scores[train & ~same]
        if km.size < 2 or knm.size < 2 or not held[same].any():
            skipped.append(firearm)
            continue
        try:
            params, lower, upper = fit_llr(km, knm, method)
        except InputError:
            skipped.append(firearm)
            continue
        model = Calibration(
            method=method,
            params=params,
            lower=lower,
            upper=upper,
            n_match=int(km.size),
            n_nonmatch=int(knm.size),
            match_scores=tuple(km),
            nonmatch_scores=tuple(knm),
        )
        llr_match.append(model.log10_lr(scores[held & same]))
        llr_nonmatch.append(model.log10_lr(scores[held & ~same]))
        folds.append(
            {
                "firearm": firearm,
                "train_match": int(km.size),
                "train_nonmatch": int(knm.size),
                "bounds": [round(lower, 3), round(upper, 3)],
            }
        )
    if not folds:
        return {"folds": [], "skipped": skipped}
    held_match, held_nonmatch = np.concatenate(llr_match), np.concatenate(llr_nonmatch)
    return {
        **performance(held_match, held_nonmatch),
        "folds": folds,
        "skipped": skipped,
        "llr_match": [round(float(v), 4) for v in held_match],
        "llr_nonmatch": [round(float(v), 4) for v in held_nonmatch],
    }


def calibrate_store(
    store: Any,
    truth: Mapping[str, str],
    *,
    source: str = "",
    name: str = "",
    scanner: str = "",
    method: str = DEFAULT_METHOD,
    shipped: bool = False,
    progress: Progress | None = None,
    scores: Mapping[str, PairScores] | None = None,
) -> dict[str, Calibration]:
    """Compare every pair of known exhibits per region and modality; fit and validate each.

    Parameters
    ----------
    store : SignatureStore
        Store holding the test fires.
    truth : mapping
        exhibit_id -> firearm, for the exhibits to use (others in the store are ignored).
    source : str
        Description of the data set (recorded in each model).
    name : str
        Name of the calibration, quoted with every LR it gives (default: ``source``).
    scanner : str
        Instrument and settings of the test fires' scans, for the record.
    method : {"logistic", "kde", "isotonic"}
        The lir calibrator.
    shipped : bool
        Mark the models as RIBIN's shipped default (only the default's fitting script).
    progress : callable, optional
        ``progress(done, total)`` after each comparison.
    scores : mapping, optional
        :func:`pair_scores` already computed.

    Returns
    -------
    dict
        :func:`~ribin.calibration.model_key` -> fitted model, for every region and modality
        with at least two known-match and two known-non-match pairs.
    """
    scores = dict(scores) if scores is not None else pair_scores(store, truth, progress)
    models = {}
    for key, data in sorted(scores.items()):
        km, knm = data.split()
        if km.size < 2 or knm.size < 2:
            continue
        region, modality = key.split("/", 1)
        lofo = leave_one_firearm_out(data, method)
        models[key] = fit_calibration(
            km,
            knm,
            method=method,
            name=f"{name or source or 'calibration'} {key}",
            region=region,
            modality=modality,
            shipped=shipped,
            source={
                "data": source or str(getattr(store, "path", "")),
                "scanner": scanner or "not stated",
                "exhibits": len(data.exhibits),
                "firearms": len(set(data.firearms)),
                "pairs": "every pair of the exhibits (same-source and different-source)",
                "comparison": "ribin.compare default parameters",
                "ribin_version": __version__,
            },
            validation={"leave_one_firearm_out": lofo},
        )
    if not models:
        raise InputError(None, "not enough known-match and non-match pairs to calibrate")
    return models
