"""Integer inputs: exact results in the default integer dtype, however small the input dtype.

Values are drawn so that every sum of products overflows the input dtype but stays far below 2**53,
where torch autograd in float64 is exact: its results, rounded, are the exact references.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
from array_api_compat import is_torch_namespace
from helpers import asarray, assert_close, torch_reference, torch_transpose_reference

import xpconv

DTYPES = ["int8", "uint8", "int16", "uint16", "int32", "int64"]


def draw(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """Values near the top of the dtype's range, so that sums of products overflow it (int32 too:
    products of 50,000 exceed 2**31), and stay exact in float64."""
    info = np.iinfo(dtype)
    high = min(info.max, {8: 120, 16: 3000}.get(info.bits, 50_000))
    low = 0 if info.min == 0 else -high
    return rng.integers(low, high + 1, shape).astype(dtype)


def expected_dtype(xp, dtype: str) -> tuple[Any, str]:
    """The library and the dtype of the results: the standard's sum gives the default integer
    (int64), unsigned for unsigned input; torch has no uint64 arithmetic and its own sum gives int64."""
    return xp, "uint64" if dtype.startswith("u") and not is_torch_namespace(xp) else "int64"


def refused_on_this_device(xp, x, kernel) -> bool:
    """torch on CUDA cannot multiply integer matrices: there xpconv raises the documented TypeError."""
    if not (is_torch_namespace(xp) and x.device.type != "cpu"):
        return False
    with pytest.raises(TypeError, match=r"torch cannot multiply integer matrices on cuda"):
        xpconv.conv(x, kernel)
    return True


def check_exact(got, expected: np.ndarray, result: tuple[Any, str], what: str) -> None:
    xp, dtype = result
    assert_close(got, np.rint(expected).astype(dtype), xp=xp, exact=True, what=what)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_every_pass_is_exact(eager_xp, dtype: str) -> None:
    rng = np.random.default_rng(DTYPES.index(dtype))
    x, kernel = draw(rng, (2, 4, 7, 6), dtype), draw(rng, (6, 2, 3, 3), dtype)
    params = dict(stride=(1, 2), padding=1, groups=2)
    z_shape = (2, 6, 7, 3)
    dz, bias = draw(rng, z_shape, dtype), draw(rng, (6,), dtype)
    ref = torch_reference(
        *(a.astype(np.float64) for a in (x, kernel, dz)), stride=(1, 2), pads=((1, 1), (1, 1)), dilation=1, groups=2
    )
    result = expected_dtype(eager_xp, dtype)
    X, K, DZ, B = (asarray(a, eager_xp) for a in (x, kernel, dz, bias))
    if refused_on_this_device(eager_xp, X, K):
        return

    if dtype != "int64":  # int64 is the accumulator itself
        assert float(np.max(np.abs(ref.z))) > np.iinfo(dtype).max, "the draw must overflow the input dtype"
    check_exact(xpconv.conv2d(X, K, B, **params), ref.z + bias[:, None, None], result, "z")
    for method in ("auto", "direct", "dilate"):
        dx, dk, db = xpconv.conv2d_backward(DZ, X, K, method=method, **params)
        check_exact(dx, ref.dx, result, f"dx {method}")
        check_exact(dk, ref.dkernel, result, f"dkernel {method}")
        check_exact(db, ref.dbias_tied, result, f"dbias {method}")
    _, _, untied = xpconv.conv2d_backward(DZ, X, K, bias="untied", **params)
    check_exact(untied, ref.dbias_untied, result, "dbias untied")


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
def test_nd_and_transposed_are_exact(eager_xp, dtype: str) -> None:
    rng = np.random.default_rng(7)
    result = expected_dtype(eager_xp, dtype)
    for size, ksize in (((9,), (3,)), ((4, 5, 4), (2, 3, 2))):
        x, kernel = draw(rng, (2, 3, *size), dtype), draw(rng, (4, 3, *ksize), dtype)
        out = tuple(n - k + 1 for n, k in zip(size, ksize))
        dz = draw(rng, (2, 4, *out), dtype)
        ref = torch_reference(
            *(a.astype(np.float64) for a in (x, kernel, dz)), stride=1, pads=((0, 0),) * len(size), dilation=1, groups=1
        )
        X, K, DZ = (asarray(a, eager_xp) for a in (x, kernel, dz))
        if refused_on_this_device(eager_xp, X, K):
            return
        check_exact(xpconv.conv(X, K), ref.z, result, f"{len(size)}-D z")
        dx, dk, _ = xpconv.conv_backward(DZ, X, K)
        check_exact(dx, ref.dx, result, f"{len(size)}-D dx")
        check_exact(dk, ref.dkernel, result, f"{len(size)}-D dkernel")

    x, kernel = draw(rng, (2, 3, 4, 5), dtype), draw(rng, (3, 2, 3, 3), dtype)
    params = dict(stride=2, padding=1, output_padding=1, dilation=1, groups=1)
    dz = draw(rng, (2, 2, 8, 10), dtype)
    ref = torch_transpose_reference(*(a.astype(np.float64) for a in (x, kernel, dz)), **params)
    X, K, DZ = (asarray(a, eager_xp) for a in (x, kernel, dz))
    check_exact(xpconv.conv_transpose(X, K, **params), ref.z, result, "transposed z")
    dx, dk, _ = xpconv.conv_transpose_backward(DZ, X, K, **params)
    check_exact(dx, ref.dx, result, "transposed dx")
    check_exact(dk, ref.dkernel, result, "transposed dkernel")


def test_the_issue_examples() -> None:
    """int8 100 * 100 over a 3x3 window wrapped to -112; uint8 200 * 2 to 16."""
    z = xpconv.conv2d(np.full((1, 1, 3, 3), 100, np.int8), np.full((1, 1, 3, 3), 100, np.int8))
    assert z.dtype == np.int64 and int(z[0, 0, 0, 0]) == 90000
    z = xpconv.conv2d(np.full((1, 1, 3, 3), 200, np.uint8), np.full((1, 1, 3, 3), 2, np.uint8))
    assert z.dtype == np.uint64 and int(z[0, 0, 0, 0]) == 3600


@pytest.mark.parametrize(
    "values",
    [
        np.array([[[[object()]]]]),
        np.array([[[["a"]]]]),
        np.array([[[["2020-01-01"]]]], dtype="datetime64[D]"),
        np.ones((1, 1, 1, 1), dtype=bool),
    ],
    ids=["object", "str", "datetime", "bool"],
)
def test_non_numeric_dtypes_are_type_errors(values: np.ndarray) -> None:
    got = re.escape(str(values.dtype))
    with pytest.raises(TypeError, match=rf"x must have a floating, complex or integer dtype, got {got}"):
        xpconv.conv2d(values, np.ones((1, 1, 1, 1)))
    with pytest.raises(TypeError, match=rf"kernel must have a floating, complex or integer dtype, got {got}"):
        xpconv.conv2d_backward(np.ones((1, 1, 1, 1)), np.ones((1, 1, 1, 1)), values)
