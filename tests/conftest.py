"""The ``xp`` fixture: the namespace of each array library xpconv is tested on.

numpy, torch (CPU), array-api-strict, JAX and Dask run wherever they are installed; torch-cuda and cupy skip,
with the reason, unless a CUDA device answers a real computation (an import alone proves nothing).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from helpers import TEST_DEVICE, installed
from hypothesis import settings

# ci: the same examples on every run (CI must not flicker); dev: random ones; release (``nox -s
# release``, ``pytest --hypothesis-profile=release``): five times as many, random, and the failing
# example's blob printed (nox prints the seed it passes, to rerun with --hypothesis-seed).
settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True, print_blob=True)
settings.register_profile("dev", max_examples=60, deadline=None)
settings.register_profile("release", max_examples=300, deadline=None, derandomize=False, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
# The tests hold "auto"'s shipped rule: a wisdom file this machine's xpconv.calibrate wrote must not
# change its picks (tests of the wisdom file point XPCONV_WISDOM at files of their own).
os.environ["XPCONV_WISDOM"] = ""


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


def _namespace(name: str) -> Any:
    """The array API namespace of a tested library: what ``array_namespace`` gives for its arrays."""
    from array_api_compat import array_namespace

    if name == "numpy":
        return array_namespace(np.zeros(1))
    if name == "array_api_strict":
        import array_api_strict

        return array_api_strict
    if name in ("torch", "torch-cuda"):
        import torch

        return array_namespace(torch.zeros(1))
    if name == "cupy":
        import cupy

        return array_namespace(cupy.zeros(1))
    if name == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)  # the float64 comparisons need it
        return array_namespace(jax.numpy.zeros(1))
    if name == "dask":
        import dask.array as da

        return array_namespace(da.zeros(1))
    raise ValueError(name)


DEVICES = {"torch": "cpu", "torch-cuda": "cuda"}
"""The device each backend's test arrays go to, where it is not the library's default."""


@contextlib.contextmanager
def on_device(name: str) -> Iterator[None]:
    """The test's arrays (``helpers.asarray``) go to the backend's device while the test runs;
    torch's global default device stays the CPU (see ``helpers.TEST_DEVICE``)."""
    TEST_DEVICE["device"] = DEVICES.get(name)
    try:
        yield
    finally:
        TEST_DEVICE["device"] = None


def selected(name: str) -> bool:
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
    return [p for p in params if selected(p.values[0])]


BACKEND_PARAMS = _backend_params()
# JAX compiles every operation anew for every new shape (about a second a call): hypothesis-drawn
# geometries run on it through jax.jit, with fewer examples, in test_jax.py.
BACKEND_PARAMS_BUT_JAX = [p for p in BACKEND_PARAMS if p.values[0] != "jax"]


@pytest.fixture(params=BACKEND_PARAMS)
def xp(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The namespace of each tested library (arrays made with ``helpers.asarray``)."""
    with on_device(request.param):
        yield _namespace(request.param)


@pytest.fixture(params=BACKEND_PARAMS_BUT_JAX)
def eager_xp(request: pytest.FixtureRequest) -> Iterator[Any]:
    """As ``xp``, without JAX (see ``BACKEND_PARAMS_BUT_JAX``)."""
    with on_device(request.param):
        yield _namespace(request.param)
