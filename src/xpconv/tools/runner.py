"""How ``bench`` times a candidate: one worker process per candidate (xpconv on NumPy or torch,
torch's own convolution, JAX, sigpy), fed layers on stdin, answering one timed round of the three
phases; candidates interleaved in rotating order, medians; peak memory in a fresh process."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, cast

import numpy as np

import xpconv
from xpconv.typing import Method

from .suites import Layer

PHASES = ("forward", "backward", "both")
REFERENCE = "torch native"
PAUSE_SECONDS = 0.2


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


def installed(module: str) -> bool:
    """Whether ``module`` can be imported (found, not imported)."""
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
    return [name for name in chosen if installed(table[name])]


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
                [sys.executable, "-c", f"from xpconv.tools.runner import serve; serve({name!r}, {device!r})"],
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
        "from xpconv.tools.suites import Layer; from xpconv.tools.runner import peak_memory; "
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
    if installed("torch"):
        from importlib.metadata import version

        description["torch"] = version("torch")  # not imported here: the parent process stays idle
        if device == "cuda":
            import torch

            description["gpu"] = torch.cuda.get_device_name()
    return description
