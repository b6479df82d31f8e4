"""Dask: every pass runs lazily, one batch chunk at a time, on the chunk's own array library.

A convolution pass is independent per sample, so a Dask array chunked along the batch maps onto
``dask.array.blockwise``: each task gets one batch chunk (all other axes in one piece) and the
small shared arrays (kernel, bias) whole, and runs the same xpconv code on the chunk's arrays
(NumPy, or CuPy under a CuPy-backed Dask array). Passes that sum over the batch (dK, db) give one
partial result per chunk and a Dask sum reduces them. Nothing is computed when the graph is built;
``.compute()`` runs it on whatever scheduler is active, a ``dask.distributed`` cluster included.

Arrays chunked along the spatial axes too (a volume larger than a worker) go block by block
(:func:`_by_spatial_blocks`): each output block is the convolution of the input its windows read (its
chunk and a halo, the padding it reaches as its own, :func:`~xpconv._geometry.block_geometry`), dX
goes by blocks of the input from the outputs that reach them, dK sums the blocks' shares by a tree.
The results keep the spatial chunking of their operand (each output block is one chunk).

Used as the decorator :func:`over_dask_chunks` on the functions of ``_gradients``.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import string
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from array_api_compat import array_namespace, is_dask_namespace

from ._geometry import ConvGeometry, block_geometry, outputs_reaching
from .typing import Array, Combine

__all__ = ["over_dask_chunks"]

F = TypeVar("F", bound=Callable[..., Array])


def over_dask_chunks(
    *,
    batch: tuple[str, ...],
    shared: tuple[str, ...] = (),
    combine: Combine = "concat",
    spatial: str | None = None,
) -> Callable[[F], F]:
    """Decorate a pass ``fn`` that takes the namespace as its argument ``xp``: on Dask arrays, run it
    per batch chunk.

    The arguments named in ``batch`` are chunked along axis 0; those named in ``shared`` are passed
    whole (or None). ``combine`` is ``"concat"`` (the result has a batch axis) or ``"sum"`` (the
    result is summed over the batch). ``spatial`` names the pass (``"forward"``, ``"input"``,
    ``"weight"``; ``"sum"`` for a plain reduction Dask computes itself) for arrays chunked along
    the spatial axes.
    """

    def decorate(fn: F) -> F:
        names = list(inspect.signature(fn).parameters)
        xp_position = names.index("xp")

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            xp = kwargs["xp"] if len(args) <= xp_position else args[xp_position]
            if not is_dask_namespace(xp):
                return fn(*args, **kwargs)
            arguments = {**dict(zip(names, args)), **kwargs}
            if spatial is not None and any(_spatially_chunked(arguments[name]) for name in batch):
                if spatial == "sum":  # a reduction: Dask's own, chunk by chunk
                    return fn(*args, **kwargs)
                return _by_spatial_blocks(wrapper, arguments, spatial)
            return _blockwise(fn, arguments, batch, shared, combine)

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
    from dask.base import tokenize

    chunked = (*batch_names, *shared_names)
    # Each task's function holds the plain arguments only (geometry, method, ...): a closure over the
    # Dask arrays would carry their graphs into every task, and be pickled whole to name the result.
    fixed = {name: value for name, value in arguments.items() if name not in chunked and name != "xp"}

    def on_chunk(*blocks: Array) -> Array:
        present = [b for b in blocks if b is not None]
        result = fn(**fixed, **dict(zip(chunked, blocks)), xp=array_namespace(*present))
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
    token = tokenize(fn.__module__, fn.__qualname__, fixed, combine, *batch, *shared)
    parts = da.blockwise(
        on_chunk,
        "n" + out_letters,
        *blockwise_arguments,
        new_axes=dict(zip(out_letters, tail)),
        concatenate=True,
        dtype=probe.dtype,
        meta=probe[:0, ...],
        name=f"{fn.__name__.strip('_')}-{token}",
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


def _spatially_chunked(a: Array) -> bool:
    return any(len(chunks) > 1 for chunks in a.chunks[2:])


def _boundaries(chunks: tuple[int, ...]) -> list[int]:
    return list(itertools.accumulate(chunks, initial=0))


def _output_ranges(geometry: ConvGeometry, input_chunks: tuple[tuple[int, ...], ...]) -> list[list[tuple[int, int]]]:
    """Per axis, the output blocks of the input's chunks: the outputs whose windows are centred in
    each chunk (so that a "same" convolution at stride 1 keeps the chunks as they are), those of the
    padding with the first and last chunk."""
    ranges = []
    for chunks, (before, _), s, span, o in zip(
        input_chunks, geometry.pads, geometry.stride, geometry.span, geometry.output_size
    ):
        centre = (span - 1) // 2
        cuts = [0] + [min(o, max(0, -(-(c + before - centre) // s))) for c in _boundaries(chunks)[1:-1]] + [o]
        ranges.append([(lo, hi) for lo, hi in itertools.pairwise(cuts) if lo < hi])
    return ranges


def _input_ranges(geometry: ConvGeometry, output_chunks: tuple[tuple[int, ...], ...]) -> list[list[tuple[int, int]]]:
    """Per axis, dX's blocks from dz's chunks: the inputs from the centre of each chunk's first window
    (the inverse of :func:`_output_ranges`)."""
    ranges = []
    for chunks, (before, _), s, span, n in zip(
        output_chunks, geometry.pads, geometry.stride, geometry.span, geometry.input_size
    ):
        centre = (span - 1) // 2
        cuts = [0] + [min(n, max(0, c * s - before + centre)) for c in _boundaries(chunks)[1:-1]] + [n]
        ranges.append([(lo, hi) for lo, hi in itertools.pairwise(cuts) if lo < hi])
    return ranges


def _whole_in_space(a: Array) -> Array:
    return a.rechunk({axis: -1 for axis in range(2, a.ndim)})


def _nested(blocks: dict[tuple[int, ...], Array], counts: list[int], prefix: tuple[int, ...] = ()) -> Any:
    """The blocks as the nested lists ``dask.array.block`` takes (the innermost along the last axis)."""
    if len(prefix) == len(counts):
        return blocks[prefix]
    return [_nested(blocks, counts, (*prefix, i)) for i in range(counts[len(prefix)])]


def _by_spatial_blocks(pass_: Callable[..., Array], arguments: Mapping[str, Any], kind: str) -> Array:
    """One pass (``kind``: ``"forward"``, ``"input"`` or ``"weight"``) on arrays chunked along the
    spatial axes, block by block (see the module's docstring); each block is the pass itself on a
    smaller geometry, its operands whole in space (so a task holds its block and halo only)."""
    import dask.array as da

    geometry: ConvGeometry = arguments["geometry"]
    xp = arguments["xp"]
    if kind == "forward":
        ranges = _output_ranges(geometry, arguments["x"].chunks[2:])
    elif kind == "input":
        ranges = _input_ranges(geometry, arguments["dz"].chunks[2:])
    else:  # dK: dz's own chunks are the output blocks
        ranges = [list(itertools.pairwise(_boundaries(chunks))) for chunks in arguments["dz"].chunks[2:]]
    blocks: dict[tuple[int, ...], Array] = {}
    shares = []
    for index in itertools.product(*(range(len(r)) for r in ranges)):
        part = [ranges[axis][i] for axis, i in enumerate(index)]
        sizes = tuple(hi - lo for lo, hi in part)
        if kind == "input":
            outputs = outputs_reaching(geometry, part)
            found = None if any(lo >= hi for lo, hi in outputs) else block_geometry(geometry, outputs)
            if found is None:  # no window reaches these inputs
                shape = (geometry.batch, geometry.in_channels, *sizes)
                blocks[index] = _lazy_zeros(shape, arguments["dz"])
                continue
            block, reads = found
            grads = _whole_in_space(arguments["dz"][(..., *(slice(lo, hi) for lo, hi in outputs))])
            result = pass_(**{**arguments, "dz": grads, "geometry": block})
            # the inputs these windows read, and zeros for the block's inputs no window reaches
            kept = [(max(lo, r.start), min(hi, r.stop)) for (lo, hi), r in zip(part, reads)]
            result = result[(..., *(slice(a - r.start, b - r.start) for (a, b), r in zip(kept, reads)))]
            fill = [(a - lo, hi - b) for (a, b), (lo, hi) in zip(kept, part)]
            blocks[index] = da.pad(result, [(0, 0), (0, 0), *fill]) if any(map(any, fill)) else result
            continue
        found = block_geometry(geometry, part)
        outputs_index = tuple(slice(lo, hi) for lo, hi in part)
        if kind == "weight":
            if found is not None:
                block, reads = found
                grads = _whole_in_space(arguments["dz"][(..., *outputs_index)])
                inputs = _whole_in_space(arguments["x"][(..., *reads)])
                shares.append(pass_(**{**arguments, "dz": grads, "x": inputs, "geometry": block}))
            continue
        if found is None:  # outputs of the padding alone
            blocks[index] = _lazy_zeros((geometry.batch, geometry.out_channels, *sizes), arguments["x"])
            if arguments["bias"] is not None:
                blocks[index] = _bias_only(blocks[index], arguments["bias"], outputs_index, xp)
            continue
        block, reads = found
        bias = arguments["bias"]
        if bias is not None and bias.ndim > 1:  # untied: each block its own share
            bias = bias[(slice(None), *outputs_index)]
        x_block = _whole_in_space(arguments["x"][(..., *reads)])
        blocks[index] = pass_(**{**arguments, "x": x_block, "bias": bias, "geometry": block})
    if kind == "weight":
        if not shares:
            return _lazy_zeros(geometry.kernel_shape, arguments["x"])
        return da.stack(shares).sum(axis=0)
    return da.block(_nested(blocks, [len(r) for r in ranges]))


def _lazy_zeros(shape: tuple[int, ...], like: Array) -> Array:
    """A Dask array of zeros whose one chunk is made by the chunk library of ``like`` (CuPy's for a
    CuPy-backed array, on the GPU), where it is computed."""
    import dask
    import dask.array as da

    chunk_xp = array_namespace(like._meta)
    zeros = dask.delayed(chunk_xp.zeros, pure=True)(shape, dtype=like.dtype)
    return da.from_delayed(zeros, shape, dtype=like.dtype, meta=like._meta)


def _bias_only(zeros: Array, bias: Array, outputs_index: tuple[slice, ...], xp: Any) -> Array:
    if bias.ndim == 1:
        return zeros + xp.reshape(bias, (bias.shape[0],) + (1,) * (zeros.ndim - 2))
    return zeros + bias[(slice(None), *outputs_index)]
