"""A small CNN, its loss and an optimizer, written against the array API with xpconv's layers.

A documented example of training without autograd, and the network of ``python -m xpconv demo``
(scikit-learn's 8x8 digits): Conv2d(1, 16, 3, padding=1) -> ReLU -> Conv2d(16, 32, 3, stride=2,
padding=1) -> ReLU -> Dense(512, 10) -> softmax cross-entropy, trained by SGD with momentum. The
same code runs on NumPy, torch, CuPy or JAX arrays: pass ``xp`` (and ``device``).

>>> import numpy as np
>>> from xpconv.network import SGD, SmallCNN, train_step
>>> model, optimizer = SmallCNN(np, dtype=np.float64), SGD(lr=0.1, momentum=0.9)
>>> images, labels = np.random.default_rng(0).random((4, 1, 8, 8)), np.eye(10)[[0, 1, 2, 3]]
>>> first, _ = train_step(model, optimizer, images, labels)
>>> later = [train_step(model, optimizer, images, labels)[0] for _ in range(20)]
>>> later[-1] < first
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._layers import Conv2d
from .typing import Array, Namespace

__all__ = ["SGD", "SmallCNN", "predict", "softmax_cross_entropy", "train_step"]


class SmallCNN:
    """Two xpconv Conv2d layers, ReLU, a dense layer; forward keeps what backward needs."""

    def __init__(self, xp: Any, *, device: Any = None, dtype: Any = None, seed: int = 0) -> None:
        self.conv1 = Conv2d(1, 16, 3, padding=1, xp=xp, device=device, dtype=dtype, seed=seed)
        self.conv2 = Conv2d(16, 32, 3, stride=2, padding=1, xp=xp, device=device, dtype=dtype, seed=seed + 1)
        self.xp = self.conv1.xp
        rng = np.random.default_rng(seed + 2)
        bound = 1 / math.sqrt(32 * 4 * 4)  # torch.nn.Linear's initialisation
        dtype = self.conv1.weight.dtype
        self.dense_weight = self.xp.asarray(rng.uniform(-bound, bound, (10, 512)), dtype=dtype, device=device)
        self.dense_bias = self.xp.asarray(rng.uniform(-bound, bound, 10), dtype=dtype, device=device)

    def parameters(self) -> dict[str, Array]:
        return {
            "conv1.weight": self.conv1.weight,
            "conv1.bias": self.conv1.bias,
            "conv2.weight": self.conv2.weight,
            "conv2.bias": self.conv2.bias,
            "dense.weight": self.dense_weight,
            "dense.bias": self.dense_bias,
        }

    def set_parameters(self, values: dict[str, Array]) -> None:
        self.conv1.weight, self.conv1.bias = values["conv1.weight"], values["conv1.bias"]
        self.conv2.weight, self.conv2.bias = values["conv2.weight"], values["conv2.bias"]
        self.dense_weight, self.dense_bias = values["dense.weight"], values["dense.bias"]

    def forward(self, images: Array) -> Array:
        """Logits ``(N, 10)`` of images ``(N, 1, 8, 8)``."""
        xp = self.xp
        self._a1 = self.conv1.forward(images)
        h1 = xp.where(self._a1 > 0, self._a1, xp.zeros_like(self._a1))
        self._a2 = self.conv2.forward(h1)
        h2 = xp.where(self._a2 > 0, self._a2, xp.zeros_like(self._a2))
        self._flat = xp.reshape(h2, (h2.shape[0], -1))
        return self._flat @ xp.matrix_transpose(self.dense_weight) + self.dense_bias

    def backward(self, dlogits: Array) -> dict[str, Array]:
        """Gradients of every parameter, from the loss gradient with respect to the logits."""
        xp = self.xp
        grads = {"dense.weight": xp.matrix_transpose(dlogits) @ self._flat, "dense.bias": xp.sum(dlogits, axis=0)}
        dh2 = xp.reshape(dlogits @ self.dense_weight, self._a2.shape)
        dh1 = self.conv2.backward(xp.where(self._a2 > 0, dh2, xp.zeros_like(dh2)))
        self.conv1.backward(xp.where(self._a1 > 0, dh1, xp.zeros_like(dh1)))
        grads |= {
            "conv1.weight": self.conv1.grad_weight,
            "conv1.bias": self.conv1.grad_bias,
            "conv2.weight": self.conv2.grad_weight,
            "conv2.bias": self.conv2.grad_bias,
        }
        return grads


def softmax_cross_entropy(logits: Array, onehot: Array, xp: Namespace) -> tuple[Array, Array]:
    """Mean cross-entropy and its gradient with respect to the logits."""
    shifted = logits - xp.max(logits, axis=1, keepdims=True)
    log_probs = shifted - xp.log(xp.sum(xp.exp(shifted), axis=1, keepdims=True))
    n = logits.shape[0]
    loss = -xp.sum(onehot * log_probs) / n
    return loss, (xp.exp(log_probs) - onehot) / n


@dataclass
class SGD:
    """SGD with momentum, as ``torch.optim.SGD(lr, momentum)``: ``v = m v + g``, ``p = p - lr v``."""

    lr: float
    momentum: float
    velocity: dict[str, Array] = field(default_factory=dict)

    def step(self, parameters: dict[str, Array], grads: dict[str, Array]) -> dict[str, Array]:
        updated = {}
        for name, value in parameters.items():
            v = grads[name] if name not in self.velocity else self.momentum * self.velocity[name] + grads[name]
            self.velocity[name] = v
            updated[name] = value - self.lr * v
        return updated


def train_step(model: SmallCNN, optimizer: SGD, images: Array, onehot: Array) -> tuple[float, Array]:
    """One SGD step on a batch; returns the batch's loss and its logits (before the step)."""
    logits = model.forward(images)
    loss, dlogits = softmax_cross_entropy(logits, onehot, model.xp)
    model.set_parameters(optimizer.step(model.parameters(), model.backward(dlogits)))
    return float(loss), logits


def predict(model: SmallCNN, images: Array) -> Array:
    """The predicted class of each image, an int array of the model's library."""
    return model.xp.argmax(model.forward(images), axis=1)
