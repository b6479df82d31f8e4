"""What the framework bindings (``xpconv.torch``, ``xpconv.jax``) share: the static description of a
convolution's three bilinear passes.

Both bindings differentiate the same three passes by each other: with ``x`` the input, ``w`` the
kernel and ``dz`` an output-shaped array,

- ``correlate(x, w) -> z``, the forward pass (``xpconv.conv``);
- ``input_grad(dz, w) -> dx``, its transpose in ``x``;
- ``weight_grad(dz, x) -> dw``, its transpose in ``w``.

:func:`correlate`, :func:`input_grad` and :func:`weight_grad` compute them on any array library,
unconjugated (xpconv's public gradients conjugate complex data: they are the adjoints). The bindings
wrap them as ``torch.autograd.Function`` s and ``jax.custom_vjp`` s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from . import _api
from ._arguments import namespace_of
from ._blocks import conjugate
from .typing import Array, Method

__all__ = ["Spec", "correlate", "input_grad", "weight_grad"]


@dataclasses.dataclass(frozen=True)
class Spec:
    """A convolution's options, padding resolved to ``(before, after)`` pairs per axis; hashable, so
    that it can be a static argument (``nondiff_argnums``, a custom operator's ints)."""

    stride: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]
    dilation: tuple[int, ...]
    groups: int
    method: Method = "auto"
    workspace_bytes: int | None = None

    @property
    def geometry(self) -> dict[str, Any]:
        """The keyword arguments of ``_geometry.conv_geometry``."""
        return {"stride": self.stride, "padding": self.pads, "dilation": self.dilation, "groups": self.groups}

    @property
    def options(self) -> dict[str, Any]:
        """The keyword options of xpconv's functions."""
        return {**self.geometry, "method": self.method, "workspace_bytes": self.workspace_bytes}

    def times(self, copies: int) -> Spec:
        """The same convolution with ``copies`` times the groups (a mapped axis folded into them)."""
        return dataclasses.replace(self, groups=self.groups * copies)


def correlate(x: Array, w: Array, spec: Spec) -> Array:
    """``z = conv(x, w)``."""
    return _api.conv(x, w, **spec.options)


def input_grad(dz: Array, w: Array, spec: Spec, x_shape: Sequence[int]) -> Array:
    """``dx = A(w)^T dz``, bilinear (``conv_input_grad`` of the conjugated kernel)."""
    return _api.conv_input_grad(dz, conjugate(w, namespace_of(w, "w")), tuple(x_shape), **spec.options)


def weight_grad(dz: Array, x: Array, spec: Spec, w_shape: Sequence[int]) -> Array:
    """``dw = B(x)^T dz``, bilinear (``conv_weight_grad`` of the conjugated input)."""
    return _api.conv_weight_grad(dz, conjugate(x, namespace_of(x, "x")), tuple(w_shape), **spec.options)
