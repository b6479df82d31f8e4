"""``python -m xpconv bench`` (also ``python benchmarks/run.py``): xpconv against torch's own conv2d.

Every candidate runs every layer of the suite; candidates are interleaved (each repeat runs them
all, in a rotating order) and medians are reported, so machine noise hits them alike. Times are
forward, backward, and both; ratios are against torch native (``F.conv2d`` + autograd) of the
same phase; GFLOP/s count the forward pass's multiply-adds twice and the backward pass as two
such passes. Peak extra memory of one forward+backward is measured in a fresh process per
layer and candidate, as the largest resident-set growth over the inputs (CPU) or as
``torch.cuda.max_memory_allocated`` / CuPy's pool (GPU).
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

import xpconv
from xpconv.typing import Method

# name: (N, C, H, W, F, kernel, stride, padding, dilation, groups), float32
LAYERS: dict[str, tuple[int, ...]] = {
    "resnet3x3": (16, 64, 56, 56, 64, 3, 1, 1, 1, 1),
    "resnet14x14": (16, 256, 14, 14, 256, 3, 1, 1, 1, 1),
    "dilated3x3": (8, 128, 32, 32, 128, 3, 1, 2, 2, 1),
    "depthwise": (16, 128, 28, 28, 128, 3, 1, 1, 1, 128),
    "depthwise14x14": (16, 256, 14, 14, 256, 3, 1, 1, 1, 256),
    "depthwise5x5": (16, 128, 28, 28, 128, 5, 1, 2, 1, 128),
    "down3x3s2": (16, 64, 56, 56, 128, 3, 2, 1, 1, 1),
    "pointwise": (16, 256, 28, 28, 64, 1, 1, 0, 1, 1),
    "stem7x7s2": (8, 3, 112, 112, 64, 7, 2, 3, 1, 1),
    "mnist5x5": (64, 1, 28, 28, 8, 5, 1, 0, 1, 1),
}
PHASES = ("forward", "backward", "both")
REFERENCE = "torch native"
PAUSE_SECONDS = 0.2


@dataclass
class Layer:
    name: str
    batch: int
    channels: int
    height: int
    width: int
    filters: int
    kernel: int
    stride: int
    padding: int
    dilation: int
    groups: int

    @property
    def params(self) -> dict:
        return {"stride": self.stride, "padding": self.padding, "dilation": self.dilation, "groups": self.groups}

    @property
    def shape_params(self) -> dict:
        """The options that decide the output shape (the groups follow from the shapes)."""
        return {"stride": self.stride, "padding": self.padding, "dilation": self.dilation}

    @property
    def forward_flops(self) -> int:
        shape = (self.batch, self.channels, self.height, self.width)
        kernel = (self.filters, self.channels // self.groups, self.kernel, self.kernel)
        out = xpconv.conv_output_shape(shape, kernel, **self.shape_params)
        return 2 * math.prod(out) * math.prod(kernel[1:])

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((self.batch, self.channels, self.height, self.width), dtype=np.float32)
        kernel = rng.standard_normal(
            (self.filters, self.channels // self.groups, self.kernel, self.kernel), dtype=np.float32
        )
        z_shape = xpconv.conv_output_shape(x.shape, kernel.shape, **self.shape_params)
        dz = rng.standard_normal((self.batch, *z_shape[1:]), dtype=np.float32)
        return x, kernel, dz


def layer(name: str) -> Layer:
    return Layer(name, *LAYERS[name])


# A candidate turns numpy inputs into three callables (forward, backward, both) and a synchronise.
Runner = tuple[Callable[[], Any], Callable[[], Any], Callable[[], Any]]


def _xpconv_runner(convert: Callable[[np.ndarray], Any], method: Method = "auto") -> Callable[[Layer], Runner]:
    def make(spec: Layer) -> Runner:
        x, kernel, dz = (convert(a) for a in spec.arrays())
        params = spec.params

        def forward():
            return xpconv.conv2d(x, kernel, **params)

        def backward():
            return xpconv.conv2d_backward(dz, x, kernel, method=method, **params)

        def both():
            return forward(), backward()

        return forward, backward, both

    return make


def _torch_native_runner(device: str) -> Callable[[Layer], Runner]:
    import torch
    import torch.nn.functional as F

    def make(spec: Layer) -> Runner:
        x, kernel, dz = (torch.asarray(a, device=device) for a in spec.arrays())
        params = spec.params
        x.requires_grad_(True)
        kernel.requires_grad_(True)

        def forward():
            with torch.no_grad():
                return F.conv2d(x, kernel, **params)

        z = F.conv2d(x, kernel, **params)

        def backward():
            x.grad = kernel.grad = None
            z.backward(dz, retain_graph=True)
            return x.grad, kernel.grad

        def both():
            x.grad = kernel.grad = None
            F.conv2d(x, kernel, **params).backward(dz)
            return x.grad, kernel.grad

        return forward, backward, both

    return make


def _jax_runner(spec: Layer) -> Runner:
    import jax
    import jax.numpy as jnp

    x, kernel, dz = (jnp.asarray(a) for a in spec.arrays())
    pad = [(spec.padding, spec.padding)] * 2

    def conv(x_, k_):
        return jax.lax.conv_general_dilated(
            x_,
            k_,
            (spec.stride,) * 2,
            pad,
            rhs_dilation=(spec.dilation,) * 2,
            feature_group_count=spec.groups,
            dimension_numbers=("NCHW", "OIHW", "NCHW"),
        )

    forward_jit = jax.jit(conv)
    backward_jit = jax.jit(lambda x_, k_, dz_: jax.vjp(conv, x_, k_)[1](dz_))
    both_jit = jax.jit(lambda x_, k_, dz_: (conv(x_, k_), jax.vjp(conv, x_, k_)[1](dz_)))
    return (
        lambda: forward_jit(x, kernel).block_until_ready(),
        lambda: jax.block_until_ready(backward_jit(x, kernel, dz)),
        lambda: jax.block_until_ready(both_jit(x, kernel, dz)),
    )


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


# Candidates by name: (module it needs, device it runs on). Each is built in its own worker process,
# which imports only that library.
CPU_CANDIDATES = {
    "xpconv numpy": "numpy",
    "xpconv torch": "torch",
    REFERENCE: "torch",
    "jax": "jax",
    "xpconv numpy direct": "numpy",
    "xpconv numpy dilate": "numpy",
}
DEFAULT_CPU_CANDIDATES = ("xpconv numpy", "xpconv torch", REFERENCE, "jax")
CUDA_CANDIDATES = {"xpconv cupy": "cupy", "xpconv torch cuda": "torch", REFERENCE: "torch"}


def available(device: str, names: list[str] | None = None) -> list[str]:
    """The candidates whose library is installed (by default the usual ones)."""
    table = CPU_CANDIDATES if device == "cpu" else CUDA_CANDIDATES
    chosen = names or (list(DEFAULT_CPU_CANDIDATES) if device == "cpu" else list(CUDA_CANDIDATES))
    return [name for name in chosen if _installed(table[name])]


def make_runner(name: str, device: str, spec: Layer) -> tuple[Runner, Callable[[], None]]:
    """The three timed callables of one candidate on one layer, and its synchronise."""
    no_sync: Callable[[], None] = lambda: None  # noqa: E731
    if name == "jax":
        return _jax_runner(spec), no_sync
    if name.startswith("xpconv numpy"):
        method = cast(Method, name.removeprefix("xpconv numpy").strip() or "auto")
        return _xpconv_runner(np.asarray, method)(spec), no_sync
    if name == "xpconv cupy":
        import cupy

        return _xpconv_runner(cupy.asarray)(spec), cupy.cuda.Device().synchronize
    import torch

    sync = torch.cuda.synchronize if device == "cuda" else no_sync
    if name == REFERENCE:
        return _torch_native_runner(device)(spec), sync
    return _xpconv_runner(lambda a: torch.asarray(a, device=device))(spec), sync


def _time(fn: Callable[[], Any], sync: Callable[[], None]) -> float:
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def serve(name: str, device: str) -> None:
    """Worker process: for each layer (JSON) read on stdin, one timed round of the three phases.

    The first request for a layer also warms it up (allocators, thread pools, JIT compilation).
    """
    runners: dict[str, tuple[Runner, Callable[[], None]]] = {}
    for line in sys.stdin:
        request = json.loads(line)
        key = json.dumps(request, sort_keys=True)
        if key not in runners:
            runners[key] = make_runner(name, device, Layer(**request))
            for fn in runners[key][0]:
                _time(fn, runners[key][1])
        runner, sync = runners[key]
        print(json.dumps({phase: _time(fn, sync) for phase, fn in zip(PHASES, runner)}), flush=True)


class Workers:
    """One worker process per candidate, kept for the whole run: torch's and NumPy's thread pools
    never share a process (in one process their idle threads spin and slow each other down)."""

    def __init__(self, names: list[str], device: str) -> None:
        self.processes = {
            name: subprocess.Popen(
                [sys.executable, "-c", f"from xpconv.tools.bench import serve; serve({name!r}, {device!r})"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for name in names
        }

    def round(self, name: str, spec: Layer) -> dict[str, float]:
        process = self.processes[name]
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(json.dumps(asdict(spec)) + "\n")
        process.stdin.flush()
        answer = process.stdout.readline()
        if not answer:
            raise RuntimeError(f"the benchmark worker for {name!r} stopped (layer {spec.name})")
        return json.loads(answer)

    def close(self) -> None:
        for process in self.processes.values():
            if process.stdin:
                process.stdin.close()
            process.wait(timeout=60)


def time_layer(spec: Layer, workers: Workers, repeats: int) -> dict[str, dict[str, float]]:
    """Median seconds per candidate and phase; each repeat runs every candidate once, in a rotating order."""
    names = list(workers.processes)
    samples: dict[str, dict[str, list[float]]] = {n: {p: [] for p in PHASES} for n in names}
    for repeat in range(repeats):
        order = names[repeat % len(names) :] + names[: repeat % len(names)]
        for name in order:
            # The previous worker's idle thread pools (OpenBLAS, OpenMP) spin for a while after their
            # last call and steal cores from the next one; let them fall asleep first.
            time.sleep(PAUSE_SECONDS)
            for phase, seconds in workers.round(name, spec).items():
                samples[name][phase].append(seconds)
    return {n: {p: statistics.median(v) for p, v in phases.items()} for n, phases in samples.items()}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_memory(spec: Layer, candidate: str, device: str) -> int:
    """Peak extra bytes of one forward+backward, in this process (call it in a fresh one)."""
    (_, _, both), sync = make_runner(candidate, device, spec)
    if device != "cpu":
        import torch

        sync()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        if candidate == "xpconv cupy":
            import cupy

            pool = cupy.get_default_memory_pool()
            pool.free_all_blocks()
            base = pool.used_bytes()
            result = both()
            sync()
            del result
            return pool.total_bytes() - base
        result = both()
        sync()
        del result
        return torch.cuda.max_memory_allocated() - base
    baseline = _rss_bytes()
    peak = baseline
    running = True

    def sample() -> None:
        nonlocal peak
        while running:
            peak = max(peak, _rss_bytes())
            time.sleep(0.0005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    result = both()
    running = False
    sampler.join()
    peak = max(peak, _rss_bytes())
    del result
    return peak - baseline


def memory_in_subprocess(spec: Layer, candidate: str, device: str) -> int | None:
    code = (
        "from xpconv.tools.bench import Layer, peak_memory; "
        f"print(peak_memory(Layer(**{asdict(spec)!r}), {candidate!r}, {device!r}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        return None
    return int(result.stdout.strip().splitlines()[-1])


def machine_description(device: str) -> dict[str, str]:
    description = {"python": platform.python_version(), "numpy": np.__version__, "cores": str(os.cpu_count())}
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            description["cpu"] = next(
                line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")
            )
    except (OSError, StopIteration):
        description["cpu"] = platform.processor() or "unknown"
    try:
        from threadpoolctl import threadpool_info

        description["blas"] = ", ".join(
            f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')}, {i.get('num_threads')} threads)"
            for i in threadpool_info()
            if i.get("user_api") == "blas"
        )
    except ImportError:
        pass
    if _installed("torch"):
        from importlib.metadata import version

        description["torch"] = version("torch")  # not imported here: the parent process stays idle
        if device == "cuda":
            import torch

            description["gpu"] = torch.cuda.get_device_name()
    return description


@dataclass
class Row:
    layer: str
    candidate: str
    phase: str
    seconds: float
    ratio: float | None
    gflops: float
    peak_mib: float | None


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
            peaks = {c: memory_in_subprocess(spec, c, device) for c in names} if memory else {}
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
    strided = [n for n in dict.fromkeys(r.layer for r in rows) if LAYERS[n][6] > 1]
    dilate = next((c for c in dict.fromkeys(r.candidate for r in rows) if c.endswith("dilate")), None)
    auto = dilate.removesuffix(" dilate") if dilate else None
    if dilate and strided:
        lines += ["", f'Backward, `method="dilate"` against `"auto"` ({auto}), strided layers:', ""]
        for name in strided:
            seconds = {r.candidate: r.seconds for r in rows if r.layer == name and r.phase == "backward"}
            if auto in seconds:
                lines.append(f"- {name}: dilate {seconds[dilate] / seconds[auto]:.1f}x as long as auto")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m xpconv bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--layers", nargs="+", choices=list(LAYERS), default=list(LAYERS))
    parser.add_argument(
        "--candidates",
        nargs="+",
        choices=sorted(set(CPU_CANDIDATES) | set(CUDA_CANDIDATES)),
        help="what to time (default: xpconv on NumPy and torch, torch native, JAX; those installed)",
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="folder for JSON and Markdown")
    parser.add_argument("--plot", metavar="PATH", help="also draw the forward+backward times as a PNG")
    parser.add_argument("--from-json", type=Path, metavar="FILE", help="plot or print an earlier run instead of timing")
    parser.add_argument("--sweep", action="store_true", help="time a 3x3 layer against batch size and image size")
    parser.add_argument(
        "--accuracy", action="store_true", help="float32 error of each method and of torch, against float64 torch"
    )
    args = parser.parse_args(argv)
    command = "python -m xpconv bench" + (" " + " ".join(argv) if argv else "")
    if args.accuracy:
        text = accuracy_markdown(command)
        print(text)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "accuracy.md").write_text(text)
        return 0
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
    rows, machine = run_bench(args.layers, args.device, args.repeats, not args.no_memory, args.candidates)
    text = markdown(rows, machine, command)
    print()
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.device}.md").write_text(text)
    payload = {"command": command, "machine": machine, "rows": [asdict(r) for r in rows], "summary": summary(rows)}
    (args.out / f"{args.device}.json").write_text(json.dumps(payload, indent=1))
    print(f"wrote {args.out / (args.device + '.md')} and {args.out / (args.device + '.json')}")
    if args.plot:
        plot(rows, machine, args.plot)
        print(f"wrote {args.plot}")
    return 0


def accuracy_markdown(command: str) -> str:
    """Largest float32 error of z, dx and dkernel (relative to the largest float64 value) per layer
    and method, beside torch's own float32 conv; the reference is torch autograd in float64. The
    layers' shapes with a batch of 2."""
    import torch

    lines = [
        f"Command: `{command}`",
        "",
        "| layer | method | z | dx | dkernel |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for name in LAYERS:
        spec = Layer(name, 2, *LAYERS[name][1:])
        x, kernel, dz = (a.astype(np.float64) for a in spec.arrays())
        # float32 inputs, exactly representable: both sides see the same numbers
        x, kernel, dz = (a.astype(np.float32).astype(np.float64) for a in (x, kernel, dz))
        tx, tk = torch.tensor(x, requires_grad=True), torch.tensor(kernel, requires_grad=True)
        z_exact = torch.nn.functional.conv2d(tx, tk, **spec.params)
        z_exact.backward(torch.tensor(dz))
        z = z_exact.detach().numpy()
        exact = (z, tx.grad.numpy(), tk.grad.numpy())
        t32 = [torch.tensor(a, dtype=torch.float32, requires_grad=a is not dz) for a in (x, kernel, dz)]
        z32 = torch.nn.functional.conv2d(t32[0], t32[1], **spec.params)
        z32.backward(t32[2])
        results = {"torch float32": (z32.detach().numpy(), t32[0].grad.numpy(), t32[1].grad.numpy())}
        x32, k32, dz32 = (a.astype(np.float32) for a in (x, kernel, dz))
        for method in ("auto", "winograd", "direct", "dilate"):
            try:
                forward = xpconv.conv2d(x32, k32, method=method, **spec.params)
            except ValueError:
                continue  # winograd where it does not apply
            results[method] = (forward, *xpconv.conv2d_backward(dz32, x32, k32, method=method, **spec.params)[:2])
        for method, arrays in results.items():
            errors = [float(np.max(np.abs(a - e)) / np.max(np.abs(e))) for a, e in zip(arrays, exact)]
            lines.append(f"| {name} | {method} | " + " | ".join(f"{err:.1e}" for err in errors) + " |")
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
    axis.set_title(f"xpconv against torch's conv2d, float32 — {device}")
    axis.legend(fontsize=8)
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
