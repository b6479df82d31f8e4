"""The user guide's memory promise (docs/user-guide.md), under tracemalloc (NumPy reports its allocations to it).

Peak extra memory of a call is its outputs plus one batch chunk's temporaries: the chunk's padded
slice, its column matrix (at most ``workspace_bytes``) or Winograd tiles, and its product. So it
must not grow with the batch, and stays within twice ``workspace_bytes`` beyond the outputs.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import xpconv

# The FFT's temporaries for one sample (16 channels at 32x32, float64: the zero-filled input, its
# spectrum and their copies, about 1 MiB) fill a 1 MiB workspace alone, which the README allows for
# a single sample; it is measured with 4 MiB, where the batch goes in chunks of several samples.
WORKSPACES = {"direct": 2**20, "winograd": 2**20, "dilate": 2**20, "fft": 4 * 2**20}


def extra_bytes(x: np.ndarray, kernel: np.ndarray, dz: np.ndarray, method: str) -> int:
    """Peak traced bytes of one forward+backward beyond its outputs."""
    options = dict(padding=1, method=method, workspace_bytes=WORKSPACES[method])
    xpconv.conv2d(x[:2], kernel, **options)  # imports and first-call caches are not the call's memory
    xpconv.conv2d_backward(dz[:2], x[:2], kernel, **options)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        z = xpconv.conv2d(x, kernel, **options)
        dx, dkernel, dbias = xpconv.conv2d_backward(dz, x, kernel, **options)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return peak - sum(a.nbytes for a in (z, dx, dkernel, dbias))


@pytest.mark.parametrize("method", list(WORKSPACES))
def test_temporaries_stay_within_the_workspace_whatever_the_batch(method: str) -> None:
    rng = np.random.default_rng(0)
    extras = {}
    for batch in (8, 64):  # 1 MiB and 8 MiB of input (float64, 16 channels, 32x32)
        x, dz = rng.standard_normal((batch, 16, 32, 32)), rng.standard_normal((batch, 16, 32, 32))
        extras[batch] = extra_bytes(x, rng.standard_normal((16, 16, 3, 3)), dz, method)
    workspace = WORKSPACES[method]
    assert extras[64] <= 2 * workspace, f"{method}: {extras[64] / 2**20:.2f} MiB beyond the outputs at batch 64"
    assert extras[64] <= extras[8] + workspace // 4, f"{method}: temporaries grew with the batch: {extras}"
