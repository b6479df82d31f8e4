"""The examples in the docstrings run and print what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "xpconv",
    "xpconv._api",
    "xpconv._arguments",
    "xpconv._autotune",
    "xpconv._blocks",
    "xpconv._contract",
    "xpconv._fft",
    "xpconv._geometry",
    "xpconv._gradients",
    "xpconv._layers",
    "xpconv._transpose",
    "xpconv._winograd",
    "xpconv.network",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    if name in ("xpconv", "xpconv._api", "xpconv._blocks", "xpconv._geometry", "xpconv._layers", "xpconv._transpose"):
        assert result.attempted > 0, f"{name} should have runnable examples"


def test_readme_examples() -> None:
    from pathlib import Path

    import numpy as np

    import xpconv

    readme = Path(__file__).resolve().parents[1] / "README.md"
    result = doctest.testfile(
        str(readme),
        module_relative=False,
        globs={"np": np, "xpconv": xpconv},
        optionflags=doctest.NORMALIZE_WHITESPACE,
    )
    assert result.failed == 0 and result.attempted >= 5
