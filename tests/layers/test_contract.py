"""Every layer honours the contract: conv == step == chunked state passing, causality,
gradients to every parameter, clear errors on bad input."""

import re

import pytest
import torch
from helpers import ROUNDOFF, RTOL, SIGNAL, rel_err

import ssm

H = 6

# name -> factory(causal: bool) ; every causal layer is tested for step/chunk equivalence
LAYERS = {
    "S4D-legs-zoh": lambda bi=False: ssm.S4D(H, 16, init="legs", bidirectional=bi),
    "S4D-inv-bilinear": lambda bi=False: ssm.S4D(H, 16, init="inv", disc="bilinear", bidirectional=bi),
    "S4D-lin-softplus": lambda bi=False: ssm.S4D(H, 10, init="lin", real_transform="softplus", bidirectional=bi),
    "S4D-real-nssm2": lambda bi=False: ssm.S4D(H, 8, init="real", n_ssm=2, bidirectional=bi),
    "S4PTD": lambda bi=False: ssm.S4PTD(H, 16, bidirectional=bi),
    "S4": lambda bi=False: ssm.S4(H, 16, bidirectional=bi),
    "S4-rank2-lmax": lambda bi=False: ssm.S4(H, 12, rank=2, l_max=16, bidirectional=bi),
    "S5": lambda bi=False: ssm.S5(H, 16, blocks=2, bidirectional=bi),
    "S5-full-clip": lambda bi=False: ssm.S5(H, 8, conj_sym=False, clip_eigs=True, C_init="complex_normal", bidirectional=bi),
    "S5PTD": lambda bi=False: ssm.S5PTD(H, 16, blocks=2, bidirectional=bi),
}


def make(name, bidirectional=False, seed=0):
    torch.manual_seed(seed)
    layer = LAYERS[name](bidirectional)
    # larger dt than the default makes the recurrence decay within the test length, so a wrong
    # state transfer shows up instead of hiding under a tiny dA^L
    with torch.no_grad():
        dt_param(layer.core).uniform_(-3, -0.5)
    return layer.eval()


def dt_param(core):
    """log dt: S5's ``log_dt``, or the S4-family's ``inv_dt`` (log dt under the default dt_transform="exp")."""
    assert getattr(core, "dt_transform", "exp") == "exp"
    return core.inv_dt if hasattr(core, "inv_dt") else core.log_dt


@pytest.mark.parametrize("name", list(LAYERS))
def test_forward_equals_stepping_and_chunked_state_passing(name):
    layer = make(name)
    B, L = 3, 37  # odd length
    x = torch.randn(B, L, H)
    with torch.no_grad():
        y, _ = layer(x)
        # step token by token
        state = layer.default_state(B)
        ys = []
        for t in range(L):
            yt, state = layer.step(x[:, t], state)
            ys.append(yt)
        y_step = torch.stack(ys, 1)
        # chunks of uneven sizes with the state carried along
        state_c = layer.default_state(B)
        outs = []
        for a, b in [(0, 1), (1, 12), (12, 30), (30, 37)]:
            yc, state_c = layer(x[:, a:b], state_c)
            outs.append(yc)
        y_chunk = torch.cat(outs, 1)
    assert y.shape == (B, L, H)
    # float32, 37 recurrence steps against the FFT convolution
    assert rel_err(y_step, y) <= RTOL[torch.float32], "step != forward"
    assert rel_err(y_chunk, y) <= RTOL[torch.float32], "chunked forward != forward"
    assert rel_err(state_c, state) <= RTOL[torch.float32], "final states differ"


@pytest.mark.parametrize("name", list(LAYERS))
def test_causal(name):
    layer = make(name)
    x = torch.randn(2, 40, H)
    t = 23
    x2 = x.clone()
    x2[:, t] += torch.randn(2, H)
    with torch.no_grad():
        y1, _ = layer(x)
        y2, _ = layer(x2)
    # unchanged up to FFT round-off
    assert torch.equal(y1[:, :t], y2[:, :t]) or (y1[:, :t] - y2[:, :t]).abs().max() <= ROUNDOFF[torch.float32]
    assert (y1[:, t:] - y2[:, t:]).abs().max() > SIGNAL  # the change does arrive


@pytest.mark.parametrize("name", list(LAYERS))
def test_bidirectional_sees_both_ways_and_refuses_state(name):
    layer = make(name, bidirectional=True)
    x = torch.randn(2, 40, H)
    x2 = x.clone()
    x2[:, 30] += 1.0
    with torch.no_grad():
        y1, state = layer(x)
        y2, _ = layer(x2)
    assert state is None
    assert (y1[:, :30] - y2[:, :30]).abs().max() > SIGNAL, "bidirectional output ignores the future"
    with pytest.raises(ValueError, match="bidirectional"):
        layer.default_state(2)


@pytest.mark.parametrize("name", list(LAYERS))
def test_gradients_reach_every_parameter(name):
    layer = make(name).train()
    x = torch.randn(2, 33, H, requires_grad=True)
    y, _ = layer(x, layer.default_state(2) + 0.1)  # state passing path too
    y.square().mean().backward()
    for pname, p in layer.named_parameters():
        assert p.grad is not None, f"no gradient for {pname}"
        assert torch.isfinite(p.grad).all(), f"non-finite gradient for {pname}"
        assert p.grad.abs().max() > 0, f"zero gradient for {pname}"
    assert x.grad.abs().max() > 0


@pytest.mark.parametrize("name", list(LAYERS))
def test_lengths_mask_isolates_padding(name):
    layer = make(name, bidirectional=True)
    x = torch.randn(2, 20, H)
    lengths = torch.tensor([20, 12])
    x_noise = x.clone()
    x_noise[1, 12:] = 100 * torch.randn(8, H)  # garbage in the padding
    with torch.no_grad():
        y1, _ = layer(x, lengths=lengths)
        y2, _ = layer(x_noise, lengths=lengths)
    assert (y1 - y2).abs().max() <= ROUNDOFF[torch.float32]
    assert torch.all(y1[1, 12:] == 0)


@pytest.mark.parametrize("name", list(LAYERS))
def test_bad_input_errors(name):
    layer = make(name)
    cls = type(layer).__name__
    with pytest.raises(ValueError, match=rf"{cls}: input must be \(B, L, H\) with H={H}, got shape \(5, {H}\)"):
        layer(torch.randn(5, H))
    with pytest.raises(ValueError, match=rf"\(B, L, H\) with H={H} channels, got shape \(2, 5, 3\)"):
        layer(torch.randn(2, 5, 3))
    with pytest.raises(TypeError, match="floating-point"):
        layer(torch.ones(2, 5, H, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(B, H\) with H="):
        layer.step(torch.randn(2, 5, H), layer.default_state(2))


@pytest.mark.parametrize("name", ["S4", "S4D", "S4PTD"])
def test_l_max_never_limits_or_truncates(name):
    """The one l_max rule of the convolutional layers: l_max is the kernel length prepared in
    advance, never a limit; an input longer than l_max gets the exact kernel of its own length, so
    forward still equals stepping (the s4 reference instead zero-truncates the kernel at l_max)."""
    torch.manual_seed(0)
    layer = getattr(ssm, name)(H, 8, l_max=16).eval()
    with torch.no_grad():
        dt_param(layer.core).uniform_(-3, -0.5)  # a memory of a few steps: taps beyond 16 matter
        x = torch.randn(2, 40, H)
        y, _ = layer(x)
        layer.setup_step()
        state, ys = layer.default_state(2), []
        for t in range(40):
            yt, state = layer.step(x[:, t], state)
            ys.append(yt)
        k = layer.core.kernel(40)
    assert rel_err(torch.stack(ys, 1), y) <= RTOL[torch.float32]
    assert k[..., 16:].abs().max() > SIGNAL * k.abs().max()  # the taps past l_max are there, not zero


def test_choices_are_validated():
    with pytest.raises(ValueError, match=r"`init` must be one of 'legs', 'inv', 'lin', 'real'; got 'legt'"):
        ssm.S4D(H, 8, init="legt")
    with pytest.raises(ValueError, match=r"`disc` must be one of 'zoh', 'bilinear'"):
        ssm.S4D(H, 8, disc="euler")


@pytest.mark.parametrize("name", ["S4D-legs-zoh", "S4", "S5"])
def test_step_follows_parameter_updates_after_setup(name):
    """A stale step cache would keep stepping with the old parameters."""
    layer = make(name)
    layer.setup_step()
    with torch.no_grad():
        dt_param(layer.core).add_(0.3)  # an optimizer step would do the same, in place
        x = torch.randn(2, 9, H)
        y, _ = layer(x)
        state = layer.default_state(2)
        ys = []
        for t in range(9):
            yt, state = layer.step(x[:, t], state)
            ys.append(yt)
    assert rel_err(torch.stack(ys, 1), y) <= RTOL[torch.float32]


@pytest.mark.parametrize("name", list(LAYERS))
def test_nan_in_padding_leaves_valid_outputs_finite_and_equal_to_the_unpadded_run(name):
    layer = make(name)  # causal: a valid output sees only valid inputs
    x = torch.randn(2, 20, H)
    padded = torch.cat([x, torch.full((2, 7, H), float("nan"))], 1)  # (B, 27, H)
    padded[1, 13:] = float("inf")  # the second sequence is 13 long: padding of inf and nan
    padded[1, 15] = float("nan")
    lengths = torch.tensor([20, 13])
    with torch.no_grad():
        y, _ = layer(padded, lengths=lengths)
        alone = [layer(x[b : b + 1, : int(n)])[0][0] for b, n in enumerate(lengths)]
    assert torch.isfinite(y).all()
    for b, n in enumerate(lengths.tolist()):
        assert rel_err(y[b, :n], alone[b]) <= ROUNDOFF[torch.float32], f"sequence {b}: padding changed valid outputs"
        assert torch.all(y[b, n:] == 0)
    # bidirectional layers: the padding still cannot poison anything
    bi = make(name, bidirectional=True)
    with torch.no_grad():
        assert torch.isfinite(bi(padded, lengths=lengths)[0]).all()


@pytest.mark.parametrize("bad, error, match", [
    (torch.tensor([20.0, 12.0]), TypeError, r"`lengths` must be an integer tensor \(e.g. int64\), got torch.float32"),
    (torch.tensor([20, 0]), ValueError, r"`lengths` must satisfy 1 <= length <= L = 20, got values in \[0, 20\]"),
    (torch.tensor([-3, 5]), ValueError, r"`lengths` must satisfy 1 <= length <= L = 20, got values in \[-3, 5\]"),
    (torch.tensor([21, 5]), ValueError, r"`lengths` must satisfy 1 <= length <= L = 20, got values in \[5, 21\]"),
    (torch.tensor([5]), ValueError, r"`lengths` must be \(B,\) = \(2,\), got \(1,\)"),
    ([20, 12], TypeError, r"`lengths` must be an integer tensor of shape \(B,\)"),
])
def test_lengths_are_validated(bad, error, match):
    layer = make("S4D-legs-zoh")
    with pytest.raises(error, match=rf"S4D: {match}"):
        layer(torch.randn(2, 20, H), lengths=bad)


@pytest.mark.parametrize("build, match", [
    (lambda: ssm.S5(0, 8), r"S5: `d_model` must be a positive integer, got 0"),
    (lambda: ssm.S4D(0, 8), r"S4D: `d_model` must be a positive integer, got 0"),
    (lambda: ssm.S4(8, 7), r"S4: `d_state` must be even \(the layer keeps d_state/2 complex modes"),
    (lambda: ssm.S4D(8, 7), r"S4D: `d_state` must be even"),
    (lambda: ssm.S4PTD(8, 0), r"S4PTD: `d_state` must be a positive integer, got 0"),
    (lambda: ssm.S5(8, 7), r"S5: `d_state` / `blocks` must be even for init='hippo'.* got 7 / 1 = 7"),
    (lambda: ssm.S5(8, 6, blocks=4), r"S5: `d_state` \(6\) must be divisible by `blocks` \(4\)"),
])
def test_sizes_are_validated_by_name(build, match):
    with pytest.raises(ValueError, match=match):
        build()


@pytest.mark.parametrize("name", ["S4D-legs-zoh", "S4", "S5"])
def test_empty_batch_and_wrong_state_name_the_layer(name):
    layer = make(name)
    cls = type(layer).__name__
    with pytest.raises(ValueError, match=rf"{cls}: input must be \(B, L, H\) with B >= 1"):
        layer(torch.randn(0, 5, H))
    good = layer.default_state(2)
    bad = torch.zeros(3, *good.shape[1:], dtype=good.dtype)
    with pytest.raises(ValueError, match=rf"{cls}: `state` must have the shape of default_state\(2\), "
                                         rf"{re.escape(str(tuple(good.shape)))}, got \(3,"):
        layer(torch.randn(2, 5, H), bad)
    with pytest.raises(ValueError, match=rf"{cls}: `state` must have the shape of default_state\(2\)"):
        layer.step(torch.randn(2, H), bad)
