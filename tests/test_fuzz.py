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
    **{name: (getattr(xpconv, name), 3) for name in ("conv", "conv1d", "conv2d", "conv3d")},
    **{f"{prefix}_backward": (getattr(xpconv, f"{prefix}_backward"), 3)
       for prefix in ("conv", "conv1d", "conv2d", "conv3d")},
    **{f"{prefix}_{grad}": (getattr(xpconv, f"{prefix}_{grad}"), 3)
       for prefix in ("conv", "conv1d", "conv2d", "conv3d") for grad in ("input_grad", "weight_grad")},
    **{name: (getattr(xpconv, name), 3)
       for name in ("conv_transpose", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d")},
    **{f"{name}_backward": (getattr(xpconv, f"{name}_backward"), 3)
       for name in ("conv_transpose", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d")},
    "dilate": (xpconv.dilate, 2),
    "pad": (xpconv.pad, 2),
    "rotate180": (xpconv.rotate180, 1),
    "windows": (xpconv.windows, 4),
    "conv_output_shape": (xpconv.conv_output_shape, 2),
    "resolve_padding": (xpconv.resolve_padding, 5),
    "autotune": (xpconv.autotune, 1),
    **{layer.__name__: (layer, 3)
       for layer in (xpconv.Conv1d, xpconv.Conv2d, xpconv.Conv3d,
                     xpconv.ConvTranspose1d, xpconv.ConvTranspose2d, xpconv.ConvTranspose3d)},
}  # fmt: skip
# Functions whose arguments are all plain values (shapes, ints, options), no arrays.
PLAIN = {"conv_output_shape", "resolve_padding", "autotune", "Conv1d", "Conv2d", "Conv3d"} | {
    f"ConvTranspose{n}d" for n in (1, 2, 3)
}
LAYER_OPTIONS = ["stride", "padding", "dilation", "groups", "bias", "method", "output_padding", "dtype", "seed"]
SHAPE_ARGUMENT = {name: 2 for name in FUNCTIONS if name.endswith(("input_grad", "weight_grad"))}


def snapshot(value):
    return value.copy() if isinstance(value, np.ndarray) else None


@st.composite
def valid_call(draw, name: str) -> tuple[list, dict]:
    """A call of a convolution function that should compute: consistent shapes and options, any method
    (one that refuses this call, as "winograd" off 3x3 or "fft" with integers, replaced by "auto"),
    either layout."""
    fixed = name.removeprefix("conv_transpose").removeprefix("conv").split("_")[0]  # "1d", "2d", "3d" or ""
    ndim = {"1d": 1, "2d": 2, "3d": 3}.get(fixed) or draw(st.integers(1, 3))
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
        "method": draw(st.sampled_from(["auto", "direct", "dilate", "winograd", "fft"])),
    }
    transposed = name.startswith("conv_transpose")
    if transposed:
        kernel = rng.integers(0, 5, (channels, filters // groups, *ksize)).astype(dtype)
        options["output_padding"], options["padding"] = 0, 0  # padding may leave no output
        forward = xpconv.conv_transpose
    else:
        kernel = rng.integers(0, 5, (filters, channels // groups, *ksize)).astype(dtype)
        forward = xpconv.conv
    try:
        out = forward(x, kernel, **options)
    except ValueError:  # a method that refuses this call
        options["method"] = "auto"
        out = forward(x, kernel, **options)
    dz = np.ones_like(out)
    if name.endswith("input_grad"):
        args, moved = [dz, kernel, tuple(x.shape)], [0]
    elif name.endswith("weight_grad"):
        args, moved = [dz, x, tuple(kernel.shape)], [0, 1]
    elif name.endswith("backward"):
        args, moved = [dz, x, kernel], [0, 1]
        options["bias"] = draw(st.sampled_from(["tied", "untied", None]))
    else:
        args, moved = [x, kernel, None], [0]
    if draw(st.booleans()):  # the same call channels-last: x and dz (N, *spatial, C), the shapes to match
        options["layout"] = "channels_last"
        for i in moved:
            args[i] = np.moveaxis(args[i], 1, -1)
        if name.endswith("input_grad"):
            args[2] = (x.shape[0], *x.shape[2:], x.shape[1])
    return args, options


@pytest.mark.parametrize("name", FUNCTIONS)
@settings(max_examples=150, deadline=5000, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_hostile_arguments(name: str, data: st.DataObject) -> None:
    function, positional = FUNCTIONS[name]
    if name in PLAIN:
        args = [data.draw(st.one_of(geometry_values, st.lists(ints, max_size=6).map(tuple))) for _ in range(positional)]
        keys = ["stride", "padding", "dilation", "layout"] if name == "conv_output_shape" else LAYER_OPTIONS
        kwargs = (
            {}
            if name in ("resolve_padding", "autotune")
            else data.draw(st.dictionaries(st.sampled_from(keys), geometry_values, max_size=3))
        )
    elif name.startswith("conv") and data.draw(st.booleans()):
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
