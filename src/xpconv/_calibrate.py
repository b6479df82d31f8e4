"""What :func:`xpconv.calibrate` and ``python -m xpconv calibrate`` run: refit "auto"'s cost model here.

Every pass (forward, dX, dK) of the probe layers (:data:`PROBES`) is
timed with each method that applies, on arrays of the library and device being fitted, medians of
alternating rounds. Then the constants of :class:`xpconv._costs.CostModel` are chosen from a grid as
those whose picks lose least against the fastest method: the least geometric mean of the *regret*
(the pick's time over the fastest's) over all probed passes, ties going to the constants nearer the
shipped defaults. The fit is written to the wisdom file (:func:`xpconv._costs.wisdom_path`), where
every later ``"auto"`` choice for that library and device finds it.
"""

from __future__ import annotations

import datetime
import functools
import itertools
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from array_api_compat import array_namespace, is_jax_namespace, is_torch_namespace
from array_api_compat import device as device_of

from . import _api, _costs, _gradients
from ._backends import synchronize
from ._geometry import ConvGeometry, conv_geometry
from .typing import Padding

__all__ = ["PROBES", "ProbeLayer", "TimedPass", "fit", "fit_and_save", "measure"]

PASSES = ("forward", "input", "weight")
METHODS = ("direct", "dilate", "winograd", "fft", "native")
# The grids the constants are chosen from: quarter octaves, at most an octave from the defaults (a
# fit on a few dozen passes must not extrapolate: see PENALTY).
TRANSFORM_WEIGHTS = tuple(0.5 * 2 ** (i / 4) for i in range(-4, 5))  # 0.25 .. 1
FFT_MARGINS = tuple(1.6 * 2 ** (i / 4) for i in range(-4, 5))  # 0.8 .. 3.2
NATIVE_ADVANTAGES = tuple(3.2 * 2 ** (i / 4) for i in range(-4, 5))  # 1.6 .. 6.4
# What each octave away from the defaults costs in the fit's score (mean log regret): constants move
# only for a gain larger than timing noise (0.5% of geometric mean regret per octave).
PENALTY = 0.005
# A method more than this many times the fastest in its first call keeps that time (it cannot win).
HOPELESS = 8.0


@dataclass(frozen=True)
class ProbeLayer:
    """A convolution of ``batch`` inputs ``(channels, *size)`` with ``filters`` square (cubic) kernels of
    side ``kernel``, timed by :func:`measure`."""

    name: str
    batch: int
    channels: int
    size: tuple[int, ...]
    filters: int
    kernel: int
    stride: int = 1
    padding: Padding = "same"
    groups: int = 1
    dtype: str = "float32"

    @property
    def params(self) -> dict[str, Any]:
        return {"stride": self.stride, "padding": self.padding, "groups": self.groups}

    def geometry(self) -> ConvGeometry:
        x_shape = (self.batch, self.channels, *self.size)
        kernel_shape = (self.filters, self.channels // self.groups, *(self.kernel,) * len(self.size))
        return conv_geometry(x_shape, kernel_shape, ndim=len(self.size), **self.params)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """x, kernel and dz, drawn."""
        rng = np.random.default_rng(0)
        geometry = self.geometry()
        shapes = (geometry.input_shape, geometry.kernel_shape, geometry.output_shape)
        drawn = [rng.standard_normal(shape, dtype=np.float32) for shape in shapes]
        if "complex" in self.dtype:
            drawn = [a + 1j * rng.standard_normal(a.shape, dtype=np.float32) for a in drawn]
        x, kernel, dz = (a.astype(self.dtype) for a in drawn)
        return x, kernel, dz


# Layers on both sides of the FFT's break-even (kernels from 3 to 255 taps, 1 to 64 channels, dense
# and depthwise, strided filterbanks, complex, 1-D to 3-D), each pass 1-30 ms on a 2-core CPU, none of
# them in the benchmark suites or the regret set.
PROBES = (
    *(ProbeLayer(f"16ch {k}x{k} 48x48", 8, 16, (48, 48), 16, k) for k in (3, 5, 7, 9, 11, 15)),
    *(ProbeLayer(f"64ch {k}x{k} 24x24", 4, 64, (24, 24), 64, k) for k in (3, 5, 9, 13)),
    *(ProbeLayer(f"16ch k{k} 4000", 4, 16, (4_000,), 16, k) for k in (9, 33, 65, 129)),
    *(ProbeLayer(f"depthwise 64ch {k}x{k}", 4, 64, (40, 40), 64, k, groups=64) for k in (5, 9, 15)),
    *(ProbeLayer(f"1ch {k}x{k} 256x256", 2, 1, (256, 256), 4, k) for k in (3, 7, 15)),
    ProbeLayer("8ch 9x9 stride 2", 4, 8, (96, 96), 16, 9, stride=2, padding=4),
    ProbeLayer("16ch 7x7 stride 2", 4, 16, (64, 64), 32, 7, stride=2, padding=3),
    ProbeLayer("filterbank 32x127 stride 8", 2, 1, (8_000,), 32, 127, stride=8, padding=0),
    ProbeLayer("filterbank 96x255 stride 8", 2, 1, (12_000,), 96, 255, stride=8, padding=0),
    ProbeLayer("fir 8000x257", 1, 1, (8_000,), 1, 257),
    *(ProbeLayer(f"4ch {k}^3 24^3", 2, 4, (24, 24, 24), 4, k) for k in (3, 5, 7)),
    ProbeLayer("complex 2ch 9x9", 2, 2, (64, 64), 2, 9, dtype="complex64"),
)


@dataclass(frozen=True)
class TimedPass:
    """One timed pass: its geometry, the methods that applied and their median seconds."""

    name: str
    grad: str
    geometry: ConvGeometry
    library: str  # "torch", "jax" or "other", as the rule sees it
    seconds: dict[str, float]

    def regret(self, model: _costs.CostModel) -> float:
        """The rule's pick under ``model`` over the fastest method, in time."""
        applicable = tuple(self.seconds)
        pick = _gradients.rule_pick(self.grad, self.geometry, applicable, self.library, model)
        return self.seconds[pick] / min(self.seconds.values())


def _calls(spec: ProbeLayer, grad: str, xp: Any, device: Any) -> dict[str, Callable[[], Any]]:
    x, kernel, dz = (xp.asarray(a, device=device) for a in spec.arrays())
    x_shape, kernel_shape = x.shape, kernel.shape
    calls: dict[str, Callable[[], Any]] = {}
    for method in METHODS:
        if grad == "forward" and method == "dilate":
            continue  # the forward's "dilate" is its "direct"
        options = dict(spec.params, method=method)
        if grad == "forward":
            call = functools.partial(_api.conv, x, kernel, **options)
        elif grad == "input":
            call = functools.partial(_api.conv_input_grad, dz, kernel, x_shape, **options)
        else:
            call = functools.partial(_api.conv_weight_grad, dz, x, kernel_shape, **options)
        calls[method] = _synchronized(call, xp)
    return calls


def _synchronized(call: Callable[[], Any], xp: Any) -> Callable[[], None]:
    """``call`` and a wait for its result (a GPU's work is queued)."""

    def run() -> None:
        synchronize(call(), xp)

    return run


def _seconds_of(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _time_methods(calls: dict[str, Callable[[], Any]], rounds: int) -> dict[str, float]:
    """Seconds of each of ``calls`` that applies (a ``ValueError`` says one does not): the first call
    of each, then medians of ``rounds`` rounds of the contenders, each round in a rotated order."""
    first: dict[str, float] = {}
    for method, call in calls.items():
        try:
            first[method] = _seconds_of(call)
        except ValueError:
            continue
    best = min(first.values())
    contenders = [m for m in first if first[m] <= HOPELESS * best]
    times: dict[str, list[float]] = {m: [] for m in contenders}
    for round_ in range(rounds):
        shift = round_ % len(contenders)
        for method in contenders[shift:] + contenders[:shift]:
            times[method].append(_seconds_of(calls[method]))
    return {**first, **{m: statistics.median(t) for m, t in times.items()}}


def measure(like: Any, probes: Sequence[ProbeLayer] = PROBES, rounds: int = 5, echo: bool = False) -> list[TimedPass]:
    """Every pass of ``probes`` timed with each method that applies, on arrays of ``like``'s library
    and device: medians of ``rounds`` alternating rounds."""
    xp = array_namespace(like)
    device = device_of(like)
    library = "jax" if is_jax_namespace(xp) else "torch" if is_torch_namespace(xp) else "other"
    measured = []
    for spec in probes:
        for grad in PASSES:
            seconds = _time_methods(_calls(spec, grad, xp, device), rounds)
            measured.append(TimedPass(spec.name, grad, spec.geometry(), library, seconds))
            if echo:
                fastest = min(seconds, key=seconds.__getitem__)
                print(f"  {spec.name:30} {grad:8} fastest {fastest:8} {1e3 * seconds[fastest]:8.2f} ms")
    return measured


def _mean_log_regret(probes: Sequence[TimedPass], model: _costs.CostModel) -> float:
    return sum(math.log(probe.regret(model)) for probe in probes) / len(probes)


def _distance(model: _costs.CostModel) -> float:
    """How far ``model`` is from the defaults, in octaves summed: the tie-break."""
    default = asdict(_costs.DEFAULT_MODEL)
    return sum(abs(math.log2(value / default[name])) for name, value in asdict(model).items())


def fit(probes: Sequence[TimedPass]) -> _costs.CostModel:
    """The grid's constants of least geometric mean regret over ``probes``, each octave away from the
    defaults counted as :data:`PENALTY` more. ``native_fft_advantage`` is fitted only where a probe
    could take the library's own convolution."""
    if not probes:
        raise ValueError("fit needs at least one timed probe, got none")
    natives = NATIVE_ADVANTAGES
    if not any("native" in probe.seconds for probe in probes):
        natives = (_costs.DEFAULT_MODEL.native_fft_advantage,)
    best: tuple[float, _costs.CostModel] | None = None
    for weight, margin, native in itertools.product(TRANSFORM_WEIGHTS, FFT_MARGINS, natives):
        model = _costs.CostModel(transform_weight=weight, fft_margin=margin, native_fft_advantage=native)
        score = _mean_log_regret(probes, model) + PENALTY * _distance(model)
        if best is None or score < best[0] - 1e-12:
            best = (score, model)
    assert best is not None
    return best[1]


def _geometric_mean(probes: Sequence[TimedPass], model: _costs.CostModel) -> float:
    return math.exp(_mean_log_regret(probes, model))


def fit_and_save(
    like: Any = None,
    *,
    save: bool = True,
    rounds: int = 5,
    probes: Sequence[ProbeLayer] = PROBES,
    echo: bool = False,
) -> _costs.CostModel:
    """See :func:`xpconv.calibrate`."""
    like = np.empty(0, dtype=np.float32) if like is None else like
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
        raise ValueError(f"rounds must be a positive int, got {rounds!r}")
    target = _costs.target_of(like)
    timed = measure(like, probes, rounds, echo)
    model = fit(timed)
    before, after = _geometric_mean(timed, _costs.DEFAULT_MODEL), _geometric_mean(timed, model)
    if echo:
        print(f"{target}: defaults {asdict(_costs.DEFAULT_MODEL)}, geometric mean regret {before:.3f}")
        print(f"{target}: fitted   {asdict(model)}, geometric mean regret {after:.3f}")
    if save:
        record = {
            "fitted_on": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "xpconv": _version(),
            "passes": len(timed),
            "regret_with_defaults": round(before, 4),
            "regret_fitted": round(after, 4),
        }
        path = _costs.save_model(target, model, record)
        if echo:
            print(f"saved to {path}")
    return model


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("xpconv")
    except PackageNotFoundError:
        return "unknown"
