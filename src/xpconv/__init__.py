"""xpconv: convolution forward pass and its input, kernel and bias gradients, without autograd.

The method is that of the tutorial "3.2.3 Backward Propagation Convolution layer (Vectorized)"
(``method="dilate"``), with faster ones beside it (``"direct"``, ``"winograd"``, ``"fft"`` for large
kernels, and ``"auto"``, which picks one per pass). Real, complex and integer arrays.

Written once against the Python array API standard: the same calls work on NumPy arrays, torch
tensors (CPU or CUDA), CuPy arrays and any other conforming library, and return arrays of the
inputs' library on the inputs' device.

>>> import numpy as np, xpconv
>>> x = np.ones((2, 3, 5, 5)); kernel = np.ones((4, 3, 3, 3))
>>> z = xpconv.conv2d(x, kernel, padding="same")
>>> dx, dkernel, dbias = xpconv.conv2d_backward(np.ones_like(z), x, kernel, padding="same")
>>> z.shape, dx.shape, dkernel.shape, dbias.shape
((2, 4, 5, 5), (2, 3, 5, 5), (4, 3, 3, 3), (4,))
"""

from ._api import (
    conv,
    conv1d,
    conv1d_backward,
    conv1d_input_grad,
    conv1d_weight_grad,
    conv2d,
    conv2d_backward,
    conv2d_input_grad,
    conv2d_weight_grad,
    conv3d,
    conv3d_backward,
    conv3d_input_grad,
    conv3d_weight_grad,
    conv_backward,
    conv_input_grad,
    conv_output_shape,
    conv_weight_grad,
)
from ._arguments import LAYOUTS, METHODS
from ._autotune import autotune, tuned_methods
from ._blocks import dilate, pad, rotate180, windows
from ._costs import CostModel, calibrate, cost_model
from ._geometry import resolve_padding
from ._layers import (
    Conv1d,
    Conv2d,
    Conv3d,
    ConvTranspose1d,
    ConvTranspose2d,
    ConvTranspose3d,
)
from ._transpose import (
    conv_transpose,
    conv_transpose1d,
    conv_transpose1d_backward,
    conv_transpose2d,
    conv_transpose2d_backward,
    conv_transpose3d,
    conv_transpose3d_backward,
    conv_transpose_backward,
)

__version__ = "0.2.0"

__all__ = [
    "LAYOUTS",
    "METHODS",
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
    "CostModel",
    "autotune",
    "calibrate",
    "conv",
    "conv1d",
    "conv1d_backward",
    "conv1d_input_grad",
    "conv1d_weight_grad",
    "conv2d",
    "conv2d_backward",
    "conv2d_input_grad",
    "conv2d_weight_grad",
    "conv3d",
    "conv3d_backward",
    "conv3d_input_grad",
    "conv3d_weight_grad",
    "conv_backward",
    "conv_input_grad",
    "conv_output_shape",
    "conv_transpose",
    "conv_transpose1d",
    "conv_transpose1d_backward",
    "conv_transpose2d",
    "conv_transpose2d_backward",
    "conv_transpose3d",
    "conv_transpose3d_backward",
    "conv_transpose_backward",
    "conv_weight_grad",
    "cost_model",
    "dilate",
    "pad",
    "resolve_padding",
    "rotate180",
    "tuned_methods",
    "windows",
]
