"""``xpconv.calibrate`` and the wisdom file: the fit chooses constants that pick the measured winner,
the file round-trips, ``"auto"`` follows what it holds, and bad values are refused by name."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import installed

import xpconv
from xpconv import _calibrate as calibration
from xpconv import _costs, _gradients
from xpconv._geometry import conv_geometry

# 2-D dense layers whose FFT advantage (the column matrix's estimated cost over the FFT's) grows with the kernel.
KERNELS = (3, 5, 7, 9, 11, 15, 21)


def _geometry(kernel: int):
    return conv_geometry((4, 16, 48, 48), (16, 16, kernel, kernel), ndim=2, padding=(kernel - 1) // 2)


@pytest.fixture
def wisdom(tmp_path, monkeypatch):
    """A wisdom file of the test's own, read afresh."""
    path = tmp_path / "wisdom.json"
    monkeypatch.setenv(_costs.WISDOM_ENV, str(path))
    _costs.forget_wisdom()
    yield path
    _costs.forget_wisdom()


def _synthetic_probes(break_even: float) -> list[calibration.TimedPass]:
    """Forward passes timed as if the FFT won exactly where the estimated advantage exceeds ``break_even``."""
    probes = []
    for kernel in KERNELS:
        geometry = _geometry(kernel)
        advantage = _gradients.fft_advantage(geometry)
        fft, direct = (1.0, 2.0) if advantage > break_even else (2.0, 1.0)
        probes.append(calibration.TimedPass(f"k{kernel}", "forward", geometry, "other", {"direct": direct, "fft": fft}))
    return probes


def test_advantages_of_the_synthetic_layers_grow_with_the_kernel() -> None:
    advantages = [_gradients.fft_advantage(_geometry(k)) for k in KERNELS]
    assert advantages == sorted(advantages) and advantages[0] < 0.8 and advantages[-1] > 3.2


@pytest.mark.parametrize("break_even_between", [(0, 1), (1, 2), (2, 3)])
def test_fit_moves_the_margin_to_the_measured_break_even(break_even_between) -> None:
    """Where the FFT wins from the n-th kernel on, the fitted rule picks the winner on every probe."""
    below, above = (_gradients.fft_advantage(_geometry(KERNELS[i])) for i in break_even_between)
    probes = _synthetic_probes((below + above) / 2)
    model = calibration.fit(probes)
    assert isinstance(model, xpconv.CostModel)
    assert [p.regret(model) for p in probes] == [1.0] * len(probes)
    assert model.native_fft_advantage == _costs.DEFAULT_MODEL.native_fft_advantage  # no native on these probes


def test_fit_moves_at_most_an_octave() -> None:
    """A break-even beyond the grid (advantage 4.8 to 7.2, the margin's grid ends at 3.2) is not reached:
    the fit goes to the grid's edge and no further."""
    probes = _synthetic_probes(6.0)
    model = calibration.fit(probes)
    assert model.fft_margin == max(calibration.FFT_MARGINS)
    assert [p.regret(model) for p in probes].count(2.0) == 1  # the 4.8 layer still takes the FFT


def test_fit_keeps_the_defaults_when_they_already_pick_every_winner() -> None:
    advantages = [_gradients.fft_advantage(_geometry(k)) for k in KERNELS]
    probes = _synthetic_probes(_costs.DEFAULT_MODEL.fft_margin)
    assert any(a > 1.6 for a in advantages) and any(a < 1.6 for a in advantages)
    assert calibration.fit(probes) == _costs.DEFAULT_MODEL


def test_fit_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one timed probe"):
        calibration.fit([])


def test_wisdom_round_trip_and_auto_follows_it(wisdom) -> None:
    x = np.ones((1, 1, 64, 64))
    geometry = conv_geometry(x.shape, (1, 1, 31, 31), ndim=2, padding="same")
    applicable = ["direct", "fft"]
    assert xpconv.cost_model(x) == _costs.DEFAULT_MODEL
    assert _gradients._rule("forward", geometry, applicable, np, xpconv.cost_model(x)) == "fft"
    never_fft = xpconv.CostModel(fft_margin=1e9)
    _costs.save_model("numpy cpu", never_fft, {"note": "test"})
    _costs.save_model("torch cpu", xpconv.CostModel(native_fft_advantage=2.0), {})
    stored = json.loads(wisdom.read_text())["targets"]
    assert stored["numpy cpu"]["fft_margin"] == 1e9 and stored["numpy cpu"]["note"] == "test"
    assert set(stored) == {"numpy cpu", "torch cpu"}  # one entry does not overwrite another
    assert xpconv.cost_model(x) == never_fft
    assert _gradients._rule("forward", geometry, applicable, np, xpconv.cost_model(x)) == "direct"
    # The whole call follows it: "auto" on NumPy computes the same numbers by the column matrix.
    kernel = np.random.default_rng(0).standard_normal((1, 1, 31, 31))
    np.testing.assert_allclose(
        xpconv.conv2d(x, kernel, padding="same"), xpconv.conv2d(x, kernel, padding="same", method="fft"), atol=1e-10
    )


def test_wisdom_off_and_unreadable(wisdom, monkeypatch) -> None:
    wisdom.write_text("{not json")
    with pytest.raises(ValueError, match=r"wisdom file .* cannot be read"):
        xpconv.cost_model(np.ones(2))
    monkeypatch.setenv(_costs.WISDOM_ENV, "")
    _costs.forget_wisdom()
    assert _costs.wisdom_path() is None and xpconv.cost_model(np.ones(2)) == _costs.DEFAULT_MODEL
    with pytest.raises(ValueError, match="wisdom is off"):
        _costs.save_model("numpy cpu", _costs.DEFAULT_MODEL, {})


@pytest.mark.parametrize("name", ["transform_weight", "fft_margin", "native_fft_advantage"])
@pytest.mark.parametrize("value", [0, -1.0, "2", True])
def test_cost_model_refuses_non_positive_constants(name, value) -> None:
    with pytest.raises(ValueError, match=f"CostModel.{name} must be a positive number, got {value!r}"):
        xpconv.CostModel(**{name: value})


def test_calibrate_refuses_bad_rounds() -> None:
    with pytest.raises(ValueError, match="rounds must be a positive int, got 0"):
        xpconv.calibrate(save=False, rounds=0)


TINY = [
    calibration.ProbeLayer("tiny 4ch 3x3", 2, 4, (16, 16), 4, 3, padding=1),
    calibration.ProbeLayer("tiny 1ch k63", 1, 1, (2_000,), 2, 63),
]


@pytest.mark.parametrize(
    "library",
    ["numpy", pytest.param("torch", marks=pytest.mark.skipif(not installed("torch"), reason="torch is not installed"))],
)
def test_calibrate_times_fits_and_saves(wisdom, library) -> None:
    if library == "torch":
        import torch

        like, target = torch.empty(0), "torch cpu"
    else:
        like, target = np.empty(0, dtype=np.float32), "numpy cpu"
    model = calibration.fit_and_save(like, rounds=1, probes=TINY)
    entry = json.loads(wisdom.read_text())["targets"][target]
    assert entry["passes"] == 3 * len(TINY) and entry["regret_fitted"] <= entry["regret_with_defaults"]
    assert xpconv.CostModel.from_dict(entry) == model == xpconv.cost_model(like)
    for value, grid in (
        (model.transform_weight, calibration.TRANSFORM_WEIGHTS),
        (model.fft_margin, calibration.FFT_MARGINS),
    ):
        assert min(grid) <= value <= max(grid)


def test_probes_time_every_method_that_applies() -> None:
    probes = calibration.measure(np.empty(0, dtype=np.float32), TINY[:1], rounds=1)
    assert [p.grad for p in probes] == ["forward", "input", "weight"]
    assert set(probes[0].seconds) == {"direct", "winograd", "fft"}
    assert set(probes[1].seconds) == {"direct", "dilate", "winograd", "fft"}
    assert all(s > 0 for p in probes for s in p.seconds.values())
