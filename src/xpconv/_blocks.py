"""The building blocks of the tutorial "3.2.3 Backward Propagation Convolution layer (Vectorized)",
written once against the array API standard.

Public: :func:`dilate`, :func:`pad`, :func:`rotate180`, :func:`windows`. Each validates its arguments
and calls a twin without the checks (:func:`dilate_axes`, :func:`pad_or_crop`) that the convolution
code uses directly.
"""

from __future__ import annotations

from collections.abc import Sequence

from array_api_compat import device as device_of

from ._arguments import namespace_of
from ._backends import itemsize, memory_limit, set_into, window_view
from ._geometry import check_fits, int_tuple, normalize_pads
from .typing import Array, Namespace

__all__ = ["conjugate", "dilate", "dilate_axes", "pad", "pad_or_crop", "rotate180", "windows"]


def check_result_size(shape: Sequence[int], x: Array, xp: Namespace, cause: str) -> None:
    """Refuse, before allocating, a result larger than the memory of x's device."""
    check_fits(shape, itemsize(xp, x.dtype), memory_limit(x, xp), what="the result", cause=cause)


def _trailing_axes(value: int | Sequence[int], x: Array, name: str) -> tuple[int, ...]:
    """An int applies to the last two axes (the spatial axes of an image), a tuple to as many as it has."""
    ndim = len(value) if isinstance(value, Sequence) else min(2, x.ndim)
    if ndim > x.ndim:
        raise ValueError(f"{name} has {ndim} entries but the array has only {x.ndim} axes (shape {tuple(x.shape)})")
    return int_tuple(value, name, ndim)


def dilate(x: Array, rate: int | Sequence[int]) -> Array:
    """Insert ``rate - 1`` zeros between neighbouring elements along the trailing axes.

    ``rate`` is an int (applied to the last two axes) or a tuple with one rate per trailing axis.
    An axis of size ``n`` becomes ``(n - 1) * rate + 1`` long.

    >>> import numpy as np
    >>> dilate(np.array([[1, 2, 3], [4, 5, 6]]), (2, 3))
    array([[1, 0, 0, 2, 0, 0, 3],
           [0, 0, 0, 0, 0, 0, 0],
           [4, 0, 0, 5, 0, 0, 6]])
    """
    xp = namespace_of(x, "x")
    rates = _trailing_axes(rate, x, "rate")
    first = x.ndim - len(rates)
    dilated = [(n - 1) * r + 1 if n else 0 for n, r in zip(x.shape[first:], rates)]
    check_result_size((*x.shape[:first], *dilated), x, xp, f"rate {rate!r}")
    return dilate_axes(x, xp, rates)


def dilate_axes(x: Array, xp: Namespace, rates: Sequence[int]) -> Array:
    first = x.ndim - len(rates)
    for axis, rate in enumerate(rates, start=first):
        n = x.shape[axis]
        if rate == 1 or n <= 1:
            continue
        # (..., n, rest) -> (..., n, rate, rest) with zeros after each element -> (..., n * rate, rest),
        # then drop the zeros after the last element.
        column = xp.expand_dims(x, axis=axis + 1)
        interleaved = xp.concat([column, _zeros_along(column, xp, axis + 1, rate - 1)], axis=axis + 1)
        merged = xp.reshape(interleaved, (*x.shape[:axis], n * rate, *x.shape[axis + 1 :]))
        x = merged[(slice(None),) * axis + (slice(0, (n - 1) * rate + 1), ...)]
    return x


def pad(x: Array, pads: Sequence[Sequence[int]]) -> Array:
    """Zero-pad the trailing ``len(pads)`` axes; ``pads = ((before, after), ...)``.

    >>> import numpy as np
    >>> pad(np.ones((2, 2), dtype=int), ((1, 0), (0, 2)))
    array([[0, 0, 0, 0],
           [1, 1, 0, 0],
           [1, 1, 0, 0]])
    """
    xp = namespace_of(x, "x")
    pads_t = normalize_pads(pads, "pads")
    if len(pads_t) > x.ndim:
        raise ValueError(f"pads has {len(pads_t)} pairs but x has only {x.ndim} axes (shape {tuple(x.shape)})")
    first = x.ndim - len(pads_t)
    padded = [n + before + after for n, (before, after) in zip(x.shape[first:], pads_t)]
    check_result_size((*x.shape[:first], *padded), x, xp, f"pads {pads_t}")
    return pad_or_crop(x, xp, pads_t)


def pad_or_crop(x: Array, xp: Namespace, pads: Sequence[tuple[int, int]]) -> Array:
    """Zero-pad the trailing axes; a negative amount crops instead (past the far end, too).

    Along an axis of size ``n`` the result is the range ``[-before, n + after)`` of ``x``
    extended with zeros on both sides; it has ``n + before + after`` elements (>= 0 required).
    """
    first = x.ndim - len(pads)
    kept, placed, shape = [], [], list(x.shape[:first])
    for axis, (before, after) in enumerate(pads, start=first):
        n = x.shape[axis]
        start, stop = -before, n + after
        low = min(max(start, 0), n)
        high = max(min(max(stop, 0), n), low)
        zeros_before = min(max(-start, 0), stop - start)
        kept.append(slice(low, high))
        placed.append(slice(zeros_before, zeros_before + high - low))
        shape.append(stop - start)
    if all(k == slice(0, x.shape[first + i]) for i, k in enumerate(kept)) and all(
        p == slice(0, size) for p, size in zip(placed, shape[first:])
    ):
        return x
    # One zero buffer and one copy, rather than a concatenation per axis.
    buffer = xp.zeros(tuple(shape), dtype=x.dtype, device=device_of(x))
    if any(k.stop == k.start for k in kept):
        return buffer  # nothing of x is kept (Dask refuses to assign an empty block)
    return set_into(buffer, xp, (..., *placed), x[(..., *kept)])


def _zeros_along(x: Array, xp: Namespace, axis: int, size: int) -> Array:
    shape = (*x.shape[:axis], size, *x.shape[axis + 1 :])
    return xp.zeros(shape, dtype=x.dtype, device=device_of(x))


def conjugate(a: Array, xp: Namespace) -> Array:
    """``conj(a)`` for complex arrays; real ones pass through uncopied. The gradients of a complex
    convolution follow torch autograd: ``dx`` correlates ``dz`` with the conjugated kernel and
    ``dkernel`` with the conjugated input, which makes each the adjoint of the forward map."""
    return xp.conj(a) if xp.isdtype(a.dtype, "complex floating") else a


def rotate180(kernel: Array) -> Array:
    """The kernel turned by 180 degrees in its last two axes (both axes reversed).

    >>> import numpy as np
    >>> rotate180(np.arange(1, 10).reshape(3, 3))
    array([[9, 8, 7],
           [6, 5, 4],
           [3, 2, 1]])
    """
    xp = namespace_of(kernel, "kernel")
    if kernel.ndim < 2:
        raise ValueError(f"kernel must have at least 2 axes, got shape {tuple(kernel.shape)}")
    return xp.flip(kernel, axis=(-2, -1))


def windows(
    x: Array,
    window: int | Sequence[int],
    stride: int | Sequence[int] = 1,
    dilation: int | Sequence[int] = 1,
) -> Array:
    """Sliding windows over the trailing axes, shape ``(..., *out, *window)``.

    ``window`` is an int (a square window over the last two axes) or one size per trailing axis;
    ``stride`` and ``dilation`` an int or one value per windowed axis. Element
    ``[..., i, j, a, b]`` is ``x[..., i*s_h + a*d_h, j*s_w + b*d_w]``. On NumPy, CuPy and torch the
    result is a read-only view sharing memory with ``x``; elsewhere a copy.

    >>> import numpy as np
    >>> w = windows(np.arange(16).reshape(4, 4), 2, stride=2)
    >>> w.shape
    (2, 2, 2, 2)
    >>> w[1, 0]
    array([[ 8,  9],
           [12, 13]])
    """
    xp = namespace_of(x, "x")
    window_t = _trailing_axes(window, x, "window")
    ndim = len(window_t)
    stride_t = int_tuple(stride, "stride", ndim)
    dilation_t = int_tuple(dilation, "dilation", ndim)
    sizes = tuple(x.shape[x.ndim - ndim :])
    spans = tuple(d * (k - 1) + 1 for k, d in zip(window_t, dilation_t))
    if any(span > size for span, size in zip(spans, sizes)):
        raise ValueError(
            f"window {window_t} with dilation {dilation_t} spans {spans}, larger than the trailing axes {sizes} of x"
        )
    out = tuple((size - span) // s + 1 for size, span, s in zip(sizes, spans, stride_t))
    return window_view(x, xp, window_t, stride_t, dilation_t, out)
