"""The type check: mypy passes on src/ and a user script calling every public function, and reports
a misspelled keyword in a user's call. ``nox -s typecheck`` runs this file; so does CI's pytest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy", reason="the type check needs mypy (extra 'test')")
ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = Path(__file__).resolve().parent / "typing"


def _mypy(*arguments: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "mypy", "--no-incremental", "--config-file", str(ROOT / "pyproject.toml")]
    return subprocess.run([*command, *arguments], capture_output=True, text=True, cwd=ROOT, timeout=900)


def test_mypy_passes_on_the_package_and_a_user_script() -> None:
    result = _mypy()  # the files named in pyproject.toml: src/ and tests/typing/user_script.py
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout


def test_the_user_script_runs() -> None:
    result = subprocess.run([sys.executable, str(SCRIPTS / "user_script.py")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "user script ran" in result.stdout


def test_mypy_reports_a_misspelled_keyword() -> None:
    result = _mypy(str(SCRIPTS / "misspelled_keyword.py"))
    assert result.returncode == 1, result.stdout
    assert 'Unexpected keyword argument "strides" for "conv2d"' in result.stdout, result.stdout


def test_a_misspelled_keyword_fails_at_run_time_too() -> None:
    import numpy as np

    import xpconv

    with pytest.raises(TypeError, match=r"conv2d\(\) got an unexpected keyword argument 'strides'"):
        xpconv.conv2d(np.ones((1, 1, 4, 4)), np.ones((1, 1, 2, 2)), strides=2)  # type: ignore[call-arg]
