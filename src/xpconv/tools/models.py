"""``python -m xpconv bench --suite models``: one training step of model blocks, as written and through xpconv.

Each model is a block of a network people train (RepLKNet's 31x31 depthwise stage, ConvNeXt's 7x7
block, a ResNet basic block, a small 3-D UNet, a raw-audio filterbank front end, a complex-valued
MRI block), built twice: as written in torch, and the same model after ``xpconv.torch.convert``; in
Flax, ``nnx.Conv`` with and without ``conv_general_dilated=xpconv.jax.conv_general_dilated``, under
``nnx.jit``. A step is the forward pass, a mean-square loss, the backward pass and an SGD update.

Every side runs in a worker process of its own (torch's and JAX's thread pools never share one), the
sides take turns in a rotating order, and the median over the rounds is reported, with the ratio
of the converted model's time over the model as written.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PAUSE_SECONDS = 0.2


@dataclass(frozen=True)
class Model:
    """A block of a model: ``framework`` "torch" or "flax", its input shape and dtype, and the bound
    the issue set for converted / as written."""

    name: str
    framework: str
    input_shape: tuple[int, ...]
    description: str
    target: float
    dtype: str = "float32"


MODELS = [
    Model("replknet31", "torch", (4, 64, 56, 56), "31x31 depthwise + BN + 1x1, 64 ch, 56x56, batch 4", 0.2),
    Model("convnext7", "torch", (4, 96, 56, 56), "7x7 depthwise + LayerNorm + MLP (x4), 96 ch, 56x56, batch 4", 0.8),
    Model("resnet_basic", "torch", (8, 64, 56, 56), "two 3x3 convs + BN + ReLU, 64 ch, 56x56, batch 8", 1.05),
    Model("unet3d", "torch", (2, 1, 32, 32, 32), "3-D UNet: 3x3x3 convs, one down and up level, 32^3, batch 2", 1.05),
    Model(
        "audio_frontend", "torch", (8, 1, 16000), "401-tap filterbank (64) + 3-tap convs, 1 s at 16 kHz, batch 8", 1.05
    ),
    Model(
        "complex_mri", "torch", (2, 8, 64, 64), "two complex 15x15 convs (8 coils), 64x64, batch 2", 1.05, "complex64"
    ),
    Model("flax_replknet31", "flax", (4, 56, 56, 64), "nnx: 31x31 depthwise + 1x1, 64 ch, 56x56, batch 4, jit", 0.2),
    Model("flax_resnet_basic", "flax", (8, 56, 56, 64), "nnx: two 3x3 convs + ReLU, 64 ch, 56x56, batch 8, jit", 1.1),
]
SIDES = {"torch": ("torch as written", "torch converted"), "flax": ("flax as written", "flax xpconv")}


# --- torch models --------------------------------------------------------------------------------


def _torch_model(name: str) -> Any:
    import torch
    from torch import nn

    class Residual(nn.Module):
        def __init__(self, *layers: nn.Module) -> None:
            super().__init__()
            self.body = nn.Sequential(*layers)

        def forward(self, x):
            return x + self.body(x)

    class ChannelsLastNorm(nn.Module):
        def __init__(self, channels: int) -> None:
            super().__init__()
            self.norm = nn.LayerNorm(channels)

        def forward(self, x):
            return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    class UNet3d(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encode = nn.Sequential(nn.Conv3d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv3d(16, 16, 3, padding=1))
            self.down = nn.Sequential(nn.Conv3d(16, 32, 3, stride=2, padding=1), nn.ReLU())
            self.middle = nn.Sequential(nn.Conv3d(32, 32, 3, padding=1), nn.ReLU())
            self.up = nn.ConvTranspose3d(32, 16, 2, stride=2)
            self.decode = nn.Sequential(nn.Conv3d(32, 16, 3, padding=1), nn.ReLU(), nn.Conv3d(16, 1, 1))

        def forward(self, x):
            skip = self.encode(x)
            return self.decode(torch.cat([self.up(self.middle(self.down(skip))), skip], dim=1))

    class ModReLU(nn.Module):
        def forward(self, z):
            return z * torch.sigmoid(z.abs() - 0.5)

    if name == "replknet31":
        return Residual(nn.Conv2d(64, 64, 31, padding=15, groups=64), nn.BatchNorm2d(64), nn.Conv2d(64, 64, 1))
    if name == "convnext7":
        return Residual(
            nn.Conv2d(96, 96, 7, padding=3, groups=96), ChannelsLastNorm(96), nn.Conv2d(96, 384, 1), nn.GELU(),
            nn.Conv2d(384, 96, 1),
        )  # fmt: skip
    if name == "resnet_basic":
        return Residual(
            nn.Conv2d(64, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64),
        )  # fmt: skip
    if name == "unet3d":
        return UNet3d()
    if name == "audio_frontend":
        return nn.Sequential(
            nn.Conv1d(1, 64, 401, stride=1, padding=200), nn.ReLU(), nn.Conv1d(64, 64, 3, stride=2, padding=1),
            nn.ReLU(), nn.Conv1d(64, 64, 3, stride=2, padding=1),
        )  # fmt: skip
    if name == "complex_mri":
        return nn.Sequential(
            nn.Conv2d(8, 8, 15, padding=7, dtype=torch.complex64), ModReLU(),
            nn.Conv2d(8, 8, 15, padding=7, dtype=torch.complex64),
        )  # fmt: skip
    raise ValueError(f"no torch model {name!r}")


def _torch_step(model: Model, converted: bool) -> Callable[[], None]:
    import numpy as np
    import torch

    torch.manual_seed(0)
    network = _torch_model(model.name)
    if converted:
        import xpconv.torch

        xpconv.torch.convert(network)
    rng = np.random.default_rng(0)
    x = torch.asarray(rng.standard_normal(model.input_shape), dtype=getattr(torch, model.dtype))
    optimizer = torch.optim.SGD(network.parameters(), lr=1e-3)

    def step() -> None:
        optimizer.zero_grad()
        loss = network(x).abs().square().mean()
        loss.backward()
        optimizer.step()

    return step


# --- Flax models ---------------------------------------------------------------------------------


def _flax_step(model: Model, converted: bool) -> Callable[[], None]:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    options: dict[str, Any] = {}
    if converted:
        import xpconv.jax

        options["conv_general_dilated"] = xpconv.jax.conv_general_dilated
    rngs = nnx.Rngs(0)
    if model.name == "flax_replknet31":
        layers = [
            nnx.Conv(64, 64, (31, 31), padding="SAME", feature_group_count=64, rngs=rngs, **options),
            nnx.Conv(64, 64, (1, 1), rngs=rngs, **options),
        ]
    elif model.name == "flax_resnet_basic":
        layers = [
            nnx.Conv(64, 64, (3, 3), padding="SAME", use_bias=False, rngs=rngs, **options),
            nnx.relu,
            nnx.Conv(64, 64, (3, 3), padding="SAME", use_bias=False, rngs=rngs, **options),
        ]
    else:
        raise ValueError(f"no Flax model {model.name!r}")
    network = nnx.Sequential(*layers)
    x = jnp.asarray(np.random.default_rng(0).standard_normal(model.input_shape), dtype=jnp.float32)

    @nnx.jit
    def train(network: Any, x: Any) -> Any:
        def loss(network: Any) -> Any:
            return jnp.mean(jnp.square(x + network(x)))

        value, grads = nnx.value_and_grad(loss)(network)
        params = nnx.state(network, nnx.Param)
        nnx.update(network, jax.tree.map(lambda p, g: p - 1e-3 * g, params, grads))
        return value

    def step() -> None:
        jax.block_until_ready(train(network, x))

    return step


# --- workers and the report ----------------------------------------------------------------------


def _step(model: Model, side: str) -> Callable[[], None]:
    converted = side.endswith(("converted", "xpconv"))
    return _torch_step(model, converted) if model.framework == "torch" else _flax_step(model, converted)


def serve(side: str) -> None:
    """Worker process: for each model name read on stdin, the seconds of one training step (the first
    request for a model builds it and runs two steps first: allocators, thread pools, compilation)."""
    steps: dict[str, Callable[[], None]] = {}
    by_name = {model.name: model for model in MODELS}
    for line in sys.stdin:
        name = line.strip()
        if name not in steps:
            steps[name] = _step(by_name[name], side)
            steps[name]()
            steps[name]()
        start = time.perf_counter()
        steps[name]()
        print(json.dumps(time.perf_counter() - start), flush=True)


def _time_model(model: Model, repeats: int) -> dict[str, float]:
    sides = SIDES[model.framework]
    workers = {
        side: subprocess.Popen(
            [sys.executable, "-c", f"from xpconv.tools.models import serve; serve({side!r})"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for side in sides
    }
    samples: dict[str, list[float]] = {side: [] for side in sides}
    try:
        for repeat in range(repeats):
            for side in sides[repeat % 2 :] + sides[: repeat % 2]:
                time.sleep(PAUSE_SECONDS)
                process = workers[side]
                assert process.stdin is not None and process.stdout is not None
                process.stdin.write(model.name + "\n")
                process.stdin.flush()
                answer = process.stdout.readline()
                if not answer:
                    raise RuntimeError(f"the {side!r} worker stopped on {model.name}")
                samples[side].append(json.loads(answer))
    finally:
        for process in workers.values():
            if process.stdin:
                process.stdin.close()
            process.wait(timeout=120)
    return {side: statistics.median(values) for side, values in samples.items()}


def run_models(names: list[str] | None, repeats: int, out: Path, command: str) -> int:
    """Time the models (all, or ``names``), print and write ``cpu-models.md`` and ``.json`` under ``out``."""
    chosen = [model for model in MODELS if names is None or model.name in names]
    rows: list[dict[str, Any]] = []
    for model in chosen:
        medians = _time_model(model, repeats)
        written, converted = (medians[side] for side in SIDES[model.framework])
        rows.append({"model": model.name, "description": model.description, "as_written_s": written,
                     "converted_s": converted, "ratio": converted / written, "target": model.target})  # fmt: skip
        print(f"{model.name}: {written * 1e3:.1f} ms as written, {converted * 1e3:.1f} ms converted "
              f"({converted / written:.2f}x, target at most {model.target}x)", flush=True)  # fmt: skip
    lines = [
        f"One training step (forward, loss, backward, SGD) per model block, median of {repeats} alternating rounds,",
        "each side in its own process. torch: `xpconv.torch.convert(model)`; Flax: `nnx.Conv(...,",
        "conv_general_dilated=xpconv.jax.conv_general_dilated)` under `nnx.jit`.",
        "",
        f"`{command}`",
        "",
        "| model | block | as written | through xpconv | ratio | target |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row['model']} | {row['description']} | {row['as_written_s'] * 1e3:.1f} ms | "
            f"{row['converted_s'] * 1e3:.1f} ms | {row['ratio']:.2f}x | <= {row['target']}x |"
        )
    text = "\n".join(lines) + "\n"
    print()
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cpu-models.md").write_text(text)
    (out / "cpu-models.json").write_text(json.dumps({"command": command, "rows": rows}, indent=1))
    print(f"wrote {out / 'cpu-models.md'} and {out / 'cpu-models.json'}")
    return 0
