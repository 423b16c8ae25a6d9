"""Compile the comparison kernels ahead of the first comparison, and say when that happens.

Numba compiles the kernels of :mod:`ribin.kernels` the first time they run (a minute or
more on a small machine) and caches them per user (see :mod:`ribin.kernels.config`). A
command that is about to compare calls :func:`ensure_compiled` first: with a cold cache it
announces the compilation and runs two tiny comparisons that compile every kernel, so the
work after it (and its progress bar's ETA) starts with ready kernels. A marker file in the
cache folder records that the kernels of this RIBIN, Numba and Python were compiled.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np


def _marker() -> Path | None:
    """The marker of a compiled cache for this source, or None when nothing is cached."""
    from ribin.kernels import config

    if not config.CACHE or _jit_disabled():
        return None
    digest = hashlib.sha256()
    for path in sorted(Path(config.__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    digest.update(f"{metadata.version('numba')} {sys.version} {config.FASTMATH}".encode())
    where = os.path.dirname(os.path.abspath(config.__file__)).encode()
    digest.update(where)
    return config.CACHE_DIR / f"ribin-compiled-{digest.hexdigest()[:16]}"


def _jit_disabled() -> bool:
    import numba

    return bool(numba.config.DISABLE_JIT)


def compiled() -> bool:
    """Whether the kernels load ready-made from the cache (or need no compiling at all)."""
    if _jit_disabled():
        return True
    marker = _marker()
    return marker is not None and marker.exists()


def warm_up() -> float:
    """Run every kernel once on tiny surfaces (compiling or loading them); seconds taken."""
    from ribin.compare import DEFAULT_PARAMS, compare_surfaces

    started = time.perf_counter()
    rng = np.random.default_rng(0)
    n = 64
    yy, xx = np.mgrid[:n, :n]
    outside = (yy - n / 2) ** 2 + (xx - n / 2) ** 2 >= (n / 2 - 2) ** 2
    for params in DEFAULT_PARAMS.values():
        a, b = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
        a[outside] = b[outside] = np.nan
        # Numba compiles per argument type, read-only arrays (stored signatures) apart from
        # writable ones (a freshly extracted query): every pairing a search or compare makes
        frozen_a, frozen_b = a.copy(), b.copy()
        frozen_a.setflags(write=False)
        frozen_b.setflags(write=False)
        for first, second in ((a, b), (frozen_a, frozen_b), (a, frozen_b), (frozen_a, b)):
            compare_surfaces(first, second, 25.0, params)
    # the sweep passes its angles contiguous or strided, depending on the cells per batch
    from ribin.kernels.resample import _rotate_stack

    angles = np.radians(np.arange(-6.0, 6.0, 3.0))
    for image in (a, frozen_a):
        for thetas in (angles, angles[::2], np.ascontiguousarray(angles[::2])):
            _rotate_stack(image, thetas, n, n, n / 2, n / 2, n / 2, n / 2)
    marker = _marker()
    if marker is not None:
        try:
            marker.write_text(f"compiled in {time.perf_counter() - started:.1f} s\n")
        except OSError:
            pass
    return time.perf_counter() - started


def ensure_compiled(say: Callable[[str], None]) -> float | None:
    """Compile the kernels now if the cache lacks them, saying so through ``say``.

    Returns
    -------
    float or None
        Seconds spent compiling; None when the kernels were ready (nothing was said).
    """
    if compiled():
        return None
    from ribin.kernels import config

    where = f"cached in {config.CACHE_DIR}" if config.CACHE else "not cached: RIBIN_NUMBA_CACHE=0"
    say(f"compiling the comparison kernels, first run only (a minute or two; {where}) ...")
    seconds = warm_up()
    say(f"kernels compiled in {seconds:.0f} s")
    return seconds
