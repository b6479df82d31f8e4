"""Autotuning of method="auto": off by default, on by xpconv.autotune or XPCONV_AUTOTUNE=1; each
(pass, geometry, dtype, library, device) is timed once, remembered, and computes torch's numbers."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from helpers import NUMPY, assert_close, torch_reference

import xpconv


@pytest.fixture
def tuning():
    """Autotuning on for one test, with an empty memory; as before afterwards."""
    from xpconv import _autotune

    before = xpconv.autotune()
    saved = dict(_autotune._choices)
    _autotune._choices.clear()
    xpconv.autotune(True)
    yield _autotune._choices
    xpconv.autotune(before)
    _autotune._choices.clear()
    _autotune._choices.update(saved)


def case(seed: int, size: int = 12, kernel: int = 3):
    rng = np.random.default_rng(seed)
    x, k = rng.standard_normal((2, 4, size, size)), rng.standard_normal((6, 4, kernel, kernel))
    dz = rng.standard_normal((2, 6, size, size))
    ref = torch_reference(x, k, dz, stride=(1, 1), pads=((kernel // 2,) * 2,) * 2, dilation=(1, 1), groups=1)
    return x, k, dz, ref


def run(x, k, dz, kernel=3):
    z = xpconv.conv2d(x, k, padding=kernel // 2)
    return (z, *xpconv.conv2d_backward(dz, x, k, padding=kernel // 2)[:2])


def test_first_calls_time_each_pass_once_and_remember_it(tuning) -> None:
    x, k, dz, ref = case(0)
    for _ in range(3):
        for got, want in zip(run(x, k, dz), (ref.z, ref.dx, ref.dkernel)):
            assert_close(got, want, xp=NUMPY, floor=1.0)
    chosen = xpconv.tuned_methods()
    assert len(chosen) == 3, chosen  # forward, dX, dK of one geometry, timed once
    passes = sorted(key.split()[0] for key in chosen)
    assert passes == ["forward", "input", "weight"]
    assert all(" numpy cpu float64: input (2, 4, 12, 12), kernel (6, 4, 3, 3)" in key for key in chosen)
    assert set(chosen.values()) <= {"winograd", "fft", "direct", "dilate"}
    x2, k2, dz2, ref2 = case(1, size=16, kernel=5)  # a new geometry: three more
    for got, want in zip(run(x2, k2, dz2, kernel=5), (ref2.z, ref2.dx, ref2.dkernel)):
        assert_close(got, want, xp=NUMPY, floor=1.0)
    assert len(xpconv.tuned_methods()) == 6


def test_a_remembered_choice_is_what_later_calls_take(tuning) -> None:
    x, k, dz, _ = case(2)
    run(x, k, dz)
    key = next(key for key in tuning if key[0] == "forward")
    tuning[key] = "fft"  # as if the FFT had won
    calls = []
    from xpconv import _gradients

    real = _gradients.fft_forward
    try:
        _gradients.fft_forward = lambda *a, **kw: calls.append(1) or real(*a, **kw)
        xpconv.conv2d(x, k, padding=1)
    finally:
        _gradients.fft_forward = real
    assert calls == [1]


def test_threads_tuning_at_once_get_torchs_numbers(tuning, monkeypatch) -> None:
    from xpconv import _autotune

    timed_runs = []
    real_synchronize = _autotune.synchronize
    monkeypatch.setattr(_autotune, "synchronize", lambda *a: timed_runs.append(1) or real_synchronize(*a))
    x, k, dz, ref = case(3, size=20)
    run(x, k, dz)
    alone = len(timed_runs)
    assert alone > 0
    tuning.clear()
    timed_runs.clear()
    results, errors = [None] * 4, []

    def work(i: int) -> None:
        try:
            results[i] = run(x, k, dz)
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for result in results:
        for got, want in zip(result, (ref.z, ref.dx, ref.dkernel)):
            assert_close(got, want, xp=NUMPY, floor=1.0)
    assert len(xpconv.tuned_methods()) == 3
    assert len(timed_runs) == alone  # tuned once, not once per thread


def test_integers_are_tuned_among_exact_methods_only(tuning) -> None:
    x = np.arange(2 * 3 * 9 * 9).reshape(2, 3, 9, 9) % 7
    k = np.arange(4 * 3 * 5 * 5).reshape(4, 3, 5, 5) % 5 - 2
    z = xpconv.conv2d(x, k)
    assert z.dtype == np.int64
    assert set(xpconv.tuned_methods().values()) <= {"direct", "dilate"}


def test_lazy_arrays_are_left_to_the_rule(tuning) -> None:
    da = pytest.importorskip("dask.array", reason="Dask is not installed")
    x, k, _dz, _ = case(4)
    xpconv.conv2d(da.from_array(x, chunks=(1, 4, 12, 12)), da.from_array(k), padding=1)
    assert xpconv.tuned_methods() == {}


def test_the_switch() -> None:
    with pytest.raises(TypeError, match="enabled must be a bool or None, got 1"):
        xpconv.autotune(1)  # type: ignore[arg-type]
    code = "import xpconv; print(xpconv.autotune())"
    for value, expected in (("1", "True"), ("0", "False"), ("", "False")):
        env = {**os.environ, "XPCONV_AUTOTUNE": value}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == expected, value
