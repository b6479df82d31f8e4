"""One sample too large for the workspace, in slabs along its first spatial axis.

The column-matrix methods hold ``C * prod(k)`` values per output of a batch chunk, and a batch chunk
is at least one sample: a 3^3 filter over one 576^3 volume would build a 20 GiB column matrix
whatever ``workspace_bytes`` says. Where one sample's columns exceed the workspace, each pass goes
by slabs of output rows (dX: of input rows) along the first spatial axis, each slab the same pass
on its own geometry (:func:`~xpconv._geometry.block_geometry`: its halo, its share of the padding),
so that a slab's columns fit, sample by sample. The results are written into one buffer (forward,
dX) or summed (dK).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

from array_api_compat import device as device_of

from ._backends import set_into
from ._contract import columns_bytes, scatter_bytes
from ._geometry import ConvGeometry, block_geometry, outputs_reaching
from .typing import Array, Namespace

__all__ = ["column_bytes", "forward_by_slabs", "input_grad_by_slabs", "slab_ranges", "weight_grad_by_slabs"]

Pass = Callable[..., Array]


def column_bytes(geometry: ConvGeometry, itemsize: int, kind: str, method: str) -> int:
    """One sample's column matrix in the pass ``kind`` (``"forward"``, ``"input"``, ``"weight"``) by
    ``method`` (``"direct"``, ``"dilate"``; the forward's ``"dilate"`` is its ``"direct"``): what the
    pass's batch loop counts per sample (``_contract.columns_bytes``, ``_contract.scatter_bytes``).

    Counted per pass, a strided filterbank's direct dX holds ``C * prod(k)`` values per output (80
    filters of 251 taps at stride 10 over 16,000 samples: 1.6 MB); a bound of every pass said 1.3 GB,
    and the pass went by slabs, 80 ms against 12 ms whole."""
    channels, taps = geometry.in_channels, math.prod(geometry.kernel_size)
    outputs = math.prod(geometry.output_size)
    if kind == "input" and method == "dilate":  # the dilated dz's windows, one per input
        return columns_bytes(geometry.out_channels, taps, math.prod(geometry.input_size), itemsize)
    if kind == "input":  # the columns K^T dz and the padded result
        return scatter_bytes(channels, taps, outputs, math.prod(geometry.padded_size), itemsize)
    if kind == "weight" and method == "dilate":  # windows of x the size of the dilated dz, one per tap
        dilated = math.prod((o - 1) * s + 1 if o else 0 for o, s in zip(geometry.output_size, geometry.stride))
        return columns_bytes(channels, dilated, taps, itemsize)
    return columns_bytes(channels, taps, outputs, itemsize)  # x's windows, one per output


def slab_ranges(geometry: ConvGeometry, workspace: int, rows: int, need: int) -> list[tuple[int, int]] | None:
    """Ranges of ``rows`` (the first spatial axis' outputs or inputs) whose temporaries fit
    ``workspace``, ``need`` bytes per sample (its column matrix, :func:`column_bytes`); None where one
    sample's fit, or it has one row."""
    if need <= workspace or rows <= 1 or geometry.ndim == 0:
        return None
    step = max(1, workspace * rows // need)
    return [(lo, min(lo + step, rows)) for lo in range(0, rows, step)]


def _rest(geometry: ConvGeometry, sizes: tuple[int, ...]) -> list[tuple[int, int]]:
    return [(0, n) for n in sizes[1:]]


def _zero_filled(part: Array, fills: list[tuple[int, int]], xp: Namespace) -> Array:
    """``part`` with ``(before, after)`` zeros along each spatial axis."""
    for axis, (before, after) in enumerate(fills, start=2):
        pieces = []
        for count in (before, after):
            shape = (*part.shape[:axis], count, *part.shape[axis + 1 :])
            pieces.append(xp.zeros(shape, dtype=part.dtype, device=device_of(part)) if count else None)
        if before or after:
            part = xp.concat([p for p in (pieces[0], part, pieces[1]) if p is not None], axis=axis)
    return part


class _Slabs:
    """The result, written slab by slab into one buffer made at the first slab computed (its dtype
    is the pass's); slabs of padding alone stay zero. Holds the result and one slab, no more."""

    def __init__(self, xp: Namespace, batch: int, rows: int) -> None:
        self.xp, self.batch, self.rows, self.buffer = xp, batch, rows, None

    def put(self, sample: int, lo: int, hi: int, part: Array) -> None:
        if self.buffer is None:
            shape = (self.batch, part.shape[1], self.rows, *part.shape[3:])
            self.buffer = self.xp.zeros(shape, dtype=part.dtype, device=device_of(part))
        self.buffer = set_into(self.buffer, self.xp, (slice(sample, sample + 1), slice(None), slice(lo, hi), ...), part)


def forward_by_slabs(
    x: Array, kernel: Array, xp: Namespace, geometry: ConvGeometry, slabs: list[tuple[int, int]], whole: Pass
) -> Array | None:
    """The forward pass slab by slab of outputs; None when every slab lies in the padding alone."""
    batch = x.shape[0]  # Dask's meta probes call with an empty batch, whatever the geometry says
    result = _Slabs(xp, batch, geometry.output_size[0])
    for lo, hi in slabs:
        found = block_geometry(geometry, [(lo, hi), *_rest(geometry, geometry.output_size)])
        if found is not None:
            block, reads = found
            for n in range(batch):
                result.put(n, lo, hi, whole(x[(slice(n, n + 1), slice(None), *reads)], kernel, replace(block, batch=1)))
    return result.buffer


def input_grad_by_slabs(
    dz: Array, kernel: Array, xp: Namespace, geometry: ConvGeometry, slabs: list[tuple[int, int]], whole: Pass
) -> Array | None:
    """dX slab by slab of inputs, each from the outputs whose windows reach it; None when no slab is
    reached at all."""
    batch = dz.shape[0]
    result = _Slabs(xp, batch, geometry.input_size[0])
    for lo, hi in slabs:
        inputs = [(lo, hi), *_rest(geometry, geometry.input_size)]
        outputs = outputs_reaching(geometry, inputs)
        found = None if any(first >= last for first, last in outputs) else block_geometry(geometry, outputs)
        if found is None:
            continue
        block, reads = found
        # the inputs the windows read, then zeros for those of the slab no window reaches
        kept = [(max(a, r.start), min(b, r.stop)) for (a, b), r in zip(inputs, reads)]
        fills = [(a - i, j - b) for (a, b), (i, j) in zip(kept, inputs)]
        for n in range(batch):
            grads = dz[(slice(n, n + 1), slice(None), *(slice(first, last) for first, last in outputs))]
            part = whole(grads, kernel, replace(block, batch=1))
            part = part[(..., *(slice(a - r.start, b - r.start) for (a, b), r in zip(kept, reads)))]
            result.put(n, lo, hi, _zero_filled(part, fills, xp))
    return result.buffer


def weight_grad_by_slabs(
    dz: Array, x: Array, geometry: ConvGeometry, slabs: list[tuple[int, int]], whole: Pass
) -> Array | None:
    """dK summed over slabs of outputs, each with the input its windows read."""
    total = None
    for lo, hi in slabs:
        found = block_geometry(geometry, [(lo, hi), *_rest(geometry, geometry.output_size)])
        if found is not None:
            block, reads = found
            for n in range(x.shape[0]):
                sample = slice(n, n + 1)
                grads = dz[(sample, slice(None), slice(lo, hi), *(slice(None),) * (geometry.ndim - 1))]
                part = whole(grads, x[(sample, slice(None), *reads)], replace(block, batch=1))
                total = part if total is None else total + part
    return total
