"""JAX: arrays with no strides and no in-place writes take the generic path, also under jax.jit."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import (
    TRANSPOSED,
    assert_close,
    draw,
    explicit_pads,
    geometries,
    torch_reference,
    torch_transpose_output_shape,
    torch_transpose_reference,
    transposed_cases,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import xpconv

jax = pytest.importorskip("jax", reason="JAX is not installed (extra 'jax')")
jax.config.update("jax_enable_x64", True)
jnp = jax.numpy


@settings(max_examples=10)
@given(
    case=geometries(),
    seed=st.integers(0, 2**32 - 1),
    method=st.sampled_from(["auto", "direct", "dilate", "fft"]),
    dtype=st.sampled_from(["float64", "complex128"]),
)
def test_jitted_conv2d_matches_torch(case, seed: int, method: str, dtype: str) -> None:
    n, c, h, w, f, ksize, stride, padding, dilation, groups = case
    params = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    rng = np.random.default_rng(seed)
    x, kernel = draw(rng, (n, c, h, w), dtype), draw(rng, (f, c // groups, *ksize), dtype)
    z_shape = xpconv.conv2d(x, kernel, **params).shape
    dz = draw(rng, z_shape, dtype)
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
    pads = explicit_pads(padding, (h, w), ksize, pair(stride), pair(dilation))
    ref = torch_reference(x, kernel, dz, stride=stride, pads=pads, dilation=dilation, groups=groups)

    @jax.jit
    def everything(x_, k_, dz_):
        return (xpconv.conv2d(x_, k_, **params), *xpconv.conv2d_backward(dz_, x_, k_, method=method, **params))

    z, dx, dk, db = everything(jnp.asarray(x), jnp.asarray(kernel), jnp.asarray(dz))
    assert isinstance(z, jax.Array)
    for got, expected in zip((z, dx, dk, db), (ref.z, ref.dx, ref.dkernel, ref.dbias_tied)):
        assert_close(got, expected, xp=jnp, floor=1.0)  # floor: one product of the normal inputs


def check_jitted_transposed(case, seed: int, dtype: str = "float64", method: str = "auto") -> None:
    n, c_in, size, f, ksize, stride, padding, output_padding, dilation, groups = case
    rng = np.random.default_rng(seed)
    x, kernel = draw(rng, (n, c_in, *size), dtype), draw(rng, (c_in, f // groups, *ksize), dtype)
    params = dict(stride=stride, padding=padding, output_padding=output_padding, dilation=dilation, groups=groups)
    dz = draw(rng, torch_transpose_output_shape(x.shape, kernel.shape, **params), dtype)
    ref = torch_transpose_reference(x, kernel, dz, **params)

    @jax.jit
    def everything(x_, k_, dz_):
        return (
            xpconv.conv_transpose(x_, k_, method=method, **params),
            *xpconv.conv_transpose_backward(dz_, x_, k_, method=method, **params),
        )

    results = everything(jnp.asarray(x), jnp.asarray(kernel), jnp.asarray(dz))
    for got, expected in zip(results, (ref.z, ref.dx, ref.dkernel, ref.dbias_tied)):
        assert_close(got, expected, xp=jnp, floor=1.0)


@pytest.mark.parametrize("case", TRANSPOSED[:4], ids=[f"{len(c[2])}d-{i}" for i, c in enumerate(TRANSPOSED[:4])])
def test_jitted_conv_transpose(case) -> None:
    check_jitted_transposed(case, seed=0)


@pytest.mark.parametrize("case", TRANSPOSED[:4:3], ids=["1d-0", "2d-3"])
def test_jitted_complex_conv_transpose_by_fft(case) -> None:
    check_jitted_transposed(case, seed=1, dtype="complex128", method="fft")


@settings(max_examples=6)
@given(case=transposed_cases(), seed=st.integers(0, 2**32 - 1), dtype=st.sampled_from(["float64", "complex128"]))
def test_jitted_drawn_conv_transpose(case, seed: int, dtype: str) -> None:
    check_jitted_transposed(case, seed, dtype)


def test_jitted_conv3d_channels_last() -> None:
    rng = np.random.default_rng(3)
    x, kernel = rng.standard_normal((2, 3, 5, 4, 6)), rng.standard_normal((4, 3, 2, 3, 2))
    params = dict(stride=(1, 2, 1), padding=1, dilation=(2, 1, 1))
    z = xpconv.conv3d(x, kernel, **params)
    dz = rng.standard_normal(z.shape)
    ref = torch_reference(
        x, kernel, dz, stride=params["stride"], pads=((1, 1),) * 3, dilation=params["dilation"], groups=1
    )
    last = (0, 2, 3, 4, 1)

    @jax.jit
    def everything(x_, k_, dz_):
        return (
            xpconv.conv3d(x_, k_, layout="channels_last", **params),
            *xpconv.conv3d_backward(dz_, x_, k_, layout="channels_last", **params),
        )

    zl, dxl, dk, db = everything(*(jnp.asarray(a) for a in (np.transpose(x, last), kernel, np.transpose(dz, last))))
    assert_close(zl, np.transpose(ref.z, last), xp=jnp)
    assert_close(dxl, np.transpose(ref.dx, last), xp=jnp)
    assert_close(dk, ref.dkernel, xp=jnp)
    assert_close(db, ref.dbias_tied, xp=jnp)
