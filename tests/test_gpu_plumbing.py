"""The test machinery is ready for a GPU: shown on the CPU with torch's default device set to "meta".

On CUDA, a reference tensor made on the default device, or a test input left there, would either
fail the reference's ``.numpy()`` or hide a tensor that xpconv made without ``device=``. Here torch's
default device is "meta" (no values): the references must still return NumPy arrays, the inputs
must go where the test puts them, and xpconv must make nothing on the default device.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from array_api_compat import array_namespace
from conftest import on_device
from helpers import (
    asarray,
    assert_close,
    draw,
    torch_reference,
    torch_transpose_output_shape,
    torch_transpose_reference,
)

import xpconv

torch = pytest.importorskip("torch", reason="torch is the reference and the meta device")

X, KERNEL = draw(np.random.default_rng(0), (2, 4, 9, 8), "complex128"), draw(np.random.default_rng(1), (6, 2, 3, 3))
PARAMS = dict(stride=(1, 1), pads=((1, 1), (2, 0)), dilation=(1, 2), groups=2)


@pytest.fixture
def meta_by_default():
    torch.set_default_device("meta")
    try:
        yield
    finally:
        torch.set_default_device(None)


def references():
    dz = draw(np.random.default_rng(2), (2, 6, 9, 6), "complex128")
    conv = torch_reference(X, KERNEL, dz, **PARAMS)
    transposed_params = dict(stride=2, padding=1, output_padding=1, dilation=1, groups=1)
    shape = torch_transpose_output_shape((2, 4, 3, 3), (4, 3, 3, 3), **transposed_params)
    x_t, k_t = np.ones((2, 4, 3, 3)), np.ones((4, 3, 3, 3))
    transposed = torch_transpose_reference(x_t, k_t, np.ones(shape), **transposed_params)
    return [conv.z, conv.dx, conv.dkernel, conv.dbias_untied, transposed.z, transposed.dx, transposed.dkernel]


def test_references_are_computed_on_the_cpu(meta_by_default) -> None:
    with_meta_default = references()
    torch.set_default_device(None)
    for got, want in zip(with_meta_default, references()):
        assert isinstance(got, np.ndarray)
        np.testing.assert_array_equal(got, want)


def test_inputs_go_where_the_test_puts_them(meta_by_default) -> None:
    """The fixture's machinery with a CPU torch backend: inputs on the CPU, every method's results
    there too and equal to the reference, although new tensors default to "meta"."""
    xp = array_namespace(torch.empty(0, device="cpu"))
    with on_device("torch"):
        x, kernel = asarray(X.real, xp), asarray(KERNEL, xp)
        assert x.device.type == "cpu"
        ref = torch_reference(X.real, KERNEL, np.ones((2, 6, 9, 6)), **PARAMS)
        dz = asarray(np.ones((2, 6, 9, 6)), xp)
        options = dict(padding=((1, 1), (2, 0)), dilation=(1, 2), groups=2)
        for method, workspace in itertools.product(("auto", "direct", "dilate", "fft"), (None, 1)):
            # workspace 1: a chunk per sample, written into a result buffer xpconv allocates
            opts = dict(options, method=method, workspace_bytes=workspace)
            z = xpconv.conv2d(x, kernel, **opts)
            dx, dk, _ = xpconv.conv2d_backward(dz, x, kernel, **opts)
            for got, want, what in ((z, ref.z, "z"), (dx, ref.dx, "dx"), (dk, ref.dkernel, "dk")):
                assert_close(got, want, xp=xp, floor=1.0, what=f"{what} {method} workspace {workspace}")


def test_a_tensor_made_on_the_default_device_fails_here(meta_by_default, monkeypatch) -> None:
    """The negative control: an xpconv buffer made without ``device=`` lands on "meta" and the test fails."""
    from xpconv import _backends

    monkeypatch.setattr(_backends, "set_into", _without_device(_backends.set_into))
    xp = array_namespace(torch.empty(0, device="cpu"))
    with on_device("torch"), pytest.raises((AssertionError, RuntimeError, NotImplementedError)):
        z = xpconv.conv2d(asarray(X.real, xp), asarray(KERNEL, xp), padding=1, groups=2, method="fft")
        assert_close(z, np.zeros(z.shape), xp=xp, floor=1.0)


def _without_device(set_into):
    """set_into that first moves its buffer to torch's default device, as a forgotten device= would."""

    def moved(buffer, xp, index, values):
        return set_into(xp.zeros(buffer.shape, dtype=buffer.dtype), xp, index, values)

    return moved
