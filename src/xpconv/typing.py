"""The types of xpconv's signatures, in one place (public: annotate your own code with them).

``Array`` and ``Namespace`` are ``Any``: the array API standard has no runtime class that NumPy
arrays, torch tensors, CuPy and JAX arrays share, so the type checker cannot do better than accept
any array. The keyword options every public function takes are spelled once, as ``TypedDict``
classes unpacked into ``**options`` (PEP 692): a type checker sees each keyword, its type and a
misspelled one (``conv2d(x, k, strides=2)`` is an error), and no function repeats the list.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, TypedDict, Unpack

__all__ = [
    "Array",
    "BackwardOptions",
    "BiasMode",
    "Combine",
    "CommonOptions",
    "ConvOptions",
    "IntOrTuple",
    "Layout",
    "Method",
    "Namespace",
    "Padding",
    "TransposeBackwardOptions",
    "TransposeOptions",
    "TransposePadding",
    "Unpack",
]

Array = Any
"""An array of any array API library (NumPy, torch, CuPy, JAX, Dask, array-api-strict, ...)."""
Namespace = Any
"""An array API namespace, as ``array_api_compat.array_namespace`` returns it."""

IntOrTuple = int | Sequence[int]
"""One int for every spatial axis, or one per axis."""
TransposePadding = int | Sequence[int | Sequence[int]]
"""An int, one int per axis (both sides), or one ``(before, after)`` pair (or int) per axis."""
Padding = Literal["valid", "same", "full"] | TransposePadding
"""The forms of a convolution's padding, the words ``"valid"``, ``"same"`` and ``"full"`` too."""

Layout = Literal["channels_first", "channels_last"]
Method = Literal["auto", "direct", "dilate", "winograd", "fft", "native"]
BiasMode = Literal["tied", "untied"] | None
Combine = Literal["concat", "sum"]
"""How per-chunk results of a batch make the whole (joined along the batch, or summed over it)."""


class CommonOptions(TypedDict, total=False):
    """Keyword options shared by the convolution and the transposed convolution; see
    :func:`xpconv.conv` for their meaning. Defaults: ``stride=1, dilation=1, groups=1,
    layout="channels_first", method="auto", workspace_bytes=None``."""

    stride: IntOrTuple
    dilation: IntOrTuple
    groups: int
    layout: Layout
    method: Method
    workspace_bytes: int | None


class ConvOptions(CommonOptions, total=False):
    """Keyword options of the convolution functions: :class:`CommonOptions` and ``padding``
    (default ``"valid"``)."""

    padding: Padding


class BackwardOptions(ConvOptions, total=False):
    """:class:`ConvOptions` and ``bias``: ``"tied"`` (default), ``"untied"``, None, or the forward's
    bias array (tied or untied read from its shape)."""

    bias: BiasMode | Array


class TransposeOptions(CommonOptions, total=False):
    """Keyword options of the transposed convolution (as torch's ``conv_transpose``): ``padding``
    (default 0, no word forms) and ``output_padding`` (default 0)."""

    padding: TransposePadding
    output_padding: IntOrTuple


class TransposeBackwardOptions(TransposeOptions, total=False):
    """:class:`TransposeOptions` and ``bias`` as in :class:`BackwardOptions`."""

    bias: BiasMode | Array
