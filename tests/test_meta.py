"""Device safety without a GPU: every public function, method and layer on torch's "meta" tensors.

A "meta" tensor has a shape, a dtype and a device, and no values. Whatever reads values on the
host (``float()``, ``.item()``, a NumPy round trip: a device sync on CUDA) raises. torch lets a CPU
tensor meet a meta one in some operations (a matrix product) where CUDA would refuse, so the calls
run under :class:`OnlyMeta`, which fails any computation that mixes devices: a constant, a buffer,
a Winograd or DFT matrix made without ``device=``. The results must be meta tensors of
the shapes and dtypes NumPy gives.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import METHODS, winograd_applies

import xpconv

torch = pytest.importorskip("torch", reason="the meta device is torch's")
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils._pytree import tree_flatten  # noqa: E402

DTYPES = {"float32": (torch.float32, np.float32), "complex64": (torch.complex64, np.complex64)}


# Operations that move data between devices: a constant built on the host and handed over (as
# the Winograd and DFT matrices are) is a transfer, not a computation on the wrong device.
TRANSFERS = {"aten::_to_copy", "aten::copy_", "aten::lift_fresh", "aten::_copy_from", "aten::_copy_from_and_resize"}


class OnlyMeta(TorchDispatchMode):
    """No torch computation in its scope may mix a meta tensor with a tensor of another device, or
    turn meta tensors into tensors elsewhere (transfers aside)."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        devices = {t.device.type for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        computes = func._schema.name not in TRANSFERS
        if computes and "meta" in devices and len(devices) > 1:
            raise AssertionError(f"{func} mixes tensors on {sorted(devices)}")
        result = func(*args, **kwargs)
        for value in tree_flatten(result)[0]:
            if computes and "meta" in devices and isinstance(value, torch.Tensor) and value.device.type != "meta":
                raise AssertionError(f"{func} made a tensor on {value.device} from meta tensors")
        return result


# (x shape, kernel shape, options): 1-D, 2-D (Winograd's 3x3 at stride 1 too), 3-D
CONVOLUTIONS = [
    ((2, 4, 17), (6, 2, 5), dict(stride=2, padding="same", groups=2)),
    ((2, 3, 9, 8), (4, 3, 3, 3), dict(padding=1, dilation=(1, 2))),
    ((2, 4, 9, 10), (4, 1, 4, 3), dict(stride=(2, 1), padding="full", groups=4)),
    ((1, 2, 5, 4, 6), (3, 2, 2, 3, 2), dict(stride=(1, 2, 1), padding=((1, 0), 1, (0, 2)))),
]
TRANSPOSED = [
    ((2, 4, 5), (4, 3, 3), dict(stride=2, padding=1, output_padding=1, groups=2)),
    ((1, 2, 4, 3), (2, 2, 3, 3), dict(padding=1)),
    ((1, 2, 2, 3, 2), (2, 1, 2, 2, 3), dict(stride=2, dilation=(1, 1, 2))),
]


def meta(shape: tuple[int, ...], dtype: str) -> torch.Tensor:
    return torch.empty(shape, dtype=DTYPES[dtype][0], device="meta")


def host(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    return np.ones(shape, dtype=DTYPES[dtype][1])


def assert_meta(result, expected, what: str) -> None:
    assert isinstance(result, torch.Tensor), f"{what}: {type(result)}"
    assert result.device.type == "meta", f"{what}: on {result.device}"
    assert tuple(result.shape) == tuple(expected.shape), f"{what}: shape {tuple(result.shape)}, not {expected.shape}"
    assert str(result.dtype).removeprefix("torch.") == str(expected.dtype), f"{what}: dtype {result.dtype}"


def methods_for(kernel_shape, options) -> list[str]:
    stride = options.get("stride", 1)
    kernel = kernel_shape[2:]
    return [m for m in METHODS if m != "winograd" or (len(kernel) == 2 and winograd_applies(kernel, stride))]


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize(("x_shape", "kernel_shape", "options"), CONVOLUTIONS)
def test_convolutions_stay_on_the_meta_device(x_shape, kernel_shape, options, layout, dtype) -> None:
    ndim = len(kernel_shape) - 2
    if layout == "channels_last":
        x_shape = (x_shape[0], *x_shape[2:], x_shape[1])
    fixed = {1: "1d", 2: "2d", 3: "3d"}[ndim]
    out = xpconv.conv_output_shape(
        x_shape, kernel_shape, layout=layout, **{k: v for k, v in options.items() if k != "groups"}
    )
    filters = kernel_shape[0]
    with OnlyMeta():
        check_convolutions(x_shape, kernel_shape, options, layout, dtype, fixed, out, filters)


def check_convolutions(x_shape, kernel_shape, options, layout, dtype, fixed, out, filters) -> None:
    for method in methods_for(kernel_shape, options):
        opts = dict(options, layout=layout, method=method)
        x, kernel, dz = meta(x_shape, dtype), meta(kernel_shape, dtype), meta(out, dtype)
        hx, hkernel, hdz = host(x_shape, dtype), host(kernel_shape, dtype), host(out, dtype)
        for name in ("conv", f"conv{fixed}"):
            forward = getattr(xpconv, name)
            assert_meta(forward(x, kernel, meta((filters,), dtype), **opts), forward(hx, hkernel, **opts), name)
        for name in ("conv_backward", f"conv{fixed}_backward"):
            backward = getattr(xpconv, name)
            for bias in ("tied", "untied", None, meta((filters,), dtype)):
                got = backward(dz, x, kernel, bias=bias, **opts)
                want = backward(hdz, hx, hkernel, bias=bias if not isinstance(bias, torch.Tensor) else "tied", **opts)
                for g, w, what in zip(got, want, ("dx", "dkernel", "dbias")):
                    if w is None:
                        assert g is None
                    else:
                        assert_meta(g, w, f"{name} {method} {what} (bias {bias!r})")
        for name in ("conv_input_grad", f"conv{fixed}_input_grad"):
            grad = getattr(xpconv, name)
            assert_meta(grad(dz, kernel, x_shape, **opts), grad(hdz, hkernel, x_shape, **opts), f"{name} {method}")
        for name in ("conv_weight_grad", f"conv{fixed}_weight_grad"):
            grad = getattr(xpconv, name)
            assert_meta(grad(dz, x, kernel_shape, **opts), grad(hdz, hx, kernel_shape, **opts), f"{name} {method}")


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize(("x_shape", "kernel_shape", "options"), TRANSPOSED)
def test_transposed_convolutions_stay_on_the_meta_device(x_shape, kernel_shape, options, dtype) -> None:
    fixed = {1: "1d", 2: "2d", 3: "3d"}[len(kernel_shape) - 2]
    hx, hkernel = host(x_shape, dtype), host(kernel_shape, dtype)
    out = xpconv.conv_transpose(hx, hkernel, **options).shape
    with OnlyMeta():
        check_transposed(x_shape, kernel_shape, options, dtype, fixed, hx, hkernel, out)


def check_transposed(x_shape, kernel_shape, options, dtype, fixed, hx, hkernel, out) -> None:
    for method in methods_for(kernel_shape, options):
        opts = dict(options, method=method)
        x, kernel, dz = meta(x_shape, dtype), meta(kernel_shape, dtype), meta(out, dtype)
        for name in ("conv_transpose", f"conv_transpose{fixed}"):
            forward = getattr(xpconv, name)
            assert_meta(forward(x, kernel, **opts), forward(hx, hkernel, **opts), f"{name} {method}")
        for name in ("conv_transpose_backward", f"conv_transpose{fixed}_backward"):
            got = getattr(xpconv, name)(dz, x, kernel, **opts)
            want = getattr(xpconv, name)(host(out, dtype), hx, hkernel, **opts)
            for g, w, what in zip(got, want, ("dx", "dkernel", "dbias")):
                assert_meta(g, w, f"{name} {method} {what}")


LAYERS = [
    (xpconv.Conv1d, dict(in_channels=4, out_channels=6, kernel_size=9, padding="full", groups=2), (11,)),
    (xpconv.Conv2d, dict(in_channels=3, out_channels=4, kernel_size=3, padding=1), (8, 8)),
    (xpconv.Conv3d, dict(in_channels=2, out_channels=2, kernel_size=(1, 3, 3), stride=(1, 2, 2)), (3, 7, 7)),
    (xpconv.ConvTranspose1d, dict(in_channels=4, out_channels=2, kernel_size=4, stride=2), (5,)),
    (xpconv.ConvTranspose2d, dict(in_channels=2, out_channels=3, kernel_size=3, stride=2, output_padding=1), (4, 4)),
    (xpconv.ConvTranspose3d, dict(in_channels=2, out_channels=1, kernel_size=2, stride=2), (2, 2, 2)),
]


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize(("layer_type", "arguments", "size"), LAYERS, ids=[t.__name__ for t, _, _ in LAYERS])
def test_layers_stay_on_the_meta_device(layer_type, arguments, size, dtype) -> None:
    from array_api_compat import array_namespace

    xp = array_namespace(torch.empty(0))
    ours = layer_type(**arguments, xp=xp, device="meta", dtype=DTYPES[dtype][0], seed=0)
    theirs = layer_type(**arguments, dtype=DTYPES[dtype][1], seed=0)
    assert ours.weight.device.type == "meta" and ours.bias is not None and ours.bias.device.type == "meta"
    x_shape = (2, arguments["in_channels"], *size)
    want = theirs.forward(host(x_shape, dtype))
    with OnlyMeta():  # the parameters were drawn with NumPy and moved once, as the layers document
        z = ours.forward(meta(x_shape, dtype))
        dx = ours.backward(meta(tuple(z.shape), dtype))
    assert_meta(z, want, "forward")
    assert_meta(dx, theirs.backward(np.ones_like(want)), "backward")
    assert_meta(ours.grad_weight, theirs.grad_weight, "grad_weight")
    assert_meta(ours.grad_bias, theirs.grad_bias, "grad_bias")


def test_building_blocks_stay_on_the_meta_device() -> None:
    x, hx = meta((2, 3, 5, 4), "float32"), host((2, 3, 5, 4), "float32")
    with OnlyMeta():
        assert_meta(xpconv.dilate(x, (2, 3)), xpconv.dilate(hx, (2, 3)), "dilate")
        assert_meta(xpconv.pad(x, ((1, 0), (2, 1))), xpconv.pad(hx, ((1, 0), (2, 1))), "pad")
        assert_meta(xpconv.rotate180(x), xpconv.rotate180(hx), "rotate180")
        assert_meta(xpconv.windows(x, 2, stride=(2, 1)), xpconv.windows(hx, 2, stride=(2, 1)), "windows")


def test_a_tensor_made_off_the_device_fails_here() -> None:
    """The negative control: a CPU matrix meeting a meta tensor raises nothing in torch (where CUDA
    would), and fails under OnlyMeta."""
    torch.ones(3, 3) @ meta((3, 3), "float32")
    with OnlyMeta(), pytest.raises(AssertionError, match=r"mixes tensors on \['cpu', 'meta'\]"):
        torch.ones(3, 3) @ meta((3, 3), "float32")


def test_autotuning_leaves_meta_tensors_to_the_rule() -> None:
    """Meta tensors cannot be timed (nothing runs): "auto" follows its rule and remembers nothing."""
    before = xpconv.autotune()
    xpconv.autotune(True)
    try:
        tuned = len(xpconv.tuned_methods())
        x, kernel = meta((2, 8, 12, 12), "float32"), meta((8, 8, 3, 3), "float32")
        with OnlyMeta():
            z = xpconv.conv2d(x, kernel, padding=1)
            dx, dkernel, _ = xpconv.conv2d_backward(meta(tuple(z.shape), "float32"), x, kernel, padding=1)
        assert z.device.type == dx.device.type == dkernel.device.type == "meta"
        assert len(xpconv.tuned_methods()) == tuned
    finally:
        xpconv.autotune(before)
