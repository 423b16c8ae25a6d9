"""Let ``ribin.search(...)`` call the function while ``ribin.search`` stays the module.

The public API names three functions after the modules that hold them (``ribin.ingest``,
``ribin.search``, ``ribin.compare``). Python binds a package attribute to its submodule on
import, so each of these modules is made callable: calling it calls its function.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any


def make_module_callable(module_name: str, func: Callable[..., Any]) -> None:
    """Make ``sys.modules[module_name](...)`` call ``func(...)``."""

    class CallableModule(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return func(*args, **kwargs)

    CallableModule.__call__.__doc__ = func.__doc__
    sys.modules[module_name].__class__ = CallableModule
