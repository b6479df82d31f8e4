"""Dask arrays chunked along the batch: lazy results for every pass, correct on a distributed cluster."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import _probe_cupy
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


@pytest.mark.parametrize(("samples", "side"), [(1, 12), (5, 6)], ids=["batch chunks", "spatial chunks"])
def test_losing_a_worker_midway_changes_nothing(samples, side) -> None:
    """Kill one of two worker processes while the gradients are computed: the scheduler reruns its
    tasks elsewhere, which gives the same numbers only because no task depends on a side effect.
    Chunked along the batch, and along the batch and both spatial axes (blocks with halos)."""
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
        slow_x = da.from_array(x, chunks=(samples, 4, side, side)).map_blocks(slow_identity, dtype=x.dtype)
        slow_dz = da.from_array(dz, chunks=(samples, 6, side, side)).map_blocks(slow_identity, dtype=dz.dtype)
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


# Spatially chunked: (x shape, kernel shape, options, x's chunks, dz's chunks along its spatial axes)
SPATIAL = {
    "3x3, padding 1": ((2, 3, 20, 17), (4, 3, 3, 3), dict(padding=1), (1, 3, 7, 5), (6, 4)),
    "stride, dilation, groups, same": (
        (2, 2, 23, 19), (4, 1, 5, 4), dict(padding="same", stride=2, dilation=(2, 1), groups=2), (2, 2, 6, 4), (4, 3),
    ),
    "1-D, per-side pads, stride 3, uneven chunks": (
        (1, 2, 30), (2, 2, 7), dict(padding=((5, 1),), stride=3), (1, 2, (2, 9, 19)), ((1, 5, 4),),
    ),
    "3-D, full, chunks smaller than the halo": (
        (1, 1, 12, 12, 12), (2, 1, 3, 3, 3), dict(padding="full"), (1, 1, 2, 3, 1), (2, 5, 3),
    ),
    "valid, stride beyond the kernel, depthwise": (
        (2, 4, 25, 9), (4, 1, 2, 3), dict(stride=(4, 2), groups=4), (2, 4, 5, 4), (2, 2),
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(SPATIAL))
def test_spatially_chunked_passes_keep_their_chunks_and_numbers(name) -> None:
    """Chunks along the spatial axes: each output block from its chunk and halo, dX from the outputs
    reaching each input block, dK and db summed; lazy; the results chunked in space; NumPy's numbers."""
    shape, kernel_shape, params, x_chunks, dz_chunks = SPATIAL[name]
    draw = np.random.default_rng(len(name))
    x, kernel, bias = (
        draw.standard_normal(shape),
        draw.standard_normal(kernel_shape),
        draw.standard_normal(kernel_shape[0]),
    )
    z = xpconv.conv(x, kernel, bias, **params)
    dz = draw.standard_normal(z.shape)
    transposed = {key: value for key, value in params.items() if key != "padding"}  # the transposed conv of dz
    expected = {
        "z": z,
        "input_grad": xpconv.conv_input_grad(dz, kernel, shape, **params),
        "weight_grad": xpconv.conv_weight_grad(dz, x, kernel_shape, **params),
        "bias_grad": xpconv.conv_backward(dz, x, kernel, **params)[2],
        "transpose": xpconv.conv_transpose(dz, kernel, **transposed),
    }
    lazy_x = da.from_array(x, chunks=x_chunks)
    lazy_dz = da.from_array(dz, chunks=(1, dz.shape[1], *dz_chunks))
    lazy_kernel = da.from_array(kernel)
    with dask.config.set(scheduler=refuse_to_compute):
        got = {
            "z": xpconv.conv(lazy_x, lazy_kernel, da.from_array(bias), **params),
            "input_grad": xpconv.conv_input_grad(lazy_dz, lazy_kernel, shape, **params),
            "weight_grad": xpconv.conv_weight_grad(lazy_dz, lazy_x, kernel_shape, **params),
            "bias_grad": xpconv.conv_backward(lazy_dz, lazy_x, lazy_kernel, **params)[2],
            "transpose": xpconv.conv_transpose(lazy_dz, lazy_kernel, **transposed),
        }
    for what in ("z", "input_grad", "transpose"):
        assert any(len(chunks) > 1 for chunks in got[what].chunks[2:]), (what, got[what].chunks)
    computed = dask.compute(got, scheduler="threads")[0]
    for what, value in computed.items():
        assert_close(value, expected[what], xp=NUMPY, tol=1e-10, what=what)


def test_spatial_chunks_by_the_fft() -> None:
    """A large kernel per block by the FFT, blocks of 8 outputs with a 9-tap halo."""
    draw = np.random.default_rng(3)
    x, kernel = draw.standard_normal((1, 1, 40, 33)), draw.standard_normal((2, 1, 9, 9))
    dz = draw.standard_normal(xpconv.conv(x, kernel, padding="same").shape)
    dx, dk, db = xpconv.conv_backward(dz, x, kernel, padding="same", method="fft")
    lazy = xpconv.conv_backward(
        da.from_array(dz, chunks=(1, 2, 8, 8)), da.from_array(x, chunks=(1, 1, 8, 8)), da.from_array(kernel),
        padding="same", method="fft",
    )  # fmt: skip
    for got, want, what in zip(dask.compute(lazy, scheduler="threads")[0], (dx, dk, db), ("dx", "dk", "db")):
        assert_close(got, want, xp=NUMPY, tol=1e-10, what=what)


def test_size_guard_counts_blocks_not_samples_when_chunked_in_space(monkeypatch) -> None:
    """One sample too large for the device is refused on batch chunks, but computes when chunked in
    space (each task holds a block and its halo): the guard of a whole sample does not apply there."""
    from xpconv import _arguments

    draw = np.random.default_rng(7)
    x, kernel = draw.standard_normal((1, 1, 40, 40)), draw.standard_normal((1, 1, 9, 9))
    expected = xpconv.conv2d(x, kernel, padding="same")
    monkeypatch.setattr(_arguments, "memory_limit", lambda like, xp: 2**19)  # 512 KiB: below one sample's columns
    with pytest.raises(ValueError, match="column matrix"):
        xpconv.conv2d(da.from_array(x, chunks=(1, 1, 40, 40)), da.from_array(kernel), padding="same", method="direct")
    lazy = da.from_array(x, chunks=(1, 1, 20, 20))
    got = xpconv.conv2d(lazy, da.from_array(kernel), padding="same", method="direct")
    assert_close(got.compute(scheduler="threads"), expected, xp=NUMPY, tol=1e-10)


@pytest.mark.parametrize("chunks", [(2, 1, 64, 64), (1, 1, 128, 128)], ids=["in space", "by the batch"])
def test_tasks_carry_no_copy_of_their_operands_graphs(chunks) -> None:
    """Each task's function holds the plain arguments only: the graph xpconv adds to a persisted
    input (its chunks in memory) pickles to a small fraction of the input, where a closure over
    the input would carry (and, to name the result, hash) all of its chunks in every task."""
    import cloudpickle

    draw = np.random.default_rng(5)
    x = da.from_array(draw.standard_normal((2, 1, 128, 128)), chunks=chunks).persist(scheduler="threads")
    kernel = da.from_array(draw.standard_normal((1, 1, 3, 3)))
    z = xpconv.conv2d(x, kernel, padding="same", method="direct")
    added = {name: layer for name, layer in z.dask.layers.items() if name not in x.dask.layers}
    assert len(cloudpickle.dumps(added)) < x.nbytes / 10
    assert z.name == xpconv.conv2d(x, kernel, padding="same", method="direct").name  # named by its inputs
    assert_close(z.compute(scheduler="threads"), xpconv.conv2d(x.compute(), kernel.compute(), padding="same"), xp=NUMPY)


NO_CUPY = _probe_cupy()


@pytest.mark.gpu
@pytest.mark.skipif(NO_CUPY is not None, reason=str(NO_CUPY))
@pytest.mark.parametrize(
    "name", ["3-D, full, chunks smaller than the halo", "valid, stride beyond the kernel, depthwise"]
)
def test_cupy_backed_spatial_blocks_stay_on_the_gpu(name) -> None:
    """A CuPy-backed Dask array chunked in space: every block, the padding-only zeros and dX's
    unreached inputs included, is a CuPy array; NumPy's numbers."""
    import cupy

    shape, kernel_shape, params, x_chunks, dz_chunks = SPATIAL[name]
    draw = np.random.default_rng(len(name))
    x, kernel = draw.standard_normal(shape), draw.standard_normal(kernel_shape)
    z = xpconv.conv(x, kernel, **params)
    dz = draw.standard_normal(z.shape)
    dx, dkernel, _ = xpconv.conv_backward(dz, x, kernel, **params)
    on_gpu = {"x": cupy.asarray(x), "dz": cupy.asarray(dz), "kernel": cupy.asarray(kernel)}
    lazy_x = da.from_array(on_gpu["x"], chunks=x_chunks, asarray=False)
    lazy_dz = da.from_array(on_gpu["dz"], chunks=(1, dz.shape[1], *dz_chunks), asarray=False)
    lazy_kernel = da.from_array(on_gpu["kernel"], asarray=False)
    got = dask.compute(
        {
            "z": xpconv.conv(lazy_x, lazy_kernel, **params),
            "dx": xpconv.conv_input_grad(lazy_dz, lazy_kernel, shape, **params),
            "dkernel": xpconv.conv_weight_grad(lazy_dz, lazy_x, kernel_shape, **params),
        },
        scheduler="threads",
    )[0]
    for what, want in (("z", z), ("dx", dx), ("dkernel", dkernel)):
        assert isinstance(got[what], cupy.ndarray), (what, type(got[what]))
        np.testing.assert_allclose(cupy.asnumpy(got[what]), want, rtol=0, atol=1e-10 * np.abs(want).max(), err_msg=what)
