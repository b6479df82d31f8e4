"""The public convolution functions: check the arguments, then call ``_gradients``.

Each public function is thin: ``_arguments`` checks its keyword options and arrays and moves
channels-last data to channels-first (a view), ``_geometry`` works out the shapes from plain ints,
and the array code in ``_gradients`` computes. ``conv``, ``conv_backward``, ``conv_input_grad`` and
``conv_weight_grad`` take any number of spatial axes (``kernel.ndim - 2``); ``conv1d``, ``conv2d``
and ``conv3d`` and their gradients are the same computations with that number fixed. Their keyword
options are typed once, in ``xpconv.typing`` (``ConvOptions``, ``BackwardOptions``).

``method="dilate"`` is the method of the tutorial "3.2.3 Backward Propagation Convolution layer
(Vectorized)": dz dilated by the stride, padded and correlated with the kernel rotated 180 degrees.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from . import _gradients
from ._arguments import (
    Options,
    bias_mode,
    bias_to_layout,
    check_bias_shape,
    check_dz,
    check_layout,
    check_memory,
    prepare_in_layout,
    resolve_options,
    shape_argument,
    shape_to_channels_first,
    spatial_dims,
    to_layout,
)
from ._blocks import conjugate
from ._geometry import ConvGeometry, conv_geometry
from .typing import Array, BackwardOptions, ConvOptions, IntOrTuple, Layout, Padding, Unpack

_CONV_OPTIONS = ConvOptions.__optional_keys__
_BACKWARD_OPTIONS = BackwardOptions.__optional_keys__


def _geometry(
    input_shape: Sequence[int],
    kernel_shape: Sequence[int],
    ndim: int,
    options: Options,
    input_name: str = "x",
    kernel_name: str = "kernel",
) -> ConvGeometry:
    return conv_geometry(
        input_shape, kernel_shape, ndim=ndim, **options.geometry, input_name=input_name, kernel_name=kernel_name
    )


def _dz_shape(dz: Array, geometry: ConvGeometry) -> None:
    shapes = f"(from x {geometry.input_shape} and kernel {geometry.kernel_shape})"
    check_dz(dz, geometry.output_shape, f"the forward output's shape {shapes}:")


def _forward(function: str, ndim: int | None, x: Array, kernel: Array, bias: Array | None, given: Mapping) -> Array:
    options = resolve_options(function, given, _CONV_OPTIONS)
    xp, ndim, arrays = prepare_in_layout(options.layout, ndim, x=x, kernel=kernel, bias=bias)
    x, kernel, bias = arrays["x"], arrays["kernel"], arrays["bias"]
    geometry = _geometry(x.shape, kernel.shape, ndim, options)
    if bias is not None:
        check_bias_shape(bias, geometry.out_channels, geometry.output_size)
    check_memory(geometry, xp, x, method=options.method)
    z = _gradients.forward(x, kernel, bias, xp, geometry, options.workspace, options.method)
    return to_layout(z, xp, options.layout)


def _backward(
    function: str, ndim: int | None, dz: Array, x: Array, kernel: Array, given: Mapping
) -> tuple[Array, Array, Array | None]:
    options = resolve_options(function, given, _BACKWARD_OPTIONS)
    xp, ndim, arrays = prepare_in_layout(options.layout, ndim, dz=dz, x=x, kernel=kernel)
    dz, x, kernel = arrays["dz"], arrays["x"], arrays["kernel"]
    geometry = _geometry(x.shape, kernel.shape, ndim, options)
    mode = bias_mode(options.bias, geometry.out_channels, geometry.output_size)
    _dz_shape(dz, geometry)
    check_memory(geometry, xp, x, method=options.method)
    dx, dkernel = _gradients.input_and_weight_grads(
        dz, conjugate(x, xp), conjugate(kernel, xp), xp, geometry, options.method, options.workspace
    )
    dbias = _gradients.bias_grad(dz, xp, geometry, mode)
    return to_layout(dx, xp, options.layout), dkernel, bias_to_layout(dbias, xp, options)


def _input_grad(
    function: str, ndim: int | None, dz: Array, kernel: Array, input_shape: Sequence[int], given: Mapping
) -> Array:
    options = resolve_options(function, given, _CONV_OPTIONS)
    xp, ndim, arrays = prepare_in_layout(options.layout, ndim, dz=dz, kernel=kernel)
    dz, kernel = arrays["dz"], arrays["kernel"]
    shape = shape_to_channels_first(shape_argument(input_shape, "input_shape", ndim), options.layout)
    geometry = _geometry(shape, kernel.shape, ndim, options, input_name="input_shape")
    _dz_shape(dz, geometry)
    check_memory(geometry, xp, dz, method=options.method)
    dx = _gradients.input_grad(dz, conjugate(kernel, xp), xp, geometry, options.method, options.workspace)
    return to_layout(dx, xp, options.layout)


def _weight_grad(
    function: str, ndim: int | None, dz: Array, x: Array, kernel_shape: Sequence[int], given: Mapping
) -> Array:
    options = resolve_options(function, given, _CONV_OPTIONS)
    kernel_shape = shape_argument(kernel_shape, "kernel_shape", ndim)
    ndim = spatial_dims(kernel_shape, ndim, "kernel_shape")
    xp, ndim, arrays = prepare_in_layout(options.layout, ndim, dz=dz, x=x)
    dz, x = arrays["dz"], arrays["x"]
    geometry = _geometry(x.shape, kernel_shape, ndim, options, kernel_name="kernel_shape")
    _dz_shape(dz, geometry)
    check_memory(geometry, xp, x, method=options.method)
    x = conjugate(x, xp)
    return _gradients.weight_grad(dz, x, xp, geometry, options.method, options.workspace)


def conv_output_shape(
    input_shape: Sequence[int],
    kernel_shape: Sequence[int],
    *,
    stride: IntOrTuple = 1,
    padding: Padding = "valid",
    dilation: IntOrTuple = 1,
    layout: Layout = "channels_first",
) -> tuple[int, ...]:
    """The shape of :func:`conv`'s result, from plain ints, for any number of spatial axes.

    ``input_shape`` is x's shape ``(N, C, *spatial)`` (``(N, *spatial, C)`` with
    ``layout="channels_last"``, and so is the result), ``kernel_shape`` the kernel's
    ``(F, C // groups, *kernel_size)``; ``groups`` is ``C // kernel_shape[1]``. Every padding form of
    :func:`conv` is accepted; the same checks apply (a kernel larger than the padded input is a
    ``ValueError``). It is the shape of ``dz`` for the gradients.

    >>> conv_output_shape((8, 3, 32, 32), (16, 3, 3, 3), stride=2, padding=1)
    (8, 16, 16, 16)
    >>> conv_output_shape((8, 100, 3), (4, 3, 5), padding=((4, 0),), layout="channels_last")
    (8, 100, 4)
    """
    check_layout(layout)
    kernel = shape_argument(kernel_shape, "kernel_shape", None)
    ndim = len(kernel) - 2
    shape = shape_to_channels_first(shape_argument(input_shape, "input_shape", ndim), layout)
    groups = max(1, shape[1] // kernel[1]) if kernel[1] else 1
    names = {"input_name": "input_shape", "kernel_name": "kernel_shape"}
    geometry = conv_geometry(
        shape, kernel, ndim=ndim, stride=stride, padding=padding, dilation=dilation, groups=groups, **names
    )
    out = geometry.output_shape
    return out if layout == "channels_first" else (out[0], *out[2:], out[1])


# --- any number of spatial axes ------------------------------------------------------------------


def conv(x: Array, kernel: Array, bias: Array | None = None, **options: Unpack[ConvOptions]) -> Array:
    """Convolution (cross-correlation, as in deep learning) with any number of spatial axes.

    Parameters
    ----------
    x : array
        ``(N, C, *spatial)``, or ``(N, *spatial, C)`` with ``layout="channels_last"``; real, complex
        or integer.
    kernel : array
        ``(F, C // groups, *kernel_size)``; its ``ndim - 2`` is the number of spatial axes.
    bias : array or None
        ``(F,)`` (one per filter) or ``(F, *out)`` (one per output position).

    Other Parameters
    ----------------
    stride, dilation : int or tuple of int, default 1
        One positive int for every spatial axis, or one per axis. These keyword options
        (``ConvOptions``) are those of every ``conv*`` function.
    padding : str, int or tuple, default "valid"
        ``"valid"``, ``"same"`` (output size = input size for any stride), ``"full"`` (every overlap),
        an int, one int per axis (both sides) or one ``(before, after)`` pair per axis.
    groups : int, default 1
        Divides C and F; ``groups == C`` is a depthwise convolution.
    layout : str, default "channels_first"
        Or ``"channels_last"``, for x and the result; the kernel keeps its layout.
    method : str, default "auto"
        ``"auto"`` picks per pass (see :func:`autotune`); ``"winograd"`` (2-D 3x3 stride-1 floating
        point only; a ``ValueError`` elsewhere); ``"fft"`` (floating point, any geometry: for large
        kernels); ``"direct"`` or ``"dilate"`` (both the column-matrix correlation in the forward
        pass; they differ in the gradients, see :func:`conv_backward`).
    workspace_bytes : int or None, default None
        Limit of the temporary buffers: ``$XPCONV_WORKSPACE_BYTES``, else 256 MiB.

    Returns
    -------
    z : array
        ``(N, F, *out)`` (or ``(N, *out, F)``) of the inputs' namespace and device, in their
        promoted dtype; integer inputs accumulate and return in the default integer dtype (unsigned
        for unsigned inputs; int64 on torch), as the standard's ``sum`` does, so they do not overflow.
        :func:`conv_output_shape` gives its shape without computing it.

    Examples
    --------
    >>> import numpy as np
    >>> signal = np.array([[[1.0, 2.0, 3.0, 4.0, 5.0]]])          # (N, C, L)
    >>> conv(signal, np.array([[[1.0, 0.0, -1.0]]]))              # a 1-D kernel (F, C, K)
    array([[[-2., -2., -2.]]])
    >>> conv(np.ones((1, 4, 4, 4, 2)), np.ones((3, 2, 2, 2, 2)), layout="channels_last").shape
    (1, 3, 3, 3, 3)
    """
    return _forward("conv", None, x, kernel, bias, options)


def conv_backward(
    dz: Array, x: Array, kernel: Array, **options: Unpack[BackwardOptions]
) -> tuple[Array, Array, Array | None]:
    """Gradients ``(dx, dkernel, dbias)`` of a loss with respect to the inputs of :func:`conv`.

    ``dz`` is the gradient with respect to the output ``z`` (in ``layout``); the options are those of
    the forward call, plus ``bias``: ``"tied"`` (default) gives ``dbias`` of shape ``(F,)``,
    ``"untied"`` the output's spatial shape with F first (channels-first) or last (channels-last),
    ``None`` gives ``None``, and the forward's bias array gives the gradient of that array (its shape
    says tied or untied). ``method``: ``"auto"`` (default), ``"winograd"`` (2-D 3x3 stride-1 floating
    point only), ``"direct"``, or ``"dilate"``: the method of the tutorial "3.2.3 Backward
    Propagation Convolution layer (Vectorized)", which multiplies the zeros it inserts; see
    ``xpconv._gradients``.

    >>> import numpy as np
    >>> dx, dkernel, dbias = conv_backward(np.ones((1, 1, 3)), np.arange(5.0)[None, None], np.ones((1, 1, 3)))
    >>> dx, dkernel, dbias
    (array([[[1., 2., 3., 2., 1.]]]), array([[[3., 6., 9.]]]), array([3.]))
    """
    return _backward("conv_backward", None, dz, x, kernel, options)


def conv_input_grad(dz: Array, kernel: Array, input_shape: Sequence[int], **options: Unpack[ConvOptions]) -> Array:
    """Gradient with respect to the input ``x`` (shape ``input_shape``, in ``layout``) of :func:`conv`.

    The role of ``torch.nn.grad.conv{1,2,3}d_input``; also the forward pass of a transposed convolution.

    >>> import numpy as np
    >>> conv_input_grad(np.ones((1, 1, 3)), np.ones((1, 1, 3)), (1, 1, 5))
    array([[[1., 2., 3., 2., 1.]]])
    """
    return _input_grad("conv_input_grad", None, dz, kernel, input_shape, options)


def conv_weight_grad(dz: Array, x: Array, kernel_shape: Sequence[int], **options: Unpack[ConvOptions]) -> Array:
    """Gradient with respect to the kernel (shape ``kernel_shape``) of :func:`conv`.

    The role of ``torch.nn.grad.conv{1,2,3}d_weight``.

    >>> import numpy as np
    >>> conv_weight_grad(np.ones((1, 1, 3)), np.arange(5.0)[None, None], (1, 1, 3))
    array([[[3., 6., 9.]]])
    """
    return _weight_grad("conv_weight_grad", None, dz, x, kernel_shape, options)


# --- one spatial axis ----------------------------------------------------------------------------


def conv1d(x: Array, kernel: Array, bias: Array | None = None, **options: Unpack[ConvOptions]) -> Array:
    """1-D :func:`conv`: x ``(N, C, L)``, kernel ``(F, C // groups, K)``, result ``(N, F, Lout)``.

    >>> import numpy as np
    >>> conv1d(np.array([[[1.0, 2.0, 4.0, 8.0]]]), np.array([[[1.0, 1.0]]]), np.array([0.5]))
    array([[[ 3.5,  6.5, 12.5]]])
    """
    return _forward("conv1d", 1, x, kernel, bias, options)


def conv1d_backward(
    dz: Array, x: Array, kernel: Array, **options: Unpack[BackwardOptions]
) -> tuple[Array, Array, Array | None]:
    """1-D :func:`conv_backward`: ``(dx, dkernel, dbias)``.

    >>> import numpy as np
    >>> dx, dkernel, dbias = conv1d_backward(np.ones((1, 1, 2)), np.array([[[1.0, 2.0, 4.0]]]), np.ones((1, 1, 2)))
    >>> dx, dkernel, dbias
    (array([[[1., 2., 1.]]]), array([[[3., 6.]]]), array([2.]))
    """
    return _backward("conv1d_backward", 1, dz, x, kernel, options)


def conv1d_input_grad(dz: Array, kernel: Array, input_shape: Sequence[int], **options: Unpack[ConvOptions]) -> Array:
    """1-D :func:`conv_input_grad`; here at stride 2, where positions no window reaches get 0.

    >>> import numpy as np
    >>> conv1d_input_grad(np.ones((1, 1, 2)), np.array([[[1.0, 10.0]]]), (1, 1, 5), stride=2)
    array([[[ 1., 10.,  1., 10.,  0.]]])
    """
    return _input_grad("conv1d_input_grad", 1, dz, kernel, input_shape, options)


def conv1d_weight_grad(dz: Array, x: Array, kernel_shape: Sequence[int], **options: Unpack[ConvOptions]) -> Array:
    """1-D :func:`conv_weight_grad`.

    >>> import numpy as np
    >>> conv1d_weight_grad(np.array([[[1.0, -1.0]]]), np.array([[[1.0, 2.0, 4.0]]]), (1, 1, 2))
    array([[[-1., -2.]]])
    """
    return _weight_grad("conv1d_weight_grad", 1, dz, x, kernel_shape, options)


# --- two spatial axes ----------------------------------------------------------------------------


def conv2d(x: Array, kernel: Array, bias: Array | None = None, **options: Unpack[ConvOptions]) -> Array:
    """2-D :func:`conv` of a batch of images: x ``(N, C, H, W)``, kernel ``(F, C // groups, Kh, Kw)``,
    bias ``(F,)`` or ``(F, Oh, Ow)``, result ``(N, F, Oh, Ow)``. The options are :func:`conv`'s.

    >>> import numpy as np
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> kernel = np.ones((1, 1, 2, 2))
    >>> conv2d(x, kernel, stride=2)
    array([[[[10., 18.],
             [42., 50.]]]])
    """
    return _forward("conv2d", 2, x, kernel, bias, options)


def conv2d_backward(
    dz: Array, x: Array, kernel: Array, **options: Unpack[BackwardOptions]
) -> tuple[Array, Array, Array | None]:
    """Gradients ``(dx, dkernel, dbias)`` of a loss with respect to the inputs of :func:`conv2d`;
    the options as :func:`conv_backward`'s.

    >>> import numpy as np
    >>> x = np.arange(9.0).reshape(1, 1, 3, 3)
    >>> kernel = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    >>> dz = np.ones((1, 1, 2, 2))
    >>> dx, dkernel, dbias = conv2d_backward(dz, x, kernel)
    >>> dx[0, 0]
    array([[ 1.,  3.,  2.],
           [ 4., 10.,  6.],
           [ 3.,  7.,  4.]])
    >>> dkernel[0, 0], dbias
    (array([[ 8., 12.],
           [20., 24.]]), array([4.]))
    """
    return _backward("conv2d_backward", 2, dz, x, kernel, options)


def conv2d_input_grad(dz: Array, kernel: Array, input_shape: Sequence[int], **options: Unpack[ConvOptions]) -> Array:
    """Gradient with respect to the input ``x`` (shape ``input_shape``) of :func:`conv2d`.

    The role of ``torch.nn.grad.conv2d_input``; also the forward pass of a transposed convolution.

    >>> import numpy as np
    >>> conv2d_input_grad(np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2)), (1, 1, 3, 3))[0, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    """
    return _input_grad("conv2d_input_grad", 2, dz, kernel, input_shape, options)


def conv2d_weight_grad(dz: Array, x: Array, kernel_shape: Sequence[int], **options: Unpack[ConvOptions]) -> Array:
    """Gradient with respect to the kernel (shape ``kernel_shape``) of :func:`conv2d`.

    The role of ``torch.nn.grad.conv2d_weight``.

    >>> import numpy as np
    >>> conv2d_weight_grad(np.ones((1, 1, 2, 2)), np.arange(9.0).reshape(1, 1, 3, 3), (1, 1, 2, 2))[0, 0]
    array([[ 8., 12.],
           [20., 24.]])
    """
    return _weight_grad("conv2d_weight_grad", 2, dz, x, kernel_shape, options)


# --- three spatial axes --------------------------------------------------------------------------


def conv3d(x: Array, kernel: Array, bias: Array | None = None, **options: Unpack[ConvOptions]) -> Array:
    """3-D :func:`conv` of volumes: x ``(N, C, D, H, W)``, kernel ``(F, C // groups, Kd, Kh, Kw)``.

    >>> import numpy as np
    >>> conv3d(np.ones((1, 1, 3, 3, 3)), np.ones((2, 1, 2, 2, 2)), padding="same").shape
    (1, 2, 3, 3, 3)
    >>> float(conv3d(np.ones((1, 1, 3, 3, 3)), np.ones((1, 1, 3, 3, 3)))[0, 0, 0, 0, 0])
    27.0
    """
    return _forward("conv3d", 3, x, kernel, bias, options)


def conv3d_backward(
    dz: Array, x: Array, kernel: Array, **options: Unpack[BackwardOptions]
) -> tuple[Array, Array, Array | None]:
    """3-D :func:`conv_backward`: ``(dx, dkernel, dbias)``.

    >>> import numpy as np
    >>> grads = conv3d_backward(np.ones((1, 1, 1, 1, 1)), np.ones((1, 1, 2, 2, 2)), np.ones((1, 1, 2, 2, 2)))
    >>> [float(g.sum()) for g in grads]
    [8.0, 8.0, 1.0]
    """
    return _backward("conv3d_backward", 3, dz, x, kernel, options)


def conv3d_input_grad(dz: Array, kernel: Array, input_shape: Sequence[int], **options: Unpack[ConvOptions]) -> Array:
    """3-D :func:`conv_input_grad`.

    >>> import numpy as np
    >>> conv3d_input_grad(np.ones((1, 1, 2, 2, 2)), np.ones((1, 1, 2, 2, 2)), (1, 1, 3, 3, 3))[0, 0, 1]
    array([[2., 4., 2.],
           [4., 8., 4.],
           [2., 4., 2.]])
    """
    return _input_grad("conv3d_input_grad", 3, dz, kernel, input_shape, options)


def conv3d_weight_grad(dz: Array, x: Array, kernel_shape: Sequence[int], **options: Unpack[ConvOptions]) -> Array:
    """3-D :func:`conv_weight_grad`.

    >>> import numpy as np
    >>> conv3d_weight_grad(np.ones((1, 1, 2, 2, 2)), np.ones((1, 1, 3, 3, 3)), (1, 1, 2, 2, 2)).shape
    (1, 1, 2, 2, 2)
    """
    return _weight_grad("conv3d_weight_grad", 3, dz, x, kernel_shape, options)
