"""Short real runs on CPU: each task type end to end, learning on the default experiment,
checkpoints that rebuild the model, and the stop on a non-finite loss."""

import json

import pytest
import torch
from helpers import ROUNDOFF, rel_err

import ssm
from ssm.train.cli import build, train
from ssm.train.module import NonFiniteLossError, load

SMALL = ["model.d_model=16", "model.n_layers=2", "model.layer.d_state=16", "callbacks.progress=null"]


@pytest.mark.parametrize("experiment", [None, "sine-lm", "seasonal-forecast"])
def test_fast_dev_run_each_task_type(compose_cfg, tmp_path, experiment):
    overrides = SMALL + ["debug=fast"] + ([f"experiment={experiment}"] if experiment else [])
    results = train(compose_cfg(overrides))
    assert results and all(torch.isfinite(torch.tensor(v)) for v in results.values())
    # forecasting runs end with a plot of lag window, truth and forecast
    assert (tmp_path / "forecast.png").is_file() == (experiment == "seasonal-forecast")
    if experiment == "seasonal-forecast":
        assert (tmp_path / "forecast.png").stat().st_size > 5000


@pytest.mark.parametrize("overrides", [
    ["experiment=ar-spacetime", "model.d_model=8", "model.d_state=8", "model.n_kernels=2"],  # aux-loss model
    SMALL + ["task=pretrain"],  # masked self-pretraining
    SMALL + ["experiment=sine-lm", "task=pretrain", "task.objective=causal", "task.mask_prob=0"],
])
def test_fast_dev_run_other_objectives(compose_cfg, overrides):
    results = train(compose_cfg(["debug=fast", "callbacks.progress=null", *overrides]))
    assert results and all(torch.isfinite(torch.tensor(v)) for v in results.values())


def test_default_experiment_learns_and_checkpoint_rebuilds_the_model(compose_cfg, tmp_path):
    cfg = compose_cfg(["callbacks.progress=null", "trainer.max_epochs=5", "data.dataset.size=2000"])
    results = train(cfg)
    assert results["test/accuracy"] > 0.5, results  # chance is 0.1
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["best"] > 0.5 and summary["parameters"] > 0
    assert (tmp_path / "learning_curve.png").stat().st_size > 1000
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    model = load(ckpt)
    assert isinstance(model, ssm.SequenceModel)
    x = torch.randn(2, 256, 1)
    _, module, _ = build(cfg)
    state = torch.load(ckpt, weights_only=False)["state_dict"]
    module.load_state_dict(state)
    assert rel_err(model.eval()(x), module.model.eval()(x)) <= ROUNDOFF[torch.float32]


def test_non_finite_loss_stops_with_a_clear_message(compose_cfg):
    cfg = compose_cfg(SMALL + ["trainer.max_epochs=1", "test=false"])
    datamodule, module, trainer = build(cfg)
    datamodule.setup()
    datamodule.splits["train"].x[:] = float("nan")
    with pytest.raises(NonFiniteLossError, match="non-finite train loss"):
        trainer.fit(module, datamodule=datamodule)
