"""The release gate: ``python -m xpconv check --cases N --seed S``.

Draws ``N`` random cases over every kind of call xpconv offers — 1-D, 2-D and 3-D convolutions and
transposed convolutions, channels-first and channels-last, dense, grouped and depthwise, dilation,
every padding form ("full" too), every method ("fft" too), tied, untied and no bias, float64,
complex128 and integers — runs each on one of the installed CPU backends (NumPy, torch,
array-api-strict, in turn) and compares the forward pass and all three gradients with torch
autograd in float64 (complex128). Without torch, the reference is a loop over kernel taps for the
forward pass and central finite differences for the gradients, and the transposed kinds are not
run (the summary says so). Integer cases must be exact.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import xpconv

from .check import Geometry, add_bias, available_targets, finite_difference_reference, optional_import, relative_error

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

    def geometry(self) -> Geometry:
        """The convolution's geometry (non-transposed cases)."""
        return Geometry.of(self.x_shape, self.kernel_shape, **self.params)

    @property
    def output_shape(self) -> tuple[int, ...]:
        """From the definitions (torch's for the transposed convolution), not from xpconv."""
        if not self.transposed:
            return self.geometry().output_shape
        p = self.params
        size = tuple(
            (n - 1) * s - 2 * pad + d * (k - 1) + extra + 1
            for n, s, pad, d, k, extra in zip(
                self.x_shape[2:], p["stride"], p["padding"], p["dilation"], self.kernel_shape[2:], p["output_padding"]
            )
        )
        return (self.x_shape[0], self.kernel_shape[1] * p["groups"], *size)

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
    dtype = str(rng.choice(["int64", "complex128", "float64", "float64"], p=[0.15, 0.25, 0.3, 0.3]))
    methods = ["auto", "direct", "dilate"] + ([] if dtype == "int64" else ["fft"])
    if winograd_shape and dtype != "int64":
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
            "full",
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
        method="winograd" if "winograd" in methods and rng.random() < 0.5 else str(rng.choice(methods[:4])),
        x_shape=x_shape,
        kernel_shape=kernel_shape,
        params=params,
    )


def _torch_reference(case: GateCase, x, kernel, bias, dz) -> tuple[Any, ...]:
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
        pads = tuple(amount for pair in reversed(case.geometry().pads) for amount in pair)
        z = getattr(F, f"conv{case.ndim}d")(
            F.pad(xt, pads), kt, stride=p["stride"], dilation=p["dilation"], groups=p["groups"]
        )
    z = add_bias(z, bt)  # a torch tensor: the same reshape
    z.backward(torch.tensor(dz))
    db = None if bt is None else bt.grad.numpy()
    return z.detach().numpy(), xt.grad.numpy(), kt.grad.numpy(), db


def _channels_last(a: np.ndarray) -> np.ndarray:
    return np.moveaxis(a, 1, -1)


def run_case(case: GateCase, target: Any, rng: np.random.Generator, torch_available: bool) -> float:
    """The largest error of one case (0 for exact integer agreement, inf for an integer mismatch)."""
    integer = case.dtype == "int64"

    def values(shape: tuple[int, ...]) -> np.ndarray:
        if integer:
            return rng.integers(-9, 10, shape).astype(np.float64)
        if case.dtype == "complex128":
            return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
        return rng.standard_normal(shape)

    x, kernel = values(case.x_shape), values(case.kernel_shape)
    call = xpconv.conv_transpose if case.transposed else xpconv.conv
    backward = xpconv.conv_transpose_backward if case.transposed else xpconv.conv_backward
    z_shape = case.output_shape
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
    # The backward takes the mode, or (in half the cases) the forward's bias array itself.
    bias_argument = B if B is not None and rng.random() < 0.5 else case.bias
    dx, dk, db = backward(DZ, X, K, bias=bias_argument, **options)
    dx, dk = target.to_numpy(dx), target.to_numpy(dk)
    db = None if db is None else target.to_numpy(db)
    if last:
        z, dx = np.moveaxis(z, -1, 1), np.moveaxis(dx, -1, 1)
        if db is not None and db.ndim > 1 and isinstance(bias_argument, str):  # an array's gradient keeps its shape
            db = np.moveaxis(db, -1, 0)
    got = (z, dx, dk, db)
    if integer:
        assert all(g is None or g.dtype == np.int64 for g in got), [None if g is None else g.dtype for g in got]
    if expected is None:  # no torch: the loop forward, and finite differences of sum(z * dz)
        differences = finite_difference_reference(x, kernel, bias, dz, case.geometry(), rng)
        return max(relative_error(z, differences.z), differences.check_gradients(dx, dk, db))
    errors = []
    for actual, reference, scale in zip(got, expected, (None, None, None, float(np.sum(np.abs(dz))))):
        if reference is None:
            continue
        if integer:
            errors.append(0.0 if np.array_equal(actual.astype(np.float64), np.rint(reference)) else math.inf)
        else:
            errors.append(relative_error(actual, reference, scale))
    return max(errors)


def run_gate(count: int, seed: int, print_fn: Callable[[str], None] = print) -> int:
    """Run ``count`` drawn cases; print counts per kind and the worst error; return the mismatches."""
    rng = np.random.default_rng(seed)
    torch_available = optional_import("torch") is not None
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
