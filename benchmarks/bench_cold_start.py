"""Cold start: the first ``ribin compare`` in an empty kernel cache against the second.

Each run is a fresh process (``python -m ribin compare A B`` on two bundled synthetic
casings) with ``RIBIN_CACHE_DIR`` pointing at a new, empty folder: the first run compiles
the comparison kernels into it, the second loads them. ``--kernels`` adds a third run, in
another empty cache, that records every kernel specialization compiled (Numba's
``numba:compile`` events; all in the one process, without the helper process that shares
the compilation on two cores), with the seconds spent in it less those of kernels it compiled
on the way (self) and with them (total). Also printed: the time to import the CLI with a
warm cache, and the load average (the machine may be shared: wall seconds grow with the
load, CPU seconds much less). Nothing is installed: the runs use the RIBIN installed for
the Python running this script, so measure ``pip install .`` as a user has it with

    python -m venv /tmp/v && /tmp/v/bin/pip install .
    /tmp/v/bin/python benchmarks/bench_cold_start.py [--kernels] [--pair F01-1,F01-2]

Writes ``benchmarks/results/cold_start.txt`` (the printout) and, when ``$RIBIN_RESULTS``
is set, the headline table (``results.record``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, machine
from results import record

CASINGS = REPO / "data" / "synthetic_casings"
RESULTS = Path(__file__).resolve().parent / "results"

# Runs the CLI in-process, recording each kernel compilation: seconds with the kernels it
# compiled on the way (total) and without them (self). Numba's own helpers compiled for a
# kernel (sorting, array constructors, error messages) count in that kernel's self time.
_RECORDER = r"""
import json, sys, time
from numba.core import event

class Recorder(event.Listener):
    def __init__(self):
        self.open, self.rows = [], []
    def on_start(self, ev):
        func = ev.data["dispatcher"].py_func
        self.open.append([time.thread_time(), 0.0, func.__module__.startswith("ribin.")])
    def on_end(self, ev):
        start, nested, ours = self.open.pop()
        total = time.thread_time() - start
        if not ours and self.open:
            return
        parents = [entry for entry in self.open if entry[2]]
        if parents:
            parents[-1][1] += total
        func = ev.data["dispatcher"].py_func
        args = ", ".join(map(str, ev.data["args"]))
        self.rows.append([f"{func.__module__.rsplit('.', 1)[-1]}.{func.__name__}", args,
                          total - nested, total])

recorder = Recorder()
event.register("numba:compile", recorder)
import ribin.warmup
ribin.warmup._cores = lambda: 1  # every kernel compiled here, where it is recorded
from ribin.cli import main
try:
    main(sys.argv[1:], standalone_mode=False)
finally:
    print("KERNELS " + json.dumps(recorder.rows), file=sys.stderr)
"""


def _env(cache: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"NUMBA_CACHE_DIR", "XDG_CACHE_HOME"}}
    env.update(RIBIN_CACHE_DIR=cache, RIBIN_NUMBA_CACHE="1")
    env.pop("NUMBA_DISABLE_JIT", None)
    return env


def _timed(
    argv: list[str], env: dict[str, str]
) -> tuple[float, float, subprocess.CompletedProcess]:
    """Wall and CPU seconds (user + system, the process and its children) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    # run outside the source tree: `python -m ribin` there would import ./ribin, not the
    # installed package (a `pip install .` into another environment is measured as such)
    run = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=1800, cwd=tempfile.gettempdir()
    )
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if run.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({run.returncode}):\n{run.stderr[-3000:]}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return seconds, cpu, run


def _load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pair", default="F01-1,F01-2", help="two casings of data/synthetic_casings"
    )
    parser.add_argument("--kernels", action="store_true", help="also list each compilation")
    args = parser.parse_args(argv)
    files = [str(CASINGS / f"{name}.x3p") for name in args.pair.split(",")]
    command = ["compare", *files]
    lines = [f"machine: {machine()}", f"python: {sys.executable}"]
    print(*lines, sep="\n", flush=True)

    def say(line: str = "") -> None:
        lines.append(line)
        print(line, flush=True)

    say(f"load average at start (1/5/15 min): {_load()}")
    with tempfile.TemporaryDirectory(prefix="ribin-cold-") as cache:
        env = _env(cache)
        first, first_cpu, run = _timed([sys.executable, "-m", "ribin", *command], env)
        second, second_cpu, _ = _timed([sys.executable, "-m", "ribin", *command], env)
        imported, imported_cpu, _ = _timed(
            [sys.executable, "-c", "import ribin.cli, ribin.compare"], env
        )
        stderr = [line for line in run.stderr.splitlines() if line.strip()]
    say(f"ribin {' '.join(command[:1] + [Path(f).name for f in files])}, fresh process each:")
    say(f"  {'':28} {'wall s':>7} {'CPU s':>7}")
    say(f"  {'first run (empty cache)':28} {first:7.1f} {first_cpu:7.1f}")
    say(f"  {'second run (cached)':28} {second:7.1f} {second_cpu:7.1f}")
    say(f"  {'extra on the first run':28} {first - second:7.1f} {first_cpu - second_cpu:7.1f}")
    say(f"  {'import ribin.cli, .compare':28} {imported:7.1f} {imported_cpu:7.1f}")
    say("  first run said: " + (" | ".join(stderr) if stderr else "(nothing)"))
    say("  (CPU s: user + system of the process and its helpers, little changed by load;")
    say("   wall s on a shared machine grows with the load average)")
    rows = [[Path(files[0]).name, Path(files[1]).name, round(first, 1), round(second, 1),
             round(first - second, 1), round(first_cpu - second_cpu, 1), _load()]]  # fmt: skip
    if args.kernels:
        with tempfile.TemporaryDirectory(prefix="ribin-cold-") as cache:
            seconds, cpu, run = _timed([sys.executable, "-c", _RECORDER, *command], _env(cache))
        found = [line for line in run.stderr.splitlines() if line.startswith("KERNELS ")]
        compiled = json.loads(found[-1][len("KERNELS ") :])
        say()
        say(f"kernel compilations of one first run, in-process ({seconds:.1f} s wall, "
            f"{cpu:.1f} s CPU in all); CPU seconds of the compiling thread:")  # fmt: skip
        say(f"  {'self':>6} {'total':>6}  kernel (argument types)")
        for name, types, own, total in sorted(compiled, key=lambda r: -r[2]):
            say(f"  {own:6.2f} {total:6.2f}  {name} ({types})")
        own = sum(r[2] for r in compiled)
        say(f"  {own:6.2f}         {len(compiled)} specializations of "
            f"{len({r[0] for r in compiled})} kernels")  # fmt: skip
    say(f"load average at end (1/5/15 min): {_load()}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cold_start.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    record(
        "cold_start",
        "First `ribin compare` with an empty kernel cache, and the second",
        ["first", "second", "first run s", "second run s", "extra s", "extra CPU s", "load 1/5/15"],
        rows,
        "Fresh process per run, RIBIN_CACHE_DIR an empty folder before the first.",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
