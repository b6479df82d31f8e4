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
import functools
from collections.abc import Sequence
from typing import Any

from array_api_compat import array_namespace, is_jax_namespace, is_torch_namespace
from array_api_compat import device as device_of

from . import _api, _gradients
from ._arguments import check_memory, namespace_of, resolve_workspace
from ._blocks import conjugate
from ._geometry import ConvGeometry, conv_geometry
from .typing import Array, Method, Namespace

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


# A model calls the same few layers every step, and xpconv's argument checks cost ~100 us a call (a
# 3x3 layer's native pass on a small batch takes ~1 ms): the bindings check a geometry the first
# time they see it, then go straight to the passes.


@functools.lru_cache(maxsize=1024)
def _geometry(input_shape: tuple[int, ...], kernel_shape: tuple[int, ...], spec: Spec) -> ConvGeometry:
    return conv_geometry(input_shape, kernel_shape, ndim=len(kernel_shape) - 2, **spec.geometry)


_fitted: set[tuple] = set()


def _direct(a: Array, b: Array, geometry: ConvGeometry) -> Namespace | None:
    """The namespace where the passes can be called directly: torch or JAX arrays of one floating dtype
    (anything else, mixed dtypes and integers included, takes the public functions and their checks)."""
    xp = array_namespace(a, b)
    if not (is_torch_namespace(xp) or is_jax_namespace(xp)) or a.dtype != b.dtype:
        return None
    if not xp.isdtype(a.dtype, ("real floating", "complex floating")):
        return None
    key = (geometry, str(a.dtype), str(device_of(a)))
    if key not in _fitted:  # the size guard, once per geometry, dtype and device
        check_memory(geometry, xp, a)
        _fitted.add(key)
    return xp


def correlate(x: Array, w: Array, spec: Spec) -> Array:
    """``z = conv(x, w)``."""
    geometry = _geometry(tuple(x.shape), tuple(w.shape), spec)
    xp = _direct(x, w, geometry)
    if xp is None:
        return _api.conv(x, w, **spec.options)
    return _gradients.forward(x, w, None, xp, geometry, resolve_workspace(spec.workspace_bytes), spec.method)


def input_grad(dz: Array, w: Array, spec: Spec, x_shape: Sequence[int]) -> Array:
    """``dx = A(w)^T dz``, bilinear (``conv_input_grad`` of the conjugated kernel)."""
    geometry = _geometry(tuple(x_shape), tuple(w.shape), spec)
    xp = _direct(dz, w, geometry)
    if xp is None or tuple(dz.shape) != geometry.output_shape:
        return _api.conv_input_grad(dz, conjugate(w, namespace_of(w, "w")), tuple(x_shape), **spec.options)
    return _gradients.input_grad(dz, w, xp, geometry, spec.method, resolve_workspace(spec.workspace_bytes))


def weight_grad(dz: Array, x: Array, spec: Spec, w_shape: Sequence[int]) -> Array:
    """``dw = B(x)^T dz``, bilinear (``conv_weight_grad`` of the conjugated input)."""
    geometry = _geometry(tuple(x.shape), tuple(w_shape), spec)
    xp = _direct(dz, x, geometry)
    if xp is None or tuple(dz.shape) != geometry.output_shape:
        return _api.conv_weight_grad(dz, conjugate(x, namespace_of(x, "x")), tuple(w_shape), **spec.options)
    return _gradients.weight_grad(dz, x, xp, geometry, spec.method, resolve_workspace(spec.workspace_bytes))
