"""The benchmarks' geometries, as data: the classic and large suites of ``bench``, and the held-out
set of ``bench --regret``. A :class:`Layer` is one convolution, with its arrays drawn from a fixed seed."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

import xpconv
from xpconv.typing import Padding

__all__ = ["CLASSIC", "LARGE", "LAYERS", "REGRET_SET", "SUITES", "Layer", "layer"]


@dataclass
class Layer:
    """One benchmark layer: a convolution of ``batch`` inputs ``(channels, *size)`` with ``filters``
    square (cubic) kernels of side ``kernel``; ``padding`` an int or a word (``"same"``, ``"full"``)."""

    name: str
    batch: int
    channels: int
    size: tuple[int, ...]
    filters: int
    kernel: int
    stride: int = 1
    padding: Padding = 0
    dilation: int = 1
    groups: int = 1
    dtype: str = "float32"

    def __post_init__(self) -> None:
        self.size = tuple(self.size)  # a list after a JSON round trip

    @property
    def ndim(self) -> int:
        return len(self.size)

    @property
    def params(self) -> dict:
        return {"stride": self.stride, "padding": self.padding, "dilation": self.dilation, "groups": self.groups}

    @property
    def shape_params(self) -> dict:
        """The options that decide the output shape (the groups follow from the shapes)."""
        return {"stride": self.stride, "padding": self.padding, "dilation": self.dilation}

    @property
    def pads(self) -> tuple[tuple[int, int], ...]:
        """The padding per axis, ``(before, after)``, from the public ``resolve_padding``."""
        per_axis = (self.stride,) * self.ndim, (self.dilation,) * self.ndim
        return xpconv.resolve_padding(self.padding, self.size, (self.kernel,) * self.ndim, *per_axis)

    @property
    def shapes(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """x, kernel and z shapes."""
        x = (self.batch, self.channels, *self.size)
        kernel = (self.filters, self.channels // self.groups, *(self.kernel,) * self.ndim)
        return x, kernel, xpconv.conv_output_shape(x, kernel, **self.shape_params)

    @property
    def forward_flops(self) -> int:
        """Real floating-point operations of the direct forward pass (a complex multiply-add is 8)."""
        _, kernel, out = self.shapes
        per_multiply_add = 8 if "complex" in self.dtype else 2
        return per_multiply_add * math.prod(out) * math.prod(kernel[1:])

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng(0)

        def draw(shape: tuple[int, ...]) -> np.ndarray:
            values = rng.standard_normal(shape, dtype=np.float32)
            if "complex" in self.dtype:
                values = values + 1j * rng.standard_normal(shape, dtype=np.float32)
            return values.astype(self.dtype)

        x_shape, kernel_shape, z_shape = self.shapes
        return draw(x_shape), draw(kernel_shape), draw(z_shape)


def _classic(name: str, n: int, c: int, h: int, w: int, f: int, k: int, s: int, p: int, d: int, g: int) -> Layer:
    return Layer(name, n, c, (h, w), f, k, s, p, d, g)


# The classic suite: 3x3 layers and a few others of common CNNs, float32.
CLASSIC = [
    _classic("resnet3x3", 16, 64, 56, 56, 64, 3, 1, 1, 1, 1),
    _classic("resnet14x14", 16, 256, 14, 14, 256, 3, 1, 1, 1, 1),
    _classic("dilated3x3", 8, 128, 32, 32, 128, 3, 1, 2, 2, 1),
    _classic("depthwise", 16, 128, 28, 28, 128, 3, 1, 1, 1, 128),
    _classic("depthwise14x14", 16, 256, 14, 14, 256, 3, 1, 1, 1, 256),
    _classic("depthwise5x5", 16, 128, 28, 28, 128, 5, 1, 2, 1, 128),
    _classic("down3x3s2", 16, 64, 56, 56, 128, 3, 2, 1, 1, 1),
    _classic("pointwise", 16, 256, 28, 28, 64, 1, 1, 0, 1, 1),
    _classic("stem7x7s2", 8, 3, 112, 112, 64, 7, 2, 3, 1, 1),
    _classic("mnist5x5", 64, 1, 28, 28, 8, 5, 1, 0, 1, 1),
]
# Large kernels: RepLKNet's 31x31 and ConvNeXt's 7x7 depthwise layers, dense 13x13 and 7x7 layers, a
# bank of long 1-D filters, and the complex case of MRI (8 coils, a 15x15 filter, "full").
LARGE = [
    Layer("depthwise31x31", 4, 64, (56, 56), 64, 31, padding="same", groups=64),
    Layer("depthwise7x7", 16, 96, (56, 56), 96, 7, padding="same", groups=96),
    Layer("dense13x13", 8, 32, (64, 64), 32, 13, padding="same"),
    Layer("dense7x7", 8, 64, (56, 56), 64, 7, padding="same"),
    Layer("filters1d", 8, 16, (4096,), 16, 129, padding="same"),
    Layer("coils15x15", 1, 8, (128, 128), 8, 15, padding="full", dtype="complex64"),
]
SUITES = {"classic": CLASSIC, "large": LARGE}
LAYERS = {spec.name: spec for suite in SUITES.values() for spec in suite}


def layer(name: str) -> Layer:
    return LAYERS[name]


# The held-out set: the cases of issue 21 and the kinds of layer its users bring, float32 unless said.
REGRET_SET = [
    Layer("fir 60000x1001 same", 1, 1, (60_000,), 1, 1001, padding="same"),
    Layer("fir 20000x301 valid", 1, 1, (20_000,), 1, 301),
    Layer("fir 8000x2001 full", 1, 1, (8_000,), 1, 2001, padding="full"),
    Layer("filterbank 64x401 over 16000", 4, 1, (16_000,), 64, 401, padding="same"),
    Layer("filterbank 80x251 stride 10", 4, 1, (16_000,), 80, 251, stride=10),
    Layer("audio 64ch k9 4000", 8, 64, (4_000,), 64, 9, padding="same"),
    Layer("audio 32ch k3 16000", 4, 32, (16_000,), 32, 3, padding=1),
    Layer("blur 512x512 31x31", 1, 1, (512, 512), 1, 31, padding="same"),
    Layer("blur 1024x1024 9x9", 1, 1, (1024, 1024), 1, 9, padding="same"),
    Layer("image 2048x2048 15x15", 1, 1, (2048, 2048), 1, 15, padding="same"),
    Layer("rgb 3->16 256x256 5x5", 4, 3, (256, 256), 16, 5, padding="same"),
    Layer("cnn 32ch 5x5 56x56", 8, 32, (56, 56), 32, 5, padding=2),
    Layer("cnn 64ch 9x9 28x28", 8, 64, (28, 28), 64, 9, padding="same"),
    Layer("depthwise 128ch 11x11 28x28", 8, 128, (28, 28), 128, 11, padding="same", groups=128),
    Layer("depthwise 64ch 15x15 s2", 4, 64, (64, 64), 64, 15, stride=2, padding=7, groups=64),
    Layer("complex 256x256 9x9", 1, 1, (256, 256), 1, 9, padding="same", dtype="complex64"),
    Layer("complex coils 4ch 7x7", 2, 4, (96, 96), 4, 7, padding="same", dtype="complex64"),
    Layer("volume 64^3 7^3", 1, 1, (64, 64, 64), 1, 7, padding="same"),
    Layer("volume 8ch 24^3 3^3", 2, 8, (24, 24, 24), 8, 3, padding=1),
]
