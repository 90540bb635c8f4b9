"""Self-pretraining (arXiv 2310.02980): the masked and causal pretext problems, the loss only on
scored positions, the causal-model check, and fine-tuning that loads the whole backbone."""

import pytest
import torch
from helpers import ROUNDOFF, SAMPLING, SIGNAL, rel_err

from ssm.train.cli import build, train
from ssm.train.pretraining import SelfPretraining, load_pretrained

SMALL = ["model.d_model=16", "model.n_layers=2", "model.layer.d_state=16", "callbacks.progress=null"]


def test_masked_rate_and_mask_channel_for_real_values():
    task = SelfPretraining("masked", mask_prob=0.3)
    torch.manual_seed(0)
    x = torch.randn(64, 500, 2)
    lengths = torch.full((64,), 500)
    lengths[:8] = 100
    inputs, (target, mask) = task.pretext(x, lengths)
    assert inputs.shape == (64, 500, 3) and torch.equal(target, x)
    assert torch.equal(inputs[..., 2], mask.float())  # the indicator channel
    assert torch.all(inputs[..., :2][mask] == 0) and torch.equal(inputs[..., :2][~mask], x[~mask])
    assert not mask[:8, 100:].any()  # padding is never masked (never scored)
    rate = mask[8:].float().mean().item()
    assert abs(rate - 0.3) <= SAMPLING, rate  # 28000 draws


def test_masked_tokens_use_the_mask_token_and_only_masked_positions_count():
    task = SelfPretraining("masked", mask_prob=0.5, vocab=10)
    torch.manual_seed(1)
    x = torch.randint(0, 10, (4, 50))
    inputs, target = task.pretext(x)
    mask = target[1]
    assert torch.all(inputs[mask] == 10) and torch.equal(inputs[~mask], x[~mask])
    logits = torch.randn(4, 50, 10)
    base = task.loss(logits, target)
    changed = logits.clone()
    changed[~mask] = torch.randn(int((~mask).sum()), 10) * 10  # unmasked outputs carry no weight
    assert rel_err(task.loss(changed, target), base) <= ROUNDOFF[torch.float32]
    changed[mask] += torch.randn(int(mask.sum()), 10)
    assert (task.loss(changed, target) - base).abs() > SIGNAL


def test_causal_targets_are_the_inputs_shifted_by_one():
    task = SelfPretraining("causal", mask_prob=0.0, vocab=256)
    x = torch.randint(0, 256, (3, 20))
    lengths = torch.tensor([20, 20, 7])
    inputs, (target, scored) = task.pretext(x, lengths)
    assert torch.equal(inputs, x)
    assert torch.equal(target[:, :-1], x[:, 1:])
    assert not scored[:, -1].any() and scored[0, :-1].all()
    assert scored[2, :6].all() and not scored[2, 6:].any()  # no target beyond the sequence's end


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="objective"):
        SelfPretraining("bert")
    with pytest.raises(ValueError, match="mask_prob"):
        SelfPretraining("masked", mask_prob=1.0)
    with pytest.raises(ValueError, match="mask_prob"):
        SelfPretraining("causal", mask_prob=0.5)


def test_causal_objective_refuses_a_bidirectional_model(compose_cfg):
    cfg = compose_cfg(SMALL + ["task=pretrain", "task.objective=causal", "task.mask_prob=0"])  # marker: bidirectional
    with pytest.raises(ValueError, match="causal model"):
        build(cfg)


def test_pretrain_then_finetune_loads_the_whole_backbone(compose_cfg, tmp_path):
    data = ["data.dataset.size=256", "trainer.max_epochs=1", "test=false"]
    pre = compose_cfg(SMALL + data + ["task=pretrain"])
    results = train(pre)
    assert results["val/masked_mae"] == results["val/masked_mae"]  # a finite metric was logged
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    pretrained = {k[6:]: v for k, v in torch.load(ckpt, weights_only=False)["state_dict"].items() if k.startswith("model.")}
    assert pretrained["encoder.weight"].shape == (16, 2)  # marker's 1 channel + the mask indicator

    fine = compose_cfg(SMALL + data + [f"pretrained={ckpt}"])
    _, module, _ = build(fine)
    state = module.model.state_dict()
    backbone = [k for k in state if not k.startswith("decoder.")]
    assert backbone and all(torch.equal(state[k], pretrained[k]) for k in backbone if k != "encoder.weight")
    assert torch.equal(state["encoder.weight"], pretrained["encoder.weight"][:, :1])  # mask column dropped
    assert state["decoder.weight"].shape == (10, 16)  # the classification head, freshly initialised

    deeper = compose_cfg(SMALL + data + [f"pretrained={ckpt}", "model.n_layers=3"])
    with pytest.raises(ValueError, match="missing: .*blocks.2"):
        build(deeper)
    with pytest.raises(FileNotFoundError, match="pretrained="):
        load_pretrained(module.model, tmp_path / "nope.ckpt")
