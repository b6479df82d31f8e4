"""Convolution layers that keep what their backward pass needs: ``Conv1d``, ``Conv2d``, ``Conv3d``,
``ConvTranspose1d``, ``ConvTranspose2d``, ``ConvTranspose3d``.

They take the constructor keywords of their ``torch.nn`` namesakes and start from the same
distribution: weight and bias uniform in ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]`` (with a complex
``dtype``, their real and imaginary parts each), with ``fan_in`` the weight's
``shape[1] * prod(kernel_size)`` as torch computes it (``in_channels // groups * k`` for a
convolution, ``out_channels // groups * k`` for a transposed one). The numbers are drawn with NumPy
from ``seed``, so every array library starts from the same weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from . import _api, _transpose
from ._arguments import namespace_of
from ._backends import host_memory
from ._geometry import check_fits, int_tuple
from .typing import Array, IntOrTuple, Method, Namespace, Padding

__all__ = ["Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"]


def _namespace(xp: Any) -> Namespace:
    """The array API namespace for ``xp`` (a library module or a namespace); NumPy by default."""
    if xp is None:
        import array_api_compat.numpy

        return array_api_compat.numpy
    return namespace_of(xp.asarray(0.0) if hasattr(xp, "asarray") else xp.zeros(1), "xp")


def _positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


class _Layer:
    """What the six layers share: parameters, their gradients, ``forward``, ``backward``.

    The keywords are ``torch.nn``'s (keyword-only here); ``output_padding`` is the transposed
    layers' only (a ``TypeError`` elsewhere). ``padding`` of a transposed layer has no word forms."""

    ndim: ClassVar[int]
    transposed: ClassVar[bool]
    _forward: ClassVar[Callable[..., Array]]
    _backward: ClassVar[Callable[..., tuple[Array, Array, Array | None]]]

    weight: Array
    bias: Array | None
    grad_weight: Array | None
    grad_bias: Array | None

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        *,
        stride: IntOrTuple = 1,
        padding: Padding = 0,
        output_padding: IntOrTuple = 0,
        dilation: IntOrTuple = 1,
        groups: int = 1,
        bias: bool = True,
        method: Method = "auto",
        xp: Any = None,
        device: Any = None,
        dtype: Any = None,
        seed: int | None = None,
    ) -> None:
        _positive(in_channels=in_channels, out_channels=out_channels, groups=groups)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}")
        options: dict[str, Any] = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
        if self.transposed:
            options["output_padding"] = output_padding
        elif output_padding != 0:
            raise TypeError(
                f"{type(self).__name__} has no output_padding (a transposed convolution's), got {output_padding!r}"
            )
        kernel = int_tuple(kernel_size, "kernel_size", self.ndim)
        shape = (in_channels, out_channels // groups) if self.transposed else (out_channels, in_channels // groups)
        # the parameters are drawn on the host (float64) before they move: refuse what cannot fit there
        check_fits((*shape, *kernel), 16, host_memory(), what="the weight", cause="the channels and kernel_size")
        self.xp = _namespace(xp)
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel
        self.options = {**options, "method": method}
        rng = np.random.default_rng(seed)
        bound = 1 / math.sqrt(shape[1] * math.prod(kernel))
        dtype = self.xp.float32 if dtype is None else dtype
        complex_parameters = self.xp.isdtype(dtype, "complex floating")

        def uniform(size: tuple[int, ...]) -> Array:
            values = rng.uniform(-bound, bound, size)
            if complex_parameters:  # as torch.nn: the real and the imaginary part each in the bounds
                values = values + 1j * rng.uniform(-bound, bound, size)
            return self.xp.asarray(values, dtype=dtype, device=device)

        self.weight = uniform((*shape, *kernel))
        self.bias = uniform((out_channels,)) if bias else None
        self.grad_weight = self.grad_bias = None
        self._input: Array | None = None

    def forward(self, x: Array) -> Array:
        """The layer's output; keeps ``x`` for :meth:`backward`."""
        self._input = x
        return type(self)._forward(x, self.weight, self.bias, **self.options)

    __call__ = forward

    def backward(self, dz: Array) -> Array:
        """``dx`` for the output gradient ``dz``; stores ``grad_weight`` and ``grad_bias``."""
        if self._input is None:
            raise RuntimeError(f"{type(self).__name__}.backward needs a forward call first")
        dx, self.grad_weight, self.grad_bias = type(self)._backward(
            dz, self._input, self.weight, bias=self.bias, **self.options
        )
        return dx

    def parameters(self) -> list[tuple[Array, Array | None]]:
        """``(parameter, gradient)`` pairs, for an optimizer."""
        pairs = [(self.weight, self.grad_weight)]
        return pairs if self.bias is None else [*pairs, (self.bias, self.grad_bias)]

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return (
            f"{type(self).__name__}({self.in_channels}, {self.out_channels}, {self.kernel_size}, {options}, "
            f"bias={self.bias is not None})"
        )


class _Convolution(_Layer):
    transposed = False


class _TransposedConvolution(_Layer):
    transposed = True


class Conv1d(_Convolution):
    """A 1-D convolution layer (``torch.nn.Conv1d``'s arguments) with explicit ``forward`` and ``backward``.

    >>> import numpy as np
    >>> layer = Conv1d(2, 4, 3, padding=1, seed=0)
    >>> z = layer.forward(np.ones((5, 2, 10), dtype=np.float32))
    >>> dx = layer.backward(np.ones_like(z))
    >>> z.shape, dx.shape, layer.grad_weight.shape, layer.grad_bias.shape
    ((5, 4, 10), (5, 2, 10), (4, 2, 3), (4,))
    """

    ndim = 1
    _forward = staticmethod(_api.conv1d)
    _backward = staticmethod(_api.conv1d_backward)


class Conv2d(_Convolution):
    """A 2-D convolution layer with explicit ``forward`` and ``backward``, on any array library.

    The arguments are ``torch.nn.Conv2d``'s (``padding`` also takes ``"same"`` and per-side pairs),
    plus ``method`` (``"auto"``, ``"winograd"``, ``"fft"``, ``"direct"``, ``"dilate"``) and where the
    parameters live: ``xp`` (an array library or namespace; NumPy by default), ``device``, ``dtype``
    (float32 by default; complex64 and complex128 too) and ``seed``. ``weight``
    ``(out_channels, in_channels // groups, kh, kw)`` and ``bias`` ``(out_channels,)`` (or None) are
    plain arrays and may be reassigned.
    ``forward(x)`` returns ``z`` and keeps ``x``; ``backward(dz)`` returns ``dx`` and stores
    ``grad_weight`` and ``grad_bias``.

    >>> import numpy as np
    >>> layer = Conv2d(3, 4, 3, padding=1, seed=0)
    >>> z = layer.forward(np.ones((2, 3, 5, 5)))
    >>> dx = layer.backward(np.ones_like(z))
    >>> z.shape, dx.shape, layer.grad_weight.shape, layer.grad_bias.shape
    ((2, 4, 5, 5), (2, 3, 5, 5), (4, 3, 3, 3), (4,))
    """

    ndim = 2
    _forward = staticmethod(_api.conv2d)
    _backward = staticmethod(_api.conv2d_backward)


class Conv3d(_Convolution):
    """A 3-D convolution layer (``torch.nn.Conv3d``'s arguments), as :class:`Conv2d`.

    >>> import numpy as np
    >>> layer = Conv3d(1, 2, (1, 3, 3), stride=(1, 2, 2), seed=0)
    >>> layer.forward(np.ones((1, 1, 4, 7, 7), dtype=np.float32)).shape
    (1, 2, 4, 3, 3)
    """

    ndim = 3
    _forward = staticmethod(_api.conv3d)
    _backward = staticmethod(_api.conv3d_backward)


class ConvTranspose1d(_TransposedConvolution):
    """A 1-D transposed convolution layer (``torch.nn.ConvTranspose1d``'s arguments), as :class:`Conv2d`;
    ``weight`` is ``(in_channels, out_channels // groups, k)``.

    >>> import numpy as np
    >>> layer = ConvTranspose1d(4, 2, 2, stride=2, seed=0)
    >>> layer.forward(np.ones((1, 4, 5), dtype=np.float32)).shape
    (1, 2, 10)
    """

    ndim = 1
    _forward = staticmethod(_transpose.conv_transpose1d)
    _backward = staticmethod(_transpose.conv_transpose1d_backward)


class ConvTranspose2d(_TransposedConvolution):
    """A 2-D transposed convolution layer (``torch.nn.ConvTranspose2d``'s arguments), as :class:`Conv2d`;
    ``weight`` is ``(in_channels, out_channels // groups, kh, kw)``.

    >>> import numpy as np
    >>> layer = ConvTranspose2d(8, 3, 3, stride=2, padding=1, output_padding=1, seed=0)
    >>> z = layer.forward(np.ones((2, 8, 4, 4), dtype=np.float32))
    >>> dx = layer.backward(np.ones_like(z))
    >>> z.shape, dx.shape, layer.grad_weight.shape
    ((2, 3, 8, 8), (2, 8, 4, 4), (8, 3, 3, 3))
    """

    ndim = 2
    _forward = staticmethod(_transpose.conv_transpose2d)
    _backward = staticmethod(_transpose.conv_transpose2d_backward)


class ConvTranspose3d(_TransposedConvolution):
    """A 3-D transposed convolution layer (``torch.nn.ConvTranspose3d``'s arguments), as :class:`Conv2d`.

    >>> import numpy as np
    >>> layer = ConvTranspose3d(2, 1, 2, stride=2, seed=0)
    >>> layer.forward(np.ones((1, 2, 2, 2, 2), dtype=np.float32)).shape
    (1, 1, 4, 4, 4)
    """

    ndim = 3
    _forward = staticmethod(_transpose.conv_transpose3d)
    _backward = staticmethod(_transpose.conv_transpose3d_backward)
