"""One place for the Numba compilation flags of every kernel, and where compiled kernels go.

``RIBIN_FASTMATH=0`` turns fastmath off for bit-reproducible arithmetic;
``RIBIN_NUMBA_CACHE=0`` turns the on-disk compile cache off.
``OMP_WAIT_POLICY`` defaults to ``PASSIVE`` (set it before importing RIBIN to override).

Compiled kernels are cached per user, never inside the installed package (a cache written
into ``site-packages/ribin/kernels/__pycache__`` outlives ``pip uninstall`` and then hides an
editable reinstall): ``NUMBA_CACHE_DIR`` when set, else ``$RIBIN_CACHE_DIR/numba``, else
``$XDG_CACHE_HOME/ribin/numba``, else ``~/.cache/ribin/numba``. When that folder cannot be
written, kernels compile in every process instead of being cached.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numba
from numba.core.cpu_options import ParallelOptions


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() not in {"0", "false", "no", "off", ""}


def cache_dir() -> Path:
    """The folder Numba caches RIBIN's compiled kernels in (see the module docstring)."""
    explicit = os.environ.get("NUMBA_CACHE_DIR")
    if explicit:
        return Path(explicit)
    ribin = os.environ.get("RIBIN_CACHE_DIR")
    if ribin:
        return Path(ribin) / "numba"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "ribin" / "numba"


def _writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return False
    return True


# Numba's OpenMP threading layer spins idle threads by default; on a shared or busy machine
# a parallel kernel then stalls on descheduled spinners (measured: 0.3 s -> 2.3 s per
# comparison at load 5 on 2 cores). Passive waiting costs nothing measurable when idle.
# Must be set before the first parallel kernel starts the OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Only flags that neither reorder sums nor assume away NaN (masks are NaN): results must not
# change with the thread count, and ``np.isnan`` tests must survive optimisation.
FASTMATH: set[str] | bool = {"nsz", "arcp"} if _flag("RIBIN_FASTMATH", True) else False
CACHE_DIR: Path = cache_dir()
# Without a writable cache folder Numba would fall back to the package's own __pycache__.
CACHE: bool = _flag("RIBIN_NUMBA_CACHE", True) and _writable(CACHE_DIR)
# Arguments shared by every @njit in kernels/.
JIT = {"cache": CACHE, "fastmath": FASTMATH, "nogil": True}
# ``parallel=`` of the kernels with a prange loop: that loop runs in parallel, nothing else.
# ``parallel=True`` would also turn each array allocation and expression into a parallel
# loop, each compiled as a function of its own: a third more compile time for nothing (the
# allocations are small, or inside the prange loop and so serial anyway). An options object,
# not a dict: Numba empties a dict on the first compilation and then reads the defaults.
PARALLEL = ParallelOptions(
    {
        "prange": True,
        "reduction": True,
        "numpy": False,
        "comprehension": False,
        "inplace_binop": False,
        "setitem": False,
        "stencil": False,
        "fusion": False,
    }
)


@contextlib.contextmanager
def kernel_cache() -> Iterator[None]:
    """Point Numba's cache at :data:`CACHE_DIR` while the kernels are decorated.

    Numba picks a cached function's folder when ``@njit(cache=True)`` runs, from
    ``numba.config.CACHE_DIR``; the setting is restored afterwards, so other Numba code in
    the same process keeps its own cache.
    """
    previous = numba.config.CACHE_DIR
    numba.config.CACHE_DIR = str(CACHE_DIR)
    try:
        yield
    finally:
        numba.config.CACHE_DIR = previous
