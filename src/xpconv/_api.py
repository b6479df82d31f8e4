"""Public convolution functions: validate, pick the namespace, call ``_gradients``.

Each public function is thin: it checks its arguments (plain-int geometry from ``_geometry``, array
checks from :func:`_prepare`), then hands over to the array code in ``_gradients``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from array_api_compat import array_namespace, is_torch_namespace
from array_api_compat import device as device_of

from . import _gradients
from ._contract import resolve_workspace
from ._geometry import ConvGeometry, IntOrTuple, Padding, conv_geometry

Array = Any
Namespace = Any

__all__ = [
    "conv2d",
    "conv2d_backward",
    "conv2d_input_grad",
    "conv2d_weight_grad",
]


def _prepare(**arrays: Array | None) -> tuple[Namespace, list[Array | None]]:
    """Common namespace, device and promoted dtype of the named arrays; returns them cast to it."""
    present = {name: a for name, a in arrays.items() if a is not None}
    namespaces = {}
    for name, a in present.items():
        try:
            namespaces[name] = array_namespace(a)
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
    dtype = xp.result_type(*present.values())
    if xp.isdtype(dtype, "bool") or xp.isdtype(dtype, "complex floating"):
        raise TypeError(f"arrays must have a real floating or integer dtype, got {dtype} from {_dtypes(present)}")
    if xp.isdtype(dtype, "integral") and is_torch_namespace(xp) and getattr(first_device, "type", "cpu") != "cpu":
        raise TypeError(
            f"torch cannot multiply integer matrices on {first_device}; pass floating-point arrays "
            f"(got {_dtypes(present)})"
        )
    cast = [None if a is None else xp.astype(a, dtype, copy=False) for a in arrays.values()]
    return xp, cast


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


def conv2d(
    x: Array,
    kernel: Array,
    bias: Array | None = None,
    *,
    stride: IntOrTuple = 1,
    padding: Padding = "valid",
    dilation: IntOrTuple = 1,
    groups: int = 1,
    workspace_bytes: int | None = None,
) -> Array:
    """2-D convolution (cross-correlation, as in deep learning) of a batch of images.

    Parameters
    ----------
    x : array ``(N, C, H, W)``
    kernel : array ``(F, C // groups, Kh, Kw)``
    bias : array ``(F,)`` (one per filter), ``(F, Oh, Ow)`` (one per output position) or None
    stride, dilation : int or ``(h, w)`` pair of positive ints
    padding : ``"valid"``, ``"same"``, int, ``(ph, pw)`` or ``((top, bottom), (left, right))``
    groups : int dividing C and F; ``groups == C`` is a depthwise convolution
    workspace_bytes : limit of the temporary window buffer (default ``$XPCONV_WORKSPACE_BYTES`` or 256 MiB)

    Returns
    -------
    z : array ``(N, F, Oh, Ow)`` of the inputs' namespace, device and promoted dtype

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> kernel = np.ones((1, 1, 2, 2))
    >>> conv2d(x, kernel, stride=2)
    array([[[[10., 18.],
             [42., 50.]]]])
    """
    xp, (x, kernel, bias) = _prepare(x=x, kernel=kernel, bias=bias)
    geometry = conv_geometry(
        x.shape, kernel.shape, ndim=2, stride=stride, padding=padding, dilation=dilation, groups=groups
    )
    if bias is not None:
        allowed = ((geometry.out_channels,), (geometry.out_channels, *geometry.output_size))
        if tuple(bias.shape) not in allowed:
            raise ValueError(
                f"bias must have shape {allowed[0]} (tied) or {allowed[1]} (untied), got {tuple(bias.shape)}"
            )
    return _gradients.forward(x, kernel, bias, xp, geometry, resolve_workspace(workspace_bytes))


def conv2d_backward(
    dz: Array,
    x: Array,
    kernel: Array,
    *,
    stride: IntOrTuple = 1,
    padding: Padding = "valid",
    dilation: IntOrTuple = 1,
    groups: int = 1,
    bias: str | None = "tied",
    method: str = "auto",
    workspace_bytes: int | None = None,
) -> tuple[Array, Array, Array | None]:
    """Gradients ``(dx, dkernel, dbias)`` of a loss with respect to the inputs of :func:`conv2d`.

    ``dz`` is the gradient with respect to the output ``z``; the other arguments are those of the
    forward call. ``bias="tied"`` gives ``dbias`` of shape ``(F,)``, ``"untied"`` ``(F, Oh, Ow)`` and
    ``None`` gives ``dbias = None``. ``method`` picks the algorithm: ``"auto"`` (fastest),
    ``"direct"`` or ``"dilate"`` (the tutorial's, which multiplies the zeros it inserts).

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
    """
    if not (bias is None or (isinstance(bias, str) and bias in _gradients.BIAS_MODES)):
        raise ValueError(f"bias must be 'tied', 'untied' or None, got {bias!r}")
    _check_method(method)
    xp, (dz, x, kernel) = _prepare(dz=dz, x=x, kernel=kernel)
    geometry = conv_geometry(
        x.shape, kernel.shape, ndim=2, stride=stride, padding=padding, dilation=dilation, groups=groups
    )
    _check_dz(dz, geometry)
    workspace = resolve_workspace(workspace_bytes)
    return (
        _gradients.input_grad(dz, kernel, xp, geometry, method, workspace),
        _gradients.weight_grad(dz, x, xp, geometry, method, workspace),
        _gradients.bias_grad(dz, xp, geometry, bias),
    )


def conv2d_input_grad(
    dz: Array,
    kernel: Array,
    input_shape: Sequence[int],
    *,
    stride: IntOrTuple = 1,
    padding: Padding = "valid",
    dilation: IntOrTuple = 1,
    groups: int = 1,
    method: str = "auto",
    workspace_bytes: int | None = None,
) -> Array:
    """Gradient with respect to the input ``x`` (shape ``input_shape``) of :func:`conv2d`.

    The role of ``torch.nn.grad.conv2d_input``; also the forward pass of a transposed convolution.

    >>> import numpy as np
    >>> conv2d_input_grad(np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2)), (1, 1, 3, 3))[0, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    """
    _check_method(method)
    input_shape = _shape_argument(input_shape, "input_shape", 2)
    xp, (dz, kernel) = _prepare(dz=dz, kernel=kernel)
    geometry = conv_geometry(
        input_shape,
        kernel.shape,
        ndim=2,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        input_name="input_shape",
    )
    _check_dz(dz, geometry)
    return _gradients.input_grad(dz, kernel, xp, geometry, method, resolve_workspace(workspace_bytes))


def conv2d_weight_grad(
    dz: Array,
    x: Array,
    kernel_shape: Sequence[int],
    *,
    stride: IntOrTuple = 1,
    padding: Padding = "valid",
    dilation: IntOrTuple = 1,
    groups: int = 1,
    method: str = "auto",
    workspace_bytes: int | None = None,
) -> Array:
    """Gradient with respect to the kernel (shape ``kernel_shape``) of :func:`conv2d`.

    The role of ``torch.nn.grad.conv2d_weight``.

    >>> import numpy as np
    >>> conv2d_weight_grad(np.ones((1, 1, 2, 2)), np.arange(9.0).reshape(1, 1, 3, 3), (1, 1, 2, 2))[0, 0]
    array([[ 8., 12.],
           [20., 24.]])
    """
    _check_method(method)
    kernel_shape = _shape_argument(kernel_shape, "kernel_shape", 2)
    xp, (dz, x) = _prepare(dz=dz, x=x)
    geometry = conv_geometry(
        x.shape,
        kernel_shape,
        ndim=2,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        kernel_name="kernel_shape",
    )
    _check_dz(dz, geometry)
    return _gradients.weight_grad(dz, x, xp, geometry, method, resolve_workspace(workspace_bytes))
