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
    "extract": "ribin.signatures",
    "SignatureStore": "ribin.store",
    "load_network": "ribin.network",
}
# ribin.ingest, ribin.search and ribin.compare are callable modules (see ribin._callable).
_CALLABLE_MODULES = ("compare", "ingest", "search")

__all__ = [
    "FormatVersionError",
    "InputError",
    "RibinError",
    "StoreError",
    "__version__",
    *sorted(_LAZY),
    *_CALLABLE_MODULES,
]


def __getattr__(name: str) -> Any:
    if name in _CALLABLE_MODULES:
        return importlib.import_module(f"ribin.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ribin' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
