"""Winograd F(4x4, 3x3): exact transforms, float32 accuracy on the benchmark layers, integers, JAX and Dask.

Value checks of every pass on every xp are in test_against_torch.py and test_nd_and_transposed.py
(``"winograd"`` is one of their methods); this file covers what is particular to the algorithm.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from array_api_compat import array_namespace
from helpers import NUMPY, assert_close, explicit_pads, torch_reference
from hypothesis import given, settings
from hypothesis import strategies as st

import xpconv
from xpconv._winograd import transform_matrices
from xpconv.tools.suites import LAYERS

# Lavin & Gray (2016), F(2x2, 3x3) and F(4x4, 3x3), as printed there (rows of B^T, G, A^T).
LAVIN = {
    2: (
        [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
        [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]],
        [[1, 1, 1, 0], [0, 1, -1, -1]],
    ),
    4: (
        [
            [4, 0, -5, 0, 1, 0],
            [0, -4, -4, 1, 1, 0],
            [0, 4, -4, -1, 1, 0],
            [0, -2, -1, 2, 1, 0],
            [0, 2, -1, -2, 1, 0],
            [0, 4, 0, -5, 0, 1],
        ],
        [
            [1 / 4, 0, 0],
            [-1 / 6, -1 / 6, -1 / 6],
            [-1 / 6, 1 / 6, -1 / 6],
            [1 / 24, 1 / 12, 1 / 6],
            [1 / 24, -1 / 12, 1 / 6],
            [0, 0, 1],
        ],
        [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
    ),
}


@pytest.mark.parametrize("m", [2, 4])
def test_transforms_are_lavins(m: int) -> None:
    """The same algorithm as Lavin's: each transform index ``j`` contributes the same rank-1 term
    ``A^T[:, j] (x) G[j] (x) B^T[j]`` (a sign or scale may move between the three factors)."""

    def terms(bt, g, at):
        return np.einsum("ij,jk,jl->jikl", *(np.array(m, dtype=float) for m in (at, g, bt)))

    np.testing.assert_allclose(terms(*transform_matrices(m)), terms(*LAVIN[m]), rtol=0, atol=1e-14)


@pytest.mark.parametrize("m", [2, 4, 6])
def test_transforms_give_the_correlation_exactly(m: int) -> None:
    """``A^T ((G g) * (B^T d))`` is the 3-tap correlation of d, in exact rational arithmetic."""
    bt, g, at = transform_matrices(m)
    rng = np.random.default_rng(m)
    for _ in range(5):
        d = [Fraction(int(v)) for v in rng.integers(-9, 10, m + 2)]
        taps = [Fraction(int(v)) for v in rng.integers(-9, 10, 3)]
        left = [sum(row[k] * taps[k] for k in range(3)) for row in g]
        right = [sum(row[k] * d[k] for k in range(m + 2)) for row in bt]
        y = [sum(row[k] * left[k] * right[k] for k in range(m + 2)) for row in at]
        assert y == [sum(d[i + k] * taps[k] for k in range(3)) for i in range(m)]


WINOGRAD_LAYERS = [name for name, spec in LAYERS.items() if spec.kernel == 3 and spec.stride == 1]  # 3x3, stride 1


@pytest.mark.parametrize("method", ["auto", "winograd"])
@pytest.mark.parametrize("name", WINOGRAD_LAYERS)
def test_float32_accuracy_on_benchmark_layers(name: str, method: str) -> None:
    """float32 within 5e-5 (max error over the result, relative to its largest value) of float64 torch.

    The layers' shapes with a batch of 2 (the error per element does not grow with the batch
    except in dK's sum, which the float64 scale below absorbs the same way).
    """
    spec = LAYERS[name]
    channels, (height, width), filters = spec.channels, spec.size, spec.filters
    padding, dilation, groups = spec.padding, spec.dilation, spec.groups
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, channels, height, width))
    kernel = rng.standard_normal((filters, channels // groups, 3, 3))
    out = [n + 2 * padding - 2 * dilation for n in (height, width)]
    dz = rng.standard_normal((2, filters, *out))
    pads = explicit_pads(padding, (height, width), (3, 3), (1, 1), (dilation, dilation))
    ref = torch_reference(x, kernel, dz, stride=1, pads=pads, dilation=dilation, groups=groups)
    params = dict(padding=padding, dilation=dilation, groups=groups, method=method)
    x32, k32, dz32 = (a.astype(np.float32) for a in (x, kernel, dz))
    z = xpconv.conv2d(x32, k32, **params)
    dx, dk, _ = xpconv.conv2d_backward(dz32, x32, k32, **params)
    for got, expected, what in ((z, ref.z, "z"), (dx, ref.dx, "dx"), (dk, ref.dkernel, "dkernel")):
        assert_close(got, expected, xp=NUMPY, dtype=np.float32, tol=5e-5, what=f"{name} {what}")


def test_auto_keeps_integers_exact() -> None:
    """A 3x3 stride-1 layer of integers takes the exact column-matrix path under "auto"."""
    rng = np.random.default_rng(2)
    x = rng.integers(-1000, 1000, (2, 16, 9, 9))
    kernel = rng.integers(-1000, 1000, (16, 16, 3, 3))
    dz = rng.integers(-1000, 1000, (2, 16, 9, 9))
    z = xpconv.conv2d(x, kernel, padding=1)
    dx, dk, _ = xpconv.conv2d_backward(dz, x, kernel, padding=1)
    assert z.dtype == dx.dtype == dk.dtype == np.int64
    # the same sums in exact integer loops
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    expected_z = np.zeros_like(z)
    expected_dk = np.zeros_like(dk)
    for i in range(3):
        for j in range(3):
            window = padded[:, :, i : i + 9, j : j + 9]
            expected_z += np.einsum("nchw,fc->nfhw", window, kernel[:, :, i, j])
            expected_dk[:, :, i, j] = np.einsum("nchw,nfhw->fc", window, dz)
    assert_close(z, expected_z, xp=NUMPY, exact=True)
    assert_close(dk, expected_dk, xp=NUMPY, exact=True)
    expected_dx = np.zeros_like(padded)
    for i in range(3):
        for j in range(3):
            expected_dx[:, :, i : i + 9, j : j + 9] += np.einsum("nfhw,fc->nchw", dz, kernel[:, :, i, j])
    assert_close(dx, expected_dx[:, :, 1:-1, 1:-1], xp=NUMPY, exact=True)


def test_jitted_winograd_matches_torch() -> None:
    jax = pytest.importorskip("jax", reason="JAX is not installed (extra 'jax')")
    jax.config.update("jax_enable_x64", True)
    rng = np.random.default_rng(3)
    params = dict(padding=((1, 2), (0, 1)), dilation=(1, 2), groups=2, method="winograd")
    x, kernel = rng.standard_normal((2, 4, 10, 11)), rng.standard_normal((6, 2, 3, 3))
    dz = rng.standard_normal(xpconv.conv2d(x, kernel, **params).shape)
    ref = torch_reference(x, kernel, dz, stride=1, pads=params["padding"], dilation=(1, 2), groups=2)

    @jax.jit
    def everything(x_, k_, dz_):
        return (xpconv.conv2d(x_, k_, **params), *xpconv.conv2d_backward(dz_, x_, k_, **params))

    z, dx, dk, _ = everything(*(jax.numpy.asarray(a) for a in (x, kernel, dz)))
    assert isinstance(z, jax.Array)
    for got, expected in ((z, ref.z), (dx, ref.dx), (dk, ref.dkernel)):
        assert_close(got, expected, xp=jax.numpy)


def test_dask_winograd_is_lazy_and_matches_numpy() -> None:
    da = pytest.importorskip("dask.array", reason="Dask is not installed (extra 'dask')")
    rng = np.random.default_rng(4)
    params = dict(padding=1, groups=4, method="winograd")
    x, kernel = rng.standard_normal((7, 4, 9, 6)), rng.standard_normal((8, 1, 3, 3))
    dz = rng.standard_normal((7, 8, 9, 6))
    expected = (xpconv.conv2d(x, kernel, **params), *xpconv.conv2d_backward(dz, x, kernel, **params))
    import dask

    def refuse_to_compute(*args, **kwargs):
        raise AssertionError("xpconv computed a Dask graph inside the call")

    with dask.config.set(scheduler=refuse_to_compute):  # building the graphs computes nothing
        lazy = (
            xpconv.conv2d(da.from_array(x, chunks=3), da.from_array(kernel), **params),
            *xpconv.conv2d_backward(
                da.from_array(dz, chunks=3), da.from_array(x, chunks=3), da.from_array(kernel), **params
            ),
        )
    assert all(isinstance(value, da.Array) for value in lazy)
    for got, want in zip(lazy, expected):
        assert_close(got, want, xp=array_namespace(da.empty(0)))


@settings(max_examples=30, deadline=None)
@given(shape=st.tuples(st.integers(1, 3), st.integers(3, 13), st.integers(3, 13)), seed=st.integers(0, 2**32 - 1))
def test_winograd_matches_torch_across_tile_residues(shape, seed: int) -> None:
    """Every output size modulo the 4x4 tile, unpadded: forward, dX and dK against torch autograd."""
    n, h, w = shape
    rng = np.random.default_rng(seed)
    x, kernel = rng.standard_normal((n, 3, h, w)), rng.standard_normal((2, 3, 3, 3))
    dz = rng.standard_normal((n, 2, h - 2, w - 2))
    ref = torch_reference(x, kernel, dz, stride=1, pads=((0, 0), (0, 0)), dilation=1, groups=1)
    z = xpconv.conv2d(x, kernel, method="winograd")
    dx, dk, _ = xpconv.conv2d_backward(dz, x, kernel, method="winograd")
    for got, want, what in ((z, ref.z, "z"), (dx, ref.dx, "dx"), (dk, ref.dkernel, "dkernel")):
        assert_close(got, want, xp=NUMPY, what=what)
