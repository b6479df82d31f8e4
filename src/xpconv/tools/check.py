"""``python -m xpconv check``: xpconv against an independent reference on every installed backend.

The reference is torch autograd in float64 where torch is installed. Without torch it is a plain
NumPy loop over kernel taps for the forward pass and central finite differences of
``L = sum(z * dz)`` along random directions for the gradients (``L`` is linear in each argument,
so the differences are exact up to rounding).
"""

from __future__ import annotations

import functools
import importlib
import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from array_api_compat import array_namespace, is_jax_namespace, is_torch_namespace

import xpconv

TOLERANCE = 1e-9


@dataclass(frozen=True)
class Geometry:
    """A convolution's shapes, worked out here from the definitions (the padding forms through the
    public ``xpconv.resolve_padding``), so that the references do not lean on xpconv's own geometry."""

    input_shape: tuple[int, ...]
    kernel_shape: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int
    pads: tuple[tuple[int, int], ...]

    @classmethod
    def of(cls, input_shape, kernel_shape, *, stride=1, padding="valid", dilation=1, groups=1) -> Geometry:
        ndim = len(kernel_shape) - 2

        def per_axis(value: Any) -> tuple[int, ...]:
            return tuple(value) if isinstance(value, (tuple, list)) else (value,) * ndim

        stride, dilation = per_axis(stride), per_axis(dilation)
        pads = xpconv.resolve_padding(padding, input_shape[2:], kernel_shape[2:], stride, dilation)
        return cls(tuple(input_shape), tuple(kernel_shape), stride, dilation, groups, pads)

    @property
    def in_channels(self) -> int:
        return self.input_shape[1]

    @property
    def out_channels(self) -> int:
        return self.kernel_shape[0]

    @property
    def kernel_size(self) -> tuple[int, ...]:
        return self.kernel_shape[2:]

    @property
    def output_size(self) -> tuple[int, ...]:
        sizes = zip(self.input_shape[2:], self.pads, self.kernel_size, self.stride, self.dilation)
        return tuple((n + b + a - d * (k - 1) - 1) // s + 1 for n, (b, a), k, s, d in sizes)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (self.input_shape[0], self.out_channels, *self.output_size)

    @property
    def winograd_applies(self) -> bool:
        """Where ``method="winograd"`` computes (float64 here): 2-D 3x3 kernels at stride 1."""
        return self.kernel_size == (3, 3) and self.stride == (1, 1)


@dataclass(frozen=True)
class Case:
    name: str
    input_shape: tuple[int, ...]
    kernel_shape: tuple[int, ...]
    params: dict

    def geometry(self) -> Geometry:
        return Geometry.of(self.input_shape, self.kernel_shape, **self.params)


def tutorial_case(batch: int = 8) -> Case:
    """The tutorial's example (X 256x1x36x47, K 2x1x5x8, stride (7, 4), 'same'), with a smaller batch."""
    return Case("tutorial", (batch, 1, 36, 47), (2, 1, 5, 8), {"stride": (7, 4), "padding": "same"})


def random_cases(count: int, rng: np.random.Generator) -> list[Case]:
    cases: list[Case] = []
    while len(cases) < count:
        groups = int(rng.choice([1, 1, 2, 3]))
        channels, filters = groups * int(rng.integers(1, 4)), groups * int(rng.integers(1, 4))
        ksize = tuple(int(k) for k in rng.integers(1, 6, 2))
        stride = tuple(int(s) for s in rng.integers(1, 5, 2))
        if len(cases) % 3 == 2:  # every third case is 3x3 at stride 1, where method="winograd" computes
            ksize, stride = (3, 3), (1, 1)
        dilation = tuple(int(d) for d in rng.integers(1, 4, 2))
        padding_forms = ["valid", "same", int(rng.integers(0, 4)), tuple(int(p) for p in rng.integers(0, 4, 2))]
        padding = padding_forms[int(rng.integers(0, len(padding_forms)))]
        size = tuple(int(d * (k - 1) + 1 + rng.integers(0, 9)) for k, d in zip(ksize, dilation))
        case = Case(
            f"random{len(cases)}",
            (int(rng.integers(1, 4)), channels, *size),
            (filters, channels // groups, *ksize),
            {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups},
        )
        cases.append(case)
    return cases


def loop_forward(x: np.ndarray, kernel: np.ndarray, geometry: Geometry) -> np.ndarray:
    """The definition of the forward pass, one kernel tap and one group at a time (no window view),
    for any number of spatial axes."""
    padded = np.pad(x, ((0, 0), (0, 0), *geometry.pads))
    groups, cg, fg = geometry.groups, geometry.in_channels // geometry.groups, geometry.out_channels // geometry.groups
    z = np.zeros(geometry.output_shape, dtype=np.result_type(x, kernel))
    for g, tap in itertools.product(range(groups), itertools.product(*(range(k) for k in geometry.kernel_size))):
        index = tuple(
            slice(t * d, t * d + s * (o - 1) + 1, s)
            for t, d, s, o in zip(tap, geometry.dilation, geometry.stride, geometry.output_size)
        )
        window_index: tuple[Any, ...] = (slice(None), slice(g * cg, (g + 1) * cg), *index)
        window = padded[window_index]  # (n, cg, *out)
        weight_index: tuple[Any, ...] = (slice(g * fg, (g + 1) * fg), slice(None), *tap)
        weights = kernel[weight_index]  # (fg, cg)
        z[:, g * fg : (g + 1) * fg] += np.moveaxis(np.tensordot(window, weights, axes=([1], [1])), -1, 1)
    return z


def add_bias(z: Any, bias: Any) -> Any:
    """``z`` plus a tied ``(F,)`` or untied ``(F, *out)`` bias, or ``z`` itself without one."""
    if bias is None:
        return z
    return z + (bias.reshape(-1, *[1] * (z.ndim - 2)) if bias.ndim == 1 else bias)


def relative_error(actual: np.ndarray, expected: np.ndarray, scale: float | None = None, floor: float = 1.0) -> float:
    """Largest difference relative to the largest expected value (or to ``scale``), and to at
    least ``floor``: one product of the standard-normal inputs, since an output no kernel tap
    reaches is exactly 0, and the FFT rounds it to ~1e-17. A shape mismatch is an infinite error."""
    if actual.shape != expected.shape:
        return math.inf
    scale = max(scale or float(np.max(np.abs(expected), initial=0.0)), floor, 1e-300)
    return float(np.max(np.abs(actual - expected), initial=0.0)) / scale


@dataclass
class Reference:
    z: np.ndarray
    check_gradients: Callable[[Any, Any, Any], float]


def torch_reference(x, kernel, bias, dz, geometry: Geometry, torch: Any) -> Reference:
    import torch.nn.functional as F

    xt, kt, bt = (torch.tensor(a, requires_grad=True) for a in (x, kernel, bias))
    (top, bottom), (left, right) = geometry.pads
    z = F.conv2d(
        F.pad(xt, (left, right, top, bottom)),
        kt,
        bt,
        stride=geometry.stride,
        dilation=geometry.dilation,
        groups=geometry.groups,
    )
    z.backward(torch.tensor(dz))
    expected = (xt.grad.numpy(), kt.grad.numpy(), bt.grad.numpy())

    def check(*grads: np.ndarray) -> float:
        return max(relative_error(g, e) for g, e in zip(grads, expected))

    return Reference(z.detach().numpy(), check)


def finite_difference_reference(
    x: np.ndarray,
    kernel: np.ndarray,
    bias: np.ndarray | None,
    dz: np.ndarray,
    geometry: Geometry,
    rng: np.random.Generator,
) -> Reference:
    """The loop forward, and central differences of ``L = vdot(dz, z)`` (``sum(conj(dz) * z)``)
    along random directions: ``L`` is linear in each argument, so they are exact up to rounding,
    and each gradient ``g`` must give ``vdot(g, direction)`` (for complex data that is the adjoint,
    torch's convention). ``bias`` may be tied, untied or None; ``check_gradients`` then takes
    ``dbias=None``."""

    def forward(x_, kernel_, bias_):
        return add_bias(loop_forward(x_, kernel_, geometry), bias_)

    def check(dx: Any, dkernel: Any, dbias: Any) -> float:
        worst = 0.0
        arguments: tuple[Any, ...] = (x, kernel, bias)
        for _ in range(3):
            for slot, grad in enumerate((dx, dkernel, dbias)):
                if grad is None:
                    continue
                direction = rng.standard_normal(arguments[slot].shape)
                if np.iscomplexobj(arguments[slot]):
                    direction = direction + 1j * rng.standard_normal(direction.shape)
                plus, minus = list(arguments), list(arguments)
                plus[slot], minus[slot] = arguments[slot] + direction, arguments[slot] - direction
                difference = complex(np.vdot(dz, forward(*plus) - forward(*minus))) / 2
                analytic = complex(np.vdot(grad, direction))
                scale = float(np.linalg.norm(grad) * np.linalg.norm(direction)) + 1e-300
                worst = max(worst, abs(difference - analytic) / scale)
        return worst

    return Reference(forward(x, kernel, bias), check)


@dataclass
class Target:
    backend: str
    device: str
    asarray: Callable[[np.ndarray], Any]
    to_numpy: Callable[[Any], np.ndarray]
    max_cases: int | None = None  # JAX compiles every operation for every new shape: a few cases suffice


def optional_import(name: str) -> Any | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def available_targets() -> list[Target]:
    targets = [Target("numpy", "cpu", np.asarray, np.asarray)]
    torch = optional_import("torch")
    if torch is not None:
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        for device in devices:
            targets.append(
                Target("torch", device, functools.partial(torch.asarray, device=device), lambda t: t.cpu().numpy())
            )
    cupy = optional_import("cupy")
    if cupy is not None:
        try:
            if cupy.cuda.runtime.getDeviceCount() > 0:
                targets.append(Target("cupy", "cuda", cupy.asarray, cupy.asnumpy))
        except Exception:  # no driver or no device: CuPy is installed but unusable here
            pass
    strict = optional_import("array_api_strict")
    if strict is not None:
        targets.append(Target("array_api_strict", "cpu", strict.asarray, lambda a: np.asarray(np.from_dlpack(a))))
    jax = optional_import("jax")
    if jax is not None:
        jax.config.update("jax_enable_x64", True)  # the check runs in float64
        targets.append(Target("jax", str(jax.devices()[0].platform), jax.numpy.asarray, np.asarray, max_cases=6))
    dask_array = optional_import("dask.array")
    if dask_array is not None:
        targets.append(
            Target(
                "dask",
                "cpu",
                lambda a: dask_array.from_array(a, chunks=(max(1, a.shape[0] // 2), *a.shape[1:])),
                lambda a: np.asarray(a.compute()),
            )
        )
    return targets


def run_check(random_count: int = 24, seed: int = 0, batch: int = 8, print_fn: Callable[[str], None] = print) -> int:
    """Run every case on every backend; print the table; return the number of failed cases."""
    rng = np.random.default_rng(seed)
    cases = [tutorial_case(batch), *random_cases(random_count, rng)]
    torch = optional_import("torch")
    reference_name = "torch autograd (float64)" if torch is not None else "loop forward + central finite differences"
    print_fn(f"xpconv check: {len(cases)} cases (the tutorial's example geometry + {random_count} random ones)")
    print_fn(
        f"reference: {reference_name}; methods: {', '.join(xpconv.METHODS)}; dtype float64; tolerance {TOLERANCE:g}"
    )
    prepared = []
    for case in cases:
        geometry = case.geometry()
        x = rng.standard_normal(geometry.input_shape)
        kernel = rng.standard_normal(geometry.kernel_shape)
        bias = rng.standard_normal(geometry.out_channels)
        dz = rng.standard_normal(geometry.output_shape)
        if torch is not None:
            reference = torch_reference(x, kernel, bias, dz, geometry, torch)
        else:
            reference = finite_difference_reference(x, kernel, bias, dz, geometry, rng)
        prepared.append((case, x, kernel, bias, dz, reference))

    rows, failures = [], 0
    for target in available_targets():
        start, worst, failed = time.perf_counter(), 0.0, 0
        cases_run = prepared[: target.max_cases]
        for case, x, kernel, bias, dz, reference in cases_run:
            X, K, B, DZ = (target.asarray(a) for a in (x, kernel, bias, dz))
            errors = []
            for method in xpconv.METHODS:
                if method == "winograd" and not case.geometry().winograd_applies:
                    continue  # it raises a ValueError there, by design (tested in the suite)
                namespace = array_namespace(X)
                if method == "native" and not (is_torch_namespace(namespace) or is_jax_namespace(namespace)):
                    continue  # NumPy, CuPy, strict and Dask have no convolution of their own (a ValueError)
                z = xpconv.conv2d(X, K, B, method=method, **case.params)
                errors.append(relative_error(target.to_numpy(z), reference.z))
                grads = xpconv.conv2d_backward(DZ, X, K, method=method, **case.params)
                errors.append(reference.check_gradients(*(target.to_numpy(g) for g in grads)))
            error = max(errors)
            worst = max(worst, error)
            if not error <= TOLERANCE:
                failed += 1
                print_fn(f"MISMATCH {target.backend}/{target.device} {case.name}: relative error {error:.3g}")
        failures += failed
        status = "ok" if failed == 0 else f"{failed} FAILED"
        rows.append(
            (
                target.backend,
                target.device,
                str(len(cases_run)),
                f"{worst:.2e}",
                f"{time.perf_counter() - start:.2f}",
                status,
            )
        )
    _print_table(("backend", "device", "cases", "max rel. error", "seconds", "result"), rows, print_fn)
    return failures


def _print_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]], print_fn: Callable[[str], None]) -> None:
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    line = lambda r: "  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip()  # noqa: E731
    print_fn(line(header))
    print_fn(line(tuple("-" * w for w in widths)))
    for row in rows:
        print_fn(line(row))


__all__ = ["add_bias", "finite_difference_reference", "loop_forward", "relative_error", "run_check"]
