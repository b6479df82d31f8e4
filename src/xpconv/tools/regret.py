"""``python -m xpconv bench --regret``: how much slower ``method="auto"`` is than the fastest method.

Every pass (forward, dX, dK) of every geometry of a held-out set (none of it in the benchmark
suites: long FIR filters, one-channel filterbanks, 1-D audio layers, large images, mid-size kernels,
depthwise, complex, 3-D volumes) is timed with each method that applies and with ``"auto"``, in
alternating rounds, medians; each library runs in a process of its own (an idle torch thread pool
slows NumPy's work, and the other way round). The *regret* of a pass is ``"auto"``'s time over the
fastest method's: 1.0 when ``"auto"`` picks the winner (below 1 is timing noise).

A method that takes more than :data:`HOPELESS` times the fastest in its first two (warm-up) calls
is timed no more: it cannot win, and the column matrix of a 1,001-tap filter takes seconds.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

import xpconv

from .suites import REGRET_SET, Layer

PASSES = ("forward", "input", "weight")
METHODS = ("direct", "dilate", "winograd", "fft", "native")
LIBRARIES = ("numpy", "torch")
HOPELESS = 8.0
# Passes faster than this take more rounds (up to MOST_ROUNDS): a 1 ms pass moved by 1.7x between rounds.
FAST_PASS_SECONDS = 0.1
MOST_ROUNDS = 41


def _as_library(library: str) -> Callable[[np.ndarray], Any]:
    if library == "torch":
        import torch

        return torch.asarray
    return lambda a: a


def pass_call(spec: Layer, library: str, grad: str, method: str) -> Callable[[], Any]:
    """One pass of ``spec`` by ``method`` (xpconv's public API), on fresh arrays of ``library``."""
    convert = _as_library(library)
    x, kernel, dz = (convert(a) for a in spec.arrays())
    x_shape, kernel_shape, _ = spec.shapes
    options = dict(spec.params, method=method)
    if grad == "forward":
        return lambda: xpconv.conv(x, kernel, **options)
    if grad == "input":
        return lambda: xpconv.conv_input_grad(dz, kernel, x_shape, **options)
    return lambda: xpconv.conv_weight_grad(dz, x, kernel_shape, **options)


def seconds_of(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def time_pass(spec: Layer, library: str, grad: str, repeats: int) -> dict[str, float]:
    """Median seconds of one pass by every method that applies and by ``"auto"``."""
    calls = {}
    for method in ("auto", *METHODS):
        if grad == "forward" and method == "dilate":
            continue  # the forward's "dilate" is its "direct"
        calls[method] = pass_call(spec, library, grad, method)
    return time_methods(calls, repeats, keep=("auto",))


def time_methods(calls: dict[str, Callable[[], Any]], rounds: int, keep: Sequence[str] = ()) -> dict[str, float]:
    """Seconds of each of ``calls`` (method: computation) that applies (a ``ValueError`` says one does
    not): medians of alternating rounds, more of them for sub-millisecond passes; a method more than
    :data:`HOPELESS` times the fastest in its first two calls keeps the second's time (unless in ``keep``)."""
    first: dict[str, float] = {}
    for method, call in calls.items():
        try:
            first[method] = seconds_of(call)
        except ValueError:
            continue  # the method does not apply here
    best = min(first.values())
    for method in [m for m in first if first[m] > HOPELESS * best]:
        # a first call may build what later calls reuse (oneDNN's primitive for the shape: 30-40 ms
        # where the call then takes 1 ms): a second call decides
        first[method] = seconds_of(calls[method])
    best = min(first.values())
    contenders = {m: calls[m] for m in first if first[m] <= HOPELESS * best or m in keep}
    rounds = max(rounds, min(MOST_ROUNDS, int(FAST_PASS_SECONDS / best)))  # sub-ms passes are noisy
    return {**first, **alternating_medians(contenders, rounds)}


def alternating_medians(calls: dict[str, Callable[[], Any]], rounds: int) -> dict[str, float]:
    """Median seconds of each call over ``rounds`` rounds, each running every call once in a rotating
    order, so that the machine's drift hits them alike."""
    names = list(calls)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(seconds_of(calls[name]))
    return {name: statistics.median(t) for name, t in times.items()}


def measure(specs: Sequence[Layer], library: str, repeats: int) -> list[dict[str, Any]]:
    """Every pass of every geometry of ``specs`` on ``library``, as rows of the regret table."""
    rows = []
    for spec in specs:
        for grad in PASSES:
            seconds = time_pass(spec, library, grad, repeats)
            own = {m: t for m, t in seconds.items() if m != "auto"}
            fastest = min(own, key=own.__getitem__)
            rows.append(
                {
                    "layer": spec.name,
                    "pass": grad,
                    "library": library,
                    "seconds": seconds,
                    "fastest": fastest,
                    "regret": seconds["auto"] / own[fastest],
                }
            )
            print(f"  {library:6} {spec.name:32} {grad:8} regret {rows[-1]['regret']:.2f} (fastest {fastest})")
    return rows


def statistics_of(regrets: Sequence[float]) -> dict[str, float]:
    """Median, 90th percentile (nearest rank) and worst."""
    ordered = sorted(regrets)
    rank = max(0, math.ceil(0.9 * len(ordered)) - 1)
    return {"median": statistics.median(ordered), "p90": ordered[rank], "worst": ordered[-1]}


def markdown(rows: list[dict[str, Any]], command: str) -> str:
    lines = [
        '# Regret of method="auto"',
        "",
        f"Command: `{command}`. Each pass timed with every method that applies and with `auto`, medians of",
        'alternating rounds, one process per library; regret = `auto` / fastest. "-": does not apply.',
        "",
    ]
    for library in sorted({row["library"] for row in rows}):
        mine = [row for row in rows if row["library"] == library]
        summary = statistics_of([row["regret"] for row in mine])
        lines += [
            f"## {library}: median {summary['median']:.2f}, 90th percentile {summary['p90']:.2f}, "
            f"worst {summary['worst']:.2f} ({len(mine)} passes)",
            "",
            "| layer | pass | " + " | ".join(METHODS) + " | auto | regret |",
            "| --- | --- | " + " | ".join("---:" for _ in METHODS) + " | ---: | ---: |",
        ]
        for row in mine:
            cells = [f"{row['seconds'][m] * 1e3:.2f}" if m in row["seconds"] else "-" for m in (*METHODS, "auto")]
            fastest = METHODS.index(row["fastest"])
            cells[fastest] = f"**{cells[fastest]}**"
            lines.append(f"| {row['layer']} | {row['pass']} | " + " | ".join(cells) + f" | {row['regret']:.2f} |")
        lines.append("")
    return "\n".join(lines)


def run_regret(libraries: Sequence[str], repeats: int, out: Path, layers: Sequence[str] | None, command: str) -> int:
    """Each library in a process of its own; the table to ``out`` (``.md`` and ``.json``)."""
    rows: list[dict[str, Any]] = []
    for library in libraries:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "rows.json"
            worker = [sys.executable, "-m", "xpconv.tools.regret", "--worker", library, "--repeats", str(repeats)]
            worker += ["--json", str(path)] + (["--layers", *layers] if layers else [])
            subprocess.run(worker, check=True)
            rows += json.loads(path.read_text())
    out.with_suffix(".json").write_text(json.dumps({"layers": [asdict(s) for s in REGRET_SET], "rows": rows}, indent=1))
    out.with_suffix(".md").write_text(markdown(rows, command))
    print(markdown(rows, command))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xpconv.tools.regret")
    parser.add_argument("--worker", choices=LIBRARIES, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--layers", nargs="+")
    args = parser.parse_args(argv)
    specs = [s for s in REGRET_SET if not args.layers or s.name in args.layers]
    rows = measure(specs, args.worker, args.repeats)
    args.json.write_text(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
