"""A whole training loop: xpconv's network and torch.nn + autograd, same start, same weights after SGD."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close, installed, to_numpy

import xpconv
from xpconv.network import SGD, SmallCNN, train_step

torch = pytest.importorskip("torch", reason="torch.nn + autograd is the reference")
STEPS, LR, MOMENTUM = 6, 0.05, 0.9


def torch_twin(model: SmallCNN) -> torch.nn.Module:
    """torch.nn layers with the xpconv model's initial weights, float64."""
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, stride=2, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(512, 10),
    ).double()
    values = {name: torch.tensor(to_numpy(v)) for name, v in model.parameters().items()}
    with torch.no_grad():
        for layer, prefix in ((net[0], "conv1"), (net[2], "conv2"), (net[5], "dense")):
            layer.weight.copy_(values[f"{prefix}.weight"])
            layer.bias.copy_(values[f"{prefix}.bias"])
    return net


@pytest.mark.parametrize(
    "library",
    [
        "numpy",
        "torch",
        pytest.param(
            "array_api_strict", marks=pytest.mark.skipif(not installed("array_api_strict"), reason="not installed")
        ),
    ],
)
def test_sgd_training_matches_torch_autograd(library: str) -> None:
    xp = {"numpy": np, "torch": torch}.get(library) or __import__(library)
    model = SmallCNN(xp, dtype=xp.float64, seed=3)
    net = torch_twin(model)
    reference_optimizer = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
    optimizer = SGD(lr=LR, momentum=MOMENTUM)
    rng = np.random.default_rng(0)
    for _ in range(STEPS):
        images = rng.random((16, 1, 8, 8))
        labels = rng.integers(0, 10, 16)
        loss, _ = train_step(model, optimizer, xp.asarray(images), xp.asarray(np.eye(10)[labels]))

        reference_optimizer.zero_grad()
        reference_loss = torch.nn.functional.cross_entropy(net(torch.tensor(images)), torch.tensor(labels))
        reference_loss.backward()
        reference_optimizer.step()
        assert abs(loss - reference_loss.item()) <= 1e-12 * abs(reference_loss.item())

    expected = {
        "conv1.weight": net[0].weight, "conv1.bias": net[0].bias,
        "conv2.weight": net[2].weight, "conv2.bias": net[2].bias,
        "dense.weight": net[5].weight, "dense.bias": net[5].bias,
    }  # fmt: skip
    for name, value in model.parameters().items():
        want = expected[name].detach().numpy()
        assert_close(value, want, xp=model.xp, tol=1e-10, what=f"{name} after {STEPS} steps")


def test_conv2d_layer_initialisation_matches_torch_bounds() -> None:
    layer = xpconv.Conv2d(6, 8, (3, 5), groups=2, seed=0)
    bound = 1 / np.sqrt(3 * 3 * 5)
    assert layer.weight.shape == (8, 3, 3, 5) and layer.bias.shape == (8,)
    assert np.all(np.abs(layer.weight) <= bound) and np.all(np.abs(layer.bias) <= bound)
    assert np.max(np.abs(layer.weight)) > 0.9 * bound  # uniform over the whole range, not a narrower one
    assert xpconv.Conv2d(6, 8, 3, bias=False).bias is None
    with pytest.raises(RuntimeError, match="forward call first"):
        xpconv.Conv2d(1, 1, 1).backward(np.ones((1, 1, 1, 1)))
    with pytest.raises(ValueError, match="groups=4 must divide"):
        xpconv.Conv2d(6, 8, 3, groups=4)


def test_demo_command_trains_and_plots(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("sklearn", reason="the demo's digits come with scikit-learn (extra 'demo')")
    pytest.importorskip("matplotlib", reason="the demo's plot needs matplotlib (extra 'demo')")
    from xpconv.tools.cli import main

    assert main(["demo", "--epochs", "2", "--plot", str(tmp_path / "demo.png")]) == 0
    output = capsys.readouterr().out
    last = output.strip().splitlines()[-1]
    assert last.startswith("test accuracy: ")
    assert float(last.split(": ")[1]) > 0.8  # two epochs; the full 15 reach 0.98 (docs/getting-started.md)
    assert (tmp_path / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
