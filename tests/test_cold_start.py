"""Cold start: the first comparison in an empty kernel cache compiles each kernel once."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numba
import pytest

# Warm-up in an empty cache, then comparisons with every kind of argument a command passes:
# writable arrays (an extracted query), read-only ones (stored signatures), both paths of the
# sweep (whole targets rotated, and only the cells' regions: _rotated_regions). Prints each
# kernel's compiled specializations and cache hits, and how often each path ran.
_CHILD = r"""
import json, os
import numpy as np
from ribin.warmup import ensure_compiled
from ribin.kernels import signatures
import ribin.compare
from ribin.compare import CMCParams, compare_surfaces

calls = {"_rotated_regions": 0, "_rotate_stack": 0}
for name in calls:
    kernel = getattr(ribin.compare, name)
    def counted(*args, kernel=kernel, name=name):
        calls[name] += 1
        return kernel(*args)
    setattr(ribin.compare, name, counted)
said = []
ensure_compiled(said.append)
rng = np.random.default_rng(3)
n = 128
yy, xx = np.mgrid[:n, :n]
surface = rng.standard_normal((n, n)).astype(np.float32)
# a disc in a wide empty border: the fine search then rotates the cells' regions only
surface[(yy - n / 2) ** 2 + (xx - n / 2) ** 2 >= 30**2] = np.nan
frozen = np.roll(surface, 3, axis=1).copy()
frozen.setflags(write=False)
for params in (CMCParams(), CMCParams(grid=(4, 4), angle_range_deg=(-9.0, 9.0))):
    compare_surfaces(surface, frozen, 25.0, params)
    compare_surfaces(frozen, surface.copy(), 25.0, params)
kernels = {}
for name, (module, _) in signatures.SIGNATURES.items():
    dispatcher = getattr(module, name)
    kernels[name] = [len(dispatcher.signatures), sum(dispatcher.stats.cache_hits.values())]
cores = len(os.sched_getaffinity(0))
print(json.dumps({"said": said, "kernels": kernels, "cores": cores, "calls": calls}))
"""


@pytest.mark.slow  # compiles every kernel into an empty cache
@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="about compiling kernels")
def test_first_comparison_compiles_one_specialization_per_kernel(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"NUMBA_CACHE_DIR", "XDG_CACHE_HOME"}}
    env.update(RIBIN_CACHE_DIR=str(tmp_path), RIBIN_NUMBA_CACHE="1")
    run = subprocess.run(
        [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=900
    )
    assert run.returncode == 0, run.stderr[-3000:]
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert all(found["calls"].values()), found["calls"]  # both paths of the sweep ran
    assert found["said"][0].startswith("compiling the comparison kernels, first run only")
    # one specialization each, whatever the arrays' writability and layout
    assert {name: k[0] for name, k in found["kernels"].items()} == dict.fromkeys(
        found["kernels"], 1
    )
    if found["cores"] > 1:
        # the helper process compiled its share into the cache; this process loaded them
        from ribin.warmup import _HELPER_SHARE

        assert all(found["kernels"][name][1] == 1 for name in _HELPER_SHARE), found
    # a second process compiles nothing: every kernel comes from the cache
    run = subprocess.run(
        [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=900
    )
    assert run.returncode == 0, run.stderr[-3000:]
    again = json.loads(run.stdout.strip().splitlines()[-1])
    assert again["said"] == []
    assert all(k == [1, 1] for k in again["kernels"].values()), again


def test_compiled_marker_is_the_same_in_every_process(tmp_path):
    # it hashed the fastmath flags' set, whose order changes with string hashing: half the
    # second runs announced and ran the compilation again
    env = {k: v for k, v in os.environ.items() if k not in {"NUMBA_CACHE_DIR", "XDG_CACHE_HOME"}}
    env.update(RIBIN_CACHE_DIR=str(tmp_path), RIBIN_FASTMATH="1")
    names = set()
    for seed in range(4):
        run = subprocess.run(
            [sys.executable, "-c", "from ribin.warmup import _marker; print(_marker())"],
            env={**env, "PYTHONHASHSEED": str(seed)},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr
        names.add(run.stdout.strip())
    assert len(names) == 1, names
