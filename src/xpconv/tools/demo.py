"""``python -m xpconv demo``: train a small CNN on scikit-learn's 8x8 digits with xpconv's gradients.

The network: Conv2d(1, 16, 3, padding=1) -> ReLU -> Conv2d(16, 32, 3, stride=2, padding=1) -> ReLU
-> Dense(512, 10) -> softmax cross-entropy, trained by SGD with momentum. Everything is written
against the array API, so ``--backend numpy|torch|cupy|jax`` runs the same code; no autograd is
used anywhere. The digits ship inside scikit-learn: nothing is downloaded.
"""

from __future__ import annotations

import importlib
import sys
import time
from typing import Any

import numpy as np

from xpconv.network import SGD, SmallCNN, predict, train_step
from xpconv.typing import Array


def to_numpy(a: Array) -> np.ndarray:
    if hasattr(a, "get"):  # CuPy
        return a.get()
    if hasattr(a, "detach"):  # torch, any device
        return a.detach().cpu().numpy()
    return np.asarray(a)


def _backend(name: str) -> tuple[Any, Any]:
    """(namespace, device) of a backend name."""
    modules = {"numpy": "array_api_compat.numpy", "torch": "array_api_compat.torch", "cupy": "array_api_compat.cupy"}
    if name not in (*modules, "jax"):
        raise ValueError(f"backend must be numpy, torch, cupy or jax, got {name!r}")
    xp = importlib.import_module(modules.get(name, "jax.numpy"))
    if name == "torch":
        import torch

        return xp, "cuda" if torch.cuda.is_available() else "cpu"
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
        test_accuracy = float(np.mean(to_numpy(predict(model, test_images)) == y_test))
        history["loss"].append(float(np.mean(losses)))
        history["train accuracy"].append(correct / seen)
        history["test accuracy"].append(test_accuracy)
    predicted = to_numpy(predict(model, test_images))
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
    curves.legend(handles, [str(h.get_label()) for h in handles], loc="center right")
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
