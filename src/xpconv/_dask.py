"""Dask: every pass runs lazily, one batch chunk at a time, on the chunk's own array library.

A convolution pass is independent per sample, so a Dask array chunked along the batch maps onto
``dask.array.blockwise``: each task gets one batch chunk (all other axes in one piece) and the
small shared arrays (kernel, bias) whole, and runs the same xpconv code on the chunk's arrays
(NumPy, or CuPy under a CuPy-backed Dask array). Passes that sum over the batch (dK, db) give one
partial result per chunk and a Dask sum reduces them. Nothing is computed when the graph is built;
``.compute()`` runs it on whatever scheduler is active, a ``dask.distributed`` cluster included.

Used as the decorator :func:`over_dask_chunks` on the functions of ``_gradients``.
"""

from __future__ import annotations

import functools
import string
from collections.abc import Callable
from typing import Any

from array_api_compat import array_namespace, is_dask_namespace

Array = Any

__all__ = ["over_dask_chunks"]


def over_dask_chunks(batch_arrays: int, shared_arrays: int, combine: str = "concat") -> Callable:
    """Decorate ``fn(*batch, *shared, xp, *rest)``: on Dask arrays, run it per batch chunk.

    ``batch_arrays`` leading arguments are chunked along axis 0; the next ``shared_arrays`` are
    passed whole (or None); then comes the namespace. ``combine`` is ``"concat"`` (the result has a
    batch axis) or ``"sum"`` (the result is summed over the batch).
    """

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            xp = args[batch_arrays + shared_arrays]
            if not is_dask_namespace(xp):
                return fn(*args, **kwargs)
            batch = args[:batch_arrays]
            shared = args[batch_arrays : batch_arrays + shared_arrays]
            rest = args[batch_arrays + shared_arrays + 1 :]
            return _blockwise(fn, batch, shared, rest, kwargs, combine)

        return wrapper

    return decorate


def _blockwise(fn: Callable, batch: tuple, shared: tuple, rest: tuple, kwargs: dict, combine: str) -> Array:
    import dask.array as da

    def on_chunk(*blocks: Array) -> Array:
        present = [b for b in blocks if b is not None]
        result = fn(*blocks, array_namespace(*present), *rest, **kwargs)
        return result if combine == "concat" else result[None, ...]

    batch = tuple(a.rechunk({axis: -1 for axis in range(1, a.ndim)}) for a in batch)
    shared = tuple(None if a is None else a.rechunk(-1) for a in shared)
    # The result's shape and dtype, from a dry run on an empty batch of the chunks' library.
    probe = on_chunk(*(_empty_like(a, batch_size=0) for a in batch), *(_empty_like(a) for a in shared))
    tail = tuple(probe.shape[1:])

    letters = iter(string.ascii_letters.replace("n", ""))
    arguments: list[Any] = []
    for a in batch:
        arguments += [a, "n" + "".join(next(letters) for _ in range(a.ndim - 1))]
    for a in shared:
        arguments += [a, None] if a is None else [a, "".join(next(letters) for _ in range(a.ndim))]
    out_letters = "".join(next(letters) for _ in tail)
    options: dict[str, Any] = {"adjust_chunks": {"n": 1}} if combine == "sum" else {}
    parts = da.blockwise(
        on_chunk,
        "n" + out_letters,
        *arguments,
        new_axes=dict(zip(out_letters, tail)),
        concatenate=True,
        dtype=probe.dtype,
        meta=probe[:0, ...],
        **options,
    )
    return parts if combine == "concat" else parts.sum(axis=0)


def _empty_like(a: Array | None, batch_size: int | None = None) -> Array | None:
    """A zero array of the chunk library with ``a``'s shape (its batch axis set to ``batch_size``)."""
    if a is None:
        return None
    xp = array_namespace(a._meta)
    shape = tuple(a.shape) if batch_size is None else (batch_size, *a.shape[1:])
    return xp.zeros(shape, dtype=a.dtype)
