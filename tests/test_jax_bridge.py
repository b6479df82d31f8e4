"""xpconv.jax: lax.conv_general_dilated's drop-in and xpconv's signatures as custom_vjp functions.

References: ``lax.conv_general_dilated`` and ``jax.vjp`` of it (JAX's complex convention), and the
finite differences of ``jax.test_util.check_grads`` (second order, reverse mode).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from helpers import installed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.skipif(not installed("jax"), reason="jax is not installed")
if installed("jax"):
    import jax
    import jax.numpy as jnp
    from jax import lax
    from jax.test_util import check_grads

    import xpconv.jax as xj

METHODS = ("auto", "direct", "fft", "native")
SPATIAL = "DHW"


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


def _array(rng, shape, complex_data: bool):
    values = rng.standard_normal(shape)
    if complex_data:
        values = values + 1j * rng.standard_normal(shape)
    return jnp.asarray(values)


def _assert_close(actual, desired, what: str, tol: float = 1e-12) -> None:
    assert isinstance(actual, jax.Array), f"{what}: a {type(actual)}"
    assert actual.dtype == desired.dtype, f"{what}: dtype {actual.dtype}, not {desired.dtype}"
    assert actual.shape == desired.shape, f"{what}: shape {actual.shape}, not {desired.shape}"
    scale = max(float(jnp.max(jnp.abs(desired), initial=0.0)), 1.0)
    error = float(jnp.max(jnp.abs(actual - desired), initial=0.0)) / scale
    assert error <= tol, f"{what}: relative error {error:.3g} > {tol:g}"


@st.composite
def lax_cases(draw):
    """Arguments of lax.conv_general_dilated: rank, layout, strides, every padding form, both dilations, groups."""
    ndim = draw(st.integers(1, 3))
    groups = draw(st.sampled_from([1, 1, 2]))
    c, f = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    ksize = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    rhs_dilation = tuple(draw(st.integers(1, 2)) for _ in range(ndim))
    transposed = draw(st.booleans())
    lhs_dilation = tuple(draw(st.integers(1, 3)) for _ in range(ndim)) if transposed else None
    strides = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    size = tuple(d * (k - 1) + 1 + draw(st.integers(0, 4 if ndim == 1 else 2)) for k, d in zip(ksize, rhs_dilation))
    if transposed or draw(st.booleans()):
        reach = [d * (k - 1) for k, d in zip(ksize, rhs_dilation)]
        padding: object = tuple((draw(st.integers(-1, r + 1)), draw(st.integers(-1, r + 1))) for r in reach)
    else:
        padding = draw(st.sampled_from(["VALID", "SAME", "SAME_LOWER"]))
    spatial = SPATIAL[-ndim:]
    channels_last = draw(st.booleans())
    numbers = (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C") if channels_last else None
    lhs = (draw(st.integers(1, 2)), *size, c) if channels_last else (draw(st.integers(1, 2)), c, *size)
    rhs = (*ksize, c // groups, f) if channels_last else (f, c // groups, *ksize)
    return (
        lhs,
        rhs,
        {
            "window_strides": strides,
            "padding": padding,
            "lhs_dilation": lhs_dilation,
            "rhs_dilation": rhs_dilation,
            "dimension_numbers": numbers,
            "feature_group_count": groups,
        },
    )


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=30)
@given(case=lax_cases(), method=st.sampled_from(METHODS), complex_data=st.booleans(), seed=st.integers(0, 99))
def test_conv_general_dilated_matches_lax_forward_and_vjp(case, method: str, complex_data: bool, seed: int) -> None:
    lhs_shape, rhs_shape, arguments = case
    rng = np.random.default_rng(seed)
    x, w = _array(rng, lhs_shape, complex_data), _array(rng, rhs_shape, complex_data)

    def theirs(x, w):
        return lax.conv_general_dilated(x, w, precision=lax.Precision.HIGHEST, **arguments)

    try:
        expected = theirs(x, w)
    except (ValueError, TypeError):  # a padding that leaves no output: refused by both
        with pytest.raises(ValueError):
            xj.conv_general_dilated(x, w, method=method, **arguments)
        return
    if 0 in expected.shape:
        return

    def ours(x, w):
        return xj.conv_general_dilated(x, w, method=method, **arguments)

    _assert_close(jax.jit(ours)(x, w), expected, f"forward ({method})")
    ct = _array(rng, expected.shape, complex_data)
    for name, got, want in zip(("dlhs", "drhs"), jax.vjp(ours, x, w)[1](ct), jax.vjp(theirs, x, w)[1](ct)):
        _assert_close(got, want, f"{name} ({method})")


@pytest.mark.parametrize("complex_data", [False, True])
@pytest.mark.parametrize("method", METHODS)
def test_second_order_under_jit_and_vmap(method: str, complex_data: bool) -> None:
    rng = np.random.default_rng(0)
    x, w = _array(rng, (3, 2, 4, 7, 6), complex_data), _array(rng, (6, 2, 3, 2), complex_data)
    strided = functools.partial(xj.conv_general_dilated, window_strides=(2, 1), padding="SAME", rhs_dilation=(1, 2),
                                feature_group_count=2, method=method)  # fmt: skip
    check_grads(jax.jit(strided), (x[0], w), order=2, modes=["rev"])
    check_grads(jax.jit(jax.vmap(strided, (0, None))), (x, w), order=2, modes=["rev"])
    transposed = functools.partial(xj.conv_general_dilated, window_strides=(1, 1), padding=((1, 2), (2, 0)),
                                   lhs_dilation=(2, 3), feature_group_count=2, method=method)  # fmt: skip
    check_grads(jax.jit(transposed), (x[0], w), order=2, modes=["rev"])
    ws = _array(rng, (3, 6, 2, 3, 2), complex_data)
    mapped = jax.vmap(lambda w: strided(x[0], w))(ws)
    _assert_close(mapped, jnp.stack([strided(x[0], w) for w in ws]), f"vmap over the kernel ({method})")


@pytest.mark.parametrize("method", METHODS)
def test_xpconv_signatures(method: str) -> None:
    """conv* and conv_transpose* with xpconv's options, against lax (channels-last and per-side padding too)."""
    rng = np.random.default_rng(1)
    x, w, b = _array(rng, (2, 9, 8, 4), False), _array(rng, (6, 2, 3, 2), False), _array(rng, (6,), False)
    z = xj.conv2d(x, w, b, padding=((1, 0), (2, 1)), groups=2, layout="channels_last", method=method)
    expected = lax.conv_general_dilated(x, jnp.transpose(w, (2, 3, 1, 0)), (1, 1), ((1, 0), (2, 1)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=2,
                                        precision=lax.Precision.HIGHEST) + b  # fmt: skip
    _assert_close(z, expected, f"conv2d channels-last ({method})")
    v = _array(rng, (2, 4, 5), False)
    k = _array(rng, (4, 3, 3), False)
    zt = xj.conv_transpose1d(v, k, stride=2, padding=1, output_padding=1, method=method)
    # torch's conv_transpose as lax: the input dilated by the stride, the kernel flipped and transposed
    expected_t = lax.conv_general_dilated(v, jnp.flip(jnp.swapaxes(k, 0, 1), 2), (1,), ((1, 2),), lhs_dilation=(2,),
                                          precision=lax.Precision.HIGHEST)  # fmt: skip
    _assert_close(zt, expected_t, f"conv_transpose1d ({method})")
    check_grads(lambda v, k: xj.conv_transpose1d(v, k, stride=2, padding=1, method=method), (v, k), 2, modes=["rev"])
    with pytest.raises(TypeError, match=r"takes JAX \(or NumPy\) arrays; x is a list"):
        xj.conv2d([[[[1.0]]]], w[:, :1])


def test_refusals() -> None:
    x, w = jnp.ones((1, 2, 5, 5)), jnp.ones((2, 2, 3, 3))
    with pytest.raises(ValueError, match="batch_group_count must be 1"):
        xj.conv_general_dilated(x, w, (1, 1), "VALID", batch_group_count=2)
    with pytest.raises(ValueError, match="string padding with lhs_dilation"):
        xj.conv_general_dilated(x, w, (1, 1), "SAME", lhs_dilation=(2, 2))
    with pytest.raises(ValueError, match="method must be one of"):
        xj.conv_general_dilated(x, w, (1, 1), "VALID", method="xla")
    with pytest.raises(ValueError, match="leaves no output"):
        xj.conv_general_dilated(x[..., :1, :1], w, (1, 1), ((-2, 0), (0, 0)), lhs_dilation=(2, 2))


@pytest.mark.skipif(not installed("flax"), reason="flax is not installed")
@pytest.mark.parametrize("method", ["auto", "fft", "direct"])
def test_flax_layers_take_it_as_their_convolution(method: str) -> None:
    """nnx.Conv and linen.Conv given conv_general_dilated=: outputs and gradients of the default layer."""
    from flax import linen, nnx

    ours = functools.partial(xj.conv_general_dilated, method=method)
    x = _array(np.random.default_rng(2), (2, 12, 12, 3), False)
    for options in [
        {"kernel_size": (7, 7), "strides": 2, "padding": "SAME"},
        {"kernel_size": (3, 3), "padding": ((1, 0), (2, 1)), "kernel_dilation": 2, "feature_group_count": 3},
        {"kernel_size": (5, 5), "padding": "CIRCULAR"},
    ]:
        default = nnx.Conv(3, 6, rngs=nnx.Rngs(0), param_dtype=jnp.float64, **options)
        layer = nnx.Conv(3, 6, rngs=nnx.Rngs(0), param_dtype=jnp.float64, conv_general_dilated=ours, **options)
        _assert_close(layer(x), default(x), f"nnx {options}")
        grads = [nnx.grad(lambda m: (m(x) ** 2).sum())(m) for m in (layer, default)]
        _assert_close(grads[0].kernel.value, grads[1].kernel.value, f"nnx kernel gradient {options}")
        theirs = linen.Conv(6, param_dtype=jnp.float64, **options)
        mine = linen.Conv(6, param_dtype=jnp.float64, conv_general_dilated=ours, **options)
        params = theirs.init(jax.random.key(0), x)
        _assert_close(mine.apply(params, x), theirs.apply(params, x), f"linen {options}")
        loss = [jax.jit(jax.grad(lambda p, m=m: (m.apply(p, x) ** 2).sum())) for m in (mine, theirs)]
        for got, want in zip(jax.tree.leaves(loss[0](params)), jax.tree.leaves(loss[1](params))):
            _assert_close(got, want, f"linen gradient {options}")
