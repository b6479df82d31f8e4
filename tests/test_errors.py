"""Bad input gets a ValueError or TypeError that names the argument and what came."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import xpconv

x = np.ones((2, 4, 8, 8))
kernel = np.ones((6, 2, 3, 3))  # used with groups=2
dz = np.ones((2, 6, 6, 6))


def conv(**kwargs):
    arguments = {"x": x, "kernel": kernel, "bias": None, "groups": 2} | kwargs
    return xpconv.conv2d(arguments.pop("x"), arguments.pop("kernel"), arguments.pop("bias"), **arguments)


def backward(**kwargs):
    arguments = {"dz": dz, "x": x, "kernel": kernel, "groups": 2} | kwargs
    return xpconv.conv2d_backward(arguments.pop("dz"), arguments.pop("x"), arguments.pop("kernel"), **arguments)


CASES = {
    "x ndim": (lambda: conv(x=np.ones((4, 8, 8))), ValueError, r"x must be 4-D .* got 3-D"),
    "kernel ndim": (lambda: conv(kernel=np.ones((6, 2, 3))), ValueError, r"kernel must be 4-D"),
    "bias ndim": (lambda: conv(bias=np.ones((6, 1))), ValueError, r"bias must have shape \(6,\)"),
    "bias length": (lambda: conv(bias=np.ones(5)), ValueError, r"bias must have shape .* got \(5,\)"),
    "untied bias shape": (lambda: conv(bias=np.ones((6, 5, 6))), ValueError, r"\(6, 6, 6\) \(untied\)"),
    "dz ndim": (lambda: backward(dz=np.ones((6, 6, 6))), ValueError, r"dz must have the forward output's shape"),
    "dz shape": (lambda: backward(dz=np.ones((2, 6, 5, 6))), ValueError, r"dz .* \(2, 6, 6, 6\).* got \(2, 6, 5, 6\)"),
    "channel mismatch": (lambda: conv(kernel=np.ones((6, 3, 3, 3))), ValueError, r"kernel must have C // groups"),
    "kernel too large": (lambda: conv(kernel=np.ones((6, 2, 9, 3))), ValueError, r"dilated kernel .* larger"),
    "dilated kernel too large": (lambda: conv(dilation=4), ValueError, r"extent 9 .* dilation 4"),
    "kernel too large after padding": (
        lambda: conv(kernel=np.ones((6, 2, 11, 3)), padding=1),
        ValueError,
        r"larger than the padded input \(10",
    ),
    "zero stride": (lambda: conv(stride=0), ValueError, r"stride must be positive"),
    "negative stride": (lambda: conv(stride=(1, -2)), ValueError, r"stride must be positive"),
    "float stride": (lambda: conv(stride=1.5), TypeError, r"stride must be an int, got float"),
    "bool stride": (lambda: conv(stride=True), TypeError, r"stride must be an int, got the bool"),
    "stride length": (lambda: conv(stride=(1, 1, 1)), ValueError, r"stride must be an int or a sequence of 2"),
    "zero dilation": (lambda: conv(dilation=(0, 1)), ValueError, r"dilation must be positive"),
    "float dilation": (lambda: conv(dilation=(1, 2.0)), TypeError, r"dilation must be an int"),
    "negative padding": (lambda: conv(padding=-1), ValueError, r"padding must be non-negative"),
    "negative explicit padding": (lambda: conv(padding=((0, -1), (0, 0))), ValueError, r"padding must be non-neg"),
    "unknown padding word": (lambda: conv(padding="circular"), ValueError, r"padding .* got the word 'circular'"),
    "padding length": (lambda: conv(padding=(1, 1, 1)), ValueError, r"padding must have one entry per spatial axis"),
    "padding pair length": (lambda: conv(padding=((1, 1, 1), (0, 0))), ValueError, r"padding must hold"),
    "float padding": (lambda: conv(padding=1.0), TypeError, r"padding must be an int"),
    "groups not dividing C": (lambda: conv(groups=3, kernel=np.ones((6, 1, 3, 3))), ValueError, r"groups must divide"),
    "groups not dividing F": (lambda: conv(kernel=np.ones((5, 2, 3, 3))), ValueError, r"groups must divide the 5"),
    "zero groups": (lambda: conv(groups=0), ValueError, r"groups must be positive"),
    "unknown bias mode": (
        lambda: backward(bias="shared"),
        ValueError,
        r"bias must be 'tied', 'untied', None or the forward's bias array",
    ),
    "unknown method": (lambda: backward(method="fourier"), ValueError, r"method must be one of"),
    "unknown forward method": (lambda: conv(method="fourier"), ValueError, r"method must be one of"),
    "winograd on 5x5": (
        lambda: conv(kernel=np.ones((6, 2, 5, 5)), method="winograd"),
        ValueError,
        r"method='winograd' cannot compute this convolution: it needs a 3x3 kernel, got 5x5",
    ),
    "winograd at stride 2": (
        lambda: backward(dz=np.ones((2, 6, 3, 3)), stride=2, method="winograd"),
        ValueError,
        r"method='winograd' cannot .*: it needs stride 1, got stride \(2, 2\)",
    ),
    "winograd in 3-D": (
        lambda: xpconv.conv(np.ones((1, 1, 4, 4, 4)), np.ones((1, 1, 3, 3, 3)), method="winograd"),
        ValueError,
        r"method='winograd' cannot .*: it needs 2 spatial axes, got 3",
    ),
    "winograd on integers": (
        lambda: conv(
            x=np.ones((2, 4, 8, 8), dtype=np.int32), kernel=np.ones((6, 2, 3, 3), dtype=np.int32), method="winograd"
        ),
        ValueError,
        r"method='winograd' cannot .*: its transforms are fractional and would make integer results inexact",
    ),
    "list input": (lambda: conv(x=x.tolist()), TypeError, r"x must be an array"),
    "bool input": (
        lambda: conv(x=x > 0, kernel=kernel > 0),
        TypeError,
        r"x must have a floating, complex or integer dtype",
    ),
    "integer with complex": (
        lambda: conv(x=x.astype(np.int32), kernel=kernel + 0j),
        TypeError,
        r"integer and complex arrays do not mix \(x: int32, kernel: complex128\)",
    ),
    "fft with integers": (
        lambda: conv(x=x.astype(np.int64), kernel=kernel.astype(np.int64), method="fft"),
        ValueError,
        r"method='fft' cannot compute this convolution: the FFT rounds, and int64 results must be exact",
    ),
    "input_shape length": (
        lambda: xpconv.conv2d_input_grad(dz, kernel, (2, 4, 8), groups=2),
        ValueError,
        r"input_shape must be a sequence of 4 ints",
    ),
    "kernel_shape contents": (
        lambda: xpconv.conv2d_weight_grad(dz, x, (6, 2, 3, "3"), groups=2),
        ValueError,
        r"kernel_shape must hold non-negative ints",
    ),
    "workspace": (lambda: conv(workspace_bytes=0), ValueError, r"workspace_bytes must be a positive int"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name: str) -> None:
    call, error, pattern = CASES[name]
    with pytest.raises(error, match=pattern):
        call()


def test_arrays_of_two_libraries() -> None:
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"one array library.*x: numpy.ndarray.*kernel: torch.Tensor"):
        xpconv.conv2d(x, torch.ones(6, 2, 3, 3), groups=2)


def test_arrays_on_two_devices() -> None:
    torch = pytest.importorskip("torch")
    # The meta device exists on every torch build, so no GPU is needed to mix devices.
    with pytest.raises(ValueError, match=r"one device: x is on cpu, kernel on meta"):
        xpconv.conv2d(torch.ones(2, 4, 8, 8), torch.ones(6, 2, 3, 3, device="meta"), groups=2)


def test_workspace_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XPCONV_WORKSPACE_BYTES", "lots")
    with pytest.raises(ValueError, match="XPCONV_WORKSPACE_BYTES must be a positive integer"):
        conv()


SIZE_CASES = {
    "padding 10**12": (lambda: conv(padding=10**12), r"padding \(\(1000000000000, 1000000000000\), .*\) makes"),
    "padding after 10**9": (
        lambda: conv(padding=((0, 10**9), (0, 10**9))),
        r"padding \(\(0, 1000000000\), \(0, 1000000000\)\) makes one padded sample of the input "
        r"\(4, 1000000008, 1000000008\)",
    ),
    "dilation and padding 10**6": (
        lambda: conv(dilation=10**6, padding=10**6),
        r"padding \(\(1000000, 1000000\), \(1000000, 1000000\)\) makes .*: 116 TiB, more than the .* of memory",
    ),
    "backward with a small dz": (
        lambda: backward(dz=np.ones((2, 6, 3, 3)), stride=10**9, padding=10**9),
        r"padding .* makes one padded sample of the input \(4, 2000000008, 2000000008\)",
    ),
    "transposed stride": (
        lambda: xpconv.conv_transpose(np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3)), stride=10**9),
        r"stride 1000000000, padding 0, output_padding 0 and dilation 1 makes",
    ),
}


@pytest.mark.parametrize("name", SIZE_CASES)
def test_impossible_sizes_are_refused_before_any_allocation(name: str) -> None:
    call, message = SIZE_CASES[name]
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=message):
            call()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20, f"{peak} bytes were allocated before the refusal"


def test_conv_output_shape_refuses_what_conv_refuses() -> None:
    with pytest.raises(ValueError, match="larger than the padded input"):
        xpconv.conv_output_shape((1, 1, 2, 2), (1, 1, 3, 3))
    with pytest.raises(ValueError, match=r"kernel_shape must have C // groups"):
        xpconv.conv_output_shape((1, 3, 5, 5), (2, 2, 3, 3))
    with pytest.raises(ValueError, match="layout must be 'channels_first' or 'channels_last'"):
        xpconv.conv_output_shape((1, 1, 5, 5), (1, 1, 3, 3), layout="NHWC")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="input_shape must be a sequence of 4 ints"):
        xpconv.conv_output_shape((1, 5, 5), (1, 1, 3, 3))


def test_the_column_matrix_counts_only_where_the_pass_must_build_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 9x9 kernel's column matrix (1 MiB here) over a 512 KiB device: refused for the column-matrix
    methods and for integers, computed by "auto" on floating point (it takes the FFT)."""
    from xpconv import _arguments

    x, kernel = np.random.default_rng(0).standard_normal((1, 1, 40, 40)), np.ones((1, 1, 9, 9))
    expected = xpconv.conv2d(x, kernel, padding="same", method="fft")
    monkeypatch.setattr(_arguments, "memory_limit", lambda like, xp: 2**19)
    for refused in (dict(method="direct"), dict(method="dilate")):
        with pytest.raises(ValueError, match=r"makes one sample's column matrix \(1, 81, 1600\)"):
            xpconv.conv2d(x, kernel, padding="same", **refused)
    with pytest.raises(ValueError, match="column matrix"):
        xpconv.conv2d(x.astype(np.int64), kernel.astype(np.int64), padding="same")
    np.testing.assert_allclose(xpconv.conv2d(x, kernel, padding="same"), expected, rtol=1e-12, atol=1e-12)
