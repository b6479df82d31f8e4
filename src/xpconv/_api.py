"""Public convolution functions: validate, pick the namespace, call ``_gradients``.

Each public function is thin: it checks its arguments (plain-int geometry from ``_geometry``, array
checks from :func:`_prepare`), moves channels-last data to channels-first (a view), and hands over
to the array code in ``_gradients``. ``conv``, ``conv_backward``, ``conv_input_grad`` and
``conv_weight_grad`` take any number of spatial axes (``kernel.ndim - 2``); ``conv1d``, ``conv2d``
and ``conv3d`` and their gradients are the same functions with that number fixed.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from array_api_compat import array_namespace, is_dask_namespace, is_torch_namespace
from array_api_compat import device as device_of

from . import _gradients
from ._backends import integer_accumulator, memory_limit
from ._blocks import itemsize
from ._contract import resolve_workspace
from ._geometry import ConvGeometry, IntOrTuple, Padding, check_memory, conv_geometry

Array = Any
Namespace = Any

LAYOUTS = ("channels_first", "channels_last")

__all__ = [
    "conv",
    "conv1d",
    "conv1d_backward",
    "conv1d_input_grad",
    "conv1d_weight_grad",
    "conv2d",
    "conv2d_backward",
    "conv2d_input_grad",
    "conv2d_weight_grad",
    "conv3d",
    "conv3d_backward",
    "conv3d_input_grad",
    "conv3d_weight_grad",
    "conv_backward",
    "conv_input_grad",
    "conv_weight_grad",
]


def _prepare(**arrays: Array | None) -> tuple[Namespace, list[Array | None]]:
    """Common namespace, device and promoted dtype of the named arrays; returns them cast to it."""
    present = {name: a for name, a in arrays.items() if a is not None or name != "bias"}
    for name, a in present.items():
        try:
            array_namespace(a)
        except TypeError:
            raise TypeError(f"{name} must be an array of an array API library, got {type(a).__name__}") from None
    try:
        xp = array_namespace(*present.values())
    except TypeError:
        described = ", ".join(f"{name}: {type(a).__module__}.{type(a).__name__}" for name, a in present.items())
        raise TypeError(f"all arrays must come from one array library, got {described}") from None
    devices = {name: device_of(a) for name, a in present.items()}
    first_name, first_device = next(iter(devices.items()))
    for name, dev in devices.items():
        if dev != first_device:
            raise ValueError(f"all arrays must be on one device: {first_name} is on {first_device}, {name} on {dev}")
    for name, a in present.items():
        if not _real_numeric(xp, a.dtype):
            raise TypeError(f"{name} must have a real floating or integer dtype, got {a.dtype}")
    dtype = xp.result_type(*present.values())
    if xp.isdtype(dtype, "integral"):
        if is_torch_namespace(xp) and getattr(first_device, "type", "cpu") != "cpu":
            raise TypeError(
                f"torch cannot multiply integer matrices on {first_device}; pass floating-point arrays "
                f"(got {_dtypes(present)})"
            )
        # Sums of products overflow a small integer dtype (int8: 100 * 100 wraps): accumulate, and
        # return, in the default integer dtype, as the standard's sum does.
        dtype = integer_accumulator(xp, dtype, first_device)
    cast = [None if a is None else xp.astype(a, dtype, copy=False) for a in arrays.values()]
    return xp, cast


def _real_numeric(xp: Namespace, dtype: Any) -> bool:
    """Real floating or integer (bool, complex, object, str and datetime are not)."""
    try:
        return bool(xp.isdtype(dtype, ("real floating", "integral")))
    except (TypeError, ValueError, AttributeError):  # dtypes outside the standard: object, str, datetime
        return False


def _dtypes(arrays: dict[str, Array]) -> str:
    return ", ".join(f"{name}: {a.dtype}" for name, a in arrays.items())


def _check_method(method: str) -> None:
    if not (isinstance(method, str) and method in _gradients.METHODS):
        raise ValueError(f"method must be one of {_gradients.METHODS}, got {method!r}")


def _check_dz(dz: Array, geometry: ConvGeometry) -> None:
    if tuple(dz.shape) != geometry.output_shape:
        raise ValueError(
            f"dz must have the forward output's shape {geometry.output_shape} "
            f"(from x {geometry.input_shape} and kernel {geometry.kernel_shape}), got {tuple(dz.shape)}"
        )


def _shape_argument(shape: Sequence[int], name: str, ndim: int) -> tuple[int, ...]:
    if not isinstance(shape, Sequence) or isinstance(shape, str) or len(shape) != ndim + 2:
        raise ValueError(f"{name} must be a sequence of {ndim + 2} ints, got {shape!r}")
    if any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in shape):
        raise ValueError(f"{name} must hold non-negative ints, got {shape!r}")
    return tuple(shape)


def _spatial_dims(kernel: Array, ndim: int | None, name: str = "kernel") -> int:
    """The number of spatial axes: fixed by the caller (conv2d: 2) or ``kernel.ndim - 2``."""
    if ndim is not None:
        return ndim
    if kernel.ndim < 3:
        raise ValueError(
            f"{name} must have at least 3 axes (F, C // groups, *kernel_size), got shape {tuple(kernel.shape)}"
        )
    return kernel.ndim - 2


def _check_memory(geometry: ConvGeometry, xp: Namespace, like: Array, cause: str | None = None) -> None:
    """The size guard, before anything is allocated (Dask's outputs are computed chunk by chunk)."""
    limit = memory_limit(like, xp)
    check_memory(geometry, itemsize(xp, like.dtype), limit, outputs=not is_dask_namespace(xp), cause=cause)


def _check_layout(layout: str) -> None:
    if not (isinstance(layout, str) and layout in LAYOUTS):
        raise ValueError(f"layout must be 'channels_first' or 'channels_last', got {layout!r}")


def _to_channels_first(a: Array, xp: Namespace, layout: str, ndim: int, name: str) -> Array:
    """``(N, *spatial, C)`` -> ``(N, C, *spatial)`` as a view; channels-first arrays pass through."""
    if layout == "channels_first" or a is None:
        return a
    if a.ndim != ndim + 2:
        raise ValueError(
            f"{name} must be {ndim + 2}-D (N, {ndim} spatial axes, C) for layout='channels_last', "
            f"got shape {tuple(a.shape)}"
        )
    return xp.permute_dims(a, (0, ndim + 1, *range(1, ndim + 1)))


def _to_layout(a: Array, xp: Namespace, layout: str) -> Array:
    """Back from channels-first to the caller's layout."""
    if layout == "channels_first":
        return a
    return xp.permute_dims(a, (0, *range(2, a.ndim), 1))


def _bias_to_layout(dbias: Array | None, xp: Namespace, layout: str) -> Array | None:
    """An untied bias gradient ``(F, *out)`` becomes ``(*out, F)`` for channels-last data."""
    if dbias is None or dbias.ndim == 1 or layout == "channels_first":
        return dbias
    return xp.permute_dims(dbias, (*range(1, dbias.ndim), 0))


def _shape_to_channels_first(shape: Sequence[int], layout: str) -> tuple[int, ...]:
    shape = tuple(shape)
    return shape if layout == "channels_first" else (shape[0], shape[-1], *shape[1:-1])


def _check_bias_shape(bias: Array, channels: int, spatial: tuple[int, ...]) -> None:
    allowed = ((channels,), (channels, *spatial))
    if tuple(bias.shape) not in allowed:
        raise ValueError(f"bias must have shape {allowed[0]} (tied) or {allowed[1]} (untied), got {tuple(bias.shape)}")


def _check_bias_mode(bias: object) -> None:
    if not (bias is None or (isinstance(bias, str) and bias in _gradients.BIAS_MODES)):
        raise ValueError(f"bias must be 'tied', 'untied' or None, got {bias!r}")


def _prepare_in_layout(layout: str, ndim: int | None, **arrays: Array | None) -> tuple[Namespace, int, dict]:
    """``_prepare`` the arrays, find the number of spatial axes (from ``kernel`` unless given), and
    turn ``x`` and ``dz`` channels-first. Returns the namespace, that number and the arrays by name."""
    _check_layout(layout)
    xp, cast = _prepare(**arrays)
    named = dict(zip(arrays, cast))
    ndim = _spatial_dims(named["kernel"], ndim)
    for name in ("x", "dz"):
        if name in named:
            named[name] = _to_channels_first(named[name], xp, layout, ndim, name)
    return xp, ndim, named


def _forward(x, kernel, bias, ndim, *, stride, padding, dilation, groups, layout, method, workspace_bytes):
    _check_method(method)
    xp, ndim, arrays = _prepare_in_layout(layout, ndim, x=x, kernel=kernel, bias=bias)
    x, kernel, bias = arrays["x"], arrays["kernel"], arrays["bias"]
    geometry = conv_geometry(
        x.shape, kernel.shape, ndim=ndim, stride=stride, padding=padding, dilation=dilation, groups=groups
    )
    if bias is not None:
        _check_bias_shape(bias, geometry.out_channels, geometry.output_size)
    _check_memory(geometry, xp, x)
    z = _gradients.forward(x, kernel, bias, xp, geometry, resolve_workspace(workspace_bytes), method)
    return _to_layout(z, xp, layout)


def _backward(dz, x, kernel, ndim, *, stride, padding, dilation, groups, bias, layout, method, workspace_bytes):
    _check_bias_mode(bias)
    _check_method(method)
    xp, ndim, arrays = _prepare_in_layout(layout, ndim, dz=dz, x=x, kernel=kernel)
    dz, x, kernel = arrays["dz"], arrays["x"], arrays["kernel"]
    geometry = conv_geometry(
        x.shape, kernel.shape, ndim=ndim, stride=stride, padding=padding, dilation=dilation, groups=groups
    )
    _check_dz(dz, geometry)
    _check_memory(geometry, xp, x)
    workspace = resolve_workspace(workspace_bytes)
    dx = _gradients.input_grad(dz, kernel, xp, geometry, method, workspace)
    dkernel = _gradients.weight_grad(dz, x, xp, geometry, method, workspace)
    dbias = _gradients.bias_grad(dz, xp, geometry, bias)
    return _to_layout(dx, xp, layout), dkernel, _bias_to_layout(dbias, xp, layout)


def _input_grad(dz, kernel, input_shape, ndim, *, stride, padding, dilation, groups, layout, method, workspace_bytes):
    _check_method(method)
    xp, ndim, arrays = _prepare_in_layout(layout, ndim, dz=dz, kernel=kernel)
    dz, kernel = arrays["dz"], arrays["kernel"]
    input_shape = _shape_to_channels_first(_shape_argument(input_shape, "input_shape", ndim), layout)
    geometry = conv_geometry(
        input_shape,
        kernel.shape,
        ndim=ndim,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        input_name="input_shape",
    )
    _check_dz(dz, geometry)
    _check_memory(geometry, xp, dz)
    dx = _gradients.input_grad(dz, kernel, xp, geometry, method, resolve_workspace(workspace_bytes))
    return _to_layout(dx, xp, layout)


def _weight_grad(dz, x, kernel_shape, ndim, *, stride, padding, dilation, groups, layout, method, workspace_bytes):
    _check_method(method)
    _check_layout(layout)
    xp, (dz, x) = _prepare(dz=dz, x=x)
    if ndim is None:
        if not isinstance(kernel_shape, Sequence) or len(kernel_shape) < 3:
            raise ValueError(f"kernel_shape must be a sequence of at least 3 ints, got {kernel_shape!r}")
        ndim = len(kernel_shape) - 2
    kernel_shape = _shape_argument(kernel_shape, "kernel_shape", ndim)
    x = _to_channels_first(x, xp, layout, ndim, "x")
    dz = _to_channels_first(dz, xp, layout, ndim, "dz")
    geometry = conv_geometry(
        x.shape,
        kernel_shape,
        ndim=ndim,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        kernel_name="kernel_shape",
    )
    _check_dz(dz, geometry)
    _check_memory(geometry, xp, x)
    return _gradients.weight_grad(dz, x, xp, geometry, method, resolve_workspace(workspace_bytes))


def conv(
    x: Array,
    kernel: Array,
    bias: Array | None = None,
    *,
    stride: IntOrTuple = 1,
    padding: Padding = "valid",
    dilation: IntOrTuple = 1,
    groups: int = 1,
    layout: str = "channels_first",
    method: str = "auto",
    workspace_bytes: int | None = None,
) -> Array:
    """Convolution (cross-correlation, as in deep learning) with any number of spatial axes.

    Parameters
    ----------
    x : array ``(N, C, *spatial)``, or ``(N, *spatial, C)`` with ``layout="channels_last"``
    kernel : array ``(F, C // groups, *kernel_size)``; its ``ndim - 2`` is the number of spatial axes
    bias : array ``(F,)`` (one per filter), ``(F, *out)`` (one per output position) or None
    stride, dilation : int or one positive int per spatial axis
    padding : ``"valid"``, ``"same"`` (output size = input size for any stride), an int, one int per
        axis (both sides) or one ``(before, after)`` pair per axis
    groups : int dividing C and F; ``groups == C`` is a depthwise convolution
    layout : ``"channels_first"`` or ``"channels_last"`` (for x and the result; the kernel keeps its layout)
    method : ``"auto"`` (default), ``"winograd"`` (2-D 3x3 stride-1 floating point only; a
        ``ValueError`` elsewhere), ``"direct"`` or ``"dilate"`` (both the column-matrix correlation here)
    workspace_bytes : limit of the temporary window buffer (default ``$XPCONV_WORKSPACE_BYTES`` or 256 MiB)

    Returns
    -------
    z : array ``(N, F, *out)`` (or ``(N, *out, F)``) of the inputs' namespace and device, in their
        promoted dtype; integer inputs accumulate and return in the default integer dtype (unsigned
        for unsigned inputs; int64 on torch), as the standard's ``sum`` does, so they do not overflow

    Examples
    --------
    >>> import numpy as np
    >>> signal = np.array([[[1.0, 2.0, 3.0, 4.0, 5.0]]])          # (N, C, L)
    >>> conv(signal, np.array([[[1.0, 0.0, -1.0]]]))              # a 1-D kernel (F, C, K)
    array([[[-2., -2., -2.]]])
    >>> conv(np.ones((1, 4, 4, 4, 2)), np.ones((3, 2, 2, 2, 2)), layout="channels_last").shape
    (1, 3, 3, 3, 3)
    """
    return _forward(
        x,
        kernel,
        bias,
        None,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        layout=layout,
        method=method,
        workspace_bytes=workspace_bytes,
    )


def conv_backward(
    dz: Array,
    x: Array,
    kernel: Array,
    *,
    stride: IntOrTuple = 1,
    padding: Padding = "valid",
    dilation: IntOrTuple = 1,
    groups: int = 1,
    bias: str | None = "tied",
    layout: str = "channels_first",
    method: str = "auto",
    workspace_bytes: int | None = None,
) -> tuple[Array, Array, Array | None]:
    """Gradients ``(dx, dkernel, dbias)`` of a loss with respect to the inputs of :func:`conv`.

    ``dz`` is the gradient with respect to the output ``z`` (in ``layout``); the other arguments are
    those of the forward call. ``bias="tied"`` gives ``dbias`` of shape ``(F,)``, ``"untied"`` the
    output's spatial shape with F first (channels-first) or last (channels-last), ``None`` gives
    ``None``. ``method``: ``"auto"`` (default), ``"winograd"`` (2-D 3x3 stride-1 floating point
    only), ``"direct"`` or ``"dilate"`` (the tutorial's, which multiplies the zeros it inserts); see
    ``xpconv._gradients``.

    >>> import numpy as np
    >>> dx, dkernel, dbias = conv_backward(np.ones((1, 1, 3)), np.arange(5.0)[None, None], np.ones((1, 1, 3)))
    >>> dx, dkernel, dbias
    (array([[[1., 2., 3., 2., 1.]]]), array([[[3., 6., 9.]]]), array([3.]))
    """
    return _backward(
        dz,
        x,
        kernel,
        None,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        bias=bias,
        layout=layout,
        method=method,
        workspace_bytes=workspace_bytes,
    )


def conv_input_grad(
    dz: Array,
    kernel: Array,
    input_shape: Sequence[int],
    *,
    stride: IntOrTuple = 1,
    padding: Padding = "valid",
    dilation: IntOrTuple = 1,
    groups: int = 1,
    layout: str = "channels_first",
    method: str = "auto",
    workspace_bytes: int | None = None,
) -> Array:
    """Gradient with respect to the input ``x`` (shape ``input_shape``, in ``layout``) of :func:`conv`.

    The role of ``torch.nn.grad.conv{1,2,3}d_input``; also the forward pass of a transposed convolution.

    >>> import numpy as np
    >>> conv_input_grad(np.ones((1, 1, 3)), np.ones((1, 1, 3)), (1, 1, 5))
    array([[[1., 2., 3., 2., 1.]]])
    """
    return _input_grad(
        dz,
        kernel,
        input_shape,
        None,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        layout=layout,
        method=method,
        workspace_bytes=workspace_bytes,
    )


def conv_weight_grad(
    dz: Array,
    x: Array,
    kernel_shape: Sequence[int],
    *,
    stride: IntOrTuple = 1,
    padding: Padding = "valid",
    dilation: IntOrTuple = 1,
    groups: int = 1,
    layout: str = "channels_first",
    method: str = "auto",
    workspace_bytes: int | None = None,
) -> Array:
    """Gradient with respect to the kernel (shape ``kernel_shape``) of :func:`conv`.

    The role of ``torch.nn.grad.conv{1,2,3}d_weight``.

    >>> import numpy as np
    >>> conv_weight_grad(np.ones((1, 1, 3)), np.arange(5.0)[None, None], (1, 1, 3))
    array([[[3., 6., 9.]]])
    """
    return _weight_grad(
        dz,
        x,
        kernel_shape,
        None,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        layout=layout,
        method=method,
        workspace_bytes=workspace_bytes,
    )


def _fixed_dims(implementation: Callable[..., Any], generic: Callable[..., Any], ndim: int, name: str, doc: str = ""):
    """``conv1d`` etc.: ``generic`` with the number of spatial axes fixed to ``ndim``."""
    signature = inspect.signature(generic)
    positional = [n for n, p in signature.parameters.items() if p.kind is p.POSITIONAL_OR_KEYWORD]

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        options = {n: v for n, v in bound.arguments.items() if n not in positional}
        return implementation(*(bound.arguments[n] for n in positional), ndim, **options)

    wrapper.__name__ = wrapper.__qualname__ = name
    wrapper.__module__ = "xpconv"
    wrapper.__signature__ = signature  # type: ignore[attr-defined]
    axes = "axis" if ndim == 1 else "axes"
    wrapper.__doc__ = doc or f"{ndim}-D :func:`{generic.__name__}`: the same arguments, with {ndim} spatial {axes}."
    return wrapper


conv1d = _fixed_dims(_forward, conv, 1, "conv1d")
conv1d_backward = _fixed_dims(_backward, conv_backward, 1, "conv1d_backward")
conv1d_input_grad = _fixed_dims(_input_grad, conv_input_grad, 1, "conv1d_input_grad")
conv1d_weight_grad = _fixed_dims(_weight_grad, conv_weight_grad, 1, "conv1d_weight_grad")
conv3d = _fixed_dims(_forward, conv, 3, "conv3d")
conv3d_backward = _fixed_dims(_backward, conv_backward, 3, "conv3d_backward")
conv3d_input_grad = _fixed_dims(_input_grad, conv_input_grad, 3, "conv3d_input_grad")
conv3d_weight_grad = _fixed_dims(_weight_grad, conv_weight_grad, 3, "conv3d_weight_grad")
conv2d = _fixed_dims(
    _forward,
    conv,
    2,
    "conv2d",
    """2-D convolution (cross-correlation, as in deep learning) of a batch of images.

    Parameters
    ----------
    x : array ``(N, C, H, W)``
    kernel : array ``(F, C // groups, Kh, Kw)``
    bias : array ``(F,)`` (one per filter), ``(F, Oh, Ow)`` (one per output position) or None
    stride, dilation : int or ``(h, w)`` pair of positive ints
    padding : ``"valid"``, ``"same"``, int, ``(ph, pw)`` or ``((top, bottom), (left, right))``
    groups : int dividing C and F; ``groups == C`` is a depthwise convolution
    layout : ``"channels_first"`` (default) or ``"channels_last"``: x ``(N, H, W, C)``, z ``(N, Oh, Ow, F)``
    method : ``"auto"`` (default), ``"winograd"`` (3x3 kernels at stride 1, floating point), ``"direct"``
    workspace_bytes : limit of the temporary window buffer (default ``$XPCONV_WORKSPACE_BYTES`` or 256 MiB)

    Returns
    -------
    z : array ``(N, F, Oh, Ow)`` of the inputs' namespace, device and promoted dtype (integers: the
        default integer dtype, see :func:`conv`)

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> kernel = np.ones((1, 1, 2, 2))
    >>> conv2d(x, kernel, stride=2)
    array([[[[10., 18.],
             [42., 50.]]]])
    """,
)
conv2d_backward = _fixed_dims(
    _backward,
    conv_backward,
    2,
    "conv2d_backward",
    """Gradients ``(dx, dkernel, dbias)`` of a loss with respect to the inputs of :func:`conv2d`.

    ``dz`` is the gradient with respect to the output ``z``; the other arguments are those of the
    forward call. ``bias="tied"`` gives ``dbias`` of shape ``(F,)``, ``"untied"`` ``(F, Oh, Ow)`` and
    ``None`` gives ``dbias = None``. ``method`` picks the algorithm: ``"auto"`` (fastest),
    ``"winograd"`` (3x3 kernels at stride 1, floating point), ``"direct"`` or ``"dilate"`` (the
    tutorial's, which multiplies the zeros it inserts).

    Examples
    --------
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
    """,
)
conv2d_input_grad = _fixed_dims(
    _input_grad,
    conv_input_grad,
    2,
    "conv2d_input_grad",
    """Gradient with respect to the input ``x`` (shape ``input_shape``) of :func:`conv2d`.

    The role of ``torch.nn.grad.conv2d_input``; also the forward pass of a transposed convolution.

    >>> import numpy as np
    >>> conv2d_input_grad(np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2)), (1, 1, 3, 3))[0, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    """,
)
conv2d_weight_grad = _fixed_dims(
    _weight_grad,
    conv_weight_grad,
    2,
    "conv2d_weight_grad",
    """Gradient with respect to the kernel (shape ``kernel_shape``) of :func:`conv2d`.

    The role of ``torch.nn.grad.conv2d_weight``.

    >>> import numpy as np
    >>> conv2d_weight_grad(np.ones((1, 1, 2, 2)), np.arange(9.0).reshape(1, 1, 3, 3), (1, 1, 2, 2))[0, 0]
    array([[ 8., 12.],
           [20., 24.]])
    """,
)
