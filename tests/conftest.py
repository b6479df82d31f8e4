"""The ``backend`` fixture: one entry per array library xpconv is tested on.

numpy, torch (CPU), array-api-strict, JAX and Dask run wherever they are installed; torch-cuda and cupy skip,
with the reason, unless a CUDA device answers a real computation (an import alone proves nothing).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import settings

settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True, print_blob=True)
settings.register_profile("dev", max_examples=60, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@dataclass(frozen=True)
class Backend:
    """How a test makes arrays of one library, and reads them back as NumPy."""

    name: str
    asarray: Callable[[np.ndarray], Any]
    supports_integer_matmul: bool = True

    def __repr__(self) -> str:
        return self.name


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _probe_torch_cuda() -> str | None:
    """None when a CUDA device computes, else the reason to skip."""
    if not installed("torch"):
        return "torch is not installed"
    import torch

    if not torch.cuda.is_available():
        return "torch finds no CUDA device"
    try:
        if float((torch.ones(2, device="cuda") * 2).sum()) != 4.0:
            return "torch CUDA computed a wrong sum"
    except RuntimeError as error:
        return f"torch CUDA failed: {error}"
    return None


def _probe_cupy() -> str | None:
    if not installed("cupy"):
        return "cupy is not installed"
    import cupy

    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "cupy finds no CUDA device"
        if float((cupy.ones(2) * 2).sum()) != 4.0:
            return "cupy computed a wrong sum"
    except Exception as error:  # CUDARuntimeError and friends, without importing their modules
        return f"cupy cannot use a CUDA device: {error}"
    return None


def _make_backend(name: str) -> Backend:
    if name == "numpy":
        return Backend("numpy", lambda a: a.copy())
    if name == "array_api_strict":
        import array_api_strict

        return Backend(name, lambda a: array_api_strict.asarray(a.copy()))
    if name in ("torch", "torch-cuda"):
        import torch

        device = "cuda" if name == "torch-cuda" else "cpu"
        return Backend(name, lambda a: torch.asarray(a.copy(), device=device), supports_integer_matmul=device == "cpu")
    if name == "cupy":
        import cupy

        return Backend(name, cupy.asarray)
    if name == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)  # the float64 comparisons need it
        import jax.numpy as jnp

        return Backend(name, jnp.asarray)
    if name == "dask":
        import dask.array as da

        # chunked along the first axis (the batch of x and dz), as a user's data would be
        return Backend(
            name,
            lambda a: (
                da.from_array(a.copy(), chunks=(max(1, a.shape[0] // 2), *a.shape[1:])) if a.ndim else da.from_array(a)
            ),
        )
    raise ValueError(name)


def _selected(name: str) -> bool:
    """``XPCONV_TEST_BACKENDS=numpy,torch`` limits the run to those backends (nox sets it per session)."""
    chosen = os.environ.get("XPCONV_TEST_BACKENDS")
    return not chosen or name in chosen.split(",")


def _backend_params() -> list:
    params = [pytest.param("numpy", id="numpy")]
    for name, module in (
        ("torch", "torch"),
        ("array_api_strict", "array_api_strict"),
        ("jax", "jax"),
        ("dask", "dask"),
    ):
        marks = [] if installed(module) else [pytest.mark.skip(reason=f"{module} is not installed")]
        params.append(pytest.param(name, id=name, marks=marks))
    for name, probe in (("torch-cuda", _probe_torch_cuda), ("cupy", _probe_cupy)):
        reason = probe()
        marks = [pytest.mark.gpu] + ([pytest.mark.skip(reason=reason)] if reason else [])
        params.append(pytest.param(name, id=name, marks=marks))
    return [p for p in params if _selected(p.values[0])]


BACKEND_PARAMS = _backend_params()
# JAX compiles every operation anew for every new shape (about a second a call): hypothesis-drawn
# geometries run on it through jax.jit, with fewer examples, in test_jax.py.
BACKEND_PARAMS_BUT_JAX = [p for p in BACKEND_PARAMS if p.values[0] != "jax"]


@pytest.fixture(params=BACKEND_PARAMS)
def backend(request: pytest.FixtureRequest) -> Backend:
    return _make_backend(request.param)


@pytest.fixture(params=BACKEND_PARAMS_BUT_JAX)
def eager_backend(request: pytest.FixtureRequest) -> Backend:
    return _make_backend(request.param)


def to_numpy(a: Any) -> np.ndarray:
    """A NumPy copy of an array of any tested library."""
    from array_api_compat import is_cupy_array, is_dask_array, is_torch_array

    if is_torch_array(a):
        return a.detach().cpu().numpy()
    if is_cupy_array(a):
        return a.get()
    if is_dask_array(a):
        return np.asarray(a.compute())
    return np.asarray(np.from_dlpack(a))
