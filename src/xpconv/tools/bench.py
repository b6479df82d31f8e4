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
from xpconv.typing import Method, Padding

PHASES = ("forward", "backward", "both")
REFERENCE = "torch native"
PAUSE_SECONDS = 0.2


@dataclass
class Layer:
    """One benchmark layer: a convolution of ``batch`` inputs ``(channels, *size)`` with ``filters``
    square (cubic) kernels of side ``kernel``; ``padding`` an int or a word (``"same"``, ``"full"``)."""

    name: str
    batch: int
    channels: int
    size: tuple[int, ...]
    filters: int
    kernel: int
    stride: int = 1
    padding: Padding = 0
    dilation: int = 1
    groups: int = 1
    dtype: str = "float32"

    def __post_init__(self) -> None:
        self.size = tuple(self.size)  # a list after a JSON round trip

    @property
    def ndim(self) -> int:
        return len(self.size)

    @property
    def params(self) -> dict:
        return {"stride": self.stride, "padding": self.padding, "dilation": self.dilation, "groups": self.groups}

    @property
    def shape_params(self) -> dict:
        """The options that decide the output shape (the groups follow from the shapes)."""
        return {"stride": self.stride, "padding": self.padding, "dilation": self.dilation}

    @property
    def pads(self) -> tuple[tuple[int, int], ...]:
        """The padding per axis, ``(before, after)``, from the public ``resolve_padding``."""
        per_axis = (self.stride,) * self.ndim, (self.dilation,) * self.ndim
        return xpconv.resolve_padding(self.padding, self.size, (self.kernel,) * self.ndim, *per_axis)

    @property
    def shapes(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """x, kernel and z shapes."""
        x = (self.batch, self.channels, *self.size)
        kernel = (self.filters, self.channels // self.groups, *(self.kernel,) * self.ndim)
        return x, kernel, xpconv.conv_output_shape(x, kernel, **self.shape_params)

    @property
    def forward_flops(self) -> int:
        """Real floating-point operations of the direct forward pass (a complex multiply-add is 8)."""
        _, kernel, out = self.shapes
        per_multiply_add = 8 if "complex" in self.dtype else 2
        return per_multiply_add * math.prod(out) * math.prod(kernel[1:])

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng(0)

        def draw(shape: tuple[int, ...]) -> np.ndarray:
            values = rng.standard_normal(shape, dtype=np.float32)
            if "complex" in self.dtype:
                values = values + 1j * rng.standard_normal(shape, dtype=np.float32)
            return values.astype(self.dtype)

        x_shape, kernel_shape, z_shape = self.shapes
        return draw(x_shape), draw(kernel_shape), draw(z_shape)


def _classic(name: str, n: int, c: int, h: int, w: int, f: int, k: int, s: int, p: int, d: int, g: int) -> Layer:
    return Layer(name, n, c, (h, w), f, k, s, p, d, g)


# The classic suite: 3x3 layers and a few others of common CNNs, float32.
CLASSIC = [
    _classic("resnet3x3", 16, 64, 56, 56, 64, 3, 1, 1, 1, 1),
    _classic("resnet14x14", 16, 256, 14, 14, 256, 3, 1, 1, 1, 1),
    _classic("dilated3x3", 8, 128, 32, 32, 128, 3, 1, 2, 2, 1),
    _classic("depthwise", 16, 128, 28, 28, 128, 3, 1, 1, 1, 128),
    _classic("depthwise14x14", 16, 256, 14, 14, 256, 3, 1, 1, 1, 256),
    _classic("depthwise5x5", 16, 128, 28, 28, 128, 5, 1, 2, 1, 128),
    _classic("down3x3s2", 16, 64, 56, 56, 128, 3, 2, 1, 1, 1),
    _classic("pointwise", 16, 256, 28, 28, 64, 1, 1, 0, 1, 1),
    _classic("stem7x7s2", 8, 3, 112, 112, 64, 7, 2, 3, 1, 1),
    _classic("mnist5x5", 64, 1, 28, 28, 8, 5, 1, 0, 1, 1),
]
# Large kernels: RepLKNet's 31x31 and ConvNeXt's 7x7 depthwise layers, dense 13x13 and 7x7 layers, a
# bank of long 1-D filters, and the complex case of MRI (8 coils, a 15x15 filter, "full").
LARGE = [
    Layer("depthwise31x31", 4, 64, (56, 56), 64, 31, padding="same", groups=64),
    Layer("depthwise7x7", 16, 96, (56, 56), 96, 7, padding="same", groups=96),
    Layer("dense13x13", 8, 32, (64, 64), 32, 13, padding="same"),
    Layer("dense7x7", 8, 64, (56, 56), 64, 7, padding="same"),
    Layer("filters1d", 8, 16, (4096,), 16, 129, padding="same"),
    Layer("coils15x15", 1, 8, (128, 128), 8, 15, padding="full", dtype="complex64"),
]
SUITES = {"classic": CLASSIC, "large": LARGE}
LAYERS = {spec.name: spec for suite in SUITES.values() for spec in suite}


def layer(name: str) -> Layer:
    return LAYERS[name]


# A candidate turns numpy inputs into three callables (forward, backward, both) and a synchronise.
Runner = tuple[Callable[[], Any], Callable[[], Any], Callable[[], Any]]


class NotApplicable(Exception):
    """A candidate that cannot compute a layer (sigpy has no groups or padding widths); it gets no row."""


def _xpconv_runner(convert: Callable[[np.ndarray], Any], method: Method = "auto") -> Callable[[Layer], Runner]:
    def make(spec: Layer) -> Runner:
        x, kernel, dz = (convert(a) for a in spec.arrays())
        params = spec.params

        def forward():
            return xpconv.conv(x, kernel, method=method, **params)

        def backward():
            return xpconv.conv_backward(dz, x, kernel, method=method, **params)

        def both():
            return forward(), backward()

        return forward, backward, both

    return make


def _symmetric_padding(spec: Layer) -> tuple[int, ...]:
    if any(before != after for before, after in spec.pads):
        raise NotApplicable(f"uneven padding {spec.pads}")
    return tuple(before for before, _ in spec.pads)


def _torch_native_runner(device: str) -> Callable[[Layer], Runner]:
    import torch
    import torch.nn.functional as F

    def make(spec: Layer) -> Runner:
        x, kernel, dz = (torch.asarray(a, device=device) for a in spec.arrays())
        conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[spec.ndim]
        params = dict(spec.params, padding=_symmetric_padding(spec))
        x.requires_grad_(True)
        kernel.requires_grad_(True)

        def forward():
            with torch.no_grad():
                return conv(x, kernel, **params)

        z = conv(x, kernel, **params)

        def backward():
            x.grad = kernel.grad = None
            z.backward(dz, retain_graph=True)
            return x.grad, kernel.grad

        def both():
            x.grad = kernel.grad = None
            conv(x, kernel, **params).backward(dz)
            return x.grad, kernel.grad

        return forward, backward, both

    return make


def _jax_runner(spec: Layer) -> Runner:
    import jax
    import jax.numpy as jnp

    x, kernel, dz = (jnp.asarray(a) for a in spec.arrays())
    letters = "WHD"[: spec.ndim][::-1]

    def conv(x_, k_):
        return jax.lax.conv_general_dilated(
            x_,
            k_,
            (spec.stride,) * spec.ndim,
            list(spec.pads),
            rhs_dilation=(spec.dilation,) * spec.ndim,
            feature_group_count=spec.groups,
            dimension_numbers=("NC" + letters, "OI" + letters, "NC" + letters),
        )

    def gradients(x_, k_, dz_):
        if "complex" not in spec.dtype:
            return jax.vjp(conv, x_, k_)[1](dz_)
        # JAX's cotangents are J^T v; torch's (and xpconv's) conjugate ones, J^H v = conj(J^T conj(v))
        return tuple(jnp.conj(g) for g in jax.vjp(conv, x_, k_)[1](jnp.conj(dz_)))

    forward_jit = jax.jit(conv)
    backward_jit = jax.jit(gradients)
    both_jit = jax.jit(lambda x_, k_, dz_: (conv(x_, k_), gradients(x_, k_, dz_)))
    return (
        lambda: forward_jit(x, kernel).block_until_ready(),
        lambda: jax.block_until_ready(backward_jit(x, kernel, dz)),
        lambda: jax.block_until_ready(both_jit(x, kernel, dz)),
    )


def _sigpy_runner(spec: Layer) -> Runner:
    """sigpy's CPU functions (a loop over scipy.signal per channel pair): ``convolve`` forward, its
    data and filter adjoints backward. They take "full" or "valid", stride, no groups, no dilation.
    sigpy convolves (the filter flipped): it gets the flipped kernel, and computes the same numbers."""
    if spec.padding not in ("full", "valid") or spec.groups != 1 or spec.dilation != 1:
        raise NotApplicable("sigpy convolves with 'full' or 'valid' padding, no groups or dilation")
    import sigpy.conv

    x, kernel, dz = spec.arrays()
    spatial = tuple(range(2, 2 + spec.ndim))
    flipped = np.ascontiguousarray(np.flip(kernel, axis=spatial))
    options = dict(mode=spec.padding, strides=(spec.stride,) * spec.ndim, multi_channel=True)

    def forward():
        return sigpy.conv.convolve(x, flipped, **options)

    def backward():
        return (
            sigpy.conv.convolve_data_adjoint(dz, flipped, x.shape, **options),
            np.flip(sigpy.conv.convolve_filter_adjoint(dz, x, flipped.shape, **options), axis=spatial),
        )

    def both():
        return forward(), backward()

    return forward, backward, both


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
    "sigpy": "sigpy",
    "xpconv numpy direct": "numpy",
    "xpconv numpy dilate": "numpy",
    "xpconv numpy fft": "numpy",
    "xpconv torch fft": "torch",
}
DEFAULT_CPU_CANDIDATES = ("xpconv numpy", "xpconv torch", REFERENCE, "jax", "sigpy")
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
    if name == "sigpy":
        return _sigpy_runner(spec), no_sync
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
    method = "fft" if name.endswith(" fft") else "auto"
    return _xpconv_runner(lambda a: torch.asarray(a, device=device), method)(spec), sync


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
    runners: dict[str, tuple[Runner, Callable[[], None]] | None] = {}
    for line in sys.stdin:
        request = json.loads(line)
        key = json.dumps(request, sort_keys=True)
        if key not in runners:
            try:
                runners[key] = made = make_runner(name, device, Layer(**request))
            except NotApplicable:
                runners[key] = made = None
            if made is not None:
                for fn in made[0]:
                    _time(fn, made[1])
        made = runners[key]
        if made is None:
            print(json.dumps({}), flush=True)  # this candidate does not compute this layer
            continue
        runner, sync = made
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
    return {
        n: {p: statistics.median(v) for p, v in phases.items()}
        for n, phases in samples.items()
        if all(phases.values())  # candidates that do not compute this layer answered nothing
    }


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


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m xpconv bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--suite",
        choices=[*SUITES, "models", "signals"],
        default="classic",
        help="classic: 3x3 and other common CNN layers (default); large: 7x7 to 31x31 kernels, long 1-D "
        "filters and a complex case, with sigpy where it applies; models: one training step of model blocks "
        "in torch and Flax, as written and through xpconv (xpconv.tools.models); signals: one-channel signals, "
        "images and volumes against scipy.signal (xpconv.tools.signals)",
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
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="folder for JSON and Markdown")
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
    stem = args.device if args.suite == "classic" or args.layers else f"{args.device}-{args.suite}"
    (args.out / f"{stem}.md").write_text(text)
    payload = {"command": command, "machine": machine, "rows": [asdict(r) for r in rows], "summary": summary(rows)}
    (args.out / f"{stem}.json").write_text(json.dumps(payload, indent=1))
    print(f"wrote {args.out / (stem + '.md')} and {args.out / (stem + '.json')}")
    if args.plot:
        plot(rows, machine, args.plot)
        print(f"wrote {args.plot}")
    return 0


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
