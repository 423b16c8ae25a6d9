"""Search accuracy: does a network-wide search put the true firearm at the top?

    python benchmarks/bench_search_accuracy.py                        # the full run
    python benchmarks/bench_search_accuracy.py --quick                # a smoke run (~2 min)
    python benchmarks/bench_search_accuracy.py --shortlist-min 5 --shortlist-fraction 0

Every questioned casing is searched (:func:`ribin.search.search`, scope ``network``, the
store's calibration as the CLI uses it, role filter ``known``) against all known casings
of its data set, which are spread over the network's countries so that only the
``network`` scope sees them all. Each query is searched exhaustively (every candidate
fully compared); the shortlisted search with ``--shortlist-min/--shortlist-fraction``
(default: :class:`ribin.search.SearchParams`) and a sweep of shortlist sizes are then
replayed from the same comparisons (the comparison is deterministic: a shortlisted search
is the exhaustive one restricted to the prefilter's first K per region); one real
shortlisted search per data set checks the replay.

Reported per data set: N queries, top-1 and top-10 hit rates (the best-ranked true match),
the rank of every true match in the combined list, the prefilter rank of every true match
per region, and whether the shortlist dropped one (a true match outside the shortlist in a
region loses that region's score). With ``--background`` (the breech-face cache of
``bench_prefilter.py``, 300 signatures of other firearms) each query's true-match prefilter
score is also ranked among those unrelated non-matches, and the rank expected among 10^4
and 10^5 candidates is extrapolated from it (1 + N * the fraction that outscore it).

Data: (a) the committed synthetic set (``data/synthetic_casings``, 8 firearms x 3 shots);
(b) a generated set, ``--firearms`` x ``--shots`` in tool batches of 2-3 (batch-mates are
the close non-matches), written to ``--cache``; both 3D at 12.5 um unless ``--modalities``
says otherwise; (c) the Fadul subset (19 cropped breech-face scans, 6.25 um; truth.csv
gives firearm and role). The last shot of a synthetic firearm is questioned, the others
known. Stores are kept in ``--cache`` and reused.
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from _common import FADUL_DIR, NETWORK_COUNTRIES, machine, shortlist_params
from results import record
from scipy import special

from ribin import prefilter
from ribin.calibration import models_for_store
from ribin.ingest import ingest
from ribin.search import Filters, SearchParams, search
from ribin.store import SignatureStore
from ribin.synthetic import find_committed_set, generate_set, load_manifest

SWEEP = (1, 2, 3, 5, 10, 20, 50)


@dataclass
class Casing:
    path: Path
    exhibit_id: str
    firearm: str
    role: str
    country: str
    caliber: str


@dataclass
class QueryOutcome:
    query: str
    firearm: str
    n_candidates: int
    true_ranks: list[int]  # combined rank of each true match, exhaustive
    prefilter_ranks: dict[str, list[int]]  # region -> prefilter rank of each true match
    prefilter_true_scores: dict[str, list[float]]
    rows: list[dict[str, Any]] = field(default_factory=list)  # every candidate, for replays
    query_features: dict[str, np.ndarray] = field(default_factory=dict)


def synthetic_casings(rows: list[dict[str, Any]], modality: str, max_firearms: int | None):
    """Manifest rows of one modality as casings: last shot questioned, the others known."""
    rows = [r for r in rows if r["modality"] == modality]
    firearms = sorted({r["firearm"] for r in rows})[:max_firearms]
    shots = max(int(r["shot"]) for r in rows)
    out = []
    for row in rows:
        if row["firearm"] not in firearms:
            continue
        index = firearms.index(row["firearm"])
        shot = int(row["shot"])
        out.append(
            Casing(
                Path(row["path"]),
                Path(row["file"]).stem,
                str(row["firearm"]),
                "questioned" if shot == shots else "known",
                # shots of one firearm land in different countries
                NETWORK_COUNTRIES[(3 * index + shot) % len(NETWORK_COUNTRIES)],
                str(row["caliber"]),
            )
        )
    return out


def fadul_casings(max_firearms: int | None) -> list[Casing]:
    with open(FADUL_DIR / "truth.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    firearms = sorted({r["firearm"] for r in rows}, key=int)[:max_firearms]
    return [
        Casing(
            FADUL_DIR / r["file"],
            Path(r["file"]).stem,
            r["firearm"],
            r["role"],
            NETWORK_COUNTRIES[i % len(NETWORK_COUNTRIES)],
            "9mm Luger",
        )
        for i, r in enumerate(rows)
        if r["firearm"] in firearms
    ]


def build_store(path: Path, casings: list[Casing]) -> SignatureStore:
    """Ingest the casings, one write per (country, role, caliber); reuses a finished store."""
    done = path / "complete"
    if not done.exists():
        start = time.perf_counter()
        with SignatureStore.open(path, "a") as store:
            groups: dict[tuple[str, str, str], list[Casing]] = {}
            for c in casings:
                groups.setdefault((c.country, c.role, c.caliber), []).append(c)
            for (country, role, caliber), members in sorted(groups.items()):
                ingest(
                    store,
                    [c.path for c in members],
                    {"country": country, "role": role, "caliber": caliber, "sharing": "network"},
                    caliber=caliber,
                )
        done.write_text("ok\n")
        print(f"  ingested {len(casings)} casings in {time.perf_counter() - start:.0f} s")
    return SignatureStore.open(path)


def run_queries(store: SignatureStore, casings: list[Casing]) -> list[QueryOutcome]:
    firearm_of = {c.exhibit_id: c.firearm for c in casings}
    calibration, _ = models_for_store(store.path)
    outcomes = []
    queries = [c for c in casings if c.role == "questioned"]
    for number, casing in enumerate(queries, start=1):
        stored = store.get(casing.exhibit_id)
        start = time.perf_counter()
        result = search(
            store,
            stored,
            scope="network",
            top=10**9,
            exhaustive=True,
            filters=Filters(role="known"),
            calibration=calibration,
        )
        seconds = time.perf_counter() - start
        rows = []
        for c in result.candidates:
            rows.append(
                {
                    "key": f"{c.country}/{c.content_id}",
                    "exhibit_id": c.exhibit_id,
                    "match": firearm_of[c.exhibit_id] == casing.firearm,
                    "regions": {
                        region: m
                        for region, m in (
                            ("breech_face", c.breech_face),
                            ("firing_pin", c.firing_pin),
                        )
                        if m is not None
                    },
                }
            )
        true = [r for r in rows if r["match"]]
        regions = sorted({region for r in rows for region in r["regions"]})
        outcome = QueryOutcome(
            casing.exhibit_id,
            casing.firearm,
            len(rows),
            [rank for rank, r in enumerate(rows, start=1) if r["match"]],
            {
                g: [r["regions"][g].prefilter_rank for r in true if g in r["regions"]]
                for g in regions
            },
            {
                g: [r["regions"][g].prefilter_score for r in true if g in r["regions"]]
                for g in regions
            },
            rows,
            {k: prefilter.features(s) for k, s in stored.exhibit.signatures().items()},
        )
        outcomes.append(outcome)
        print(
            f"  query {number}/{len(queries)} {casing.exhibit_id}: {len(rows)} candidates, "
            f"{result.compared} comparisons in {seconds:.0f} s; true-match ranks "
            f"{outcome.true_ranks}, prefilter ranks {outcome.prefilter_ranks}",
            flush=True,
        )
    return outcomes


def replay(outcome: QueryOutcome, params: SearchParams) -> list[dict[str, Any]]:
    """The ranked list a shortlisted search gives, rebuilt from the exhaustive comparisons.

    Mirrors :func:`ribin.search.search`: a candidate whose prefilter rank is within the
    shortlist of any region is compared in all its regions; candidates on no shortlist
    drop out; the rest sort by summed log10 LR (when every compared region has one), then
    summed score, then owner/content key.
    """
    sizes = {}
    for region in ("breech_face", "firing_pin"):
        n = sum(region in r["regions"] for r in outcome.rows)
        sizes[region] = params.shortlist(n)
    kept = []
    for r in outcome.rows:
        if not any(m.prefilter_rank <= sizes[g] for g, m in r["regions"].items()):
            continue
        compared = [m for m in r["regions"].values() if m.score is not None]
        if not compared:
            continue
        score = float(sum(m.score for m in compared))
        lrs = [m.log_lr for m in compared]
        log_lr = float(sum(lrs)) if all(lr is not None for lr in lrs) else None
        kept.append((r, score, log_lr))
    kept.sort(key=lambda t: (-(t[2] if t[2] is not None else -math.inf), -t[1], t[0]["key"]))
    return [r for r, _, _ in kept]


def best_true_rank(ranked: list[dict[str, Any]]) -> float:
    for rank, r in enumerate(ranked, start=1):
        if r["match"]:
            return rank
    return math.inf


def verify_replay(store: SignatureStore, outcome: QueryOutcome, params: SearchParams) -> str:
    """Run one real shortlisted search and compare its list with the replay."""
    calibration, _ = models_for_store(store.path)
    small = SearchParams(min(params.shortlist_min, 3), 0.0)
    real = search(
        store,
        store.get(outcome.query),
        scope="network",
        top=10**9,
        filters=Filters(role="known"),
        params=small,
        calibration=calibration,
    )
    expected = [r["exhibit_id"] for r in replay(outcome, small)]
    got = [c.exhibit_id for c in real.candidates]
    verdict = "agrees" if got == expected else f"DIFFERS: real {got}, replay {expected}"
    return (
        f"replay check (real search of {outcome.query}, shortlist {small.shortlist_min}): {verdict}"
    )


def background_ranks(
    outcomes: list[QueryOutcome], background: np.ndarray
) -> tuple[list[int], list[float]]:
    """Breech-face true matches ranked among unrelated non-matches, and P(non-match >= it)."""
    ranks, exceed = [], []
    for o in outcomes:
        if "breech_face" not in o.query_features:
            continue
        scores = prefilter.similarity(o.query_features["breech_face"], background)
        non = [
            r["regions"]["breech_face"].prefilter_score
            for r in o.rows
            if not r["match"] and "breech_face" in r["regions"]
        ]
        pool = np.concatenate([scores, np.asarray(non)])
        for s in o.prefilter_true_scores.get("breech_face", []):
            above = int((pool >= s).sum())
            ranks.append(1 + above)
            exceed.append(above / pool.size)
    return ranks, exceed


def prefilter_extrapolation(
    store: SignatureStore, casings: list[Casing], background: np.ndarray | None
) -> None:
    """Expected prefilter rank of the true matches among 10^4 and 10^5 candidates.

    As ``bench_prefilter.py`` does: each query's prefilter scores are standardised by the
    mean and spread of its non-match scores (the set's knowns of other firearms, plus the
    ``--background`` breech faces), the non-match z-scores of all queries are pooled, and
    a true match's expected rank among N candidates is 1 + N * P(pooled z >= its z). With
    few non-matches (Fadul: 72) the pool cannot resolve the tail; the normal tail
    P = 1 - Phi(z) is printed beside it (an assumption, not a measurement).
    """
    firearm_of = {c.exhibit_id: c.firearm for c in casings}
    questioned = {c.exhibit_id: c.firearm for c in casings if c.role == "questioned"}
    for region in ("breech_face", "firing_pin"):
        table = store.features(kind=region)
        if not len(table):
            continue
        known = np.flatnonzero(table.role == "known")
        extra = background if region == "breech_face" else None
        z_true, z_pool = [], []
        for row in np.flatnonzero(table.role == "questioned"):
            firearm = questioned[str(table.exhibit_id[row])]
            scores = prefilter.similarity(table.features[row], table.features[known])
            match = np.array([firearm_of[str(table.exhibit_id[i])] == firearm for i in known])
            non = scores[~match]
            if extra is not None:
                non = np.concatenate([non, prefilter.similarity(table.features[row], extra)])
            mean, spread = non.mean(), max(non.std(), 1e-12)
            z_true += ((scores[match] - mean) / spread).tolist()
            z_pool += ((non - mean) / spread).tolist()
        if not z_true:
            continue
        pool = np.sort(np.asarray(z_pool))
        z_true = np.asarray(z_true)
        exceed = (pool.size - np.searchsorted(pool, z_true, side="left")) / pool.size
        print(
            f"  prefilter margin, {region}: true-match z min {z_true.min():.1f}, median "
            f"{np.median(z_true):.1f}; non-match z p99.9 {np.quantile(pool, 0.999):.1f}, max "
            f"{pool.max():.1f} ({pool.size} non-match scores"
            + (f", {len(extra)} background" if extra is not None else "")
            + ")"
        )
        # where the pool is too small to reach the tail: a normal tail beyond its z
        tail = special.ndtr(-z_true)
        for big in (10_000, 100_000):
            rank = 1 + big * exceed
            normal = 1 + big * tail
            print(
                f"    N = {big}: expected prefilter rank of the true matches median "
                f"{np.median(rank):.0f}, max {rank.max():.0f} (one pooled non-match above "
                f"costs {big / pool.size:.0f} places; normal tail: max {normal.max():.0f}); "
                "recall@K "
                + " ".join(f"{k}:{(rank <= k).mean():.2f}" for k in (5, 10, 20, 50, 100, 200))
            )


def fmt_counts(values: list[float]) -> str:
    values = sorted(values)
    cells = []
    for lo, hi, label in ((1, 1, "1"), (2, 3, "2-3"), (4, 10, "4-10"), (11, math.inf, ">10")):
        cells.append(f"{label}: {sum(lo <= v <= hi for v in values)}")
    return ", ".join(cells)


def report(
    name: str,
    outcomes: list[QueryOutcome],
    params: SearchParams,
    background: np.ndarray | None,
    check: str | None,
) -> dict[str, Any]:
    n = len(outcomes)
    best = [min(o.true_ranks) if o.true_ranks else math.inf for o in outcomes]
    all_ranks = [r for o in outcomes for r in o.true_ranks]
    n_cand = sorted({o.n_candidates for o in outcomes})
    print(f"\n== {name}: {n} queries, {min(n_cand)}-{max(n_cand)} candidates each (network)")
    print(
        f"  exhaustive: top-1 {np.mean([b <= 1 for b in best]):.3f}, "
        f"top-10 {np.mean([b <= 10 for b in best]):.3f}"
    )
    print(
        f"  best true-match rank per query: median {np.median(best):.0f}, max {max(best):.0f}; "
        f"all {len(all_ranks)} true matches: median {np.median(all_ranks):.0f}, "
        f"max {max(all_ranks)} ({fmt_counts(all_ranks)})"
    )
    summary: dict[str, Any] = {
        "name": name,
        "queries": n,
        "top1": float(np.mean([b <= 1 for b in best])),
        "top10": float(np.mean([b <= 10 for b in best])),
        "rank_median": float(np.median(all_ranks)),
        "rank_max": max(all_ranks),
    }
    for region in ("breech_face", "firing_pin"):
        ranks = [r for o in outcomes for r in o.prefilter_ranks.get(region, [])]
        if not ranks:
            continue
        summary[f"prefilter_max_{region}"] = max(ranks)
        print(
            f"  prefilter rank of the true matches, {region}: {sorted(ranks)} "
            f"(max {max(ranks)}, median {np.median(ranks):.0f})"
        )
    # the shortlisted search with the chosen params
    sizes = {}
    for region in ("breech_face", "firing_pin"):
        counts = [sum(region in r["regions"] for r in o.rows) for o in outcomes]
        sizes[region] = sorted({params.shortlist(c) for c in counts if c})
    outside = {
        region: sum(
            r > params.shortlist(sum(region in x["regions"] for x in o.rows))
            for o in outcomes
            for r in o.prefilter_ranks.get(region, [])
        )
        for region in ("breech_face", "firing_pin")
    }
    lost = 0
    changed = 0
    shortlisted = []
    for o in outcomes:
        ranked = replay(o, params)
        shortlisted.append(best_true_rank(ranked))
        full_true = {r["exhibit_id"] for r in o.rows if r["match"]}
        kept_true = {r["exhibit_id"] for r in ranked if r["match"]}
        lost += len(full_true - kept_true)
        changed += best_true_rank(ranked) != min(o.true_ranks, default=math.inf)
    summary["dropped"] = lost
    print(
        f"  shortlisted (min {params.shortlist_min}, fraction {params.shortlist_fraction}; "
        f"shortlist per region {sizes}): top-1 {np.mean([b <= 1 for b in shortlisted]):.3f}, "
        f"top-10 {np.mean([b <= 10 for b in shortlisted]):.3f}; true matches outside the "
        f"shortlist: BF {outside['breech_face']}, FP {outside['firing_pin']}; dropped from the "
        f"list entirely: {lost}; queries whose best true-match rank changed vs exhaustive: "
        f"{changed}"
    )
    if check:
        print(f"  {check}")
    cells = []
    for k in SWEEP:
        ranks = [best_true_rank(replay(o, SearchParams(k, 0.0))) for o in outcomes]
        cells.append(
            f"K={k}: top-1 {np.mean([r <= 1 for r in ranks]):.3f} "
            f"top-10 {np.mean([r <= 10 for r in ranks]):.3f}"
        )
    print("  shortlist of K per region (replayed): " + "; ".join(cells))
    if background is not None and name.startswith("synthetic") and "3d" in name:
        ranks, exceed = background_ranks(outcomes, background)
        if ranks:
            size = background.shape[0]
            exceed_arr = np.asarray(exceed)
            print(
                f"  breech-face true matches among {size} unrelated + the set's non-matches: "
                f"prefilter rank median {np.median(ranks):.0f}, max {max(ranks)}; "
                f"{sum(e == 0 for e in exceed)}/{len(exceed)} outscore every non-match"
            )
            for big in (10_000, 100_000):
                expected = 1 + big * exceed_arr
                # a true match that beat all m non-matches: P < 3 / m (95 %, rule of three)
                bound = 1 + big * np.where(exceed_arr == 0, 3.0 / (size + 1), exceed_arr)
                print(
                    f"    extrapolated to N = {big}: expected rank median "
                    f"{np.median(expected):.0f}, 90th pct {np.quantile(expected, 0.9):.0f}, "
                    f"max {expected.max():.0f} (95 % bound for the unbeaten: max "
                    f"{bound.max():.0f}); recall@K "
                    + " ".join(f"{k}:{(expected <= k).mean():.2f}" for k in (10, 20, 50, 100, 200))
                )
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--firearms", type=int, default=12, help="generated set (0: none)")
    parser.add_argument("--shots", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--pixel", type=float, default=12.5, help="synthetic pixel size (um)")
    parser.add_argument("--modalities", nargs="+", default=["3d"], choices=["3d", "2d"])
    parser.add_argument("--max-firearms", type=int, default=None, help="per data set")
    parser.add_argument("--skip-committed", action="store_true")
    parser.add_argument("--skip-fadul", action="store_true")
    parser.add_argument(
        "--background",
        type=Path,
        default=Path("/tmp/ribin_bench_prefilter/bf_25x4x3_s11_12.5.npz"),
        help="bench_prefilter.py's breech-face cache (skipped if missing)",
    )
    parser.add_argument("--cache", type=Path, default=Path("/tmp/ribin_bench_search"))
    parser.add_argument("--quick", action="store_true", help="3 committed + 2 Fadul firearms")
    parser.add_argument(
        "--prefilter-only", action="store_true", help="no searches: prefilter margins only"
    )
    shortlist_params(parser)
    args = parser.parse_args()
    if args.quick:
        args.firearms = 0
        args.max_firearms = 3
    params = SearchParams(args.shortlist_min, args.shortlist_fraction)
    print(machine())
    print(
        "machine shared with other jobs: timings are inflated; the accuracy figures are not "
        "affected"
    )
    print(
        f"search: scope network, role known, store calibration; shortlist "
        f"max({params.shortlist_min}, ceil({params.shortlist_fraction} n)) per region"
    )
    background = None
    if args.background and args.background.exists():
        data = np.load(args.background)
        surfaces = [data[f"s{i}"] for i in range(int(data["count"]))]
        background = np.stack([prefilter.features(s, args.pixel) for s in surfaces])
        print(f"background: {len(surfaces)} breech faces from {args.background}")

    sets: list[tuple[str, Path, list[Casing]]] = []
    if not args.skip_committed:
        committed = find_committed_set()
        if committed is None:
            raise SystemExit("no committed synthetic set (data/synthetic_casings)")
        rows = load_manifest(committed)
        for modality in args.modalities:
            casings = synthetic_casings(rows, modality, args.max_firearms)
            sets.append((f"synthetic committed {modality}", Path("committed"), casings))
    if args.firearms:
        folder = args.cache / f"set_{args.firearms}x{args.shots}_s{args.seed}_{args.pixel}"
        if not (folder / "manifest.json").exists():
            start = time.perf_counter()
            generate_set(
                folder,
                firearms=args.firearms,
                shots=args.shots,
                seed=args.seed,
                pixel_size_um=args.pixel,
                modalities=args.modalities,
            )
            print(f"generated {folder} in {time.perf_counter() - start:.0f} s")
        rows = load_manifest(folder)
        for modality in args.modalities:
            casings = synthetic_casings(rows, modality, args.max_firearms)
            sets.append((f"synthetic generated {modality}", Path(folder.name), casings))
    if not args.skip_fadul:
        sets.append(("Fadul subset 3d", Path("fadul"), fadul_casings(2 if args.quick else None)))

    summaries = []
    for name, where, casings in sets:
        tag = f"{where}_{name.split()[-1]}_{len(casings)}"
        print(f"\n{name}: {len(casings)} casings, store {args.cache / 'stores' / tag}")
        store = build_store(args.cache / "stores" / tag, casings)
        with store:
            # the background is synthetic at 12.5 um: no candidate of another pixel size
            same = name.startswith("synthetic") and args.pixel == 12.5 and "3d" in name
            prefilter_extrapolation(store, casings, background if same else None)
            if args.prefilter_only:
                continue
            outcomes = run_queries(store, casings)
            check = verify_replay(store, outcomes[0], params) if outcomes else None
        summaries.append(report(name, outcomes, params, background, check))

    if args.prefilter_only:
        return
    record(
        "search_accuracy",
        "Search accuracy at network scope (every questioned casing against all knowns)",
        [
            "data set",
            "queries",
            "top-1",
            "top-10",
            "rank of every true match, median / max",
            "worst prefilter rank BF / FP",
            "true matches dropped by the shortlist",
        ],
        [
            [
                s["name"],
                s["queries"],
                round(s["top1"], 3),
                round(s["top10"], 3),
                f"{s['rank_median']:.0f} / {s['rank_max']}",
                f"{s.get('prefilter_max_breech_face', '-')} / "
                f"{s.get('prefilter_max_firing_pin', '-')}",
                s["dropped"],
            ]
            for s in summaries
        ],
        f"Ranks from exhaustive searches; the shortlist (min {params.shortlist_min}, "
        f"fraction {params.shortlist_fraction}) replayed on them and checked against a real "
        "shortlisted search. Targets: top-1 100 % on Fadul, top-10 99 % on synthetic.",
    )
    print("\nsummary (exhaustive; prefilter max = worst prefilter rank of a true match)")
    print(
        f"{'data set':32s} {'N':>3s} {'top-1':>6s} {'top-10':>6s} {'rank med/max':>12s} "
        f"{'pre BF':>6s} {'pre FP':>6s} {'dropped':>7s}"
    )
    for s in summaries:
        print(
            f"{s['name']:32s} {s['queries']:3d} {s['top1']:6.3f} {s['top10']:6.3f} "
            f"{s['rank_median']:>5.0f}/{s['rank_max']:<6d} "
            f"{s.get('prefilter_max_breech_face', '-')!s:>6s} "
            f"{s.get('prefilter_max_firing_pin', '-')!s:>6s} {s['dropped']:7d}"
        )


if __name__ == "__main__":
    main()
