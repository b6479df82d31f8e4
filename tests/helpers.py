"""What the tests share: making arrays of a library, reading them back, one ``assert_close``, and the
independent references: torch autograd in float64 where torch is installed, else the definitions
in NumPy loops (``loop_reference``, ``loop_transpose_reference``; checked against torch in
test_references.py), so that a NumPy-only install still tests values.

Test files import from here, never from each other. The ``xp`` fixture (``conftest.py``) yields the
array API namespace of each tested library.
"""

from __future__ import annotations

import importlib.util
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
from array_api_compat import array_namespace, is_cupy_array, is_dask_namespace, is_torch_array
from array_api_compat import device as device_of
from hypothesis import strategies as st

METHODS = ("auto", "direct", "dilate", "winograd", "fft")
NUMPY = array_namespace(np.empty(0))


def methods_of(xp: Any, dtype: str) -> tuple[str, ...]:
    """:data:`METHODS`, and ``"native"`` where the array library has a convolution of its own for ``dtype``
    (torch: real floating point; JAX: floating point, complex too)."""
    from array_api_compat import is_jax_namespace, is_torch_namespace

    native = (is_torch_namespace(xp) and "complex" not in dtype) or is_jax_namespace(xp)
    return (*METHODS, "native") if native and not dtype.startswith(("int", "uint")) else METHODS


"""The namespace of NumPy arrays, for ``assert_close(..., xp=NUMPY)``."""


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a finder that refuses it (test_check's "not installed" hook)
        return False


# The device the arrays of the running test go to, set by the ``xp`` fixture (conftest.py): "cpu" for
# torch, "cuda" for torch-cuda, None (the library's default) elsewhere. Tests place their inputs there explicitly,
# and torch's global default device is never changed, so that a tensor xpconv makes without
# ``device=`` lands on the CPU and fails against CUDA inputs instead of following them silently.
TEST_DEVICE: dict[str, Any] = {"device": None}


def asarray(a: Any, xp: Any) -> Any:
    """A copy of the NumPy array ``a`` in the library ``xp``, on the test's device (Dask: chunked
    along the first axis, the batch of x and dz, as a user's data would be)."""
    a = np.array(a, copy=True)
    if is_dask_namespace(xp):
        import dask.array as da

        return da.from_array(a, chunks=(max(1, a.shape[0] // 2), *a.shape[1:])) if a.ndim else da.from_array(a)
    device = TEST_DEVICE["device"]
    return xp.asarray(a) if device is None else xp.asarray(a, device=device)


def to_numpy(a: Any) -> np.ndarray:
    """A NumPy copy of an array of any tested library."""
    from array_api_compat import is_dask_array

    if is_torch_array(a):
        return a.detach().cpu().numpy()
    if is_cupy_array(a):
        return a.get()
    if is_dask_array(a):
        return np.asarray(a.compute())
    return np.asarray(np.from_dlpack(a))


def assert_close(
    actual: Any,
    desired: Any,
    *,
    xp: Any,
    dtype: Any = None,
    tol: float = 1e-12,
    scale: float | None = None,
    exact: bool = False,
    what: str = "",
    floor: float = 0.0,
) -> None:
    """``actual`` is an array of the library ``xp``, on its default device, of ``dtype`` (default:
    the desired values' dtype) and of the desired shape; then its values are within ``tol`` of
    ``desired``, relative to the largest desired value (or to ``scale``, for sums that may cancel;
    never to less than ``floor``), or equal where ``exact``.

    ``floor``: the size of one term of the sums, where a result may be exactly 0 (no kernel tap
    reaches it) and a method that rounds every output alike (the FFT) gives rounding noise there."""
    label = f"{what}: " if what else ""
    assert array_namespace(actual) is xp, f"{label}the result is a {type(actual)}, not an array of {xp.__name__}"
    expected_device = device_of(asarray(np.zeros(()), xp))
    assert device_of(actual) == expected_device, f"{label}on {device_of(actual)}, not {expected_device}"
    desired = np.asarray(desired)
    wanted = getattr(xp, desired.dtype.name) if dtype is None else dtype
    assert actual.dtype == wanted, f"{label}dtype {actual.dtype}, not {wanted}"
    assert tuple(actual.shape) == desired.shape, f"{label}shape {tuple(actual.shape)}, not {desired.shape}"
    values = to_numpy(actual)
    if exact:
        np.testing.assert_array_equal(values, desired, err_msg=what)
        return
    scale = max(scale or float(np.max(np.abs(desired), initial=0.0)), floor, 1e-300)
    wide = np.complex128 if np.iscomplexobj(values) else np.float64
    error = float(np.max(np.abs(values.astype(wide) - desired), initial=0.0)) / scale
    assert error <= tol, f"{label}relative error {error:.3g} > {tol:g}"


def draw(rng: np.random.Generator, shape, dtype: str = "float64") -> np.ndarray:
    """Standard normal values of ``dtype``; complex ones get an independent imaginary part."""
    values = rng.standard_normal(shape)
    if "complex" in dtype:
        values = values + 1j * rng.standard_normal(shape)
    return values.astype(dtype)


# --- independent references: torch autograd in float64, the padding forms spelled out by hand ---
# Every reference tensor is made on the CPU explicitly, whatever torch's default device is.


def explicit_pads(padding, input_size, kernel_size, stride, dilation) -> tuple[tuple[int, int], ...]:
    """Each padding form as ((before, after), ...), written from the issue's definitions."""
    ndim = len(input_size)
    if padding == "valid":
        return ((0, 0),) * ndim
    if padding == "same":
        pads = []
        for n, k, s, d in zip(input_size, kernel_size, stride, dilation):
            total = (s - 1) * n + d * (k - 1) + 1 - s  # the definition
            pads.append((total // 2, total - total // 2))
        return tuple(pads)
    if padding == "full":  # every overlap of kernel and input
        return tuple((d * (k - 1), d * (k - 1)) for k, d in zip(kernel_size, dilation))
    if isinstance(padding, int):
        return ((padding, padding),) * ndim
    return tuple((p, p) if isinstance(p, int) else tuple(p) for p in padding)


@dataclass
class Gradients:
    z: np.ndarray
    dx: np.ndarray
    dkernel: np.ndarray
    dbias_tied: np.ndarray
    dbias_untied: np.ndarray


def _torch_pad(pads) -> tuple[int, ...]:
    """((before, after) per axis, first axis first) -> torch.nn.functional.pad's order, last axis first."""
    return tuple(amount for before_after in reversed(pads) for amount in before_after)


def torch_reference(x, kernel, dz, *, stride, pads, dilation, groups) -> Gradients:
    """Forward pass without bias, and all gradients, from torch autograd in float64, any 1-3 spatial axes.

    Padding goes through ``F.pad`` so that asymmetric padding is covered. Zero biases of both
    kinds are leaves of the graph, so their gradients come from autograd too. Without torch, the
    definitions (:func:`loop_reference`).
    """
    if not installed("torch"):
        return loop_reference(x, kernel, dz, stride=stride, pads=pads, dilation=dilation, groups=groups)
    import torch
    import torch.nn.functional as F

    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[kernel.ndim - 2]
    dtype = _reference_dtype(x, kernel, dz)
    xt, kt = _leaf(x, dtype), _leaf(kernel, dtype)
    tied = _leaf(np.zeros(kernel.shape[0]), dtype)
    z = conv(F.pad(xt, _torch_pad(pads)), kt, tied, stride=stride, dilation=dilation, groups=groups)
    untied = _leaf(np.zeros(z.shape[1:]), dtype)
    z = z + untied
    z.backward(torch.tensor(np.asarray(dz, dtype=dtype), device="cpu"))
    return Gradients(z.detach().numpy(), xt.grad.numpy(), kt.grad.numpy(), tied.grad.numpy(), untied.grad.numpy())


def torch_transpose_reference(x, kernel, dz, *, stride, padding, output_padding, dilation, groups) -> Gradients:
    """torch.nn.functional.conv_transpose{1,2,3}d and its autograd gradients, float64.

    ``padding`` may also hold ``(before, after)`` pairs, which torch does not take: then the
    unpadded transposed convolution (with the output padding) is computed and ``before`` rows cut
    from the start and ``after`` from the end of each axis, by definition. Without torch, the
    definitions (:func:`loop_transpose_reference`)."""
    if not installed("torch"):
        params = dict(stride=stride, output_padding=output_padding, dilation=dilation, groups=groups)
        return loop_transpose_reference(x, kernel, dz, padding=padding, **params)
    import torch
    import torch.nn.functional as F

    ndim = kernel.ndim - 2
    conv_transpose = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[ndim]
    dtype = _reference_dtype(x, kernel, dz)
    xt, kt = _leaf(x, dtype), _leaf(kernel, dtype)
    tied = _leaf(np.zeros(kernel.shape[1] * groups), dtype)
    params = dict(stride=stride, output_padding=output_padding, groups=groups, dilation=dilation)
    z = _padded_transpose(conv_transpose, xt, kt, tied, padding, params)
    untied = _leaf(np.zeros(z.shape[1:]), dtype)
    z = z + untied
    z.backward(torch.tensor(np.asarray(dz, dtype=dtype), device="cpu"))
    return Gradients(z.detach().numpy(), xt.grad.numpy(), kt.grad.numpy(), tied.grad.numpy(), untied.grad.numpy())


def _padded_transpose(conv_transpose, x, kernel, bias, padding, params):
    """torch's transposed convolution; with ``(before, after)`` pairs, unpadded and then cut."""
    if isinstance(padding, int) or all(isinstance(p, int) for p in padding):
        return conv_transpose(x, kernel, bias, padding=padding, **params)
    pairs = [(p, p) if isinstance(p, int) else tuple(p) for p in padding]
    z = conv_transpose(x, kernel, bias, padding=0, **params)
    return z[(..., *(slice(before, n - after) for (before, after), n in zip(pairs, z.shape[2:])))]


def torch_transpose_output_shape(x_shape, kernel_shape, *, padding=0, **params) -> tuple[int, ...]:
    if not installed("torch"):
        x, kernel = np.zeros(x_shape), np.zeros(kernel_shape)
        return tuple(loop_transpose_reference(x, kernel, None, padding=padding, **params).z.shape)
    import torch
    import torch.nn.functional as F

    conv_transpose = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[len(kernel_shape) - 2]
    with torch.no_grad():
        zeros = [torch.zeros(shape, device="cpu") for shape in (x_shape, kernel_shape)]
        return tuple(_padded_transpose(conv_transpose, *zeros, None, padding, params).shape)


def _per_axis(value, ndim: int) -> tuple:
    return (value,) * ndim if isinstance(value, int) else tuple(value)


def _taps(kernel_size):
    return itertools.product(*(range(k) for k in kernel_size))


def loop_reference(x, kernel, dz, *, stride, pads, dilation, groups) -> Gradients:
    """The definitions in NumPy, one kernel tap and one group at a time (no window view, no xpconv):
    ``z[n, f, o] = sum_{c, a} xpad[n, c, o*s + a*d] K[f, c, a]``; dX adds ``dz * conj(K)`` back to
    those positions, dK sums ``dz * conj(xpad)`` over them (torch's convention for complex data)."""
    ndim = kernel.ndim - 2
    stride, dilation = _per_axis(stride, ndim), _per_axis(dilation, ndim)
    dtype = _reference_dtype(x, kernel, dz)
    x, kernel, dz = (np.asarray(a, dtype=dtype) for a in (x, kernel, dz))
    padded = np.pad(x, ((0, 0), (0, 0), *pads))
    channels, filters, out = x.shape[1] // groups, kernel.shape[0] // groups, dz.shape[2:]
    z, dpadded, dkernel = np.zeros(dz.shape, dtype), np.zeros_like(padded), np.zeros_like(kernel)
    for g, tap in itertools.product(range(groups), _taps(kernel.shape[2:])):
        cs, fs = slice(g * channels, (g + 1) * channels), slice(g * filters, (g + 1) * filters)
        where = (
            slice(None),
            cs,
            *(slice(t * d, t * d + s * (o - 1) + 1, s) for t, d, s, o in zip(tap, dilation, stride, out)),
        )
        window, weights, grads = padded[where], kernel[(fs, slice(None), *tap)], dz[:, fs]
        z[:, fs] += np.einsum("nc...,fc->nf...", window, weights)
        dpadded[where] += np.einsum("nf...,fc->nc...", grads, np.conj(weights))
        summed = [0, *range(2, 2 + ndim)]  # the batch and the positions
        dkernel[(fs, slice(None), *tap)] += np.tensordot(grads, np.conj(window), axes=(summed, summed))
    crop = tuple(slice(before, before + n) for (before, _), n in zip(pads, x.shape[2:]))
    dx = dpadded[(slice(None), slice(None), *crop)]
    return Gradients(z, dx, dkernel, dz.sum(axis=(0, *range(2, 2 + ndim))), dz.sum(axis=0))


def loop_transpose_reference(x, kernel, dz, *, stride, padding, output_padding, dilation, groups) -> Gradients:
    """The transposed convolution by its definition in NumPy: each input value adds ``x * W`` at
    ``i*s + a*d`` of the full output (``(n-1)*s + d*(k-1) + 1`` plus ``output_padding`` rows), of
    which ``before`` rows are cut from the start and ``after`` from the end. ``dz`` may be None (the
    forward pass alone)."""
    ndim = kernel.ndim - 2
    stride, dilation = _per_axis(stride, ndim), _per_axis(dilation, ndim)
    extra = _per_axis(output_padding, ndim)
    pairs = [(p, p) if isinstance(p, int) else tuple(p) for p in _per_axis(padding, ndim)]
    dtype = _reference_dtype(x, kernel, *(() if dz is None else (dz,)))
    x, kernel = np.asarray(x, dtype=dtype), np.asarray(kernel, dtype=dtype)
    size, kernel_size = x.shape[2:], kernel.shape[2:]
    full = tuple((n - 1) * s + d * (k - 1) + 1 + e for n, s, d, k, e in zip(size, stride, dilation, kernel_size, extra))
    channels, filters = x.shape[1] // groups, kernel.shape[1]
    crop = (slice(None), slice(None), *(slice(b, m - a) for (b, a), m in zip(pairs, full)))
    zfull = np.zeros((x.shape[0], filters * groups, *full), dtype)
    dzfull = np.zeros_like(zfull)
    if dz is not None:
        dzfull[crop] = dz
    dx, dkernel = np.zeros_like(x), np.zeros_like(kernel)
    for g, tap in itertools.product(range(groups), _taps(kernel_size)):
        cs, fs = slice(g * channels, (g + 1) * channels), slice(g * filters, (g + 1) * filters)
        where = (
            slice(None),
            fs,
            *(slice(t * d, t * d + s * (n - 1) + 1, s) for t, d, s, n in zip(tap, dilation, stride, size)),
        )
        weights = kernel[(cs, slice(None), *tap)]  # (C_in / g, F / g)
        zfull[where] += np.einsum("nc...,cf->nf...", x[:, cs], weights)
        dx[:, cs] += np.einsum("nf...,cf->nc...", dzfull[where], np.conj(weights))
        summed = [0, *range(2, 2 + ndim)]  # the batch and the positions
        dkernel[(cs, slice(None), *tap)] += np.tensordot(np.conj(x[:, cs]), dzfull[where], axes=(summed, summed))
    z = zfull[crop]
    dbias = (
        (np.zeros(z.shape[1]), np.zeros(z.shape[1:]))
        if dz is None
        else (dz.sum(axis=(0, *range(2, 2 + ndim))), dz.sum(axis=0))
    )
    return Gradients(z, dx, dkernel, *dbias)


def _reference_dtype(*arrays) -> type:
    """complex128 when any input is complex (torch autograd then gives the conjugate-Wirtinger
    gradients xpconv follows), else float64."""
    return np.complex128 if any(np.iscomplexobj(a) for a in arrays) else np.float64


def _leaf(a, dtype=np.float64):
    import torch

    return torch.tensor(np.asarray(a, dtype=dtype), requires_grad=True, device="cpu")


WINOGRAD_REFUSAL = r"method='winograd' cannot compute this convolution"


def winograd_applies(kernel_size, stride, dtype="float64") -> bool:
    """Where method='winograd' must compute (2-D, 3x3, stride 1, floating point); elsewhere it must refuse."""
    strides = (stride,) * len(kernel_size) if isinstance(stride, int) else tuple(stride)
    return (
        tuple(kernel_size) == (3, 3)
        and all(s == 1 for s in strides)
        and ("float" in str(dtype) or "complex" in str(dtype))
    )


# --- drawn geometries, shared by several test files ---


@st.composite
def geometries(draw, kernel_size=None, stride=None):
    """Any 2-D geometry; ``kernel_size`` and ``stride`` fix those two (Winograd's 3x3 at stride 1)."""
    kind = draw(st.sampled_from(["dense", "grouped", "depthwise"]))
    if kind == "depthwise":
        groups = draw(st.integers(1, 4))
        c, f = groups, groups * draw(st.integers(1, 2))
    else:
        groups = 1 if kind == "dense" else draw(st.integers(2, 3))
        c, f = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    ksize = kernel_size or (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    stride = stride or (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = draw(
        st.one_of(
            st.sampled_from(["valid", "same", "full"]),
            st.integers(0, 3),
            st.tuples(st.integers(0, 3), st.integers(0, 3)),
            st.tuples(*[st.tuples(st.integers(0, 3), st.integers(0, 3))] * 2),
        )
    )
    size = []
    for axis in range(2):
        span = dilation[axis] * (ksize[axis] - 1) + 1
        pads = explicit_pads(padding, (1, 1), ksize, stride, dilation)[axis] if padding != "same" else (0, 0)
        smallest = max(1, span - sum(pads))
        # residue of (padded - span) mod stride drawn explicitly, so every remainder occurs
        extra = draw(st.integers(0, 3)) * stride[axis] + draw(st.integers(0, stride[axis] - 1))
        if kernel_size:  # residues modulo the 4x4 output tile matter there
            extra += draw(st.integers(0, 9))
        size.append(smallest + extra)
    n = draw(st.integers(1, 3))
    stride_arg = stride if stride[0] != stride[1] else stride[0]
    return (n, c, *size, f, ksize, stride_arg, padding, dilation, groups)


# (N, C_in, spatial size, F, kernel size, stride, padding, output_padding, dilation, groups)
TRANSPOSED = [
    (2, 3, (5,), 4, (3,), 2, 1, 1, 1, 1),
    (2, 4, (6,), 2, (4,), 3, 2, 2, 1, 2),
    (2, 4, (4, 5), 6, (3, 2), (2, 3), (1, 0), (1, 2), 1, 2),
    (1, 2, (3, 3), 2, (3, 3), 2, 0, (0, 1), 2, 1),
    (2, 4, (3, 4), 4, (2, 2), 3, 1, (2, 0), 1, 4),
    (1, 2, (3, 3, 2), 3, (2, 2, 3), (2, 1, 2), (0, 1, 1), (1, 0, 1), 1, 1),
    (1, 2, (2, 3, 2), 4, (3, 2, 2), 1, 1, 0, (2, 1, 1), 2),
    (2, 4, (5, 7), 6, (3, 3), 1, (1, 2), 0, (1, 2), 2),  # stride 1, 3x3: Winograd's
]


@st.composite
def transposed_cases(draw):
    ndim = draw(st.integers(1, 3))
    groups = draw(st.sampled_from([1, 1, 2]))
    c_in, f = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    ksize = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(ndim))
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    size = tuple(draw(st.integers(1, 4)) for _ in range(ndim))
    # keep the output non-empty: padding at most what the unpadded output has to spare; per axis one
    # int (both sides) or, in some draws, a (before, after) pair
    spare = [(n - 1) * s + d * (k - 1) + e for n, s, d, k, e in zip(size, stride, dilation, ksize, output_padding)]
    padding: tuple = tuple(draw(st.integers(0, max(0, room // 2))) for room in spare)
    if draw(st.booleans()):
        padding = tuple((before, draw(st.integers(0, room - before))) for before, room in zip(padding, spare))
    return (draw(st.integers(1, 2)), c_in, size, f, ksize, stride, padding, output_padding, dilation, groups)


@st.composite
def nd_cases(draw, ndims=(1, 3)):
    """Drawn 1-D and 3-D convolutions in test_nd_and_transposed's case layout:
    (N, C, size, F, kernel size, stride, padding, dilation, groups)."""
    ndim = draw(st.sampled_from(ndims))
    groups = draw(st.sampled_from([1, 1, 2]))
    c, f = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    top = 5 if ndim == 1 else 3
    ksize = tuple(draw(st.integers(1, top)) for _ in range(ndim))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(ndim))
    padding = draw(
        st.one_of(
            st.sampled_from(["valid", "same", "full"]),
            st.integers(0, 2),
            st.tuples(*[st.one_of(st.integers(0, 2), st.tuples(st.integers(0, 2), st.integers(0, 2)))] * ndim),
        )
    )
    size = tuple(d * (k - 1) + 1 + draw(st.integers(0, 6 if ndim == 1 else 2)) for k, d in zip(ksize, dilation))
    return (draw(st.integers(1, 2)), c, size, f, ksize, stride, padding, dilation, groups)


@st.composite
def wide_winograd_geometries(draw):
    """2-D 3x3 stride-1 layers with 16 to 20 channels and filters per group and 16x16 or larger
    images: where "auto" takes Winograd (see xpconv._gradients.winograd_pays)."""
    groups = draw(st.sampled_from([1, 2]))
    c, f = groups * draw(st.integers(16, 20)), groups * draw(st.integers(16, 20))
    h, w = draw(st.integers(16, 19)), draw(st.integers(16, 19))
    padding = draw(st.sampled_from(["same", 1, ((1, 1), (0, 2))]))  # outputs of 16 or more
    return (draw(st.integers(1, 2)), c, h, w, f, (3, 3), 1, padding, 1, groups)
