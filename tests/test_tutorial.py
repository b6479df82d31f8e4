"""The tutorial's printed results, reproduced exactly, and exact integer gradients of its example."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import NUMPY, asarray, assert_close, torch_reference

import xpconv

# Printed in the tutorial: a 3x5 matrix dilated by (2, 3).
X_3x5 = np.array([[1, 2, 3, 4, 5], [4, 5, 6, 7, 8], [5, 6, 7, 8, 9]])
X_3x5_DILATED = np.array(
    [
        [1, 0, 0, 2, 0, 0, 3, 0, 0, 4, 0, 0, 5],
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        [4, 0, 0, 5, 0, 0, 6, 0, 0, 7, 0, 0, 8],
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        [5, 0, 0, 6, 0, 0, 7, 0, 0, 8, 0, 0, 9],
    ]
)
# Printed in the tutorial: np.random.seed(10); randint(0, 10, (2, 2, 3, 3)) and its dilation by (2, 3).
BATCH = np.array(
    [
        [[[9, 4, 0], [1, 9, 0], [1, 8, 9]], [[0, 8, 6], [4, 3, 0], [4, 6, 8]]],
        [[[1, 8, 4], [1, 3, 6], [5, 3, 9]], [[6, 9, 1], [9, 4, 2], [6, 7, 8]]],
    ]
)
BATCH_DILATED = np.array(
    [
        [
            [[9, 0, 0, 4, 0, 0, 0], [0] * 7, [1, 0, 0, 9, 0, 0, 0], [0] * 7, [1, 0, 0, 8, 0, 0, 9]],
            [[0, 0, 0, 8, 0, 0, 6], [0] * 7, [4, 0, 0, 3, 0, 0, 0], [0] * 7, [4, 0, 0, 6, 0, 0, 8]],
        ],
        [
            [[1, 0, 0, 8, 0, 0, 4], [0] * 7, [1, 0, 0, 3, 0, 0, 6], [0] * 7, [5, 0, 0, 3, 0, 0, 9]],
            [[6, 0, 0, 9, 0, 0, 1], [0] * 7, [9, 0, 0, 4, 0, 0, 2], [0] * 7, [6, 0, 0, 7, 0, 0, 8]],
        ],
    ]
)
# Printed in the tutorial: the example's kernel rotated by 180 degrees.
KERNEL_ROTATED = np.array(
    [
        [
            [
                [7, 0, 3, 7, 0, 8, 2, 0],
                [8, 7, 9, 5, 4, 1, 6, 6],
                [1, 7, 2, 9, 0, 0, 1, 8],
                [7, 8, 2, 1, 0, 0, 2, 6],
                [3, 6, 6, 4, 8, 9, 0, 0],
            ]
        ],
        [
            [
                [9, 0, 2, 5, 1, 0, 6, 6],
                [9, 1, 5, 3, 8, 5, 7, 0],
                [0, 9, 3, 0, 2, 9, 3, 4],
                [6, 2, 1, 9, 6, 3, 8, 6],
                [6, 5, 6, 0, 5, 7, 8, 3],
            ]
        ],
    ]
)
STRIDE = (7, 4)


def tutorial_example():
    """The example's arrays, drawn as the tutorial draws them."""
    np.random.seed(10)
    x = np.random.randint(0, 10, size=(256, 1, 36, 47))
    kernel = np.random.randint(0, 10, size=(2, 1, 5, 8))
    return x, kernel


def test_dilation_tables(xp) -> None:
    assert_close(xpconv.dilate(asarray(X_3x5, xp), (2, 3)), X_3x5_DILATED, xp=xp, exact=True)
    assert_close(xpconv.dilate(asarray(BATCH, xp), (2, 3)), BATCH_DILATED, xp=xp, exact=True)


def test_tutorial_batch_is_what_it_printed() -> None:
    np.random.seed(10)
    assert np.array_equal(np.random.randint(0, 10, size=(2, 2, 3, 3)), BATCH)


def test_rotation(xp) -> None:
    k1 = asarray(np.arange(1, 10).reshape(3, 3), xp)
    assert_close(xpconv.rotate180(k1), [[9, 8, 7], [6, 5, 4], [3, 2, 1]], xp=xp, exact=True)
    _, kernel = tutorial_example()
    assert_close(xpconv.rotate180(asarray(kernel, xp)), KERNEL_ROTATED, xp=xp, exact=True)


def test_example_shapes() -> None:
    x, kernel = tutorial_example()
    z = xpconv.conv2d(x, kernel, stride=STRIDE, padding="same")
    assert z.shape == (256, 2, 36, 47)  # 'same' keeps the input size at stride (7, 4)
    pads = xpconv.resolve_padding("same", (36, 47), (5, 8), STRIDE, (1, 1))
    assert xpconv.pad(x, pads).shape == (256, 1, 250, 192)
    assert xpconv.dilate(z, STRIDE).shape == (256, 2, 246, 185)
    dx, dkernel, dbias = xpconv.conv2d_backward(z, x, kernel, stride=STRIDE, padding="same", bias="untied")
    assert (dx.shape, dkernel.shape, dbias.shape) == ((256, 1, 36, 47), (2, 1, 5, 8), (2, 36, 47))


@pytest.mark.parametrize("method", ["auto", "dilate"])
def test_exact_integer_gradients_of_the_example(method: str) -> None:
    """Integer inputs give integer results, equal to a float64 reference (all values are exact there)."""
    x, kernel = tutorial_example()
    if method == "dilate":
        x = x[:16]  # the tutorial's method multiplies every inserted zero: keep its integer run short
    np.random.seed(11)
    dz = np.random.randint(0, 10, size=(x.shape[0], 2, 36, 47))
    pads = xpconv.resolve_padding("same", (36, 47), (5, 8), STRIDE, (1, 1))
    assert pads == ((107, 107), (72, 73))  # the tutorial's Xp: 36 + 214 = 250, 47 + 145 = 192
    ref = torch_reference(x, kernel, dz, stride=STRIDE, pads=pads, dilation=1, groups=1)

    z = xpconv.conv2d(x, kernel, stride=STRIDE, padding="same")
    dx, dkernel, dbias = xpconv.conv2d_backward(
        dz, x, kernel, stride=STRIDE, padding="same", bias="untied", method=method
    )
    for name, got, expected in [
        ("z", z, ref.z),
        ("dx", dx, ref.dx),
        ("dkernel", dkernel, ref.dkernel),
        ("dbias", dbias, ref.dbias_untied),
    ]:
        assert_close(got, expected.astype(np.int64), xp=NUMPY, exact=True, what=name)
        assert np.array_equal(expected, np.round(expected)), name  # the reference itself is exact
