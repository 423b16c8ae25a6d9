"""Numba kernels: pure functions, arrays in and arrays out; nothing here imports ``ribin``.

Every kernel module is imported here, inside :func:`config.kernel_cache`, so that each
``@njit(cache=True)`` caches in the per-user folder and never in the installed package.
"""

import importlib
import pkgutil

from .config import kernel_cache

with kernel_cache():
    for _module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{_module.name}")
