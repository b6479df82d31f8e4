"""Independent references: torch autograd in float64, and the padding forms spelled out by hand."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def explicit_pads(padding, input_size, kernel_size, stride, dilation) -> tuple[tuple[int, int], ...]:
    """Each padding form as ((before, after), ...), written from the issue's definitions."""
    if padding == "valid":
        return ((0, 0), (0, 0))
    if padding == "same":
        pads = []
        for n, k, s, d in zip(input_size, kernel_size, stride, dilation):
            total = (s - 1) * n + d * (k - 1) + 1 - s  # the definition
            pads.append((total // 2, total - total // 2))
        return tuple(pads)
    if isinstance(padding, int):
        return ((padding, padding), (padding, padding))
    return tuple((p, p) if isinstance(p, int) else tuple(p) for p in padding)


@dataclass
class Gradients:
    z: np.ndarray
    dx: np.ndarray
    dkernel: np.ndarray
    dbias_tied: np.ndarray
    dbias_untied: np.ndarray


def torch_reference(x, kernel, dz, *, stride, pads, dilation, groups) -> Gradients:
    """Forward pass without bias, and all gradients, from torch autograd in float64.

    Padding goes through ``F.pad`` so that asymmetric padding is covered. Zero biases of both
    kinds are leaves of the graph, so their gradients come from autograd too.
    """
    import torch
    import torch.nn.functional as F

    def leaf(a):
        return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)

    xt, kt = leaf(x), leaf(kernel)
    tied = leaf(np.zeros(kernel.shape[0]))
    (top, bottom), (left, right) = pads
    z = F.conv2d(F.pad(xt, (left, right, top, bottom)), kt, tied, stride=stride, dilation=dilation, groups=groups)
    untied = leaf(np.zeros(z.shape[1:]))
    z = z + untied
    z.backward(torch.tensor(np.asarray(dz, dtype=np.float64)))
    return Gradients(z.detach().numpy(), xt.grad.numpy(), kt.grad.numpy(), tied.grad.numpy(), untied.grad.numpy())
