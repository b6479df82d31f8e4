"""A user's script that calls every public function as documented; the type check must pass on it.

``tests/test_typing.py`` runs mypy on it (and on ``src/``); ``nox -s typecheck`` and CI run that test.
It also runs as a plain script (the test does that too), so every call here is a real, working one.
"""

from __future__ import annotations

import numpy as np

import xpconv
from xpconv.network import SGD, SmallCNN, predict, softmax_cross_entropy, train_step
from xpconv.typing import Array, ConvOptions, Padding

rng = np.random.default_rng(0)
options: ConvOptions = {"stride": 2, "padding": "same", "dilation": 1, "groups": 1, "method": "auto"}
padding: Padding = ((1, 0), (0, 1))

for ndim, forward, backward, input_grad, weight_grad in (
    (1, xpconv.conv1d, xpconv.conv1d_backward, xpconv.conv1d_input_grad, xpconv.conv1d_weight_grad),
    (2, xpconv.conv2d, xpconv.conv2d_backward, xpconv.conv2d_input_grad, xpconv.conv2d_weight_grad),
    (3, xpconv.conv3d, xpconv.conv3d_backward, xpconv.conv3d_input_grad, xpconv.conv3d_weight_grad),
    (2, xpconv.conv, xpconv.conv_backward, xpconv.conv_input_grad, xpconv.conv_weight_grad),
):
    x: Array = rng.standard_normal((2, 4, *(6,) * ndim))
    kernel: Array = rng.standard_normal((6, 4, *(3,) * ndim))
    bias = rng.standard_normal(6)
    z = forward(x, kernel, bias, **options)
    assert z.shape == xpconv.conv_output_shape(x.shape, kernel.shape, stride=2, padding="same")
    dz = np.ones_like(z)
    dx, dkernel, dbias = backward(dz, x, kernel, bias=bias, **options)
    dx_only = input_grad(dz, kernel, x.shape, stride=2, padding="same", workspace_bytes=2**20)
    dkernel_only = weight_grad(dz, x, kernel.shape, stride=2, padding="same", layout="channels_first")
    assert dx.shape == dx_only.shape == x.shape and dkernel.shape == dkernel_only.shape == kernel.shape
    assert dbias is not None and dbias.shape == bias.shape

image = rng.standard_normal((1, 3, 5, 5))
z2 = xpconv.conv2d(image, rng.standard_normal((4, 3, 2, 2)), padding=padding, method="direct")
z_last = xpconv.conv2d(np.moveaxis(image, 1, -1), np.ones((4, 3, 3, 3)), layout="channels_last", padding=1)
grads = xpconv.conv2d_backward(np.ones((1, 5, 5, 4)), np.moveaxis(image, 1, -1), np.ones((4, 3, 3, 3)), padding=1,
                               layout="channels_last", bias="untied")  # fmt: skip

for ndim, transpose, transpose_backward in (
    (1, xpconv.conv_transpose1d, xpconv.conv_transpose1d_backward),
    (2, xpconv.conv_transpose2d, xpconv.conv_transpose2d_backward),
    (3, xpconv.conv_transpose3d, xpconv.conv_transpose3d_backward),
    (2, xpconv.conv_transpose, xpconv.conv_transpose_backward),
):
    x = rng.standard_normal((2, 4, *(3,) * ndim))
    kernel = rng.standard_normal((4, 3, *(3,) * ndim))
    up = transpose(x, kernel, None, stride=2, padding=1, output_padding=1, groups=1)
    dx_t, dkernel_t, dbias_t = transpose_backward(np.ones_like(up), x, kernel, stride=2, padding=1, output_padding=1)
    assert up.shape[2:] == (6,) * ndim and dx_t.shape == x.shape and dbias_t is not None

assert xpconv.dilate(np.ones((2, 2)), 2).shape == (3, 3)
assert xpconv.pad(np.ones((2, 2)), ((1, 1), (0, 0))).shape == (4, 2)
assert xpconv.rotate180(np.arange(4.0).reshape(2, 2))[0, 0] == 3.0
assert xpconv.windows(np.ones((4, 4)), 2).shape == (3, 3, 2, 2)
assert xpconv.resolve_padding("same", (5,), (3,), (1,), (1,)) == ((1, 1),)
assert "winograd" in xpconv.METHODS and "channels_last" in xpconv.LAYOUTS

layers = [
    xpconv.Conv1d(2, 3, 3, stride=1, padding=1, dilation=1, groups=1, bias=True, dtype=np.float64, seed=0),
    xpconv.Conv2d(2, 3, (3, 3), padding="same", method="winograd", dtype=np.float64, seed=0),
    xpconv.Conv3d(2, 3, 1, bias=False, seed=0),
    xpconv.ConvTranspose1d(2, 3, 2, stride=2, output_padding=1, seed=0),
    xpconv.ConvTranspose2d(2, 4, 3, stride=2, padding=1, output_padding=1, groups=2, dilation=1, seed=0),
    xpconv.ConvTranspose3d(2, 3, 2, stride=2, seed=0),
]
for layer in layers:
    sample = np.ones((1, 2, *(4,) * layer.ndim), dtype=np.float32)
    out = layer.forward(sample)
    assert layer.backward(np.ones_like(out)).shape == sample.shape and layer.grad_weight is not None

model, optimizer = SmallCNN(np, dtype=np.float64, seed=0), SGD(lr=0.05, momentum=0.9)
digits, onehot = rng.random((4, 1, 8, 8)), np.eye(10)[[1, 2, 3, 4]]
loss, logits = train_step(model, optimizer, digits, onehot)
assert predict(model, digits).shape == (4,) and float(softmax_cross_entropy(logits, onehot, np)[0]) > 0
print("user script ran")
