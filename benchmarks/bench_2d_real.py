"""2D accuracy on real surfaces: the Fadul scans rendered as micrographs under varied lighting.

Each of the 19 Fadul breech-face topographies is rendered once per lighting model
(``ribin.synthetic.lighting``: ring, oblique, coaxial) with its own random lighting
(direction, elevation, gloss, exposure, defocus, noise, tilt; seeded), turned into a 2D
``Casing``, extracted with ``ribin.extract`` and compared with every other rendering of the
same model (171 pairs). Known matches are renderings of different casings fired by the
same firearm, so a match must survive a change of casing *and* of lighting. Printed per
lighting model and 2D method: ROC AUC, EER, the weakest known-match and strongest
known-non-match CMC counts, and search top-1 at network scope (each rendering as query
against all 18 others: a mate must score strictly above every non-mate). The 3D figures of
the same scans, through the same extract and compare, are printed beside them::

    python benchmarks/bench_2d_real.py                       # default 2D method
    python benchmarks/bench_2d_real.py --methods log,lcn     # compare 2D methods
    python benchmarks/bench_2d_real.py --synthetic           # also the synthetic 2D set
    python benchmarks/bench_2d_real.py --methods rank-whiten,log-smooth@0.4  # own threshold
    python benchmarks/bench_2d_real.py --pairs 6             # weakest / strongest pairs
    python benchmarks/bench_2d_real.py --fix tilt_deg=0      # one lighting parameter held

``--fix NAME=VALUE`` draws every rendering's lighting as usual, then renders it again with
that parameter held (the albedo and noise are drawn anew): what a lighting parameter costs.

A method written ``METHOD@R`` is compared with the 2D cells' correlation threshold ``R``
(the column names it), the others with ``--corr-min-2d`` or the default.

Nothing is cached: renderings are made in memory.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from _common import FADUL_DIR, REPO, all_pairs, equal_error_rate, machine, roc_auc
from results import record

from ribin.compare import CMCParams, compare_many, effective_params
from ribin.io import read_casing
from ribin.io.casing import Casing
from ribin.signatures import DEFAULT_ILLUMINATION_2D, ILLUMINATION_METHODS, extract
from ribin.synthetic.lighting import LIGHTING_MODELS, LIGHTING_PARAMETERS, render_micrograph


def fadul_casings(directory: Path = FADUL_DIR) -> tuple[list[str], list[int], list[Casing]]:
    """The Fadul scans as 3D casings, with firearm labels."""
    with open(directory / "truth.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    names = [Path(r["file"]).stem for r in rows]
    labels = [int(r["firearm"]) for r in rows]
    casings = [read_casing(directory / r["file"]) for r in rows]
    return names, labels, casings


def rendered(
    casing: Casing, model: str, seed: tuple[int, ...], fix: dict[str, float] | None = None
) -> tuple[Casing, dict]:
    """One micrograph of a 3D casing under `model`, as a 2D casing (mask kept).

    ``fix``: lighting parameters held; the others are those the seed draws (the image is
    rendered again with them, its albedo and noise from a second seed)."""
    heights = np.where(casing.mask, casing.surface, np.nan)
    image, lighting = render_micrograph(
        heights, casing.pixel_size_um, model, np.random.default_rng(seed)
    )
    if fix:
        held = {k: v for k, v in lighting.items() if k != "model"} | fix
        image, lighting = render_micrograph(
            heights, casing.pixel_size_um, model, np.random.default_rng((*seed, 1)), **held
        )
    image = np.where(casing.mask, image, np.nan).astype(np.float32)
    name = Path(casing.source).stem
    return (
        Casing(
            surface=image,
            modality="2d",
            pixel_size_um=casing.pixel_size_um,
            mask=casing.mask.copy(),
            metadata={"rendered_from": name, "lighting": lighting},
            source_sha256=casing.source_sha256,
            source=f"{name} ({model}).png",
        ),
        lighting,
    )


def parse_fix(parser: argparse.ArgumentParser, items: list[str]) -> dict[str, float]:
    """``--fix NAME=VALUE`` items as lighting parameters held (a usage error otherwise)."""
    fix: dict[str, float] = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            fix[key] = float(value)
        except ValueError:
            parser.error(f"bad --fix {item!r}: NAME=VALUE expected")
    held = set(fix) - set(LIGHTING_PARAMETERS)
    if held:
        parser.error(f"unknown lighting parameters {sorted(held)}; of {LIGHTING_PARAMETERS}")
    return fix


#: Rotation sweeps: the default full circle, or -30..30 degrees (the Fadul scans and their
#: renderings share one orientation; 2-3 times faster, for comparing 2D methods).
SWEEPS = {"full": {}, "aligned": {"angle_range_deg": (-30.0, 30.0)}}


def cmc_params(modality: str, sweep: str, corr_min: float | None = None) -> CMCParams:
    """The default comparison parameters of two `modality` breech faces (2D ones have
    their own: ``ribin.compare.DEFAULT_PARAMS_2D``) on `sweep`, ``corr_min`` if given."""
    params = replace(effective_params("breech_face", modality, modality), **SWEEPS[sweep])
    return params if corr_min is None else replace(params, corr_min=corr_min)


def figures(labels: list, sigs: list, name: str, params: CMCParams | None = None) -> dict:
    """Every pair compared; AUC, EER, CMC extremes and top-1 at network scope."""
    pairs = list(all_pairs(len(sigs)))
    start = time.perf_counter()
    results = compare_many([(sigs[i], sigs[j], params) for i, j in pairs])
    seconds = time.perf_counter() - start
    scores = np.array([r.score for r in results])
    counts = np.array([r.cmc_count for r in results])
    is_match = np.array([labels[i] == labels[j] for i, j in pairs])
    n = len(sigs)
    matrix = np.full((n, n), -np.inf)
    for (i, j), s in zip(pairs, scores, strict=True):
        matrix[i, j] = matrix[j, i] = s
    hits = 0
    for q in range(n):
        mates = [k for k in range(n) if k != q and labels[k] == labels[q]]
        others = [k for k in range(n) if k != q and labels[k] != labels[q]]
        hits += bool(mates) and matrix[q, mates].max() > matrix[q, others].max()
    return {
        "name": name,
        "pairs": len(pairs),
        "matches": int(is_match.sum()),
        "auc": round(roc_auc(scores, is_match), 4),
        "eer": round(equal_error_rate(scores, is_match), 3),
        "min_match_cmc": int(counts[is_match].min()),
        "max_nonmatch_cmc": int(counts[~is_match].max()),
        "top1": round(hits / n, 4),
        "queries": n,
        "seconds_per_pair": round(seconds / len(pairs), 3),
        "pairs_scored": [
            (i, j, float(s), int(c)) for (i, j), s, c in zip(pairs, scores, counts, strict=True)
        ],
        "match_scores": scores[is_match].tolist(),
        "nonmatch_scores": scores[~is_match].tolist(),
    }


def synthetic_2d(method: str) -> tuple[list[str], list]:
    """Breech faces of the committed synthetic 2D set (24 casings) with `method`."""
    directory = REPO / "data" / "synthetic_casings"
    with open(directory / "manifest.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["modality"] == "2d"]
    labels, sigs = [], []
    for row in rows:
        sig = extract(read_casing(directory / row["file"]), illumination=method).breech_face
        labels.append(row["firearm"])
        sigs.append(sig)
    return labels, sigs


COLUMNS = [
    "data / lighting",
    "2D method (CMC r)",
    "pairs",
    "known matches",
    "ROC AUC",
    "EER",
    "min match CMC",
    "max non-match CMC",
    "top-1",
    "s per pair",
]


def print_row(row: dict, method: str, table: list) -> None:
    table.append(
        [
            row["name"],
            method,
            row["pairs"],
            row["matches"],
            row["auc"],
            row["eer"],
            row["min_match_cmc"],
            row["max_nonmatch_cmc"],
            row["top1"],
            row["seconds_per_pair"],
        ]
    )
    print(
        f"{row['name']:<22} {method:<20} {row['pairs']:>5} {row['matches']:>4} "
        f"{row['auc']:>7.4f} {row['eer']:>6.3f} {row['min_match_cmc']:>6} "
        f"{row['max_nonmatch_cmc']:>6} {100 * row['top1']:>6.1f} {row['seconds_per_pair']:>7.3f}",
        flush=True,
    )


def print_pairs(row: dict, names: list, labels: list, lighting: list, n: int) -> None:
    """The `n` lowest-scoring known matches and highest-scoring non-matches, with each
    rendering's lighting (elevation, azimuth, gloss, exposure, defocus, tilt and its
    azimuth)."""

    def shot(k: int) -> str:
        lit = lighting[k]
        return (
            f"{names[k]} (el {lit['elevation_deg']:.0f} az {lit['azimuth_deg']:.0f} "
            f"gloss {lit['gloss_deg']:.1f} exp {lit['exposure']:.2f} "
            f"defocus {lit['defocus_um']:.1f} tilt {lit['tilt_deg']:.2f} "
            f"to {lit['tilt_azimuth_deg']:.0f})"
        )

    scored = row["pairs_scored"]
    matches = sorted((s for s in scored if labels[s[0]] == labels[s[1]]), key=lambda s: s[2])
    others = sorted((s for s in scored if labels[s[0]] != labels[s[1]]), key=lambda s: -s[2])
    for title, chosen in (("lowest known matches", matches), ("highest non-matches", others)):
        print(f"    {title}:")
        for i, j, score, count in chosen[:n]:
            print(f"      {score:7.3f} CMC {count:2d}  {shot(i)} / {shot(j)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(LIGHTING_MODELS), help="lighting models")
    parser.add_argument(
        "--methods",
        default=DEFAULT_ILLUMINATION_2D,
        help=f"2D methods, of {', '.join(ILLUMINATION_METHODS)}",
    )
    parser.add_argument("--seed", type=int, default=21, help="seed of the lighting draws")
    parser.add_argument("--no-3d", action="store_true", help="skip the 3D reference")
    parser.add_argument("--synthetic", action="store_true", help="also the synthetic 2D set")
    parser.add_argument("--sweep", choices=sorted(SWEEPS), default="full", help="rotations")
    parser.add_argument("--name", default="2d_real", help="name of the recorded table")
    parser.add_argument(
        "--corr-min-2d",
        type=float,
        help="2D cells' correlation threshold (default: ribin.compare.DEFAULT_PARAMS_2D's)",
    )
    parser.add_argument(
        "--scores", type=Path, help="write every set's match and non-match scores (JSON) here"
    )
    parser.add_argument(
        "--pairs",
        type=int,
        default=0,
        help="print the N lowest-scoring known matches and highest non-matches of each set",
    )
    parser.add_argument(
        "--fix",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="hold one lighting parameter in every rendering (repeatable)",
    )
    args = parser.parse_args(argv)
    fix = parse_fix(parser, args.fix)
    models = [m for m in args.models.split(",") if m]
    # (label, method, threshold) per requested 2D method.
    methods: list[tuple[str, str, float | None]] = []
    for spec in (m for m in args.methods.split(",") if m):
        method, _, r = spec.partition("@")
        try:
            methods.append((spec, method, float(r) if r else args.corr_min_2d))
        except ValueError:
            parser.error(f"bad correlation threshold in {spec!r}")
    bad = [m for m in models if m not in LIGHTING_MODELS] + [
        m for _, m, _ in methods if m not in ILLUMINATION_METHODS
    ]
    if bad:
        parser.error(f"unknown lighting models or methods {bad}")

    params_3d = cmc_params("3d", args.sweep)
    params_2d = {spec: cmc_params("2d", args.sweep, r) for spec, _, r in methods}
    # The 2D method column names the 2D cells' correlation threshold.
    r_label = {spec: f"{m} r{params_2d[spec].corr_min:g}" for spec, m, _ in methods}
    scores: dict[str, dict] = {}
    print(f"machine: {machine()}; rotation sweep: {args.sweep}")
    names, labels, casings = fadul_casings()
    print(
        f"\n{'data / lighting':<22} {'2D method':<20} {'pairs':>5} {'KM':>4} {'AUC':>7} "
        f"{'EER':>6} {'minKM':>6} {'maxKNM':>6} {'top-1%':>6} {'s/pair':>7}"
    )
    table: list[list] = []
    if not args.no_3d:
        sigs = [extract(c).breech_face for c in casings]
        print_row(figures(labels, sigs, "fadul 3d", params_3d), "-", table)
    for model_index, model in enumerate(LIGHTING_MODELS):
        if model not in models:
            continue
        shots = [
            rendered(c, model, (args.seed, model_index, i), fix) for i, c in enumerate(casings)
        ]
        for name, (_, lit) in zip(names, shots, strict=True):
            print(f"  {name} {model}: " + ", ".join(f"{k} {v}" for k, v in lit.items()))
        for spec, method, _ in methods:
            sigs, kept, failed = [], [], []
            for name, label, (casing, _) in zip(names, labels, shots, strict=True):
                try:
                    sigs.append(extract(casing, illumination=method).breech_face)
                    kept.append(label)
                except Exception as exc:  # a failed extraction is reported, not fatal
                    failed.append(f"{name}: {exc}")
            if failed:
                print(f"fadul 2d {model} / {method}: not extracted: {failed}")
            row = figures(kept, sigs, f"fadul 2d {model}", params_2d[spec])
            print_row(row, r_label[spec], table)
            if args.pairs and not failed:
                print_pairs(row, names, labels, [lit for _, lit in shots], args.pairs)
            scores[f"fadul 2d {model}/{spec}"] = row
    if args.synthetic:
        for spec, method, r in methods:
            syn_labels, syn_sigs = synthetic_2d(method)
            # Synthetic shots lie at random rotations: always the full circle.
            row = figures(syn_labels, syn_sigs, "synthetic 2d", cmc_params("2d", "full", r))
            print_row(row, r_label[spec], table)
            scores[f"synthetic 2d/{spec}"] = row
    if args.scores is not None:
        args.scores.write_text(json.dumps(scores))
    record(
        args.name,
        "2D on real surfaces: Fadul scans rendered under varied lighting (breech face, CMC"
        + (", -30..30 deg sweep)" if args.sweep == "aligned" else ")"),
        COLUMNS,
        table,
        "Each of the 19 Fadul scans rendered once per lighting model with its own random "
        "lighting (ribin.synthetic.lighting; direction, elevation, gloss, exposure, defocus, "
        f"noise, tilt; seed {args.seed}), extracted with ribin.extract and compared in all "
        "171 pairs at network scope; known matches are different casings of one firearm under "
        "different lighting. top-1: share of the queries (19 renderings; 24 synthetic "
        "casings) whose best-scoring mate scores strictly above every non-mate. synthetic "
        "2d: the committed set's 24 ring-lit casings (random rotations: full-circle sweep). "
        "fadul 3d: the same scans as measured, same pipeline.",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
