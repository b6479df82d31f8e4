"""xpconv inside torch models: torch.nn.functional's convolutions and torch.nn's layers, differentiated by xpconv.

Every function here has the signature of its namesake in ``torch.nn.functional`` (positional order
and defaults), plus xpconv's keywords ``method=`` and ``workspace_bytes=``, and ``padding`` in every
form xpconv takes (``"valid"``, ``"same"`` at any stride, ``"full"``, ints, per-side pairs). It is a
``torch.autograd.Function`` whose backward computes only the gradients autograd asks for, by
xpconv's explicit dX, dK and db, and is itself made of such Functions: second and higher
derivatives, ``torch.func.grad``/``vjp``/``jacrev``/``vmap`` and ``gradcheck(check_batched_grad=True)``
all run on xpconv's passes (``xpconv._torch_autograd``).

With ``method="auto"`` (the default) each pass goes where it is measured fastest: torch's own
convolution (oneDNN, cuDNN; ``method="native"``) for 3x3 and most other layers, xpconv's FFT for large
kernels. :func:`convert` puts this into an existing model in one line:

>>> import torch, xpconv.torch
>>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 31, padding=15, groups=1), torch.nn.ReLU())
>>> model = xpconv.torch.convert(model)           # weights, hooks and state_dict kept
>>> type(model[0]).__name__
'Conv2d'
>>> model[0]
Conv2d(3, 8, kernel_size=(31, 31), stride=(1, 1), padding=(15, 15), method='auto')
>>> model(torch.ones(1, 3, 64, 64)).sum().backward()   # dK by xpconv's FFT here
>>> model[0].weight.grad.shape
torch.Size([8, 3, 31, 31])

Complex tensors follow torch's convention (the gradient is the adjoint), as xpconv does everywhere.
torch is imported only when this module is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

import torch

from . import _arguments, _transpose
from ._geometry import int_tuple, resolve_padding
from ._torch_autograd import Correlate, InputGrad, Spec, channels_last
from .typing import IntOrTuple, Method, Padding, TransposePadding

__all__ = [
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "convert",
]

Tensor: TypeAlias = torch.Tensor


def _check_tensors(function: str, ndim: int, input: Any, weight: Any, bias: Any) -> bool:
    """Whether ``input`` comes without a batch axis (torch's functions take ``(C, *spatial)`` too)."""
    for name, value in (("input", input), ("weight", weight), ("bias", bias)):
        if value is not None and not isinstance(value, torch.Tensor):
            raise TypeError(f"{function}() takes torch tensors; {name} is a {type(value).__name__}")
    if weight.ndim != ndim + 2:
        raise ValueError(f"{function}(): weight must be {ndim + 2}-D, got shape {tuple(weight.shape)}")
    if input.ndim not in (ndim + 1, ndim + 2):
        raise ValueError(
            f"{function}(): input must be {ndim + 2}-D (N, C, *spatial) or {ndim + 1}-D (C, *spatial), "
            f"got shape {tuple(input.shape)}"
        )
    if bias is not None and bias.ndim != 1:
        raise ValueError(f"{function}(): bias must be 1-D (one per output channel), got shape {tuple(bias.shape)}")
    return input.ndim == ndim + 1


def _conv(
    ndim: int,
    function: str,
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: IntOrTuple,
    padding: Padding,
    dilation: IntOrTuple,
    groups: int,
    method: Method,
    workspace_bytes: int | None,
) -> Tensor:
    unbatched = _check_tensors(function, ndim, input, weight, bias)
    x = input.unsqueeze(0) if unbatched else input
    options = _arguments.resolve_options(
        function, {"method": method, "workspace_bytes": workspace_bytes}, ("method", "workspace_bytes")
    )
    stride_t, dilation_t = int_tuple(stride, "stride", ndim), int_tuple(dilation, "dilation", ndim)
    pads = resolve_padding(padding, tuple(x.shape[2:]), tuple(weight.shape[2:]), stride_t, dilation_t)
    spec = Spec(stride_t, pads, dilation_t, int(groups), options.method, workspace_bytes)
    z = Correlate.apply(x, weight, bias, spec)
    return z.squeeze(0) if unbatched else z


def _conv_transpose(
    ndim: int,
    function: str,
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: IntOrTuple,
    padding: TransposePadding,
    output_padding: IntOrTuple,
    groups: int,
    dilation: IntOrTuple,
    method: Method,
    workspace_bytes: int | None,
) -> Tensor:
    """The transposed convolution as the input gradient of its equivalent convolution (see
    ``xpconv._transpose``): :class:`InputGrad` of that convolution, the rows beyond every tap's
    reach appended as zeros, then the bias."""
    unbatched = _check_tensors(function, ndim, input, weight, bias)
    x = input.unsqueeze(0) if unbatched else input
    given = {
        "stride": stride,
        "padding": padding,
        "output_padding": output_padding,
        "groups": groups,
        "dilation": dilation,
        "method": method,
        "workspace_bytes": workspace_bytes,
    }
    options = _arguments.resolve_options(function, given, given.keys())
    geometry, appended = _transpose._geometry(tuple(x.shape), tuple(weight.shape), ndim, options)
    spec = Spec(geometry.stride, geometry.pads, geometry.dilation, geometry.groups, options.method, workspace_bytes)
    # InputGrad is the transpose, unconjugated: torch's conv_transpose is bilinear in x and the kernel.
    z = InputGrad.apply(x, weight, spec, geometry.input_shape, channels_last(x))
    if any(appended):
        z = torch.nn.functional.pad(z, [side for a in reversed(appended) for side in (0, a)])
    if bias is not None:
        z = z + bias.reshape(-1, *(1,) * ndim)
    return z.squeeze(0) if unbatched else z


def conv1d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    *,
    method: Method = "auto",
    workspace_bytes: int | None = None,
) -> Tensor:
    """``torch.nn.functional.conv1d``, differentiated by xpconv; input ``(N, C, L)`` or ``(C, L)``.

    >>> import torch, xpconv.torch
    >>> x = torch.arange(6.0).reshape(1, 1, 6).requires_grad_()
    >>> xpconv.torch.conv1d(x, torch.ones(1, 1, 3), padding="same").sum().backward()
    >>> x.grad
    tensor([[[2., 3., 3., 3., 3., 2.]]])
    """
    return _conv(1, "conv1d", input, weight, bias, stride, padding, dilation, groups, method, workspace_bytes)


def conv2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    *,
    method: Method = "auto",
    workspace_bytes: int | None = None,
) -> Tensor:
    """``torch.nn.functional.conv2d``, differentiated by xpconv; input ``(N, C, H, W)`` or ``(C, H, W)``.

    >>> import torch, xpconv.torch
    >>> x, w = torch.randn(2, 3, 16, 16, dtype=torch.float64), torch.randn(4, 3, 5, 5, dtype=torch.float64)
    >>> torch.allclose(xpconv.torch.conv2d(x, w, None, 1, "same"), torch.nn.functional.conv2d(x, w, None, 1, "same"))
    True
    >>> xpconv.torch.conv2d(x, w, None, 2, "same").shape   # "same" at any stride (torch refuses stride 2)
    torch.Size([2, 4, 16, 16])
    """
    return _conv(2, "conv2d", input, weight, bias, stride, padding, dilation, groups, method, workspace_bytes)


def conv3d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    *,
    method: Method = "auto",
    workspace_bytes: int | None = None,
) -> Tensor:
    """``torch.nn.functional.conv3d``, differentiated by xpconv; input ``(N, C, D, H, W)`` or ``(C, D, H, W)``.

    >>> import torch, xpconv.torch
    >>> xpconv.torch.conv3d(torch.ones(1, 2, 4, 4, 4), torch.ones(3, 2, 3, 3, 3), padding=1).shape
    torch.Size([1, 3, 4, 4, 4])
    """
    return _conv(3, "conv3d", input, weight, bias, stride, padding, dilation, groups, method, workspace_bytes)


def conv_transpose1d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntOrTuple = 1,
    padding: TransposePadding = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
    *,
    method: Method = "auto",
    workspace_bytes: int | None = None,
) -> Tensor:
    """``torch.nn.functional.conv_transpose1d``, differentiated by xpconv; weight ``(C_in, F // groups, K)``.

    >>> import torch, xpconv.torch
    >>> xpconv.torch.conv_transpose1d(torch.tensor([[[1.0, 2.0]]]), torch.tensor([[[1.0, 10.0]]]), stride=3)
    tensor([[[ 1., 10.,  0.,  2., 20.]]])
    """
    return _conv_transpose(
        1, "conv_transpose1d", input, weight, bias, stride, padding, output_padding, groups, dilation, method,
        workspace_bytes,
    )  # fmt: skip


def conv_transpose2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntOrTuple = 1,
    padding: TransposePadding = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
    *,
    method: Method = "auto",
    workspace_bytes: int | None = None,
) -> Tensor:
    """``torch.nn.functional.conv_transpose2d``, differentiated by xpconv; weight ``(C_in, F // groups, Kh, Kw)``.

    >>> import torch, xpconv.torch
    >>> xpconv.torch.conv_transpose2d(torch.ones(1, 4, 8, 8), torch.ones(4, 2, 4, 4), stride=2, padding=1).shape
    torch.Size([1, 2, 16, 16])
    """
    return _conv_transpose(
        2, "conv_transpose2d", input, weight, bias, stride, padding, output_padding, groups, dilation, method,
        workspace_bytes,
    )  # fmt: skip


def conv_transpose3d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntOrTuple = 1,
    padding: TransposePadding = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
    *,
    method: Method = "auto",
    workspace_bytes: int | None = None,
) -> Tensor:
    """``torch.nn.functional.conv_transpose3d``, differentiated by xpconv.

    >>> import torch, xpconv.torch
    >>> xpconv.torch.conv_transpose3d(torch.ones(1, 2, 3, 3, 3), torch.ones(2, 1, 2, 2, 2), stride=2).shape
    torch.Size([1, 1, 6, 6, 6])
    """
    return _conv_transpose(
        3, "conv_transpose3d", input, weight, bias, stride, padding, output_padding, groups, dilation, method,
        workspace_bytes,
    )  # fmt: skip


# --- layers --------------------------------------------------------------------------------------


class _XpconvLayer:
    """What xpconv's layers add to torch.nn's: ``method`` and ``workspace_bytes``, shown in the repr.
    The other attributes are torch.nn's (annotated here for the type checker only)."""

    method: Method = "auto"
    workspace_bytes: int | None = None
    stride: Any
    padding: Any
    dilation: Any
    groups: int
    kernel_size: Any
    padding_mode: str
    weight: Any
    bias: Any
    _reversed_padding_repeated_twice: Any
    _output_padding: Any

    def extra_repr(self) -> str:
        text = super().extra_repr()  # type: ignore[misc]
        text += f", method={self.method!r}"
        if self.workspace_bytes is not None:
            text += f", workspace_bytes={self.workspace_bytes}"
        return text


class _Conv(_XpconvLayer):
    _function: Callable[..., Tensor]

    def __init__(self, *args: Any, method: Method = "auto", workspace_bytes: int | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.method, self.workspace_bytes = method, workspace_bytes

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        padding = self.padding
        if self.padding_mode != "zeros":
            mode = self.padding_mode
            input = torch.nn.functional.pad(input, self._reversed_padding_repeated_twice, mode=mode)
            padding = 0
        return type(self)._function(
            input, weight, bias, self.stride, padding, self.dilation, self.groups,
            method=self.method, workspace_bytes=self.workspace_bytes,
        )  # fmt: skip


class _ConvTranspose(_XpconvLayer):
    _function: Callable[..., Tensor]
    _ndim: int

    def __init__(self, *args: Any, method: Method = "auto", workspace_bytes: int | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.method, self.workspace_bytes = method, workspace_bytes

    def forward(self, input: Tensor, output_size: list[int] | None = None) -> Tensor:
        if self.padding_mode != "zeros":
            raise ValueError(f"only 'zeros' padding mode is supported for {type(self).__name__}")
        output_padding = self._output_padding(
            input,
            output_size,
            self.stride,
            self.padding,
            self.kernel_size,
            self._ndim,
            self.dilation,
        )
        return type(self)._function(
            input, self.weight, self.bias, self.stride, self.padding, output_padding, self.groups,
            self.dilation, method=self.method, workspace_bytes=self.workspace_bytes,
        )  # fmt: skip


class Conv1d(_Conv, torch.nn.Conv1d):
    """``torch.nn.Conv1d`` (same parameters, initialisation and ``state_dict``), computed by :func:`conv1d`;
    keywords ``method=`` and ``workspace_bytes=``."""

    _function = staticmethod(conv1d)


class Conv2d(_Conv, torch.nn.Conv2d):
    """``torch.nn.Conv2d`` (same parameters, initialisation and ``state_dict``), computed by :func:`conv2d`.

    >>> import torch, xpconv.torch
    >>> layer = xpconv.torch.Conv2d(3, 16, 31, padding="same", groups=1, method="fft")
    >>> layer(torch.ones(2, 3, 40, 40)).shape
    torch.Size([2, 16, 40, 40])
    """

    _function = staticmethod(conv2d)


class Conv3d(_Conv, torch.nn.Conv3d):
    """``torch.nn.Conv3d``, computed by :func:`conv3d`; keywords ``method=`` and ``workspace_bytes=``."""

    _function = staticmethod(conv3d)


class ConvTranspose1d(_ConvTranspose, torch.nn.ConvTranspose1d):
    """``torch.nn.ConvTranspose1d``, computed by :func:`conv_transpose1d`."""

    _function, _ndim = staticmethod(conv_transpose1d), 1


class ConvTranspose2d(_ConvTranspose, torch.nn.ConvTranspose2d):
    """``torch.nn.ConvTranspose2d``, computed by :func:`conv_transpose2d`."""

    _function, _ndim = staticmethod(conv_transpose2d), 2


class ConvTranspose3d(_ConvTranspose, torch.nn.ConvTranspose3d):
    """``torch.nn.ConvTranspose3d``, computed by :func:`conv_transpose3d`."""

    _function, _ndim = staticmethod(conv_transpose3d), 3


_REPLACEMENTS: dict[type, type] = {
    torch.nn.Conv1d: Conv1d,
    torch.nn.Conv2d: Conv2d,
    torch.nn.Conv3d: Conv3d,
    torch.nn.ConvTranspose1d: ConvTranspose1d,
    torch.nn.ConvTranspose2d: ConvTranspose2d,
    torch.nn.ConvTranspose3d: ConvTranspose3d,
}


def convert(
    module: torch.nn.Module,
    *,
    method: Method = "auto",
    workspace_bytes: int | None = None,
    include: Callable[[str, torch.nn.Module], bool] | None = None,
) -> torch.nn.Module:
    """Make every ``torch.nn`` convolution in ``module`` (itself included) compute by xpconv; returns ``module``.

    In place: each ``torch.nn.Conv{1,2,3}d`` and ``ConvTranspose{1,2,3}d`` becomes the xpconv layer of
    the same name, the same object, so its parameters (and an optimizer holding them), buffers,
    hooks and ``state_dict`` keys stay as they are. Only those exact classes are converted: a
    subclass may compute its own way (weight standardisation, a custom ``forward``), and lazy layers
    have no shape yet. ``include(name, layer)``, given, chooses among them (``name`` as in
    ``named_modules()``); ``method`` and ``workspace_bytes`` are set on every converted layer (and
    on xpconv layers already there). Undo with ``convert(module, method="native")``, which keeps
    torch's own convolution on every pass.

    >>> import torch, xpconv.torch
    >>> net = torch.nn.Sequential(torch.nn.Conv1d(1, 4, 401, padding=200), torch.nn.Conv1d(4, 4, 3))
    >>> net = xpconv.torch.convert(net, include=lambda name, layer: layer.kernel_size[0] > 100)
    >>> [type(layer).__module__ for layer in net]
    ['xpconv.torch', 'torch.nn.modules.conv']
    """
    _arguments.resolve_options("convert", {"method": method}, ("method",))
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"convert() takes a torch.nn.Module, got {type(module).__name__}")
    for name, layer in module.named_modules():
        replacement = _REPLACEMENTS.get(type(layer))
        is_ours = isinstance(layer, _XpconvLayer)
        if (replacement is None and not is_ours) or (include is not None and not include(name, layer)):
            continue
        if replacement is not None:
            layer.__class__ = replacement
        layer.method, layer.workspace_bytes = method, workspace_bytes
    return module
