"""``python -m xpconv demo``: train a small CNN on scikit-learn's 8x8 digits with xpconv's gradients.

The network: Conv2d(1, 16, 3, padding=1) -> ReLU -> Conv2d(16, 32, 3, stride=2, padding=1) -> ReLU
-> Dense(512, 10) -> softmax cross-entropy, trained by SGD with momentum. Everything is written
against the array API, so ``--backend numpy|torch|cupy|jax`` runs the same code; no autograd is
used anywhere. The digits ship inside scikit-learn: nothing is downloaded.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._layer import Conv2d

Array = Any


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


def softmax_cross_entropy(logits: Array, onehot: Array, xp: Any) -> tuple[Array, Array]:
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


def to_numpy(a: Array) -> np.ndarray:
    if hasattr(a, "get"):  # CuPy
        return a.get()
    if hasattr(a, "detach"):  # torch, any device
        return a.detach().cpu().numpy()
    return np.asarray(a)


def predict(model: SmallCNN, images: Array) -> np.ndarray:
    return to_numpy(model.xp.argmax(model.forward(images), axis=1))


def _backend(name: str) -> tuple[Any, Any]:
    """(namespace, device) of a backend name."""
    if name == "numpy":
        import array_api_compat.numpy as xp

        return xp, None
    if name == "torch":
        import array_api_compat.torch as xp
        import torch

        return xp, "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cupy":
        import array_api_compat.cupy as xp

        return xp, None
    if name == "jax":
        import jax.numpy as xp

        return xp, None
    raise ValueError(f"backend must be numpy, torch, cupy or jax, got {name!r}")


def load_digits_split(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's 1797 8x8 digits scaled to [0, 1], split 80/20 by a seeded permutation."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise SystemExit('the demo needs scikit-learn: pip install "xpconv[demo]"') from None
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    order = np.random.default_rng(seed).permutation(len(images))
    cut = int(0.8 * len(images))
    train, test = order[:cut], order[cut:]
    return images[train], digits.target[train], images[test], digits.target[test]


def _progress(epoch: int, epochs: int, done: int, total: int, loss: float, accuracy: float, final: bool) -> None:
    width = 24
    filled = width * done // total
    line = (
        f"epoch {epoch:>2}/{epochs} [{'#' * filled}{'.' * (width - filled)}] {done:>3}/{total} "
        f"loss {loss:.4f} acc {accuracy:.4f}"
    )
    if sys.stdout.isatty():
        print("\r" + line, end="\n" if final else "", flush=True)
    elif final:
        print(line, flush=True)


def run_demo(
    backend: str = "numpy", epochs: int = 15, seed: int = 0, plot: str | None = None, batch: int = 32
) -> float:
    xp, device = _backend(backend)
    x_train, y_train, x_test, y_test = load_digits_split(seed)
    model = SmallCNN(xp, device=device, dtype=xp.float32, seed=seed)
    optimizer = SGD(lr=0.05, momentum=0.9)
    eye = np.eye(10, dtype=np.float32)
    rng = np.random.default_rng(seed)
    test_images = xp.asarray(x_test, device=device)
    history: dict[str, list[float]] = {"loss": [], "train accuracy": [], "test accuracy": []}
    print(f"xpconv demo: {len(x_train)} training and {len(x_test)} test digits (8x8), backend {backend}")
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(x_train))
        batches = [order[i : i + batch] for i in range(0, len(order), batch)]
        losses, correct, seen = [], 0, 0
        for done, rows in enumerate(batches, start=1):
            images = xp.asarray(x_train[rows], device=device)
            onehot = xp.asarray(eye[y_train[rows]], device=device)
            loss, logits = train_step(model, optimizer, images, onehot)
            correct += int(np.sum(to_numpy(xp.argmax(logits, axis=1)) == y_train[rows]))
            seen += len(rows)
            losses.append(loss)
            _progress(epoch, epochs, done, len(batches), float(np.mean(losses)), correct / seen, done == len(batches))
        test_accuracy = float(np.mean(predict(model, test_images) == y_test))
        history["loss"].append(float(np.mean(losses)))
        history["train accuracy"].append(correct / seen)
        history["test accuracy"].append(test_accuracy)
    predicted = predict(model, test_images)
    accuracy = float(np.mean(predicted == y_test))
    print(f"trained {epochs} epochs in {time.perf_counter() - start:.1f} s")
    if plot:
        _plot(plot, history, x_test, y_test, predicted, backend)
        print(f"wrote {plot}")
    print(f"test accuracy: {accuracy:.4f}")
    return accuracy


def _plot(path: str, history: dict[str, list[float]], images: np.ndarray, labels, predicted, backend: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit('--plot needs matplotlib: pip install "xpconv[demo]"') from None
    wrong = np.flatnonzero(predicted != labels)[:12]
    figure = plt.figure(figsize=(11, 4.2))
    grid = figure.add_gridspec(3, 8)
    curves = figure.add_subplot(grid[:, :4])
    epochs = range(1, len(history["loss"]) + 1)
    curves.plot(epochs, history["loss"], "o-", label="training loss")
    curves.set_xlabel("epoch")
    curves.set_ylabel("cross-entropy")
    accuracy = curves.twinx()
    accuracy.plot(epochs, history["train accuracy"], "s--", color="tab:green", label="training accuracy")
    accuracy.plot(epochs, history["test accuracy"], "^-", color="tab:red", label="test accuracy")
    accuracy.set_ylabel("accuracy")
    handles = curves.get_legend_handles_labels()[0] + accuracy.get_legend_handles_labels()[0]
    curves.legend(handles, [h.get_label() for h in handles], loc="center right")
    curves.set_title(f"xpconv CNN on 8x8 digits ({backend}): test accuracy {history['test accuracy'][-1]:.4f}")
    for slot, index in enumerate(wrong):
        axis = figure.add_subplot(grid[slot // 4, 4 + slot % 4])
        axis.imshow(images[index, 0], cmap="gray_r")
        axis.set_title(f"{labels[index]} read as {predicted[index]}", fontsize=9)
        axis.axis("off")
    if len(wrong):
        figure.text(0.75, 0.02, "misclassified test digits (true read as predicted)", ha="center", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m xpconv demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["numpy", "torch", "cupy", "jax"], default="numpy")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", metavar="PATH", help="write a PNG of the learning curves and misclassified digits")
    args = parser.parse_args(argv)
    run_demo(args.backend, args.epochs, args.seed, args.plot)
    return 0
