"""Transposed convolution, as ``torch.nn.functional.conv_transpose{1,2,3}d``.

A transposed convolution is the input gradient of a convolution: with the kernel ``(C_in, F // g, *k)``
read as a convolution kernel from F channels to C_in filters, ``conv_transpose(x)`` is
``conv_input_grad(x, kernel, output_shape)``. Its gradients are the other two passes of that same
convolution: ``dx = conv(dz, kernel)`` and ``dkernel = conv_weight_grad(x, dz)``. No code of its own
computes anything; this module only works out the equivalent convolution's geometry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import _gradients
from ._api import (
    _bias_to_layout,
    _check_bias_mode,
    _check_bias_shape,
    _check_memory,
    _check_method,
    _prepare_in_layout,
    _to_layout,
)
from ._blocks import _pad_or_crop
from ._contract import resolve_workspace
from ._geometry import ConvGeometry, IntOrTuple, _as_int, conv_geometry, normalize_positive_ints, resolve_padding

Array = Any

__all__ = ["conv_transpose", "conv_transpose_backward"]

_TRANSPOSED_CAUSE = "stride {stride}, padding {padding}, output_padding {output_padding} and dilation {dilation}"


def _output_padding(
    value: IntOrTuple, ndim: int, stride: tuple[int, ...], dilation: tuple[int, ...]
) -> tuple[int, ...]:
    values = value if isinstance(value, Sequence) and not isinstance(value, str) else (value,) * ndim
    if len(values) != ndim:
        raise ValueError(f"output_padding must be an int or {ndim} ints, got {value!r}")
    result = tuple(_as_int(v, "output_padding") for v in values)
    for axis, (extra, s, d) in enumerate(zip(result, stride, dilation)):
        if not 0 <= extra < max(s, d):
            raise ValueError(
                f"output_padding must be non-negative and smaller than the stride or the dilation, got {value!r} "
                f"(axis {axis}: stride {s}, dilation {d})"
            )
    return result


def _geometry(
    x_shape: tuple[int, ...],
    kernel_shape: tuple[int, ...],
    ndim: int,
    *,
    stride: IntOrTuple,
    padding: Any,
    output_padding: IntOrTuple,
    dilation: IntOrTuple,
    groups: int,
) -> tuple[ConvGeometry, tuple[int, ...]]:
    """The convolution whose input gradient this transposed convolution is, and the zero rows to append.

    Along an axis, the full transposed result has ``M = (n - 1) * s + d * (k - 1) + 1`` rows; the
    output is rows ``[before, before + out)`` of it, extended by zeros past ``M``. Output padding ``e``
    takes ``min(after, e)`` of those rows back from the padding after; the other ``e - min(after, e)``
    are beyond ``M``, no kernel tap reaches them, and they are appended as zeros. (Taking them into
    the convolution instead would give it more outputs than x has once ``e >= s``.)
    """
    if len(x_shape) != ndim + 2:
        raise ValueError(f"x must be {ndim + 2}-D (N, C_in, *spatial), got shape {x_shape}")
    if isinstance(padding, str):
        raise ValueError(f"padding of a transposed convolution must be an int or per-axis ints, got {padding!r}")
    stride_t = normalize_positive_ints(stride, "stride", ndim)
    dilation_t = normalize_positive_ints(dilation, "dilation", ndim)
    kernel_size = kernel_shape[2:]
    pads = resolve_padding(padding, x_shape[2:], kernel_size, stride_t, dilation_t)
    extra = _output_padding(output_padding, ndim, stride_t, dilation_t)
    out_size = tuple(
        (n - 1) * s - before - after + d * (k - 1) + e + 1
        for n, s, (before, after), d, k, e in zip(x_shape[2:], stride_t, pads, dilation_t, kernel_size, extra)
    )
    if any(size < 1 for size in out_size):
        raise ValueError(f"the padding {padding!r} leaves no output (output size {out_size}) for x of shape {x_shape}")
    groups = _as_int(groups, "groups")
    if groups < 1:
        raise ValueError(f"groups must be positive, got {groups}")
    taken = tuple(min(after, e) for (_, after), e in zip(pads, extra))
    appended = tuple(e - t for e, t in zip(extra, taken))
    geometry = conv_geometry(
        (x_shape[0], kernel_shape[1] * groups, *(o - a for o, a in zip(out_size, appended))),
        kernel_shape,
        ndim=ndim,
        stride=stride_t,
        padding=tuple((before, after - t) for (before, after), t in zip(pads, taken)),
        dilation=dilation_t,
        groups=groups,
        input_name="the transposed convolution's output",
    )
    if geometry.output_shape[1:] != tuple(x_shape[1:]):
        raise ValueError(
            f"kernel must be (C_in, F // groups, *k) with C_in = {x_shape[1]} input channels of x, "
            f"got kernel shape {kernel_shape} for x of shape {x_shape}"
        )
    return geometry, appended


def conv_transpose(
    x: Array,
    kernel: Array,
    bias: Array | None = None,
    *,
    stride: IntOrTuple = 1,
    padding: Any = 0,
    output_padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    layout: str = "channels_first",
    method: str = "auto",
    workspace_bytes: int | None = None,
) -> Array:
    """Transposed convolution with torch's semantics, any number of spatial axes.

    x ``(N, C_in, *spatial)``; kernel ``(C_in, F // groups, *k)``; bias ``(F,)`` or ``(F, *out)``;
    output ``(N, F, *out)`` with ``out = (n - 1) * s - 2 * p + d * (k - 1) + output_padding + 1``
    per axis. ``padding`` is an int, one int per axis, or one ``(before, after)`` pair per axis.

    >>> import numpy as np
    >>> conv_transpose(np.array([[[1.0, 2.0]]]), np.array([[[1.0, 1.0, 1.0]]]), stride=2)
    array([[[1., 1., 3., 2., 2.]]])
    """
    _check_method(method)
    xp, ndim, arrays = _prepare_in_layout(layout, None, x=x, kernel=kernel, bias=bias)
    x, kernel, bias = arrays["x"], arrays["kernel"], arrays["bias"]
    params = {"stride": stride, "padding": padding, "output_padding": output_padding, "dilation": dilation}
    geometry, appended = _geometry(tuple(x.shape), tuple(kernel.shape), ndim, groups=groups, **params)
    _check_memory(geometry, xp, x, cause=_TRANSPOSED_CAUSE.format(**params))
    z = _gradients.input_grad(x, kernel, xp, geometry, method, resolve_workspace(workspace_bytes))
    if any(appended):
        z = _pad_or_crop(z, xp, tuple((0, a) for a in appended))
    if bias is not None:
        _check_bias_shape(bias, geometry.in_channels, tuple(z.shape[2:]))
        if bias.ndim == 1:
            bias = xp.reshape(bias, (geometry.in_channels,) + (1,) * ndim)
        z = z + bias
    return _to_layout(z, xp, layout)


def conv_transpose_backward(
    dz: Array,
    x: Array,
    kernel: Array,
    *,
    stride: IntOrTuple = 1,
    padding: Any = 0,
    output_padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    bias: str | None = "tied",
    layout: str = "channels_first",
    method: str = "auto",
    workspace_bytes: int | None = None,
) -> tuple[Array, Array, Array | None]:
    """Gradients ``(dx, dkernel, dbias)`` of :func:`conv_transpose`; ``dz`` has the output's shape.

    >>> import numpy as np
    >>> conv_transpose_backward(np.ones((1, 1, 5)), np.array([[[1.0, 2.0]]]), np.ones((1, 1, 3)), stride=2)
    (array([[[3., 3.]]]), array([[[3., 3., 3.]]]), array([5.]))
    """
    _check_bias_mode(bias)
    _check_method(method)
    xp, ndim, arrays = _prepare_in_layout(layout, None, dz=dz, x=x, kernel=kernel)
    dz, x, kernel = arrays["dz"], arrays["x"], arrays["kernel"]
    params = {"stride": stride, "padding": padding, "output_padding": output_padding, "dilation": dilation}
    geometry, appended = _geometry(tuple(x.shape), tuple(kernel.shape), ndim, groups=groups, **params)
    output_shape = (*geometry.input_shape[:2], *(n + a for n, a in zip(geometry.input_size, appended)))
    if tuple(dz.shape) != output_shape:
        raise ValueError(
            f"dz must have the transposed convolution's output shape {output_shape}, got {tuple(dz.shape)}"
        )
    _check_memory(geometry, xp, x, cause=_TRANSPOSED_CAUSE.format(**params))
    workspace = resolve_workspace(workspace_bytes)
    reached = dz[(..., *(slice(0, n) for n in geometry.input_size))] if any(appended) else dz
    dx = _gradients.forward(reached, kernel, None, xp, geometry, workspace, method)
    dkernel = _gradients.weight_grad(x, reached, xp, geometry, method, workspace)
    dbias = _gradients.bias_grad(dz, xp, geometry, bias)
    return _to_layout(dx, xp, layout), dkernel, _bias_to_layout(dbias, xp, layout)
