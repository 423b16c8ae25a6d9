"""Run the benchmarks and regenerate every table of the documentation (docs/validation.md).

    python benchmarks/make_docs.py                 # everything (hours on 2 cores)
    python benchmarks/make_docs.py --only compare_accuracy search_accuracy
    python benchmarks/make_docs.py --render-only   # rebuild the page from the saved figures
    python benchmarks/make_docs.py --quick --results /tmp/r --out /tmp/validation.md

Each benchmark runs in its own process with ``RIBIN_RESULTS`` set, records its headline
tables there (``results.record``) and leaves its full printout beside them (``NAME.txt``).
The page is then rendered from every recorded table, with the date, version, machine and
command of each, so no figure in the documentation is typed by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

#: 2D detection under glare: a high ring light (exposure 2.5 times nominal)
GLARE = ["--modalities", "2d", "--exposure", "2.5", "--name", "extraction_glare"]

#: prefilter bands measured (LONG:SHORT um; 600:30 is version 2's; docs/method.md, section 4)
PREFILTER_BANDS = (
    "600:30,400:80,250:16,250:30,250:50,250:80,400:30,400:50,600:40,600:50,600:80,800:30,"
    "800:40,160:30,125:16"
)

#: 2D on real surfaces, other lighting draws (the methods were chosen on seed 21)
SEED5 = ["--seed", "5", "--sweep", "aligned", "--no-3d", "--name", "2d_real_seed5"]
SEED9 = ["--seed", "9", "--sweep", "aligned", "--no-3d", "--name", "2d_real_seed9"]

#: signatures of the former 2D default at the current 2D threshold (stores made before)
LOGSMOOTH_R025 = ["--sweep", "aligned", "--no-3d", "--methods", "log-smooth@0.25"]
LOGSMOOTH_R025 += ["--name", "2d_real_logsmooth_r025"]

#: 2D firing pin scored or not: part 2 of bench_2d_search.py alone (docs/method.md, "2D
#: firing pin"), on the committed synthetic set and on a held-out one (seed 2025)
FP2D = ["--skip-prefilter", "--skip-fadul", "--skip-time", "--skip-exhaustive"]

#: 2D prefilter under a lighting protocol: every Fadul rendering with the same lighting (only
#: albedo and noise drawn), what a laboratory's fixed microscope settings would at best give
PROTOCOL = ["--skip-time", "--skip-firing-pin", "--variants"]
PROTOCOL += [f"--fix={k}" for k in ("azimuth_deg=0", "tilt_deg=0", "defocus_um=0", "exposure=1")]
PROTOCOL += [f"--fix={k}" for k in ("gloss_deg=10", "uneven=0.1", "read_noise=0.005")]
RING_OBLIQUE = ["--models", "ring,oblique", "--fix=elevation_deg=28"]

#: name -> (script, arguments of the full run, arguments of a quick run)
BENCHMARKS: dict[str, tuple[str, list[str], list[str]]] = {
    "extraction": ("bench_extraction.py", [], ["--shots", "1", "--repeat", "1"]),
    "compare_accuracy": ("bench_compare_accuracy.py", [], ["--modes", "aligned"]),
    "compare_speed": ("bench_compare_speed.py", [], ["--pairs", "2", "--repeats", "1"]),
    "calibration_lofo": ("bench_calibration.py", [], ["--skip-synthetic"]),
    "search_accuracy": ("bench_search_accuracy.py", [], ["--quick"]),
    "search_speed": ("bench_search_speed.py", [], ["--quick"]),
    "distributed": ("bench_distributed.py", [], ["--quick"]),
    "prefilter": ("bench_prefilter.py", [], ["--batches", "4"]),
    "prefilter_bands": (
        "bench_prefilter.py",
        ["--bands", PREFILTER_BANDS],
        ["--batches", "4", "--bands", "600:30,400:80"],
    ),
    "store": ("bench_store.py", [], ["--ingest", "100", "--features", "10000"]),
    "sync": ("bench_sync.py", [], ["--exhibits", "500"]),
    "2d_real": (
        "bench_2d_real.py",
        ["--sweep", "aligned", "--synthetic", "--methods", "rank-whiten,log-smooth@0.4"],
        ["--models", "ring", "--sweep", "aligned"],
    ),
    "2d_real_seed9": (
        "bench_2d_real.py",
        [*SEED9, "--methods", "rank-whiten,log-smooth@0.4"],
        [*SEED9, "--models", "ring"],
    ),
    "2d_real_logsmooth_r025": (
        "bench_2d_real.py",
        [*LOGSMOOTH_R025, "--synthetic"],
        [*LOGSMOOTH_R025, "--models", "ring"],
    ),
    "2d_real_seed5": (
        "bench_2d_real.py",
        [*SEED5, "--methods", "rank-whiten,log-smooth@0.4"],
        [*SEED5, "--models", "ring"],
    ),
    # part 2 (2D firing pin) is recorded by the 2d_firing_pin entries
    "2d_search": (
        "bench_2d_search.py",
        ["--variants", "--skip-firing-pin"],
        ["--models", "ring", "--skip-time", "--skip-firing-pin"],
    ),
    "2d_firing_pin": (
        "bench_2d_search.py",
        [*FP2D, "--name", "2d_fp_committed"],
        [*FP2D, "--name", "2d_fp_committed"],
    ),
    "2d_firing_pin_seed2025": (
        "bench_2d_search.py",
        [*FP2D, "--synthetic-seed", "2025", "--name", "2d_fp_seed2025"],
        [*FP2D, "--synthetic-seed", "2025", "--name", "2d_fp_seed2025"],
    ),
    "2d_protocol_ring_oblique": (
        "bench_2d_search.py",
        [*PROTOCOL, *RING_OBLIQUE, "--name", "2d_protocol_ring_oblique"],
        [*PROTOCOL, *RING_OBLIQUE, "--skip-exhaustive", "--name", "2d_protocol_ring_oblique"],
    ),
    "2d_protocol_coaxial": (
        "bench_2d_search.py",
        [*PROTOCOL, "--models", "coaxial", "--name", "2d_protocol_coaxial"],
        [*PROTOCOL, "--models", "coaxial", "--skip-exhaustive", "--name", "2d_protocol_coaxial"],
    ),
    "extraction_glare": (
        "bench_extraction.py",
        [*GLARE, "--skip-timing"],
        [*GLARE, "--shots", "1", "--skip-timing"],
    ),
    "correlate": ("bench_correlate.py", ["--new", "4"], ["--sizes", "1000", "--new", "2"]),
    "serve": ("bench_serve.py", [], ["--exhibits", "1000", "--pairs", "2"]),
}

#: tables also copied into docs/method.md, between its validation markers
HEADLINE = [
    "compare_accuracy",
    "calibration_lofo",
    "compare_speed",
    "search_accuracy",
    "search_speed",
]
BEGIN, END = "<!-- validation:begin -->", "<!-- validation:end -->"

#: tables in the order the page shows them (others follow in name order)
ORDER = [
    "compare_accuracy",
    "calibration_lofo",
    "compare_speed",
    "search_accuracy",
    "search_speed",
    "distributed",
    "2d_real",
    "2d_real_seed5",
    "2d_real_seed9",
    "2d_real_logsmooth_r025",
    "2d_real_options_integrate",
    "2d_real_options_half",
    "2d_synthetic_log",
    "2d_synthetic_integrate",
    "2d_synthetic_half",
    "prefilter_bands",
    "2d_search_prefilter",
    "2d_search_lighting",
    "2d_protocol_ring_oblique_prefilter",
    "2d_protocol_coaxial_prefilter",
    "2d_search_time",
    "2d_fp_committed_firing_pin",
    "2d_fp_seed2025_firing_pin",
    "extraction",
    "extraction_glare",
]


def run(names: list[str], results: Path, quick: bool) -> list[str]:
    """Run the named benchmarks; return the names that failed."""
    failed = []
    env = {**os.environ, "RIBIN_RESULTS": str(results)}
    results.mkdir(parents=True, exist_ok=True)
    for name in names:
        script, full, short = BENCHMARKS[name]
        command = [sys.executable, str(HERE / script), *(short if quick else full)]
        print(f"== {name}: {' '.join(command[1:])}", flush=True)
        started = time.perf_counter()
        with open(results / f"{name}.txt", "w", encoding="utf-8") as log:
            done = subprocess.run(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        seconds = time.perf_counter() - started
        status = "ok" if done.returncode == 0 else f"FAILED ({done.returncode})"
        print(f"   {status} in {seconds:.0f} s; output in {results / (name + '.txt')}", flush=True)
        if done.returncode:
            failed.append(name)
    return failed


def load(results: Path) -> list[dict]:
    """Every recorded table under ``results``, in page order."""
    found = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(results.glob("*.json"))]
    # a benchmark that records its own layout (memory_budget) is not a page table
    tables = [t for t in found if isinstance(t, dict) and "name" in t]
    rank = {name: i for i, name in enumerate(ORDER)}
    tables.sort(key=lambda t: (rank.get(t["name"].split(".")[0], len(ORDER)), t["name"]))
    return tables


def render(tables: list[dict]) -> str:
    """The validation page from recorded tables."""
    lines = [
        "# Validation figures",
        "",
        "Generated by `python benchmarks/make_docs.py` from the figures the benchmarks "
        "recorded; do not edit by hand. Each table names the command, the date, the RIBIN "
        "version and the machine it was measured on. The full printout of each benchmark is "
        "in `benchmarks/results/NAME.txt`. What the figures mean is explained in "
        "[method.md](method.md).",
        "",
    ]
    return "\n".join(lines + [render_table(t, "##") for t in tables])


def render_table(table: dict, heading: str) -> str:
    """One recorded table as Markdown, with its notes and where it was measured."""
    lines = [f"{heading} {table['title']}", ""]
    lines.append("| " + " | ".join(table["columns"]) + " |")
    lines.append("|" + "---|" * len(table["columns"]))
    for row in table["rows"]:
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    lines.append("")
    if table.get("notes"):
        lines += [table["notes"], ""]
    lines += [
        f"`{table['command']}`, {table['measured_at'][:10]}, RIBIN {table['ribin_version']}; "
        f"{table['machine']}.",
        "",
    ]
    return "\n".join(lines)


def update_method(path: Path, tables: list[dict]) -> bool:
    """Replace the headline block of ``path`` (between the markers); False if it has none."""
    text = path.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        return False
    chosen = [t for t in tables if t["name"].split(".")[0] in HEADLINE]
    block = "\n".join([BEGIN, "", *[render_table(t, "###") for t in chosen], END])
    head, rest = text.split(BEGIN, 1)
    path.write_text(head + block + rest.split(END, 1)[1], encoding="utf-8")
    return True


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value).replace("|", "\\|")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="run these only")
    parser.add_argument("--render-only", action="store_true", help="run nothing, rebuild page")
    parser.add_argument("--quick", action="store_true", help="small runs (smoke test)")
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "validation.md")
    args = parser.parse_args()
    failed = []
    if not args.render_only:
        failed = run(args.only or list(BENCHMARKS), args.results, args.quick)
    tables = load(args.results)
    args.out.write_text(render(tables), encoding="utf-8")
    print(f"wrote {args.out}")
    method = REPO / "docs" / "method.md"
    if args.out == REPO / "docs" / "validation.md" and update_method(method, tables):
        print(f"updated {method}")
    if failed:
        sys.exit(f"benchmarks failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
