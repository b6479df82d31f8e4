"""Complex data: each gradient is the adjoint of the forward map, and dtypes promote as the standard says.

The values of complex convolutions and their gradients are checked against torch autograd in
test_against_torch, test_nd_and_transposed, test_jax, test_dask and test_layers; here the defining
property of the conjugated gradients, independent of any reference: for the forward map
``A: x -> conv(x, k)``, ``vdot(A x, y) == vdot(x, A^H y)`` with ``A^H y = conv_input_grad(y, k)``,
and the same for the map ``k -> conv(x, k)`` and ``conv_weight_grad``, and for the transposed
convolution and its two gradients.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import METHODS, asarray, assert_close, draw, to_numpy, transposed_cases, winograd_applies
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xpconv


def vdot(a, b) -> complex:
    """sum(conj(a) * b) of arrays of any tested library."""
    return complex(np.vdot(to_numpy(a), to_numpy(b)))


def assert_same(left: complex, right: complex, scale: float, what: str) -> None:
    assert abs(left - right) <= 1e-12 * scale, f"{what}: {left} != {right}"


def term_scale(z_of_absolutes: np.ndarray, x, k, y) -> float:
    """The sum of the absolute values of every product in <Ax, y> (the convolution of |x| with |k|,
    against |y|), and never less than one product: the size the rounding errors scale with."""
    one_term = float(np.abs(x).max() * np.abs(k).max() * np.abs(y).max())
    return max(float(np.sum(z_of_absolutes * np.abs(y))), one_term)


@st.composite
def convolutions(draw_):
    """1-3 spatial axes, every padding form, stride, dilation, groups; small."""
    ndim = draw_(st.integers(1, 3))
    groups = draw_(st.sampled_from([1, 2]))
    c, f = groups * draw_(st.integers(1, 2)), groups * draw_(st.integers(1, 2))
    ksize = tuple(draw_(st.integers(1, 4)) for _ in range(ndim))
    stride = tuple(draw_(st.integers(1, 3)) for _ in range(ndim))
    dilation = tuple(draw_(st.integers(1, 2)) for _ in range(ndim))
    padding = draw_(st.sampled_from(["valid", "same", "full", 1, tuple((1, 2) for _ in range(ndim))]))
    size = tuple(d * (k - 1) + 1 + draw_(st.integers(0, 4)) for k, d in zip(ksize, dilation))
    return (draw_(st.integers(1, 2)), c, size, f, ksize, stride, padding, dilation, groups)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=25)
@given(case=convolutions(), seed=st.integers(0, 2**32 - 1))
def test_gradients_are_the_adjoints_of_the_convolution(eager_xp, case, seed: int) -> None:
    n, c, size, f, ksize, stride, padding, dilation, groups = case
    params = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    rng = np.random.default_rng(seed)
    x, kernel = draw(rng, (n, c, *size), "complex128"), draw(rng, (f, c // groups, *ksize), "complex128")
    shape = xpconv.conv_output_shape(x.shape, kernel.shape, stride=stride, padding=padding, dilation=dilation)
    y = draw(rng, shape, "complex128")
    X, K, Y = (asarray(a, eager_xp) for a in (x, kernel, y))
    for method in METHODS:
        if method == "winograd" and not (len(size) == 2 and winograd_applies(ksize, stride)):
            continue
        forward = vdot(xpconv.conv(X, K, method=method, **params), Y)
        scale = term_scale(xpconv.conv(np.abs(x), np.abs(kernel), method="direct", **params), x, kernel, y)
        adjoint_x = xpconv.conv_input_grad(Y, K, x.shape, method=method, **params)
        adjoint_k = xpconv.conv_weight_grad(Y, X, kernel.shape, method=method, **params)
        assert_same(forward, vdot(X, adjoint_x), scale, f"<Ax, y> and <x, A^H y> ({method})")
        assert_same(forward, vdot(K, adjoint_k), scale, f"<Ak, y> and <k, A^H y> ({method})")
        dx, dk, _ = xpconv.conv_backward(Y, X, K, method=method, **params)  # the same two adjoints
        assert_same(vdot(X, dx), vdot(X, adjoint_x), scale, f"conv_backward's dx ({method})")
        assert_same(vdot(K, dk), vdot(K, adjoint_k), scale, f"conv_backward's dkernel ({method})")


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=15)
@given(case=transposed_cases(), seed=st.integers(0, 2**32 - 1), method=st.sampled_from(["auto", "direct", "fft"]))
def test_transposed_gradients_are_adjoints(eager_xp, case, seed: int, method: str) -> None:
    n, c_in, size, f, ksize, stride, padding, output_padding, dilation, groups = case
    params = dict(stride=stride, padding=padding, output_padding=output_padding, dilation=dilation, groups=groups)
    rng = np.random.default_rng(seed)
    x, kernel = draw(rng, (n, c_in, *size), "complex128"), draw(rng, (c_in, f // groups, *ksize), "complex128")
    z = xpconv.conv_transpose(x, kernel, **params)
    y = draw(rng, z.shape, "complex128")
    X, K, Y = (asarray(a, eager_xp) for a in (x, kernel, y))
    forward = vdot(xpconv.conv_transpose(X, K, method=method, **params), Y)
    dx, dk, _ = xpconv.conv_transpose_backward(Y, X, K, method=method, **params)
    absolutes = xpconv.conv_transpose(np.abs(x), np.abs(kernel), method="direct", **params)
    scale = term_scale(absolutes, x, kernel, y)
    assert_same(forward, vdot(X, dx), scale, "<Tx, y> and <x, dx>")
    assert_same(forward, vdot(K, dk), scale, "<Tk, y> and <k, dk>")


@pytest.mark.parametrize(
    ("x_dtype", "kernel_dtype", "result"),
    [
        ("float32", "complex64", "complex64"),
        ("complex64", "float32", "complex64"),
        ("float64", "complex64", "complex128"),
        ("float32", "complex128", "complex128"),
        ("complex64", "complex128", "complex128"),
    ],
)
def test_real_and_complex_promote_as_the_standard_says(eager_xp, x_dtype, kernel_dtype, result) -> None:
    rng = np.random.default_rng(0)
    x, kernel = draw(rng, (2, 2, 6, 6), x_dtype), draw(rng, (3, 2, 3, 3), kernel_dtype)
    wide = x.astype(np.complex128), kernel.astype(np.complex128)
    expected = xpconv.conv2d(*wide, padding=1)  # NumPy complex128 (tested against torch elsewhere)
    dz = draw(rng, expected.shape, result)
    expected_grads = xpconv.conv2d_backward(dz.astype(np.complex128), *wide, padding=1)
    X, K, DZ = asarray(x, eager_xp), asarray(kernel, eager_xp), asarray(dz, eager_xp)
    dtype = getattr(eager_xp, result)
    tol = 1e-12 if result == "complex128" else 1e-5
    assert_close(xpconv.conv2d(X, K, padding=1), expected, xp=eager_xp, dtype=dtype, tol=tol, what="z")
    for got, want, what in zip(xpconv.conv2d_backward(DZ, X, K, padding=1), expected_grads, ("dx", "dk", "db")):
        assert_close(got, want, xp=eager_xp, dtype=dtype, tol=tol, what=what)


def test_integers_and_complex_do_not_mix(eager_xp) -> None:
    x = asarray(np.ones((1, 2, 4, 4), dtype=np.int64), eager_xp)
    kernel = asarray(np.ones((1, 2, 3, 3), dtype=np.complex64), eager_xp)
    with pytest.raises(TypeError, match=r"integer and complex arrays do not mix \(x: .*int64, kernel: .*complex64\)"):
        xpconv.conv2d(x, kernel)
    with pytest.raises(TypeError, match=r"integer and complex arrays do not mix"):
        xpconv.conv2d_backward(asarray(np.ones((1, 1, 2, 2), dtype=np.complex64), eager_xp), x, kernel)
