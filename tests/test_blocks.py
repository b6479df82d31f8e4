"""dilate, pad, rotate180 and windows against definitions written with plain NumPy loops and slicing."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from helpers import asarray, assert_close

import xpconv


def dilate_by_assignment(x: np.ndarray, rates: tuple[int, ...]) -> np.ndarray:
    lead = x.ndim - len(rates)
    shape = x.shape[:lead] + tuple((n - 1) * r + 1 if n else 0 for n, r in zip(x.shape[lead:], rates))
    out = np.zeros(shape, dtype=x.dtype)
    out[(..., *(slice(None, None, r) for r in rates))] = x
    return out


def windows_by_loops(x: np.ndarray, window, stride, dilation) -> np.ndarray:
    n = len(window)
    sizes = x.shape[x.ndim - n :]
    out = [(size - d * (k - 1) - 1) // s + 1 for size, k, s, d in zip(sizes, window, stride, dilation)]
    result = np.zeros(x.shape[: x.ndim - n] + tuple(out) + tuple(window), dtype=x.dtype)
    for o in itertools.product(*(range(v) for v in out)):
        for k in itertools.product(*(range(v) for v in window)):
            source = tuple(oi * s + ki * d for oi, ki, s, d in zip(o, k, stride, dilation))
            result[(..., *o, *k)] = x[(..., *source)]
    return result


@pytest.mark.parametrize(
    "shape, rates",
    [((3, 5), (2, 3)), ((2, 3, 4, 1), (3, 2)), ((4,), (3,)), ((2, 3, 2, 3), (2, 1, 3)), ((2, 3), (1, 1))],
)
def test_dilate(xp, shape, rates) -> None:
    x = np.arange(1, 1 + int(np.prod(shape)), dtype=np.float64).reshape(shape)
    assert_close(xpconv.dilate(asarray(x, xp), rates), dilate_by_assignment(x, rates), xp=xp, exact=True)


def test_dilate_int_rate_means_last_two_axes() -> None:
    x = np.ones((2, 3, 3))
    assert xpconv.dilate(x, 2).shape == (2, 5, 5)


@pytest.mark.parametrize("pads", [((1, 2), (0, 3)), ((0, 0),), ((2, 0), (0, 0), (1, 1))])
def test_pad(xp, pads) -> None:
    x = np.arange(24.0).reshape(2, 3, 4)
    expected = np.pad(x, ((0, 0),) * (x.ndim - len(pads)) + tuple(pads))
    assert_close(xpconv.pad(asarray(x, xp), pads), expected, xp=xp, exact=True)


def test_rotate180_reverses_both_spatial_axes(xp) -> None:
    kernel = np.arange(2 * 3 * 4 * 5.0).reshape(2, 3, 4, 5)
    assert_close(xpconv.rotate180(asarray(kernel, xp)), kernel[:, :, ::-1, ::-1], xp=xp, exact=True)


@pytest.mark.parametrize(
    "shape, window, stride, dilation",
    [
        ((2, 3, 7, 8), (3, 2), (2, 3), (1, 2)),
        ((5, 6), (2, 2), (1, 1), (1, 1)),
        ((2, 9), (3,), (4,), (2,)),
        ((2, 5, 6, 7), (2, 3, 2), (2, 1, 3), (2, 1, 1)),
    ],
)
def test_windows(xp, shape, window, stride, dilation) -> None:
    x = np.random.default_rng(0).standard_normal(shape)
    assert_close(
        xpconv.windows(asarray(x, xp), window, stride, dilation),
        windows_by_loops(x, window, stride, dilation),
        xp=xp,
        exact=True,
    )


def test_numpy_windows_are_read_only_views() -> None:
    x = np.arange(30.0).reshape(5, 6)
    view = xpconv.windows(x, (2, 3), stride=(1, 2))
    assert np.shares_memory(view, x)
    assert not view.flags.writeable


def test_torch_windows_are_views() -> None:
    torch = pytest.importorskip("torch")
    x = torch.arange(30.0).reshape(5, 6)
    view = xpconv.windows(x, (2, 3), stride=(1, 2), dilation=(2, 1))
    assert view.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda x: xpconv.dilate(x, 0), ValueError, "rate"),
        (lambda x: xpconv.dilate(x, (2, 2, 2, 2, 2)), ValueError, "rate"),
        (lambda x: xpconv.dilate(x, 1.5), TypeError, "rate"),
        (lambda x: xpconv.pad(x, ((1, -1),)), ValueError, "pads"),
        (lambda x: xpconv.pad(x, ((1, 2, 3),)), ValueError, "pads"),
        (lambda x: xpconv.pad(x, 3), TypeError, "pads"),
        (lambda x: xpconv.windows(x, (5, 1)), ValueError, "window"),
        (lambda x: xpconv.windows(x, 2, stride=0), ValueError, "stride"),
        (lambda x: xpconv.windows(x, 2, dilation=(1, 1, 1)), ValueError, "dilation"),
        (lambda x: xpconv.rotate180(x[0]), ValueError, "kernel"),
        (lambda x: xpconv.dilate([[1, 2]], 2), TypeError, "x"),
    ],
)
def test_block_errors(call, error, words) -> None:
    with pytest.raises(error, match=words):
        call(np.ones((3, 4)))
