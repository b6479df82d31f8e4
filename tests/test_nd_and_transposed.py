"""1-D and 3-D convolutions, channels-last data and transposed convolutions against torch autograd (float64)."""

from __future__ import annotations

import numpy as np
import pytest
from array_api_compat import array_namespace
from conftest import on_device, selected
from helpers import (
    METHODS,
    TRANSPOSED,
    WINOGRAD_REFUSAL,
    asarray,
    assert_close,
    draw,
    explicit_pads,
    nd_cases,
    torch_reference,
    torch_transpose_output_shape,
    torch_transpose_reference,
    transposed_cases,
    winograd_applies,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xpconv

TOL = 1e-12
WRAPPERS = {
    1: (xpconv.conv1d, xpconv.conv1d_backward, xpconv.conv1d_input_grad, xpconv.conv1d_weight_grad),
    2: (xpconv.conv2d, xpconv.conv2d_backward, xpconv.conv2d_input_grad, xpconv.conv2d_weight_grad),
    3: (xpconv.conv3d, xpconv.conv3d_backward, xpconv.conv3d_input_grad, xpconv.conv3d_weight_grad),
}

# (N, C, spatial size, F, kernel size, stride, padding, dilation, groups)
CASES = [
    (2, 3, (11,), 4, (3,), 2, "same", 1, 1),
    (2, 4, (9,), 4, (2,), 1, ((2, 1),), 2, 2),
    (3, 2, (7,), 6, (3,), 3, 1, 1, 2),
    (2, 2, (8, 7), 3, (3, 2), (2, 1), ((1, 0), (0, 2)), (1, 2), 1),
    (2, 2, (5, 6, 4), 3, (2, 3, 2), (1, 2, 1), 1, 1, 1),
    (1, 4, (6, 5, 5), 4, (3, 1, 2), 2, "same", (1, 1, 2), 4),
    (2, 3, (4, 4, 4), 3, (3, 3, 3), 1, "valid", 1, 1),
    (1, 2, (7, 5, 6), 4, (2, 2, 2), (3, 2, 4), (0, 1, (2, 0)), 1, 2),
    (2, 4, (9, 6), 4, (3, 3), 1, ((1, 2), (0, 1)), (2, 1), 2),  # Winograd's, channels-last too
    (2, 3, (7, 10), 3, (3, 3), 1, "same", 1, 3),
]


def per_axis(value, ndim):
    return (value,) * ndim if isinstance(value, int) else tuple(value)


def check_conv(xp, case, seed: int, dtype: str = "float64") -> None:
    n, c, size, f, ksize, stride, padding, dilation, groups = case
    ndim = len(size)
    rng = np.random.default_rng(seed)
    x = draw(rng, (n, c, *size), dtype)
    kernel = draw(rng, (f, c // groups, *ksize), dtype)
    pads = explicit_pads(padding, size, ksize, per_axis(stride, ndim), per_axis(dilation, ndim))
    out = tuple(
        (m + b + a - d * (k - 1) - 1) // s + 1
        for m, (b, a), k, s, d in zip(size, pads, ksize, per_axis(stride, ndim), per_axis(dilation, ndim))
    )
    dz = draw(rng, (n, f, *out), dtype)
    ref = torch_reference(x, kernel, dz, stride=stride, pads=pads, dilation=dilation, groups=groups)
    params = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    X, K, DZ = asarray(x, xp), asarray(kernel, xp), asarray(dz, xp)

    def close(actual, expected, what: str) -> None:
        # floor: one product of the standard-normal inputs (a result no tap reaches is 0 exactly)
        assert_close(actual, expected, xp=xp, tol=TOL, what=what, floor=1.0)

    forward, backward, input_grad, weight_grad = WRAPPERS[ndim]

    close(xpconv.conv(X, K, **params), ref.z, "conv")
    # conv_output_shape from plain ints (groups follow from the shapes), against torch's output
    shape_params = dict(stride=stride, padding=padding, dilation=dilation)
    assert xpconv.conv_output_shape(x.shape, kernel.shape, **shape_params) == ref.z.shape
    last_shape = (n, *ref.z.shape[2:], f)
    assert xpconv.conv_output_shape((n, *size, c), kernel.shape, layout="channels_last", **shape_params) == last_shape
    close(forward(X, K, **params), ref.z, f"conv{ndim}d")
    for method in METHODS:
        if method == "winograd" and not (ndim == 2 and winograd_applies(ksize, stride)):
            with pytest.raises(ValueError, match=WINOGRAD_REFUSAL):
                xpconv.conv_backward(DZ, X, K, method=method, **params)
            continue
        close(xpconv.conv(X, K, method=method, **params), ref.z, f"conv {method}")
        dx, dk, db = xpconv.conv_backward(DZ, X, K, method=method, **params)
        close(dx, ref.dx, f"dx {method}")
        close(dk, ref.dkernel, f"dkernel {method}")
        close(db, ref.dbias_tied, f"dbias {method}")
    dx, dk, db = backward(DZ, X, K, bias="untied", **params)
    close(db, ref.dbias_untied, "dbias untied")
    close(input_grad(DZ, K, x.shape, **params), ref.dx, "input_grad")
    close(weight_grad(DZ, X, kernel.shape, **params), ref.dkernel, "weight_grad")

    # channels-last: (N, *spatial, C) in and out, the kernel unchanged
    last = (0, *range(2, ndim + 2), 1)
    XL, DZL = asarray(np.transpose(x, last), xp), asarray(np.transpose(dz, last), xp)
    close(xpconv.conv(XL, K, layout="channels_last", **params), np.transpose(ref.z, last), "z channels-last")
    for method in METHODS if ndim == 2 and winograd_applies(ksize, stride) else ("auto",):
        z = xpconv.conv(XL, K, layout="channels_last", method=method, **params)
        close(z, np.transpose(ref.z, last), f"z channels-last {method}")
        dx, dk, _ = xpconv.conv_backward(DZL, XL, K, layout="channels_last", method=method, **params)
        close(dx, np.transpose(ref.dx, last), f"dx channels-last {method}")
        close(dk, ref.dkernel, f"dkernel channels-last {method}")
    dx, dk, db = xpconv.conv_backward(DZL, XL, K, bias="untied", layout="channels_last", **params)
    close(dx, np.transpose(ref.dx, last), "dx channels-last")
    close(dk, ref.dkernel, "dkernel channels-last")
    close(db, np.transpose(ref.dbias_untied, (*range(1, ndim + 1), 0)), "dbias untied channels-last")
    channels_last_shape = (n, *size, c)
    close(
        xpconv.conv_input_grad(DZL, K, channels_last_shape, layout="channels_last", **params),
        np.transpose(ref.dx, last),
        "input_grad channels-last",
    )
    close(
        xpconv.conv_weight_grad(DZL, XL, kernel.shape, layout="channels_last", **params),
        ref.dkernel,
        "weight_grad channels-last",
    )


@pytest.mark.parametrize("case", CASES, ids=[f"{len(c[2])}d-{i}" for i, c in enumerate(CASES)])
def test_conv_nd(eager_xp, case) -> None:
    check_conv(eager_xp, case, seed=CASES.index(case))


def jax_namespace():
    """JAX's namespace with float64 on, for the eager JAX tests (each case compiles for 6-11 s, so
    they take every third case; test_jax.py runs drawn cases under jax.jit)."""
    jax = pytest.importorskip("jax", reason="JAX is not installed (extra 'jax')")
    jax.config.update("jax_enable_x64", True)
    return array_namespace(jax.numpy.zeros(1))


@pytest.mark.skipif(not selected("jax"), reason="XPCONV_TEST_BACKENDS leaves JAX out")
@pytest.mark.parametrize("case", CASES[::3], ids=[f"{len(c[2])}d-{CASES.index(c)}" for c in CASES[::3]])
def test_conv_nd_on_jax_eagerly(case) -> None:
    with on_device("jax"):
        check_conv(jax_namespace(), case, seed=CASES.index(case))


@pytest.mark.parametrize("case", CASES, ids=[f"{len(c[2])}d-{i}" for i, c in enumerate(CASES)])
def test_conv_nd_complex(eager_xp, case) -> None:
    check_conv(eager_xp, case, seed=CASES.index(case), dtype="complex128")


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=30)
@given(case=nd_cases(), seed=st.integers(0, 2**32 - 1), dtype=st.sampled_from(["float64", "complex128"]))
def test_drawn_1d_and_3d(eager_xp, case, seed: int, dtype: str) -> None:
    """Drawn 1-D and 3-D geometries: every padding form (per-side pairs too), stride, dilation,
    groups; every method and pass, channels-last included."""
    check_conv(eager_xp, case, seed, dtype)


def check_transposed(xp, case, seed: int, dtype: str = "float64") -> None:
    n, c_in, size, f, ksize, stride, padding, output_padding, dilation, groups = case
    rng = np.random.default_rng(seed)
    x = draw(rng, (n, c_in, *size), dtype)
    kernel = draw(rng, (c_in, f // groups, *ksize), dtype)
    params = dict(stride=stride, padding=padding, output_padding=output_padding, dilation=dilation, groups=groups)
    dz = draw(rng, torch_transpose_output_shape(x.shape, kernel.shape, **params), dtype)
    ref = torch_transpose_reference(x, kernel, dz, **params)
    X, K, DZ = asarray(x, xp), asarray(kernel, xp), asarray(dz, xp)
    bias = draw(rng, f, dtype)
    fixed_dims = {1: xpconv.conv_transpose1d, 2: xpconv.conv_transpose2d, 3: xpconv.conv_transpose3d}[len(size)]
    fixed_dims_backward = {
        1: xpconv.conv_transpose1d_backward,
        2: xpconv.conv_transpose2d_backward,
        3: xpconv.conv_transpose3d_backward,
    }[len(size)]

    def close(actual, expected, what: str) -> None:
        assert_close(actual, expected, xp=xp, tol=TOL, what=what, floor=1.0)

    close(xpconv.conv_transpose(X, K, **params), ref.z, "conv_transpose")
    with_bias = ref.z + bias.reshape(-1, *[1] * len(size))
    close(xpconv.conv_transpose(X, K, asarray(bias, xp), **params), with_bias, "bias")
    close(fixed_dims(X, K, asarray(bias, xp), **params), with_bias, f"conv_transpose{len(size)}d")
    dx, dk, db = fixed_dims_backward(DZ, X, K, bias=asarray(bias, xp), **params)  # the bias array: tied
    close(dx, ref.dx, "dx (fixed dims)")
    close(dk, ref.dkernel, "dkernel (fixed dims)")
    close(db, ref.dbias_tied, "dbias (fixed dims, of the bias array)")
    for method in METHODS:
        if method == "winograd" and not (len(size) == 2 and winograd_applies(ksize, stride)):
            with pytest.raises(ValueError, match=WINOGRAD_REFUSAL):
                xpconv.conv_transpose_backward(DZ, X, K, method=method, **params)
            continue
        close(xpconv.conv_transpose(X, K, method=method, **params), ref.z, f"conv_transpose {method}")
        dx, dk, db = xpconv.conv_transpose_backward(DZ, X, K, method=method, **params)
        close(dx, ref.dx, f"dx {method}")
        close(dk, ref.dkernel, f"dkernel {method}")
        close(db, ref.dbias_tied, f"dbias {method}")

    # an untied bias (F, *out): its forward, and its gradient, as the string mode and as the array
    untied = draw(rng, ref.dbias_untied.shape, dtype)
    close(xpconv.conv_transpose(X, K, asarray(untied, xp), **params), ref.z + untied, "untied bias")
    close(xpconv.conv_transpose_backward(DZ, X, K, bias="untied", **params)[2], ref.dbias_untied, "dbias untied")
    untied_grad = xpconv.conv_transpose_backward(DZ, X, K, bias=asarray(untied, xp), **params)[2]
    close(untied_grad, ref.dbias_untied, "dbias of the untied bias array")

    # channels-last: (N, *spatial, C) in and out, the kernel unchanged
    last = (0, *range(2, len(size) + 2), 1)
    XL, DZL = asarray(np.transpose(x, last), xp), asarray(np.transpose(dz, last), xp)
    close(xpconv.conv_transpose(XL, K, layout="channels_last", **params), np.transpose(ref.z, last), "z channels-last")
    dx, dk, db = xpconv.conv_transpose_backward(DZL, XL, K, layout="channels_last", **params)
    close(dx, np.transpose(ref.dx, last), "dx channels-last")
    close(dk, ref.dkernel, "dkernel channels-last")
    close(db, ref.dbias_tied, "dbias channels-last")


@pytest.mark.parametrize("case", TRANSPOSED, ids=[f"{len(c[2])}d-{i}" for i, c in enumerate(TRANSPOSED)])
def test_conv_transpose(eager_xp, case) -> None:
    check_transposed(eager_xp, case, seed=TRANSPOSED.index(case))


@pytest.mark.skipif(not selected("jax"), reason="XPCONV_TEST_BACKENDS leaves JAX out")
@pytest.mark.parametrize("case", TRANSPOSED[::3], ids=[f"{len(c[2])}d-{TRANSPOSED.index(c)}" for c in TRANSPOSED[::3]])
def test_conv_transpose_on_jax_eagerly(case) -> None:
    with on_device("jax"):
        check_transposed(jax_namespace(), case, seed=TRANSPOSED.index(case))


@pytest.mark.parametrize("case", TRANSPOSED, ids=[f"{len(c[2])}d-{i}" for i, c in enumerate(TRANSPOSED)])
def test_conv_transpose_complex(eager_xp, case) -> None:
    check_transposed(eager_xp, case, seed=TRANSPOSED.index(case), dtype="complex128")


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=40)
@given(case=transposed_cases(), seed=st.integers(0, 2**32 - 1), dtype=st.sampled_from(["float64", "complex128"]))
def test_drawn_transposed(eager_xp, case, seed: int, dtype: str) -> None:
    check_transposed(eager_xp, case, seed, dtype)


def test_transposed_errors() -> None:
    x, kernel = np.ones((1, 2, 4)), np.ones((2, 3, 3))
    with pytest.raises(ValueError, match="output_padding must be non-negative and smaller than the stride"):
        xpconv.conv_transpose(x, kernel, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="padding of a transposed convolution must be an int"):
        xpconv.conv_transpose(x, kernel, padding="same")
    with pytest.raises(ValueError, match=r"kernel must be \(C_in, F // groups, \*k\) with C_in = 2"):
        xpconv.conv_transpose(x, np.ones((3, 3, 3)))
    with pytest.raises(ValueError, match="dz must have the transposed convolution's output shape"):
        xpconv.conv_transpose_backward(np.ones((1, 3, 5)), x, kernel)
    with pytest.raises(ValueError, match="layout must be"):
        xpconv.conv(x, kernel[:1, :2], layout="NHWC")
    with pytest.raises(ValueError, match=r"x must be 3-D \(N, 1 spatial axes, C\) for layout='channels_last'"):
        xpconv.conv1d(np.ones((2, 4)), kernel[:1, :2], layout="channels_last")
