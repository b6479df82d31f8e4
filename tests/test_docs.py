"""The documentation: every public name has an API entry, the keyword options show with their
defaults, and the examples on the pages run (the Sphinx build itself is ``nox -s docs``)."""

from __future__ import annotations

import doctest
import importlib.util
import inspect
import re
from pathlib import Path

import numpy as np
import pytest

import xpconv
import xpconv.network
import xpconv.typing

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = sorted(DOCS.glob("*.md"))


def conf():
    spec = importlib.util.spec_from_file_location("docs_conf", DOCS / "conf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_public_name_has_a_reference_entry() -> None:
    api = (DOCS / "api.md").read_text()
    documented = set(re.findall(r"^\.\. auto(?:function|class|data):: (?:xpconv\.typing\.)?(\w+)", api, re.M))
    for module, names in ((xpconv, xpconv.__all__), (xpconv.typing, xpconv.typing.__all__)):
        missing = [name for name in names if name not in documented and name != "Unpack"]
        assert not missing, f"{module.__name__}: no entry for {missing}"
    assert ".. automodule:: xpconv.network\n   :members:" in api  # its __all__, with their docstrings


@pytest.mark.parametrize("module", ["xpconv.torch", "xpconv.jax"])
def test_every_bridge_name_has_a_reference_entry(module: str) -> None:
    bridge = pytest.importorskip(module, reason=f"{module} needs {module.split('.')[1]}")
    api = (DOCS / "api.md").read_text()
    section = api.split(f".. currentmodule:: {module}\n")[1].split(".. currentmodule::")[0]
    documented = set(re.findall(r"^\.\. auto(?:function|class):: (\w+)", section, re.M))
    assert set(bridge.__all__) <= documented, f"{module}: no entry for {set(bridge.__all__) - documented}"


WITH_OPTIONS = [
    name
    for name in xpconv.__all__
    if inspect.isfunction(getattr(xpconv, name)) and "**options" in str(inspect.signature(getattr(xpconv, name)))
]


def test_the_functions_with_options_are_the_convolutions() -> None:
    assert len(WITH_OPTIONS) == 24 and all(name.startswith("conv") for name in WITH_OPTIONS)


@pytest.mark.parametrize("name", WITH_OPTIONS)
def test_keyword_options_show_with_their_defaults(name: str) -> None:
    function = getattr(xpconv, name)
    signature = str(inspect.signature(function))
    shown, _ = conf()._options_signature(None, "function", name, function, None, signature, None)
    assert "**options" not in shown
    typed = getattr(xpconv.typing, re.search(r"Unpack\[(\w+)\]", signature).group(1))
    for key in typed.__annotations__:
        assert re.search(rf"\b{key}=", shown), f"{name}: {key} not shown in {shown}"
    default_padding = "0" if name.startswith("conv_transpose") else "'valid'"
    assert f"padding={default_padding}" in shown


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_page_examples(page: Path) -> None:
    # one namespace per page, as Sphinx's doctest builder keeps for a page's blocks
    globs = {"np": np, "xpconv": xpconv, "installed": lambda m: importlib.util.find_spec(m) is not None}
    parser = doctest.DocTestParser()
    text = page.read_text()
    # the {doctest} fences whose :skipif: names a library that is not installed are left out, as Sphinx does
    for block in re.findall(r"```\{doctest\}\n(.*?)```", text, re.DOTALL):
        skip = re.match(r":skipif: not installed\(\"(\w+)\"\)", block)
        if skip and importlib.util.find_spec(skip.group(1)) is None:
            continue
        test = parser.get_doctest(block, globs, page.name, str(page), 0)
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        runner.run(test, clear_globs=False)
        globs.update(test.globs)  # DocTest copies its namespace: carry the names on to the next block
        assert runner.failures == 0, f"{page.name}: {runner.failures} failing examples"
