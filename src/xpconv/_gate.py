"""The release gate: ``python -m xpconv check --cases N --seed S``.

Draws ``N`` random cases over every kind of call xpconv offers — 1-D, 2-D and 3-D convolutions and
transposed convolutions, channels-first and channels-last, dense, grouped and depthwise, dilation,
every padding form, every method, tied, untied and no bias, float64 and integers — runs each on one
of the installed CPU backends (NumPy, torch, array-api-strict, in turn) and compares the forward
pass and all three gradients with torch autograd in float64. Without torch, the reference is a loop
over kernel taps for the forward pass and central finite differences for the gradients, and the
transposed kinds are not run (the summary says so). Integer cases must be exact.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _api, _transpose
from ._check import _import, available_targets
from ._geometry import conv_geometry

TOLERANCE = 1e-10

__all__ = ["draw_case", "run_gate"]


@dataclass
class GateCase:
    ndim: int
    transposed: bool
    layout: str
    groups_kind: str
    dtype: str
    bias: str | None
    method: str
    x_shape: tuple[int, ...]
    kernel_shape: tuple[int, ...]
    params: dict = field(default_factory=dict)

    def kinds(self) -> list[str]:
        return [
            f"{self.ndim}-D",
            "transposed" if self.transposed else "convolution",
            self.layout,
            self.groups_kind,
            self.dtype,
            f"bias {self.bias}",
            f"method {self.method}",
            "dilated" if any(d > 1 for d in self.params["dilation"]) else "undilated",
        ]


def draw_case(rng: np.random.Generator) -> GateCase:
    ndim = int(rng.choice([1, 2, 2, 3]))
    transposed = bool(rng.random() < 0.25)
    groups_kind = str(rng.choice(["dense", "grouped", "depthwise"]))
    groups = 1 if groups_kind == "dense" else int(rng.integers(2, 4))
    if groups_kind == "depthwise":
        channels, filters = groups, groups * int(rng.integers(1, 3))
    else:
        channels, filters = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
    winograd_shape = ndim == 2 and not transposed and rng.random() < 0.4
    kernel = (3, 3) if winograd_shape else tuple(int(k) for k in rng.integers(1, 4 if ndim == 3 else 5, ndim))
    stride = (1,) * ndim if winograd_shape else tuple(int(s) for s in rng.integers(1, 4, ndim))
    dilation = tuple(int(d) for d in rng.integers(1, 3, ndim))
    size = []
    for k, d, s in zip(kernel, dilation, stride):
        span = d * (k - 1) + 1
        size.append(span + int(rng.integers(0, 3 if ndim == 3 else 7)) * s + int(rng.integers(0, s)))
    dtype = "int64" if rng.random() < 0.15 else "float64"
    methods = ["auto", "direct", "dilate"]
    if winograd_shape and dtype == "float64":
        methods.append("winograd")
    if transposed:
        padding: Any = tuple(int(rng.integers(0, (k - 1) * d // 2 + 1)) for k, d in zip(kernel, dilation))
        output_padding = tuple(int(rng.integers(0, max(s, d))) for s, d in zip(stride, dilation))
        params = {"stride": stride, "padding": padding, "output_padding": output_padding, "dilation": dilation}
        x_shape = (int(rng.integers(1, 3)), channels, *size)
        kernel_shape = (channels, filters // groups, *kernel)
    else:
        forms: list[Any] = [
            "valid",
            "same",
            int(rng.integers(0, 3)),
            tuple(int(p) for p in rng.integers(0, 3, ndim)),
            tuple((int(a), int(b)) for a, b in rng.integers(0, 3, (ndim, 2))),
        ]
        padding = forms[int(rng.integers(0, len(forms)))]
        params = {"stride": stride, "padding": padding, "dilation": dilation}
        x_shape = (int(rng.integers(1, 4)), channels, *size)
        kernel_shape = (filters, channels // groups, *kernel)
    params["groups"] = groups
    return GateCase(
        ndim=ndim,
        transposed=transposed,
        layout=str(rng.choice(["channels_first", "channels_last"])),
        groups_kind=groups_kind,
        dtype=dtype,
        bias=[None, "tied", "untied"][int(rng.integers(0, 3))],
        method="winograd" if "winograd" in methods and rng.random() < 0.5 else str(rng.choice(methods[:3])),
        x_shape=x_shape,
        kernel_shape=kernel_shape,
        params=params,
    )


def _explicit_pads(case: GateCase) -> tuple[tuple[int, int], ...]:
    geometry = conv_geometry(case.x_shape, case.kernel_shape, ndim=case.ndim, **case.params)
    return geometry.pads


def _torch_reference(case: GateCase, x, kernel, bias, dz) -> tuple[np.ndarray, ...]:
    import torch
    import torch.nn.functional as F

    xt, kt = torch.tensor(x, requires_grad=True), torch.tensor(kernel, requires_grad=True)
    bt = None if bias is None else torch.tensor(bias, requires_grad=True)
    p = case.params
    if case.transposed:
        transpose = getattr(F, f"conv_transpose{case.ndim}d")
        z = transpose(
            xt, kt, stride=p["stride"], padding=p["padding"], output_padding=p["output_padding"], groups=p["groups"],
            dilation=p["dilation"],
        )  # fmt: skip
    else:
        pads = tuple(amount for pair in reversed(_explicit_pads(case)) for amount in pair)
        z = getattr(F, f"conv{case.ndim}d")(
            F.pad(xt, pads), kt, stride=p["stride"], dilation=p["dilation"], groups=p["groups"]
        )
    if bt is not None:
        z = z + (bt.reshape(-1, *[1] * case.ndim) if bt.ndim == 1 else bt)
    z.backward(torch.tensor(dz))
    db = None if bt is None else bt.grad.numpy()
    return z.detach().numpy(), xt.grad.numpy(), kt.grad.numpy(), db


def _loop_forward(case: GateCase, x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """The definition of the (non-transposed) forward pass, one kernel tap and group at a time."""
    geometry = conv_geometry(case.x_shape, case.kernel_shape, ndim=case.ndim, **case.params)
    padded = np.pad(x, ((0, 0), (0, 0), *geometry.pads))
    groups = geometry.groups
    cg, fg = geometry.in_channels // groups, geometry.out_channels // groups
    z = np.zeros(geometry.output_shape)
    for g, tap in itertools.product(range(groups), itertools.product(*(range(k) for k in geometry.kernel_size))):
        index = tuple(
            slice(t * d, t * d + s * (o - 1) + 1, s)
            for t, d, s, o in zip(tap, geometry.dilation, geometry.stride, geometry.output_size)
        )
        window = padded[(slice(None), slice(g * cg, (g + 1) * cg), *index)]
        weights = kernel[(slice(g * fg, (g + 1) * fg), slice(None), *tap)]
        z[:, g * fg : (g + 1) * fg] += np.tensordot(window, weights, axes=([1], [1])).transpose(
            0, window.ndim - 1, *range(1, window.ndim - 1)
        )
    return z


def _finite_difference_errors(case, x, kernel, bias, dz, grads, rng) -> float:
    def loss(x_, kernel_, bias_):
        z = _loop_forward(case, x_, kernel_)
        if bias_ is not None:
            z = z + (bias_.reshape(-1, *[1] * case.ndim) if bias_.ndim == 1 else bias_)
        return float(np.sum(z * dz))

    worst = 0.0
    arguments = [x, kernel, bias]
    for slot, grad in enumerate(grads):
        if grad is None:
            continue
        direction = rng.standard_normal(arguments[slot].shape)
        plus, minus = list(arguments), list(arguments)
        plus[slot], minus[slot] = arguments[slot] + direction, arguments[slot] - direction
        difference = (loss(*plus) - loss(*minus)) / 2
        analytic = float(np.sum(grad * direction))
        worst = max(
            worst, abs(difference - analytic) / (float(np.linalg.norm(grad) * np.linalg.norm(direction)) + 1e-300)
        )
    return worst


def _channels_last(a: np.ndarray) -> np.ndarray:
    return np.moveaxis(a, 1, -1)


def run_case(case: GateCase, target: Any, rng: np.random.Generator, torch_available: bool) -> float:
    """The largest error of one case (0 for exact integer agreement, inf for an integer mismatch)."""
    integer = case.dtype == "int64"

    def values(shape: tuple[int, ...]) -> np.ndarray:
        return rng.integers(-9, 10, shape).astype(np.float64) if integer else rng.standard_normal(shape)

    x, kernel = values(case.x_shape), values(case.kernel_shape)
    call = _transpose.conv_transpose if case.transposed else _api.conv
    backward = _transpose.conv_transpose_backward if case.transposed else _api.conv_backward
    z_shape = tuple(call(np.zeros(case.x_shape), np.zeros(case.kernel_shape), **case.params).shape)
    filters = z_shape[1]
    bias = None if case.bias is None else values((filters,) if case.bias == "tied" else (filters, *z_shape[2:]))
    dz = values(z_shape)
    expected = _torch_reference(case, x, kernel, bias, dz) if torch_available else None

    cast = (lambda a: a.astype(np.int64)) if integer else (lambda a: a)
    last = case.layout == "channels_last"
    to_layout = _channels_last if last else (lambda a: a)
    X, K, DZ = (target.asarray(cast(a)) for a in (to_layout(x), kernel, to_layout(dz)))
    B = None if bias is None else target.asarray(cast(bias))  # (F,) or (F, *out) in either layout
    options = dict(case.params, layout=case.layout, method=case.method)
    z = target.to_numpy(call(X, K, B, **options))
    dx, dk, db = backward(DZ, X, K, bias=case.bias, **options)
    dx, dk = target.to_numpy(dx), target.to_numpy(dk)
    db = None if db is None else target.to_numpy(db)
    if last:
        z, dx = np.moveaxis(z, -1, 1), np.moveaxis(dx, -1, 1)
        if db is not None and db.ndim > 1:
            db = np.moveaxis(db, -1, 0)
    got = (z, dx, dk, db)
    if integer:
        assert all(g is None or g.dtype == np.int64 for g in got), [None if g is None else g.dtype for g in got]
    if expected is None:  # no torch: the loop forward, and finite differences of sum(z * dz)
        forward = _loop_forward(case, x, kernel)
        if bias is not None:
            forward = forward + (bias.reshape(-1, *[1] * case.ndim) if bias.ndim == 1 else bias)
        return max(_relative(z, forward), _finite_difference_errors(case, x, kernel, bias, dz, (dx, dk, db), rng))
    errors = []
    for actual, reference, scale in zip(got, expected, (None, None, None, float(np.sum(np.abs(dz))))):
        if reference is None:
            continue
        if integer:
            errors.append(0.0 if np.array_equal(actual.astype(np.float64), np.rint(reference)) else math.inf)
        else:
            errors.append(_relative(actual, reference, scale))
    return max(errors)


def _relative(actual: np.ndarray, expected: np.ndarray, scale: float | None = None) -> float:
    if actual.shape != expected.shape:
        return math.inf
    scale = max(scale or float(np.max(np.abs(expected), initial=0.0)), 1e-300)
    return float(np.max(np.abs(actual - expected), initial=0.0)) / scale


def run_gate(count: int, seed: int, print_fn: Callable[[str], None] = print) -> int:
    """Run ``count`` drawn cases; print counts per kind and the worst error; return the mismatches."""
    rng = np.random.default_rng(seed)
    torch_available = _import("torch") is not None
    targets = [
        t for t in available_targets() if t.device == "cpu" and t.backend in ("numpy", "torch", "array_api_strict")
    ]
    reference = "torch autograd (float64)" if torch_available else "loop forward + central finite differences"
    print_fn(f"release gate: {count} drawn cases, seed {seed}, reference {reference}, tolerance {TOLERANCE:g}")
    counts: Counter[str] = Counter()
    skipped, failures, worst = 0, 0, 0.0
    for index in range(count):
        case = draw_case(rng)
        if case.transposed and not torch_available:
            skipped += 1
            continue
        target = targets[index % len(targets)]
        try:
            error = run_case(case, target, rng, torch_available)
        except Exception as exception:  # a crash is a mismatch too, reported with its case
            error = math.inf
            print_fn(f"ERROR case {index} on {target.backend}: {type(exception).__name__}: {exception} ({case})")
        counts.update([*case.kinds(), f"backend {target.backend}"])
        if math.isfinite(error):
            worst = max(worst, error)
        if not error <= TOLERANCE:
            failures += 1
            if math.isfinite(error):
                print_fn(f"MISMATCH case {index} on {target.backend}: relative error {error:.3g} ({case})")
    print_fn("cases per kind: " + ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items())))
    if skipped:
        print_fn(f"not run: {skipped} transposed cases (their reference needs torch)")
    print_fn(f"ran {count - skipped} cases: {failures} mismatches, worst relative error {worst:.2e}")
    return failures
