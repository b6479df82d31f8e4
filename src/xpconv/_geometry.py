"""Convolution geometry: argument normalisation, padding, output shapes, validation.

Everything here works on plain Python ints and tuples; no arrays are touched. The array code
(``_blocks``, ``_contract``, ``_gradients``) receives a finished :class:`ConvGeometry`.

Per spatial axis, with input size ``n``, kernel size ``k``, stride ``s``, dilation ``d`` and
padding ``(before, after)``::

    padded = before + n + after
    span   = d * (k - 1) + 1                  # extent of the dilated kernel
    out    = (padded - span) // s + 1
    tail   = (padded - span) % s               # trailing padded rows no window reaches
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass, replace

from .typing import IntOrTuple, Padding

__all__ = [
    "ConvGeometry",
    "as_int",
    "block_geometry",
    "check_fits",
    "check_memory",
    "conv_geometry",
    "human_bytes",
    "int_tuple",
    "normalize_pads",
    "outputs_reaching",
    "resolve_padding",
]


def as_int(value: object, name: str) -> int:
    """``operator.index`` with an error that names the argument; bools are refused."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got the bool {value!r}")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}") from None


def int_tuple(value: IntOrTuple, name: str, ndim: int, *, minimum: int = 1) -> tuple[int, ...]:
    """An int or a sequence of ``ndim`` ints, each at least ``minimum``, as a tuple of ``ndim`` ints.

    >>> int_tuple(2, "stride", 3)
    (2, 2, 2)
    >>> int_tuple((1, 0), "stride", 2)
    Traceback (most recent call last):
    ValueError: stride must be positive, got (1, 0)
    """
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != ndim:
            raise ValueError(f"{name} must be an int or a sequence of {ndim} ints, got {len(value)} values: {value!r}")
        values = tuple(as_int(v, name) for v in value)
    else:
        values = (as_int(value, name),) * ndim
    if any(v < minimum for v in values):
        wanted = {0: "non-negative", 1: "positive"}.get(minimum, f"at least {minimum}")
        raise ValueError(f"{name} must be {wanted}, got {value!r}")
    return values


def normalize_pads(pads: object, name: str = "pads") -> tuple[tuple[int, int], ...]:
    """``((before, after), ...)`` of non-negative ints, validated."""
    if not isinstance(pads, Sequence) or isinstance(pads, str):
        raise TypeError(f"{name} must be a sequence of (before, after) pairs, got {pads!r}")
    result = []
    for pair in pads:
        if not isinstance(pair, Sequence) or isinstance(pair, str) or len(pair) != 2:
            raise ValueError(f"{name} must hold (before, after) pairs, got {pair!r} in {pads!r}")
        before, after = as_int(pair[0], name), as_int(pair[1], name)
        if before < 0 or after < 0:
            raise ValueError(f"{name} must be non-negative, got {pads!r}")
        result.append((before, after))
    return tuple(result)


def resolve_padding(
    padding: Padding,
    input_size: Sequence[int],
    kernel_size: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
) -> tuple[tuple[int, int], ...]:
    """Turn any accepted ``padding`` form into explicit ``((before, after), ...)`` per axis.

    Forms (``ndim`` = number of spatial axes):

    - ``"valid"``: no padding.
    - ``"same"``: the output has the input's spatial size for any stride. The total padding of an
      axis is ``(s - 1) * n + d * (k - 1) + 1 - s``; the smaller half goes before.
    - ``"full"``: ``d * (k - 1)`` on both sides: every position where the kernel overlaps the input
      gives an output (``scipy.signal``'s and sigpy's "full").
    - ``p`` (int): ``p`` on both sides of every axis.
    - ``(p_h, p_w, ...)``: ``p_h`` on both sides of the first axis, and so on (as torch).
    - ``((top, bottom), (left, right), ...)``: explicit; an axis may also be a single int.

    >>> resolve_padding("same", (5, 5), (3, 3), (2, 2), (1, 1))
    ((3, 3), (3, 3))
    >>> resolve_padding("full", (5, 5), (3, 3), (1, 1), (1, 2))
    ((2, 2), (4, 4))
    >>> resolve_padding((1, (0, 2)), (5, 5), (3, 3), (1, 1), (1, 1))
    ((1, 1), (0, 2))
    """
    ndim = len(input_size)
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * ndim
        if padding == "same":
            pads = []
            for n, k, s, d in zip(input_size, kernel_size, stride, dilation):
                total = (s - 1) * n + d * (k - 1) + 1 - s
                pads.append((total // 2, total - total // 2))
            return tuple(pads)
        if padding == "full":
            return tuple((d * (k - 1), d * (k - 1)) for k, d in zip(kernel_size, dilation))
        raise ValueError(f"padding must be 'valid', 'same', 'full', an int or a sequence; got the word {padding!r}")
    if isinstance(padding, Sequence):
        if len(padding) != ndim:
            raise ValueError(f"padding must have one entry per spatial axis ({ndim}), got {len(padding)}: {padding!r}")
        per_axis = [
            tuple(entry) if isinstance(entry, Sequence) and not isinstance(entry, str) else (entry, entry)
            for entry in padding
        ]
        return normalize_pads(per_axis, "padding")
    p = as_int(padding, "padding")
    if p < 0:
        raise ValueError(f"padding must be non-negative, got {padding!r}")
    return ((p, p),) * ndim


@dataclass(frozen=True)
class ConvGeometry:
    """Validated shape arithmetic of one convolution, channels-first, any number of spatial axes."""

    batch: int
    in_channels: int
    out_channels: int
    groups: int
    input_size: tuple[int, ...]
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]

    @property
    def ndim(self) -> int:
        return len(self.input_size)

    @property
    def padded_size(self) -> tuple[int, ...]:
        return tuple(b + n + a for n, (b, a) in zip(self.input_size, self.pads))

    @property
    def span(self) -> tuple[int, ...]:
        """Extent of the dilated kernel per axis."""
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel_size, self.dilation))

    @property
    def output_size(self) -> tuple[int, ...]:
        return tuple((p - e) // s + 1 for p, e, s in zip(self.padded_size, self.span, self.stride))

    @property
    def tail(self) -> tuple[int, ...]:
        """Trailing rows of the padded input that no window reaches."""
        return tuple((p - e) % s for p, e, s in zip(self.padded_size, self.span, self.stride))

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.batch, self.in_channels, *self.input_size)

    @property
    def kernel_shape(self) -> tuple[int, ...]:
        return (self.out_channels, self.in_channels // self.groups, *self.kernel_size)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (self.batch, self.out_channels, *self.output_size)

    @property
    def flops(self) -> int:
        """Multiply-adds of the forward pass, times two."""
        per_output = (self.in_channels // self.groups) * math.prod(self.kernel_size)
        return 2 * math.prod(self.output_shape) * per_output


_SPATIAL_NAMES = {1: "L", 2: "H, W", 3: "D, H, W"}


def _spatial(ndim: int) -> str:
    return _SPATIAL_NAMES.get(ndim, f"{ndim} spatial axes")


def conv_geometry(
    input_shape: Sequence[int],
    kernel_shape: Sequence[int],
    *,
    ndim: int,
    stride: IntOrTuple = 1,
    padding: Padding = "valid",
    dilation: IntOrTuple = 1,
    groups: int = 1,
    input_name: str = "x",
    kernel_name: str = "kernel",
) -> ConvGeometry:
    """Validate the shapes and parameters of a convolution and derive its geometry.

    >>> g = conv_geometry((2, 3, 7, 7), (4, 3, 3, 3), ndim=2, stride=2, padding=1)
    >>> g.output_shape, g.tail
    ((2, 4, 4, 4), (0, 0))
    """
    input_shape, kernel_shape = tuple(input_shape), tuple(kernel_shape)
    if len(input_shape) != ndim + 2:
        raise ValueError(
            f"{input_name} must be {ndim + 2}-D (N, C, {_spatial(ndim)}), "
            f"got {len(input_shape)}-D with shape {input_shape}"
        )
    if len(kernel_shape) != ndim + 2:
        raise ValueError(
            f"{kernel_name} must be {ndim + 2}-D (F, C // groups, {ndim} kernel sizes), "
            f"got {len(kernel_shape)}-D with shape {kernel_shape}"
        )
    groups = as_int(groups, "groups")
    if groups < 1:
        raise ValueError(f"groups must be positive, got {groups}")
    batch, channels, *input_size = input_shape
    filters, kernel_channels, *kernel_size = kernel_shape
    if channels < 1 or channels % groups:
        raise ValueError(
            f"groups must divide the {channels} input channels of {input_name} (shape {input_shape}), "
            f"got groups={groups}"
        )
    if filters < 1 or filters % groups:
        raise ValueError(
            f"groups must divide the {filters} filters of {kernel_name} (shape {kernel_shape}), got groups={groups}"
        )
    if kernel_channels * groups != channels:
        raise ValueError(
            f"{kernel_name} must have C // groups = {channels} // {groups} = {channels // groups} channels "
            f"(axis 1) to match {input_name} of shape {input_shape}; got {kernel_channels} (shape {kernel_shape})"
        )
    if any(k < 1 for k in kernel_size):
        raise ValueError(f"{kernel_name} must have spatial sizes >= 1, got shape {kernel_shape}")
    stride_t = int_tuple(stride, "stride", ndim)
    dilation_t = int_tuple(dilation, "dilation", ndim)
    pads = resolve_padding(padding, input_size, kernel_size, stride_t, dilation_t)
    geometry = ConvGeometry(
        batch=batch,
        in_channels=channels,
        out_channels=filters,
        groups=groups,
        input_size=tuple(input_size),
        kernel_size=tuple(kernel_size),
        stride=stride_t,
        dilation=dilation_t,
        pads=pads,
    )
    for axis, (padded, span) in enumerate(zip(geometry.padded_size, geometry.span)):
        if span > padded:
            raise ValueError(
                f"the dilated kernel (extent {span} on spatial axis {axis}, from size {kernel_size[axis]} and "
                f"dilation {dilation_t[axis]}) is larger than the padded input ({padded} = "
                f"{input_size[axis]} + padding {pads[axis]}) of {input_name} with shape {input_shape}"
            )
    return geometry


def human_bytes(size: float) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if size < 1024 or unit == "PiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.3g} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def check_memory(
    geometry: ConvGeometry,
    itemsize: int,
    limit: int,
    *,
    outputs: bool = True,
    columns: bool = True,
    cause: str | None = None,
) -> None:
    """Refuse, before anything is allocated, a call whose arrays cannot fit in ``limit`` bytes.

    Checked, in Python's unbounded ints: one padded sample of the input, one sample's column matrix
    (the least a batch chunk of the column-matrix methods holds, whatever the workspace; unless
    ``columns`` is False: the pass may go by a method that builds none, the FFT), and the output
    (unless ``outputs`` is False: Dask computes it chunk by chunk). The message names ``cause``, else
    the padding where there is any, else the shapes.

    >>> g = conv_geometry((1, 1, 4, 4), (1, 1, 3, 3), ndim=2, padding=((0, 10**9), (0, 10**9)))
    >>> try:
    ...     check_memory(g, 8, 2**40)
    ... except ValueError as error:
    ...     print(error)
    padding ((0, 1000000000), (0, 1000000000)) makes one padded sample of the input
    (1, 1000000004, 1000000004): 7.11e+03 PiB, more than the 1 TiB of memory on its device
    """
    padded_sample = (geometry.in_channels, *geometry.padded_size)
    column_shape = (geometry.in_channels, math.prod(geometry.kernel_size), math.prod(geometry.output_size))
    needs = [("one padded sample of the input", padded_sample)]
    if columns:
        needs.append(("one sample's column matrix", column_shape))
    if outputs:
        needs.append(("the output", geometry.output_shape))
    if cause is None:
        cause = f"padding {geometry.pads}" if any(b or a for b, a in geometry.pads) else "the input and kernel shapes"
    for what, shape in needs:
        check_fits(shape, itemsize, limit, what=what, cause=cause)


def check_fits(shape: Sequence[int], itemsize: int, limit: int, *, what: str, cause: str) -> None:
    """A ``ValueError`` naming ``cause`` when an array of ``shape`` would not fit in ``limit`` bytes."""
    size, limit = math.prod(shape) * itemsize, min(limit, 2**63 - 1)
    if size > limit:
        raise ValueError(
            f"{cause} makes {what} {tuple(shape)}: {human_bytes(size)}, "
            f"more than the {human_bytes(limit)} of memory on its device"
        )


def block_geometry(
    geometry: ConvGeometry, outputs: Sequence[tuple[int, int]]
) -> tuple[ConvGeometry, tuple[slice, ...]] | None:
    """The convolution that computes outputs ``[lo, hi)`` per axis, and the input slice it reads: the
    windows' extent in the input, the padding they reach beyond it per side as its own padding (the
    overlap-save blocks of the FFT, the spatial chunks of Dask); None where they read no input.

    >>> g = conv_geometry((1, 1, 10), (1, 1, 3), ndim=1, padding=1)
    >>> block, reads = block_geometry(g, [(0, 4)])
    >>> block.input_size, block.pads, reads, block.output_size
    ((5,), ((1, 0),), (slice(0, 5, None),), (4,))
    """
    slices, sizes, pads = [], [], []
    for (lo, hi), n, (before, _), s, span in zip(
        outputs, geometry.input_size, geometry.pads, geometry.stride, geometry.span
    ):
        start, stop = lo * s - before, (hi - 1) * s + span - before
        first, last = max(start, 0), min(stop, n)
        if first >= last:
            return None
        slices.append(slice(first, last))
        sizes.append(last - first)
        pads.append((first - start, stop - last))
    return replace(geometry, input_size=tuple(sizes), pads=tuple(pads)), tuple(slices)


def outputs_reaching(geometry: ConvGeometry, inputs: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Per axis, the outputs ``[first, last)`` whose windows reach inputs ``[lo, hi)`` (dX of those
    inputs needs exactly these); ``first >= last`` where none does.

    >>> g = conv_geometry((1, 1, 10), (1, 1, 3), ndim=1, stride=2, padding=1)
    >>> outputs_reaching(g, [(4, 6)])
    [(2, 4)]
    """
    outputs = []
    for (lo, hi), (before, _), s, span, o in zip(
        inputs, geometry.pads, geometry.stride, geometry.span, geometry.output_size
    ):
        first = max(0, -(-(lo + before - span + 1) // s))
        outputs.append((first, min(o, (hi - 1 + before) // s + 1)))
    return outputs
