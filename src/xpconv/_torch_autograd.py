"""The three bilinear passes of a convolution as ``torch.autograd.Function`` s, each differentiated by the others.

With ``x`` the input, ``w`` the kernel and ``dz`` an output-shaped array:

- :class:`Correlate` ``(x, w, b) -> z``: the forward pass (``xpconv.conv``);
- :class:`InputGrad` ``(dz, w) -> dx``: its transpose in ``x`` (``xpconv.conv_input_grad`` without conjugation);
- :class:`WeightGrad` ``(dz, x) -> dw``: its transpose in ``w`` (``xpconv.conv_weight_grad`` likewise).

Each one's backward is made of the three (complex arguments conjugated as torch autograd's convention
asks: the gradient is the adjoint), so a second derivative, a third, and ``torch.func`` transforms of
them are xpconv's explicit passes again, never autograd traced through xpconv's internals. Each
``vmap`` rule folds a mapped axis into the batch (where the pass is independent per sample) or into
the groups (a mapped kernel, or dK: every mapped copy is a convolution of its own), as torch's
batching rule for its own convolution does.

``Spec`` is the plain-int geometry a Function needs besides its tensors (hashable, never traced).

Each Function's forward calls a custom operator (``torch.ops.xpconv.*``) wherever torch transforms
it: to torch, an xpconv pass is one opaque operation with a shape function, so ``torch.compile``
keeps it in its graph without tracing xpconv's Python, and the legacy vmap that ``gradcheck``'s
batched check runs loops it per sample (it cannot follow the writes xpconv makes into its own
buffers). In plain eager mode the forward calls the same pass directly (:func:`_plain`): the
operator's dispatch costs more than a small layer's convolution.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch

from . import _bridge
from ._bridge import Spec
from ._geometry import conv_geometry


def _arguments(spec: Spec) -> tuple:
    """A Spec as the custom operators' trailing arguments (their schema has no tuples of pairs)."""
    flat = [side for pair in spec.pads for side in pair]
    return list(spec.stride), flat, list(spec.dilation), spec.groups, spec.method, spec.workspace_bytes


def _spec(stride: list[int], pads: list[int], dilation: list[int], groups: int, method: str, workspace: int | None):
    pairs = tuple((pads[i], pads[i + 1]) for i in range(0, len(pads), 2))
    return Spec(tuple(stride), pairs, tuple(dilation), groups, method, workspace)  # type: ignore[arg-type]


def _plain(*tensors: torch.Tensor | None) -> bool:
    """Whether a pass may run xpconv's Python directly rather than through its custom operator: eager
    mode, on plain tensors (no torch.compile tracing, no fake or functorch-wrapped tensors, such as
    the legacy vmap of ``gradcheck``'s batched check). The operator's dispatch costs ~250 us a call
    (a 3x3 layer's forward and backward took 1.2 ms through the operators, 0.4 ms by torch)."""
    if torch.compiler.is_compiling():
        return False
    return all(t is None or (type(t) in _PLAIN_TYPES and not _transformed(t)) for t in tensors)


_PLAIN_TYPES = (torch.Tensor, torch.nn.Parameter)


def _transformed(t: torch.Tensor) -> bool:
    """A tensor of torch.func's transforms, or of the legacy vmap."""
    return torch._C._functorch.is_functorch_wrapped_tensor(t) or torch._C._functorch.is_legacy_batchedtensor(t)


def _correlate_now(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, spec: Spec) -> torch.Tensor:
    z = _bridge.correlate(x, w, spec)
    return _in_format((z if b is None else z + b.reshape(-1, *(1,) * (z.ndim - 2))), x)


def _input_grad_now(dz: torch.Tensor, w: torch.Tensor, spec: Spec, x_shape: Any, channels_last: bool) -> torch.Tensor:
    dx = _bridge.input_grad(dz, w, spec, list(x_shape))
    return dx.contiguous(memory_format=_format_of(dx.ndim, channels_last))


def _weight_grad_now(dz: torch.Tensor, x: torch.Tensor, spec: Spec, w_shape: Any) -> torch.Tensor:
    return _bridge.weight_grad(dz, x, spec, list(w_shape)).contiguous()


@torch.library.custom_op("xpconv::correlate", mutates_args=())
def _correlate(
    x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, stride: list[int], pads: list[int],
    dilation: list[int], groups: int, method: str, workspace: int | None,
) -> torch.Tensor:  # fmt: skip
    return _correlate_now(x, w, b, _spec(stride, pads, dilation, groups, method, workspace))


@torch.library.custom_op("xpconv::input_grad", mutates_args=())
def _input_grad(
    dz: torch.Tensor, w: torch.Tensor, x_shape: list[int], channels_last: bool, stride: list[int], pads: list[int],
    dilation: list[int], groups: int, method: str, workspace: int | None,
) -> torch.Tensor:  # fmt: skip
    return _input_grad_now(dz, w, _spec(stride, pads, dilation, groups, method, workspace), x_shape, channels_last)


@torch.library.custom_op("xpconv::weight_grad", mutates_args=())
def _weight_grad(
    dz: torch.Tensor, x: torch.Tensor, w_shape: list[int], stride: list[int], pads: list[int],
    dilation: list[int], groups: int, method: str, workspace: int | None,
) -> torch.Tensor:  # fmt: skip
    return _weight_grad_now(dz, x, _spec(stride, pads, dilation, groups, method, workspace), w_shape)


def _memory_format(like: torch.Tensor) -> torch.memory_format:
    """Channels-last where ``like`` is laid out so (as torch's own convolution answers such input), else
    contiguous: a result's strides must be those its shape function promises (torch.compile checks)."""
    channels_last = {4: torch.channels_last, 5: torch.channels_last_3d}.get(like.ndim)
    if channels_last is not None and not like.is_contiguous() and like.is_contiguous(memory_format=channels_last):
        return channels_last
    return torch.contiguous_format


def _in_format(result: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return result.contiguous(memory_format=_memory_format(like))


def channels_last(like: torch.Tensor) -> bool:
    """Whether ``like`` is laid out channels-last: dX takes its input's layout, as torch's convolution_backward does."""
    return _memory_format(like) != torch.contiguous_format


def _format_of(ndim: int, channels_last: bool) -> torch.memory_format:
    if not channels_last:
        return torch.contiguous_format
    return torch.channels_last if ndim == 4 else torch.channels_last_3d


def _result(like: torch.Tensor, shape: Any, *others: torch.Tensor | None, memory_format: Any = None) -> torch.Tensor:
    """An empty result of the promoted dtype, laid out as the operators' results are."""
    dtype = like.dtype
    for other in others:
        if other is not None:
            dtype = torch.promote_types(dtype, other.dtype)
    return torch.empty(
        tuple(shape), dtype=dtype, device=like.device, memory_format=memory_format or torch.contiguous_format
    )


@_correlate.register_fake
def _(x, w, b, stride, pads, dilation, groups, method, workspace):
    spec = _spec(stride, pads, dilation, groups, method, workspace)
    geometry = conv_geometry(tuple(x.shape), tuple(w.shape), ndim=x.ndim - 2, **spec.geometry)
    return _result(x, geometry.output_shape, w, b, memory_format=_memory_format(x))


@_input_grad.register_fake
def _(dz, w, x_shape, channels_last, stride, pads, dilation, groups, method, workspace):
    return _result(dz, x_shape, w, memory_format=_format_of(len(x_shape), channels_last))


@_weight_grad.register_fake
def _(dz, x, w_shape, stride, pads, dilation, groups, method, workspace):
    return _result(dz, w_shape, x)


def _conj(a: torch.Tensor) -> torch.Tensor:
    return a.conj() if a.is_complex() else a


def _bias_sum(dz: torch.Tensor) -> torch.Tensor:
    return dz.sum(dim=(0, *range(2, dz.ndim)))


class Correlate(torch.autograd.Function):
    """``z = conv(x, w) + b`` (``b`` may be None)."""

    @staticmethod
    def forward(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, spec: Spec) -> torch.Tensor:
        if _plain(x, w, b):
            return _correlate_now(x, w, b, spec)
        return _correlate(x, w, b, *_arguments(spec))

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: torch.Tensor) -> None:
        x, w, _, ctx.spec = inputs
        ctx.save_for_backward(x, w)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple:
        x, w = ctx.saved_tensors
        need_x, need_w, need_b, _ = ctx.needs_input_grad
        gx = InputGrad.apply(g, _conj(w), ctx.spec, tuple(x.shape), channels_last(x)) if need_x else None
        gw = WeightGrad.apply(g, _conj(x), ctx.spec, tuple(w.shape)) if need_w else None
        gb = _bias_sum(g) if need_b else None
        return gx, gw, gb, None

    @staticmethod
    def vmap(info: Any, in_dims: tuple, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, spec: Spec):
        x_dim, w_dim, b_dim, _ = in_dims
        copies = info.batch_size
        if w_dim is None:
            z = Correlate.apply(_into_batch(x, x_dim), w, None if b_dim is not None else b, spec)
            z = z.reshape(copies, -1, *z.shape[1:]) if x_dim is not None else z.unsqueeze(0).expand(copies, *z.shape)
            if b is not None and b_dim is not None:
                z = z + b.movedim(b_dim, 0).reshape(copies, 1, -1, *(1,) * (z.ndim - 3))
            return z, 0
        bias = None
        if b is not None:
            bias = b.movedim(b_dim, 0).reshape(-1) if b_dim is not None else b.repeat(copies)
        z = Correlate.apply(_into_channels(x, x_dim, copies), _into_filters(w, w_dim), bias, spec.times(copies))
        return _out_of_channels(z, copies), 1


class InputGrad(torch.autograd.Function):
    """``dx = A(w)^T dz``: the transpose in ``x`` of :class:`Correlate`, bilinear; ``x_shape`` is dx's shape."""

    @staticmethod
    def forward(
        dz: torch.Tensor, w: torch.Tensor, spec: Spec, x_shape: tuple[int, ...], channels_last: bool
    ) -> torch.Tensor:
        if _plain(dz, w):
            return _input_grad_now(dz, w, spec, x_shape, channels_last)
        return _input_grad(dz, w, list(x_shape), channels_last, *_arguments(spec))

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: torch.Tensor) -> None:
        dz, w, ctx.spec, _, _ = inputs
        ctx.save_for_backward(dz, w)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple:
        dz, w = ctx.saved_tensors
        need_dz, need_w, *_ = ctx.needs_input_grad
        gdz = Correlate.apply(g, _conj(w), None, ctx.spec) if need_dz else None
        gw = WeightGrad.apply(_conj(dz), g, ctx.spec, tuple(w.shape)) if need_w else None
        return gdz, gw, None, None, None

    @staticmethod
    def vmap(info: Any, in_dims: tuple, dz, w, spec: Spec, x_shape: tuple[int, ...], channels_last: bool):
        dz_dim, w_dim, *_ = in_dims
        copies = info.batch_size
        if w_dim is None:
            folded = _into_batch(dz, dz_dim)
            dx = InputGrad.apply(folded, w, spec, (folded.shape[0], *x_shape[1:]), False)
            return dx.reshape(copies, -1, *dx.shape[1:]), 0
        shape = (x_shape[0], copies * x_shape[1], *x_shape[2:])
        dz, w = _into_channels(dz, dz_dim, copies), _into_filters(w, w_dim)
        dx = InputGrad.apply(dz, w, spec.times(copies), shape, False)
        return _out_of_channels(dx, copies), 1


class WeightGrad(torch.autograd.Function):
    """``dw = B(x)^T dz``: the transpose in ``w`` of :class:`Correlate`, bilinear; ``w_shape`` is dw's shape."""

    @staticmethod
    def forward(dz: torch.Tensor, x: torch.Tensor, spec: Spec, w_shape: tuple[int, ...]) -> torch.Tensor:
        if _plain(dz, x):
            return _weight_grad_now(dz, x, spec, w_shape)
        return _weight_grad(dz, x, list(w_shape), *_arguments(spec))

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: torch.Tensor) -> None:
        dz, x, ctx.spec, _ = inputs
        ctx.save_for_backward(dz, x)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple:
        dz, x = ctx.saved_tensors
        need_dz, need_x, _, _ = ctx.needs_input_grad
        gdz = Correlate.apply(_conj(x), g, None, ctx.spec) if need_dz else None
        gx = InputGrad.apply(_conj(dz), g, ctx.spec, tuple(x.shape), channels_last(x)) if need_x else None
        return gdz, gx, None, None

    @staticmethod
    def vmap(info: Any, in_dims: tuple, dz: torch.Tensor, x: torch.Tensor, spec: Spec, w_shape: tuple[int, ...]):
        dz_dim, x_dim, _, _ = in_dims
        copies = info.batch_size
        # dK sums over the batch: a mapped axis cannot join it, every copy is a group of its own.
        shape = (copies * w_shape[0], *w_shape[1:])
        dw = WeightGrad.apply(
            _into_channels(dz, dz_dim, copies), _into_channels(x, x_dim, copies), spec.times(copies), shape
        )
        return dw.reshape(copies, *w_shape), 0


# Function.apply binds its arguments to the forward's signature on every call (for setup_context),
# and inspect rebuilds a signature each time unless the function carries one: ~50 us a call.
for _function in (Correlate, InputGrad, WeightGrad):
    _function.forward.__signature__ = inspect.signature(_function.forward)  # type: ignore[union-attr]


def _into_batch(a: torch.Tensor, dim: int | None) -> torch.Tensor:
    """``(B, N, ...)`` (the mapped axis at ``dim``) as ``(B * N, ...)``; an unmapped ``a`` as it is."""
    if dim is None:
        return a
    moved = a.movedim(dim, 0)
    return moved.reshape(math.prod(moved.shape[:2]), *moved.shape[2:])


def _into_channels(a: torch.Tensor, dim: int | None, copies: int) -> torch.Tensor:
    """``(N, C, ...)`` mapped ``copies`` times (at ``dim``; unmapped: repeated) as ``(N, copies * C, ...)``,
    copy-major, so that copy ``i`` of group ``j`` is group ``i * groups + j``."""
    if dim is None:
        return a.repeat(1, copies, *(1,) * (a.ndim - 2))
    moved = a.movedim(dim, 1)
    return moved.reshape(moved.shape[0], copies * moved.shape[2], *moved.shape[3:])


def _into_filters(w: torch.Tensor, dim: int) -> torch.Tensor:
    """A mapped kernel ``(copies, F, C // g, *k)`` as ``(copies * F, C // g, *k)``."""
    moved = w.movedim(dim, 0)
    return moved.reshape(moved.shape[0] * moved.shape[1], *moved.shape[2:])


def _out_of_channels(a: torch.Tensor, copies: int) -> torch.Tensor:
    """``(N, copies * C, ...)`` as ``(N, copies, C, ...)``: the mapped axis at 1."""
    return a.reshape(a.shape[0], copies, a.shape[1] // copies, *a.shape[2:])
