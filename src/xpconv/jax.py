"""xpconv inside JAX models: ``lax.conv_general_dilated`` and xpconv's functions, differentiated by xpconv.

:func:`conv_general_dilated` takes ``jax.lax.conv_general_dilated``'s arguments with their meaning
(window strides, ``'SAME'``/``'SAME_LOWER'``/``'VALID'`` or pairs, ``lhs_dilation`` as the transposed
convolution, ``rhs_dilation``, dimension numbers, channels-last specs included, feature groups), so
that a Flax layer computes by xpconv with one argument::

    flax.nnx.Conv(3, 64, (31, 31), conv_general_dilated=xpconv.jax.conv_general_dilated, rngs=...)
    flax.linen.Conv(64, (31, 31), conv_general_dilated=xpconv.jax.conv_general_dilated)

:func:`conv`, :func:`conv1d` ... :func:`conv_transpose3d` take xpconv's own signatures.

Each is a ``jax.custom_vjp`` over xpconv's three passes (``xpconv._bridge``) whose backward is
made of the same custom_vjp functions: ``jit``, ``vmap``, ``grad`` and second (and higher) reverse
derivatives run on xpconv's explicit gradients. Forward mode (``jvp``, ``jacfwd``) is not available
through a ``custom_vjp``. With ``method="auto"`` a pass goes to XLA's own convolution
(``method="native"``) or to xpconv's FFT, whichever measured faster (``xpconv._native.native_pays``).

JAX's complex convention is its own: a VJP is the plain transpose, ``jax_vjp(ct) ==
conj(torch_backward(conj(ct)))``; these functions follow JAX's.

>>> import jax, jax.numpy as jnp, xpconv.jax
>>> x, w = jnp.ones((2, 3, 32, 32)), jnp.ones((8, 3, 31, 31)) / 961
>>> loss = lambda w: xpconv.jax.conv2d(x, w, padding="same").sum()
>>> jax.jit(jax.grad(loss))(w).shape
(8, 3, 31, 31)
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from . import _arguments, _bridge, _transpose
from ._bridge import Spec
from ._geometry import int_tuple, resolve_padding
from .typing import Array, ConvOptions, TransposeOptions, Unpack

__all__ = [
    "conv",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_general_dilated",
    "conv_transpose",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
]


# --- the three passes as custom_vjp functions, each differentiated by the others -----------------


def _like(grad: Array, primal: Array) -> Array:
    """A cotangent in its primal's dtype (xpconv computes mixed dtypes in the promoted one)."""
    return grad if grad.dtype == primal.dtype else grad.astype(primal.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _correlate(x: Array, w: Array, spec: Spec) -> Array:
    return _bridge.correlate(jnp.asarray(x), jnp.asarray(w), spec)  # a cotangent may come as a NumPy array


def _correlate_fwd(x, w, spec):
    return _correlate(x, w, spec), (x, w)


def _correlate_bwd(spec, saved, ct):
    x, w = saved
    return _like(_input_grad(ct, w, spec, x.shape), x), _like(_weight_grad(ct, x, spec, w.shape), w)


_correlate.defvjp(_correlate_fwd, _correlate_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _input_grad(dz: Array, w: Array, spec: Spec, x_shape: tuple[int, ...]) -> Array:
    return _bridge.input_grad(jnp.asarray(dz), jnp.asarray(w), spec, x_shape)


def _input_grad_fwd(dz, w, spec, x_shape):
    return _input_grad(dz, w, spec, x_shape), (dz, w)


def _input_grad_bwd(spec, x_shape, saved, ct):
    dz, w = saved
    return _like(_correlate(ct, w, spec), dz), _like(_weight_grad(dz, ct, spec, w.shape), w)


_input_grad.defvjp(_input_grad_fwd, _input_grad_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _weight_grad(dz: Array, x: Array, spec: Spec, w_shape: tuple[int, ...]) -> Array:
    return _bridge.weight_grad(jnp.asarray(dz), jnp.asarray(x), spec, w_shape)


def _weight_grad_fwd(dz, x, spec, w_shape):
    return _weight_grad(dz, x, spec, w_shape), (dz, x)


def _weight_grad_bwd(spec, w_shape, saved, ct):
    dz, x = saved
    return _like(_correlate(x, ct, spec), dz), _like(_input_grad(dz, ct, spec, x.shape), x)


_weight_grad.defvjp(_weight_grad_fwd, _weight_grad_bwd)


def _add_bias(z: Array, bias: Array | None) -> Array:
    if bias is None:
        return z
    if bias.ndim == 1:
        return z + bias.reshape(-1, *(1,) * (z.ndim - 2))
    return z + bias  # untied: (F, *out)


def _to_channels_first(a: Array, layout: str) -> Array:
    return a if layout == "channels_first" else jnp.moveaxis(a, -1, 1)


def _from_channels_first(a: Array, layout: str) -> Array:
    return a if layout == "channels_first" else jnp.moveaxis(a, 1, -1)


def _jax_arrays(function: str, **arrays: Array | None) -> list[Array | None]:
    """The arrays as JAX arrays (NumPy arrays are taken, as lax takes them); anything else is a TypeError."""
    for name, value in arrays.items():
        if value is not None and not isinstance(value, jax.Array | np.ndarray):
            raise TypeError(f"{function}() takes JAX (or NumPy) arrays; {name} is a {type(value).__name__}")
    return [None if value is None else jnp.asarray(value) for value in arrays.values()]


# --- xpconv's own signatures ---------------------------------------------------------------------


def _conv(
    function: str, ndim: int | None, x: Array, kernel: Array, bias: Array | None, given: Mapping[str, Any]
) -> Array:
    x, kernel, bias = _jax_arrays(function, x=x, kernel=kernel, bias=bias)
    options = _arguments.resolve_options(function, given, ConvOptions.__optional_keys__)
    ndim = _arguments.spatial_dims(tuple(kernel.shape), ndim)
    x = _to_channels_first(x, options.layout)
    stride, dilation = int_tuple(options.stride, "stride", ndim), int_tuple(options.dilation, "dilation", ndim)
    pads = resolve_padding(options.padding, tuple(x.shape[2:]), tuple(kernel.shape[2:]), stride, dilation)
    spec = Spec(stride, pads, dilation, options.groups, options.method, given.get("workspace_bytes"))
    return _from_channels_first(_add_bias(_correlate(x, kernel, spec), bias), options.layout)


def _conv_transpose(
    function: str, ndim: int | None, x: Array, kernel: Array, bias: Array | None, given: Mapping[str, Any]
) -> Array:
    x, kernel, bias = _jax_arrays(function, x=x, kernel=kernel, bias=bias)
    options = _arguments.resolve_options(function, given, TransposeOptions.__optional_keys__, padding=0)
    ndim = _arguments.spatial_dims(tuple(kernel.shape), ndim)
    x = _to_channels_first(x, options.layout)
    geometry, appended = _transpose._geometry(tuple(x.shape), tuple(kernel.shape), ndim, options)
    spec = Spec(geometry.stride, geometry.pads, geometry.dilation, geometry.groups, options.method,
                given.get("workspace_bytes"))  # fmt: skip
    z = _input_grad(x, kernel, spec, geometry.input_shape)
    if any(appended):
        z = jnp.pad(z, ((0, 0), (0, 0), *((0, a) for a in appended)))
    return _from_channels_first(_add_bias(z, bias), options.layout)


def conv(x: Array, kernel: Array, bias: Array | None = None, **options: Unpack[ConvOptions]) -> Array:
    """:func:`xpconv.conv` on JAX arrays, differentiable by xpconv's passes (any number of spatial axes).

    >>> import jax.numpy as jnp, xpconv.jax
    >>> xpconv.jax.conv(jnp.ones((1, 2, 9)), jnp.ones((3, 2, 4)), padding="full").shape
    (1, 3, 12)
    """
    return _conv("conv", None, x, kernel, bias, options)


def conv1d(x: Array, kernel: Array, bias: Array | None = None, **options: Unpack[ConvOptions]) -> Array:
    """:func:`xpconv.conv1d` on JAX arrays, differentiable by xpconv's passes."""
    return _conv("conv1d", 1, x, kernel, bias, options)


def conv2d(x: Array, kernel: Array, bias: Array | None = None, **options: Unpack[ConvOptions]) -> Array:
    """:func:`xpconv.conv2d` on JAX arrays, differentiable by xpconv's passes."""
    return _conv("conv2d", 2, x, kernel, bias, options)


def conv3d(x: Array, kernel: Array, bias: Array | None = None, **options: Unpack[ConvOptions]) -> Array:
    """:func:`xpconv.conv3d` on JAX arrays, differentiable by xpconv's passes."""
    return _conv("conv3d", 3, x, kernel, bias, options)


def conv_transpose(x: Array, kernel: Array, bias: Array | None = None, **options: Unpack[TransposeOptions]) -> Array:
    """:func:`xpconv.conv_transpose` (torch's semantics) on JAX arrays, differentiable by xpconv's passes.

    >>> import jax.numpy as jnp, xpconv.jax
    >>> xpconv.jax.conv_transpose(jnp.ones((1, 4, 8, 8)), jnp.ones((4, 2, 4, 4)), stride=2, padding=1).shape
    (1, 2, 16, 16)
    """
    return _conv_transpose("conv_transpose", None, x, kernel, bias, options)


def conv_transpose1d(x: Array, kernel: Array, bias: Array | None = None, **options: Unpack[TransposeOptions]) -> Array:
    """:func:`xpconv.conv_transpose1d` on JAX arrays, differentiable by xpconv's passes."""
    return _conv_transpose("conv_transpose1d", 1, x, kernel, bias, options)


def conv_transpose2d(x: Array, kernel: Array, bias: Array | None = None, **options: Unpack[TransposeOptions]) -> Array:
    """:func:`xpconv.conv_transpose2d` on JAX arrays, differentiable by xpconv's passes."""
    return _conv_transpose("conv_transpose2d", 2, x, kernel, bias, options)


def conv_transpose3d(x: Array, kernel: Array, bias: Array | None = None, **options: Unpack[TransposeOptions]) -> Array:
    """:func:`xpconv.conv_transpose3d` on JAX arrays, differentiable by xpconv's passes."""
    return _conv_transpose("conv_transpose3d", 3, x, kernel, bias, options)


# --- lax.conv_general_dilated --------------------------------------------------------------------


def _crop_or_pad(a: Array, axis: int, before: int, after: int) -> Array:
    """Zeros added (positive) or rows cut (negative) at both ends of ``axis``."""
    n = a.shape[axis]
    index = [slice(None)] * a.ndim
    index[axis] = slice(max(0, -before), n - max(0, -after))
    a = a[tuple(index)]
    widths = [(0, 0)] * a.ndim
    widths[axis] = (max(0, before), max(0, after))
    return jnp.pad(a, widths) if before > 0 or after > 0 else a


def _transposed_kernel(w: Array, groups: int) -> Array:
    """``(O, I / g, *k)`` as the kernel ``(I, O / g, *k)`` of the convolution whose input gradient
    an input-dilated correlation with ``w`` is: each group's block transposed, the taps flipped."""
    out_channels, per_group, *ksize = w.shape
    blocks = w.reshape(groups, out_channels // groups, per_group, *ksize)
    swapped = jnp.swapaxes(blocks, 1, 2).reshape(groups * per_group, out_channels // groups, *ksize)
    return jnp.flip(swapped, axis=tuple(range(2, 2 + len(ksize))))


def conv_general_dilated(
    lhs: Array,
    rhs: Array,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision: Any = None,
    preferred_element_type: Any = None,
    *,
    method: str = "auto",
    workspace_bytes: int | None = None,
    **unused: Any,
) -> Array:
    """``jax.lax.conv_general_dilated``, computed and differentiated by xpconv.

    The arguments have lax's meaning. ``padding``: ``'VALID'``, ``'SAME'`` (``ceil(n / s)`` outputs,
    the odd unit after), ``'SAME_LOWER'`` (before) or ``(low, high)`` pairs, negative ones cropping;
    ``lhs_dilation`` (zeros between input elements: a transposed convolution) takes pairs only, as
    lax does. ``precision`` is accepted and not used (xpconv computes in the inputs' precision);
    ``preferred_element_type`` is the result's dtype. ``batch_group_count`` other than 1 is a
    ``ValueError``. Further keywords (Flax passes its own) are accepted and not used. ``method`` and
    ``workspace_bytes`` are xpconv's.

    >>> import jax.numpy as jnp, xpconv.jax
    >>> x, w = jnp.ones((2, 32, 32, 3)), jnp.ones((7, 7, 3, 16))      # NHWC, HWIO as in Flax
    >>> xpconv.jax.conv_general_dilated(x, w, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")).shape
    (2, 16, 16, 16)
    """
    del precision, unused
    lhs, rhs = _jax_arrays("conv_general_dilated", lhs=lhs, rhs=rhs)
    if batch_group_count != 1:
        raise ValueError(f"conv_general_dilated(): batch_group_count must be 1 here, got {batch_group_count}")
    numbers = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    x, w = jnp.transpose(lhs, numbers.lhs_spec), jnp.transpose(rhs, numbers.rhs_spec)
    ndim = x.ndim - 2
    strides = int_tuple(tuple(window_strides), "window_strides", ndim)
    lhs_dilation = int_tuple(tuple(lhs_dilation or (1,) * ndim), "lhs_dilation", ndim)
    rhs_dilation = int_tuple(tuple(rhs_dilation or (1,) * ndim), "rhs_dilation", ndim)
    ksize = tuple(w.shape[2:])
    transposed = any(d > 1 for d in lhs_dilation)
    if isinstance(padding, str):
        if transposed:
            raise ValueError(
                "conv_general_dilated(): a string padding with lhs_dilation is not defined (lax refuses it too)"
            )
        spans = [d * (k - 1) + 1 for k, d in zip(ksize, rhs_dilation)]
        padding = lax.padtype_to_pads(x.shape[2:], spans, strides, padding)
    pairs = tuple((int(lo), int(hi)) for lo, hi in cast(Sequence[tuple[int, int]], padding))
    if len(pairs) != ndim:
        raise ValueError(f"conv_general_dilated(): padding must have {ndim} (low, high) pairs, got {padding!r}")
    options = {"method": method, "workspace_bytes": workspace_bytes}
    _arguments.resolve_options("conv_general_dilated", options, options.keys())
    if transposed:
        z = _input_dilated(
            x, w, strides, pairs, lhs_dilation, rhs_dilation, feature_group_count, method, workspace_bytes
        )
    else:
        for axis, (lo, hi) in enumerate(pairs):  # negative padding crops
            if lo < 0 or hi < 0:
                x = _crop_or_pad(x, 2 + axis, min(lo, 0), min(hi, 0))
        pads = tuple((max(lo, 0), max(hi, 0)) for lo, hi in pairs)
        spec = Spec(strides, pads, rhs_dilation, feature_group_count, method, workspace_bytes)  # type: ignore[arg-type]
        z = _correlate(x, w, spec)
    if preferred_element_type is not None:
        z = z.astype(preferred_element_type)
    return jnp.transpose(z, tuple(int(axis) for axis in np.argsort(numbers.out_spec)))


def _input_dilated(x, w, strides, pairs, lhs_dilation, rhs_dilation, groups, method, workspace_bytes) -> Array:
    """The correlation of ``w`` with x dilated by ``lhs_dilation`` and padded by ``pairs``, at stride 1,
    is the input gradient of the convolution with stride ``lhs_dilation`` whose kernel is
    :func:`_transposed_kernel` and whose padding is ``reach - low`` and ``reach - high`` (``reach =
    d * (k - 1)``); padding beyond the reach adds zero rows, below 0 crops. A window stride reads
    every s-th output of that."""
    reach = [d * (k - 1) for k, d in zip(w.shape[2:], rhs_dilation)]
    clipped = [(min(max(lo, 0), r), min(max(hi, 0), r)) for (lo, hi), r in zip(pairs, reach)]
    sizes = [(n - 1) * s + 1 + lo + hi - r for n, s, (lo, hi), r in zip(x.shape[2:], lhs_dilation, clipped, reach)]
    if any(size < 1 for size in sizes) or any(
        (n - 1) * s + 1 + lo + hi - r < 1 for n, s, (lo, hi), r in zip(x.shape[2:], lhs_dilation, pairs, reach)
    ):
        raise ValueError(f"conv_general_dilated(): the padding {pairs} leaves no output for input {tuple(x.shape)}")
    kernel = _transposed_kernel(w, groups)
    pads = tuple((r - lo, r - hi) for (lo, hi), r in zip(clipped, reach))
    spec = Spec(lhs_dilation, pads, rhs_dilation, groups, method, workspace_bytes)
    z = _input_grad(x, kernel, spec, (x.shape[0], w.shape[0], *sizes))
    for axis, ((lo, hi), (clo, chi)) in enumerate(zip(pairs, clipped)):
        if (lo, hi) != (clo, chi):
            z = _crop_or_pad(z, 2 + axis, lo - clo, hi - chi)
    if any(s > 1 for s in strides):
        z = z[(..., *(slice(None, None, s) for s in strides))]
    return z
