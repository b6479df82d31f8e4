"""method="fft": transform lengths, the geometries where the FFT's circular wrap could bite, bounded
frequency-domain temporaries, and the float32 bound, against torch autograd."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from helpers import NUMPY, asarray, assert_close, draw, explicit_pads, torch_reference

import xpconv
from xpconv import _fft
from xpconv._geometry import conv_geometry


def test_fast_lengths_are_7_smooth_and_at_most_8_percent_above_the_smallest() -> None:
    def smooth(n: int) -> bool:
        for p in (2, 3, 5, 7):
            while n % p == 0:
                n //= p
        return n == 1

    for n in range(1, 2000):
        smallest = next(m for m in itertools.count(n) if smooth(m))
        length = _fft.fast_length(n)
        assert smooth(length) and smallest <= length <= max(smallest, int(1.08 * n)), n
    # measured (scipy.fft, float32 rfft): 61,440 = 2^12 3 5 in 0.36 ms, 60,750 = 2 3^5 5^3 in 0.68 ms
    assert _fft.fast_length(60_500) == 61_440


def test_the_padding_is_not_transformed() -> None:
    """A "same" 31x31 kernel on 56x56 pads to 86; the circular convolution needs 56 + 15 = 71 -> 72."""
    geometry = conv_geometry((1, 1, 56, 56), (1, 1, 31, 31), ndim=2, padding="same")
    assert _fft.FFTPlan.of(geometry, real=True).lengths == (72, 72)
    assert _fft.FFTPlan.of(geometry, real=True).frequencies == (72, 37)


def check(xp, shape, kernel_shape, dtype="float64", workspace_bytes=None, tol=1e-12, **params) -> None:
    """conv, conv_backward, conv_input_grad and conv_weight_grad by the FFT against torch autograd."""
    ndim = len(kernel_shape) - 2
    rng = np.random.default_rng(sum(shape) + sum(kernel_shape))
    x, kernel = draw(rng, shape, dtype), draw(rng, kernel_shape, dtype)
    shape_params = {k: v for k, v in params.items() if k != "groups"}
    dz = draw(rng, xpconv.conv_output_shape(shape, kernel_shape, **shape_params), dtype)
    per_axis = lambda v: (v,) * ndim if isinstance(v, int) else tuple(v)  # noqa: E731
    stride, dilation = per_axis(params.get("stride", 1)), per_axis(params.get("dilation", 1))
    pads = explicit_pads(params.get("padding", "valid"), shape[2:], kernel_shape[2:], stride, dilation)
    ref = torch_reference(x, kernel, dz, stride=stride, pads=pads, dilation=dilation, groups=params.get("groups", 1))
    X, K, DZ = (asarray(a, xp) for a in (x, kernel, dz))
    options = dict(params, method="fft", workspace_bytes=workspace_bytes)

    def close(actual, expected, what):
        assert_close(actual, expected, xp=xp, dtype=getattr(xp, dtype), tol=tol, what=what, floor=1.0)

    close(xpconv.conv(X, K, **options), ref.z, "z")
    dx, dk, _db = xpconv.conv_backward(DZ, X, K, **options)
    close(dx, ref.dx, "dx")
    close(dk, ref.dkernel, "dkernel")
    close(xpconv.conv_input_grad(DZ, K, shape, **options), ref.dx, "input_grad")
    close(xpconv.conv_weight_grad(DZ, X, kernel_shape, **options), ref.dkernel, "weight_grad")


# (x shape, kernel shape, options): where a too-short circular convolution would wrap onto what is read
EDGES = {
    "long 1-D filter, full": ((2, 2, 300), (3, 2, 127), dict(padding="full")),
    "long 1-D filter, same, stride 3": ((1, 2, 200), (2, 2, 101), dict(padding="same", stride=3)),
    "kernel longer than the input, full": ((2, 1, 7), (1, 1, 40), dict(padding="full")),
    "padding far beyond the kernel": ((1, 2, 5, 6), (2, 2, 3, 3), dict(padding=((30, 2), (1, 25)))),
    "output wider than the input": ((1, 1, 4, 4), (1, 1, 2, 2), dict(padding=((9, 9), (0, 0)), stride=(1, 2))),
    "stride beyond the kernel": ((1, 2, 23), (2, 2, 3), dict(stride=7, padding=4)),
    "dilation": ((2, 3, 20, 19), (6, 1, 5, 4), dict(dilation=(3, 4), padding="same", groups=3)),
    "depthwise, channel multiplier": ((2, 4, 15, 16), (8, 1, 9, 9), dict(padding=4, groups=4)),
    "3-D": ((1, 2, 9, 8, 7), (2, 2, 5, 4, 6), dict(padding="full", stride=(2, 1, 3))),
}


@pytest.mark.parametrize("dtype", ["float64", "complex128"])
@pytest.mark.parametrize("name", list(EDGES))
def test_geometries_where_a_short_transform_would_wrap(eager_xp, name, dtype) -> None:
    shape, kernel_shape, params = EDGES[name]
    check(eager_xp, shape, kernel_shape, dtype, **params)


def count_chunks(monkeypatch) -> list[int]:
    """The batch sizes the FFT passes process at a time (recorded around ``over_batch``)."""
    sizes: list[int] = []
    real = _fft.over_batch

    def recording(fn, arrays, *args, **kwargs):
        def wrapped(*parts):
            sizes.append(int(parts[0].shape[0]))
            return fn(*parts)

        return real(wrapped, arrays, *args, **kwargs)

    monkeypatch.setattr(_fft, "over_batch", recording)
    return sizes


@pytest.mark.parametrize("dtype", ["float64", "complex128"])
def test_small_workspaces_take_batch_chunks_and_frequency_blocks(eager_xp, dtype, monkeypatch) -> None:
    """A workspace far below the spectra: the batch goes through in chunks and the kernel's spectrum
    in blocks of frequencies; the numbers stay torch's."""
    shape, kernel_shape, params = (6, 8, 20, 20), (8, 4, 9, 9), dict(padding="same", groups=2)
    geometry = conv_geometry(shape, kernel_shape, ndim=2, **params)
    plan = _fft.FFTPlan.of(geometry, real=dtype == "float64")
    workspace = 40_000
    kernel_bytes = plan.spectrum_bytes(8 * 4, np, np.dtype(dtype))
    blocks = _fft._frequency_blocks(plan, kernel_bytes, _fft._share(workspace))
    assert len(blocks) >= 3 and blocks[0].start == 0 and blocks[-1].stop == plan.frequencies[-1]
    sizes = count_chunks(monkeypatch)
    check(eager_xp, shape, kernel_shape, dtype, workspace_bytes=workspace, **params)
    if "dask" not in eager_xp.__name__:  # Dask's chunks are its own (each then runs as one batch)
        assert max(sizes) < 6 and set(sizes) >= {1}, sizes  # chunks of one sample...
    sizes.clear()
    check(eager_xp, shape, kernel_shape, dtype, workspace_bytes=50 * workspace, **params)
    if "dask" not in eager_xp.__name__:
        assert 1 < max(sizes) < 6, sizes  # ...and of several


@pytest.mark.parametrize("workspace", [None, 40_000])
@pytest.mark.parametrize("dtype", ["float64", "complex128"])
def test_products_padded_off_a_power_of_two_stride(eager_xp, dtype, workspace) -> None:
    """16 channels into 16 filters: the per-frequency products of the forward and dX carry one unused
    column (:func:`_fft._stride_pad`), whole and in blocks of frequencies; the numbers stay torch's."""
    assert _fft._stride_pad(groups=1, outer=16) == 1 and _fft._stride_pad(groups=2, outer=16) == 0
    check(eager_xp, (3, 16, 12, 11), (16, 16, 5, 4), dtype, workspace_bytes=workspace, padding="same")


@pytest.mark.parametrize("dtype", ["float32", "complex64"])
def test_the_float32_bound_on_large_kernels(dtype) -> None:
    """Single precision: within 2e-6 of torch autograd in float64, relative to the largest value,
    on the 31x31 and 13x13 kernels the FFT is for (the transforms' rounding grows like log L)."""
    for shape, kernel_shape, params in (
        ((2, 4, 56, 56), (4, 1, 31, 31), dict(padding="same", groups=4)),
        ((2, 8, 64, 64), (8, 8, 13, 13), dict(padding="same")),
        ((1, 4, 128, 128), (4, 4, 15, 15), dict(padding="full")),
    ):
        check(NUMPY, shape, kernel_shape, dtype, tol=2e-6, **params)


def test_integers_never_take_the_fft() -> None:
    x, kernel = np.ones((1, 1, 40, 40), dtype=np.int64), np.ones((1, 1, 15, 15), dtype=np.int64)
    with pytest.raises(ValueError, match="method='fft' cannot compute this convolution: the FFT rounds"):
        xpconv.conv2d(x, kernel, method="fft")
    z = xpconv.conv2d(x, kernel)  # "auto" on a large integer kernel: exact, not by the FFT
    assert z.dtype == np.int64 and int(z[0, 0, 0, 0]) == 225 and math.prod(z.shape) == 26 * 26


def test_auto_takes_the_fft_for_the_large_kernels_and_none_of_the_classic_layers() -> None:
    """The rule "auto" follows without autotuning, on the two benchmark suites: the FFT measured
    slower than the column matrix on every classic layer (mnist5x5's 5x5 kernel included) and
    faster on every large one (see fft_pays and docs/performance.md)."""
    from xpconv import _gradients
    from xpconv.tools.suites import CLASSIC, LARGE

    for spec, expected in [*((s, False) for s in CLASSIC), *((s, True) for s in LARGE)]:
        x_shape, kernel_shape, _ = spec.shapes
        geometry = conv_geometry(x_shape, kernel_shape, ndim=spec.ndim, **spec.params)
        for grad in ("forward", "input", "weight"):
            methods = ("winograd", "fft", "direct", "dilate")
            applicable = [m for m in methods if _gradients._obstacle(m, geometry, NUMPY, np.float32) is None]
            chosen = _gradients._rule(grad, geometry, applicable, NUMPY)
            assert (chosen == "fft") == expected, (spec.name, grad, chosen)


SPECTRUM_CHOICES = {
    "every axis by the FFT": lambda length, frequencies, taps, columns: True,
    "axes of odd tap counts by the FFT, the others by the matrix": lambda length, frequencies, taps, columns: taps % 2,
}


@pytest.mark.parametrize("choice", list(SPECTRUM_CHOICES))
@pytest.mark.parametrize("dtype", ["float64", "complex128"])
@pytest.mark.parametrize("name", list(EDGES))
def test_tap_spectra_by_the_fft_of_the_zero_filled_taps(eager_xp, name, dtype, choice, monkeypatch) -> None:
    """The kernel's spectrum and dK's taps by an FFT of the zero-filled taps (placed, flipped and
    dilated, and wrapped modulo ``L``), on every axis or on some: the numbers stay torch's."""
    monkeypatch.setattr(_fft, "dft_by_fft", SPECTRUM_CHOICES[choice])
    shape, kernel_shape, params = EDGES[name]
    check(eager_xp, shape, kernel_shape, dtype, **params)


@pytest.mark.parametrize("dtype", ["float64", "complex128"])
def test_tap_spectra_by_the_fft_in_frequency_blocks(eager_xp, dtype, monkeypatch) -> None:
    """A workspace that splits the kernel's spectrum and dK's products into blocks of the last
    axis' frequencies, with every axis transformed by the FFT."""
    monkeypatch.setattr(_fft, "dft_by_fft", lambda length, frequencies, taps, columns: True)
    check(eager_xp, (3, 4, 12, 10), (6, 2, 5, 3), dtype, workspace_bytes=20_000, padding="same", groups=2)


def test_dft_matrices_are_kept_up_to_a_byte_budget() -> None:
    """The DFT matrices' cache drops the least recently used beyond its bytes, keeps at least the
    newest, and hands back the array it keeps."""
    made = []
    cache = _fft._BytesBoundedCache(lambda size: made.append(size) or np.zeros(size, np.uint8), limit=100)
    first = cache(40)
    assert cache(40) is first and made == [40]
    cache(50)
    cache(40)  # now the most recently used
    cache(30)  # 120 bytes: the 50 go
    assert cache.nbytes() == 70 and cache(40) is first and made == [40, 50, 30]
    cache(500)  # alone above the budget: kept, the others dropped
    assert cache.nbytes() == 500
    assert isinstance(_fft._dft_matrix, _fft._BytesBoundedCache) and _fft._dft_matrix.limit == _fft.DFT_CACHE_BYTES


def test_a_long_fir_filter_takes_the_fft_for_its_taps(monkeypatch) -> None:
    """1,001 taps over 20,000 samples: the pruned DFT would be a 1,001 x 10,000 matrix (made and
    applied in 60 ms); the taps' FFT costs an FFT's. Chosen by the costs, and exact."""
    chosen = []
    real = _fft.dft_by_fft
    monkeypatch.setattr(_fft, "dft_by_fft", lambda *args: chosen.append(real(*args)) or chosen[-1])
    check(NUMPY, (1, 1, 20_000), (1, 1, 1001), "float64", padding="same")
    assert chosen and all(chosen), chosen
    assert not real(64, 33, 3, 64) and real(20_000, 10_001, 1001, 1)


# (layer of the regret set, pass, the pick): each measured at least 2x faster than every other method
# on NumPy (``python -m xpconv bench --regret``, benchmarks/results/regret.md)
CLEAR_WINNERS = [
    ("fir 60000x1001 same", "forward", "fft"),  # 3 ms against 46 ms
    ("fir 60000x1001 same", "input", "fft"),  # 2.3 ms against 45 ms
    ("fir 60000x1001 same", "weight", "fft"),
    ("fir 8000x2001 full", "input", "fft"),
    ("blur 512x512 31x31", "forward", "fft"),  # 3.5 ms against 1,013 ms
    ("blur 512x512 31x31", "weight", "fft"),
    ("volume 64^3 7^3", "forward", "fft"),  # 5 ms against 334 ms
    ("volume 64^3 7^3", "input", "fft"),
    ("depthwise 128ch 11x11 28x28", "forward", "fft"),  # 10 ms against 80 ms
    ("depthwise 64ch 15x15 s2", "weight", "fft"),
    ("filterbank 80x251 stride 10", "forward", "direct"),  # 5 ms against the FFT's 187 ms
    ("filterbank 80x251 stride 10", "input", "direct"),
    ("filterbank 80x251 stride 10", "weight", "direct"),
    ("audio 32ch k3 16000", "forward", "direct"),  # 10 ms against 57 ms
    ("rgb 3->16 256x256 5x5", "forward", "direct"),  # 20 ms against 59 ms
]


@pytest.mark.parametrize("size", [256, 1024])
def test_one_channel_7x7_images_take_the_fft_on_numpy(size) -> None:
    """One image, one 7x7 filter: on NumPy the FFT (measured 1.4-1.8x faster than the column matrix
    for the forward, 3x for dK at 1024^2; the estimate said 1.0-1.1, under the plain margin); 5x5's
    forward and dX stay the column matrix, and so does its dK on 1024^2 (the estimate 0.51 under dK's
    relieved margin, 0.53)."""
    from xpconv import _gradients
    from xpconv._costs import DEFAULT_MODEL

    seven = conv_geometry((1, 1, size, size), (1, 1, 7, 7), ndim=2, padding="same")
    five = conv_geometry((1, 1, size, size), (1, 1, 5, 5), ndim=2, padding="same")
    four_channels = conv_geometry((1, 4, size, size), (4, 4, 7, 7), ndim=2, padding="same")
    assert not _gradients.fft_pays(seven, "forward")  # the plain margin says no
    own = ("fft", "direct", "dilate")
    for grad in ("forward", "input", "weight"):
        assert _gradients.rule_pick(grad, seven, own, "other", DEFAULT_MODEL) == "fft"
        if grad != "weight" or size == 1024:
            assert _gradients.rule_pick(grad, five, own, "other", DEFAULT_MODEL) != "fft"
        # four channels keep the plain margin
        plain = _gradients._own_rule(grad, four_channels, list(own))
        assert _gradients.rule_pick(grad, four_channels, own, "other", DEFAULT_MODEL) == plain


# (x shape, kernel side, pass, torch's pick): one channel into one filter on torch, timed by every
# method (torch 2.13, float32, 2 cores, "same", 2026-12-02); all but the first and last changed, each
# pick 1.37-19x faster than the rule's before
TORCH_ONE_CHANNEL = [
    ((1, 1, 128, 128), 7, "forward", "native"),  # small, kept: oneDNN 0.45 ms, the FFT 0.70
    ((1, 1, 1024, 1024), 5, "forward", "fft"),  # 10.4 ms, oneDNN 35
    ((1, 1, 1024, 1024), 5, "input", "fft"),  # 8.5 ms, the tutorial's "dilate" 11.6
    ((1, 1, 1024, 1024), 5, "weight", "fft"),  # 10.9 ms, oneDNN 41
    ((1, 1, 1024, 1024), 3, "forward", "direct"),  # 7.5 ms by taps, oneDNN 33
    ((4, 1, 512, 512), 7, "input", "fft"),  # 8.4 ms, "dilate" 28
    ((1, 1, 96, 96, 96), 3, "weight", "fft"),  # 7.8 ms, oneDNN 49
    ((1, 1, 262_144), 63, "forward", "direct"),  # 5.1 ms, oneDNN 97
    ((1, 1, 262_144), 63, "weight", "native"),  # a signal's dK, kept: 9.6 ms, as the column matrix's 9.8
]


@pytest.mark.parametrize(("shape", "side", "grad", "expected"), TORCH_ONE_CHANNEL)
def test_one_channel_layers_on_torch_leave_onednn_when_large(shape, side, grad, expected) -> None:
    """On torch, one channel into one filter from 2^16 elements on: oneDNN no longer takes the forward
    (nor dK in 2-D and 3-D), and the FFT's margin is relieved in 2-D and 3-D; small layers, signals'
    dK and layers of more channels keep the rule as it was."""
    from xpconv import _gradients
    from xpconv._costs import DEFAULT_MODEL

    ndim = len(shape) - 2
    geometry = conv_geometry(shape, (1, 1, *(side,) * ndim), ndim=ndim, padding="same")
    applicable = ("fft", "native", "dilate", "direct")
    assert _gradients.rule_pick(grad, geometry, applicable, "torch", DEFAULT_MODEL) == expected
    four = conv_geometry((shape[0], 4, *shape[2:]), (4, 4, *(side,) * ndim), ndim=ndim, padding="same")
    assert _gradients.rule_pick(grad, four, applicable, "torch", DEFAULT_MODEL) == _rule_before(grad, four)


def _rule_before(grad: str, geometry) -> str:
    """torch's rule for layers the one-channel case leaves alone: xpconv's own pick, or oneDNN."""
    from xpconv import _gradients, _native
    from xpconv._costs import DEFAULT_MODEL

    applicable = ["fft", "native", "dilate", "direct"]
    own = _gradients._own_rule(grad, geometry, applicable, DEFAULT_MODEL)
    advantage = _gradients.fft_advantage(geometry)
    return "native" if _native.native_pays(geometry, grad, own, advantage, "torch") else own


@pytest.mark.parametrize(("name", "grad", "expected"), CLEAR_WINNERS)
def test_auto_picks_the_clear_winner_on_the_held_out_set(name, grad, expected) -> None:
    from xpconv import _gradients
    from xpconv.tools.suites import REGRET_SET

    spec = next(s for s in REGRET_SET if s.name == name)
    x_shape, kernel_shape, _ = spec.shapes
    geometry = conv_geometry(x_shape, kernel_shape, ndim=spec.ndim, **spec.params)
    dtype = np.complex64 if "complex" in spec.dtype else np.float32
    applicable = [
        m for m in ("winograd", "fft", "direct", "dilate") if _gradients._obstacle(m, geometry, NUMPY, dtype) is None
    ]
    assert _gradients._rule(grad, geometry, applicable, NUMPY) == expected


@pytest.mark.parametrize("dtype", ["float64", "complex128"])
@pytest.mark.parametrize("name", [name for name, (shape, _, _) in EDGES.items() if len(shape) > 3])
def test_the_block_fft_matches_torch(eager_xp, name, dtype, monkeypatch) -> None:
    """Blocks of 3 outputs (dX: inputs) per axis, each with its halo and its share of the padding:
    every padding form, stride, dilation, groups, depthwise, complex and 3-D of the edge cases."""
    monkeypatch.setattr(_fft, "BLOCK", 3)
    monkeypatch.setattr(_fft, "BLOCKS_FROM", 1.0)
    monkeypatch.setattr(_fft, "BLOCK_PLANES", 12)
    shape, kernel_shape, params = EDGES[name]
    geometry = conv_geometry(shape, kernel_shape, ndim=len(shape) - 2, **params)
    assert _fft.blocks_pay(geometry)
    check(eager_xp, shape, kernel_shape, dtype, **params)


def test_large_images_take_blocks_and_dense_layers_not() -> None:
    image = conv_geometry((1, 1, 2048, 2048), (1, 1, 15, 15), ndim=2, padding="same")
    depthwise = conv_geometry((1, 16, 2048, 2048), (16, 1, 9, 9), ndim=2, padding="same", groups=16)
    signal = conv_geometry((1, 1, 60_000), (1, 1, 1001), ndim=1, padding="same")
    small = conv_geometry((1, 1, 1024, 1024), (1, 1, 31, 31), ndim=2, padding="same")
    assert _fft.blocks_pay(image) and not any(_fft.blocks_pay(g) for g in (depthwise, signal, small))


def test_the_float32_bound_on_the_new_paths(monkeypatch) -> None:
    """Single precision within 2e-6 of float64 torch (relative to the largest value) where the taps'
    spectrum goes by the FFT (a 1,001-tap FIR) and where the image goes block by block."""
    check(NUMPY, (1, 1, 20_000), (1, 1, 1001), "float32", tol=2e-6, padding="same")
    monkeypatch.setattr(_fft, "BLOCK", 16)
    monkeypatch.setattr(_fft, "BLOCKS_FROM", 1.0)
    check(NUMPY, (1, 1, 64, 80), (1, 1, 9, 9), "float32", tol=2e-6, padding="same")
    check(NUMPY, (1, 1, 64, 80), (1, 1, 9, 9), "complex64", tol=2e-6, padding="full")
