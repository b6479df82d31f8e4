"""``python -m xpconv bench --suite signals``: one-channel signals, images and volumes against scipy.signal.

The scientists' common case: one signal, one filter, ``padding="same"`` (odd filters). Each pass of
xpconv (``method="auto"``, NumPy arrays) is timed beside the same numbers by scipy.signal, the faster
of ``fftconvolve`` and ``oaconvolve``:

- forward ``z = correlate(x, h)``: ``convolve(x, flip(h), "same")``;
- dX: ``convolve(dz, h, "same")``;
- dK: ``correlate(pad(x), dz)``, ``"valid"``: ``convolve(pad(x), flip(dz), "valid")``.

Alternating rounds, medians; the results are checked equal (relative to the largest value) first.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import xpconv

from .regret import alternating_medians

# (name, signal shape, filter shape)
SIGNALS = [
    ("1-D, 60,000 samples, 1,001 taps", (60_000,), (1001,)),
    ("2-D, 512x512, 31x31", (512, 512), (31, 31)),
    ("3-D, 80^3, 9^3", (80, 80, 80), (9, 9, 9)),
]


def _passes(x: np.ndarray, h: np.ndarray, dz: np.ndarray) -> dict[str, tuple[Callable[[], Any], Callable[[str], Any]]]:
    """Per pass: xpconv's call, and scipy.signal's of a mode-taking function's name."""
    import scipy.signal

    flip_h = np.flip(h)
    padded = np.pad(x, [(k // 2, k // 2) for k in h.shape])
    lead = (None, None)

    def scipy_call(name: str, a: np.ndarray, b: np.ndarray, mode: str) -> Callable[[], Any]:
        return lambda: getattr(scipy.signal, name)(a, b, mode=mode)

    return {
        "forward": (
            lambda: xpconv.conv(x[lead], h[lead], padding="same")[0, 0],
            lambda name: scipy_call(name, x, flip_h, "same"),
        ),
        "input": (
            lambda: xpconv.conv_input_grad(dz[lead], h[lead], (1, 1, *x.shape), padding="same")[0, 0],
            lambda name: scipy_call(name, dz, h, "same"),
        ),
        "weight": (
            lambda: xpconv.conv_weight_grad(dz[lead], x[lead], (1, 1, *h.shape), padding="same")[0, 0],
            lambda name: scipy_call(name, padded, np.flip(dz), "valid"),
        ),
    }


def time_signals(repeats: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    rows = []
    for name, size, taps in SIGNALS:
        x, h = rng.standard_normal(size, dtype=np.float32), rng.standard_normal(taps, dtype=np.float32)
        dz = rng.standard_normal(size, dtype=np.float32)
        for grad, (ours, theirs) in _passes(x, h, dz).items():
            calls = {"xpconv": ours, "fftconvolve": theirs("fftconvolve"), "oaconvolve": theirs("oaconvolve")}
            expected = calls["fftconvolve"]()
            for label, call in calls.items():
                error = float(np.max(np.abs(np.asarray(call()) - expected)) / np.max(np.abs(expected)))
                if error > 1e-4:
                    raise AssertionError(f"{name} {grad}: {label} differs from fftconvolve by {error:.1e}")
            medians = alternating_medians(calls, repeats)
            scipy_best = min(medians["fftconvolve"], medians["oaconvolve"])
            rows.append({"case": name, "pass": grad, **medians, "ratio": medians["xpconv"] / scipy_best})
            print(f"  {name:34} {grad:8} xpconv/scipy {rows[-1]['ratio']:.2f}")
    return rows


def markdown(rows: list[dict[str, Any]], command: str) -> str:
    lines = [
        "# One-channel signals against scipy.signal",
        "",
        f'Command: `{command}`. float32, NumPy arrays, `padding="same"`; medians of alternating rounds;',
        "ratio = xpconv over the faster of scipy.signal's `fftconvolve` and `oaconvolve` on the same numbers.",
        "",
        "| case | pass | xpconv (ms) | fftconvolve (ms) | oaconvolve (ms) | ratio |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        times = " | ".join(f"{row[label] * 1e3:.2f}" for label in ("xpconv", "fftconvolve", "oaconvolve"))
        lines.append(f"| {row['case']} | {row['pass']} | {times} | {row['ratio']:.2f} |")
    return "\n".join(lines) + "\n"


def run_signals(repeats: int, out: Path, command: str) -> int:
    rows = time_signals(repeats)
    text = markdown(rows, command)
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cpu-signals.md").write_text(text)
    return 0
