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
import inspect
import string
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from array_api_compat import array_namespace, is_dask_namespace

from .typing import Array, Combine

__all__ = ["over_dask_chunks"]

F = TypeVar("F", bound=Callable[..., Array])


def over_dask_chunks(
    *, batch: tuple[str, ...], shared: tuple[str, ...] = (), combine: Combine = "concat"
) -> Callable[[F], F]:
    """Decorate a pass ``fn`` that takes the namespace as its argument ``xp``: on Dask arrays, run it
    per batch chunk.

    The arguments named in ``batch`` are chunked along axis 0; those named in ``shared`` are passed
    whole (or None). ``combine`` is ``"concat"`` (the result has a batch axis) or ``"sum"`` (the
    result is summed over the batch).
    """

    def decorate(fn: F) -> F:
        names = list(inspect.signature(fn).parameters)
        xp_position = names.index("xp")

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            xp = kwargs["xp"] if len(args) <= xp_position else args[xp_position]
            if not is_dask_namespace(xp):
                return fn(*args, **kwargs)
            return _blockwise(fn, {**dict(zip(names, args)), **kwargs}, batch, shared, combine)

        return wrapper  # type: ignore[return-value]

    return decorate


def _blockwise(
    fn: Callable[..., Array],
    arguments: Mapping[str, Any],
    batch_names: tuple[str, ...],
    shared_names: tuple[str, ...],
    combine: Combine,
) -> Array:
    import dask.array as da

    chunked = (*batch_names, *shared_names)

    def on_chunk(*blocks: Array) -> Array:
        present = [b for b in blocks if b is not None]
        result = fn(**{**arguments, **dict(zip(chunked, blocks)), "xp": array_namespace(*present)})
        return result if combine == "concat" else result[None, ...]

    batch = tuple(
        arguments[name].rechunk({axis: -1 for axis in range(1, arguments[name].ndim)}) for name in batch_names
    )
    shared = tuple(None if arguments[name] is None else arguments[name].rechunk(-1) for name in shared_names)
    # The result's shape and dtype, from a dry run on an empty batch of the chunks' library.
    probe = on_chunk(*(_empty_like(a, batch_size=0) for a in batch), *(_empty_like(a) for a in shared))
    tail = tuple(probe.shape[1:])

    letters = iter(string.ascii_letters.replace("n", ""))
    blockwise_arguments: list[Any] = []
    for a in batch:
        blockwise_arguments += [a, "n" + "".join(next(letters) for _ in range(a.ndim - 1))]
    for a in shared:
        blockwise_arguments += [a, None] if a is None else [a, "".join(next(letters) for _ in range(a.ndim))]
    out_letters = "".join(next(letters) for _ in tail)
    options: dict[str, Any] = {"adjust_chunks": {"n": 1}} if combine == "sum" else {}
    parts = da.blockwise(
        on_chunk,
        "n" + out_letters,
        *blockwise_arguments,
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
