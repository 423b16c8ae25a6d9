"""Calibration validation: leave-one-firearm-out Cllr of each lir calibrator, and how far the
breech-face and firing-pin scores depend on each other.

    python benchmarks/bench_calibration.py                  # compares every pair, then measures
    python benchmarks/bench_calibration.py --scores FILE    # re-measure saved pair scores
    python benchmarks/make_docs.py --only calibration_lofo  # the same, recorded for the docs

Data: the Fadul subset (19 real 3D breech-face scans, 5 firearms, 171 pairs: 28 same-source,
143 different-source) and the committed synthetic casings (8 firearms x 3 shots per modality,
276 pairs: 24 same-source, 252 different-source; breech face and firing pin). Every pair is
compared with the default extraction and comparison (as ``ribin calibrate`` does).

Leave one firearm out: for each firearm, a model is fitted on the pairs of the other
firearms and applied to every pair that involves the one left out (its same-source pairs and
its different-source pairs with the others, so each different-source pair is tested twice).
Figures are those of all held-out log10 LRs pooled: Cllr, Cllr_min (lir.metrics), the rates
of misleading evidence RMEP (same source, LR < 1) and RMED (different source, LR > 1), the
weakest same-source and strongest different-source log10 LR, and each fold's ELUB bounds.

Dependence: Pearson and Spearman correlation of the breech-face and firing-pin scores of the
same pairs, within same-source pairs and within different-source pairs (synthetic set; the
Fadul scans are breech faces only). Summing the two regions' log10 LRs is right only if they
are independent given the source.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from _calibration import fadul_scores, load_scores, save_scores, synthetic_scores
from _common import FADUL_DIR, REPO, machine
from results import record
from scipy import stats

from ribin.calibrate import leave_one_firearm_out
from ribin.calibration import METHODS, fit_llr


def lofo_rows(sets: dict) -> list[list]:
    rows = []
    for name, per in sets.items():
        for key, data in sorted(per.items()):
            km, knm = data.split()
            if km.size < 2 or knm.size < 2:
                continue
            for method in METHODS:
                lofo = leave_one_firearm_out(data, method)
                if not lofo["folds"]:
                    continue
                _, lower, upper = fit_llr(km, knm, method)
                lows = [f["bounds"][0] for f in lofo["folds"]]
                highs = [f["bounds"][1] for f in lofo["folds"]]
                rows.append(
                    [
                        f"{name} {key}",
                        method,
                        f"{km.size} / {knm.size}",
                        lofo["cllr"],
                        lofo["cllr_min"],
                        lofo["rmep"],
                        lofo["rmed"],
                        lofo["min_match_llr"],
                        lofo["max_nonmatch_llr"],
                        f"{min(lows):+.2f}..{max(lows):+.2f} / "
                        f"{min(highs):+.2f}..{max(highs):+.2f}",
                        f"[{lower:+.2f}, {upper:+.2f}]",
                    ]
                )
                print(
                    f"  {name} {key} {method}: LOFO Cllr {lofo['cllr']:.4f}, Cllr_min "
                    f"{lofo['cllr_min']:.4f}, RMEP {lofo['rmep']:.4f}, RMED {lofo['rmed']:.4f}, "
                    f"weakest SS {lofo['min_match_llr']:+.2f}, strongest DS "
                    f"{lofo['max_nonmatch_llr']:+.2f}; folds {lofo['folds']}; "
                    f"full fit ELUB [{lower:+.2f}, {upper:+.2f}]",
                    flush=True,
                )
    return rows


def dependence_rows(sets: dict) -> list[list]:
    rows = []
    for name, per in sets.items():
        for modality in ("3d", "2d"):
            bf, fp = per.get(f"breech_face/{modality}"), per.get(f"firing_pin/{modality}")
            if bf is None or fp is None:
                continue
            fp_score = {
                frozenset((fp.exhibits[i], fp.exhibits[j])): s
                for (i, j), s in zip(fp.pairs, fp.scores, strict=True)
            }
            both = []
            for (i, j), s, same in zip(bf.pairs, bf.scores, bf.same, strict=True):
                other = fp_score.get(frozenset((bf.exhibits[i], bf.exhibits[j])))
                if other is not None:
                    both.append((s, other, bool(same)))
            row = [f"{name} {modality}"]
            for wanted in (True, False):
                x = np.array([b for b, _, s in both if s == wanted])
                y = np.array([f for _, f, s in both if s == wanted])
                pearson = float(stats.pearsonr(x, y)[0]) if x.size > 2 else float("nan")
                spearman = float(stats.spearmanr(x, y)[0]) if x.size > 2 else float("nan")
                row += [int(x.size), round(pearson, 3), round(spearman, 3)]
                print(
                    f"  {name} {modality} {'same' if wanted else 'different'}-source: "
                    f"n {x.size}, Pearson {pearson:+.3f}, Spearman {spearman:+.3f}",
                    flush=True,
                )
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scores", type=Path, help="re-measure pair scores saved before")
    parser.add_argument("--work", type=Path, help="scratch folder for the stores")
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument(
        "--save-scores",
        type=Path,
        default=REPO / "benchmarks" / "results" / "data" / "calibration_pair_scores.json",
    )
    args = parser.parse_args()
    print(machine(), flush=True)
    if args.scores:
        sets = load_scores(args.scores)
    else:
        sets = {}
        with tempfile.TemporaryDirectory() as tmp:
            work = args.work or Path(tmp)
            work.mkdir(parents=True, exist_ok=True)
            if (FADUL_DIR / "truth.csv").is_file():
                print("comparing every Fadul pair ...", flush=True)
                sets["fadul"] = fadul_scores(work)[0]
            if not args.skip_synthetic:
                sets["synthetic"] = {}
                for modality in ("3d", "2d"):
                    print(f"comparing every synthetic {modality} pair ...", flush=True)
                    sets["synthetic"].update(synthetic_scores(work, modality)[0])
        if os.environ.get("RIBIN_RESULTS") or args.work:
            args.save_scores.parent.mkdir(parents=True, exist_ok=True)
            save_scores(args.save_scores, sets)
            print(f"pair scores saved to {args.save_scores}")
    for name, per in sets.items():
        for key, data in sorted(per.items()):
            km, knm = data.split()
            print(
                f"{name} {key}: {len(data.exhibits)} exhibits, {km.size} same-source / "
                f"{knm.size} different-source pairs; weakest same-source score "
                f"{km.min():.2f}, strongest different-source {knm.max():.2f}"
            )
    print("leave one firearm out:", flush=True)
    lofo = lofo_rows(sets)
    print("BF/FP dependence:", flush=True)
    dependence = dependence_rows(sets)
    record(
        "calibration_lofo",
        "Calibration, leave one firearm out (log10 LRs of held-out firearms)",
        [
            "data / region",
            "lir calibrator",
            "pairs SS / DS",
            "Cllr",
            "Cllr_min",
            "RMEP",
            "RMED",
            "weakest SS log10 LR",
            "strongest DS log10 LR",
            "fold ELUB lower / upper",
            "full-fit ELUB",
        ],
        lofo,
        "Every pair compared with the default extraction and comparison. For each firearm a "
        "model was fitted on the pairs of the others and applied to every pair involving it "
        "(different-source pairs tested twice). RMEP: same-source LRs < 1; RMED: "
        "different-source LRs > 1. Targets (Fadul, the shipped calibrator): Cllr <= 0.1, "
        "RMEP = RMED = 0.",
    )
    if dependence:
        record(
            "calibration_lofo.dependence",
            "Breech-face / firing-pin score dependence (same pairs)",
            [
                "data",
                "SS pairs",
                "SS Pearson",
                "SS Spearman",
                "DS pairs",
                "DS Pearson",
                "DS Spearman",
            ],
            dependence,
            "Correlation of the two regions' scores within same-source (SS) and within "
            "different-source (DS) pairs. Summing region log10 LRs assumes independence "
            "given the source (see docs/method.md).",
        )
    print(json.dumps({"lofo": lofo, "dependence": dependence}))


if __name__ == "__main__":
    main()
