"""``method="native"``: a pass handed to the array library's own convolution, where it has one.

torch has ``aten.convolution`` and ``aten.convolution_backward`` (oneDNN on the CPU, cuDNN on CUDA),
which compute dX and dK explicitly, with no autograd graph. JAX has ``lax.conv_general_dilated``,
whose exact transposes (``jax.linear_transpose``) are dX and dK. NumPy, CuPy, array-api-strict and
Dask have no convolution: there :func:`native_obstacle` says so, and ``method="native"`` raises.

Every pass here is bilinear, as the other methods' are (the callers conjugate complex data). The
geometry is xpconv's, per side: torch takes one padding per axis for both sides, so the part by
which ``after`` exceeds ``before`` (or the reverse) is padded explicitly, and cut from dX again.
"""

from __future__ import annotations

import math
from typing import Any

from array_api_compat import is_jax_namespace, is_torch_namespace

from ._costs import DEFAULT_MODEL
from ._geometry import ConvGeometry
from .typing import Array, Namespace

__all__ = ["native_forward", "native_input_grad", "native_obstacle", "native_pays", "native_weight_grad"]

# Channels per group up to which a dense layer the FFT pays for never goes to oneDNN: with one or two
# input channels its kernels do not vectorise over channels (a 9x9 blur of a 1024x1024 image: 34 ms
# native, 10 ms by FFT; a 64-filter 401-tap bank over 16,000 samples: 37 ms against 10 ms).
TORCH_FEW_CHANNELS = 2
# The widest depthwise kernel oneDNN's fast depthwise forward and dX take (measured, 64 channels at
# 56x56: forward 13x13 5.5 ms native against 13 ms by FFT, 15x15 252 ms against 14 ms; dX 21x21 6.7 ms
# against 7.7 ms, 31x31 14 ms against 5.4 ms).
TORCH_DEPTHWISE_FORWARD_WIDEST = 13
TORCH_DEPTHWISE_INPUT_WIDEST = 21
# Elements (batch times input size) from which one channel into one filter no longer goes to oneDNN
# for its forward, nor for dK in two or three dimensions: its one-channel kernels fall off a cliff on
# large inputs (a 3x3 forward on 1024x1024: 34 ms against 6 ms by xpconv's taps; 4x512x512 5x5: 49 ms
# against 9 by FFT; 63 taps over 262,144 samples: 68 ms against 5; a 96^3 volume 3^3: 59 ms against 9).
# Fitted with ``_gradients.TORCH_SINGLE_CHANNEL_RELIEF`` on 1 and 4 images of 128^2-1024^2 (3x3-7x7),
# signals of 16,384-262,144 samples (9-63 taps) and volumes of 32^3-96^3: of the 70 passes this took
# from oneDNN, it had been faster on 5, by at most 1.35x (4 images of 128^2, a 5x5 forward: 1.0 ms
# against the FFT's 1.4), and up to 20x slower on the others. A signal's dK stays with it (63 taps
# over 262,144 samples: 8.7 and 9.6 ms in two runs, the column matrix 28 and 9.8).
TORCH_SINGLE_CHANNEL_NATIVE_BELOW = 2**16


def native_obstacle(xp: Namespace, dtype: Any) -> str | None:
    """Why the array library's own convolution cannot compute this pass, or None when it can."""
    if is_torch_namespace(xp):
        if not xp.isdtype(dtype, "real floating"):
            return f"torch's own convolution (aten.convolution) takes real floating-point tensors only, got {dtype}"
        return None
    if is_jax_namespace(xp):
        if not xp.isdtype(dtype, ("real floating", "complex floating")):
            return f"lax.conv_general_dilated rounds, and {dtype} results must be exact: xpconv's own methods take them"
        return None
    return f"the array library ({getattr(xp, '__name__', xp)}) has no convolution of its own"


def native_pays(
    geometry: ConvGeometry,
    grad: str,
    own: str,
    fft_advantage: float,
    library: str,
    threshold: float = DEFAULT_MODEL.native_fft_advantage,
) -> bool:
    """Whether ``"auto"`` hands a pass to the library's own convolution rather than to ``own``, xpconv's
    own pick (:func:`xpconv._gradients._own_rule`); ``fft_advantage`` is the column matrix's estimated
    cost over the FFT's, the taps' spectrum included; ``library`` is ``"torch"`` or ``"jax"``;
    ``threshold`` the advantage a dense layer's FFT must reach to leave the library's convolution
    (the cost model's ``native_fft_advantage``, :mod:`xpconv._costs`).

    Measured per pass on the project's 2 cores, float32 (torch 2.13's oneDNN; jax 0.10's XLA under
    ``jit``), over 3x3 to 31x31 kernels, depthwise to dense, 1-D to 3-D:

    - torch: oneDNN is 2-10x faster than xpconv's column matrix and Winograd (resnet's 3x3 at 64
      channels: 8 ms against 16-20 ms per pass; a 3-D 3x3x3: 4 ms against 46 ms), so it takes every
      pass but where the FFT wins by far: dense layers whose FFT advantage is above 3.2 (13x13 at 32
      channels: 8.5 ms against 40 ms), and any the FFT pays for on one or two input channels (long
      FIR filters, filterbanks on raw audio, blurs: 3-100x); depthwise dK (oneDNN's runs at ~2
      GMAC/s: 7x7 at 96 channels, 23 ms by FFT against 120 ms), the depthwise forward from 15 taps
      wide (its fast kernel ends at 13: 15x15, 252 ms against 14 ms) and dX from 31. The dX of a
      layer with one input channel (a convolution into one channel) stays xpconv's too: a strided
      80-filter bank on raw audio, 12 ms by col2im against 14 ms native; 64 filters of 31 taps at
      stride 2, 7 ms against 19 ms; mnist's 5x5, 1.4 ms against 2.0 ms. One channel into one
      filter from :data:`TORCH_SINGLE_CHANNEL_NATIVE_BELOW` elements on: not the forward, nor dK in
      2-D and 3-D (oneDNN's one-channel cliff: a 3x3 forward on 1024x1024, 33 ms against 7.5 ms).
    - JAX: XLA's CPU convolution beats the column matrix for kernels of more than one tap (3x3:
      26 ms against 116 ms) but loses to the FFT wherever xpconv's rule takes it (depthwise 7x7:
      78 ms against 429 ms), and to the plain matrix product on 1x1 kernels.

    The same rules serve CUDA devices, unmeasured there: autotuning (``xpconv.autotune``) times
    ``"native"`` as one more candidate, and is the way to choose on a GPU.
    """
    if library == "jax":
        return own != "fft" and math.prod(geometry.kernel_size) > 1
    one_channel = geometry.in_channels == 1
    if large_single_channel(geometry) and (grad == "forward" or geometry.ndim > 1):
        return False
    if own != "fft":
        return not (grad == "input" and one_channel)
    if geometry.groups > 1 and geometry.in_channels == geometry.groups:  # depthwise
        widest = max(geometry.kernel_size)
        if grad == "forward":
            return widest <= TORCH_DEPTHWISE_FORWARD_WIDEST
        return grad == "input" and widest <= TORCH_DEPTHWISE_INPUT_WIDEST
    if geometry.in_channels // geometry.groups <= TORCH_FEW_CHANNELS:
        return False
    return fft_advantage < threshold


def single_channel(geometry: ConvGeometry) -> bool:
    """One channel into one filter: an image, a signal, a volume."""
    return geometry.in_channels == 1 and geometry.out_channels == 1


def large_single_channel(geometry: ConvGeometry) -> bool:
    """One channel into one filter, of :data:`TORCH_SINGLE_CHANNEL_NATIVE_BELOW` elements or more:
    where torch's own convolution of it stops paying."""
    elements = geometry.batch * math.prod(geometry.input_size)
    return single_channel(geometry) and elements >= TORCH_SINGLE_CHANNEL_NATIVE_BELOW


def _symmetric(geometry: ConvGeometry) -> tuple[list[int], tuple[tuple[int, int], ...]]:
    """torch's per-axis padding (the smaller side) and the extra zeros each side still needs."""
    both = [min(before, after) for before, after in geometry.pads]
    extra = tuple((before - p, after - p) for (before, after), p in zip(geometry.pads, both))
    return both, extra


def _torch_pad(x: Array, extra: tuple[tuple[int, int], ...]) -> Array:
    if not any(b or a for b, a in extra):
        return x
    import torch

    flat = [side for pair in reversed(extra) for side in pair]  # torch's pad lists the last axis first
    return torch.nn.functional.pad(x, flat)


def _layout_of(a: Array) -> Any:
    """torch's memory format of ``a``: channels-last where it is laid out so, else contiguous."""
    import torch

    channels_last = {4: torch.channels_last, 5: torch.channels_last_3d}.get(a.ndim)
    if channels_last is not None and not a.is_contiguous() and a.is_contiguous(memory_format=channels_last):
        return channels_last
    return torch.contiguous_format


def _torch_arguments(geometry: ConvGeometry, padding: list[int]) -> tuple[Any, ...]:
    n = geometry.ndim
    return (list(geometry.stride), padding, list(geometry.dilation), False, [0] * n, geometry.groups)


def _lax_conv(geometry: ConvGeometry):
    from jax import lax

    def conv(x: Array, kernel: Array) -> Array:
        return lax.conv_general_dilated(
            x,
            kernel,
            window_strides=geometry.stride,
            padding=geometry.pads,
            rhs_dilation=geometry.dilation,
            feature_group_count=geometry.groups,
            precision=lax.Precision.HIGHEST,
        )

    return conv


def native_forward(x: Array, kernel: Array, xp: Namespace, geometry: ConvGeometry) -> Array:
    """``correlate(pad(x), kernel)`` by the library's own convolution."""
    if is_jax_namespace(xp):
        return _lax_conv(geometry)(x, kernel)
    import torch

    padding, extra = _symmetric(geometry)
    return torch.ops.aten.convolution(_torch_pad(x, extra), kernel, None, *_torch_arguments(geometry, padding))


def native_input_grad(dz: Array, kernel: Array, xp: Namespace, geometry: ConvGeometry) -> Array:
    """dX (bilinear in ``dz`` and ``kernel``), shape ``geometry.input_shape``."""
    if is_jax_namespace(xp):
        import jax

        dtype = xp.result_type(dz, kernel)
        shape = jax.ShapeDtypeStruct(geometry.input_shape, dtype)
        conv = _lax_conv(geometry)
        return jax.linear_transpose(lambda x: conv(x, kernel.astype(dtype)), shape)(dz.astype(dtype))[0]
    import torch

    padding, extra = _symmetric(geometry)
    padded = (geometry.batch, geometry.in_channels, *(n + b + a for n, (b, a) in zip(geometry.input_size, extra)))
    # Only its shape and layout are read; an expanded scalar (torch.nn.grad's placeholder) made oneDNN
    # reorder dz and dX through copies (a ConvNeXt block: 80 ms of copies per step).
    placeholder = torch.empty(padded, dtype=dz.dtype, device=dz.device, memory_format=_layout_of(dz))
    dx = torch.ops.aten.convolution_backward(
        dz, placeholder, kernel, None, *_torch_arguments(geometry, padding), [True, False, False]
    )[0]
    if not any(b or a for b, a in extra):
        return dx
    return dx[(..., *(slice(b, b + n) for (b, _), n in zip(extra, geometry.input_size)))]


def native_weight_grad(dz: Array, x: Array, xp: Namespace, geometry: ConvGeometry) -> Array:
    """dK (bilinear in ``dz`` and ``x``), shape ``geometry.kernel_shape``."""
    if is_jax_namespace(xp):
        import jax

        dtype = xp.result_type(dz, x)
        shape = jax.ShapeDtypeStruct(geometry.kernel_shape, dtype)
        conv = _lax_conv(geometry)
        return jax.linear_transpose(lambda kernel: conv(x.astype(dtype), kernel), shape)(dz.astype(dtype))[0]
    import torch

    padding, extra = _symmetric(geometry)
    placeholder = torch.empty(geometry.kernel_shape, dtype=dz.dtype, device=dz.device, memory_format=_layout_of(x))
    return torch.ops.aten.convolution_backward(
        dz, _torch_pad(x, extra), placeholder, None, *_torch_arguments(geometry, padding), [False, True, False]
    )[1]
