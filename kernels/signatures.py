"""The one specialization each comparison kernel is compiled at, and compiling them.

Numba compiles a kernel anew for every combination of argument types it meets: a read-only
array (a stored signature) apart from a writable one (a freshly extracted query), a strided
array apart from a contiguous one; each is a full compilation (seconds; a parallel kernel
more). One comparison met four of :func:`_rotate_stack`. Here each kernel the comparison
calls has one signature: arrays read-only (the kernels only read their arguments), and the
small index and angle arrays and the sweeps' per-cell results of any layout (the images and
regions, read in the hot loops, C-contiguous). :func:`ready` compiles, or loads from the
cache, that one specialization of each and then stops those kernels compiling others:
Numba passes writable and contiguous arrays to it (a safe conversion) and refuses a call
it cannot convert (``TypeError: No matching definition``) rather than compile in silence.
A new argument type at a call site is therefore a change here too.

Kernels called only from other kernels (``_median``, ``_centre_region``...) are compiled
inside their callers and are not listed.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator

from numba import types

from . import cmc, ncc, resample

_f32_2d = types.Array(types.float32, 2, "C", readonly=True)
_f32_3d = types.Array(types.float32, 3, "C", readonly=True)
_f64_2d = types.Array(types.float64, 2, "A", readonly=True)  # sweeps are sliced
_f64_1d = types.Array(types.float64, 1, "A", readonly=True)
_i64_1d = types.Array(types.int64, 1, "A", readonly=True)
_i, _f = types.int64, types.float64

# Kernel name -> (module, argument types), in the order their compilation is cheapest to
# share: a kernel called by a later one is compiled first.
SIGNATURES: dict[str, tuple[object, tuple[types.Type, ...]]] = {
    "_downsample_mean": (resample, (_f32_2d, _i, _i)),
    "_rotate_masked": (resample, (_f32_2d, _f, _i, _i, _f, _f, _f, _f)),
    "_rotate_stack": (resample, (_f32_2d, _f64_1d, _i, _i, _f, _f, _f, _f)),
    "_centred_templates": (ncc, (_f32_2d, _i64_1d, _i64_1d, _i, _i, _i, _i)),
    "_extract_regions": (ncc, (_f32_3d, _i64_1d, _i64_1d, _i64_1d, _i, _i, _i, _i)),
    "_rotated_regions": (
        ncc,
        (_f32_2d, _f64_1d, _i, _i, _f, _f, _f, _f, _i64_1d, _i64_1d, _i, _i, _i, _i),
    ),
    "_best_lags": (ncc, (_f32_3d, _f32_3d, _f32_3d, _f32_2d, _i64_1d, _i64_1d, _i, _i, _i64_1d)),
    "_overall_corr": (ncc, (_f32_2d, _f32_2d, _i, _i)),
    "_vote_per_rotation": (cmc, (_f64_2d, _f64_2d, _f64_2d, _f, _f)),
    "_high_cmc": (cmc, (_f64_2d, _f64_2d, _f64_2d, _f64_1d, _f, _f, _f)),
    "_carry_translations": (cmc, (_f64_1d, _f64_1d, _f64_1d, _f64_2d, _f64_2d, _f64_2d, _f64_1d)),
}

_lock = threading.Lock()
_ready = False


def compile_kernels(names: Iterable[str] | None = None) -> None:
    """Compile (or load from the cache) the listed kernels at their signature.

    Parameters
    ----------
    names : iterable of str, optional
        Keys of :data:`SIGNATURES`; all of them by default. Compilation stays enabled.
    """
    for name in SIGNATURES if names is None else names:
        module, argtypes = SIGNATURES[name]
        dispatcher = getattr(module, name)
        if argtypes not in dispatcher.overloads:
            dispatcher.compile(argtypes)


def ready() -> None:
    """Compile or load every listed kernel at its signature, then let it compile no other.

    Idempotent and thread-safe; after the first call it costs a flag test. With
    ``NUMBA_DISABLE_JIT`` the kernels are plain Python and this does nothing.
    """
    global _ready
    if _ready:
        return
    with _lock:
        if _ready:
            return
        dispatchers = _dispatchers()
        if all(hasattr(d, "compile") for d in dispatchers):
            # all compiled before any is closed: a caller compiled after its callee may
            # still need a specialization of the callee for a slice of its own arrays
            compile_kernels()
            for dispatcher in dispatchers:
                dispatcher.disable_compile()
        _ready = True


def _dispatchers() -> list:
    return [getattr(module, name) for name, (module, _) in SIGNATURES.items()]


@contextlib.contextmanager
def any_types() -> Iterator[None]:
    """Let the listed kernels compile for other argument types meanwhile.

    For tests that call a kernel directly with types the comparison never passes (float64
    cross-correlations, say); compilation stops again on leaving if :func:`ready` stopped it.
    """
    dispatchers = [d for d in _dispatchers() if hasattr(d, "disable_compile")]
    for dispatcher in dispatchers:
        dispatcher.disable_compile(False)
    try:
        yield
    finally:
        if _ready:
            for dispatcher in dispatchers:
                dispatcher.disable_compile()
