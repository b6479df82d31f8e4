"""Autotuning of ``method="auto"``, as ``torch.backends.cudnn.benchmark``: off by default.

When it is on (:func:`xpconv.autotune`, or ``XPCONV_AUTOTUNE=1`` in the environment), the first call of
each pass (forward, dX, dK) for a geometry, dtype, array library and device times every method that
can compute it, on the call's own arrays, and remembers the fastest; later calls of that kind take it
at once. The first call therefore costs a few times a normal one. The rule ``"auto"`` follows
otherwise was fitted on one CPU: on another machine, and above all on a GPU, timing is the way to
choose.

Arrays that cannot be timed are left to the rule: lazy ones (JAX's, traced or not, and Dask arrays
as a whole: their chunks are NumPy or CuPy arrays, tuned where they are computed), torch's ``"meta"``
tensors, which hold no data, and empty arrays.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Mapping

from array_api_compat import device as device_of
from array_api_compat import is_lazy_array

from ._backends import holds_data, synchronize
from ._geometry import ConvGeometry
from .typing import Array, Namespace

__all__ = ["autotune", "autotuning", "tuned", "tuned_methods"]

AUTOTUNE_ENV = "XPCONV_AUTOTUNE"

_lock = threading.RLock()
_enabled: bool | None = None  # None: as the environment says
_choices: dict[tuple, str] = {}


def autotune(enabled: bool | None = None) -> bool:
    """Turn autotuning of ``method="auto"`` on or off (None: leave it); returns whether it is on.

    Off by default, or on where the environment variable ``XPCONV_AUTOTUNE`` is ``1``. When on, the
    first call of each pass for a new geometry, dtype, array library and device times the methods
    that apply and remembers the fastest (see :func:`tuned_methods`); later calls use it. Thread-safe.

    >>> import xpconv
    >>> xpconv.autotune(True)
    True
    >>> xpconv.autotune(False)
    False
    """
    global _enabled
    with _lock:
        if enabled is not None:
            if not isinstance(enabled, bool):
                raise TypeError(f"enabled must be a bool or None, got {enabled!r}")
            _enabled = enabled
        if _enabled is None:
            return os.environ.get(AUTOTUNE_ENV, "") not in ("", "0")
        return _enabled


def tuned_methods() -> dict[str, str]:
    """What autotuning chose so far: a readable key per (pass, geometry, dtype, library, device) and
    its method. ``autotune(False)`` keeps them; ``tuned_methods().clear()`` clears only the copy.

    >>> import numpy as np, xpconv
    >>> was_on = xpconv.autotune()
    >>> xpconv.autotune(True)
    True
    >>> z = xpconv.conv1d(np.ones((2, 3, 4000)), np.ones((5, 3, 301)), padding="same")
    >>> for key, method in xpconv.tuned_methods().items():
    ...     if "(5, 3, 301)" in key:
    ...         print(key, "->", method in xpconv.METHODS)  # the fastest on this machine ("fft", most likely)
    forward numpy cpu float64: input (2, 3, 4000), kernel (5, 3, 301), stride (1,),
    pads ((150, 150),), dilation (1,), groups 1 -> True
    >>> _ = xpconv.autotune(was_on)
    """
    with _lock:
        return {_describe(key): method for key, method in _choices.items()}


def autotuning(like: Array, xp: Namespace) -> bool:
    """Whether this call is tuned: autotuning is on and ``like`` holds data that can be timed."""
    return autotune() and not is_lazy_array(like) and holds_data(like, xp) and math.prod(like.shape) > 0


def tuned(
    grad: str, geometry: ConvGeometry, like: Array, xp: Namespace, passes: Mapping[str, Callable[[], Array]]
) -> Array:
    """The pass by the method chosen for its kind, timing ``passes`` (name: computation) the first time:
    each twice, the second run timed. The first call returns the fastest method's result (every
    method computes the same numbers). Tuning holds a lock, so that threads never time side by side."""
    library = type(like).__module__.split(".")[0]  # numpy, torch, cupy, array_api_strict, ...
    key = (grad, geometry, str(like.dtype), library, str(device_of(like)))
    with _lock:
        chosen = _choices.get(key)
        if chosen is not None and chosen in passes:
            return passes[chosen]()
        fastest: tuple[float, str, Array] | None = None
        for name, compute in passes.items():
            # The second of two runs: the first pays for what a method sets up once (FFT plans,
            # kernels compiled on a GPU, the allocator's first blocks).
            synchronize(compute(), xp)
            start = time.perf_counter()
            result = compute()
            synchronize(result, xp)
            seconds = time.perf_counter() - start
            if fastest is None or seconds < fastest[0]:
                fastest = (seconds, name, result)
        assert fastest is not None
        _choices[key] = fastest[1]
        return fastest[2]


def _describe(key: tuple) -> str:
    grad, geometry, dtype, library, device = key
    return (
        f"{grad} {library} {device} {dtype}: input {geometry.input_shape}, kernel {geometry.kernel_shape}, "
        f"stride {geometry.stride}, pads {geometry.pads}, dilation {geometry.dilation}, groups {geometry.groups}"
    )
