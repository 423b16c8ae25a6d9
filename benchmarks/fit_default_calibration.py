"""Fit RIBIN's shipped default calibration on real scans: the Fadul subset, 3D breech face.

    python benchmarks/fit_default_calibration.py                # writes ribin/data/calibration.json
    python benchmarks/fit_default_calibration.py --scores benchmarks/results/calibration_scores.json

Ingests the 19 scans of ``../shared/data/fadul_subset`` (5 firearms) into a scratch store with
the default extraction, compares all 171 pairs (28 same-source, 143 different-source) with the
default comparison, fits the chosen lir calibrator on all of them with ELUB bounds, validates
it leaving one firearm out at a time, and writes the model with its provenance to
``ribin/data/calibration.json`` and its validation page to
``benchmarks/results/default_calibration.html``. This is ``ribin calibrate`` on that store
(``ribin.calibrate.calibrate_store``), marked as the shipped default.

Only 3D breech faces have real scans here: no default is shipped for 2D or for the firing
pin, whose results say "uncalibrated" until a lab runs ``ribin calibrate`` on its own test fires.
Re-run after any change to extraction or comparison: the scores move, so must the model.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _calibration import FADUL_NAME, fadul_scanner, fadul_scores, load_scores
from _common import FADUL_DIR, REPO

from ribin.calibrate import calibrate_store, read_truth
from ribin.calibration import CALIBRATION_FILE, DEFAULT_METHOD, METHODS, save_models
from ribin.validation_report import decisions, held_out, write_validation_html

KEY = "breech_face/3d"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD)
    parser.add_argument("--scores", type=Path, help="pair scores saved by bench_calibration.py")
    parser.add_argument("--work", type=Path, help="scratch folder for the store (default: temp)")
    parser.add_argument("--out", type=Path, default=REPO / "ribin" / "data" / CALIBRATION_FILE)
    parser.add_argument(
        "--html", type=Path, default=REPO / "benchmarks" / "results" / "default_calibration.html"
    )
    args = parser.parse_args()
    if not (FADUL_DIR / "truth.csv").is_file():
        raise SystemExit(f"{FADUL_DIR}: the Fadul subset is not there")

    if args.scores:
        scores = {KEY: load_scores(args.scores)["fadul"][KEY]}
        truth = read_truth(FADUL_DIR / "truth.csv")
        print(f"scores read from {args.scores}")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            work = args.work or Path(tmp)
            work.mkdir(parents=True, exist_ok=True)
            print(f"ingesting and comparing the Fadul subset in {work} ...", flush=True)
            scores, truth = fadul_scores(work)
    data = scores[KEY]
    km, knm = data.split()
    print(
        f"{len(data.exhibits)} scans, {len(set(data.firearms))} firearms: {km.size} same-source "
        f"and {knm.size} different-source pairs"
    )
    print(
        f"CMC scores: weakest same-source {km.min():.2f}, strongest different-source "
        f"{knm.max():.2f}"
    )
    models = calibrate_store(
        None,
        truth,
        source=f"{FADUL_NAME}: all {len(data.pairs)} pairs of its {len(data.exhibits)} scans",
        name="RIBIN default (Fadul subset)",
        scanner=fadul_scanner(),
        method=args.method,
        shipped=True,
        scores={KEY: data},
    )
    save_models(args.out, models)
    args.html.parent.mkdir(parents=True, exist_ok=True)
    write_validation_html(args.html, models, command="benchmarks/fit_default_calibration.py")
    model = models[KEY]
    print(f"wrote {args.out} and {args.html}")
    print(f"{KEY}: lir {model.method}, ELUB bounds [{model.lower:+.2f}, {model.upper:+.2f}]")
    for label, figures in (
        ("in-sample", model.validation["in_sample"]),
        ("leave-one-firearm-out", held_out(model)[3]),
    ):
        print(
            f"  {label}: "
            + ", ".join(
                f"{k} {figures[k]}"
                for k in ("cllr", "cllr_min", "rmep", "rmed", "min_match_llr", "max_nonmatch_llr")
            )
        )
    for row in decisions(held_out(model)[3]):
        print(
            f"  {row['characteristic']}: {row['metric']} {row['result']} "
            f"(criterion {row['criterion']}) {row['decision']}"
        )


if __name__ == "__main__":
    main()
