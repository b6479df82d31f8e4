"""The constants of ``method="auto"``'s cost model, per array library and device, and the wisdom
file that keeps constants refitted on the user's machine (:func:`xpconv.calibrate`).

``"auto"`` estimates each method's cost from the geometry (multiply-adds of the column matrix, the
FFT's transforms and per-frequency products: :func:`xpconv._gradients.fft_advantage`) and compares
the estimates. Three constants turn those counts into choices; they are what differs between
machines, libraries and devices, and what a refit changes:

- ``transform_weight``: the cost of one FFT butterfly against one multiply-add of a matrix
  product (0.5 on the project's CPU; GPUs' FFTs are relatively cheaper).
- ``fft_margin``: how much cheaper the FFT must look than the column matrix before ``"auto"``
  takes it.
- ``native_fft_advantage``: torch and JAX only, how much cheaper the FFT must look before a dense
  layer leaves the library's own convolution (oneDNN, cuDNN, XLA).

The rest of the rule (Winograd's channel counts, oneDNN's depthwise kernel widths) are facts about
particular kernels, measured and kept as rules (``_gradients``, ``_native``).

The wisdom file is JSON: ``{"targets": {"numpy cpu": {"transform_weight": ..., ...}, ...}}``, one
entry per array library and device kind. It lives at ``$XPCONV_WISDOM`` when that is set (an empty
value turns wisdom off), else at ``$XDG_CACHE_HOME/xpconv/wisdom.json`` (``~/.cache/...``). It is
read once, on the first choice ``"auto"`` makes; :func:`xpconv.calibrate` rewrites its own entry.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from array_api_compat import device as device_of

from .typing import Array

__all__ = [
    "DEFAULT_MODEL",
    "CostModel",
    "calibrate",
    "cost_model",
    "forget_wisdom",
    "model_for",
    "save_model",
    "target_of",
    "wisdom_path",
]

WISDOM_ENV = "XPCONV_WISDOM"


@dataclass(frozen=True)
class CostModel:
    """The constants ``"auto"`` chooses by: ``transform_weight``, an FFT butterfly's cost in multiply-adds
    of a matrix product; ``fft_margin``, how much cheaper the FFT must look before it is taken;
    ``native_fft_advantage`` (torch, JAX), the FFT's advantage from which a dense layer leaves the
    library's own convolution. The defaults were fitted on
    the project's 2-core CPU (NumPy and torch, 99 geometries x 3 passes, then held-out regret).
    :func:`calibrate` fits them on this machine; :func:`cost_model` says which ones are in use.

    >>> import xpconv
    >>> xpconv.CostModel(fft_margin=2.0)  # take the FFT only where it looks twice as cheap
    CostModel(transform_weight=0.5, fft_margin=2.0, native_fft_advantage=3.2)
    """

    transform_weight: float = 0.5
    fft_margin: float = 1.6
    native_fft_advantage: float = 3.2

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"CostModel.{field.name} must be a positive number, got {value!r}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CostModel:
        """The model of a wisdom entry; keys that are not constants (the fit's record) are ignored."""
        names = {field.name for field in fields(cls)}
        return cls(**{name: float(value) for name, value in values.items() if name in names})


DEFAULT_MODEL = CostModel()

_lock = threading.Lock()
_loaded: dict[str, CostModel] | None = None  # None: not read yet


def wisdom_path() -> Path | None:
    """Where the wisdom file is read and written; None when ``XPCONV_WISDOM`` is set empty (off)."""
    chosen = os.environ.get(WISDOM_ENV)
    if chosen is not None:
        return Path(chosen).expanduser() if chosen else None
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "xpconv" / "wisdom.json"


def target_of(like: Array) -> str:
    """The wisdom entry an array's calls use: its library and device kind, as ``"torch cuda"``."""
    library = type(like).__module__.split(".")[0]
    try:
        kind = str(device_of(like)).split(":")[0]
    except Exception:  # a traced JAX value or a library without devices: its calls share one entry
        kind = "cpu"
    if library == "cupy":
        kind = "cuda"
    return f"{library} {kind}"


def _read(path: Path | None) -> dict[str, CostModel]:
    if path is None or not path.is_file():
        return {}
    try:
        targets = json.loads(path.read_text())["targets"]
        return {target: CostModel.from_dict(values) for target, values in targets.items()}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"the wisdom file {path} ({WISDOM_ENV}) cannot be read: {error}") from error


def model_for(target: str) -> CostModel:
    """The constants for ``target`` (:func:`target_of`): the wisdom file's, else the defaults."""
    global _loaded
    if _loaded is None:
        with _lock:
            if _loaded is None:
                _loaded = _read(wisdom_path())
    return _loaded.get(target, DEFAULT_MODEL)


def forget_wisdom() -> None:
    """Read the wisdom file again on the next choice (after it or ``XPCONV_WISDOM`` changed)."""
    global _loaded
    with _lock:
        _loaded = None


def save_model(target: str, model: CostModel, record: dict[str, Any], path: Path | None = None) -> Path:
    """Write ``model`` (and ``record``: how it was fitted) as ``target``'s entry of the wisdom file,
    keeping the other entries; later choices use it. Returns the file's path."""
    path = path or wisdom_path()
    if path is None:
        raise ValueError(f"wisdom is off ({WISDOM_ENV} is set empty): pass a path to save the fitted model")
    with _lock:
        existing = json.loads(path.read_text()) if path.is_file() else {}
        existing.setdefault("targets", {})[target] = {**asdict(model), **record}
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(existing, indent=2, sort_keys=True) + "\n")
        temporary.replace(path)
    forget_wisdom()
    return path


def cost_model(like: Array | None = None) -> CostModel:
    """The constants ``method="auto"`` chooses by for arrays like ``like`` (their library and device;
    None: NumPy): those :func:`calibrate` fitted on this machine, else the shipped defaults.

    >>> import numpy as np, xpconv
    >>> xpconv.cost_model(np.ones(3))  # with no wisdom file for NumPy: the defaults
    CostModel(transform_weight=0.5, fft_margin=1.6, native_fft_advantage=3.2)
    """
    if like is None:
        return model_for("numpy cpu")
    return model_for(target_of(like))


def calibrate(like: Array | None = None, *, save: bool = True, rounds: int = 5, echo: bool = False) -> CostModel:
    """Refit ``method="auto"``'s cost model for the library and device of ``like`` (None: NumPy on
    the CPU) on this machine, as FFTW's wisdom: times every pass of 29 probe layers with each method
    that applies (about 20-30 s on a 2-core CPU), chooses the constants whose picks lose least
    against the fastest method, and with ``save`` writes them to the wisdom file
    (``$XPCONV_WISDOM``, else ``~/.cache/xpconv/wisdom.json``), where every later call on such
    arrays finds them. Returns the fitted :class:`CostModel`. The same from a shell:
    ``python -m xpconv calibrate --library torch --device cuda``.

    The constants move at most an octave from the defaults, and only for a gain larger than timing
    noise; the performance page explains the fit and the file (Refitting "auto" to another machine).
    ``echo`` prints each pass's fastest method and the regret of the picks before and after the fit.
    Autotuning (:func:`xpconv.autotune`) still times each layer itself where it is on.

    >>> import torch, xpconv
    >>> model = xpconv.calibrate(torch.empty(0, device="cuda"))  # doctest: +SKIP
    """
    from ._calibrate import fit_and_save

    return fit_and_save(like, save=save, rounds=rounds, echo=echo)
