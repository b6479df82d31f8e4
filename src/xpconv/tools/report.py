"""What ``bench`` writes: rows per layer, candidate and phase, their Markdown table with the geometric
means against torch native, the float32 accuracy table, and the plot."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

import xpconv

from .runner import REFERENCE
from .suites import LAYERS, Layer


@dataclass
class Row:
    layer: str
    candidate: str
    phase: str
    seconds: float
    ratio: float | None
    gflops: float
    peak_mib: float | None


def layer_rows(spec: Layer, medians: dict[str, dict[str, float]], peaks: dict[str, int | None]) -> list[Row]:
    rows = []
    for candidate, phases in medians.items():
        for phase, seconds in phases.items():
            reference = medians.get(REFERENCE, {}).get(phase)
            flops = spec.forward_flops * {"forward": 1, "backward": 2, "both": 3}[phase]
            peak = peaks.get(candidate) if phase == "both" else None
            ratio = seconds / reference if reference else None
            rows.append(Row(spec.name, candidate, phase, seconds, ratio, flops / seconds / 1e9, peak and peak / 2**20))
    return rows


def summary(rows: list[Row]) -> dict[str, dict[str, float]]:
    """Per candidate: geometric mean and max of the forward+backward ratio against torch native."""
    result = {}
    for candidate in dict.fromkeys(r.candidate for r in rows):
        ratios = [r.ratio for r in rows if r.candidate == candidate and r.phase == "both" and r.ratio]
        if ratios:
            geomean = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
            result[candidate] = {"geomean": geomean, "max": max(ratios)}
    return result


def markdown(rows: list[Row], machine: dict, command: str) -> str:
    lines = [
        f"Command: `{command}`",
        "",
        "Machine: " + "; ".join(f"{k} {v}" for k, v in machine.items()),
        "",
        "| layer | candidate | forward ms | backward ms | both ms | both / torch | both GFLOP/s | peak extra MiB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    table: dict[tuple[str, str], dict[str, Row]] = {}
    for r in rows:
        table.setdefault((r.layer, r.candidate), {})[r.phase] = r
    for (layer_name, candidate), phases in table.items():
        both = phases["both"]
        ratio = f"{both.ratio:.2f}" if both.ratio else ""
        peak = f"{both.peak_mib:.0f}" if both.peak_mib is not None else ""
        lines.append(
            f"| {layer_name} | {candidate} | {phases['forward'].seconds * 1e3:.1f} | "
            f"{phases['backward'].seconds * 1e3:.1f} | {both.seconds * 1e3:.1f} | {ratio} | "
            f"{both.gflops:.0f} | {peak} |"
        )
    lines += ["", "Forward+backward against torch native, over the layers:", ""]
    lines += ["| candidate | geometric mean | worst layer |", "| --- | ---: | ---: |"]
    for candidate, stats in summary(rows).items():
        lines.append(f"| {candidate} | {stats['geomean']:.2f}x | {stats['max']:.2f}x |")
    strided = [n for n in dict.fromkeys(r.layer for r in rows) if n in LAYERS and LAYERS[n].stride > 1]
    dilate = next((c for c in dict.fromkeys(r.candidate for r in rows) if c.endswith("dilate")), None)
    auto = dilate.removesuffix(" dilate") if dilate else None
    if dilate and strided:
        lines += ["", f'Backward, `method="dilate"` against `"auto"` ({auto}), strided layers:', ""]
        for name in strided:
            seconds = {r.candidate: r.seconds for r in rows if r.layer == name and r.phase == "backward"}
            if auto in seconds:
                lines.append(f"- {name}: dilate {seconds[dilate] / seconds[auto]:.1f}x as long as auto")
    return "\n".join(lines) + "\n"


def _torch_passes(spec: Layer, arrays: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    """torch's z, dx and dkernel of ``spec`` on ``arrays`` (x, kernel, dz), padded by ``F.pad``."""
    import torch
    import torch.nn.functional as F

    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[spec.ndim]
    x, kernel, dz = (torch.tensor(a, requires_grad=a is not arrays[2]) for a in arrays)
    pads = tuple(amount for pair in reversed(spec.pads) for amount in pair)
    z = conv(F.pad(x, pads), kernel, **dict(spec.params, padding=0))
    z.backward(dz)
    return z.detach().numpy(), x.grad.numpy(), kernel.grad.numpy()


def accuracy_markdown(command: str) -> str:
    """Largest single-precision error of z, dx and dkernel (relative to the largest double-precision
    value) per layer of both suites and method, beside torch's own single-precision conv; the
    reference is torch autograd in float64 (complex128). The layers' shapes with a batch of 2."""
    import dataclasses

    lines = [
        f"Command: `{command}`",
        "",
        "| layer | method | z | dx | dkernel |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for spec in (dataclasses.replace(spec, batch=2) for spec in LAYERS.values()):
        single = spec.arrays()
        double = [a.astype(np.complex128 if "complex" in spec.dtype else np.float64) for a in single]
        exact = _torch_passes(spec, double)
        results = {"torch single": _torch_passes(spec, list(single))}
        x, kernel, dz = single
        for method in ("auto", "winograd", "fft", "direct", "dilate"):
            try:
                forward = xpconv.conv(x, kernel, method=method, **spec.params)
            except ValueError:
                continue  # winograd where it does not apply
            results[method] = (forward, *xpconv.conv_backward(dz, x, kernel, method=method, **spec.params)[:2])
        for method, arrays in results.items():
            errors = [float(np.max(np.abs(a - e)) / np.max(np.abs(e))) for a, e in zip(arrays, exact)]
            lines.append(f"| {spec.name} | {method} | " + " | ".join(f"{err:.1e}" for err in errors) + " |")
    return "\n".join(lines) + "\n"


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend, or an exit that says how to install it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit('--plot needs matplotlib: pip install "xpconv[demo]"') from None
    return plt


def plot(rows: list[Row], machine: dict, path: str) -> None:
    """Forward+backward milliseconds per layer, one bar per candidate (log scale)."""
    plt = pyplot()
    layers = list(dict.fromkeys(r.layer for r in rows))
    names = list(dict.fromkeys(r.candidate for r in rows))
    both = {(r.layer, r.candidate): r.seconds * 1e3 for r in rows if r.phase == "both"}
    figure, axis = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        positions = [j + (i - (len(names) - 1) / 2) * width for j in range(len(layers))]
        axis.bar(positions, [both.get((layer_name, name), 0) for layer_name in layers], width, label=name)
    axis.set_xticks(range(len(layers)), layers)
    axis.set_yscale("log")
    axis.set_ylabel("forward + backward, ms (median, log scale)")
    device = machine.get("gpu") or f"{machine.get('cores', '?')} cores, {machine.get('cpu', 'CPU')}"
    dtypes = "/".join(sorted({LAYERS[name].dtype for name in layers if name in LAYERS})) or "float32"
    axis.set_title(f"xpconv against torch's convolution, {dtypes} — {device}")
    axis.legend(fontsize=8)
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
