"""Hostile arguments: every public function either succeeds or raises ValueError/TypeError with a message.

Hypothesis draws arbitrary values for every argument — arrays of every dtype, 0-d, empty and of the
wrong number of axes, NaN; ints small, negative and absurd; floats, bools, None, unknown strings,
nested tuples and lists — and asserts that a call never raises anything else, never takes long,
and never writes to an input. Integers are drawn small or absurd (10**12 and up: even one-byte
elements would not fit in memory, so the size guard refuses), never in between, where a
legitimate call could take minutes (dilating a uint8 array by 10**9 allocates a real gigabyte).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import xpconv

DTYPES = ["float64", "float32", "int64", "int8", "uint8", "bool", "complex128", "object", "<U1", "datetime64[D]"]

ints = st.one_of(st.integers(-2, 6), st.sampled_from([10**12, 10**15, 2**63, -(10**12)]))
scalars = st.one_of(ints, st.floats(allow_nan=True), st.booleans(), st.none(), st.text(max_size=8))
words = st.sampled_from(["valid", "same", "full", "", "tied", "untied", "auto", "direct", "dilate", "winograd"])
geometry_values = st.recursive(
    st.one_of(scalars, words),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.lists(inner, max_size=4).map(tuple)),
    max_leaves=8,
)


@st.composite
def arrays(draw) -> np.ndarray:
    dtype = draw(st.sampled_from(DTYPES))
    shape = tuple(draw(st.lists(st.integers(0, 4), max_size=6)))
    values = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).integers(-3, 4, shape)
    array = values.astype(dtype)
    if dtype.startswith("float") and array.size and draw(st.booleans()):
        array.flat[0] = np.nan
    return array


# Arrays of a usable shape too, so that the calls get past the first checks often enough.
def plausible(ndim: int):
    return st.builds(
        lambda shape, dtype: np.ones(shape, dtype=dtype),
        st.tuples(*[st.integers(1, 4)] * (ndim + 2)),
        st.sampled_from(["float64", "float32", "int16"]),
    )


array_args = st.one_of(arrays(), plausible(1), plausible(2), plausible(3), st.none(), scalars)
options = st.dictionaries(
    st.sampled_from(
        ["stride", "padding", "dilation", "groups", "layout", "method", "bias", "workspace_bytes", "output_padding"]
    ),
    geometry_values,
    max_size=4,
)

FUNCTIONS = {
    "conv": (xpconv.conv, 3),
    "conv1d": (xpconv.conv1d, 3),
    "conv2d": (xpconv.conv2d, 3),
    "conv3d": (xpconv.conv3d, 3),
    "conv_backward": (xpconv.conv_backward, 3),
    "conv2d_backward": (xpconv.conv2d_backward, 3),
    "conv_input_grad": (xpconv.conv_input_grad, 3),
    "conv2d_input_grad": (xpconv.conv2d_input_grad, 3),
    "conv_weight_grad": (xpconv.conv_weight_grad, 3),
    "conv2d_weight_grad": (xpconv.conv2d_weight_grad, 3),
    "conv_transpose": (xpconv.conv_transpose, 3),
    "conv_transpose_backward": (xpconv.conv_transpose_backward, 3),
    "dilate": (xpconv.dilate, 2),
    "pad": (xpconv.pad, 2),
    "rotate180": (xpconv.rotate180, 1),
    "windows": (xpconv.windows, 4),
}
SHAPE_ARGUMENT = {"conv_input_grad": 2, "conv2d_input_grad": 2, "conv_weight_grad": 2, "conv2d_weight_grad": 2}


def snapshot(value):
    return value.copy() if isinstance(value, np.ndarray) else None


@st.composite
def valid_call(draw, name: str) -> tuple[list, dict]:
    """A call of a convolution function that should compute: consistent shapes and options."""
    ndim = {"conv1d": 1, "conv2d": 2, "conv3d": 3}.get(name.split("_")[0]) or draw(st.integers(1, 3))
    groups = draw(st.integers(1, 2))
    channels, filters = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    ksize = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    dilation = draw(st.integers(1, 2))
    size = tuple(dilation * (k - 1) + 1 + draw(st.integers(0, 4)) for k in ksize)
    dtype = draw(st.sampled_from(["float64", "float32", "int16", "uint8"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = rng.integers(0, 5, (draw(st.integers(0, 2)), channels, *size)).astype(dtype)
    options = {
        "stride": draw(st.integers(1, 3)),
        "padding": draw(st.sampled_from([0, 1, (1,) * ndim])),
        "dilation": dilation,
        "groups": groups,
        "layout": "channels_first",
        "method": draw(st.sampled_from(["auto", "direct", "dilate", "winograd"])),
    }
    if name.startswith("conv_transpose"):
        kernel = rng.integers(0, 5, (channels, filters // groups, *ksize)).astype(dtype)
        options["output_padding"], options["padding"] = 0, 0  # padding may leave no output
        try:
            out = xpconv.conv_transpose(x, kernel, **options)
        except ValueError:  # winograd where it does not apply
            options["method"] = "auto"
            out = xpconv.conv_transpose(x, kernel, **options)
        if name == "conv_transpose":
            return [x, kernel, None], options
        return [np.ones_like(out), x, kernel], options
    kernel = rng.integers(0, 5, (filters, channels // groups, *ksize)).astype(dtype)
    options.pop("method")
    out = xpconv.conv(x, kernel, **options)
    options["method"] = "direct"
    dz = np.ones_like(out)
    if name.endswith("input_grad"):
        return [dz, kernel, tuple(x.shape)], options
    if name.endswith("weight_grad"):
        return [dz, x, tuple(kernel.shape)], options
    if name.endswith("backward"):
        return [dz, x, kernel], dict(options, bias=draw(st.sampled_from(["tied", "untied", None])))
    options.pop("method")
    return [x, kernel, None], options


@pytest.mark.parametrize("name", FUNCTIONS)
@settings(max_examples=150, deadline=5000, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_hostile_arguments(name: str, data: st.DataObject) -> None:
    function, positional = FUNCTIONS[name]
    if name.startswith("conv") and data.draw(st.booleans()):
        # A valid call with one argument or option replaced by a hostile value (or none replaced).
        args, kwargs = data.draw(valid_call(name))
        slot = data.draw(st.integers(0, len(args) + 3))
        if slot < len(args):
            args[slot] = data.draw(st.one_of(array_args, geometry_values))
        elif slot < len(args) + 3:
            kwargs.update(data.draw(options))
    else:
        args = [data.draw(array_args) for _ in range(positional)]
        if name in SHAPE_ARGUMENT:  # an input_shape / kernel_shape: sequences of (mostly) ints
            args[SHAPE_ARGUMENT[name]] = data.draw(st.one_of(geometry_values, st.lists(ints, max_size=6).map(tuple)))
        if name in ("dilate", "windows", "pad"):
            args[1:] = [data.draw(geometry_values) for _ in args[1:]]
        kwargs = data.draw(options) if name not in ("dilate", "pad", "rotate180", "windows") else {}
    before = [snapshot(a) for a in args] + [snapshot(v) for v in kwargs.values()]
    try:
        function(*args, **kwargs)
        event("computed")
    except (ValueError, TypeError) as error:
        event(type(error).__name__)
        assert str(error), f"{type(error).__name__} without a message"
    after = list(args) + list(kwargs.values())
    for original, value in zip(before, after):
        if original is not None:
            assert np.array_equal(original, value, equal_nan=original.dtype.kind in "fc"), "an input was written to"
