"""Everything that differs per array library lives in this file.

- :func:`window_view`: the sliding-window view of the trailing axes. NumPy and CuPy get a zero-copy
  ``as_strided`` view, torch gets ``Tensor.unfold`` (also a view); any other library that follows the
  array API standard gets a copy built from strided slices and ``stack``.
- :func:`on_cpu`: whether the arrays live in host memory (the batch is then processed in small
  chunks; see ``_contract.over_batch``).
- :func:`add_into`, :func:`set_into`: ``buffer[index] += values`` / ``= values`` on a buffer xpconv
  allocated itself, functional on libraries whose arrays are immutable (JAX);
  :func:`multiply_add_into`: ``total += scale * values`` without a temporary where the library can.
- :func:`integer_accumulator`: the integer dtype sums of products are computed in (torch has no
  arithmetic on unsigned integers wider than 8 bits).
- :func:`memory_limit`: how many bytes the arrays' device holds at most (the size guard's limit).
- :func:`fft_functions`: the FFTs of the ``fft`` extension; for NumPy arrays, SciPy's (``scipy.fft``,
  the same pocketfft, 1.3-1.7x faster in single precision and threaded) when SciPy is installed.
- :func:`synchronize`, :func:`holds_data`: waiting for a GPU's queued work, and torch's ``"meta"``
  tensors (no data), for autotuning's timings.

Backends are recognised through ``array_api_compat``'s ``is_*_namespace`` helpers, which look at
already-imported modules only; nothing here imports a library the caller did not.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from array_api_compat import (
    is_cupy_namespace,
    is_jax_namespace,
    is_numpy_namespace,
    is_torch_namespace,
)

from .typing import Array, Namespace

__all__ = [
    "add_into",
    "fft_functions",
    "holds_data",
    "host_memory",
    "integer_accumulator",
    "itemsize",
    "memory_limit",
    "on_cpu",
    "set_into",
    "synchronize",
    "tap_slices",
    "window_view",
]


def window_view(
    x: Array,
    xp: Namespace,
    window: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
    out: Sequence[int],
) -> Array:
    """Windows over the last ``len(window)`` axes: shape ``(*lead, *out, *window)``.

    ``result[..., o_1, .., o_n, k_1, .., k_n] == x[..., o_1*s_1 + k_1*d_1, .., o_n*s_n + k_n*d_n]``.
    The caller guarantees ``out[i] == (x.shape[-n+i] - d*(k-1) - 1) // s + 1 >= 1``.
    The result may share memory with ``x`` and must never be written to.
    """
    if is_numpy_namespace(xp):
        import numpy

        return _strided(x, window, stride, dilation, out, numpy.lib.stride_tricks.as_strided, writeable=False)
    if is_cupy_namespace(xp):
        import cupy

        return _strided(x, window, stride, dilation, out, cupy.lib.stride_tricks.as_strided)
    if is_torch_namespace(xp):
        return _unfolded(x, window, stride, dilation)
    return _sliced(x, xp, window, stride, dilation, out)


def _strided(x: Array, window, stride, dilation, out, as_strided, **kwargs: Any) -> Array:
    n = len(window)
    lead = x.ndim - n
    axis_strides = x.strides[lead:]
    strides = (
        *x.strides[:lead],
        *(st * s for st, s in zip(axis_strides, stride)),
        *(st * d for st, d in zip(axis_strides, dilation)),
    )
    return as_strided(x, shape=(*x.shape[:lead], *out, *window), strides=strides, **kwargs)


def _unfolded(x: Array, window, stride, dilation) -> Array:
    n = len(window)
    lead = x.ndim - n
    for axis, (k, s, d) in enumerate(zip(window, stride, dilation)):
        # Each unfold appends its window axis last, so the window axes end up in spatial order.
        x = x.unfold(lead + axis, d * (k - 1) + 1, s)
    if any(d > 1 for d in dilation):
        x = x[(..., *(slice(None, None, d) for d in dilation))]
    return x


def _sliced(x: Array, xp: Namespace, window, stride, dilation, out) -> Array:
    """A copy built from strided slices: one slice per window element, or per window position when
    there are fewer positions than elements (the tutorial's dK has huge windows at few positions)."""
    n = len(window)
    lead_shape = tuple(x.shape[: x.ndim - n])
    if math.prod(out) < math.prod(window):
        pieces = []
        for position in itertools.product(*(range(o) for o in out)):
            index = tuple(
                slice(p * s, p * s + d * (k - 1) + 1, d) for p, s, d, k in zip(position, stride, dilation, window)
            )
            pieces.append(x[(..., *index)])
        return xp.reshape(xp.stack(pieces, axis=x.ndim - n), (*lead_shape, *out, *window))
    taps = []
    for offsets in itertools.product(*(range(k) for k in window)):
        taps.append(x[(..., *tap_slices(offsets, stride, dilation, out))])
    return xp.reshape(xp.stack(taps, axis=-1), (*lead_shape, *out, *window))


def tap_slices(offsets, stride, dilation, out) -> tuple[slice, ...]:
    """The positions kernel tap ``offsets`` reads for all ``out`` windows: ``k*d + o*s`` per axis."""
    return tuple(slice(k * d, k * d + s * (o - 1) + 1, s) for k, s, d, o in zip(offsets, stride, dilation, out))


def on_cpu(x: Array, xp: Namespace) -> bool:
    """True for host-memory arrays computed eagerly: NumPy, torch on the CPU, unknown libraries.

    JAX counts as False on any device: under ``jax.jit`` the batch loop would only be unrolled
    into the traced program, and XLA plans the memory itself.
    """
    if is_cupy_namespace(xp) or is_jax_namespace(xp):
        return False
    if is_torch_namespace(xp):
        return x.device.type == "cpu"
    return True


def holds_data(x: Array, xp: Namespace) -> bool:
    """False for torch's ``"meta"`` tensors, which carry a shape and a device but no values."""
    return not (is_torch_namespace(xp) and x.device.type == "meta")


def synchronize(x: Array, xp: Namespace) -> None:
    """Wait until the device of ``x`` has finished its queued work (GPUs run asynchronously)."""
    if is_torch_namespace(xp) and x.device.type == "cuda":
        import torch

        torch.cuda.synchronize(x.device)
    elif is_cupy_namespace(xp):
        x.device.synchronize()


def set_into(buffer: Array, xp: Namespace, index: tuple, values: Array) -> Array:
    """``buffer[index] = values`` and return the buffer; ``buffer`` must be xpconv's own."""
    if is_jax_namespace(xp):
        return buffer.at[index].set(values)
    buffer[index] = values
    return buffer


def add_into(buffer: Array, xp: Namespace, index: tuple, values: Array) -> Array:
    """``buffer[index] += values`` and return the buffer; ``buffer`` must be xpconv's own."""
    if is_jax_namespace(xp):
        return buffer.at[index].add(values)
    buffer[index] = buffer[index] + values
    return buffer


def multiply_add_into(total: Array, xp: Namespace, values: Array, scale: Array, scratch: Array) -> Array:
    """``total += scale * values`` and return ``total`` (``scale`` a 0-d array); ``total`` and ``scratch``
    (an array of ``total``'s shape and dtype) must be xpconv's own.

    NumPy and CuPy multiply into ``scratch`` and torch adds the product in one kernel (``addcmul_``),
    so no call allocates a temporary: where malloc returns freed memory to the system at once (Dask
    workers set ``MALLOC_TRIM_THRESHOLD_`` to 64 KiB) each fresh temporary costs page faults, and a
    3^3 filter over a 130^3 block took 94 ms in such a process against 54 ms with reused memory.
    """
    if is_numpy_namespace(xp) or is_cupy_namespace(xp):
        module = _module_of(xp)
        module.multiply(values, scale, out=scratch)
        return module.add(total, scratch, out=total)
    if is_torch_namespace(xp):
        return total.addcmul_(values, scale)
    if is_jax_namespace(xp):
        return total + scale * values
    total += scale * values
    return total


def _module_of(xp: Namespace) -> Any:
    if is_cupy_namespace(xp):
        import cupy

        return cupy
    import numpy

    return numpy


def integer_accumulator(xp: Namespace, dtype: Any, device: Any) -> Any:
    """The dtype integer convolutions accumulate and return in, as the standard's ``sum`` does:
    the namespace's default integer dtype, or for unsigned inputs the unsigned dtype of its width.

    torch cannot add or multiply uint16/32/64, and its own ``sum`` turns unsigned input into int64:
    there the result is int64 for every integer input.
    """
    default = xp.__array_namespace_info__().default_dtypes(device=device)["integral"]
    if not xp.isdtype(dtype, "unsigned integer") or is_torch_namespace(xp):
        return default
    return getattr(xp, f"uint{xp.iinfo(default).bits}")


def memory_limit(x: Array, xp: Namespace) -> int:
    """Total memory of the device ``x`` lives on, in bytes: the GPU's for torch CUDA and CuPy
    arrays, the machine's physical memory for everything else (unknown: no limit)."""
    if is_torch_namespace(xp) and x.device.type == "cuda":
        import torch

        return int(torch.cuda.get_device_properties(x.device).total_memory)
    if is_cupy_namespace(xp):
        return int(x.device.mem_info[1])
    return host_memory()


def host_memory() -> int:
    """The machine's physical memory in bytes (unknown: no limit)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not a POSIX system
        return 2**63 - 1


def itemsize(xp: Namespace, dtype: Any) -> int:
    """Bytes per element; also for bool and dtypes outside the standard (object, str), which the
    building blocks accept."""
    try:
        if xp.isdtype(dtype, "complex floating"):
            return 2 * (xp.finfo(dtype).bits // 8)  # finfo describes the real and imaginary parts
        if xp.isdtype(dtype, "real floating"):
            return xp.finfo(dtype).bits // 8
        if xp.isdtype(dtype, "integral"):
            return xp.iinfo(dtype).bits // 8
    except (TypeError, ValueError, AttributeError):
        pass
    return int(getattr(dtype, "itemsize", 8))


FFT_NAMES = ("fft", "ifft", "rfft", "irfft", "fftn", "ifftn", "rfftn", "irfftn")


def fft_functions(xp: Namespace) -> Any:
    """The FFT functions of ``xp``'s ``fft`` extension, called as the standard's (``s=``, ``axes=``,
    ``n=``, ``axis=``, ``norm=``). For NumPy arrays they are ``scipy.fft``'s where SciPy is installed:
    the same algorithms, with single precision kept native and every core used (``workers``);
    measured on the project's 2 cores, float32: rfftn of 16x96x64x64 31.7 ms by NumPy 2.4, 9.4 ms by
    SciPy; a 60,750-sample rfft 2.0 ms against 0.7 ms."""
    if is_numpy_namespace(xp):
        threaded = _scipy_fft()
        if threaded is not None:
            return threaded
    return xp.fft


@functools.cache
def _scipy_fft() -> Any:
    try:
        import scipy.fft
    except ImportError:
        return None
    workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return SimpleNamespace(**{name: functools.partial(getattr(scipy.fft, name), workers=workers) for name in FFT_NAMES})
