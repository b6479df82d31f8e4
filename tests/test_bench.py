"""The benchmark command runs and writes its table (its timings are not asserted: the machine is noisy)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from helpers import NUMPY, assert_close, to_numpy

from xpconv.tools import bench as _bench
from xpconv.tools import runner as _runner
from xpconv.tools.suites import layer


def test_bench_writes_markdown_and_json(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _bench.main(["--layers", "mnist5x5", "--repeats", "1", "--no-memory", "--out", str(tmp_path)]) == 0
    table = (tmp_path / "cpu-layers.md").read_text()  # not cpu.md: the classic suite's table stays
    assert not (tmp_path / "cpu.md").exists()
    assert "| mnist5x5 | xpconv numpy |" in table and "geometric mean" in table
    payload = json.loads((tmp_path / "cpu-layers.json").read_text())
    candidates = {row["candidate"] for row in payload["rows"]}
    assert "xpconv numpy" in candidates
    assert all(row["seconds"] > 0 for row in payload["rows"])
    if "torch native" in candidates:
        assert all(row["ratio"] is not None for row in payload["rows"])


@pytest.mark.parametrize("name", ["mnist5x5", "coils15x15"])
def test_bench_candidates_compute_the_same_gradients(name: str) -> None:
    """What is timed is what is tested: every CPU candidate's forward and backward agree with the
    others, on a classic layer and on the complex one (where sigpy computes too)."""
    spec = layer(name)
    results = {}
    for candidate in _runner.available("cpu", list(_runner.CPU_CANDIDATES)):
        try:
            (forward, backward, _), _ = _runner.make_runner(candidate, "cpu", spec)
        except _runner.NotApplicable:
            assert candidate == "sigpy" and name == "mnist5x5"  # sigpy has no padding widths
            continue
        grads = backward()
        results[candidate] = [to_numpy(forward()), *(to_numpy(g) for g in grads[:2])]
    assert ("sigpy" in results) == (name == "coils15x15" and "sigpy" in _runner.available("cpu", ["sigpy"]))
    reference = results["xpconv numpy"]
    for candidate, values in results.items():
        for got, expected, what in zip(values, reference, ("z", "dx", "dkernel")):
            # candidates of other libraries, read back: the values agree to single-precision rounding
            assert_close(got, expected, xp=NUMPY, tol=1e-4, what=f"{candidate} {what}")


def test_sweep_writes_table_and_plot(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweep's machinery on two small points (the real one runs batch 1-256 and images 14-224)."""
    pytest.importorskip("matplotlib", reason="the plot needs matplotlib (extra 'demo')")
    from xpconv.tools import sweep as _sweep

    monkeypatch.setattr(_sweep, "BATCHES", (1,))
    monkeypatch.setattr(_sweep, "SIZES", (14,))
    plot = tmp_path / "sweep.png"
    assert _bench.main(["--sweep", "--repeats", "1", "--no-memory", "--out", str(tmp_path), "--plot", str(plot)]) == 0
    table = (tmp_path / "sweep.md").read_text()
    assert "| batch 1 |" in table and "| size 14 |" in table
    assert plot.stat().st_size > 0
    rows = json.loads((tmp_path / "sweep.json").read_text())["rows"]
    assert {row["layer"] for row in rows} == {"batch 1", "size 14"}


def test_regret_table_of_the_held_out_set(tmp_path) -> None:
    """``bench --regret`` on one geometry of its set: every pass timed by every method that applies
    and by "auto", the regret its time over the fastest's. The set is held out of the suites."""
    from xpconv.tools.suites import LAYERS, REGRET_SET

    assert not {spec.name for spec in REGRET_SET} & set(LAYERS)
    assert not {spec.shapes for spec in REGRET_SET} & {spec.shapes for spec in LAYERS.values()}
    name = "complex 256x256 9x9"
    args = ["--regret", "--libraries", "numpy", "--repeats", "1", "--layers", name, "--out", str(tmp_path)]
    assert _bench.main(args) == 0
    rows = json.loads((tmp_path / "regret.json").read_text())["rows"]
    assert [(row["layer"], row["pass"]) for row in rows] == [(name, p) for p in ("forward", "input", "weight")]
    for row in rows:
        own = {m: t for m, t in row["seconds"].items() if m != "auto"}
        assert {"direct", "fft"} <= set(own) and "native" not in own  # NumPy has no convolution of its own
        assert row["fastest"] == min(own, key=own.__getitem__)
        assert row["regret"] == pytest.approx(row["seconds"]["auto"] / own[row["fastest"]])
    assert "## numpy: median" in (tmp_path / "regret.md").read_text()


def test_regret_times_a_slow_first_call_again() -> None:
    """A method whose first call builds what later calls reuse (oneDNN's primitive for a shape) is
    timed again before it is called hopeless, and then with the others; one slow on every call is
    timed twice and left out of the rounds."""
    import time

    from xpconv.tools import regret

    calls = {"fast": 0, "warming": 0, "slow": 0}

    def call(name: str, seconds: Callable[[int], float]) -> Callable[[], None]:
        def run() -> None:
            calls[name] += 1
            time.sleep(seconds(calls[name]))

        return run

    timed = regret.time_methods(
        {
            "fast": call("fast", lambda n: 0.001),
            "warming": call("warming", lambda n: 0.2 if n == 1 else 0.002),
            "slow": call("slow", lambda n: 0.2),
        },
        rounds=3,
    )
    assert calls["slow"] == 2 and timed["slow"] >= 0.2
    assert calls["warming"] > 2 and timed["warming"] < 0.2
    assert calls["fast"] == calls["warming"] - 1


def test_signals_suite_against_scipy(tmp_path) -> None:
    """``bench --suite signals``: xpconv's three passes on one-channel data beside scipy.signal's
    (which the suite first checks compute the same numbers)."""
    pytest.importorskip("scipy", reason="the signals suite compares with scipy.signal")
    assert _bench.main(["--suite", "signals", "--repeats", "1", "--out", str(tmp_path)]) == 0
    table = (tmp_path / "cpu-signals.md").read_text()
    assert table.count("| 1-D, 60,000 samples, 1,001 taps |") == 3 and "| 3-D, 80^3, 9^3 | weight |" in table


def test_volumes_suite_on_a_local_cluster(tmp_path) -> None:
    """``bench --suite volumes``, small: each variant in its own process and cluster; the interior block
    equals scipy.ndimage's correlation of the same voxels, the three agree on the forward's sum, and
    each worker stays below its memory limit without a restart."""
    pytest.importorskip("dask.distributed", reason="the volumes suite runs on a LocalCluster (extra 'dask')")
    pytest.importorskip("scipy", reason="the interior block is checked against scipy.ndimage")
    from xpconv.tools import volumes as _volumes

    volume = _volumes.Volume(size=48, chunk=24, kernel=5, workers=2, worker_memory="600MiB")
    assert _volumes.run_volumes(volume, tmp_path, "test") == 0
    records = {r["variant"]: r for r in json.loads((tmp_path / "cpu-volumes-48-k5.json").read_text())}
    expected = {"xpconv-dask", "xpconv-numpy"} | ({"dask-image"} if _runner.installed("dask_image") else set())
    assert set(records) == expected
    numpy_sum = records["xpconv-numpy"]["checksum"]
    for name in expected - {"xpconv-numpy"}:
        record = records[name]
        assert record["interior_error"] < 1e-5
        assert record["checksum"] == pytest.approx(numpy_sum, rel=1e-4, abs=1e-3)
        assert record["restarts"] == 0 and all(0 < peak < 600 for peak in record["worker_peak_mib"])
    assert records["xpconv-dask"]["backward_s"] > 0
    table = (tmp_path / "cpu-volumes-48-k5.md").read_text()
    assert "| xpconv-dask |" in table and "voxels/s" in table
