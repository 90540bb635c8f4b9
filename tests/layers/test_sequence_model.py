"""The residual backbone: shapes, heads, masking, and stepping == forward for causal stacks."""

import functools

import pytest
import torch
from helpers import ROUNDOFF, RTOL, rel_err

import ssm
from ssm.models import SequenceModel


def test_pooled_classifier_shapes_and_lengths():
    torch.manual_seed(0)
    model = SequenceModel(3, 5, d_model=8, n_layers=2, layer=functools.partial(ssm.S4D, d_state=8, bidirectional=True), ffn=2)
    x = torch.randn(4, 20, 3)
    assert model(x).shape == (4, 5)
    lengths = torch.tensor([20, 10, 5, 1])
    y1 = model.eval()(x, lengths=lengths)
    x2 = x.clone()
    x2[1, 10:] = 99.0
    assert rel_err(model(x2, lengths=lengths), y1) <= ROUNDOFF[torch.float32]


@pytest.mark.parametrize("pool", ["mean", "last", "none"])
def test_nan_padding_cannot_reach_valid_outputs(pool):
    torch.manual_seed(0)
    model = SequenceModel(3, 5, d_model=8, n_layers=2, layer=functools.partial(ssm.S4D, d_state=8), ffn=2, pool=pool).eval()
    x = torch.randn(2, 12, 3)
    padded = torch.cat([x, torch.full((2, 4, 3), float("nan"))], 1)
    padded[1, 9:] = float("inf")
    lengths = torch.tensor([12, 9])
    with torch.no_grad():
        y = model(padded, lengths=lengths)
        for b, n in enumerate(lengths.tolist()):
            alone = model(x[b : b + 1, :n])[0]
            valid = y[b] if pool != "none" else y[b, :n]
            assert torch.isfinite(valid).all()
            # the padded run's FFT length differs: round-off only
            assert rel_err(valid, alone) <= ROUNDOFF[torch.float32], f"sequence {b}: padding changed its output"


@pytest.mark.parametrize("layer", [functools.partial(ssm.S4D, d_state=8), functools.partial(ssm.S4, d_state=8), functools.partial(ssm.S5, d_state=8)])
@pytest.mark.parametrize("norm", ["layer", "batch"])
def test_causal_stack_steps_like_forward(layer, norm):
    torch.manual_seed(0)
    model = SequenceModel(None, 7, d_model=8, n_layers=2, layer=layer, vocab_size=11, pool="none", norm=norm, ffn=2).eval()
    tokens = torch.randint(0, 11, (2, 15))
    with torch.no_grad():
        y, _ = model(tokens, model.default_state(2))
        state = model.default_state(2)
        steps = []
        for t in range(15):
            yt, state = model.step(tokens[:, t], state)
            steps.append(yt)
    assert rel_err(torch.stack(steps, 1), y) <= RTOL[torch.float32]


def test_bad_inputs():
    model = SequenceModel(3, 2, d_model=8, n_layers=1, layer=functools.partial(ssm.S4D, d_state=8))
    with pytest.raises(ValueError, match=r"input must be \(B, L, d_input=3\), got shape \(2, 5, 4\)"):
        model(torch.randn(2, 5, 4))
    with pytest.raises(ValueError, match="exactly one of `d_input`"):
        SequenceModel(3, 2, layer=functools.partial(ssm.S4D, d_state=8), vocab_size=5)
