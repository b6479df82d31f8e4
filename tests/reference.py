"""Independent references: torch autograd in float64, and the padding forms spelled out by hand."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
    kinds are leaves of the graph, so their gradients come from autograd too.
    """
    import torch
    import torch.nn.functional as F

    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[kernel.ndim - 2]
    xt, kt = _leaf(x), _leaf(kernel)
    tied = _leaf(np.zeros(kernel.shape[0]))
    z = conv(F.pad(xt, _torch_pad(pads)), kt, tied, stride=stride, dilation=dilation, groups=groups)
    untied = _leaf(np.zeros(z.shape[1:]))
    z = z + untied
    z.backward(torch.tensor(np.asarray(dz, dtype=np.float64)))
    return Gradients(z.detach().numpy(), xt.grad.numpy(), kt.grad.numpy(), tied.grad.numpy(), untied.grad.numpy())


def torch_transpose_reference(x, kernel, dz, *, stride, padding, output_padding, dilation, groups) -> Gradients:
    """torch.nn.functional.conv_transpose{1,2,3}d and its autograd gradients, float64."""
    import torch
    import torch.nn.functional as F

    conv_transpose = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[kernel.ndim - 2]
    xt, kt = _leaf(x), _leaf(kernel)
    tied = _leaf(np.zeros(kernel.shape[1] * groups))
    z = conv_transpose(
        xt, kt, tied, stride=stride, padding=padding, output_padding=output_padding, groups=groups, dilation=dilation
    )
    untied = _leaf(np.zeros(z.shape[1:]))
    z = z + untied
    z.backward(torch.tensor(np.asarray(dz, dtype=np.float64)))
    return Gradients(z.detach().numpy(), xt.grad.numpy(), kt.grad.numpy(), tied.grad.numpy(), untied.grad.numpy())


def torch_transpose_output_shape(x_shape, kernel_shape, **params) -> tuple[int, ...]:
    import torch
    import torch.nn.functional as F

    conv_transpose = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[len(kernel_shape) - 2]
    with torch.no_grad():
        return tuple(conv_transpose(torch.zeros(x_shape), torch.zeros(kernel_shape), **params).shape)


def _leaf(a):
    import torch

    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


WINOGRAD_REFUSAL = r"method='winograd' cannot compute this convolution"


def winograd_applies(kernel_size, stride, dtype="float64") -> bool:
    """Where method='winograd' must compute (2-D, 3x3, stride 1, floating point); elsewhere it must refuse."""
    strides = (stride,) * len(kernel_size) if isinstance(stride, int) else tuple(stride)
    return tuple(kernel_size) == (3, 3) and all(s == 1 for s in strides) and "float" in str(dtype)
