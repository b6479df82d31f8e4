"""Transposed convolution, as ``torch.nn.functional.conv_transpose{1,2,3}d``.

A transposed convolution is the input gradient of a convolution: with the kernel ``(C_in, F // g, *k)``
read as a convolution kernel from F channels to C_in filters, ``conv_transpose(x)`` is
``conv_input_grad(x, kernel, output_shape)``. Its gradients are the other two passes of that same
convolution: ``dx = conv(dz, kernel)`` and ``dkernel = conv_weight_grad(x, dz)``. No code of its own
computes anything; this module only works out the equivalent convolution's geometry.
"""

from __future__ import annotations

from collections.abc import Mapping

from . import _arguments, _gradients
from ._blocks import conjugate, pad_or_crop
from ._geometry import ConvGeometry, as_int, conv_geometry, int_tuple, resolve_padding
from .typing import Array, IntOrTuple, TransposeBackwardOptions, TransposeOptions, Unpack

_OPTIONS = TransposeOptions.__optional_keys__
_BACKWARD_OPTIONS = TransposeBackwardOptions.__optional_keys__

_TRANSPOSED_CAUSE = "stride {stride}, padding {padding}, output_padding {output_padding} and dilation {dilation}"


def _output_padding(
    value: IntOrTuple, ndim: int, stride: tuple[int, ...], dilation: tuple[int, ...]
) -> tuple[int, ...]:
    result = int_tuple(value, "output_padding", ndim, minimum=0)
    for axis, (extra, s, d) in enumerate(zip(result, stride, dilation)):
        if extra >= max(s, d):
            raise ValueError(
                f"output_padding must be non-negative and smaller than the stride or the dilation, got {value!r} "
                f"(axis {axis}: stride {s}, dilation {d})"
            )
    return result


def _geometry(
    x_shape: tuple[int, ...], kernel_shape: tuple[int, ...], ndim: int, options: _arguments.Options
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
    if len(kernel_shape) != ndim + 2:
        raise ValueError(f"kernel must be {ndim + 2}-D (C_in, F // groups, *kernel_size), got shape {kernel_shape}")
    padding = options.padding
    if isinstance(padding, str):
        raise ValueError(f"padding of a transposed convolution must be an int or per-axis ints, got {padding!r}")
    stride_t = int_tuple(options.stride, "stride", ndim)
    dilation_t = int_tuple(options.dilation, "dilation", ndim)
    kernel_size = kernel_shape[2:]
    pads = resolve_padding(padding, x_shape[2:], kernel_size, stride_t, dilation_t)
    extra = _output_padding(options.output_padding, ndim, stride_t, dilation_t)
    out_size = tuple(
        (n - 1) * s - before - after + d * (k - 1) + e + 1
        for n, s, (before, after), d, k, e in zip(x_shape[2:], stride_t, pads, dilation_t, kernel_size, extra)
    )
    if any(size < 1 for size in out_size):
        raise ValueError(f"the padding {padding!r} leaves no output (output size {out_size}) for x of shape {x_shape}")
    groups = as_int(options.groups, "groups")
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


def _output_size(geometry: ConvGeometry, appended: tuple[int, ...]) -> tuple[int, ...]:
    """The transposed convolution's output size: the equivalent convolution's input, and the zeros appended."""
    return tuple(n + a for n, a in zip(geometry.input_size, appended))


def _cause(options: _arguments.Options) -> str:
    return (
        f"stride {options.stride}, padding {options.padding}, output_padding {options.output_padding} "
        f"and dilation {options.dilation}"
    )


def _forward(function: str, ndim: int | None, x: Array, kernel: Array, bias: Array | None, given: Mapping) -> Array:
    options = _arguments.resolve_options(function, given, _OPTIONS, padding=0)
    xp, ndim, arrays = _arguments.prepare_in_layout(options.layout, ndim, x=x, kernel=kernel, bias=bias)
    x, kernel, bias = arrays["x"], arrays["kernel"], arrays["bias"]
    geometry, appended = _geometry(tuple(x.shape), tuple(kernel.shape), ndim, options)
    if bias is not None:
        _arguments.check_bias_shape(bias, geometry.in_channels, _output_size(geometry, appended))
    _arguments.check_memory(geometry, xp, x, cause=_cause(options), method=options.method)
    z = _gradients.input_grad(x, kernel, xp, geometry, options.method, options.workspace)
    if any(appended):
        z = pad_or_crop(z, xp, tuple((0, a) for a in appended))
    return _arguments.to_layout(_gradients.add_bias(z, bias, xp), xp, options.layout)


def _backward(
    function: str, ndim: int | None, dz: Array, x: Array, kernel: Array, given: Mapping
) -> tuple[Array, Array, Array | None]:
    options = _arguments.resolve_options(function, given, _BACKWARD_OPTIONS, padding=0)
    xp, ndim, arrays = _arguments.prepare_in_layout(options.layout, ndim, dz=dz, x=x, kernel=kernel)
    dz, x, kernel = arrays["dz"], arrays["x"], arrays["kernel"]
    geometry, appended = _geometry(tuple(x.shape), tuple(kernel.shape), ndim, options)
    output_size = _output_size(geometry, appended)
    mode = _arguments.bias_mode(options.bias, geometry.in_channels, output_size)
    _arguments.check_dz(dz, (*geometry.input_shape[:2], *output_size), "the transposed convolution's output shape")
    _arguments.check_memory(geometry, xp, x, cause=_cause(options), method=options.method)
    workspace = options.workspace
    reached = dz[(..., *(slice(0, n) for n in geometry.input_size))] if any(appended) else dz
    dx = _gradients.forward(reached, conjugate(kernel, xp), None, xp, geometry, workspace, options.method)
    dkernel = _gradients.weight_grad(conjugate(x, xp), reached, xp, geometry, options.method, workspace)
    dbias = _gradients.bias_grad(dz, xp, geometry, mode)
    return _arguments.to_layout(dx, xp, options.layout), dkernel, _arguments.bias_to_layout(dbias, xp, options)


def conv_transpose(x: Array, kernel: Array, bias: Array | None = None, **options: Unpack[TransposeOptions]) -> Array:
    """Transposed convolution with torch's semantics, any number of spatial axes.

    x ``(N, C_in, *spatial)``; kernel ``(C_in, F // groups, *k)``; bias ``(F,)`` or ``(F, *out)``;
    output ``(N, F, *out)`` with ``out = (n - 1) * s - 2 * p + d * (k - 1) + output_padding + 1``
    per axis. The options (``TransposeOptions``) are :func:`xpconv.conv`'s, except that ``padding``
    is an int, one int per axis, or one ``(before, after)`` pair per axis (default 0), and
    ``output_padding`` (default 0; smaller than the stride or the dilation) adds rows at the end.

    >>> import numpy as np
    >>> conv_transpose(np.array([[[1.0, 2.0]]]), np.array([[[1.0, 1.0, 1.0]]]), stride=2)
    array([[[1., 1., 3., 2., 2.]]])
    """
    return _forward("conv_transpose", None, x, kernel, bias, options)


def conv_transpose_backward(
    dz: Array, x: Array, kernel: Array, **options: Unpack[TransposeBackwardOptions]
) -> tuple[Array, Array, Array | None]:
    """Gradients ``(dx, dkernel, dbias)`` of :func:`conv_transpose`; ``dz`` has the output's shape,
    ``bias`` is ``"tied"`` (default), ``"untied"``, None or the forward's bias array.

    >>> import numpy as np
    >>> conv_transpose_backward(np.ones((1, 1, 5)), np.array([[[1.0, 2.0]]]), np.ones((1, 1, 3)), stride=2)
    (array([[[3., 3.]]]), array([[[3., 3., 3.]]]), array([5.]))
    """
    return _backward("conv_transpose_backward", None, dz, x, kernel, options)


def conv_transpose1d(x: Array, kernel: Array, bias: Array | None = None, **options: Unpack[TransposeOptions]) -> Array:
    """1-D :func:`conv_transpose`, as ``torch.nn.functional.conv_transpose1d``: x ``(N, C_in, L)``.

    >>> import numpy as np
    >>> conv_transpose1d(np.array([[[1.0, 2.0]]]), np.array([[[1.0, 10.0]]]), stride=3, output_padding=1)
    array([[[ 1., 10.,  0.,  2., 20.,  0.]]])
    """
    return _forward("conv_transpose1d", 1, x, kernel, bias, options)


def conv_transpose1d_backward(
    dz: Array, x: Array, kernel: Array, **options: Unpack[TransposeBackwardOptions]
) -> tuple[Array, Array, Array | None]:
    """1-D :func:`conv_transpose_backward`.

    >>> import numpy as np
    >>> dx, dkernel, dbias = conv_transpose1d_backward(np.ones((1, 1, 3)), np.ones((1, 1, 2)), np.ones((1, 1, 2)))
    >>> dx, dkernel, dbias
    (array([[[2., 2.]]]), array([[[2., 2.]]]), array([3.]))
    """
    return _backward("conv_transpose1d_backward", 1, dz, x, kernel, options)


def conv_transpose2d(x: Array, kernel: Array, bias: Array | None = None, **options: Unpack[TransposeOptions]) -> Array:
    """2-D :func:`conv_transpose`, as ``torch.nn.functional.conv_transpose2d``: x ``(N, C_in, H, W)``,
    kernel ``(C_in, F // groups, Kh, Kw)``. Stride 2 with a 2x2 kernel doubles an image's size:

    >>> import numpy as np
    >>> conv_transpose2d(np.array([[[[1.0, 2.0]]]]), np.ones((1, 1, 2, 2)), stride=2)
    array([[[[1., 1., 2., 2.],
             [1., 1., 2., 2.]]]])
    """
    return _forward("conv_transpose2d", 2, x, kernel, bias, options)


def conv_transpose2d_backward(
    dz: Array, x: Array, kernel: Array, **options: Unpack[TransposeBackwardOptions]
) -> tuple[Array, Array, Array | None]:
    """2-D :func:`conv_transpose_backward`.

    >>> import numpy as np
    >>> dz, x, kernel = np.ones((1, 1, 2, 4)), np.ones((1, 1, 1, 2)), np.ones((1, 1, 2, 2))
    >>> dx, dkernel, dbias = conv_transpose2d_backward(dz, x, kernel, stride=2)
    >>> dx, dkernel.shape, dbias
    (array([[[[4., 4.]]]]), (1, 1, 2, 2), array([8.]))
    """
    return _backward("conv_transpose2d_backward", 2, dz, x, kernel, options)


def conv_transpose3d(x: Array, kernel: Array, bias: Array | None = None, **options: Unpack[TransposeOptions]) -> Array:
    """3-D :func:`conv_transpose`, as ``torch.nn.functional.conv_transpose3d``: x ``(N, C_in, D, H, W)``.

    >>> import numpy as np
    >>> conv_transpose3d(np.ones((1, 4, 2, 2, 2)), np.ones((4, 8, 2, 2, 2)), stride=2, padding=1).shape
    (1, 8, 2, 2, 2)
    """
    return _forward("conv_transpose3d", 3, x, kernel, bias, options)


def conv_transpose3d_backward(
    dz: Array, x: Array, kernel: Array, **options: Unpack[TransposeBackwardOptions]
) -> tuple[Array, Array, Array | None]:
    """3-D :func:`conv_transpose_backward`.

    >>> import numpy as np
    >>> dz, x, kernel = np.ones((1, 2, 3, 3, 3)), np.ones((1, 1, 2, 2, 2)), np.ones((1, 2, 2, 2, 2))
    >>> dx, dkernel, dbias = conv_transpose3d_backward(dz, x, kernel)
    >>> dx.shape, dkernel.shape, dbias
    ((1, 1, 2, 2, 2), (1, 2, 2, 2, 2), array([27., 27.]))
    """
    return _backward("conv_transpose3d_backward", 3, dz, x, kernel, options)
