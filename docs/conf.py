"""Sphinx configuration: ``nox -s docs`` builds the site with ``-W -n`` (warnings are errors, every
cross-reference must resolve) and runs every example on its pages and in the docstrings as a doctest.
Offline: no intersphinx; references to Python's and NumPy's own names are not checked (below)."""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import xpconv  # noqa: E402
import xpconv.typing  # noqa: E402

project = "xpconv"
author = "the xpconv developers"
copyright = "2026, the xpconv developers"
release = xpconv.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "figures.py", "deconvolution.py"]
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3
html_theme = "furo"
html_title = f"xpconv {release}"

napoleon_numpy_docstring = True
napoleon_google_docstring = False
autodoc_member_order = "bysource"
# The types are the docstrings' (shapes and dtypes say more than ``Array``, which is ``Any``) and
# xpconv.typing's; signatures show names and defaults.
autodoc_typehints = "none"
# Python's, NumPy's and typing's own names: no intersphinx offline, so these are not checked.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(int|float|str|bool|None|tuple|list|dict|object|type|complex|Exception)"),
    (r"py:.*", r"(collections\.abc|typing|numpy|np|dataclasses|threading)\..*"),
    (r"py:.*", r"(Any|Literal|Unpack|Callable|Sequence|Mapping|Iterable|Iterator|ClassVar|TypedDict)"),
    # numpydoc's prose types ("array", "int or tuple of int, default 1"), not names
    (r"py:class", r"(array|.* .*)"),
]


# The docstrings' examples call their module's own names unqualified, as doctest.testmod runs them.
doctest_global_setup = """
import importlib.util
import numpy as np
import xpconv
from xpconv import *
from xpconv.network import *

def installed(module):
    return importlib.util.find_spec(module) is not None
"""
doctest_default_flags = 0
import doctest  # noqa: E402

doctest_default_flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE | doctest.DONT_ACCEPT_TRUE_FOR_1

# --- keyword options shown as parameters ------------------------------------------------------
# The public functions take their keyword options as ``**options: Unpack[ConvOptions]`` (typed once,
# in xpconv.typing). Their entries show each option with its default instead of ``**options``.
DEFAULTS = {  # in the order the signatures show them
    "stride": "1",
    "padding": "'valid'",
    "output_padding": "0",
    "dilation": "1",
    "groups": "1",
    "bias": "'tied'",
    "layout": "'channels_first'",
    "method": "'auto'",
    "workspace_bytes": "None",
}
TRANSPOSED_DEFAULTS = {"padding": "0"}


def _options_signature(app, what, name, obj, options, signature, return_annotation):
    if what != "function" or not signature or "**options" not in signature:
        return None
    annotation = str(inspect.signature(obj).parameters["options"].annotation)
    typed = getattr(xpconv.typing, re.sub(r"^Unpack\[(\w+)\]$", r"\1", annotation))
    defaults = {**DEFAULTS, **(TRANSPOSED_DEFAULTS if typed.__name__.startswith("Transpose") else {})}
    keywords = ", ".join(f"{key}={value}" for key, value in defaults.items() if key in typed.__annotations__)
    return re.sub(r"\*\*options(: Unpack\[\w+\])?", f"*, {keywords}", signature), return_annotation


def _draw_figures(app):
    """The figures drawn by code: docs/figures.py and docs/deconvolution.py (it needs Dask), run at every
    build (they need matplotlib)."""
    import subprocess

    (ROOT / "docs" / "_generated").mkdir(exist_ok=True)
    for script, figure in (("figures.py", "dx-steps.png"), ("deconvolution.py", "deconvolution.png")):
        target = ROOT / "docs" / "_generated" / figure
        subprocess.run([sys.executable, str(ROOT / "docs" / script), str(target)], check=True,
                       env={"PYTHONPATH": str(ROOT / "src"), "MPLBACKEND": "Agg"})  # fmt: skip


def setup(app):
    app.connect("builder-inited", _draw_figures)
    app.connect("autodoc-process-signature", _options_signature)
