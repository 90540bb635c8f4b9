"""Every layer and core honours ``dtype=``: float64 end to end (complex128 kernels and states),
``.double()`` / ``.to(torch.float64)`` of a built layer, float64 gradcheck through each layer's
parameters and input; half/bf16 input without autocast is computed in float32 and cast back;
any other dtype mismatch is a clear error."""

import copy
import functools

import pytest
import torch
from helpers import GRADCHECK, RTOL, rel_err
from torch.func import functional_call

import ssm
from ssm.layers.companion import ClosedLoopCompanionSSM

H = 2
LAYERS = {
    "S4": lambda **k: ssm.S4(H, 4, **k),
    "S4-rank2-bi": lambda **k: ssm.S4(H, 4, rank=2, bidirectional=True, **k),
    "S4D": lambda **k: ssm.S4D(H, 4, **k),
    "S4D-bilinear-bi": lambda **k: ssm.S4D(H, 4, disc="bilinear", bidirectional=True, **k),
    "S4PTD": lambda **k: ssm.S4PTD(H, 4, **k),
    "S5": lambda **k: ssm.S5(H, 4, **k),
    "S5PTD": lambda **k: ssm.S5PTD(H, 4, **k),
    "CompanionSSM": lambda **k: ssm.CompanionSSM(H, 4, **k),
    "ShiftSSM": lambda **k: ssm.ShiftSSM(H, 4, **k),
}


@functools.lru_cache(maxsize=None)
def _built(name, dtype):  # construction is the slow part for the PTD inits: once per (layer, dtype)
    torch.manual_seed(0)
    return LAYERS[name]() if dtype is None else LAYERS[name](dtype=dtype)


def build(name, how):
    """A fresh float64 layer built with ``dtype=``, or a float32 one turned float64 by ``.double()``
    or ``.to(torch.float64)``; ``how="float32"``: the float32 layer."""
    if how == "dtype":
        return copy.deepcopy(_built(name, torch.float64))
    layer = copy.deepcopy(_built(name, None))
    if how == "float32":
        return layer
    return layer.double() if how == "double" else layer.to(torch.float64)


@pytest.mark.parametrize("how", ["dtype", "double", "to"])
@pytest.mark.parametrize("name", list(LAYERS))
def test_float64_end_to_end(name, how):
    layer = build(name, how).eval()
    assert {p.dtype for p in layer.parameters()} == {torch.float64}
    core = layer.core
    assert core.real_dtype == torch.float64
    # the convolution kernel, or for S5 (a scan, no kernel) the discrete state matrix
    assert (core.kernel(7) if hasattr(core, "kernel") else core.discrete()[0]).dtype in (torch.float64, torch.complex128)
    x = torch.randn(3, 7, H, dtype=torch.float64)
    y, _ = layer(x)
    assert y.dtype == torch.float64
    reference = build(name, "float32").eval()
    reference.load_state_dict(layer.state_dict())  # the same values in float32
    assert rel_err(reference(x.float())[0], y) <= RTOL[torch.float32]  # the float32 copy against float64
    if core.causal:
        state = layer.default_state(3)
        assert state.dtype in (torch.float64, torch.complex128)
        y_state, next_state = layer(x, state)
        assert y_state.dtype == torch.float64 and next_state.dtype == state.dtype
        layer.setup_step()
        y_t, s_t = layer.step(x[:, 0], state)
        assert y_t.dtype == torch.float64 and s_t.dtype == state.dtype
        assert rel_err(y_t, y[:, 0]) <= RTOL[torch.float64]  # stepping == forward, at float64 precision


@pytest.mark.parametrize("name", list(LAYERS))
def test_float64_gradcheck_through_parameters_and_input(name):
    layer = build(name, "dtype").eval()
    x = torch.randn(1, 6, H, dtype=torch.float64, requires_grad=True)
    layer(x)  # S4 sets its kernel length once (an in-place update of C, outside autograd)
    names = [n for n, _ in layer.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for _, p in layer.named_parameters()]

    def f(x, *ps):
        return functional_call(layer, dict(zip(names, ps, strict=True)), (x,))[0]

    assert torch.autograd.gradcheck(f, (x, *params), **GRADCHECK)


def test_closed_loop_companion_float64():
    torch.manual_seed(0)
    for layer in (ClosedLoopCompanionSSM(H, 4, dtype=torch.float64), ClosedLoopCompanionSSM(H, 4).double()):
        with torch.no_grad():
            layer.k.normal_()
        x = torch.randn(2, 5, H, dtype=torch.float64, requires_grad=True)
        out = layer(x, 3, open_loop=True)
        assert all(t.dtype == torch.float64 for t in out)
        params = [p.detach().clone().requires_grad_(True) for p in layer.parameters()]
        names = [n for n, _ in layer.named_parameters()]
        assert torch.autograd.gradcheck(
            lambda x, *ps: functional_call(layer, dict(zip(names, ps, strict=True)), (x, 3)).forecast, (x, *params),
            **GRADCHECK)


@pytest.mark.parametrize("name", list(LAYERS))
def test_half_input_without_autocast_is_computed_in_float32_and_cast_back(name):
    layer = build(name, "float32").eval()
    x = torch.randn(2, 9, H).to(torch.bfloat16)
    with torch.no_grad():
        y, _ = layer(x)
        expected, _ = layer(x.float())
    assert y.dtype == torch.bfloat16
    assert torch.equal(y, expected.to(torch.bfloat16))


@pytest.mark.parametrize("name", ["S4", "S5", "CompanionSSM"])
def test_dtype_mismatch_is_a_clear_error(name):
    layer = build(name, "float32")
    with pytest.raises(TypeError, match=r"input is torch.float64 but the layer's parameters are torch.float32; build"):
        layer(torch.randn(1, 4, H, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"`dtype` must be a floating-point torch dtype, got torch.int64"):
        LAYERS[name](dtype=torch.int64)
