"""``python -m xpconv check`` passes, also with NumPy alone, and catches a wrong gradient."""

from __future__ import annotations

import subprocess
import sys

import pytest

from xpconv import _gradients
from xpconv.__main__ import main


def test_check_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--cases", "6"]) == 0
    output = capsys.readouterr().out
    assert "numpy" in output and "check passed" in output


def test_check_passes_with_numpy_alone() -> None:
    # Blocking the imports makes the check fall back to the loop forward and finite differences.
    code = (
        "import sys\n"
        "for name in ('torch', 'cupy', 'jax', 'array_api_strict'): sys.modules[name] = None\n"
        "from xpconv.__main__ import main\n"
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
        monkeypatch.setitem(sys.modules, "torch", None)
    right = _gradients.weight_grad
    monkeypatch.setattr(_gradients, "weight_grad", lambda *args: right(*args) * 1.001)
    assert main(["check", "--cases", "2"]) == 1
    assert "MISMATCH" in capsys.readouterr().out
