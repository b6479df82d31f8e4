"""Every public convolution function against torch autograd in float64, on every backend."""

from __future__ import annotations

import numpy as np
import pytest
from array_api_compat import array_namespace
from conftest import on_device, selected
from helpers import (
    WINOGRAD_REFUSAL,
    asarray,
    assert_close,
    draw,
    explicit_pads,
    geometries,
    methods_of,
    torch_reference,
    wide_winograd_geometries,
    winograd_applies,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xpconv

TOLERANCE = {"float64": 1e-12, "float32": 1e-5, "complex128": 1e-12, "complex64": 1e-5}
DTYPES = list(TOLERANCE)

# (N, C, H, W, F, kernel, stride, padding, dilation, groups)
CASES = [
    (2, 3, 7, 7, 4, (3, 3), 1, "valid", 1, 1),
    (2, 3, 7, 7, 4, (3, 3), 1, "same", 1, 1),
    (2, 2, 9, 8, 3, (3, 2), (2, 3), "same", (1, 2), 1),
    (1, 1, 36, 47, 2, (5, 8), (7, 4), "same", 1, 1),  # the tutorial's geometry, smaller batch
    (2, 4, 8, 8, 6, (3, 3), 2, 1, 1, 2),
    (2, 4, 8, 8, 4, (3, 3), 1, 1, 1, 4),  # depthwise
    (2, 4, 9, 9, 8, (3, 3), 2, (1, 0), 2, 4),  # depthwise, channel multiplier 2
    (3, 2, 6, 6, 5, (1, 1), 1, 0, 1, 1),  # pointwise
    (2, 2, 10, 10, 3, (1, 1), 3, "valid", 1, 1),  # 1x1 kernel, stride larger than the kernel
    (2, 3, 11, 11, 2, (2, 2), 4, "valid", 1, 1),  # stride > kernel: untouched input rows
    (1, 2, 12, 13, 2, (3, 3), (4, 3), ((0, 2), (1, 0)), (2, 1), 1),
    (2, 2, 5, 5, 2, (5, 5), 1, "valid", 1, 1),  # kernel the size of the input
    (2, 2, 4, 4, 2, (3, 3), 2, 3, 1, 1),  # padding larger than the kernel reach
    (1, 6, 9, 7, 6, (2, 3), (3, 2), "same", (3, 2), 3),
]
# 3x3 at stride 1, where "winograd" computes: sizes off the 4x4 tile, every padding form, groups,
# depthwise with a channel multiplier, dilation (phase sub-images), padding beyond the kernel's reach
CASES += [
    (2, 3, 9, 11, 5, (3, 3), 1, ((2, 0), (1, 3)), 1, 1),
    (2, 4, 13, 6, 6, (3, 3), 1, "same", (2, 3), 2),
    (3, 3, 10, 9, 6, (3, 3), 1, 1, 1, 3),
    (1, 2, 3, 3, 2, (3, 3), 1, "valid", 1, 1),
    (2, 2, 5, 4, 3, (3, 3), 1, 3, 1, 1),
    (2, 4, 12, 14, 4, (3, 3), 1, (2, 1), 2, 4),
]
# (padded size - dilated kernel) mod stride = 0, 1, 2, 3 on both axes at stride 4
CASES += [(2, 2, 3 + 4 * 2 + r, 3 + 4 + r, 3, (3, 3), 4, "valid", 1, 1) for r in range(4)]


def check_case(xp, case, dtype: str, seed: int) -> None:
    n, c, h, w, f, ksize, stride, padding, dilation, groups = case
    rng = np.random.default_rng(seed)
    x = draw(rng, (n, c, h, w), dtype)
    kernel = draw(rng, (f, c // groups, *ksize), dtype)
    bias = draw(rng, f, dtype)
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
    pads = explicit_pads(padding, (h, w), ksize, pair(stride), pair(dilation))
    out = [
        (size + before + after - d * (k - 1) - 1) // s + 1
        for size, (before, after), k, s, d in zip((h, w), pads, ksize, pair(stride), pair(dilation))
    ]
    untied = draw(rng, (f, *out), dtype)
    dz = draw(rng, (n, f, *out), dtype)
    ref = torch_reference(x, kernel, dz, stride=stride, pads=pads, dilation=dilation, groups=groups)
    tol = TOLERANCE[dtype]
    # db sums dz; with few filters the sum can cancel to near zero, so measure against sum |dz|
    bias_scale = float(np.max(np.abs(dz).astype(np.float64).sum(axis=(0, 2, 3)), initial=0.0))
    geometry = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    X, K, B, U, DZ = (asarray(a, xp) for a in (x, kernel, bias, untied, dz))

    def close(actual, expected, what: str, scale: float | None = None) -> None:
        # floor: one product of the standard-normal inputs (a result no tap reaches is 0 exactly)
        dtype_ = getattr(xp, dtype)
        assert_close(actual, expected, xp=xp, dtype=dtype_, tol=tol, scale=scale, what=what, floor=1.0)

    z = xpconv.conv2d(X, K, B, **geometry)
    close(z, ref.z + bias[:, None, None], "z (tied bias)")
    shape_params = dict(stride=stride, padding=padding, dilation=dilation)
    assert xpconv.conv_output_shape(x.shape, kernel.shape, **shape_params) == ref.z.shape  # torch's
    close(xpconv.conv2d(X, K, U, **geometry), ref.z + untied, "z (untied bias)")
    close(xpconv.conv2d(X, K, **geometry), ref.z, "z (no bias)")

    for method in methods_of(xp, dtype):
        if method == "winograd" and not winograd_applies(ksize, stride):
            with pytest.raises(ValueError, match=WINOGRAD_REFUSAL):
                xpconv.conv2d(X, K, method=method, **geometry)
            with pytest.raises(ValueError, match=WINOGRAD_REFUSAL):
                xpconv.conv2d_backward(DZ, X, K, method=method, **geometry)
            continue
        close(xpconv.conv2d(X, K, B, method=method, **geometry), ref.z + bias[:, None, None], method)
        dx, dk, db = xpconv.conv2d_backward(DZ, X, K, method=method, **geometry)
        close(dx, ref.dx, f"dx ({method})")
        close(dk, ref.dkernel, f"dkernel ({method})")
        close(db, ref.dbias_tied, f"dbias ({method})", scale=bias_scale)
    _, _, db_untied = xpconv.conv2d_backward(DZ, X, K, bias="untied", **geometry)
    close(db_untied, ref.dbias_untied, "dbias untied")
    # the forward's bias array itself: its shape says tied or untied
    close(xpconv.conv2d_backward(DZ, X, K, bias=B, **geometry)[2], ref.dbias_tied, "dbias of B", scale=bias_scale)
    close(xpconv.conv2d_backward(DZ, X, K, bias=U, **geometry)[2], ref.dbias_untied, "dbias of U")
    assert xpconv.conv2d_backward(DZ, X, K, bias=None, **geometry)[2] is None
    close(xpconv.conv2d_input_grad(DZ, K, x.shape, **geometry), ref.dx, "conv2d_input_grad")
    close(xpconv.conv2d_weight_grad(DZ, X, kernel.shape, **geometry), ref.dkernel, "conv2d_weight_grad")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_table(eager_xp, case, dtype: str) -> None:
    check_case(eager_xp, case, dtype, seed=CASES.index(case))


# JAX, eagerly: every one of its operations compiles anew for each new shape (7-10 s a case), so it
# runs every third case of the table here; test_jax.py runs drawn geometries, complex data and
# every method under jax.jit.
JAX_CASES = CASES[::3]


@pytest.mark.skipif(not selected("jax"), reason="XPCONV_TEST_BACKENDS leaves JAX out")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", JAX_CASES, ids=[f"case{CASES.index(c)}" for c in JAX_CASES])
def test_table_on_jax_eagerly(case, dtype: str) -> None:
    jax = pytest.importorskip("jax", reason="JAX is not installed (extra 'jax')")

    jax.config.update("jax_enable_x64", True)  # the float64 comparisons need it
    with on_device("jax"):
        check_case(array_namespace(jax.numpy.zeros(1)), case, dtype, seed=CASES.index(case))


@pytest.mark.parametrize("dtype", ["complex128", "complex64"])
@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_table_complex(eager_xp, case, dtype: str) -> None:
    """Complex data (JAX's complex cases run under jax.jit in test_jax.py: eagerly, each of its
    operations compiles anew, and four dtypes of this table took it 8 minutes)."""
    check_case(eager_xp, case, dtype, seed=CASES.index(case))


COMPLEX = {"float64": "complex128", "float32": "complex64"}


@pytest.mark.parametrize("precision", ["float64", "float32"])
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # the xp fixture is stateless
@given(case=geometries(), seed=st.integers(0, 2**32 - 1), complex_data=st.booleans())
def test_drawn_geometries(eager_xp, case, precision: str, seed: int, complex_data: bool) -> None:
    """Drawn geometries, real or complex data (drawn, so that complex data costs no extra examples)."""
    check_case(eager_xp, case, COMPLEX[precision] if complex_data else precision, seed)


@pytest.mark.parametrize("precision", ["float64", "float32"])
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=geometries(kernel_size=(3, 3), stride=(1, 1)), seed=st.integers(0, 2**32 - 1), complex_data=st.booleans())
def test_drawn_winograd_geometries(eager_xp, case, precision: str, seed: int, complex_data: bool) -> None:
    """3x3 at stride 1: every method, "winograd" included, on drawn padding, dilation, groups and sizes."""
    check_case(eager_xp, case, COMPLEX[precision] if complex_data else precision, seed)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=8)
@given(case=wide_winograd_geometries(), seed=st.integers(0, 2**32 - 1))
def test_drawn_layers_where_auto_takes_winograd(eager_xp, case, seed: int) -> None:
    """16 or more channels per group: "auto" takes Winograd here (asserted), on every backend."""
    from xpconv import _gradients
    from xpconv._geometry import conv_geometry

    n, c, h, w, f, ksize, _stride, padding, _dilation, groups = case
    geometry = conv_geometry((n, c, h, w), (f, c // groups, *ksize), ndim=2, padding=padding, groups=groups)
    applicable = ["winograd", "fft", "dilate", "direct"]
    assert _gradients._own_rule("forward", geometry, applicable) == "winograd"
    check_case(eager_xp, case, "float64", seed)
