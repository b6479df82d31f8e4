"""xpconv.torch: torch.nn.functional's signatures and torch.nn's layers, differentiated by xpconv's passes.

References: torch's own convolutions (values), and torch's finite differences in ``gradcheck`` and
``gradgradcheck`` (first and second derivatives, with the batched check that vmaps the backward).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from helpers import assert_close, explicit_pads, installed, nd_cases, to_numpy, transposed_cases
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.skipif(not installed("torch"), reason="torch is not installed")
if installed("torch"):
    import torch
    import torch.nn.functional as F
    from array_api_compat import array_namespace

    import xpconv.torch as xt

    TORCH = array_namespace(torch.empty(0))

METHODS = ("auto", "direct", "dilate", "fft", "native")
FUNCTIONS = {1: "conv1d", 2: "conv2d", 3: "conv3d"}


def _tensor(rng: np.random.Generator, shape, dtype) -> torch.Tensor:
    values = rng.standard_normal(shape)
    if dtype == torch.complex128:
        values = values + 1j * rng.standard_normal(shape)
    return torch.asarray(values, dtype=dtype).requires_grad_()


def _reference_conv(x, w, b, stride, pads, dilation, groups):
    """torch's own convolution of the explicitly padded input (torch pads both sides alike)."""
    flat = [side for pair in reversed(pads) for side in pair]
    return getattr(F, FUNCTIONS[w.ndim - 2])(F.pad(x, flat), w, b, stride, 0, dilation, groups)


def _close(actual, expected, what: str, tol: float = 1e-12) -> None:
    assert_close(actual.detach(), to_numpy(expected.detach()), xp=TORCH, tol=tol, what=what, floor=1.0)


def _check_derivatives(function, inputs) -> None:
    assert torch.autograd.gradcheck(function, inputs, check_batched_grad=True)
    assert torch.autograd.gradgradcheck(function, inputs, check_batched_grad=True)


settings_ = settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=24)


@settings_
@given(
    case=nd_cases(ndims=(1, 2, 3)), method=st.sampled_from(METHODS), complex_data=st.booleans(), seed=st.integers(0, 99)
)
def test_convolutions_match_torch_and_pass_gradcheck(case, method: str, complex_data: bool, seed: int) -> None:
    n, c, size, f, ksize, stride, padding, dilation, groups = case
    complex_data = complex_data and method != "native"  # torch's own convolution takes real tensors
    dtype = torch.complex128 if complex_data else torch.float64
    rng = np.random.default_rng(seed)
    x, w, b = _tensor(rng, (n, c, *size), dtype), _tensor(rng, (f, c // groups, *ksize), dtype), _tensor(rng, f, dtype)
    pads = explicit_pads(padding, size, ksize, _axes(stride, ksize), _axes(dilation, ksize))
    conv = getattr(xt, FUNCTIONS[len(size)])

    def function(x, w, b):
        return conv(x, w, b, stride, padding, dilation, groups, method=method)

    z = function(x, w, b)
    expected = _reference_conv(x, w, b, stride, pads, dilation, groups)
    _close(z, expected, f"z ({method})")
    dz = torch.asarray(rng.standard_normal(tuple(z.shape)), dtype=dtype)
    grads = torch.autograd.grad(z, (x, w, b), dz)
    expected_grads = torch.autograd.grad(expected, (x, w, b), dz)
    for name, got, want in zip(("dx", "dw", "db"), grads, expected_grads):
        _close(got, want, f"{name} ({method})")
    _check_derivatives(function, (x, w, b))


@settings_
@given(case=transposed_cases(), method=st.sampled_from(METHODS), complex_data=st.booleans(), seed=st.integers(0, 99))
def test_transposed_convolutions_match_torch_and_pass_gradcheck(case, method, complex_data, seed) -> None:
    n, c_in, size, f, ksize, stride, padding, output_padding, dilation, groups = case
    if any(isinstance(p, tuple) for p in padding):  # torch takes one padding per axis
        padding = tuple(p[0] if isinstance(p, tuple) else p for p in padding)
    complex_data = complex_data and method != "native"
    dtype = torch.complex128 if complex_data else torch.float64
    rng = np.random.default_rng(seed)
    x, w = _tensor(rng, (n, c_in, *size), dtype), _tensor(rng, (c_in, f // groups, *ksize), dtype)
    b = _tensor(rng, f, dtype)
    name = f"conv_transpose{len(size)}d"
    try:
        expected = getattr(F, name)(x, w, b, stride, padding, output_padding, groups, dilation)
    except RuntimeError:  # an output padding torch refuses for this geometry
        return

    def function(x, w, b):
        return getattr(xt, name)(x, w, b, stride, padding, output_padding, groups, dilation, method=method)

    _close(function(x, w, b), expected, f"{name} ({method})")
    _check_derivatives(function, (x, w, b))


def _axes(value, ksize) -> tuple[int, ...]:
    return (value,) * len(ksize) if isinstance(value, int) else tuple(value)


@pytest.mark.parametrize("method", METHODS)
def test_torch_func_transforms_agree_with_torch(method: str) -> None:
    """vmap over the input, the kernel, both and the bias; jacrev; a gradient of a gradient."""
    from torch.func import grad, jacrev, vmap

    rng = np.random.default_rng(0)
    x, w, b = (_tensor(rng, shape, torch.float64).detach() for shape in ((3, 2, 4, 7, 6), (3, 6, 2, 3, 2), (3, 6)))

    def ours(x, w, b):
        return xt.conv2d(x, w, b, (2, 1), "same", (1, 2), 2, method=method)

    def theirs(x, w, b):
        pads = explicit_pads("same", tuple(x.shape[-2:]), tuple(w.shape[-2:]), (2, 1), (1, 2))
        return _reference_conv(x, w, b, (2, 1), pads, (1, 2), 2)

    for dims in [(0, None, None), (None, 0, None), (0, 0, 0), (None, None, 0), (1, 0, None)]:
        args = [
            (x.movedim(0, 1) if dim == 1 else x if dim is not None else x[0])
            if i == 0
            else a
            if dim is not None
            else a[0]
            for i, (a, dim) in enumerate(zip((x, w, b), dims))
        ]
        _close(vmap(ours, dims)(*args), vmap(theirs, dims)(*args), f"vmap {dims} ({method})")
    first = (x[0, :1], w[0], b[0])
    for got, want in zip(jacrev(ours, argnums=(0, 1, 2))(*first), jacrev(theirs, argnums=(0, 1, 2))(*first)):
        _close(got, want, f"jacrev ({method})")

    def second(conv):
        return grad(lambda w: grad(lambda x: (conv(x, w, b[0]) ** 2).sum())(x[0]).pow(2).sum())(w[0])

    _close(second(ours), second(theirs), f"grad of grad ({method})", tol=1e-11)


def test_torch_compile_matches_eager() -> None:
    rng = np.random.default_rng(1)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 15, padding="same", groups=8)
    ).double()
    xt.convert(model)
    x = _tensor(rng, (2, 3, 16, 16), torch.float64)
    explained = torch._dynamo.explain(model)(x)  # xpconv's passes are custom operators: one graph
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons
    torch._dynamo.reset()
    compiled = torch.compile(model)
    eager_z, compiled_z = model(x), compiled(x)
    _close(compiled_z, eager_z, "compiled forward")
    eager_grad = torch.autograd.grad(eager_z.square().sum(), x)[0]
    compiled_grad = torch.autograd.grad(compiled_z.square().sum(), x)[0]
    _close(compiled_grad, eager_grad, "compiled backward")


def _model() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 13, padding="same", groups=8),
        torch.nn.Conv2d(8, 4, 1),
        torch.nn.ConvTranspose2d(4, 2, 4, stride=2, padding=1),
        torch.nn.Flatten(2),
        torch.nn.Conv1d(2, 2, 31, padding=15, padding_mode="circular"),
    ).double()


def test_a_converted_model_trains_as_the_original() -> None:
    """Outputs, every parameter's gradient and 20 SGD steps equal the model as written (float64)."""
    torch.manual_seed(0)
    original = _model()
    converted = copy.deepcopy(original)
    calls = []
    converted[0].register_forward_hook(lambda module, inputs, output: calls.append(tuple(output.shape)))
    weight = converted[0].weight
    assert xt.convert(converted) is converted
    assert converted[0].weight is weight and type(converted[0]) is xt.Conv2d and calls == []
    assert converted.state_dict().keys() == original.state_dict().keys()
    x = torch.asarray(np.random.default_rng(2).standard_normal((2, 3, 16, 16)))
    _close(converted(x), original(x), "converted output", tol=1e-10)
    assert calls == [(2, 8, 16, 16)]
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for m in (converted, original)]
    for step in range(20):
        for model, optimizer in zip((converted, original), optimizers):
            optimizer.zero_grad()
            model(x).square().mean().backward()
            optimizer.step()
        if step == 0:
            for ours, theirs in zip(converted.parameters(), original.parameters()):
                _close(ours.grad, theirs.grad, "a parameter's first gradient", tol=1e-10)
    for (name, ours), theirs in zip(converted.named_parameters(), original.parameters()):
        _close(ours, theirs, f"{name} after 20 steps", tol=1e-10)


def test_convert_chooses_layers_and_sets_the_method() -> None:
    net = _model()
    xt.convert(net, method="fft", include=lambda name, layer: layer.kernel_size[0] > 3)
    assert [type(layer).__module__ == "xpconv.torch" for layer in net if hasattr(layer, "kernel_size")] == [
        False, True, False, True, True,
    ]  # fmt: skip
    assert net[2].method == "fft" and "method='fft'" in repr(net[2])

    class Standardised(torch.nn.Conv2d):  # a subclass computes its own way: left alone
        pass

    assert type(xt.convert(torch.nn.Sequential(Standardised(1, 1, 3)))[0]) is Standardised
    with pytest.raises(ValueError, match="method must be one of"):
        xt.convert(net, method="fastest")
    with pytest.raises(TypeError, match=r"convert\(\) takes a torch.nn.Module"):
        xt.convert([net])


def test_layers_are_torch_nn_layers() -> None:
    """Same parameters and initialisation as torch.nn for the same seed; output_size and padding modes."""
    for ours, theirs, args in [
        (xt.Conv1d, torch.nn.Conv1d, (2, 4, 5)),
        (xt.Conv3d, torch.nn.Conv3d, (2, 4, 3)),
        (xt.ConvTranspose2d, torch.nn.ConvTranspose2d, (2, 4, 3)),
    ]:
        torch.manual_seed(3)
        layer = ours(*args, stride=2, method="direct")
        torch.manual_seed(3)
        reference = theirs(*args, stride=2)
        assert isinstance(layer, theirs)
        for a, b in zip(layer.state_dict().values(), reference.state_dict().values()):
            assert torch.equal(a, b)
    layer, reference = xt.ConvTranspose2d(2, 3, 3, stride=2), torch.nn.ConvTranspose2d(2, 3, 3, stride=2)
    reference.load_state_dict(layer.state_dict())
    x = torch.ones(1, 2, 5, 5)
    assert layer(x, output_size=[12, 12]).shape == reference(x, output_size=[12, 12]).shape == (1, 3, 12, 12)
    _close(layer(x, output_size=[12, 12]), reference(x, output_size=[12, 12]), "output_size", tol=1e-6)
    for mode in ("reflect", "replicate", "circular"):
        layer, reference = (
            xt.Conv2d(2, 3, 3, padding=2, padding_mode=mode),
            torch.nn.Conv2d(2, 3, 3, padding=2, padding_mode=mode),
        )
        reference.load_state_dict(layer.state_dict())
        inputs = torch.rand(1, 2, 6, 6)
        _close(layer(inputs), reference(inputs), mode, tol=1e-6)


def test_unbatched_inputs_and_bad_arguments() -> None:
    x, w = torch.rand(3, 8, 8), torch.rand(4, 3, 3, 3)
    _close(xt.conv2d(x, w, padding=1), F.conv2d(x, w, padding=1), "unbatched", tol=1e-6)
    with pytest.raises(TypeError, match="takes torch tensors; input is a ndarray"):
        xt.conv2d(np.ones((1, 3, 8, 8)), w)
    with pytest.raises(ValueError, match=r"input must be 4-D \(N, C, \*spatial\) or 3-D"):
        xt.conv2d(torch.rand(8, 8), w)
    with pytest.raises(ValueError, match="bias must be 1-D"):
        xt.conv2d(x, w, torch.rand(4, 1))
    with pytest.raises(ValueError, match="method must be one of"):
        xt.conv2d(x, w, method="cudnn")


def test_native_where_the_library_has_no_convolution_or_the_dtype_is_refused() -> None:
    import xpconv

    with pytest.raises(ValueError, match="has no convolution of its own"):
        xpconv.conv2d(np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3)), method="native")
    with pytest.raises(ValueError, match="takes real floating-point tensors only"):
        xpconv.conv2d(
            torch.ones(1, 1, 4, 4, dtype=torch.int64), torch.ones(1, 1, 3, 3, dtype=torch.int64), method="native"
        )
    with pytest.raises(ValueError, match="takes real floating-point tensors only"):
        xt.conv2d(
            torch.ones(1, 1, 4, 4, dtype=torch.complex64),
            torch.ones(1, 1, 3, 3, dtype=torch.complex64),
            method="native",
        )
    # "auto" on integers and complex tensors takes xpconv's own methods: exact, and torch's convention
    z = xpconv.conv2d(torch.ones(1, 1, 4, 4, dtype=torch.int64), torch.ones(1, 1, 3, 3, dtype=torch.int64))
    assert z.dtype == torch.int64 and int(z[0, 0, 0, 0]) == 9


def test_auto_rule_on_torch_keeps_torch_where_it_is_faster() -> None:
    """The measured picks (xpconv._native.native_pays, ``bench --regret``), each at least 2x faster than
    the other: 3x3 and 3-D layers stay on torch's own convolution; a 31x31 depthwise layer, a dense
    13x13 one, depthwise dK, a 401-tap filterbank on one channel (10 ms against 37 ms) and a 9x9 blur
    of a large image go to the FFT; a 15x15 depthwise layer's forward too (oneDNN's fast depthwise
    kernel ends at 13 taps wide: 10 ms against 76 ms), its dX not (2 ms against 12 ms)."""
    from xpconv import _gradients
    from xpconv._geometry import conv_geometry

    cases = {
        "resnet3x3": ((8, 64, 56, 56), (64, 64, 3, 3), 1, 1, ("native", "native", "native")),
        "conv3d": ((2, 16, 32, 32, 32), (16, 16, 3, 3, 3), 1, 1, ("native", "native", "native")),
        "filterbank401": ((4, 1, 16000), (64, 1, 401), 200, 1, ("fft", "fft", "fft")),
        "blur9x9": ((1, 1, 1024, 1024), (1, 1, 9, 9), 4, 1, ("fft", "fft", "fft")),
        "depthwise7x7": ((16, 96, 56, 56), (96, 1, 7, 7), 3, 96, ("native", "native", "fft")),
        "depthwise31x31": ((4, 64, 56, 56), (64, 1, 31, 31), 15, 64, ("fft", "fft", "fft")),
        "dense13x13": ((8, 32, 64, 64), (32, 32, 13, 13), 6, 1, ("fft", "fft", "fft")),
        "depthwise15x15s2": ((4, 64, 64, 64), (64, 1, 15, 15), 7, 64, ("fft", "native", "fft"), 2),
    }
    for name, (x_shape, k_shape, padding, groups, expected, *stride) in cases.items():
        geometry = conv_geometry(
            x_shape, k_shape, ndim=len(x_shape) - 2, padding=padding, groups=groups, stride=stride[0] if stride else 1
        )
        applicable = _gradients._applicable(
            ("winograd", "fft", "native", "dilate", "direct"), geometry, TORCH, torch.float32
        )
        picks = tuple(_gradients._rule(grad, geometry, applicable, TORCH) for grad in ("forward", "input", "weight"))
        assert picks == expected, name
    # dX into one input channel stays xpconv's: 64 filters of 31 taps at stride 2, 7 ms against 19 ms
    geometry = conv_geometry((8, 1, 16000), (64, 1, 31), ndim=1, padding=15, stride=2)
    applicable = _gradients._applicable(("fft", "native", "dilate", "direct"), geometry, TORCH, torch.float32)
    assert _gradients._rule("input", geometry, applicable, TORCH) == "direct"


def test_meta_tensors() -> None:
    """Shapes without data: the custom operators' shape functions and xpconv's passes on "meta"."""
    x = torch.empty(2, 3, 16, 16, device="meta", requires_grad=True)
    w = torch.empty(4, 3, 5, 5, device="meta", requires_grad=True)
    z = xt.conv2d(x, w, None, 2, "same")
    assert z.device.type == "meta" and z.shape == (2, 4, 16, 16)
    dx, dw = torch.autograd.grad(z.sum(), (x, w))
    assert dx.shape == x.shape and dw.shape == w.shape and dx.device.type == "meta"
