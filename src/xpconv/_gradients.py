"""Forward pass and the three gradients of a convolution, for a validated :class:`ConvGeometry`.

This is where dX, dK and db are computed, by one of these algorithms:

``method="dilate"`` (the method of the tutorial "3.2.3 Backward Propagation Convolution layer (Vectorized)")
    dX: ``dz`` dilated by the stride, zero-padded, correlated at stride 1 with the kernel rotated
    180 degrees; the input padding is cut away. dK: the padded input correlated at stride 1 with
    the dilated ``dz``. Every zero inserted by the dilation is multiplied, so a stride ``s``
    costs ``s_h * s_w`` times the necessary work, and a non-finite input element spreads into
    gradient entries it does not influence (it meets an inserted zero: ``inf * 0 = nan``).

``method="direct"``
    dK: the stride-``s`` windows of the padded input contracted with ``dz`` itself. dX: col2im,
    ``K^T dz`` followed by one strided add per kernel tap. No inserted zero is multiplied.

``method="winograd"``
    2-D, 3x3 kernel, stride 1, floating point (any padding, dilation, groups): forward, dX (the
    stride-1 correlation of ``dz`` with the rotated kernel) and dK by Winograd's F(4x4, 3x3), see
    ``_winograd``. Elsewhere it raises a ``ValueError`` that says why.

``method="fft"``
    Any geometry, floating point: every pass as a product in the frequency domain, see ``_fft``;
    its cost hardly depends on the kernel's size. Integers raise a ``ValueError``.

``method="auto"`` (the default) is ``winograd`` where it applies and measured faster
(:func:`winograd_pays`, per pass), ``fft`` where its estimated cost is well below the column
matrix's (:func:`fft_pays`: large kernels); otherwise ``direct``, except for dX at stride 1 when ``F/g <= C/g``: there
the tutorial's correlation inserts no zeros and its column buffer (``F/g * k`` rows) is no larger
than col2im's (``C/g * k`` rows), and one matrix product beats col2im's strided adds (measured
on the benchmark layers: 26 ms against 40 ms for resnet3x3's dX on NumPy; with ``F/g > C/g``, as
in mnist5x5 with 1 channel and 8 filters, col2im took 1.0 ms against 4.1 ms).

The forward pass takes ``method`` too: ``direct`` and ``dilate`` are the same column-matrix
correlation there. With autotuning on (``xpconv.autotune``), ``"auto"`` times the methods that
apply instead of following these rules (``_autotune``).

The passes are bilinear, for every method; the complex conjugations of the gradients are the
callers' (``_api``, ``_transpose``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any, cast

from array_api_compat import is_dask_namespace, is_jax_namespace, is_torch_namespace

from ._autotune import autotuning, tuned
from ._backends import itemsize, on_cpu
from ._blocks import dilate_axes
from ._contract import Windows, by_taps, contract_weights, correlate, scatter_windows
from ._costs import DEFAULT_MODEL, CostModel, model_for, target_of
from ._dask import over_dask_chunks
from ._fft import FFTPlan, fft_backward, fft_forward, fft_input_grad, fft_weight_grad, spectrum_cost
from ._geometry import ConvGeometry
from ._native import (
    large_single_channel,
    native_forward,
    native_input_grad,
    native_obstacle,
    native_pays,
    native_weight_grad,
    single_channel,
)
from ._slabs import column_bytes, forward_by_slabs, input_grad_by_slabs, slab_ranges, weight_grad_by_slabs
from ._winograd import Tiling, winograd_correlate, winograd_weight_grad
from .typing import Array, Method, Namespace

# Channels per group, on both sides, from which "auto" takes Winograd (measured: see winograd_pays).
WINOGRAD_MIN_CHANNELS = 16

__all__ = [
    "add_bias",
    "bias_grad",
    "forward",
    "input_and_weight_grads",
    "input_grad",
    "rule_pick",
    "weight_grad",
    "winograd_obstacle",
    "winograd_pays",
]


def _spatial_axes(geometry: ConvGeometry) -> tuple[int, ...]:
    return tuple(range(2, 2 + geometry.ndim))


def winograd_obstacle(geometry: ConvGeometry, xp: Namespace, dtype: Any) -> str | None:
    """Why ``method="winograd"`` cannot compute this convolution, or None when it can."""
    if geometry.ndim != 2:
        return f"it needs 2 spatial axes, got {geometry.ndim}"
    if geometry.kernel_size != (3, 3):
        return f"it needs a 3x3 kernel, got {geometry.kernel_size[0]}x{geometry.kernel_size[1]}"
    if geometry.stride != (1, 1):
        return f"it needs stride 1, got stride {geometry.stride}"
    if not xp.isdtype(dtype, ("real floating", "complex floating")):
        return "its transforms are fractional and would make integer results inexact"
    return None


def winograd_pays(geometry: ConvGeometry, grad: str) -> bool:
    """Whether ``"auto"`` takes Winograd for a pass (given that it applies): ``grad`` is ``"forward"``,
    ``"input"`` (dX, the same correlation with the channel roles swapped) or ``"weight"`` (dK).

    Measured on 2 cores (NumPy, float32, 16 to 256 channels, 14x14 to 56x56 images): the forward
    and dX take 0.5-0.9x the column-matrix path's time from 16 channels per group on both sides,
    but lose on 14x14 images with 16 channels (1.6x, the tiles' transforms outweigh the products).
    dK accumulates an ``a^2 x F x C`` product per batch chunk; it pays while ``F / g`` is at most
    about twice the tiles per sample (resnet's 56x56 at 64 channels: 0.9x; 14x14 at 256 channels:
    3x). Depthwise layers never pay: the transforms cost ~160 flops per output against the direct
    path's 18 (measured 12.4 ms against 4.3 ms forward for 128 channels at 28x28).
    """
    channels, filters = geometry.in_channels // geometry.groups, geometry.out_channels // geometry.groups
    fewest = min(channels, filters)
    if fewest < WINOGRAD_MIN_CHANNELS:
        return False
    if grad == "weight":
        tiles = _tiling(geometry).tiles
        return filters <= 2 * math.prod(geometry.dilation) * math.prod(tiles)
    size = geometry.input_size if grad == "input" else geometry.output_size
    return min(size) >= 16 or fewest >= 2 * WINOGRAD_MIN_CHANNELS


def fft_obstacle(xp: Namespace, dtype: Any) -> str | None:
    """Why ``method="fft"`` cannot compute this convolution, or None when it can."""
    if not xp.isdtype(dtype, ("real floating", "complex floating")):
        return f"the FFT rounds, and {dtype} results must be exact (integers never take it)"
    if not hasattr(xp, "fft"):
        return f"the array library has no fft extension ({getattr(xp, '__name__', xp)})"
    return None


def fft_pays(geometry: ConvGeometry, grad: str, model: CostModel = DEFAULT_MODEL) -> bool:
    """Whether ``"auto"`` takes the FFT for a pass (given that it applies), from an estimate of both
    costs in multiply-adds; the same for the three passes (their costs moved together).

    The column-matrix passes cost ``N F (C/g) prod(out) prod(k)``. The FFT costs its transforms,
    ``N (C + F) L log2 L`` (``L`` the product of the transform lengths), and the per-frequency
    products, ``4 N F (C/g) Lf`` (complex, ``Lf`` the frequencies kept) plus the kernel's spectrum.
    Fitted to 99 geometries x 3 passes timed on the project's 2 cores, NumPy and torch (1-D and 2-D;
    3 to 129 taps; depthwise to 128 -> 128 channels; 14 to 4096 samples): the FFT wins where the
    column matrix costs more than ``0.5 transforms + 4 products`` (the faster method for 88% of the
    passes on NumPy, 91% on torch), and ``"auto"`` asks for 1.6 times that (88% and 86%), so that
    no layer of the classic suite (the largest is mnist5x5's 5x5 kernel: ratio 1.3) takes it where
    it measured slower. The wrong picks are on 5x5 kernels, up to 2x slower. ``grad`` is unused:
    the rule is the same for every pass. The 0.5 and 1.6 are ``model``'s ``transform_weight`` and
    ``fft_margin`` (:mod:`xpconv._costs`), refitted per machine by :func:`xpconv.calibrate`.
    Autotuning measures instead.
    """
    return fft_advantage(geometry, transform_weight=model.transform_weight) > model.fft_margin


# One channel into one filter (an image, a signal, a volume) on arrays other than torch's and JAX's:
# the column matrix is a matrix-vector product and the forward goes tap by tap, neither at the matrix
# product's speed the estimate assumes, so the FFT wins from a smaller estimated advantage: the margin
# is divided by this. Fitted on NumPy (float32, "same", 1 and 4 images of 128^2-1024^2, 5x5-11x11):
# the estimate said 0.99-1.68 for 7x7, where the FFT's forward was 1.4-1.8x faster than the column
# matrix (dK 1.5-2.8x), and 0.51-0.86 for 5x5, where the two were level (0.75-1.17). On torch the
# choice is against oneDNN too, which wins on small single images (128^2 7x7: 0.69 ms against the
# FFT's 1.06) and loses by 3-4x on large ones: not fitted, torch keeps the plain margin. dK's column
# matrix (a one-row product over every output) fares worse still: on the same images it lost to the
# FFT wherever the estimate said 0.53 or more (5x5: 1.1-1.8x), hence its own, larger relief.
SINGLE_CHANNEL_RELIEF = 1.7
SINGLE_CHANNEL_WEIGHT_RELIEF = 3.0
# On torch tensors the same layers in two or three dimensions, from 2^16 elements on
# (``_native.large_single_channel``, where oneDNN stops paying): the margin divided by this, for
# every pass (signals keep the plain margin: 31 taps over 65,536 samples took twice as long by FFT as
# by the column matrix). Fitted with the native rule's size on 1 and 4 images of 128^2-1024^2 (3x3-7x7),
# signals of 16,384-262,144 samples (9-63 taps) and volumes of 32^3-96^3 (3^3, 5^3), 150 passes timed
# with every method: the regret of the picks went from a median of 1.34, a 90th percentile of 3.65 and
# a worst of 18.9 (63 taps over 262,144 samples by oneDNN) to 1.00 / 1.09 / 1.75 (a 1024^2 3x3 dK by
# the column matrix, 19 ms against the FFT's 11); on 99 held-out passes from 1.57 / 4.08 / 5.3 to
# 1.00 / 1.18 / 3.7 (a 4x4 filter's dK on 1400^2, estimated 0.35, by the column matrix).
TORCH_SINGLE_CHANNEL_RELIEF = 4.0


def fft_advantage(
    geometry: ConvGeometry, *, kernel_spectrum: bool = True, transform_weight: float = DEFAULT_MODEL.transform_weight
) -> float:
    """The column matrix's estimated cost over the FFT's (see :func:`fft_pays`). ``kernel_spectrum``
    adds the taps' spectrum (the kernel's, and dK's read back), per axis the cheaper of the pruned DFT
    and the FFT of the zero-filled taps (:func:`xpconv._fft.spectrum_cost`): negligible for few taps,
    one more transform for hundreds (a 1,001-tap FIR filter). ``transform_weight``: a butterfly's cost
    in multiply-adds of a product (:class:`xpconv._costs.CostModel`)."""
    plan = FFTPlan.of(geometry, real=True)
    channels_per_group = geometry.in_channels // geometry.groups
    pairs = geometry.out_channels * channels_per_group
    direct = geometry.batch * pairs * math.prod(geometry.output_size) * math.prod(geometry.kernel_size)
    length, frequencies = math.prod(plan.lengths), math.prod(plan.frequencies)
    transforms = geometry.batch * (geometry.in_channels + geometry.out_channels) * length * math.log2(max(length, 2))
    products: float = 4 * geometry.batch * pairs * frequencies + 8 * pairs * frequencies
    if kernel_spectrum:
        sizes = list(geometry.kernel_size)
        for axis in reversed(range(geometry.ndim)):
            columns = pairs * math.prod(sizes) // sizes[axis]
            transforms += spectrum_cost(plan.lengths[axis], plan.frequencies[axis], sizes[axis], columns)
            sizes[axis] = plan.frequencies[axis]
    return direct / (transform_weight * transforms + 4 * products)


def _forward_windows(geometry: ConvGeometry) -> Windows:
    """The windows of the forward correlation, as the column-matrix passes of ``_contract`` take them."""
    return Windows(geometry.stride, geometry.dilation, geometry.groups, geometry.output_size, geometry.pads)


def _tiling(geometry: ConvGeometry) -> Tiling:
    """Winograd tiles of the forward correlation (the output) of this convolution."""
    return Tiling(pads=geometry.pads, dilation=geometry.dilation, groups=geometry.groups, out=geometry.output_size)


def _obstacle(method: str, geometry: ConvGeometry, xp: Namespace, dtype: Any) -> str | None:
    if method == "winograd":
        return winograd_obstacle(geometry, xp, dtype)
    if method == "fft":
        return fft_obstacle(xp, dtype)
    if method == "native":
        return native_obstacle(xp, dtype)
    return None


def _applicable(names: Iterable[str], geometry: ConvGeometry, xp: Namespace, dtype: Any) -> list[str]:
    """The methods among ``names`` that can compute this convolution."""
    return [name for name in names if _obstacle(name, geometry, xp, dtype) is None]


def _rule(
    grad: str, geometry: ConvGeometry, applicable: list[str], xp: Namespace, model: CostModel = DEFAULT_MODEL
) -> str:
    """``"auto"`` without autotuning: the rules measured on the project's CPU (see the module's
    docstring), with ``model``'s constants (the wisdom file's for the arrays' library and device)."""
    library = "jax" if is_jax_namespace(xp) else "torch" if is_torch_namespace(xp) else "other"
    return _remembered_rule(grad, geometry, tuple(applicable), library, model)


@functools.lru_cache(maxsize=4096)
def _remembered_rule(
    grad: str, geometry: ConvGeometry, applicable: tuple[str, ...], library: str, model: CostModel
) -> str:
    """:func:`rule_pick`, remembered: a model calls the same layers every step, and the estimates
    cost more than a small layer's native convolution (~100 us against ~20 us)."""
    return rule_pick(grad, geometry, applicable, library, model)


def rule_pick(grad: str, geometry: ConvGeometry, applicable: tuple[str, ...], library: str, model: CostModel) -> str:
    """The method ``"auto"`` takes for a pass among ``applicable`` ones, without autotuning, on arrays
    of ``library`` (``"torch"``, ``"jax"`` or ``"other"``) with ``model``'s constants."""
    if library == "other" and single_channel(geometry):
        relief = SINGLE_CHANNEL_WEIGHT_RELIEF if grad == "weight" else SINGLE_CHANNEL_RELIEF
        model = replace(model, fft_margin=model.fft_margin / relief)
    elif library == "torch" and geometry.ndim > 1 and large_single_channel(geometry):
        model = replace(model, fft_margin=model.fft_margin / TORCH_SINGLE_CHANNEL_RELIEF)
    own = _own_rule(grad, geometry, list(applicable), model)
    if "native" in applicable:
        advantage = fft_advantage(geometry, transform_weight=model.transform_weight)
        if native_pays(geometry, grad, own, advantage, library, model.native_fft_advantage):
            return "native"
    return own


def _own_rule(grad: str, geometry: ConvGeometry, applicable: list[str], model: CostModel = DEFAULT_MODEL) -> str:
    """The pick among xpconv's own methods."""
    if "winograd" in applicable and winograd_pays(geometry, grad):
        return "winograd"
    if "fft" in applicable and fft_pays(geometry, grad, model):
        return "fft"
    if grad == "input":
        stride_one = all(s == 1 for s in geometry.stride)
        narrow = geometry.out_channels // geometry.groups <= geometry.in_channels // geometry.groups
        return "dilate" if stride_one and narrow else "direct"
    return "direct"


def _run(
    grad: str,
    method: Method,
    passes: dict[str, Callable[[], Array]],
    geometry: ConvGeometry,
    xp: Namespace,
    like: Array,
    by_slabs: Callable[[Method], Array | None],
) -> Array:
    """Compute a pass by ``method``, one of ``passes``' keys (the forward's "dilate" is its "direct"),
    or a ``ValueError`` saying why it cannot; ``"auto"`` times the applicable ones when autotuning
    (:mod:`xpconv._autotune`), else follows :func:`_rule`. The column-matrix methods go by
    ``by_slabs`` (:mod:`xpconv._slabs`) where one sample's columns exceed the workspace."""
    name: str
    if method != "auto":
        name = method if method in passes else "direct"
        obstacle = _obstacle(name, geometry, xp, like.dtype)
        if obstacle:
            raise ValueError(f"method={method!r} cannot compute this convolution: {obstacle}")
    else:
        applicable = _applicable(passes, geometry, xp, like.dtype)
        if len(applicable) > 1 and autotuning(like, xp):
            return tuned(grad, geometry, like, xp, {name: passes[name] for name in applicable})
        name = _rule(grad, geometry, applicable, xp, model_for(target_of(like)))
    if name in ("direct", "dilate"):
        slabbed = by_slabs(cast(Method, name))
        if slabbed is not None:
            return slabbed
    return passes[name]()


def _held(block: ConvGeometry, xp: Namespace, like: Array, workspace: int, kind: str, method: str) -> int:
    """The workspace a slab runs with: room for its own temporaries, so that it is not split again (a
    dX slab of one input row still reads the kernel's span of rows)."""
    return max(workspace, _sample_need(block, xp, like, kind, method))


def _sample_need(geometry: ConvGeometry, xp: Namespace, like: Array, kind: str, method: str) -> int:
    """One sample's temporaries in the pass ``kind`` by ``method``: its column matrix, or, for a pass by
    :func:`~xpconv._contract.correlate` (the forward, dX by ``"dilate"``) of one channel, which goes tap
    by tap, the padded sample, the sum and one term (576^3 whole: 13.2 s and 5.2 GB; by slabs of
    256 MiB 7.3 s)."""
    size = itemsize(xp, like.dtype)
    correlates = kind == "forward" or (kind == "input" and method == "dilate")
    positions = math.prod(geometry.input_size if kind == "input" else geometry.output_size)
    channels, filters, taps = geometry.in_channels, geometry.out_channels, geometry.kernel_size
    if correlates and by_taps(channels, filters, taps, positions, xp, like.dtype):
        return 3 * max(math.prod(geometry.padded_size), math.prod(geometry.output_size)) * size
    return column_bytes(geometry, size, kind, method)


# On the CPU, dK of one channel into one filter in two or three dimensions goes by slabs of at most
# CPU_ONE_CHANNEL_SLAB_BYTES of columns where one sample's column matrix is larger than GLIBC_MMAP_MAX,
# whatever the workspace: glibc maps arrays above 32 MiB afresh on every call, and a fresh page costs
# a fault (~3 us per 4 KiB on the project's VM, 0.75 ms per MB). Measured (float32, direct dK, "same",
# 2026-12-02, two runs of the old and new code): torch 724^2 5x5 (52 MB of columns) 18-22 -> 6-12 ms,
# 1024^2 5x5 38-39 -> 10-14, 1024^2 3x3 15-17 -> 4.5-7.6, 1400^2 3x3 32 -> 10, 96^3 3^3 14-43 -> 11-12;
# NumPy 724^2 5x5 18 -> 7-9, 1024^2 5x5 29-31 -> 14-16, 1400^2 3x3 21-27 -> 11-15, 96^3 28-31 -> 13-14.
# Signals keep their columns: on NumPy 262,144 samples by slabs measured 1.2-1.4x slower.
GLIBC_MMAP_MAX = 32 * 2**20
CPU_ONE_CHANNEL_SLAB_BYTES = 16 * 2**20


def _slabs_of(
    geometry: ConvGeometry, xp: Namespace, like: Array, workspace: int, kind: str, method: str
) -> list | None:
    """Slabs of the first spatial axis where one sample's temporaries exceed the workspace (for a
    large one-channel dK on the CPU, :data:`CPU_ONE_CHANNEL_SLAB_BYTES`)."""
    if geometry.ndim == 0 or is_dask_namespace(xp):
        return None
    rows = geometry.input_size[0] if kind == "input" else geometry.output_size[0]
    need = _sample_need(geometry, xp, like, kind, method)
    one_channel_weight = kind == "weight" and single_channel(geometry) and geometry.ndim > 1
    if one_channel_weight and need > GLIBC_MMAP_MAX and on_cpu(like, xp):
        workspace = min(workspace, CPU_ONE_CHANNEL_SLAB_BYTES)
    return slab_ranges(geometry, workspace, rows, need)


@over_dask_chunks(batch=("x",), shared=("kernel", "bias"), spatial="forward")
def forward(
    x: Array,
    kernel: Array,
    bias: Array | None,
    xp: Namespace,
    geometry: ConvGeometry,
    workspace: int,
    method: Method = "auto",
) -> Array:
    """``z = correlate(pad(x), kernel) + bias``."""
    passes = {
        "winograd": lambda: winograd_correlate(x, kernel, xp, _tiling(geometry), workspace),
        "fft": lambda: fft_forward(x, kernel, xp, geometry, workspace),
        "native": lambda: native_forward(x, kernel, xp, geometry),
        "direct": lambda: correlate(x, kernel, xp, _forward_windows(geometry), workspace),
    }

    def by_slabs(name: Method) -> Array | None:
        slabs = _slabs_of(geometry, xp, x, workspace, "forward", name)
        if slabs is None:
            return None

        def whole(part: Array, k: Array, block: ConvGeometry) -> Array:
            return forward(part, k, None, xp, block, _held(block, xp, x, workspace, "forward", name), name)

        return forward_by_slabs(x, kernel, xp, geometry, slabs, whole)

    return add_bias(_run("forward", method, passes, geometry, xp, x, by_slabs), bias, xp)


def add_bias(z: Array, bias: Array | None, xp: Namespace) -> Array:
    """``z (N, F, *out)`` plus a tied ``(F,)`` or untied ``(F, *out)`` bias, or ``z`` itself."""
    if bias is None:
        return z
    if bias.ndim == 1:
        bias = xp.reshape(bias, (bias.shape[0],) + (1,) * (z.ndim - 2))
    return z + bias


@over_dask_chunks(batch=("dz",), shared=("kernel",), spatial="input")
def input_grad(
    dz: Array, kernel: Array, xp: Namespace, geometry: ConvGeometry, method: Method, workspace: int
) -> Array:
    """dX, shape ``geometry.input_shape``; bilinear (the caller conjugates a complex kernel)."""
    crop = tuple(slice(before, before + n) for (before, _), n in zip(geometry.pads, geometry.input_size))
    passes = {
        "winograd": lambda: _input_grad_by_correlation(dz, kernel, xp, geometry, workspace, winograd=True),
        "fft": lambda: fft_input_grad(dz, kernel, xp, geometry, workspace),
        "native": lambda: native_input_grad(dz, kernel, xp, geometry),
        "dilate": lambda: _input_grad_by_correlation(dz, kernel, xp, geometry, workspace),
        "direct": lambda: scatter_windows(
            dz,
            kernel,
            xp,
            padded_size=geometry.padded_size,
            stride=geometry.stride,
            dilation=geometry.dilation,
            groups=geometry.groups,
            crop=crop,
            workspace=workspace,
        ),
    }

    def by_slabs(name: Method) -> Array | None:
        slabs = _slabs_of(geometry, xp, dz, workspace, "input", name)
        if slabs is None:
            return None

        def whole(part: Array, k: Array, block: ConvGeometry) -> Array:
            return input_grad(part, k, xp, block, name, _held(block, xp, dz, workspace, "input", name))

        return input_grad_by_slabs(dz, kernel, xp, geometry, slabs, whole)

    return _run("input", method, passes, geometry, xp, dz, by_slabs)


def _input_grad_by_correlation(
    dz: Array, kernel: Array, xp: Namespace, geometry: ConvGeometry, workspace: int, winograd: bool = False
) -> Array:
    """The tutorial's dX: dilate dz by the stride, pad, correlate with the rotated kernel, cut the padding.

    A full correlation needs ``d * (k - 1)`` zeros before the dilated ``dz`` and ``d * (k - 1) + tail``
    after it (``tail``: padded rows no forward window reached). Cutting the input padding away before
    the correlation instead of after it gives the same numbers without computing the padded rows; a
    negative amount below crops. ``winograd`` (stride 1 only) correlates by ``_winograd``.
    """
    dilated = dilate_axes(dz, xp, geometry.stride)
    reach = tuple(d * (k - 1) for k, d in zip(geometry.kernel_size, geometry.dilation))
    pads = tuple(
        (r - before, r + tail - after) for r, tail, (before, after) in zip(reach, geometry.tail, geometry.pads)
    )
    groups, filters, channels = geometry.groups, geometry.out_channels, geometry.in_channels
    rotated = xp.flip(kernel, axis=_spatial_axes(geometry))
    # Each group's (F/g, C/g) block is transposed: dX correlates dz's filters into x's channels.
    per_group = xp.reshape(rotated, (groups, filters // groups, channels // groups, *geometry.kernel_size))
    transposed = xp.permute_dims(per_group, (0, 2, 1, *range(3, 3 + geometry.ndim)))
    # A copy: left a view of the flipped kernel, it has negative strides, and NumPy's matmul on such
    # an operand took 5x as long (depthwise dX, 128 channels at 28x28: 50 ms against 10 for 10 calls).
    swapped = xp.asarray(xp.reshape(transposed, (channels, filters // groups, *geometry.kernel_size)), copy=True)
    if winograd:
        tiling = Tiling(pads=pads, dilation=geometry.dilation, groups=groups, out=geometry.input_size)
        return winograd_correlate(dilated, swapped, xp, tiling, workspace)
    windows = Windows((1,) * geometry.ndim, geometry.dilation, groups, geometry.input_size, pads)
    return correlate(dilated, swapped, xp, windows, workspace)


@over_dask_chunks(batch=("dz", "x"), combine="sum", spatial="weight")
def weight_grad(dz: Array, x: Array, xp: Namespace, geometry: ConvGeometry, method: Method, workspace: int) -> Array:
    """dK, shape ``geometry.kernel_shape``; bilinear (the caller conjugates a complex input)."""
    passes = {
        "winograd": lambda: winograd_weight_grad(dz, x, xp, _tiling(geometry), workspace),
        "fft": lambda: fft_weight_grad(dz, x, xp, geometry, workspace),
        "native": lambda: native_weight_grad(dz, x, xp, geometry),
        "dilate": lambda: _weight_grad_by_correlation(dz, x, xp, geometry, workspace),
        "direct": lambda: contract_weights(
            dz, x, xp, _forward_windows(geometry), workspace, window=geometry.kernel_size
        ),
    }

    def by_slabs(name: Method) -> Array | None:
        slabs = _slabs_of(geometry, xp, x, workspace, "weight", name)
        if slabs is None:
            return None

        def whole(grads: Array, part: Array, block: ConvGeometry) -> Array:
            return weight_grad(grads, part, xp, block, name, _held(block, xp, x, workspace, "weight", name))

        return weight_grad_by_slabs(dz, x, geometry, slabs, whole)

    return _run("weight", method, passes, geometry, xp, x, by_slabs)


def input_and_weight_grads(
    dz: Array, x: Array, kernel: Array, xp: Namespace, geometry: ConvGeometry, method: Method, workspace: int
) -> tuple[Array, Array]:
    """dX and dK of one backward call (bilinear; the caller conjugates complex ``x`` and ``kernel``).
    Where both passes take the FFT, they share dz's spectrum (:func:`~xpconv._fft.fft_backward`);
    elsewhere, and on Dask (whose chunks run each pass apart), they are :func:`input_grad` and
    :func:`weight_grad`."""
    if not is_dask_namespace(xp) and _both_by_fft(method, geometry, xp, x):
        return fft_backward(dz, x, kernel, xp, geometry, workspace)
    return input_grad(dz, kernel, xp, geometry, method, workspace), weight_grad(dz, x, xp, geometry, method, workspace)


def _both_by_fft(method: Method, geometry: ConvGeometry, xp: Namespace, like: Array) -> bool:
    """Whether dX and dK both go by the FFT: asked for (and possible), or the rule's pick for both when
    "auto" is not autotuned (then each pass is timed on its own)."""
    if fft_obstacle(xp, like.dtype) is not None:
        return False  # "fft" asked for raises in the passes themselves, with the reason
    if method == "fft":
        return True
    if method != "auto" or autotuning(like, xp):
        return False
    applicable = _applicable(("winograd", "fft", "native", "dilate", "direct"), geometry, xp, like.dtype)
    model = model_for(target_of(like))
    return all(_rule(grad, geometry, applicable, xp, model) == "fft" for grad in ("input", "weight"))


def _weight_grad_by_correlation(dz: Array, x: Array, xp: Namespace, geometry: ConvGeometry, workspace: int) -> Array:
    """The tutorial's dK: windows of the size of the dilated dz, one per kernel tap (taps are
    `dilation` apart), correlated with the dilated dz. The `tail` rows never meet dz."""
    dilated = dilate_axes(dz, xp, geometry.stride)
    reached = tuple((before, after - tail) for (before, after), tail in zip(geometry.pads, geometry.tail))
    windows = Windows(geometry.dilation, (1,) * geometry.ndim, geometry.groups, geometry.kernel_size, reached)
    return contract_weights(dilated, x, xp, windows, workspace, window=tuple(dilated.shape[2:]), swap_roles=True)


def bias_grad(dz: Array, xp: Namespace, geometry: ConvGeometry, mode: str | None) -> Array | None:
    """db: dz summed over the batch, and over the positions too when the bias is tied."""
    if mode is None:
        return None
    return _summed_bias_grad(dz, xp, geometry, mode)


@over_dask_chunks(batch=("dz",), combine="sum", spatial="sum")
def _summed_bias_grad(dz: Array, xp: Namespace, geometry: ConvGeometry, mode: str) -> Array:
    axes = (0, *_spatial_axes(geometry)) if mode == "tied" else (0,)
    return xp.sum(dz, axis=axes, dtype=dz.dtype)
