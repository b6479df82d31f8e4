"""Dask arrays chunked along the batch: lazy results for every pass, correct on a distributed cluster."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import NUMPY, assert_close

import xpconv

da = pytest.importorskip("dask.array", reason="Dask is not installed (extra 'dask')")
dask = pytest.importorskip("dask")

rng = np.random.default_rng(0)
X = rng.standard_normal((7, 4, 9, 8))
KERNEL = rng.standard_normal((6, 2, 3, 2))
BIAS = rng.standard_normal(6)
PARAMS = dict(stride=(2, 1), padding=((1, 2), (0, 1)), dilation=(1, 2), groups=2)
DZ = rng.standard_normal(xpconv.conv2d(X, KERNEL, **PARAMS).shape)
T_X = rng.standard_normal((5, 2, 4, 3))
T_KERNEL = rng.standard_normal((2, 3, 3, 2))
T_PARAMS = dict(stride=2, padding=1, output_padding=(1, 0))
T_DZ = rng.standard_normal(xpconv.conv_transpose(T_X, T_KERNEL, **T_PARAMS).shape)


def chunked(a: np.ndarray, rows: int = 3):
    return da.from_array(a, chunks=(rows, *a.shape[1:]))


def every_pass(x, kernel, bias, dz, t_x, t_kernel, t_dz):
    """Each public entry point once; on Dask inputs every result must be a lazy Dask array."""
    results = {"conv2d": xpconv.conv2d(x, kernel, bias, **PARAMS)}
    for method in ("auto", "direct", "dilate", "fft"):
        dx, dk, db = xpconv.conv2d_backward(dz, x, kernel, method=method, **PARAMS)
        results |= {f"dx {method}": dx, f"dkernel {method}": dk, f"dbias {method}": db}
    results["dbias untied"] = xpconv.conv2d_backward(dz, x, kernel, bias="untied", **PARAMS)[2]
    results["input_grad"] = xpconv.conv2d_input_grad(dz, kernel, tuple(X.shape), **PARAMS)
    results["weight_grad"] = xpconv.conv2d_weight_grad(dz, x, tuple(KERNEL.shape), **PARAMS)
    results["conv_transpose"] = xpconv.conv_transpose(t_x, t_kernel, **T_PARAMS)
    for name, value in zip(
        ("t dx", "t dkernel", "t dbias"), xpconv.conv_transpose_backward(t_dz, t_x, t_kernel, **T_PARAMS)
    ):
        results[name] = value
    return results


def refuse_to_compute(*args, **kwargs):
    raise AssertionError("xpconv computed a Dask graph inside the call")


@pytest.fixture(scope="module")
def expected():
    return every_pass(X, KERNEL, BIAS, DZ, T_X, T_KERNEL, T_DZ)  # NumPy, itself tested against torch


def lazy_results():
    with dask.config.set(scheduler=refuse_to_compute):
        results = every_pass(
            chunked(X),
            da.from_array(KERNEL),
            da.from_array(BIAS),
            chunked(DZ),
            chunked(T_X, 2),
            da.from_array(T_KERNEL),
            chunked(T_DZ, 2),
        )
    for name, value in results.items():
        assert isinstance(value, da.Array), name
    return results


def test_every_pass_is_lazy_and_correct(expected) -> None:
    results = lazy_results()
    assert results["conv2d"].chunks[0] == (3, 3, 1)  # the batch chunks carry through
    computed = dask.compute(results, scheduler="threads")[0]
    for name, value in computed.items():
        assert_close(value, expected[name], xp=NUMPY, what=name)  # each chunk ran on NumPy


def test_complex_passes_by_fft_are_lazy_and_correct() -> None:
    """Complex data through the FFT, per batch chunk: the same numbers as NumPy's whole batch."""
    rng = np.random.default_rng(7)
    x, kernel = X + 1j * rng.standard_normal(X.shape), KERNEL - 1j * rng.standard_normal(KERNEL.shape)
    dz = DZ + 1j * rng.standard_normal(DZ.shape)
    expected = [xpconv.conv2d(x, kernel, **PARAMS), *xpconv.conv2d_backward(dz, x, kernel, **PARAMS)]
    with dask.config.set(scheduler=refuse_to_compute):
        lazy = [
            xpconv.conv2d(chunked(x), da.from_array(kernel), method="fft", **PARAMS),
            *xpconv.conv2d_backward(chunked(dz), chunked(x), da.from_array(kernel), method="fft", **PARAMS),
        ]
    assert all(isinstance(value, da.Array) for value in lazy)
    for got, want, name in zip(dask.compute(lazy, scheduler="threads")[0], expected, ("z", "dx", "dk", "db")):
        assert_close(got, want, xp=NUMPY, what=name)


def test_on_a_local_cluster_of_two_processes(expected) -> None:
    distributed = pytest.importorskip("dask.distributed", reason="dask.distributed is not installed")
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        results = lazy_results()
        computed = client.compute(results, sync=True)
        assert len(client.scheduler_info()["workers"]) == 2
    for name, value in computed.items():
        assert_close(value, expected[name], xp=NUMPY, what=name)  # each chunk ran on NumPy


def slow_identity(block: np.ndarray) -> np.ndarray:
    """Pure, only slow: keeps the graph running long enough to lose a worker in the middle of it."""
    import time

    time.sleep(0.2)
    return block


def test_losing_a_worker_midway_changes_nothing() -> None:
    """Kill one of two worker processes while the gradients are computed: the scheduler reruns its
    tasks elsewhere, which gives the same numbers only because no task depends on a side effect."""
    distributed = pytest.importorskip("dask.distributed", reason="dask.distributed is not installed")
    import os
    import signal
    import time

    rng = np.random.default_rng(5)
    x, dz = rng.standard_normal((20, 4, 12, 12)), rng.standard_normal((20, 6, 12, 12))
    kernel = rng.standard_normal((6, 4, 3, 3))
    expected = xpconv.conv2d_backward(dz, x, kernel, padding=1)
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        slow_x = da.from_array(x, chunks=(1, 4, 12, 12)).map_blocks(slow_identity, dtype=x.dtype)
        slow_dz = da.from_array(dz, chunks=(1, 6, 12, 12)).map_blocks(slow_identity, dtype=dz.dtype)
        lazy = xpconv.conv2d_backward(slow_dz, slow_x, da.from_array(kernel), padding=1)
        futures = client.compute(list(lazy))
        client.wait_for_workers(2)
        victim = sorted(client.scheduler_info()["workers"])[0]
        time.sleep(1.0)
        assert not all(f.done() for f in futures), "the graph finished before the worker was lost"
        os.kill(client.run(os.getpid, workers=[victim])[victim], signal.SIGKILL)
        results = client.gather(futures)
        assert victim not in client.scheduler_info()["workers"], "the worker was not lost"
    for got, want in zip(results, expected):
        assert_close(got, want, xp=NUMPY)
