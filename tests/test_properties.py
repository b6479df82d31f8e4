"""Behaviour users rely on: inputs untouched, empty batches, NaN locality, threads, no stray imports."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from helpers import NUMPY, asarray, assert_close, torch_reference

import xpconv

GEOMETRY = {"stride": (2, 1), "padding": ((1, 0), (2, 1)), "dilation": (1, 2), "groups": 2}
METHODS = ("auto", "direct", "dilate", "fft")


def arrays(seed: int = 0, batch: int = 2):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 4, 9, 8))
    kernel = rng.standard_normal((6, 2, 3, 2))
    z_shape = xpconv.conv2d(x, kernel, **GEOMETRY).shape
    return x, kernel, rng.standard_normal(6), rng.standard_normal(z_shape)


def every_call(X, K, B, DZ, **extra):
    """Each public function once, each backward method once."""
    results = [xpconv.conv2d(X, K, B, **GEOMETRY, **extra)]
    for method in METHODS:
        results += xpconv.conv2d_backward(DZ, X, K, method=method, **GEOMETRY, **extra)
        results.append(xpconv.conv2d_input_grad(DZ, K, tuple(X.shape), method=method, **GEOMETRY, **extra))
        results.append(xpconv.conv2d_weight_grad(DZ, X, tuple(K.shape), method=method, **GEOMETRY, **extra))
    return results


def test_inputs_unchanged(xp) -> None:
    originals = arrays()
    inputs = [asarray(a, xp) for a in originals]
    every_call(*inputs)
    for before, after in zip(originals, inputs):
        assert_close(after, before, xp=xp, exact=True)


def test_read_only_numpy_inputs() -> None:
    originals = arrays()
    inputs = [a.copy() for a in originals]
    for a in inputs:
        a.setflags(write=False)
    for got, expected in zip(every_call(*inputs), every_call(*originals)):
        assert_close(got, expected, xp=NUMPY, exact=True)


def test_workspace_chunks_give_the_same_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    inputs = arrays(batch=5)
    whole = every_call(*inputs)
    one_sample_at_a_time = every_call(*inputs, workspace_bytes=1)
    monkeypatch.setenv("XPCONV_WORKSPACE_BYTES", "4000")  # two or three samples per chunk
    by_environment = every_call(*inputs)
    for a, b, c in zip(whole, one_sample_at_a_time, by_environment):
        assert_close(b, a, xp=NUMPY, tol=1e-13)
        assert_close(c, a, xp=NUMPY, tol=1e-13)


def test_empty_batch(xp) -> None:
    x, kernel, bias, dz = arrays(batch=0)
    X, K, B, DZ = (asarray(a, xp) for a in (x, kernel, bias, dz))
    assert tuple(xpconv.conv2d(X, K, B, **GEOMETRY).shape) == (0, 6, 4, 9)  # H: (9 + 1 - 3) // 2 + 1, W: 8 + 3 - 3 + 1
    for method in METHODS:
        dx, dk, db = xpconv.conv2d_backward(DZ, X, K, method=method, **GEOMETRY)
        assert tuple(dx.shape) == (0, 4, 9, 8)
        assert_close(dk, np.zeros((6, 2, 3, 2)), xp=xp, exact=True)
        assert_close(db, np.zeros(6), xp=xp, exact=True)


@pytest.mark.parametrize("method", ["auto", "direct"])
def test_nan_reaches_only_what_it_touches(method: str) -> None:
    """A NaN in x or dz turns exactly the outputs it influences into NaN (influence from torch)."""

    x, kernel, _, dz = arrays()
    kernel = np.abs(kernel) + 1  # positive: no cancellation in the influence pattern below
    hot_x = np.zeros_like(x)
    hot_x[1, 3, 4, 5] = 1.0
    hot_dz = np.zeros_like(dz)
    hot_dz[0, 4, 2, 3] = 1.0
    pads = GEOMETRY["padding"]
    rest = {k: v for k, v in GEOMETRY.items() if k != "padding"}
    influence_x = torch_reference(hot_x, kernel, np.abs(dz) + 1, pads=pads, **rest)
    influence_dz = torch_reference(np.abs(x) + 1, kernel, hot_dz, pads=pads, **rest)

    x_nan = np.where(hot_x > 0, np.nan, x)
    z = xpconv.conv2d(x_nan, kernel, **GEOMETRY)
    assert np.array_equal(np.isnan(z), influence_x.z != 0)
    _, dk, _ = xpconv.conv2d_backward(dz, x_nan, kernel, method=method, **GEOMETRY)
    touched = influence_x.dkernel != 0
    assert np.isnan(dk[touched]).all() and np.isfinite(dk[~touched]).all()

    dz_inf = np.where(hot_dz > 0, np.inf, dz)
    dx, dk, db = xpconv.conv2d_backward(dz_inf, x, kernel, method=method, **GEOMETRY)
    assert np.array_equal(~np.isfinite(dx), influence_dz.dx != 0)
    assert np.array_equal(~np.isfinite(db), influence_dz.dbias_tied != 0)


def test_threads_give_serial_results() -> None:
    jobs = [arrays(seed) for seed in range(8)]
    serial = [every_call(*job) for job in jobs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(lambda job: every_call(*job), jobs * 2))
    for got, expected in zip(threaded, serial * 2):
        for a, b in zip(got, expected):
            assert_close(a, b, xp=NUMPY, exact=True)


def test_numpy_inputs_import_no_other_array_library() -> None:
    code = """
import sys, numpy as np, xpconv
x = np.ones((1, 2, 5, 5)); k = np.ones((3, 2, 3, 3))
z = xpconv.conv2d(x, k, stride=2, padding=1)
xpconv.conv2d_backward(np.ones_like(z), x, k, stride=2, padding=1)
loaded = [m for m in ("torch", "cupy", "jax", "dask", "array_api_strict") if m in sys.modules]
assert not loaded, loaded
"""
    subprocess.run([sys.executable, "-c", code], check=True)
