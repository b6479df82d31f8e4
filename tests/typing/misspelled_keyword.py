"""A user's mistake the type check must report: ``strides`` for ``stride`` (see tests/test_typing.py)."""

import numpy as np

import xpconv

x, k = np.ones((1, 1, 4, 4)), np.ones((1, 1, 2, 2))
xpconv.conv2d(x, k, strides=2)
