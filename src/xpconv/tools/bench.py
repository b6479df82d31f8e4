"""``python -m xpconv bench`` (also ``python benchmarks/run.py``): xpconv against torch's own convolution.

Every candidate runs every layer of the suite; candidates are interleaved (each repeat runs them
all, in a rotating order) and medians are reported, so machine noise hits them alike. Times are
forward, backward, and both; ratios are against torch native (``F.conv{1,2,3}d`` + autograd) of the
same phase; GFLOP/s count the forward pass's multiply-adds twice and the backward pass as two
such passes. Peak extra memory of one forward+backward is measured in a fresh process per
layer and candidate, as the largest resident-set growth over the inputs (CPU) or as
``torch.cuda.max_memory_allocated`` / CuPy's pool (GPU).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from .report import Row, accuracy_markdown, layer_rows, markdown, plot, summary
from .runner import (
    CPU_CANDIDATES,
    CUDA_CANDIDATES,
    Workers,
    available,
    machine_description,
    memory_in_subprocess,
    time_layer,
)
from .suites import LAYERS, SUITES, layer


def run_bench(
    layers: list[str],
    device: str = "cpu",
    repeats: int = 7,
    memory: bool = True,
    names: list[str] | None = None,
    print_fn: Callable[[str], None] = print,
) -> tuple[list[Row], dict]:
    names = available(device, names)
    rows: list[Row] = []
    workers = Workers(names, device)
    try:
        for name in layers:
            spec = layer(name)
            medians = time_layer(spec, workers, repeats)
            peaks = {c: memory_in_subprocess(spec, c, device) for c in medians} if memory else {}
            rows += layer_rows(spec, medians, peaks)
            both = {r.candidate: r for r in rows if r.layer == name and r.phase == "both"}
            print_fn(
                f"{name}: "
                + ", ".join(
                    f"{c} {r.seconds * 1e3:.1f} ms" + (f" ({r.ratio:.2f}x)" if r.ratio else "") for c, r in both.items()
                )
            )
    finally:
        workers.close()
    return rows, machine_description(device)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m xpconv bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--suite",
        choices=[*SUITES, "models", "signals", "volumes"],
        default="classic",
        help="classic: 3x3 and other common CNN layers (default); large: 7x7 to 31x31 kernels, long 1-D "
        "filters and a complex case, with sigpy where it applies; models: one training step of model blocks "
        "in torch and Flax, as written and through xpconv (xpconv.tools.models); signals: one-channel signals, "
        "images and volumes against scipy.signal (xpconv.tools.signals); volumes: a volume chunked in space on a "
        "LocalCluster of small workers, against dask-image and NumPy (xpconv.tools.volumes)",
    )
    parser.add_argument("--models", nargs="+", help="with --suite models: these models only")
    parser.add_argument("--layers", nargs="+", help="these layers instead of a suite (with --regret: of its set)")
    parser.add_argument(
        "--candidates",
        nargs="+",
        choices=sorted(set(CPU_CANDIDATES) | set(CUDA_CANDIDATES)),
        help="what to time (default: xpconv on NumPy and torch, torch native, JAX; those installed)",
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("benchmarks/results"),
        help="folder for JSON and Markdown (a suite: cpu.md, cpu-large.md, ...; --layers: cpu-layers.md)",
    )
    parser.add_argument("--plot", metavar="PATH", help="also draw the forward+backward times as a PNG")
    parser.add_argument("--from-json", type=Path, metavar="FILE", help="plot or print an earlier run instead of timing")
    parser.add_argument("--sweep", action="store_true", help="time a 3x3 layer against batch size and image size")
    parser.add_argument(
        "--accuracy", action="store_true", help="float32 error of each method and of torch, against float64 torch"
    )
    parser.add_argument(
        "--regret",
        action="store_true",
        help='each pass of a held-out set timed by every method and by "auto": how much slower "auto" is '
        "than the fastest (xpconv.tools.regret)",
    )
    parser.add_argument("--libraries", nargs="+", choices=["numpy", "torch"], default=["numpy", "torch"])
    volumes = parser.add_argument_group("--suite volumes")
    volumes.add_argument("--size", type=int, default=384, help="voxels per axis (default 384)")
    volumes.add_argument("--chunk", type=int, default=128, help="chunk side (default 128)")
    volumes.add_argument("--kernel", type=int, default=9, help="filter side (default 9)")
    volumes.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    volumes.add_argument("--worker-memory", default="640MiB", help="each worker's memory limit (default 640MiB)")
    volumes.add_argument("--workspace-mib", type=int, default=64, help="xpconv's workspace_bytes on Dask, MiB (64)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.layers or () if name not in LAYERS and not args.regret]
    if unknown:
        parser.error(f"--layers: no such layer {unknown} (the suites' layers are {', '.join(LAYERS)})")
    command = "python -m xpconv bench" + (" " + " ".join(argv) if argv else "")
    if args.accuracy:
        text = accuracy_markdown(command)
        print(text)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "accuracy.md").write_text(text)
        return 0
    if args.regret:
        from .regret import run_regret

        args.out.mkdir(parents=True, exist_ok=True)
        return run_regret(args.libraries, args.repeats, args.out / "regret", args.layers, command)
    if args.suite == "signals":
        from .signals import run_signals

        return run_signals(args.repeats, args.out, command)
    if args.suite == "volumes":
        from .volumes import Volume, run_volumes

        volume = Volume(args.size, args.chunk, args.kernel, args.workers, args.worker_memory, args.workspace_mib)
        return run_volumes(volume, args.out, command)
    if args.suite == "models":
        from .models import run_models

        return run_models(args.models, args.repeats, args.out, command)
    if args.sweep:
        from .sweep import run_sweep

        return run_sweep(args.device, args.repeats, not args.no_memory, args.out, args.plot, command)
    if args.from_json:
        payload = json.loads(args.from_json.read_text())
        rows = [Row(**r) for r in payload["rows"]]
        print(markdown(rows, payload["machine"], payload["command"]))
        if args.plot:
            plot(rows, payload["machine"], args.plot)
            print(f"wrote {args.plot}")
        return 0
    names = args.layers or [spec.name for spec in SUITES[args.suite]]
    rows, machine = run_bench(names, args.device, args.repeats, not args.no_memory, args.candidates)
    text = markdown(rows, machine, command)
    print()
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    # a chosen few layers get a file of their own: the suites' tables stay as they were measured
    stem = (
        f"{args.device}-layers"
        if args.layers
        else args.device
        if args.suite == "classic"
        else f"{args.device}-{args.suite}"
    )
    (args.out / f"{stem}.md").write_text(text)
    payload = {"command": command, "machine": machine, "rows": [asdict(r) for r in rows], "summary": summary(rows)}
    (args.out / f"{stem}.json").write_text(json.dumps(payload, indent=1))
    print(f"wrote {args.out / (stem + '.md')} and {args.out / (stem + '.json')}")
    if args.plot:
        plot(rows, machine, args.plot)
        print(f"wrote {args.plot}")
    return 0
