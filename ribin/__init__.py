"""RIBIN: ballistic image correlation for cartridge cases.

Heavy modules (Numba kernels, HDF5) load on first use, so ``import ribin`` stays quick.
"""

from __future__ import annotations

import importlib
from typing import Any

from ribin.errors import FormatVersionError, InputError, RibinError, StoreError

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "read_casing": "ribin.io",
    "read_x3p": "ribin.io",
    "write_x3p": "ribin.io",
    "read_image": "ribin.io",
    "Signature": "ribin.exhibit",
    "Exhibit": "ribin.exhibit",
}

__all__ = [
    "FormatVersionError",
    "InputError",
    "RibinError",
    "StoreError",
    "__version__",
    *sorted(_LAZY),
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ribin' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
