"""Batch chunks (``workspace_bytes``) on every backend, every method and pass, against torch autograd.

Every pass goes through ``_contract.over_batch``, which cuts the batch into chunks whose temporaries
fit the workspace (on the CPU also a cache-sized budget). The chunk sizes are recorded and checked
against what the workspace asks for: chunks of one sample, and chunks of several (some pass with
``1 < rows < N``); and the results must stay torch's. On JAX the chunks are written into the
result with ``.at[].set``; on Dask every block is chunked again inside its task.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import METHODS, asarray, assert_close, draw, explicit_pads, torch_reference, winograd_applies

import xpconv
from xpconv import _contract, _fft, _winograd

BATCH = 7  # prime: the last chunk is a short one
# (C, spatial size, F, kernel, stride, padding, dilation, groups): Winograd's 3x3 at stride 1, a
# strided grouped layer, and a 3-D one
CASES = [
    (4, (9, 10), 6, (3, 3), 1, 1, 1, 1),
    (4, (11, 9), 4, (4, 3), 2, "same", (1, 2), 2),
    (2, (5, 4, 6), 3, (2, 3, 2), 1, "full", 1, 1),
]


@pytest.fixture
def chunks(monkeypatch):
    """Every over_batch call: (batch, sample_bytes, workspace, cpu_budget, the chunk sizes it made)."""
    calls: list[dict] = []
    real = _contract.over_batch

    def recording(fn, arrays, xp, *, sample_bytes, workspace, combine="concat", cpu_budget=None):
        call = {"batch": arrays[0].shape[0], "sample_bytes": sample_bytes, "workspace": workspace, "rows": []}
        call["cpu"] = _contract.on_cpu(arrays[0], xp)
        call["cpu_budget"] = _contract.CPU_CHUNK_BYTES if cpu_budget is None else cpu_budget
        calls.append(call)

        def recorded(*parts):
            call["rows"].append(int(parts[0].shape[0]))
            return fn(*parts)

        options = dict(sample_bytes=sample_bytes, workspace=workspace, combine=combine, cpu_budget=cpu_budget)
        return real(recorded, arrays, xp, **options)

    for module in (_contract, _winograd, _fft):
        monkeypatch.setattr(module, "over_batch", recording)
    return calls


def expected_rows(call: dict) -> int:
    budget = min(call["workspace"], call["cpu_budget"]) if call["cpu"] else call["workspace"]
    return max(1, min(call["batch"], budget // max(1, call["sample_bytes"])))


def every_pass(xp, case, workspace: int | None, seed: int = 0):
    channels, size, filters, ksize, stride, padding, dilation, groups = case
    ndim = len(size)
    rng = np.random.default_rng(seed)
    x, kernel = draw(rng, (BATCH, channels, *size)), draw(rng, (filters, channels // groups, *ksize))
    params = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    shape_params = {k: v for k, v in params.items() if k != "groups"}
    dz = draw(rng, xpconv.conv_output_shape(x.shape, kernel.shape, **shape_params))
    per_axis = lambda v: (v,) * ndim if isinstance(v, int) else tuple(v)  # noqa: E731
    pads = explicit_pads(padding, size, ksize, per_axis(stride), per_axis(dilation))
    ref = torch_reference(x, kernel, dz, stride=stride, pads=pads, dilation=dilation, groups=groups)
    X, K, DZ = (asarray(a, xp) for a in (x, kernel, dz))
    for method in METHODS:
        if method == "winograd" and not (ndim == 2 and winograd_applies(ksize, stride)):
            continue
        options = dict(params, method=method, workspace_bytes=workspace)
        dx, dk, db = xpconv.conv_backward(DZ, X, K, **options)
        results = {
            "z": (xpconv.conv(X, K, **options), ref.z),
            "dx": (dx, ref.dx),
            "dkernel": (dk, ref.dkernel),
            "dbias": (db, ref.dbias_tied),
            "input_grad": (xpconv.conv_input_grad(DZ, K, x.shape, **options), ref.dx),
            "weight_grad": (xpconv.conv_weight_grad(DZ, X, kernel.shape, **options), ref.dkernel),
        }
        for what, (got, want) in results.items():
            assert_close(got, want, xp=xp, tol=1e-12, floor=1.0, what=f"{what} ({method}, workspace {workspace})")


@pytest.mark.parametrize("case", CASES, ids=["3x3", "strided-grouped", "3-D"])
def test_chunks_of_one_sample(xp, case, chunks) -> None:
    every_pass(xp, case, workspace=1)
    passes = [call for call in chunks if call["batch"] > 1]
    assert passes, "no pass was chunked"
    for call in passes:
        assert call["rows"] and set(call["rows"]) == {1}, call


@pytest.mark.parametrize("case", CASES, ids=["3x3", "strided-grouped", "3-D"])
def test_chunks_of_several_samples(xp, case, chunks) -> None:
    every_pass(xp, case, workspace=None)  # learn each pass's bytes per sample
    widest = max(call["sample_bytes"] for call in chunks)
    chunks.clear()
    every_pass(xp, case, workspace=2 * widest + 1)  # the widest pass: 2 samples a chunk, the others more
    several = False
    for call in (c for c in chunks if c["batch"] > 1):
        rows = expected_rows(call)
        assert call["rows"][:-1] == [rows] * (len(call["rows"]) - 1), call  # full chunks of the size asked
        assert 0 < call["rows"][-1] <= rows and sum(call["rows"]) == call["batch"], call
        several |= 1 < rows < call["batch"]
    assert several, "no pass made chunks of several samples"
