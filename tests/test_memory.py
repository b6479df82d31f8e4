"""The user guide's memory promise (docs/user-guide.md), under tracemalloc (NumPy reports its allocations to it).

Peak extra memory of a call is its outputs plus one batch chunk's temporaries: the chunk's padded
slice, its column matrix (at most ``workspace_bytes``) or Winograd tiles, and its product. So it
must not grow with the batch, and stays within twice ``workspace_bytes`` beyond the outputs.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import xpconv

# The FFT's temporaries for one sample (16 channels at 32x32, float64: the zero-filled input, its
# spectrum and their copies, about 1 MiB) fill a 1 MiB workspace alone, which the README allows for
# a single sample; it is measured with 4 MiB, where the batch goes in chunks of several samples.
WORKSPACES = {"direct": 2**20, "winograd": 2**20, "dilate": 2**20, "fft": 4 * 2**20}


def extra_bytes(x: np.ndarray, kernel: np.ndarray, dz: np.ndarray, method: str) -> int:
    """Peak traced bytes of one forward+backward beyond its outputs."""
    options = dict(padding=1, method=method, workspace_bytes=WORKSPACES[method])
    xpconv.conv2d(x[:2], kernel, **options)  # imports and first-call caches are not the call's memory
    xpconv.conv2d_backward(dz[:2], x[:2], kernel, **options)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        z = xpconv.conv2d(x, kernel, **options)
        dx, dkernel, dbias = xpconv.conv2d_backward(dz, x, kernel, **options)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return peak - sum(a.nbytes for a in (z, dx, dkernel, dbias))


@pytest.mark.parametrize("method", list(WORKSPACES))
def test_temporaries_stay_within_the_workspace_whatever_the_batch(method: str) -> None:
    rng = np.random.default_rng(0)
    extras = {}
    for batch in (8, 64):  # 1 MiB and 8 MiB of input (float64, 16 channels, 32x32)
        x, dz = rng.standard_normal((batch, 16, 32, 32)), rng.standard_normal((batch, 16, 32, 32))
        extras[batch] = extra_bytes(x, rng.standard_normal((16, 16, 3, 3)), dz, method)
    workspace = WORKSPACES[method]
    assert extras[64] <= 2 * workspace, f"{method}: {extras[64] / 2**20:.2f} MiB beyond the outputs at batch 64"
    assert extras[64] <= extras[8] + workspace // 4, f"{method}: temporaries grew with the batch: {extras}"


# One sample larger than the workspace: (x shape, kernel shape, options), float64.
ONE_SAMPLE = {
    "2-D, padding 1": ((2, 3, 17, 11), (4, 3, 3, 3), dict(padding=1)),
    "same, stride 2, dilation, groups": (
        (1, 2, 23, 9), (4, 1, 5, 3), dict(padding="same", stride=2, dilation=(2, 1), groups=2),
    ),
    "1-D, per-side pads, stride 3": ((1, 1, 30), (2, 1, 7), dict(padding=((5, 1),), stride=3)),
    "3-D, full": ((1, 1, 9, 8, 7), (2, 1, 3, 3, 3), dict(padding="full")),
    "stride beyond the kernel, depthwise": ((2, 4, 25, 9), (4, 1, 2, 3), dict(stride=(4, 2), groups=4)),
    "one channel tap by tap, same, stride 2": ((2, 1, 19, 13), (1, 1, 3, 3), dict(padding="same", stride=2)),
    "one channel 3-D, dilation": ((1, 1, 11, 9, 8), (1, 1, 3, 3, 3), dict(padding=1, dilation=(2, 1, 1))),
}  # fmt: skip


@pytest.mark.parametrize("method", ["direct", "dilate"])
@pytest.mark.parametrize("name", list(ONE_SAMPLE))
def test_one_sample_beyond_the_workspace_goes_by_slabs(name: str, method: str) -> None:
    """A workspace smaller than one row's columns: every pass in slabs of the first spatial axis,
    the numbers of torch autograd (or the loop reference without torch)."""
    from helpers import NUMPY, Gradients, assert_close, explicit_pads, installed, loop_reference, torch_reference

    shape, kernel_shape, params = ONE_SAMPLE[name]
    rng = np.random.default_rng(len(name))
    x, kernel = rng.standard_normal(shape), rng.standard_normal(kernel_shape)
    ndim = len(shape) - 2
    stride, dilation = params.get("stride", 1), params.get("dilation", 1)
    stride_t = (stride,) * ndim if isinstance(stride, int) else stride
    dilation_t = (dilation,) * ndim if isinstance(dilation, int) else dilation
    pads = explicit_pads(params.get("padding", 0), shape[2:], kernel_shape[2:], stride_t, dilation_t)
    options = dict(params, method=method, workspace_bytes=600)
    z = xpconv.conv(x, kernel, **options)
    dz = rng.standard_normal(z.shape)
    reference = torch_reference if installed("torch") else loop_reference
    expected: Gradients = reference(
        x, kernel, dz, stride=stride_t, pads=pads, dilation=dilation_t, groups=params.get("groups", 1)
    )
    assert_close(z, expected.z, xp=NUMPY, tol=1e-12, what="z")
    assert_close(xpconv.conv_input_grad(dz, kernel, shape, **options), expected.dx, xp=NUMPY, tol=1e-12, what="dx")
    dkernel = xpconv.conv_weight_grad(dz, x, kernel_shape, **options)
    assert_close(dkernel, expected.dkernel, xp=NUMPY, tol=1e-12, what="dkernel")


def test_one_large_sample_holds_about_the_workspace() -> None:
    """A 3x3 kernel over one 1-channel 96x96x96 volume: its column matrix is 27 x 7 MiB; with a 4 MiB
    workspace the forward holds a few slabs' worth beyond its output, not the 190 MiB."""
    x, kernel = np.ones((1, 1, 96, 96, 96)), np.ones((1, 1, 3, 3, 3))
    options = dict(padding=1, method="direct", workspace_bytes=4 * 2**20)
    xpconv.conv3d(x[..., :8, :8, :8], kernel, **options)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        z = xpconv.conv3d(x, kernel, **options)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert float(z[0, 0, 48, 48, 48]) == 27.0 and float(z[0, 0, 0, 0, 0]) == 8.0
    assert peak - z.nbytes <= 3 * z.nbytes + 4 * 4 * 2**20, f"{(peak - z.nbytes) / 2**20:.1f} MiB beyond the output"


TILED_TAPS = {
    "1-D, stride 2, same": ((2, 1, 41), (1, 1, 5), dict(padding="same", stride=2)),
    "2-D, dilation, pads": ((2, 1, 23, 9), (1, 1, 3, 3), dict(padding=((2, 1), (0, 3)), dilation=(2, 1))),
    "2-D, 7x7 (49 taps), stride 2": ((1, 1, 17, 15), (1, 1, 7, 7), dict(padding=3, stride=(2, 1))),
    "3-D, stride and dilation": (
        (1, 1, 13, 7, 6), (1, 1, 3, 2, 3), dict(padding=1, stride=(3, 1, 2), dilation=(1, 2, 1)),
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(TILED_TAPS))
def test_one_channel_taps_in_tiles(eager_xp, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """One channel into one filter goes tap by tap in tiles of the first spatial axis (so each tap
    stays in the cache); with tiles of a row or two, every tile edge meets the stride and dilation:
    the forward and dX of torch autograd (the loop reference without torch), on every library."""
    from helpers import Gradients, asarray, assert_close, explicit_pads, installed, loop_reference, torch_reference

    monkeypatch.setattr("xpconv._contract.TAP_TILE_BYTES", 16)
    monkeypatch.setattr("xpconv._contract.TAPS_FROM_COLUMN_BYTES", 0)  # 49 taps go by taps, however small
    from xpconv import _contract

    tiles = []
    tap_sum = _contract._tap_sum
    monkeypatch.setattr(_contract, "_tap_sum", lambda *args: tiles.append(1) or tap_sum(*args))
    shape, kernel_shape, params = TILED_TAPS[name]
    rng = np.random.default_rng(len(name))
    x, kernel = rng.standard_normal(shape), rng.standard_normal(kernel_shape)
    ndim = len(shape) - 2
    stride = params.get("stride", 1)
    stride_t = (stride,) * ndim if isinstance(stride, int) else stride
    dilation_t = params.get("dilation", (1,) * ndim)
    pads = explicit_pads(params["padding"], shape[2:], kernel_shape[2:], stride_t, dilation_t)
    reference = torch_reference if installed("torch") else loop_reference
    geometry = zip(shape[2:], pads, dilation_t, kernel_shape[2:], stride_t)
    out = [(n + a + b - d * (k - 1) - 1) // s + 1 for n, (a, b), d, k, s in geometry]
    dz = rng.standard_normal((shape[0], 1, *out))
    expected: Gradients = reference(x, kernel, dz, stride=stride_t, pads=pads, dilation=dilation_t, groups=1)
    options = dict(params, method="direct")
    x_, kernel_, dz_ = (asarray(a, eager_xp) for a in (x, kernel, dz))
    assert_close(xpconv.conv(x_, kernel_, **options), expected.z, xp=eager_xp, what="z")
    dx = xpconv.conv_input_grad(dz_, kernel_, shape, **options)
    assert_close(dx, expected.dx, xp=eager_xp, what="dx")
    assert len(tiles) > 2, tiles  # the forward went tap by tap, in tiles


@pytest.mark.parametrize(("method", "slabbed"), [("direct", False), ("dilate", True)])
def test_slabs_count_the_pass_own_columns(monkeypatch: pytest.MonkeyPatch, method: str, slabbed: bool) -> None:
    """A strided filterbank's dX: by col2im ("direct") it holds ``C * k`` values per output (230 KB
    here) and runs whole within a 1 MiB workspace; by the tutorial's dilation ("dilate") ``F * k`` per
    input (16 MB), and goes by slabs. The numbers are torch autograd's either way."""
    from helpers import NUMPY, assert_close, explicit_pads, installed, loop_reference, torch_reference

    from xpconv import _gradients

    calls = []
    by_slabs = _gradients.input_grad_by_slabs
    monkeypatch.setattr(
        _gradients, "input_grad_by_slabs", lambda *args, **kwargs: calls.append(1) or by_slabs(*args, **kwargs)
    )
    rng = np.random.default_rng(4)
    shape, kernel_shape, stride = (1, 1, 4000), (8, 1, 63), (10,)
    x, kernel = rng.standard_normal(shape), rng.standard_normal(kernel_shape)
    dz = rng.standard_normal((1, 8, (4000 - 63) // 10 + 1))
    reference = torch_reference if installed("torch") else loop_reference
    pads = explicit_pads(0, shape[2:], kernel_shape[2:], stride, (1,))
    expected = reference(x, kernel, dz, stride=stride, pads=pads, dilation=(1,), groups=1)
    dx = xpconv.conv_input_grad(dz, kernel, shape, stride=stride, method=method, workspace_bytes=2**20)
    assert bool(calls) == slabbed
    assert_close(dx, expected.dx, xp=NUMPY, what="dx")


@pytest.mark.parametrize(
    ("shape", "side", "slabbed"),
    [((1, 1, 40, 36), 5, True), ((1, 1, 12, 11, 10), 3, True), ((1, 1, 1500), 31, False), ((1, 1, 8, 8), 3, False)],
)
def test_large_one_channel_dk_goes_by_slabs_on_the_cpu(monkeypatch, shape, side, slabbed) -> None:
    """dK of one channel into one filter whose column matrix is above glibc's mmap limit (lowered
    here to 8 KiB) goes by slabs of the first axis whatever the workspace, in 2-D and 3-D: signals
    and small images keep their columns. The numbers are torch autograd's."""
    from helpers import NUMPY, assert_close, explicit_pads, installed, loop_reference, torch_reference

    from xpconv import _gradients

    monkeypatch.setattr(_gradients, "GLIBC_MMAP_MAX", 8 * 2**10)
    monkeypatch.setattr(_gradients, "CPU_ONE_CHANNEL_SLAB_BYTES", 4 * 2**10)
    calls = []
    by_slabs = _gradients.weight_grad_by_slabs
    monkeypatch.setattr(
        _gradients, "weight_grad_by_slabs", lambda *args, **kwargs: calls.append(1) or by_slabs(*args, **kwargs)
    )
    ndim = len(shape) - 2
    kernel_shape = (1, 1, *(side,) * ndim)
    rng = np.random.default_rng(sum(shape))
    x, dz = rng.standard_normal(shape), rng.standard_normal(shape)
    kernel = rng.standard_normal(kernel_shape)
    pads = explicit_pads("same", shape[2:], kernel_shape[2:], (1,) * ndim, (1,) * ndim)
    reference = torch_reference if installed("torch") else loop_reference
    expected = reference(x, kernel, dz, stride=(1,) * ndim, pads=pads, dilation=(1,) * ndim, groups=1)
    for method in ("direct", "dilate"):
        calls.clear()
        dkernel = xpconv.conv_weight_grad(dz, x, kernel_shape, padding="same", method=method)
        assert bool(calls) == slabbed, method
        assert_close(dkernel, expected.dkernel, xp=NUMPY, tol=1e-12, what=f"dkernel by {method}")
