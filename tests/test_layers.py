"""The six layers against their ``torch.nn`` namesakes (float64): forward, dx, grad_weight,
grad_bias, torch's initial bounds, and a few SGD steps."""

from __future__ import annotations

import math

import numpy as np
import pytest
from array_api_compat import array_namespace
from array_api_compat import device as device_of
from helpers import TEST_DEVICE, asarray, assert_close, draw, to_numpy

import xpconv

torch = pytest.importorskip("torch", reason="torch.nn is the reference")

# (xpconv layer, torch.nn layer, constructor arguments, spatial size of x)
LAYERS = [
    (
        xpconv.Conv1d,
        torch.nn.Conv1d,
        dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1, groups=2),
        (9,),
    ),
    (
        xpconv.Conv2d,
        torch.nn.Conv2d,
        dict(in_channels=3, out_channels=4, kernel_size=(3, 2), padding=(1, 0), dilation=(1, 2)),
        (7, 8),
    ),
    (
        xpconv.Conv2d,
        torch.nn.Conv2d,
        dict(in_channels=4, out_channels=4, kernel_size=3, padding=1, groups=4, bias=False),
        (6, 6),
    ),
    (
        xpconv.Conv3d,
        torch.nn.Conv3d,
        dict(in_channels=2, out_channels=3, kernel_size=(2, 3, 2), stride=(1, 2, 1), padding=1),
        (4, 5, 4),
    ),
    (
        xpconv.Conv2d,
        torch.nn.Conv2d,
        dict(in_channels=2, out_channels=3, kernel_size=(3, 4), padding="same", dilation=(2, 1)),
        (7, 6),
    ),
    (
        xpconv.ConvTranspose1d,
        torch.nn.ConvTranspose1d,
        dict(in_channels=4, out_channels=2, kernel_size=3, stride=2, padding=1, output_padding=1),
        (5,),
    ),
    (
        xpconv.ConvTranspose2d,
        torch.nn.ConvTranspose2d,
        dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1, output_padding=1, groups=2, dilation=1),
        (4, 3),
    ),
    (
        xpconv.ConvTranspose2d,
        torch.nn.ConvTranspose2d,
        dict(in_channels=2, out_channels=2, kernel_size=2, stride=(2, 1), dilation=2, output_padding=(1, 0)),
        (3, 3),
    ),
    (
        xpconv.ConvTranspose3d,
        torch.nn.ConvTranspose3d,
        dict(in_channels=2, out_channels=3, kernel_size=2, stride=2, padding=(0, 1, 0)),
        (2, 3, 2),
    ),
]
IDS = [f"{ours.__name__}-{i}" for i, (ours, *_) in enumerate(LAYERS)]
TOL = 1e-10


def pair(ours_type, theirs_type, arguments, xp, seed=0, dtype="float64"):
    """An xpconv layer in float64 (or complex128) and the torch.nn layer holding the same weights."""
    ours = ours_type(**arguments, xp=xp, device=TEST_DEVICE["device"], dtype=getattr(xp, dtype), seed=seed)
    theirs = theirs_type(**arguments, dtype=getattr(torch, dtype))
    with torch.no_grad():
        theirs.weight.copy_(torch.from_numpy(to_numpy(ours.weight)))
        if ours.bias is not None:
            theirs.bias.copy_(torch.from_numpy(to_numpy(ours.bias)))
    return ours, theirs


@pytest.mark.parametrize("dtype", ["float64", "complex128"])
@pytest.mark.parametrize(("ours_type", "theirs_type", "arguments", "size"), LAYERS, ids=IDS)
def test_forward_and_gradients_match_torch_nn(eager_xp, ours_type, theirs_type, arguments, size, dtype) -> None:
    ours, theirs = pair(ours_type, theirs_type, arguments, eager_xp, dtype=dtype)
    rng = np.random.default_rng(0)
    x = draw(rng, (2, arguments["in_channels"], *size), dtype)
    xt = torch.tensor(x, requires_grad=True)
    zt = theirs(xt)
    dz = draw(rng, tuple(zt.shape), dtype)
    zt.backward(torch.from_numpy(dz))

    z = ours.forward(asarray(x, eager_xp))
    assert_close(z, zt.detach().numpy(), xp=eager_xp, tol=TOL, what="forward")
    dx = ours.backward(asarray(dz, eager_xp))
    assert_close(dx, xt.grad.numpy(), xp=eager_xp, tol=TOL, what="dx")
    assert_close(ours.grad_weight, theirs.weight.grad.numpy(), xp=eager_xp, tol=TOL, what="grad_weight")
    if theirs.bias is None:
        assert ours.bias is None and ours.grad_bias is None
    else:
        assert_close(ours.grad_bias, theirs.bias.grad.numpy(), xp=eager_xp, tol=TOL, what="grad_bias")


@pytest.mark.parametrize(("ours_type", "theirs_type", "arguments", "size"), LAYERS, ids=IDS)
def test_sgd_steps_track_torch_nn(ours_type, theirs_type, arguments, size) -> None:
    """Five SGD steps on the loss sum(z * target), xpconv's gradients against torch.optim.SGD."""
    ours, theirs = pair(ours_type, theirs_type, arguments, np, seed=1)
    optimizer = torch.optim.SGD(theirs.parameters(), lr=0.05)
    rng = np.random.default_rng(1)
    for _ in range(5):
        x = rng.standard_normal((3, arguments["in_channels"], *size))
        zt = theirs(torch.from_numpy(x))
        target = rng.standard_normal(tuple(zt.shape))
        optimizer.zero_grad()
        (zt * torch.from_numpy(target)).sum().backward()
        optimizer.step()
        ours.forward(x)
        ours.backward(target)
        ours.weight = ours.weight - 0.05 * ours.grad_weight
        if ours.bias is not None:
            ours.bias = ours.bias - 0.05 * ours.grad_bias
    np_xp = array_namespace(ours.weight)
    assert_close(ours.weight, theirs.weight.detach().numpy(), xp=np_xp, tol=TOL, what="weight after 5 steps")
    if ours.bias is not None:
        assert_close(ours.bias, theirs.bias.detach().numpy(), xp=np_xp, tol=TOL, what="bias after 5 steps")


@pytest.mark.parametrize(("ours_type", "theirs_type", "arguments", "size"), LAYERS, ids=IDS)
def test_initial_bounds_are_torch_nns(ours_type, theirs_type, arguments, size) -> None:
    """Weights and bias uniform in +-1/sqrt(fan_in), fan_in as torch computes it from the weight."""
    ours = ours_type(**arguments, seed=0)
    theirs = theirs_type(**arguments)
    assert tuple(ours.weight.shape) == tuple(theirs.weight.shape) and ours.weight.dtype == np.float32
    fan_in = theirs.weight.shape[1] * math.prod(theirs.weight.shape[2:])
    bound = 1 / math.sqrt(fan_in)
    assert float(np.max(np.abs(ours.weight))) <= bound
    assert float(theirs.weight.detach().abs().max()) <= bound  # the same bound, from torch's own initialisation
    if ours.bias is not None:
        assert float(np.max(np.abs(ours.bias))) <= bound and ours.bias.shape == tuple(theirs.bias.shape)


def test_per_side_padding_matches_torch_after_f_pad(eager_xp) -> None:
    """``padding=((top, bottom), (left, right))``, which torch.nn has not: torch's layer on the input
    padded by ``F.pad``, with the same weights."""
    ours = xpconv.Conv2d(3, 4, 3, padding=((2, 0), (1, 3)), stride=2, xp=eager_xp, device=TEST_DEVICE["device"],
                         dtype=eager_xp.float64, seed=4)  # fmt: skip
    theirs = torch.nn.Conv2d(3, 4, 3, stride=2, dtype=torch.float64)
    with torch.no_grad():
        theirs.weight.copy_(torch.from_numpy(to_numpy(ours.weight)))
        theirs.bias.copy_(torch.from_numpy(to_numpy(ours.bias)))
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 8, 7))
    xt = torch.tensor(x, requires_grad=True)
    zt = theirs(torch.nn.functional.pad(xt, (1, 3, 2, 0)))
    dz = rng.standard_normal(tuple(zt.shape))
    zt.backward(torch.from_numpy(dz))
    assert_close(ours(asarray(x, eager_xp)), zt.detach().numpy(), xp=eager_xp, tol=TOL, what="forward")
    assert_close(ours.backward(asarray(dz, eager_xp)), xt.grad.numpy(), xp=eager_xp, tol=TOL, what="dx")
    assert_close(ours.grad_weight, theirs.weight.grad.numpy(), xp=eager_xp, tol=TOL, what="grad_weight")


def test_parameters_call_and_device(eager_xp) -> None:
    """``__call__`` is ``forward``; ``parameters()`` pairs each parameter with its gradient (None before
    a backward pass, then the arrays ``backward`` stored); ``device=`` places the parameters."""
    layer = xpconv.ConvTranspose2d(4, 2, 3, stride=2, xp=eager_xp, device=TEST_DEVICE["device"], seed=1)
    x = asarray(np.ones((1, 4, 3, 3), dtype=np.float32), eager_xp)
    assert [g for _, g in layer.parameters()] == [None, None]
    z = layer(x)
    assert_close(z, to_numpy(layer.forward(x)), xp=eager_xp, exact=True, what="__call__")
    layer.backward(asarray(np.ones(tuple(z.shape), dtype=np.float32), eager_xp))
    (weight, grad_weight), (bias, grad_bias) = layer.parameters()
    assert weight is layer.weight and grad_weight is layer.grad_weight and bias is layer.bias
    assert grad_bias is layer.grad_bias and tuple(grad_weight.shape) == (4, 2, 3, 3)
    expected_device = device_of(asarray(np.zeros(()), eager_xp))
    assert device_of(weight) == device_of(bias) == expected_device
    without_bias = xpconv.Conv1d(2, 2, 3, bias=False, xp=eager_xp, device=TEST_DEVICE["device"])
    assert len(without_bias.parameters()) == 1


# (layer, constructor arguments, torch's fan_in: weight.shape[1] * prod(kernel_size))
FAN_IN = [
    (xpconv.Conv2d, dict(in_channels=8, out_channels=2, kernel_size=3), 8 * 9),
    (xpconv.Conv1d, dict(in_channels=6, out_channels=4, kernel_size=5, groups=2), 3 * 5),
    (xpconv.ConvTranspose2d, dict(in_channels=8, out_channels=2, kernel_size=3), 2 * 9),
    (xpconv.ConvTranspose3d, dict(in_channels=2, out_channels=6, kernel_size=2, groups=2), 3 * 8),
]


@pytest.mark.parametrize(("layer_type", "arguments", "fan_in"), FAN_IN)
def test_initial_weights_fill_torchs_bounds_from_both_sides(layer_type, arguments, fan_in) -> None:
    """Uniform in +-1/sqrt(fan_in): never beyond the bound, and reaching close to it, with the mean
    |w| of a uniform draw, over 30 seeds. A bound from another fan-in (in_channels instead of
    out_channels for a transposed layer, say) misses one side by at least 1.4x."""
    bound = 1 / math.sqrt(fan_in)
    assert bound == 1 / math.sqrt(layer_type(**arguments).weight.shape[1] * arguments["kernel_size"] ** layer_type.ndim)
    weights = np.concatenate([np.ravel(layer_type(**arguments, seed=seed).weight) for seed in range(30)])
    biases = np.concatenate([layer_type(**arguments, seed=seed).bias for seed in range(30)])
    for values, what in ((weights, "weight"), (biases, "bias")):
        largest = float(np.max(np.abs(values)))
        assert 0.95 * bound <= largest <= bound, (what, largest, bound)
        assert 0.45 * bound <= float(np.mean(np.abs(values))) <= 0.55 * bound, what
    theirs = getattr(torch.nn, layer_type.__name__)(**arguments)
    assert float(theirs.weight.detach().abs().max()) <= bound  # torch's own draw, the same bound


def test_complex_layers_draw_both_parts_within_torch_nns_bounds() -> None:
    layer = xpconv.Conv2d(4, 6, 3, dtype=np.complex64, seed=0)
    bound = 1 / math.sqrt(4 * 9)
    assert layer.weight.dtype == np.complex64 and layer.bias is not None
    for values in (layer.weight, layer.bias):
        for part in (values.real, values.imag):
            assert 0 < float(np.max(np.abs(part))) <= bound  # both parts drawn, not one left at 0
    assert float(np.max(np.abs(layer.weight.imag))) > 0.9 * bound  # 216 draws spread over the bound
    theirs = torch.nn.Conv2d(4, 6, 3, dtype=torch.complex64)
    assert float(theirs.weight.detach().imag.abs().max()) <= bound  # torch draws the parts alike


def test_layers_refuse_bad_arguments() -> None:
    with pytest.raises(ValueError, match="in_channels must be a positive int, got 0"):
        xpconv.Conv2d(0, 4, 3)
    with pytest.raises(ValueError, match="groups=3 must divide in_channels=4 and out_channels=6"):
        xpconv.ConvTranspose1d(4, 6, 3, groups=3)
    with pytest.raises(ValueError, match="kernel_size must be an int or a sequence of 3 ints"):
        xpconv.Conv3d(1, 1, (3, 3))
    with pytest.raises(RuntimeError, match=r"ConvTranspose2d\.backward needs a forward call first"):
        xpconv.ConvTranspose2d(1, 1, 2).backward(np.ones((1, 1, 2, 2)))
