"""The documentation's "Coming from sigpy or scipy.signal" recipes (docs/migrating.md) against sigpy
itself (sigpy==0.1.27).

The recipes are read from the page and run as they stand, so the page cannot drift from what is
tested: sigpy's convolve, convolve_data_adjoint and convolve_filter_adjoint (its CPU code, which
loops over scipy.signal per channel pair) on random real and complex cases, 1-D to 3-D, "full"
and "valid", strides, multi_channel on and off, zero to two leading batch axes, on NumPy and torch.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from helpers import NUMPY, assert_close, installed, to_numpy
from hypothesis import given, settings
from hypothesis import strategies as st

sigpy_conv = pytest.importorskip("sigpy.conv", reason="sigpy is the reference (extra 'test')")

PAGE = Path(__file__).resolve().parents[1] / "docs" / "migrating.md"


def page_recipes() -> dict:
    text = PAGE.read_text()
    section = text.split("## Coming from sigpy or scipy.signal", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```(?:python|\{testcode\})\n(.*?)```", section, re.DOTALL)
    assert code, "the sigpy section has no code block"
    namespace: dict = {}
    exec(compile(code.group(1), str(PAGE), "exec"), namespace)
    return namespace


RECIPES = page_recipes()


@st.composite
def sigpy_cases(draw):
    spatial = draw(st.integers(1, 3))
    multi_channel = draw(st.booleans())
    mode = draw(st.sampled_from(["full", "valid"]))
    filt = tuple(draw(st.integers(1, 5 if spatial < 3 else 3)) for _ in range(spatial))
    data = tuple(n + draw(st.integers(0, 6 if spatial < 3 else 3)) for n in filt)  # "valid": data >= filter
    strides = draw(st.one_of(st.none(), st.tuples(*[st.integers(1, 3)] * spatial)))
    batch = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    channels = (draw(st.integers(1, 3)), draw(st.integers(1, 3))) if multi_channel else ()
    dtype = draw(st.sampled_from(["float64", "complex128"]))
    return spatial, multi_channel, mode, filt, data, strides, batch, channels, dtype


def random(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    values = rng.standard_normal(shape)
    return values + 1j * rng.standard_normal(shape) if dtype == "complex128" else values


def convert(library: str):
    if library == "numpy":
        return lambda a: a
    import torch

    return torch.from_numpy


LIBRARIES = ["numpy"] + (["torch"] if installed("torch") else [])


@pytest.mark.parametrize("library", LIBRARIES)
@settings(max_examples=40, deadline=None)
@given(case=sigpy_cases(), seed=st.integers(0, 2**32 - 1))
def test_recipes_agree_with_sigpy(library: str, case, seed: int) -> None:
    _, multi_channel, mode, filt_size, data_size, strides, batch, channels, dtype = case
    rng = np.random.default_rng(seed)
    c_o, c_i = channels if multi_channel else (None, None)
    data = random(rng, (*batch, *((c_i,) if multi_channel else ()), *data_size), dtype)
    filt = random(rng, (*((c_o, c_i) if multi_channel else ()), *filt_size), dtype)
    options = dict(mode=mode, strides=strides, multi_channel=multi_channel)
    expected = sigpy_conv.convolve(data, filt, **options)
    output = random(rng, expected.shape, dtype)
    expected_data = sigpy_conv.convolve_data_adjoint(output, filt, data.shape, **options)
    expected_filt = sigpy_conv.convolve_filter_adjoint(output, data, filt.shape, **options)

    to = convert(library)
    got = RECIPES["convolve"](to(data), to(filt), **options)
    got_data = RECIPES["convolve_data_adjoint"](to(output), to(filt), data.shape, **options)
    got_filt = RECIPES["convolve_filter_adjoint"](to(output), to(data), filt.shape, **options)
    for actual, want, what in ((got, expected, "convolve"), (got_data, expected_data, "data adjoint"),
                               (got_filt, expected_filt, "filter adjoint")):  # fmt: skip
        assert type(actual).__module__.split(".")[0] == library, what
        # floor: one product of the standard-normal inputs (an output no tap reaches is 0 exactly)
        assert_close(to_numpy(actual), want, xp=NUMPY, tol=1e-12, floor=1.0, what=what)


def test_recipes_give_the_adjoints_of_the_convolution() -> None:
    """sigpy's operators are a convolution and its two adjoints; so are the recipes (complex, 2-D, stride 2)."""
    rng = np.random.default_rng(0)
    data, filt = random(rng, (2, 3, 12, 11), "complex128"), random(rng, (4, 3, 5, 4), "complex128")
    options = dict(mode="full", strides=(2, 2), multi_channel=True)
    z = RECIPES["convolve"](data, filt, **options)
    y = random(rng, z.shape, "complex128")
    inner = np.vdot(z, y)
    assert np.isclose(inner, np.vdot(data, RECIPES["convolve_data_adjoint"](y, filt, data.shape, **options)))
    assert np.isclose(inner, np.vdot(filt, RECIPES["convolve_filter_adjoint"](y, data, filt.shape, **options)))
