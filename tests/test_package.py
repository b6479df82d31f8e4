"""The package's shape: what ``import xpconv`` loads, and how its modules import each other."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import xpconv

SOURCE = Path(xpconv.__file__).resolve().parent


def test_import_xpconv_loads_no_tool_and_no_matplotlib() -> None:
    code = "import sys, json, xpconv; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    ours = [name for name in loaded if name.startswith("xpconv")]
    assert not [name for name in ours if name.startswith("xpconv.tools") or name == "xpconv.network"], ours
    assert not [name for name in loaded if name.split(".")[0] in ("matplotlib", "sklearn", "torch", "jax", "dask")]


def test_no_module_imports_another_modules_private_names() -> None:
    """Modules share only names without a leading underscore (the argument checks live in ``_arguments``)."""
    offences = []
    for path in SOURCE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:  # `from . import _api` imports a module
                offences += [f"{path.name}: {a.name}" for a in node.names if a.name.startswith("_")]
    assert offences == []


def test_tools_use_only_the_public_api() -> None:
    offences = []
    for path in (SOURCE / "tools").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("xpconv"):
                private = [part for part in node.module.split(".") if part.startswith("_")]
                offences += [f"{path.name}: from {node.module}"] if private else []
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "xpconv":
                offences += [f"{path.name}: xpconv.{node.attr}"] if node.attr.startswith("_") else []
    assert offences == []


def test_the_public_names_are_documented() -> None:
    for name in xpconv.__all__:
        value = getattr(xpconv, name)
        if callable(value):
            assert value.__doc__ and ">>>" in value.__doc__, f"xpconv.{name} has no runnable example"
