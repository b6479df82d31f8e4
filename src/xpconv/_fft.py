"""Convolution by the FFT (``method="fft"``): forward, dX and dK as products in the frequency domain.

Every pass of a convolution is, per spatial axis, a circular convolution of length ``L`` (see
:class:`FFTPlan`): the large operand (x or dz) goes through the array library's FFT, the channels
are contracted by one batched matrix product per frequency (an elementwise product when each group
has one input channel: depthwise), and the inverse FFT gives the result. The small operand (the
kernel, and the kernel-sized dK) has few taps: along each axis they are transformed by a product
with a matrix of ``exp(-2 pi i f p / L)`` (a *pruned* DFT), which costs ``k / log L`` of an FFT and
places each tap at any position (so the kernel's rotation and dilation and the padding cost
nothing), or, where there are many taps and few columns (a 1,001-tap FIR filter), by an FFT of the
taps placed in zeros (:func:`dft_by_fft` picks per axis from both costs).

- forward: ``z = conv(x, flip(dilate(kernel)))``, read every ``s``-th value from ``E - 1 - before``;
- dX, the tutorial's: ``dz`` dilated by the stride (placed ``s`` apart in the zeros the transform
  reads), convolved with the dilated kernel (correlating with the rotated kernel is convolving with
  the kernel), read from ``before``;
- dK: ``conv(dilate(dz), flip(x))`` summed over the batch, read at ``n - 1 + before - a * d`` for
  each tap ``a``: the padded input correlated with the dilated dz.

Real data takes ``rfftn``/``irfftn`` (half the last axis' frequencies), complex data
``fftn``/``ifftn``. The passes are bilinear, as the other methods' are: the conjugations of the
complex gradients are the callers' (``_api``, ``_transpose``). The cost hardly depends on the kernel size:
this is the method for large kernels; integers never take it (its rounding would make them inexact).
"""

from __future__ import annotations

import functools
import itertools
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from array_api_compat import device as device_of

from ._backends import fft_functions, itemsize, set_into
from ._contract import over_batch
from ._geometry import ConvGeometry, block_geometry, outputs_reaching
from .typing import Array, Namespace

__all__ = ["FFTPlan", "fast_length", "fft_backward", "fft_forward", "fft_input_grad", "fft_weight_grad"]

# Transform lengths whose prime factors are these: pocketfft (NumPy, SciPy), MKL and cuFFT are fastest
# there, and the more so the more factors of 2: per element, a factor costs about these many times a
# factor 2 (fitted to scipy.fft's float32 rfft of 1,000 such lengths from 48 to 78,000 on the project's
# CPU: a 60,750-point transform (2 3^5 5^3) took 0.68 ms, a 61,440-point one (2^12 3 5) 0.36 ms).
FAST_FACTORS = {2: 1.0, 3: 1.8, 5: 2.6, 7: 3.5}
# How much longer than the shortest such length a transform may grow for fewer, cheaper factors.
LENGTH_SLACK = 1.08
# On the CPU, batch chunks of about this many bytes of temporaries, far more than the column matrix's
# few MiB: every chunk reads the whole kernel spectrum once more (the benchmark's dense layers go
# through in one chunk).
CPU_CHUNK_BYTES = 64 * 2**20


@functools.cache
def fast_length(n: int) -> int:
    """A transform length ``>= n`` whose prime factors are 2, 3, 5 and 7: of those up to 8% above the
    smallest, the one of the least estimated cost (the length times its factors' weights, see
    :data:`FAST_FACTORS`); such numbers lie close together, the search takes a few steps.

    >>> fast_length(61), fast_length(86), fast_length(60_500)
    (64, 90, 61440)
    """
    smallest = max(n, 1)
    while _factor_cost(smallest) is None:
        smallest += 1
    candidates = (m for m in range(smallest, max(smallest, int(n * LENGTH_SLACK)) + 1) if _factor_cost(m) is not None)
    return min(candidates, key=lambda m: (m * (_factor_cost(m) or 0.0), m))


def _factor_cost(length: int) -> float | None:
    """The summed weights of ``length``'s prime factors, or None when one is not a fast factor."""
    cost = 0.0
    for factor, weight in FAST_FACTORS.items():
        while length % factor == 0:
            length //= factor
            cost += weight
    return cost if length == 1 else None


@dataclass(frozen=True)
class FFTPlan:
    """The transform lengths and read positions of the three passes of one convolution geometry.

    Per axis, with input size ``n``, padding ``(before, after)``, ``tail`` (padded rows no window
    reaches), dilated kernel extent ``E``, stride ``s`` and ``O`` outputs: every pass reads x at
    padded positions ``[-before, n + after - tail)`` and ``O`` values ``s`` apart, so a circular
    convolution of length ``L >= max(n + before, n + after - tail, (O - 1) * s + 1, E)`` wraps
    nothing into what is read (the padding's zeros wrap onto zeros). ``L`` is rounded up to a fast
    length; often it is below the padded size, because the padding need not be materialised.
    """

    geometry: ConvGeometry
    lengths: tuple[int, ...]
    real: bool

    @classmethod
    def of(cls, geometry: ConvGeometry, real: bool) -> FFTPlan:
        lengths = []
        for n, (before, after), tail, span, s, o in zip(
            geometry.input_size, geometry.pads, geometry.tail, geometry.span, geometry.stride, geometry.output_size
        ):
            lengths.append(fast_length(max(n + before, n + after - tail, (o - 1) * s + 1, span, 1)))
        return cls(geometry, tuple(lengths), real)

    @property
    def frequencies(self) -> tuple[int, ...]:
        """Frequencies kept per axis: all of them, but half the last axis' (+1) for real data."""
        if not self.real:
            return self.lengths
        return (*self.lengths[:-1], self.lengths[-1] // 2 + 1)

    @property
    def forward_start(self) -> tuple[int, ...]:
        """Where the forward output starts in the circular result: ``E - 1 - before``, moved up to 0
        (by placing the kernel later) where the padding before reaches further than the kernel."""
        return tuple(max(0, span - 1 - before) for span, (before, _) in zip(self.geometry.span, self.geometry.pads))

    @functools.lru_cache(maxsize=256)  # noqa: B019 (plans are small, frozen and few)
    def forward_taps(self) -> tuple[tuple[int, ...], ...]:
        """Positions of the kernel's taps in the forward pass: flipped and dilated, so that the
        output starts at :attr:`forward_start`: ``start + before - a * d``."""
        g = self.geometry
        return tuple(
            tuple(start + before - a * d for a in range(k))
            for start, (before, _), d, k in zip(self.forward_start, g.pads, g.dilation, g.kernel_size)
        )

    @functools.lru_cache(maxsize=256)  # noqa: B019 (plans are small, frozen and few)
    def input_grad_taps(self) -> tuple[tuple[int, ...], ...]:
        """Positions of the kernel's taps in dX: dilated, not flipped."""
        return tuple(tuple(a * d for a in range(k)) for d, k in zip(self.geometry.dilation, self.geometry.kernel_size))

    @functools.lru_cache(maxsize=256)  # noqa: B019 (plans are small, frozen and few)
    def weight_grad_reads(self) -> tuple[tuple[int, ...], ...]:
        """Where dK's taps are read in ``conv(dilate(dz), flip(x))``: ``n - 1 + before - a * d``."""
        g = self.geometry
        return tuple(
            tuple(n - 1 + before - a * d for a in range(k))
            for n, (before, _), d, k in zip(g.input_size, g.pads, g.dilation, g.kernel_size)
        )

    def spectrum_bytes(self, channels: int, xp: Namespace, dtype: object) -> int:
        """Bytes of the spectra of ``channels`` planes (complex, of the data's precision)."""
        complex_size = itemsize(xp, dtype) * (2 if self.real else 1)
        return channels * math.prod(self.frequencies) * complex_size

    def sample_bytes(self, planes: int, spectra: int, xp: Namespace, dtype: object) -> int:
        """Bytes of one sample's temporaries: ``planes`` arrays of the transform's lengths in the
        data's dtype (the zero-filled inputs, the inverse's output) and ``spectra`` spectra (each
        spectrum, its frequency-major copy, the products and their copy back)."""
        return planes * math.prod(self.lengths) * itemsize(xp, dtype) + self.spectrum_bytes(spectra, xp, dtype)


# --- transforms --------------------------------------------------------------------------------------


def _spatial(ndim: int) -> tuple[int, ...]:
    return tuple(range(-ndim, 0))


# Both directions scale by 1 / sqrt(L): the convolution theorem then holds with the kernel's
# unscaled spectrum (the factors meet in the inverse), and NumPy 2.4's pocketfft is 1.6-2.5x slower
# on an unscaled transform (measured: float32 rfftn of 16x96x56x56 to 60x60, 58 ms unscaled, 36 ms
# "ortho"; the complex fftn 105 ms against 43).
NORM = "ortho"


def spectrum(a: Array, xp: Namespace, plan: FFTPlan, *, step: Sequence[int] | None = None, flip: bool = False) -> Array:
    """FFT (scaled by ``1 / sqrt(prod(L))``) of the trailing spatial axes of ``a``, placed in zeros
    of the plan's lengths: ``step`` apart along each axis (``a`` dilated, as the tutorial's dz) and
    reversed with ``flip``. One zero buffer and one copy: NumPy's own zero fill (``s=``) took 1.6x as
    long (float32 8x32x64x64 to 70x70: 7.9 ms against 4.8 ms)."""
    ndim = len(plan.lengths)
    axes = _spatial(ndim)
    step = step or (1,) * ndim
    source = xp.flip(a, axis=axes) if flip else a
    buffer = xp.zeros((*a.shape[: a.ndim - ndim], *plan.lengths), dtype=a.dtype, device=device_of(a))
    placed = tuple(slice(0, (m - 1) * s + 1, s) for m, s in zip(a.shape[a.ndim - ndim :], step))
    buffer = set_into(buffer, xp, (..., *placed), source)
    if plan.real:
        return fft_functions(xp).rfftn(buffer, axes=axes, norm=NORM)
    return fft_functions(xp).fftn(buffer, axes=axes, norm=NORM)


def inverse(spectra: Array, xp: Namespace, plan: FFTPlan) -> Array:
    """The inverse of :func:`spectrum` (scaled by ``1 / sqrt(prod(L))``)."""
    axes = _spatial(len(plan.lengths))
    if plan.real:
        return fft_functions(xp).irfftn(spectra, s=plan.lengths, axes=axes, norm=NORM)
    return fft_functions(xp).ifftn(spectra, s=plan.lengths, axes=axes, norm=NORM)


class _BytesBoundedCache:
    """The most recently used NumPy arrays made by ``make``, up to ``limit`` bytes in all (at least
    the newest is kept); safe to share between threads."""

    def __init__(self, make: Callable[..., np.ndarray], limit: int) -> None:
        self.make, self.limit = make, limit
        self.arrays: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self.lock = threading.Lock()

    def __call__(self, *key: object) -> np.ndarray:
        with self.lock:
            if key in self.arrays:
                self.arrays.move_to_end(key)
                return self.arrays[key]
        made = self.make(*key)
        with self.lock:
            self.arrays[key] = made
            while len(self.arrays) > 1 and sum(a.nbytes for a in self.arrays.values()) > self.limit:
                self.arrays.popitem(last=False)
        return made

    def nbytes(self) -> int:
        with self.lock:
            return sum(a.nbytes for a in self.arrays.values())


# The DFT matrices kept for reuse (a model calls the same layers every step), in bytes: one can be
# large (251 taps into 8,193 frequencies, an 80-filter bank over 16,000 samples: 33 MB), and a cache
# bound by count, kept for every geometry seen, could hold gigabytes.
DFT_CACHE_BYTES = 256 * 2**20


def _make_dft_matrix(
    length: int, frequencies: int, positions: tuple[int, ...], inverse: bool, half: bool
) -> np.ndarray:
    """``exp(-2 pi i f p / L)`` for frequency rows ``f`` and position columns ``p``; for the inverse,
    the transposed ``exp(+2 pi i f p / L)`` (positions as rows), with the weights of a half spectrum
    when ``half`` (each frequency but 0 and ``L / 2`` stands for its conjugate too). Unscaled: the
    spectra they meet are the product of two :func:`spectrum` s, scaled by ``1 / L`` together.

    Built in NumPy (complex128, the angles reduced modulo ``L`` in integers), kept in
    ``_dft_matrix``'s cache, and handed to the arrays' library with ``asarray``: a constant, as
    Winograd's are."""
    f = np.arange(frequencies, dtype=np.int64)[:, None]
    p = np.asarray(positions, dtype=np.int64)[None, :] % length
    angles = (2 * np.pi / length) * ((f * p) % length)
    if not inverse:
        return np.exp(-1j * angles)
    weights = np.where((f == 0) | (2 * f == length) | (not half), 1.0, 2.0)
    return np.ascontiguousarray((weights * np.exp(1j * angles)).T)


_dft_matrix = _BytesBoundedCache(_make_dft_matrix, DFT_CACHE_BYTES)


def _complex_dtype(xp: Namespace, dtype: object) -> object:
    if xp.isdtype(dtype, "complex floating"):
        return dtype
    return xp.complex64 if dtype == xp.float32 else xp.complex128


def _along_axis(a: Array, xp: Namespace, matrix: Array, axis: int) -> Array:
    """``matrix @ a`` along ``axis`` of ``a``: a batched matrix product on a reshape, no transpose.
    Where the axes after it hold one element it is one product ``a @ matrix^T`` (a batch of matrix-vector products would
    read the whole matrix once per row: 80 filters of 251 taps into 8,193 frequencies, 47 ms -> 5 ms)."""
    before, size, after = math.prod(a.shape[:axis]), a.shape[axis], math.prod(a.shape[axis + 1 :])
    if after == 1:
        product = xp.matmul(xp.reshape(a, (before, size)), xp.matrix_transpose(matrix))
        return xp.reshape(product, (*a.shape[:axis], matrix.shape[0], *a.shape[axis + 1 :]))
    product = xp.matmul(matrix, xp.reshape(a, (before, size, after)))
    return xp.reshape(product, (*a.shape[:axis], matrix.shape[0], *a.shape[axis + 1 :]))


# An FFT costs about this many times a pruned DFT's complex multiply-add per ``L log2 L`` (measured on
# NumPy, float32, many columns: a 301-tap axis of length 2,048 at parity, 31 taps into 2,048 by the
# matrix 7x faster); the matrix is made in the array's dtype once per call, about one unit per entry
# (for 1,001 taps into 30,241 frequencies that alone took 100 ms, against the FFT's 1.4 ms).
MATRIX_PER_FFT = 12


def spectrum_cost(length: int, frequencies: int, taps: int, columns: int) -> float:
    """The cost, in units of ``L log2 L`` of an FFT, of the spectrum of ``columns`` rows of ``taps``
    taps along an axis of ``length`` (``frequencies`` kept): the cheaper of the pruned DFT (the
    matrix made, then applied) and the FFT of the zero-filled taps (see :func:`dft_by_fft`)."""
    return min(_matrix_cost(frequencies, taps, columns), _fft_cost(length, columns))


def _matrix_cost(frequencies: int, taps: int, columns: int) -> float:
    return frequencies * taps * (columns / MATRIX_PER_FFT + 1)


def _fft_cost(length: int, columns: int) -> float:
    return columns * length * math.log2(max(length, 2))


def dft_by_fft(length: int, frequencies: int, taps: int, columns: int) -> bool:
    """Whether the taps' spectrum along an axis costs less by an FFT of the zero-filled taps than by
    a pruned DFT: many taps, few columns (see :func:`spectrum_cost`).

    >>> dft_by_fft(64, 33, 3, 64), dft_by_fft(60480, 30241, 1001, 1)
    (False, True)
    """
    return _fft_cost(length, columns) < _matrix_cost(frequencies, taps, columns)


def _index(ndim: int, axis: int, part: slice | Array) -> tuple:
    return tuple(part if i == axis else slice(None) for i in range(ndim))


def _placed_dft(a: Array, xp: Namespace, length: int, positions: Sequence[int], axis: int, half: bool) -> Array:
    """The unscaled DFT along ``axis`` of ``a``'s taps placed at ``positions`` (an arithmetic
    sequence, modulo ``length``) in zeros: the taps go in ascending, a roll moves the first to its place."""
    step = abs(positions[1] - positions[0]) if len(positions) > 1 else 1
    if len(positions) > 1 and positions[1] < positions[0]:
        a, first = xp.flip(a, axis=axis), positions[-1]
    else:
        first = positions[0]
    shape = tuple(length if i == axis else size for i, size in enumerate(a.shape))
    buffer = xp.zeros(shape, dtype=a.dtype, device=device_of(a))
    buffer = set_into(buffer, xp, _index(a.ndim, axis, slice(0, (len(positions) - 1) * step + 1, step)), a)
    if first % length:
        buffer = xp.roll(buffer, first % length, axis=axis)
    transforms = fft_functions(xp)
    return transforms.rfft(buffer, axis=axis) if half else transforms.fft(buffer, axis=axis)


def _values_at(a: Array, xp: Namespace, length: int, positions: Sequence[int], axis: int, half: bool) -> Array:
    """The unscaled inverse DFT along ``axis`` of the spectra ``a``, read at ``positions`` (modulo ``length``)."""
    transforms = fft_functions(xp)
    if half:
        values = transforms.irfft(a, n=length, axis=axis, norm="forward")
    else:
        values = transforms.ifft(a, axis=axis, norm="forward")
    index = xp.asarray(np.asarray(positions, dtype=np.int64) % length, device=device_of(a))
    return xp.take(values, index, axis=axis)


def _pruned_dft(
    a: Array,
    xp: Namespace,
    plan: FFTPlan,
    positions: Sequence[Sequence[int]],
    first: int,
    block: slice | None,
    inverse: bool,
) -> Array:
    """The DFT of taps at ``positions`` along the axes of ``a`` from ``first`` on (or its inverse, read
    at ``positions``), the smaller arrays first (forward: the last axis first, as the arrays grow from
    k to L; inverse: the first axis first, as they shrink); ``block`` restricts the last axis'
    frequencies to a block of them (forward: their spectrum; inverse: the share of the values they
    make, the shares of all blocks summing to the values). Splitting the last axis repeats no work:
    in either direction it is transformed on the block alone. Each axis goes by the matrices of
    :func:`_dft_matrix` or by an FFT, whichever :func:`dft_by_fft` finds cheaper; a real plan's last
    axis (half the frequencies) comes first in the forward direction, while ``a`` is real, and last in
    the inverse, whose result it makes real."""
    ndim = len(plan.lengths)
    for axis in range(ndim) if inverse else reversed(range(ndim)):
        half = plan.real and axis == ndim - 1
        length, taps = plan.lengths[axis], len(positions[axis])
        columns = math.prod(a.shape) // max(a.shape[first + axis], 1)
        if dft_by_fft(length, plan.frequencies[axis], taps, columns):
            if inverse:
                if axis == ndim - 1 and block is not None:
                    shape = tuple(plan.frequencies[axis] if i == first + axis else n for i, n in enumerate(a.shape))
                    embedded = xp.zeros(shape, dtype=a.dtype, device=device_of(a))
                    a = set_into(embedded, xp, _index(a.ndim, first + axis, block), a)
                a = _values_at(a, xp, length, positions[axis], first + axis, half)
            else:
                a = a if half or xp.isdtype(a.dtype, "complex floating") else xp.astype(a, _complex_dtype(xp, a.dtype))
                a = _placed_dft(a, xp, length, positions[axis], first + axis, half)
                if axis == ndim - 1 and block is not None:
                    a = a[_index(a.ndim, first + axis, block)]
            continue
        if not xp.isdtype(a.dtype, "complex floating"):
            a = xp.astype(a, _complex_dtype(xp, a.dtype))
        values = _dft_matrix(length, plan.frequencies[axis], tuple(positions[axis]), inverse, half)
        matrix = xp.asarray(values, dtype=a.dtype, device=device_of(a))
        if axis == ndim - 1 and block is not None:
            matrix = matrix[:, block] if inverse else matrix[block, :]
        a = _along_axis(a, xp, matrix, first + axis)
    return a


def tap_spectrum(
    taps: Array,
    xp: Namespace,
    plan: FFTPlan,
    positions: Sequence[Sequence[int]],
    *,
    first: int,
    block: slice | None = None,
) -> Array:
    """The spectrum of a few taps placed at ``positions`` (per axis) in arrays of the plan's lengths,
    by one matrix product per axis (a pruned DFT): the tap axes of ``taps``, from axis ``first`` on,
    become frequency axes. ``block`` keeps a block of the last axis' frequencies only."""
    if not plan.real and not xp.isdtype(taps.dtype, "complex floating"):
        taps = xp.astype(taps, _complex_dtype(xp, taps.dtype))
    return _pruned_dft(taps, xp, plan, positions, first, block, inverse=False)


def read_taps(
    spectra: Array,
    xp: Namespace,
    plan: FFTPlan,
    positions: Sequence[Sequence[int]],
    *,
    first: int,
    block: slice | None = None,
) -> Array:
    """The inverse of :func:`tap_spectrum`: the values at ``positions`` (per axis) of the inverse
    transform of ``spectra``, whose frequency axes start at axis ``first``; real for real plans.
    With ``block``, the spectra hold that block of the last axis' frequencies only, and the result
    is its share (the shares of all blocks sum to the whole)."""
    result = _pruned_dft(spectra, xp, plan, positions, first, block, inverse=True)
    return xp.real(result) if plan.real and xp.isdtype(result.dtype, "complex floating") else result


# --- the three passes --------------------------------------------------------------------------------


def _share(workspace: int) -> int:
    """The workspace is shared: half for a batch chunk's temporaries, half for a block of a
    kernel-sized spectrum (the kernel's, or dK's per-frequency products)."""
    return max(1, workspace // 2)


def _frequency_blocks(plan: FFTPlan, kernel_bytes: int, limit: int) -> list[slice]:
    """Blocks of the last axis' frequencies whose share of a kernel-sized spectrum fits in ``limit`` bytes."""
    last = plan.frequencies[-1]
    count = min(last, max(1, -(-kernel_bytes // max(limit, 1))))
    size = -(-last // count)
    return [slice(start, min(start + size, last)) for start in range(0, last, size)]


def _in_block(ndim: int, block: slice) -> tuple[object, ...]:
    """The index of a block of the last frequency axis in frequency-major arrays ``(*freq, ...)``."""
    return (*(slice(None),) * (ndim - 1), block, ...)


def _per_frequency(
    kernel: Array,
    xp: Namespace,
    plan: FFTPlan,
    positions: Sequence[Sequence[int]],
    *,
    inner: int,
    outer: int,
    workspace: int,
) -> Callable[[Array], Array]:
    """``spectra (*freq, g, n, inner) -> (*freq, g, n, outer)``: the product with the kernel's spectrum,
    ``kernel`` laid out ``(*k, g, inner, outer)``. The kernel's spectrum is made once when it fits the
    workspace, else per block of frequencies (and per call)."""
    groups = kernel.shape[plan.geometry.ndim]
    pad = _stride_pad(groups, outer)
    if pad:
        zeros = xp.zeros((*kernel.shape[:-1], pad), dtype=kernel.dtype, device=device_of(kernel))
        kernel = xp.concat([kernel, zeros], axis=-1)
    kernel_bytes = plan.spectrum_bytes(groups * inner * (outer + pad), xp, kernel.dtype)
    blocks = _frequency_blocks(plan, kernel_bytes, _share(workspace))
    if len(blocks) == 1:
        whole = tap_spectrum(kernel, xp, plan, positions, first=0)
        return lambda spectra: xp.matmul(spectra, whole)[..., :outer]

    def blockwise(spectra: Array) -> Array:
        result = xp.empty((*spectra.shape[:-1], outer + pad), dtype=spectra.dtype, device=device_of(spectra))
        for block in blocks:
            weights = tap_spectrum(kernel, xp, plan, positions, first=0, block=block)
            index = _in_block(plan.geometry.ndim, block)
            result = set_into(result, xp, index, xp.matmul(spectra[index], weights))
        return result[..., :outer]

    return blockwise


def _stride_pad(groups: int, outer: int) -> int:
    """Unused columns (0 or 1) after each row of ``outer`` products per frequency, so that frequencies
    do not lie a multiple of 2 KiB apart: the inverse transform reads the products across frequencies,
    and at such a stride every read falls in the same few cache sets. Measured (NumPy, 8 x 32 products
    at 72x37 frequencies, complex64): their inverse 10.2-10.7 ms, 8.6-8.7 ms with 33 columns.
    A padded row cannot merge with the next group's, so one group only."""
    return 1 if groups == 1 and outer >= 16 and outer % 16 == 0 else 0


def _copied_in_order(a: Array, xp: Namespace) -> Array:
    """A copy of ``a`` (a permuted view) laid out in its own axis order: the reshape to one axis is the
    standard's way to such a copy. NumPy's matmul falls back to a slow loop on stacked matrices with
    no unit stride (dK's products on a transposed view took 13 ms against 8.5 ms; the kernel
    spectrum's matrix products on the permuted kernel 3x as long)."""
    return xp.reshape(xp.reshape(a, (-1,)), a.shape)


def _to_frequency_major(spectra: Array, xp: Namespace, groups: int, *, samples_last: bool = False) -> Array:
    """``(n, C, *freq)`` -> ``(*freq, groups, n, C // groups)`` (with ``samples_last``
    ``(*freq, groups, C // groups, n)``), the layout of the per-frequency products, copied in that
    order (:func:`_copied_in_order`)."""
    n, channels, *frequencies = spectra.shape
    ndim = len(frequencies)
    grouped = xp.reshape(spectra, (n, groups, channels // groups, *frequencies))
    order = (1, 2, 0) if samples_last else (1, 0, 2)
    return _copied_in_order(xp.permute_dims(grouped, (*range(3, 3 + ndim), *order)), xp)


def _to_channels_first(spectra: Array, xp: Namespace) -> Array:
    """``(*freq, groups, n, C // groups)`` -> ``(n, C, *freq)``."""
    ndim = spectra.ndim - 3
    groups, n, per_group = spectra.shape[ndim:]
    moved = xp.permute_dims(spectra, (ndim + 1, ndim, ndim + 2, *range(ndim)))
    return xp.reshape(moved, (n, groups * per_group, *spectra.shape[:ndim]))


def _kernel_by_group(kernel: Array, xp: Namespace, geometry: ConvGeometry, *, swap: bool) -> Array:
    """The kernel ``(F, C // g, *k)`` as ``(*k, g, C // g, F // g)``, or with ``swap`` ``(*k, g, F // g, C // g)``."""
    groups, ndim = geometry.groups, geometry.ndim
    filters, per_group = kernel.shape[0], kernel.shape[1]
    grouped = xp.reshape(kernel, (groups, filters // groups, per_group, *geometry.kernel_size))
    order = (0, 1, 2) if swap else (0, 2, 1)
    return _copied_in_order(xp.permute_dims(grouped, (*range(3, 3 + ndim), *order)), xp)


def _dense_product(
    kernel: Array, xp: Namespace, plan: FFTPlan, workspace: int, *, input_grad: bool
) -> Callable[[Array], Array]:
    """:func:`_per_frequency` with the kernel of the forward (``C // g -> F // g`` per group, the
    taps flipped) or of dX (``F // g -> C // g``, the taps as they are)."""
    geometry = plan.geometry
    channels, filters = geometry.in_channels // geometry.groups, geometry.out_channels // geometry.groups
    return _per_frequency(
        _kernel_by_group(kernel, xp, geometry, swap=input_grad),
        xp,
        plan,
        plan.input_grad_taps() if input_grad else plan.forward_taps(),
        inner=filters if input_grad else channels,
        outer=channels if input_grad else filters,
        workspace=workspace,
    )


def _elementwise(geometry: ConvGeometry) -> bool:
    """One input channel per group (depthwise): the per-frequency products are elementwise."""
    return geometry.in_channels == geometry.groups


def _cpu_budget(workspace: int) -> int:
    return min(_share(workspace), CPU_CHUNK_BYTES)


def fft_forward(x: Array, kernel: Array, xp: Namespace, geometry: ConvGeometry, workspace: int) -> Array:
    """``z`` ``(N, F, *out)`` of the convolution of ``x`` ``(N, C, *n)`` with ``kernel``, by the FFT
    (block by block of outputs where :func:`blocks_pay`)."""
    if blocks_pay(geometry):
        return _forward_by_blocks(x, kernel, xp, geometry, workspace)
    return _whole_forward(x, kernel, xp, geometry, workspace)


def _whole_forward(x: Array, kernel: Array, xp: Namespace, geometry: ConvGeometry, workspace: int) -> Array:
    plan = FFTPlan.of(geometry, xp.isdtype(x.dtype, "real floating"))
    groups, filters = geometry.groups, geometry.out_channels
    if math.prod(geometry.output_size) == 0 or x.shape[0] == 0:
        return xp.zeros((x.shape[0], *geometry.output_shape[1:]), dtype=x.dtype, device=device_of(x))
    reads = tuple(
        slice(start, start + (o - 1) * s + 1, s)
        for start, o, s in zip(plan.forward_start, geometry.output_size, geometry.stride)
    )
    if _elementwise(geometry):
        # (F, *k) -> (g, F // g, *freq): each filter multiplies its group's one channel
        flat = xp.reshape(kernel, (groups, filters // groups, *geometry.kernel_size))
        weights = tap_spectrum(flat, xp, plan, plan.forward_taps(), first=2)

        def product(spectra: Array) -> Array:
            z = spectra[:, :, None, ...] * weights
            return xp.reshape(z, (spectra.shape[0], filters, *z.shape[3:]))
    else:
        # the kernel's spectrum is made once, after the first chunk's spectra, not before: dense13x13's
        # forward then peaks at 32 MiB, not 37, which in a fresh process stays below where glibc hands
        # the freed memory back to the system (before: 4,400 page faults a call, 46-48 ms; now 26-29 ms)
        by_frequency = functools.cache(lambda: _dense_product(kernel, xp, plan, workspace, input_grad=False))

        def product(spectra: Array) -> Array:
            moved = _to_frequency_major(spectra, xp, groups)
            del spectra  # the call handed its only reference over: freed before the kernel's spectrum is made
            return _to_channels_first(by_frequency()(moved), xp)

    def chunk(x_part: Array) -> Array:
        y = inverse(product(spectrum(x_part, xp, plan)), xp, plan)
        return y[(..., *reads)]

    sample_bytes = plan.sample_bytes(geometry.in_channels + filters, 2 * (geometry.in_channels + filters), xp, x.dtype)
    return over_batch(
        chunk, [x], xp, sample_bytes=sample_bytes, workspace=_share(workspace), cpu_budget=_cpu_budget(workspace)
    )


def _input_grad_product(kernel: Array, xp: Namespace, plan: FFTPlan, workspace: int) -> Callable[[Array], Array]:
    """dz's spectra ``(n, F, *freq)`` -> dX's ``(n, C, *freq)``: the product with the kernel's spectrum."""
    geometry = plan.geometry
    groups = geometry.groups
    if _elementwise(geometry):
        multiplier = geometry.out_channels // groups
        flat = xp.reshape(kernel, (groups, multiplier, *geometry.kernel_size))
        weights = tap_spectrum(flat, xp, plan, plan.input_grad_taps(), first=2)

        def elementwise(spectra: Array) -> Array:
            grouped = xp.reshape(spectra, (spectra.shape[0], groups, multiplier, *spectra.shape[2:]))
            return xp.sum(grouped * weights, axis=2)

        return elementwise
    by_frequency = _dense_product(kernel, xp, plan, workspace, input_grad=True)
    return lambda spectra: _to_channels_first(by_frequency(_to_frequency_major(spectra, xp, groups)), xp)


def _input_grad_reads(geometry: ConvGeometry) -> tuple[slice, ...]:
    """Where dX lies in the circular result: from ``before``, the input's size."""
    return tuple(slice(before, before + n) for (before, _), n in zip(geometry.pads, geometry.input_size))


def _weight_grad_taps(grads: Array, x: Array, xp: Namespace, plan: FFTPlan, blocks: list[slice]) -> Array:
    """dK ``(F, C // g, *k)`` of one batch chunk from the spectra of its dilated dz ``(n, F, *freq)``
    and of its ``x`` ``(n, C, *n)`` flipped: summed over the chunk per frequency, read at each tap.
    x's spectrum is made here so that it can be freed once copied to frequency-major order."""
    inputs = spectrum(x, xp, plan, flip=True)
    geometry = plan.geometry
    groups, filters, ndim = geometry.groups, geometry.out_channels, geometry.ndim
    reads = plan.weight_grad_reads()
    if _elementwise(geometry):
        multiplier = filters // groups
        grouped = xp.reshape(grads, (grads.shape[0], groups, multiplier, *grads.shape[2:]))
        summed = xp.sum(grouped * inputs[:, :, None, ...], axis=0)  # (g, F // g, *freq)
        return xp.reshape(read_taps(summed, xp, plan, reads, first=2), geometry.kernel_shape)
    if grads.shape[0] == 1:
        return _one_sample_weight_grad_taps(grads, inputs, xp, plan, blocks)
    # (*freq, g, F // g, n) @ (*freq, g, n, C // g), summed block by block into the taps
    grads_t = _to_frequency_major(grads, xp, groups, samples_last=True)
    inputs_t = _to_frequency_major(inputs, xp, groups)
    del inputs
    taps = None
    for block in blocks:
        index = _in_block(ndim, block)
        left, right = grads_t[index], inputs_t[index]
        # a chunk of one sample makes outer products: a broadcast product, which NumPy computed in
        # a third of matmul's time (8 -> 8 channels at 144x144 frequencies: 7.9 ms against 2.5)
        products = left * right if left.shape[-1] == 1 else xp.matmul(left, right)
        share = read_taps(products, xp, plan, reads, first=0, block=None if len(blocks) == 1 else block)
        taps = share if taps is None else taps + share
    # (*k, g, F // g, C // g) -> (F, C // g, *k)
    moved = xp.permute_dims(taps, (ndim, ndim + 1, ndim + 2, *range(ndim)))
    return xp.reshape(moved, geometry.kernel_shape)


def _one_sample_weight_grad_taps(
    grads: Array, inputs: Array, xp: Namespace, plan: FFTPlan, blocks: list[slice]
) -> Array:
    """:func:`_weight_grad_taps` of one sample: per frequency an outer product of its dz and x spectra,
    a broadcast product in the spectra's own layout ``(g, F // g, C // g, *freq)`` (no copy to
    frequency-major order; the innermost loop runs over frequencies): 8 -> 8 channels at 144x144
    frequencies 1.1 ms against 3.8 ms frequency-major (6.6 ms by matmul)."""
    geometry = plan.geometry
    groups, frequencies = geometry.groups, grads.shape[2:]
    left = xp.reshape(grads, (groups, geometry.out_channels // groups, 1, *frequencies))
    right = xp.reshape(inputs, (groups, 1, geometry.in_channels // groups, *frequencies))
    taps = None
    for block in blocks:
        index = (slice(None), slice(None), slice(None), *_in_block(geometry.ndim, block))
        share = read_taps(
            left[index] * right[index],
            xp,
            plan,
            plan.weight_grad_reads(),
            first=3,
            block=None if len(blocks) == 1 else block,
        )
        taps = share if taps is None else taps + share
    assert taps is not None
    return xp.reshape(taps, geometry.kernel_shape)  # (g, F // g, C // g, *k) -> (F, C // g, *k)


def _weight_grad_blocks(plan: FFTPlan, xp: Namespace, like: Array, workspace: int) -> list[slice]:
    """Blocks of frequencies for dK's ``(F, C // g)`` products per frequency, within the workspace."""
    geometry = plan.geometry
    pairs = geometry.out_channels * (geometry.in_channels // geometry.groups)
    return _frequency_blocks(plan, plan.spectrum_bytes(pairs, xp, like.dtype), _share(workspace))


def _empty_result(geometry: ConvGeometry) -> bool:
    return math.prod(geometry.output_size) == 0


def fft_input_grad(dz: Array, kernel: Array, xp: Namespace, geometry: ConvGeometry, workspace: int) -> Array:
    """dX ``(N, C, *n)`` by the tutorial's method: ``dz`` dilated by the stride and convolved with the
    dilated kernel (the correlation with the rotated kernel), by the FFT; bilinear in ``dz`` and
    ``kernel``. Block by block of dX where :func:`blocks_pay`."""
    if blocks_pay(geometry):
        return _input_grad_by_blocks(dz, kernel, xp, geometry, workspace)
    return _whole_input_grad(dz, kernel, xp, geometry, workspace)


def _whole_input_grad(dz: Array, kernel: Array, xp: Namespace, geometry: ConvGeometry, workspace: int) -> Array:
    plan = FFTPlan.of(geometry, xp.isdtype(dz.dtype, "real floating"))
    if dz.shape[0] == 0 or _empty_result(geometry):
        return xp.zeros((dz.shape[0], *geometry.input_shape[1:]), dtype=dz.dtype, device=device_of(dz))
    product, reads = _input_grad_product(kernel, xp, plan, workspace), _input_grad_reads(geometry)

    def chunk(dz_part: Array) -> Array:
        return inverse(product(spectrum(dz_part, xp, plan, step=geometry.stride)), xp, plan)[(..., *reads)]

    channels, filters = geometry.in_channels, geometry.out_channels
    sample_bytes = plan.sample_bytes(channels + filters, 2 * (channels + filters), xp, dz.dtype)
    return over_batch(
        chunk, [dz], xp, sample_bytes=sample_bytes, workspace=_share(workspace), cpu_budget=_cpu_budget(workspace)
    )


def fft_weight_grad(dz: Array, x: Array, xp: Namespace, geometry: ConvGeometry, workspace: int) -> Array:
    """dK ``(F, C // g, *k)``: ``sum_n conv(dilate(dz), flip(x))`` read at each tap, by the FFT; bilinear.
    Summed block by block of outputs where :func:`blocks_pay`."""
    if blocks_pay(geometry):
        return _weight_grad_by_blocks(dz, x, xp, geometry, workspace)
    return _whole_weight_grad(dz, x, xp, geometry, workspace)


def _whole_weight_grad(dz: Array, x: Array, xp: Namespace, geometry: ConvGeometry, workspace: int) -> Array:
    plan = FFTPlan.of(geometry, xp.isdtype(x.dtype, "real floating"))
    if x.shape[0] == 0 or _empty_result(geometry):
        return xp.zeros(geometry.kernel_shape, dtype=x.dtype, device=device_of(x))
    blocks = _weight_grad_blocks(plan, xp, x, workspace)

    def chunk(dz_part: Array, x_part: Array) -> Array:
        grads = spectrum(dz_part, xp, plan, step=geometry.stride)
        return _weight_grad_taps(grads, x_part, xp, plan, blocks)

    channels, filters = geometry.in_channels, geometry.out_channels
    sample_bytes = plan.sample_bytes(channels + filters, 2 * (channels + filters), xp, x.dtype)
    return over_batch(
        chunk,
        [dz, x],
        xp,
        sample_bytes=sample_bytes,
        workspace=_share(workspace),
        combine="sum",
        cpu_budget=_cpu_budget(workspace),
    )


def fft_backward(
    dz: Array, x: Array, kernel: Array, xp: Namespace, geometry: ConvGeometry, workspace: int
) -> tuple[Array, Array]:
    """dX and dK together (bilinear, as :func:`fft_input_grad` and :func:`fft_weight_grad`): each
    batch chunk's dz goes through one FFT that serves both (measured: one transform of the five in
    a forward and backward pass)."""
    plan = FFTPlan.of(geometry, xp.isdtype(x.dtype, "real floating"))
    if x.shape[0] == 0 or _empty_result(geometry) or blocks_pay(geometry):
        return fft_input_grad(dz, kernel, xp, geometry, workspace), fft_weight_grad(dz, x, xp, geometry, workspace)
    reads = _input_grad_reads(geometry)
    blocks = _weight_grad_blocks(plan, xp, x, workspace)
    dkernel: list[Array] = []  # each chunk's share, summed below
    # the kernel's spectrum is made once, when dK's temporaries are gone: the two never share the memory
    product = functools.cache(lambda: _input_grad_product(kernel, xp, plan, workspace))

    def chunk(dz_part: Array, x_part: Array) -> Array:
        grads = spectrum(dz_part, xp, plan, step=geometry.stride)
        share = _weight_grad_taps(grads, x_part, xp, plan, blocks)
        dkernel[:] = [share if not dkernel else dkernel[0] + share]
        return inverse(product()(grads), xp, plan)[(..., *reads)]

    channels, filters = geometry.in_channels, geometry.out_channels
    sample_bytes = plan.sample_bytes(2 * channels + filters, 4 * channels + 3 * filters, xp, x.dtype)
    dx = over_batch(
        chunk, [dz, x], xp, sample_bytes=sample_bytes, workspace=_share(workspace), cpu_budget=_cpu_budget(workspace)
    )
    return dx, dkernel[0]


# --- the block (overlap-save) FFT ----------------------------------------------------------------------

# Outputs (for dX: inputs) per axis of a block, and how many blocks' worth an axis needs before it is
# split. Measured on the project's CPU (same process, alternating, float32): a 15x15 filter on a
# 2048x2048 image, 117 / 113 / 96 ms (forward / dX / dK) in one transform on NumPy against 87 / 88 / 67 ms
# in 512x512 blocks (torch: 50 / 55 / 44 against 36 / 38 / 32); a 9x9 blur of 1024x1024 within noise
# (24.5 against 23.9 ms); a 31x31 kernel on 1024x1024 and 64-channel depthwise layers 5-20% slower
# in blocks, a 60,000-sample 1-D signal too (2.1 ms against 3.4 ms).
BLOCK = 512
BLOCKS_FROM = 3.0
# Planes (input channels plus filters) up to which blocks pay: each block makes the kernel's spectrum again.
BLOCK_PLANES = 4


def blocks_pay(geometry: ConvGeometry) -> bool:
    """Whether the FFT goes block by block (overlap-save): two or more spatial axes, one of them longer
    than ``BLOCKS_FROM`` blocks, and an image of few planes (``C + F <= BLOCK_PLANES``)."""
    if geometry.ndim < 2 or geometry.in_channels + geometry.out_channels > BLOCK_PLANES:
        return False
    longest = max(max(geometry.output_size), max(geometry.input_size))
    return longest > BLOCKS_FROM * BLOCK


def _ranges(size: int) -> list[tuple[int, int]]:
    if size <= BLOCKS_FROM * BLOCK:
        return [(0, size)]
    return [(start, min(start + BLOCK, size)) for start in range(0, size, BLOCK)]


def _output_blocks(geometry: ConvGeometry) -> list[tuple[tuple[int, int], ...]]:
    return list(itertools.product(*(_ranges(o) for o in geometry.output_size)))


def _forward_by_blocks(x: Array, kernel: Array, xp: Namespace, geometry: ConvGeometry, workspace: int) -> Array:
    z = xp.zeros((x.shape[0], *geometry.output_shape[1:]), dtype=x.dtype, device=device_of(x))
    for outputs in _output_blocks(geometry):
        found = block_geometry(geometry, outputs)
        if found is not None:
            block, reads = found
            part = _whole_forward(x[(..., *reads)], kernel, xp, replace(block, batch=x.shape[0]), workspace)
            z = set_into(z, xp, (..., *(slice(lo, hi) for lo, hi in outputs)), part)
    return z


def _input_grad_by_blocks(dz: Array, kernel: Array, xp: Namespace, geometry: ConvGeometry, workspace: int) -> Array:
    """dX block by block of inputs: each from the outputs whose windows reach it (a halo of the kernel's span)."""
    dx = xp.zeros((dz.shape[0], *geometry.input_shape[1:]), dtype=dz.dtype, device=device_of(dz))
    for inputs in itertools.product(*(_ranges(n) for n in geometry.input_size)):
        outputs = outputs_reaching(geometry, inputs)
        if any(first >= last for first, last in outputs):
            continue  # no window reaches these inputs: their gradient is 0
        found = block_geometry(geometry, outputs)
        if found is None:
            continue
        block, reads = found
        grads = dz[(..., *(slice(first, last) for first, last in outputs))]
        part = _whole_input_grad(grads, kernel, xp, replace(block, batch=dz.shape[0]), workspace)
        kept = tuple(slice(lo - r.start, hi - r.start) for (lo, hi), r in zip(inputs, reads))
        dx = set_into(dx, xp, (..., *(slice(lo, hi) for lo, hi in inputs)), part[(..., *kept)])
    return dx


def _weight_grad_by_blocks(dz: Array, x: Array, xp: Namespace, geometry: ConvGeometry, workspace: int) -> Array:
    """dK summed over blocks of outputs, each with the input its windows read."""
    total = xp.zeros(geometry.kernel_shape, dtype=x.dtype, device=device_of(x))
    for outputs in _output_blocks(geometry):
        found = block_geometry(geometry, outputs)
        if found is not None:
            block, reads = found
            grads = dz[(..., *(slice(lo, hi) for lo, hi in outputs))]
            total = total + _whole_weight_grad(grads, x[(..., *reads)], xp, replace(block, batch=x.shape[0]), workspace)
    return total
