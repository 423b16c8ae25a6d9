"""Let ``ribin.search(...)`` call the function while ``ribin.search`` stays the module.

The public API names three functions after the modules that hold them (``ribin.ingest``,
``ribin.search``, ``ribin.compare``). Python binds a package attribute to its submodule on
import, so each of these modules is made callable: calling it calls its function.

Why it stays (issue 20 asked for plain functions if the trick confuses readers): a package
attribute can be the function ``ribin.search`` or the submodule ``ribin.search``, not both,
and importing the submodule anywhere (``from ribin.search import Filters``, done throughout
RIBIN, its tests, benchmarks and users' scripts) rebinds the attribute to the module. Plain
functions would need the three modules renamed (``ribin.searching``...) and every
``from ribin.search import ...`` changed in the same release; the documented calls
(``ribin.search(store, exhibit, ...)``, run by ``tests/test_docs.py``) work as they are.
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
