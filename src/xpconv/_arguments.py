"""The arguments of every public function: keyword options, arrays, layouts, the size guard.

Every public function (``conv*``, ``conv_transpose*``, the layers and the building blocks) checks
its arguments here before any array code runs, so that a bad call gets the same ``TypeError`` or
``ValueError`` everywhere, naming the argument, what was expected and what came:

- :func:`resolve_options`: the ``**options`` keywords, with defaults, unknown ones refused.
- :func:`prepare`: one namespace, one device, one promoted numeric dtype for the named arrays.
- :func:`to_channels_first` / :func:`to_layout`: ``layout="channels_last"`` as views.
- :func:`bias_mode`, :func:`check_bias_shape`, :func:`check_dz`, :func:`check_memory`.

The plain-int geometry (padding forms, output shapes) is ``_geometry``'s.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast, get_args

from array_api_compat import array_namespace, is_dask_namespace, is_torch_namespace
from array_api_compat import device as device_of

from ._backends import integer_accumulator, itemsize, memory_limit
from ._geometry import ConvGeometry
from ._geometry import check_memory as check_geometry_fits
from .typing import Array, BiasMode, IntOrTuple, Layout, Method, Namespace

__all__ = [
    "LAYOUTS",
    "METHODS",
    "Options",
    "bias_mode",
    "bias_to_layout",
    "check_bias_shape",
    "check_dz",
    "check_layout",
    "check_memory",
    "namespace_of",
    "prepare",
    "resolve_options",
    "shape_argument",
    "to_channels_first",
    "to_layout",
]

LAYOUTS: tuple[Layout, ...] = get_args(Layout)
METHODS: tuple[Method, ...] = get_args(Method)
BIAS_MODES = ("tied", "untied", None)
DEFAULT_WORKSPACE_BYTES = 256 * 2**20
WORKSPACE_ENV = "XPCONV_WORKSPACE_BYTES"


@dataclass(frozen=True)
class Options:
    """The keyword options of one call, defaults filled in and checked (geometry aside: ``stride``,
    ``padding``, ``dilation``, ``groups`` and ``output_padding`` are checked with the shapes);
    ``workspace`` is the resolved ``workspace_bytes``."""

    stride: IntOrTuple = 1
    padding: Any = "valid"
    dilation: IntOrTuple = 1
    groups: int = 1
    layout: Layout = "channels_first"
    method: Method = "auto"
    workspace: int = DEFAULT_WORKSPACE_BYTES
    bias: BiasMode | Array = "tied"
    output_padding: IntOrTuple = 0

    @property
    def geometry(self) -> dict[str, Any]:
        """The options that ``_geometry.conv_geometry`` takes."""
        return {"stride": self.stride, "padding": self.padding, "dilation": self.dilation, "groups": self.groups}


def resolve_options(function: str, given: Mapping[str, Any], allowed: Collection[str], **defaults: Any) -> Options:
    """``given`` (a function's ``**options``) checked against the ``allowed`` names, with defaults.

    >>> resolve_options("conv2d", {"stride": 2}, ("stride", "padding")).stride
    2
    >>> resolve_options("conv2d", {"strides": 2}, ("stride", "padding"))
    Traceback (most recent call last):
    TypeError: conv2d() got an unexpected keyword argument 'strides'; its options are: padding, stride
    """
    unknown = [name for name in given if name not in allowed]
    if unknown:
        raise TypeError(
            f"{function}() got an unexpected keyword argument {unknown[0]!r}; its options are: "
            f"{', '.join(sorted(allowed))}"
        )
    values = {**defaults, **given}
    workspace = resolve_workspace(values.pop("workspace_bytes", None))
    options = Options(**values, workspace=workspace)
    check_layout(options.layout)
    if not (isinstance(options.method, str) and options.method in METHODS):
        raise ValueError(f"method must be one of {METHODS}, got {options.method!r}")
    return options


def check_layout(layout: object) -> None:
    if not (isinstance(layout, str) and layout in LAYOUTS):
        raise ValueError(f"layout must be 'channels_first' or 'channels_last', got {layout!r}")


def resolve_workspace(workspace_bytes: int | None) -> int:
    """The workspace limit in bytes: the keyword, else ``$XPCONV_WORKSPACE_BYTES``, else 256 MiB."""
    if workspace_bytes is None:
        text = os.environ.get(WORKSPACE_ENV)
        if not text:
            return DEFAULT_WORKSPACE_BYTES
        try:
            workspace_bytes = int(text)
        except ValueError:
            raise ValueError(f"{WORKSPACE_ENV} must be a positive integer number of bytes, got {text!r}") from None
    if isinstance(workspace_bytes, bool) or not isinstance(workspace_bytes, int) or workspace_bytes < 1:
        raise ValueError(f"workspace_bytes must be a positive int, got {workspace_bytes!r}")
    return workspace_bytes


def namespace_of(x: Array, name: str) -> Namespace:
    """The array API namespace of ``x``, or a ``TypeError`` naming the argument."""
    try:
        return array_namespace(x)
    except TypeError:
        raise TypeError(f"{name} must be an array of an array API library, got {type(x).__name__}") from None


def prepare(**arrays: Array | None) -> tuple[Namespace, list[Array | None]]:
    """Common namespace, device and promoted dtype of the named arrays; returns them cast to it.

    ``bias`` may be None; integer inputs are cast to the accumulator (see ``integer_accumulator``).
    Real and complex floats promote as the standard says (float32 with complex64: complex64); integers
    with complex arrays are a ``TypeError``.
    """
    present: dict[str, Array] = {name: a for name, a in arrays.items() if a is not None or name != "bias"}
    for name, a in present.items():
        namespace_of(a, name)
    try:
        xp = array_namespace(*present.values())
    except TypeError:
        described = ", ".join(f"{name}: {type(a).__module__}.{type(a).__name__}" for name, a in present.items())
        raise TypeError(f"all arrays must come from one array library, got {described}") from None
    # None: not known while tracing (a JAX array under vmap), and never a conflict
    devices = {name: dev for name, a in present.items() if (dev := device_of(a)) is not None}
    first_name, first_device = next(iter(devices.items()), (None, None))
    for name, dev in devices.items():
        if dev != first_device:
            raise ValueError(f"all arrays must be on one device: {first_name} is on {first_device}, {name} on {dev}")
    kinds = {name: _numeric_kind(xp, a.dtype) for name, a in present.items()}
    for name, kind in kinds.items():
        if kind is None:
            raise TypeError(f"{name} must have a floating, complex or integer dtype, got {present[name].dtype}")
    if "integral" in kinds.values() and "complex floating" in kinds.values():
        # The standard defines no promotion between the two, and NumPy's (to complex128) would
        # silently turn exact integer sums into rounded ones.
        described = ", ".join(f"{name}: {present[name].dtype}" for name in kinds if kinds[name] != "real floating")
        raise TypeError(f"integer and complex arrays do not mix ({described}); cast the integers to a complex dtype")
    try:
        dtype = xp.result_type(*present.values())
    except TypeError:  # the standard leaves integer with floating promotion to each library
        described = ", ".join(f"{name}: {a.dtype}" for name, a in present.items())
        raise TypeError(f"the arrays' dtypes have no common dtype in their library ({described})") from None
    if xp.isdtype(dtype, "integral"):
        if is_torch_namespace(xp) and getattr(first_device, "type", "cpu") != "cpu":
            dtypes = ", ".join(f"{name}: {a.dtype}" for name, a in present.items())
            raise TypeError(
                f"torch cannot multiply integer matrices on {first_device}; pass floating-point arrays (got {dtypes})"
            )
        # Sums of products overflow a small integer dtype (int8: 100 * 100 wraps): accumulate, and
        # return, in the default integer dtype, as the standard's sum does.
        dtype = integer_accumulator(xp, dtype, first_device)
    return xp, [None if a is None else xp.astype(a, dtype, copy=False) for a in arrays.values()]


def _numeric_kind(xp: Namespace, dtype: Any) -> str | None:
    """``"real floating"``, ``"complex floating"`` or ``"integral"``; None for bool, object, str, datetime."""
    for kind in ("real floating", "complex floating", "integral"):
        try:
            if xp.isdtype(dtype, kind):
                return kind
        except (TypeError, ValueError, AttributeError):  # dtypes outside the standard: object, str, datetime
            return None
    return None


def spatial_dims(kernel_shape: Sequence[int], ndim: int | None, name: str = "kernel") -> int:
    """The number of spatial axes: fixed by the caller (conv2d: 2) or ``len(kernel_shape) - 2``."""
    if ndim is not None:
        return ndim
    if len(kernel_shape) < 3:
        raise ValueError(
            f"{name} must have at least 3 axes (F, C // groups, *kernel_size), got shape {tuple(kernel_shape)}"
        )
    return len(kernel_shape) - 2


def prepare_in_layout(
    layout: Layout, ndim: int | None, **arrays: Array | None
) -> tuple[Namespace, int, dict[str, Array]]:
    """:func:`prepare` the arrays, find the number of spatial axes (from ``kernel`` unless given) and
    turn ``x`` and ``dz`` channels-first. Returns the namespace, that number and the arrays by name."""
    xp, cast_arrays = prepare(**arrays)
    named: dict[str, Array] = dict(zip(arrays, cast_arrays))
    if ndim is None:
        ndim = spatial_dims(tuple(named["kernel"].shape), ndim)
    for name in ("x", "dz"):
        if name in named:
            named[name] = to_channels_first(named[name], xp, layout, ndim, name)
    return xp, ndim, named


def shape_argument(shape: object, name: str, ndim: int | None) -> tuple[int, ...]:
    """A shape given as a sequence of ``ndim + 2`` non-negative ints (at least 3 when ``ndim`` is None)."""
    if not isinstance(shape, Sequence) or isinstance(shape, str):
        raise ValueError(f"{name} must be a sequence of ints, got {shape!r}")
    wanted = spatial_dims(shape, ndim, name) + 2 if ndim is None else ndim + 2
    if len(shape) != wanted:
        raise ValueError(f"{name} must be a sequence of {wanted} ints, got {shape!r}")
    if any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in shape):
        raise ValueError(f"{name} must hold non-negative ints, got {shape!r}")
    return tuple(shape)


def to_channels_first(a: Array, xp: Namespace, layout: Layout, ndim: int, name: str) -> Array:
    """``(N, *spatial, C)`` -> ``(N, C, *spatial)`` as a view; channels-first arrays pass through."""
    if layout == "channels_first":
        return a
    if a.ndim != ndim + 2:
        raise ValueError(
            f"{name} must be {ndim + 2}-D (N, {ndim} spatial axes, C) for layout='channels_last', "
            f"got shape {tuple(a.shape)}"
        )
    return xp.permute_dims(a, (0, ndim + 1, *range(1, ndim + 1)))


def shape_to_channels_first(shape: tuple[int, ...], layout: Layout) -> tuple[int, ...]:
    return shape if layout == "channels_first" else (shape[0], shape[-1], *shape[1:-1])


def to_layout(a: Array, xp: Namespace, layout: Layout) -> Array:
    """Back from channels-first to the caller's layout."""
    if layout == "channels_first":
        return a
    return xp.permute_dims(a, (0, *range(2, a.ndim), 1))


def bias_to_layout(dbias: Array | None, xp: Namespace, options: Options) -> Array | None:
    """An untied bias gradient ``(F, *out)`` becomes ``(*out, F)`` for channels-last data, unless the
    call passed the bias array itself: then the gradient has that array's shape."""
    if dbias is None or dbias.ndim == 1 or options.layout == "channels_first" or not isinstance(options.bias, str):
        return dbias
    return xp.permute_dims(dbias, (*range(1, dbias.ndim), 0))


def check_bias_shape(bias: Array, channels: int, spatial: tuple[int, ...]) -> None:
    allowed = ((channels,), (channels, *spatial))
    if tuple(bias.shape) not in allowed:
        raise ValueError(f"bias must have shape {allowed[0]} (tied) or {allowed[1]} (untied), got {tuple(bias.shape)}")


def bias_mode(bias: object, channels: int, spatial: tuple[int, ...]) -> BiasMode:
    """The backward's ``bias``: ``"tied"``, ``"untied"``, None, or the forward's bias array, whose
    shape (``(F,)`` or ``(F, *out)``) says which."""
    if bias is None or (isinstance(bias, str) and bias in BIAS_MODES):
        return cast(BiasMode, bias)
    if isinstance(bias, str) or not hasattr(bias, "shape"):
        raise ValueError(f"bias must be 'tied', 'untied', None or the forward's bias array, got {bias!r}")
    check_bias_shape(bias, channels, spatial)
    return "tied" if len(bias.shape) == 1 else "untied"


def check_dz(dz: Array, expected: tuple[int, ...], what: str) -> None:
    if tuple(dz.shape) != expected:
        raise ValueError(f"dz must have {what} {expected}, got {tuple(dz.shape)}")


def check_memory(
    geometry: ConvGeometry, xp: Namespace, like: Array, cause: str | None = None, method: str = "auto"
) -> None:
    """The size guard, before anything is allocated (Dask's outputs are computed chunk by chunk; a
    Dask array chunked beyond the batch goes block by block, so no task holds one whole sample). One
    sample's column matrix counts where ``method`` must build it: ``"direct"``, ``"dilate"``, or
    ``"auto"`` on integers (on floating point ``"auto"`` takes the FFT for the large kernels whose
    column matrix would not fit: a 9^3 filter on a 384^3 volume, 154 GiB of columns)."""
    if is_dask_namespace(xp) and any(len(chunks) > 1 for chunks in like.chunks[1:]):
        return
    floating = xp.isdtype(like.dtype, ("real floating", "complex floating"))
    columns = method in ("direct", "dilate") or (method == "auto" and not floating)
    limit = memory_limit(like, xp)
    outputs = not is_dask_namespace(xp)
    check_geometry_fits(geometry, itemsize(xp, like.dtype), limit, outputs=outputs, columns=columns, cause=cause)
