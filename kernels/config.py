"""One place for the Numba compilation flags of every kernel.

``RIBIN_FASTMATH=0`` turns fastmath off for bit-reproducible arithmetic;
``RIBIN_NUMBA_CACHE=0`` turns the on-disk compile cache off.
``OMP_WAIT_POLICY`` defaults to ``PASSIVE`` (set it before importing RIBIN to override).
"""

from __future__ import annotations

import os


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() not in {"0", "false", "no", "off", ""}


# Numba's OpenMP threading layer spins idle threads by default; on a shared or busy machine
# a parallel kernel then stalls on descheduled spinners (measured: 0.3 s -> 2.3 s per
# comparison at load 5 on 2 cores). Passive waiting costs nothing measurable when idle.
# Must be set before the first parallel kernel starts the OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Only flags that neither reorder sums nor assume away NaN (masks are NaN): results must not
# change with the thread count, and ``np.isnan`` tests must survive optimisation.
FASTMATH: set[str] | bool = {"nsz", "arcp"} if _flag("RIBIN_FASTMATH", True) else False
CACHE: bool = _flag("RIBIN_NUMBA_CACHE", True)
# Arguments shared by every @njit in kernels/.
JIT = {"cache": CACHE, "fastmath": FASTMATH, "nogil": True}
