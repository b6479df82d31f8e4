"""``python -m xpconv check`` passes, also with NumPy alone, and catches a wrong gradient."""

from __future__ import annotations

import subprocess
import sys

import pytest

from xpconv import _gradients
from xpconv.tools import check
from xpconv.tools.cli import main


def test_check_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--cases", "6"]) == 0
    output = capsys.readouterr().out
    assert "numpy" in output and "check passed" in output


def test_check_passes_with_numpy_alone() -> None:
    # An import hook that refuses the other libraries, as if they were not installed: the check
    # falls back to the loop forward and finite differences.
    code = (
        "import sys, importlib.abc\n"
        "class NotInstalled(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in {'torch', 'cupy', 'jax', 'array_api_strict', 'dask'}:\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, NotInstalled())\n"
        "from xpconv.tools.cli import main\n"
        "sys.exit(main(['check', '--cases', '6']))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "finite differences" in result.stdout and "check passed" in result.stdout


@pytest.mark.parametrize("torch_available", [True, False])
def test_check_fails_on_a_wrong_gradient(monkeypatch: pytest.MonkeyPatch, torch_available: bool, capsys) -> None:
    if torch_available:
        pytest.importorskip("torch")
    else:
        real_import = check.optional_import
        monkeypatch.setattr(check, "optional_import", lambda name: None if name == "torch" else real_import(name))
    right = _gradients.weight_grad
    monkeypatch.setattr(_gradients, "weight_grad", lambda *args: right(*args) * 1.001)
    assert main(["check", "--cases", "2"]) == 1
    assert "MISMATCH" in capsys.readouterr().out


def test_release_gate_draws_every_kind(capsys: pytest.CaptureFixture[str]) -> None:
    """The gate's summary counts each kind of call it promises to cover, and all of them pass."""
    from xpconv.tools.gate import run_gate

    assert run_gate(150, seed=3) == 0
    output = capsys.readouterr().out
    kinds = ["1-D", "2-D", "3-D", "transposed", "convolution", "channels_last", "channels_first", "depthwise"]
    kinds += ["grouped", "dense", "dilated", "undilated", "int64", "float64", "complex128"]
    kinds += ["bias None", "bias tied", "bias untied"]
    kinds += [f"method {m}" for m in ("auto", "direct", "dilate", "winograd", "fft")]
    summary = next(line for line in output.splitlines() if line.startswith("cases per kind"))
    counts = dict(entry.rsplit(" ", 1) for entry in summary.removeprefix("cases per kind: ").split(", "))
    for kind in kinds:  # whole names: "dilated" must not be found inside "undilated"
        assert int(counts.get(kind, 0)) > 0, f"the gate drew no {kind} case: {summary}"
    assert "0 mismatches" in output
