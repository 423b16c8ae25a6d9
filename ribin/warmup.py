"""Compile the comparison kernels ahead of the first comparison, and say when that happens.

Numba compiles the kernels of :mod:`ribin.kernels` the first time they run and caches them
per user (see :mod:`ribin.kernels.config`); each is compiled at one signature
(:mod:`ribin.kernels.signatures`). A command that is about to compare calls
:func:`ensure_compiled` first: with a cold cache it announces the compilation and compiles
every kernel, two at a time where there are two cores, so the work after it (and its
progress bar's ETA) starts with ready kernels. A marker file in the cache folder records
that the kernels of this RIBIN, Numba and Python were compiled.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path


def _marker() -> Path | None:
    """The marker of a compiled cache for this source, or None when nothing is cached."""
    from ribin.kernels import config

    if not config.CACHE or _jit_disabled():
        return None
    digest = hashlib.sha256()
    for path in sorted(Path(config.__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    # sorted: a set's order changes from process to process (string hashing is randomised)
    fastmath = sorted(config.FASTMATH) if isinstance(config.FASTMATH, set) else config.FASTMATH
    digest.update(f"{metadata.version('numba')} {sys.version} {fastmath}".encode())
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


# Compiled by a helper process while this one compiles the rest: the parallel kernels but
# _rotate_stack, half the compile time, so that two cores share the first run's wait.
_HELPER_SHARE = ("_best_lags", "_rotated_regions", "_extract_regions")
_HELPER = "import sys; from ribin.kernels.signatures import compile_kernels as c; c(sys.argv[1:])"
# The helper started by :func:`start_compiling` (or :func:`warm_up`) and when.
_helper: tuple[subprocess.Popen, float] | None = None


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _start_helper() -> None:
    """Start the helper process unless it runs already, or cannot help."""
    global _helper
    from ribin.kernels import config

    if _helper is not None or not config.CACHE or _jit_disabled() or _cores() < 2:
        return
    env = dict(os.environ, NUMBA_CACHE_DIR=str(config.CACHE_DIR))
    process = subprocess.Popen(
        [sys.executable, "-c", _HELPER, *_HELPER_SHARE],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _helper = (process, time.perf_counter())
    atexit.register(_stop_helper)  # a command that fails first leaves nothing running


def _stop_helper() -> None:
    global _helper
    if _helper is not None:
        process, _ = _helper
        _helper = None
        if process.poll() is None:
            process.kill()
        process.wait()


def warm_up() -> float:
    """Compile (or load) every comparison kernel's one specialization; seconds taken.

    With an on-disk cache and two cores or more, a helper process compiles
    :data:`_HELPER_SHARE` into the cache meanwhile (started here unless
    :func:`start_compiling` started it earlier; the seconds count from then), and this
    process then loads them from it (or compiles them itself if the helper failed).
    """
    from ribin.kernels import signatures

    started = time.perf_counter()
    _start_helper()
    helping = _helper is not None
    if helping:
        started = min(started, _helper[1])
    try:
        mine = [k for k in signatures.SIGNATURES if not helping or k not in _HELPER_SHARE]
        if not _jit_disabled():
            signatures.compile_kernels(mine)
        if _helper is not None:
            _helper[0].wait()
    finally:
        _stop_helper()
    signatures.ready()
    marker = _marker()
    if marker is not None:
        try:
            marker.write_text(f"compiled in {time.perf_counter() - started:.1f} s\n")
        except OSError:
            pass
    return time.perf_counter() - started


def _announce(say: Callable[[str], None]) -> None:
    from ribin.kernels import config

    where = f"cached in {config.CACHE_DIR}" if config.CACHE else "not cached: RIBIN_NUMBA_CACHE=0"
    say(f"compiling the comparison kernels, first run only (seconds to a minute; {where}) ...")


def start_compiling(say: Callable[[str], None]) -> None:
    """Start compiling the kernels now, in a helper process, if the cache lacks them.

    For a command with other work to do first (reading casings): the helper compiles its
    share meanwhile, and :func:`ensure_compiled`, called before the first comparison,
    compiles the rest and waits for it. Says so through ``say`` (once).
    """
    if _helper is not None or compiled():
        return
    _announce(say)
    _start_helper()


def ensure_compiled(say: Callable[[str], None]) -> float | None:
    """Compile the kernels now if the cache lacks them, saying so through ``say``.

    Returns
    -------
    float or None
        Seconds spent compiling; None when the kernels were ready (nothing was said).
    """
    if _helper is None and compiled():
        return None
    if _helper is None:
        _announce(say)
    seconds = warm_up()
    say(f"kernels compiled in {seconds:.0f} s")
    return seconds
