"""Windowed contractions: the three matrix products every convolution pass reduces to.

With ``W`` the window view ``(N, C, *out, *k)`` of a padded input (see ``_backends.window_view``),
every pass of a convolution is one batched matrix product, grouped by ``groups``:

- :func:`correlate`            ``z[n, f, o]  = sum_{c,k} W[n, c, o, k] * K[f, c, k]``  (forward, stride-1 dX)
- :func:`contract_weights`     ``dK[f, c, k] = sum_{n,o} dz[n, f, o] * W[n, c, o, k]`` (dK)
- :func:`scatter_windows`      ``dX[n, c, o*s + k*d] += cols[n, c, k, o]``               (col2im, strided dX)

The window view is copied into a contiguous column matrix so that BLAS (or cuBLAS) does the work.
That copy is the extra memory; it is made for a slice of the batch at a time so that it stays under
a workspace limit (keyword ``workspace_bytes``, environment variable ``XPCONV_WORKSPACE_BYTES``,
default 256 MiB). A single sample larger than the limit is still processed, alone.

On the CPU the slices are much smaller than the limit, about ``CPU_CHUNK_BYTES``: a fresh buffer of
hundreds of MiB costs a page fault per 4 KiB on first touch, while a few MiB are reused from the
allocator and stay in cache. Measured on the resnet3x3 benchmark layer (2 cores, float32), this
made each pass about 1.5x faster on NumPy and 2x on torch than one buffer for the whole batch.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from array_api_compat import device as device_of

from ._backends import add_into, itemsize, multiply_add_into, on_cpu, set_into, tap_slices, window_view
from ._blocks import pad_or_crop
from .typing import Array, Combine, Namespace

CPU_CHUNK_BYTES = 4 * 2**20
# A one-channel, one-filter correlation goes tap by tap (_one_channel_by_taps), in cache-sized tiles,
# up to TAPS_AT_MOST taps, and up to LARGE_TAPS_AT_MOST where one sample's column matrix would hold
# TAPS_FROM_COLUMN_BYTES or more. Measured on float32, forward (dX alike), taps against the column
# matrix: NumPy 3^3 over a 130^3 block 38 vs 72 ms, 7x7 over 1024^2 (205 MB of columns) 27 vs 56 ms,
# 3x3x5 over 64^3 7.3 vs 14.4 ms; torch 7x7 over 1024^2 22 vs 74 ms. Where the columns stay small the
# column matrix is as fast on NumPy (7x7 on 4x256^2 7.0 vs 6.9 ms) and faster on torch, whose
# per-operation cost adds up over the taps (11x11 on 2x128^2 4.0 vs 2.4 ms; 63 taps over 60,000
# samples 2.2 vs 1.6 ms).
TAPS_AT_MOST = 27
LARGE_TAPS_AT_MOST = 125
TAPS_FROM_COLUMN_BYTES = 32 * 2**20
TAP_TILE_BYTES = 1 << 18  # a tile of outputs by taps: its operands stay in one core's L2 cache
FLOATING = ("real floating", "complex floating")

__all__ = [
    "CPU_CHUNK_BYTES",
    "Windows",
    "columns_bytes",
    "contract_weights",
    "correlate",
    "over_batch",
    "scatter_bytes",
    "scatter_windows",
]


def over_batch(
    fn: Callable[..., Array],
    arrays: Sequence[Array],
    xp: Namespace,
    *,
    sample_bytes: int,
    workspace: int,
    combine: Combine = "concat",
    cpu_budget: int | None = None,
) -> Array:
    """``fn`` over slices of the batch (axis 0 of every array) that keep ``sample_bytes`` per sample
    of temporaries under ``workspace`` (on the CPU, near ``cpu_budget``, by default
    ``CPU_CHUNK_BYTES``); results concatenated along the batch, or summed. ``fn`` may return a
    view of its temporaries (a permutation, say): it is copied into the result once."""
    batch = arrays[0].shape[0]
    if on_cpu(arrays[0], xp):
        budget = min(workspace, CPU_CHUNK_BYTES if cpu_budget is None else cpu_budget)
    else:
        budget = workspace
    rows = max(1, min(batch, budget // max(1, sample_bytes)))
    if batch <= rows:
        return fn(*arrays)
    # Slices end at the batch: the standard leaves out-of-bounds stops unspecified.
    chunks = [slice(start, min(start + rows, batch)) for start in range(0, batch, rows)]
    if combine == "sum":
        total = None
        for part in chunks:
            partial = fn(*(a[part, ...] for a in arrays))
            total = partial if total is None else total + partial
        return total
    # Each chunk's result goes straight into one output buffer: a fresh buffer per chunk plus a
    # concatenation would touch twice the memory (on the CPU, first touches are page faults).
    first = fn(*(a[chunks[0], ...] for a in arrays))
    result = xp.empty((batch, *first.shape[1:]), dtype=first.dtype, device=device_of(first))
    result = set_into(result, xp, (chunks[0], ...), first)
    for part in chunks[1:]:
        result = set_into(result, xp, (part, ...), fn(*(a[part, ...] for a in arrays)))
    return result


def _spatial_axes(first: int, count: int) -> tuple[int, ...]:
    return tuple(range(first, first + count))


@dataclass(frozen=True)
class Windows:
    """Where the windows of an input lie, per spatial axis: it is zero-padded by ``pads`` (a
    negative amount crops), and ``out`` windows start ``stride`` apart, their elements ``dilation``
    apart; the channels fall into ``groups``."""

    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int
    out: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]


def columns_bytes(channels: int, taps: int, positions: int, itemsize: int) -> int:
    """One sample's column matrix, ``channels * taps`` rows of ``positions``: what :func:`correlate`
    and :func:`contract_weights` hold per sample (``_slabs`` sizes its slabs by the same count)."""
    return channels * taps * positions * itemsize


def scatter_bytes(channels: int, taps: int, outputs: int, padded: int, itemsize: int) -> int:
    """One sample's temporaries in :func:`scatter_windows`: its columns and the padded result."""
    return columns_bytes(channels, taps, outputs, itemsize) + channels * padded * itemsize


def by_taps(
    channels: int, filters: int, kernel_size: Sequence[int], positions: int, xp: Namespace, dtype: object
) -> bool:
    """Whether :func:`correlate` goes tap by tap: one channel into one filter (``positions`` outputs a
    sample), floating point, few taps or a large column matrix (see ``TAPS_AT_MOST``)."""
    if channels != filters or channels != 1 or not xp.isdtype(dtype, FLOATING):
        return False
    taps = math.prod(kernel_size)
    large = taps * positions * itemsize(xp, dtype) >= TAPS_FROM_COLUMN_BYTES
    return taps <= TAPS_AT_MOST or (large and taps <= LARGE_TAPS_AT_MOST)


def _one_channel_by_taps(x: Array, kernel: Array, xp: Namespace, windows: Windows) -> Array:
    """One input channel into one filter: a strided multiply-add of the padded input per kernel tap,
    no column matrix (it would hold ``prod(k)`` copies of the input for a product of one row).

    On the CPU the outputs go in tiles of the first spatial axis of about ``TAP_TILE_BYTES``, every
    tap on one tile before the next, so that each tap's operands stay in the cache: 3^3 over a 130^3
    block 54 -> 31 ms, and 73 -> 39 ms with the other core busy too (they share memory bandwidth).
    """
    padded = pad_or_crop(x, xp, windows.pads)
    out = windows.out
    if not on_cpu(x, xp):  # one pass per tap, the device's temporaries
        return _tap_sum(padded, kernel, xp, windows, out, None)
    row_bytes = x.shape[0] * math.prod(out[1:]) * itemsize(xp, x.dtype)
    per_tile = min(out[0], max(1, TAP_TILE_BYTES // max(row_bytes, 1)))
    dtype = xp.result_type(x.dtype, kernel.dtype)
    scratch = xp.empty((x.shape[0], 1, per_tile, *out[1:]), dtype=dtype, device=device_of(x))
    if per_tile == out[0]:
        return _tap_sum(padded, kernel, xp, windows, out, scratch)
    stride, reach = windows.stride[0], windows.dilation[0] * (kernel.shape[2] - 1) + 1
    result = xp.empty((x.shape[0], 1, *out), dtype=dtype, device=device_of(x))
    for start in range(0, out[0], per_tile):
        rows = min(per_tile, out[0] - start)
        part = padded[:, :, start * stride : (start + rows - 1) * stride + reach, ...]
        tile = _tap_sum(part, kernel, xp, windows, (rows, *out[1:]), scratch[:, :, :rows, ...])
        result = set_into(result, xp, (slice(None), slice(None), slice(start, start + rows), ...), tile)
    return result


def _tap_sum(
    padded: Array, kernel: Array, xp: Namespace, windows: Windows, out: tuple[int, ...], scratch: Array | None
) -> Array:
    """``sum_k kernel[k] * padded[the windows' elements k]`` for ``out`` windows; the products go
    through ``scratch`` (see :func:`~xpconv._backends.multiply_add_into`), or temporaries if None."""
    total = None
    for offsets in itertools.product(*(range(k) for k in kernel.shape[2:])):
        reads = padded[(slice(None), slice(None), *tap_slices(offsets, windows.stride, windows.dilation, out))]
        scale = kernel[(0, 0, *offsets)]
        if total is None:
            total = scale * reads  # a fresh array: adding into it writes into nothing of the caller's
        elif scratch is None:
            total += scale * reads  # in place where the library allows it (the standard's in-place operator)
        else:
            total = multiply_add_into(total, xp, reads, scale, scratch)
    assert total is not None
    return total


def correlate(x: Array, kernel: Array, xp: Namespace, windows: Windows, workspace: int) -> Array:
    """Grouped correlation of ``x`` ``(N, C, *size)`` with ``kernel`` ``(F, C // groups, *k)`` over
    the ``windows`` of ``x``. Returns ``(N, F, *out)``.

    The padding is applied per batch chunk: a padded copy of the whole batch would be one more
    pass over memory that does not fit in the cache.
    """
    stride, dilation, groups, out, pads = windows.stride, windows.dilation, windows.groups, windows.out, windows.pads
    channels = x.shape[1]
    filters, ksize = kernel.shape[0], tuple(kernel.shape[2:])
    if math.prod(out) == 0:  # nothing to compute (and no window to view)
        return xp.zeros((x.shape[0], filters, *out), dtype=x.dtype, device=device_of(x))
    if by_taps(channels, filters, ksize, math.prod(out), xp, x.dtype):
        return _one_channel_by_taps(x, kernel, xp, windows)
    ndim = len(ksize)
    per_group = channels // groups * math.prod(ksize)
    weights = xp.reshape(kernel, (groups, filters // groups, per_group))
    # (n, C, *out, *k) -> (n, C, *k, *out): each group's columns are then one (per_group, prod(out)) matrix.
    to_columns = (0, 1, *_spatial_axes(2 + ndim, ndim), *_spatial_axes(2, ndim))

    def chunk(x_part: Array) -> Array:
        rows = x_part.shape[0]
        view = window_view(pad_or_crop(x_part, xp, pads), xp, ksize, stride, dilation, out)
        columns = xp.reshape(xp.permute_dims(view, to_columns), (rows, groups, per_group, math.prod(out)))
        return xp.reshape(xp.matmul(weights, columns), (rows, filters, *out))

    sample_bytes = columns_bytes(channels, math.prod(ksize), math.prod(out), itemsize(xp, x.dtype))
    return over_batch(chunk, [x], xp, sample_bytes=sample_bytes, workspace=workspace)


def contract_weights(
    dz: Array,
    x: Array,
    xp: Namespace,
    windows: Windows,
    workspace: int,
    *,
    window: Sequence[int],
    swap_roles: bool = False,
) -> Array:
    """``dK[f, c, k] = sum_{n, o} dz[n, f, o] * W[n, c, o, k]`` for the ``windows`` ``W`` of ``x``
    (padded per batch chunk, as in :func:`correlate`).

    ``dz`` is ``(N, F, *out)``; the windows of ``x`` are of size ``window``. With ``swap_roles`` the roles of the
    window positions and the window elements swap (``W[n, c, k, o]``), which is how the tutorial's
    method correlates the input with the dilated ``dz``. Returns ``(F, C // groups, *k)``.
    """
    stride, dilation, groups, out, pads = windows.stride, windows.dilation, windows.groups, windows.out, windows.pads
    channels = x.shape[1]
    filters = dz.shape[1]
    ndim = len(window)
    kernel_size = tuple(out) if swap_roles else tuple(window)
    positions = tuple(window) if swap_roles else tuple(out)
    position_axes = _spatial_axes(2 + ndim, ndim) if swap_roles else _spatial_axes(2, ndim)
    kernel_axes = _spatial_axes(2, ndim) if swap_roles else _spatial_axes(2 + ndim, ndim)
    per_group = channels // groups * math.prod(kernel_size)
    # columns (C, *k, n, *positions): each group's block is one (per_group, n * prod(positions)) matrix.
    to_columns = (1, *kernel_axes, 0, *position_axes)
    dz_to_rows = (1, 0, *_spatial_axes(2, ndim))

    def chunk(dz_part: Array, x_part: Array) -> Array:
        rows = x_part.shape[0]
        view = window_view(pad_or_crop(x_part, xp, pads), xp, window, stride, dilation, out)
        columns = xp.reshape(xp.permute_dims(view, to_columns), (groups, per_group, rows * math.prod(positions)))
        grads = xp.reshape(xp.permute_dims(dz_part, dz_to_rows), (groups, filters // groups, -1))
        return xp.matmul(grads, xp.matrix_transpose(columns))

    sample_bytes = columns_bytes(channels, math.prod(window), math.prod(out), itemsize(xp, x.dtype))
    total = over_batch(chunk, [dz, x], xp, sample_bytes=sample_bytes, workspace=workspace, combine="sum")
    return xp.reshape(total, (filters, channels // groups, *kernel_size))


def scatter_windows(
    dz: Array,
    kernel: Array,
    xp: Namespace,
    *,
    padded_size: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    crop: Sequence[slice],
    workspace: int,
) -> Array:
    """Input gradient by col2im: ``cols = K^T dz``, then each kernel tap adds its columns back.

    ``dz`` is ``(N, F, *out)``, ``kernel`` ``(F, C // groups, *k)``. The gradient of the padded input,
    ``(N, C, *padded_size)``, is built in a fresh buffer per batch chunk and ``crop`` (one slice per
    spatial axis) cuts the padding away. Nothing is multiplied by an inserted zero.
    """
    filters = dz.shape[1]
    out = tuple(dz.shape[2:])
    channels_per_group, ksize = kernel.shape[1], tuple(kernel.shape[2:])
    channels = channels_per_group * groups
    per_group = channels_per_group * math.prod(ksize)
    weights_t = xp.matrix_transpose(xp.reshape(kernel, (groups, filters // groups, per_group)))

    def chunk(dz_part: Array) -> Array:
        rows = dz_part.shape[0]
        grads = xp.reshape(dz_part, (rows, groups, filters // groups, math.prod(out)))
        columns = xp.reshape(xp.matmul(weights_t, grads), (rows, channels, *ksize, *out))
        padded = xp.zeros((rows, channels, *padded_size), dtype=dz.dtype, device=device_of(dz))
        for offsets in itertools.product(*(range(k) for k in ksize)):
            target = tap_slices(offsets, stride, dilation, out)
            padded = add_into(
                padded, xp, (slice(None), slice(None), *target), columns[(slice(None), slice(None), *offsets, ...)]
            )
        return padded[(slice(None), slice(None), *crop)]

    sample_bytes = scatter_bytes(
        channels, math.prod(ksize), math.prod(out), math.prod(padded_size), itemsize(xp, dz.dtype)
    )
    return over_batch(chunk, [dz], xp, sample_bytes=sample_bytes, workspace=workspace)
