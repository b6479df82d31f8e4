"""The NumPy loop references (what the value tests use where torch is not installed) agree with torch
autograd: the forward pass and every gradient, convolutions and transposed ones, real and complex."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import (
    draw,
    explicit_pads,
    geometries,
    loop_reference,
    loop_transpose_reference,
    nd_cases,
    torch_reference,
    torch_transpose_output_shape,
    torch_transpose_reference,
    transposed_cases,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import xpconv

pytest.importorskip("torch", reason="torch autograd checks the loop references")

FIELDS = ("z", "dx", "dkernel", "dbias_tied", "dbias_untied")


def agree(loops, torch_, what: str) -> None:
    for field in FIELDS:
        got, want = getattr(loops, field), getattr(torch_, field)
        assert got.shape == want.shape, (what, field)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * max(1.0, float(np.abs(want).max(initial=0))))


@settings(max_examples=40, deadline=None)
@given(case=st.one_of(geometries(), nd_cases()), seed=st.integers(0, 2**32 - 1), complex_data=st.booleans())
def test_loop_reference_is_torchs(case, seed: int, complex_data: bool) -> None:
    if len(case) == 10:  # a 2-D geometry: (N, C, H, W, F, ...)
        n, c, h, w, f, ksize, stride, padding, dilation, groups = case
        size = (h, w)
    else:
        n, c, size, f, ksize, stride, padding, dilation, groups = case
    ndim = len(size)
    per_axis = lambda v: (v,) * ndim if isinstance(v, int) else tuple(v)  # noqa: E731
    dtype = "complex128" if complex_data else "float64"
    rng = np.random.default_rng(seed)
    x, kernel = draw(rng, (n, c, *size), dtype), draw(rng, (f, c // groups, *ksize), dtype)
    shape = xpconv.conv_output_shape(x.shape, kernel.shape, stride=stride, padding=padding, dilation=dilation)
    dz = draw(rng, shape, dtype)
    pads = explicit_pads(padding, size, ksize, per_axis(stride), per_axis(dilation))
    params = dict(stride=stride, pads=pads, dilation=dilation, groups=groups)
    agree(loop_reference(x, kernel, dz, **params), torch_reference(x, kernel, dz, **params), "convolution")


@settings(max_examples=40, deadline=None)
@given(case=transposed_cases(), seed=st.integers(0, 2**32 - 1), complex_data=st.booleans())
def test_loop_transpose_reference_is_torchs(case, seed: int, complex_data: bool) -> None:
    n, c_in, size, f, ksize, stride, padding, output_padding, dilation, groups = case
    dtype = "complex128" if complex_data else "float64"
    rng = np.random.default_rng(seed)
    x, kernel = draw(rng, (n, c_in, *size), dtype), draw(rng, (c_in, f // groups, *ksize), dtype)
    params = dict(stride=stride, padding=padding, output_padding=output_padding, dilation=dilation, groups=groups)
    dz = draw(rng, torch_transpose_output_shape(x.shape, kernel.shape, **params), dtype)
    agree(loop_transpose_reference(x, kernel, dz, **params), torch_transpose_reference(x, kernel, dz, **params), "t")
