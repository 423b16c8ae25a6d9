"""One place for the Numba compilation flags of every kernel.

``RIBIN_FASTMATH=0`` turns fastmath off for bit-reproducible arithmetic;
``RIBIN_NUMBA_CACHE=0`` turns the on-disk compile cache off.
"""

from __future__ import annotations

import os


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() not in {"0", "false", "no", "off", ""}


# Only flags that neither reorder sums nor assume away NaN (masks are NaN): results must not
# change with the thread count, and ``np.isnan`` tests must survive optimisation.
FASTMATH: set[str] | bool = {"nsz", "arcp"} if _flag("RIBIN_FASTMATH", True) else False
CACHE: bool = _flag("RIBIN_NUMBA_CACHE", True)
# Arguments shared by every @njit in kernels/.
JIT = {"cache": CACHE, "fastmath": FASTMATH, "nogil": True}
