"""``xpconv.Conv2d``: a convolution layer that keeps what its backward pass needs."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._api import conv2d, conv2d_backward
from ._geometry import IntOrTuple, Padding, normalize_positive_ints

Array = Any

__all__ = ["Conv2d"]


def _namespace(xp: Any) -> Any:
    """The array API namespace for ``xp`` (a library module or a namespace); NumPy by default."""
    if xp is None:
        import array_api_compat.numpy

        return array_api_compat.numpy
    from array_api_compat import array_namespace

    return array_namespace(xp.asarray(0.0) if hasattr(xp, "asarray") else xp.zeros(1))


class Conv2d:
    """A 2-D convolution layer with explicit ``forward`` and ``backward``, on any array library.

    ``weight`` ``(out_channels, in_channels // groups, kh, kw)`` and ``bias`` ``(out_channels,)``
    (or None) are plain arrays and may be reassigned. They start as ``torch.nn.Conv2d``'s do:
    uniform in ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]`` with ``fan_in = in_channels // groups * kh * kw``,
    drawn with NumPy from ``seed`` so that every backend starts from the same numbers. ``method``
    (``"auto"``, ``"winograd"``, ``"direct"``, ``"dilate"``) is passed to the forward and backward calls.
    ``forward(x)`` returns ``z`` and keeps ``x``; ``backward(dz)`` returns ``dx`` and stores
    ``grad_weight`` and ``grad_bias``.

    >>> import numpy as np
    >>> layer = Conv2d(3, 4, 3, padding=1, seed=0)
    >>> z = layer.forward(np.ones((2, 3, 5, 5)))
    >>> dx = layer.backward(np.ones_like(z))
    >>> z.shape, dx.shape, layer.grad_weight.shape, layer.grad_bias.shape
    ((2, 4, 5, 5), (2, 3, 5, 5), (4, 3, 3, 3), (4,))
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        *,
        stride: IntOrTuple = 1,
        padding: Padding = "valid",
        dilation: IntOrTuple = 1,
        groups: int = 1,
        bias: bool = True,
        method: str = "auto",
        xp: Any = None,
        device: Any = None,
        dtype: Any = None,
        seed: int | None = None,
    ) -> None:
        kh, kw = normalize_positive_ints(kernel_size, "kernel_size", 2)
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}")
        self.xp = _namespace(xp)
        self.options = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups, "method": method}
        dtype = self.xp.float32 if dtype is None else dtype
        rng = np.random.default_rng(seed)
        bound = 1 / math.sqrt(in_channels // groups * kh * kw)
        weight = rng.uniform(-bound, bound, (out_channels, in_channels // groups, kh, kw))
        self.weight: Array = self.xp.asarray(weight, dtype=dtype, device=device)
        self.bias: Array | None = (
            self.xp.asarray(rng.uniform(-bound, bound, out_channels), dtype=dtype, device=device) if bias else None
        )
        self.grad_weight: Array | None = None
        self.grad_bias: Array | None = None
        self._input: Array | None = None

    def forward(self, x: Array) -> Array:
        self._input = x
        return conv2d(x, self.weight, self.bias, **self.options)

    __call__ = forward

    def backward(self, dz: Array) -> Array:
        if self._input is None:
            raise RuntimeError("Conv2d.backward needs a forward call first")
        mode = "tied" if self.bias is not None else None
        dx, self.grad_weight, self.grad_bias = conv2d_backward(dz, self._input, self.weight, bias=mode, **self.options)
        return dx

    def __repr__(self) -> str:
        f, c, kh, kw = self.weight.shape
        options = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"Conv2d({c * self.options['groups']}, {f}, ({kh}, {kw}), {options}, bias={self.bias is not None})"
