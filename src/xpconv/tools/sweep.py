"""``python -m xpconv bench --sweep``: how a 3x3 layer's cost and memory grow with batch and image size.

A 64 -> 64 channel 3x3 convolution ("same" padding), float32, timed forward+backward (median of
``repeats`` alternating rounds, each candidate in its own process, as in the benchmark) for batch
sizes 1 to 256 at 56x56, and image sizes 14 to 224 at batch 8. Peak extra memory of one
forward+backward is measured in a fresh process per point and candidate. Cost should grow linearly
with the work (both axes scale it), and xpconv's temporaries stay bounded by its workspace chunks:
its peak grows with the inputs and outputs, not with a column matrix of the whole batch.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from .report import Row, layer_rows, pyplot
from .runner import REFERENCE, Workers, available, machine_description, memory_in_subprocess, time_layer
from .suites import Layer

BATCHES = (1, 4, 16, 64, 256)
SIZES = (14, 28, 56, 112, 224)
CHANNELS = 64
CANDIDATES = ["xpconv numpy", "xpconv torch", REFERENCE]

__all__ = ["run_sweep", "sweep_layers"]


def sweep_layers() -> list[Layer]:
    by_batch = [Layer(f"batch {b}", b, CHANNELS, (56, 56), CHANNELS, 3, padding=1) for b in BATCHES]
    by_size = [Layer(f"size {n}", 8, CHANNELS, (n, n), CHANNELS, 3, padding=1) for n in SIZES]
    return by_batch + by_size


def run_sweep(device: str, repeats: int, memory: bool, out: Path, plot_path: str | None, command: str) -> int:
    names = available(device, CANDIDATES if device == "cpu" else None)
    rows: list[Row] = []
    workers = Workers(names, device)
    try:
        for spec in sweep_layers():
            medians = time_layer(spec, workers, repeats)
            peaks = {c: memory_in_subprocess(spec, c, device) for c in names} if memory else {}
            rows += [r for r in layer_rows(spec, medians, peaks) if r.phase == "both"]
            print(spec.name + ": " + ", ".join(f"{r.candidate} {r.seconds * 1e3:.1f} ms" for r in rows[-len(names) :]))
    finally:
        workers.close()
    machine = machine_description(device)
    text = sweep_markdown(rows, machine, command)
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.md").write_text(text)
    payload = {"command": command, "machine": machine, "rows": [asdict(r) for r in rows]}
    (out / "sweep.json").write_text(json.dumps(payload, indent=1))
    if plot_path:
        sweep_plot(rows, machine, plot_path)
        print(f"wrote {plot_path}")
    return 0


def _work(name: str) -> float:
    """Forward+backward GFLOP of a sweep point."""
    spec = next(s for s in sweep_layers() if s.name == name)
    return 3 * spec.forward_flops / 1e9


def sweep_markdown(rows: list[Row], machine: dict, command: str) -> str:
    names = list(dict.fromkeys(r.candidate for r in rows))
    by_point: dict[str, dict[str, Row]] = {}
    for r in rows:
        by_point.setdefault(r.layer, {})[r.candidate] = r
    header = " | ".join(f"{n} ms (x torch) | {n} MiB" for n in names)
    lines = [
        f"Command: `{command}`",
        "",
        "Machine: " + "; ".join(f"{k} {v}" for k, v in machine.items()),
        "",
        f"| point | GFLOP | {header} |",
        "| --- | ---: | " + " | ".join("---: | ---:" for _ in names) + " |",
    ]
    for point, by_name in by_point.items():
        cells = []
        for n in names:
            r = by_name[n]
            ratio = f" ({r.ratio:.2f})" if r.ratio and n != REFERENCE else ""
            cells.append(f"{r.seconds * 1e3:.1f}{ratio} | " + ("" if r.peak_mib is None else f"{r.peak_mib:.0f}"))
        lines.append(f"| {point} | {_work(point):.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def sweep_plot(rows: list[Row], machine: dict, path: str) -> None:
    """Log-log: forward+backward time and peak extra memory against the work, per candidate."""
    plt = pyplot()
    figure, (timing, memory) = plt.subplots(1, 2, figsize=(11, 4.5))
    for name in dict.fromkeys(r.candidate for r in rows):
        for prefix, marker in (("batch", "o"), ("size", "s")):
            mine = [r for r in rows if r.candidate == name and r.layer.startswith(prefix)]
            work = [_work(r.layer) for r in mine]
            label = f"{name}, {'batch 1-256 at 56x56' if prefix == 'batch' else 'image 14-224 at batch 8'}"
            timing.loglog(work, [r.seconds * 1e3 for r in mine], marker=marker, label=label)
            if all(r.peak_mib for r in mine):
                memory.loglog(work, [r.peak_mib for r in mine], marker=marker, label=label)
    lowest = min(_work(r.layer) for r in rows)
    highest = max(_work(r.layer) for r in rows)
    first = min(r.seconds * 1e3 for r in rows if _work(r.layer) == lowest)
    timing.loglog([lowest, highest], [first, first * highest / lowest], "k:", label="linear in the work")
    timing.set_xlabel("forward+backward GFLOP")
    timing.set_ylabel("ms (median)")
    memory.set_xlabel("forward+backward GFLOP")
    memory.set_ylabel("peak extra MiB")
    device = machine.get("gpu") or f"{machine.get('cores', '?')} cores"
    timing.set_title(f"3x3, 64 -> 64 channels, float32 — {device}")
    memory.set_title("peak extra memory of one forward+backward")
    timing.legend(fontsize=7)
    for axis in (timing, memory):
        axis.grid(alpha=0.3, which="both")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
