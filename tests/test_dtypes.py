"""Mixed dtypes promote as docs/user-guide.md says: float32 with float64 gives float64 everywhere; an
integer array with a floating one gives what the arrays' library promotes them to (the standard
leaves it to each: NumPy float64, torch float32, and array-api-strict refuses, with a TypeError
naming both)."""

from __future__ import annotations

import numpy as np
import pytest
from array_api_compat import is_array_api_strict_namespace
from helpers import asarray, assert_close, draw

import xpconv

PARAMS = dict(stride=(1, 2), padding=1, groups=2)


def reference(x, kernel, dz):
    """float64 NumPy results of the same numbers (NumPy float64 is checked against torch elsewhere)."""
    wide = [a.astype(np.float64) for a in (x, kernel, dz)]
    return (xpconv.conv2d(*wide[:2], **PARAMS), *xpconv.conv2d_backward(wide[2], *wide[:2], **PARAMS))


@pytest.mark.parametrize(("x_dtype", "kernel_dtype"), [("float32", "float64"), ("float64", "float32")])
def test_float32_with_float64_gives_float64(xp, x_dtype, kernel_dtype) -> None:
    rng = np.random.default_rng(0)
    x, kernel = draw(rng, (2, 4, 6, 7), x_dtype), draw(rng, (6, 2, 3, 3), kernel_dtype)
    dz = draw(rng, xpconv.conv_output_shape(x.shape, kernel.shape, stride=(1, 2), padding=1), x_dtype)
    X, K, DZ = (asarray(a, xp) for a in (x, kernel, dz))
    expected = reference(x, kernel, dz)
    z = xpconv.conv2d(X, K, **PARAMS)
    grads = xpconv.conv2d_backward(DZ, X, K, **PARAMS)
    for got, want, what in zip((z, *grads), expected, ("z", "dx", "dkernel", "dbias")):
        assert_close(got, want, xp=xp, dtype=xp.float64, tol=1e-6, what=what)  # float32 inputs' rounding


def test_integers_with_floats_take_the_librarys_promotion(eager_xp) -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(-5, 6, (2, 4, 6, 7))
    kernel = draw(rng, (6, 2, 3, 3), "float32")
    dz = draw(rng, xpconv.conv_output_shape(x.shape, kernel.shape, stride=(1, 2), padding=1), "float32")
    X, K, DZ = (asarray(a, eager_xp) for a in (x, kernel, dz))
    if is_array_api_strict_namespace(eager_xp):
        with pytest.raises(TypeError, match=r"no common dtype in their library \(x: .*int64, kernel: .*float32\)"):
            xpconv.conv2d(X, K, **PARAMS)
        return
    promoted = eager_xp.result_type(X, K)
    assert eager_xp.isdtype(promoted, "real floating")
    expected = reference(x, kernel, dz)
    z = xpconv.conv2d(X, K, **PARAMS)
    grads = xpconv.conv2d_backward(DZ, X, K, **PARAMS)
    for got, want, what in zip((z, *grads), expected, ("z", "dx", "dkernel", "dbias")):
        assert_close(got, want, xp=eager_xp, dtype=promoted, tol=1e-6, what=what)
