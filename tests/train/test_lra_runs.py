"""LRA experiments end to end on CPU: the memory-task losses, a fast run of each new task type and of
the Retrieval dual encoder, and (slow) short S4D runs on generated ListOps and Pathfinder-32 that
must learn: test accuracy clearly above the majority-class rate of the test split.

The slow runs' settings, measured numbers and wall times are in experiments/lra/README.md.
"""

import math
import time
from collections import Counter

import pytest
import torch
from helpers import ROUNDOFF, rel_err
from hydra.utils import instantiate
from torch.nn import functional as F

from ssm.data.lra import fixtures
from ssm.train.cli import train
from ssm.train.tasks import Regression, TailClassification

QUIET = ["callbacks.progress=null"]

# Short generated ListOps: trees of depth <= 3 (one level of nesting), 2-4 arguments, 4 < tokens < 30,
# so a 4 x 64 S4D learns it within a few CPU minutes (LRA: depth 10, up to 10 arguments, L 500-2000).
LISTOPS_SHORT = [
    "data.dataset.n_train=5000", "data.dataset.n_val=500", "data.dataset.n_test=1000",
    "data.dataset.max_depth=3", "data.dataset.max_args=4", "data.dataset.min_length=4",
    "data.dataset.max_length=30", "data.dataset.l_max=32",
    "model.d_model=64", "model.n_layers=4", "trainer.max_epochs=6",
]
# Short generated Pathfinder-32 (L 1024): 3000 images (2400/300/300), a 2 x 64 S4D, batch 32, 4 epochs.
PATHFINDER_SHORT = [
    "data.dataset.n=3000", "model.d_model=64", "model.n_layers=2", "data.batch_size=32", "trainer.max_epochs=4",
]


# -- the memory tasks' losses ------------------------------------------------------------------


def test_tail_classification_scores_only_the_last_steps():
    task = TailClassification(n_classes=4, n_steps=2)
    target = torch.tensor([[1, 3], [0, 2]])  # (B, n_steps)
    output = torch.randn(2, 7, 4)  # (B, L, C): the first 5 steps are noise
    output[:, -2:] = 20 * F.one_hot(target, 4).float()  # confident and right on the last 2 steps
    assert task.loss(output, target) <= ROUNDOFF[torch.float32]  # 3 exp(-20) is below float32 rounding of 20
    metric = task.metrics()
    metric.update(*task.metric_inputs(output, target))
    assert metric.compute()["accuracy"] == 1.0
    output[1, -1] = 20 * F.one_hot(torch.tensor(0), 4).float()  # one of the 4 predictions wrong
    metric.reset()
    metric.update(*task.metric_inputs(output, target))
    assert metric.compute()["accuracy"] == pytest.approx(0.75, rel=ROUNDOFF[torch.float32])
    expected = F.cross_entropy(output[:, -2:].reshape(-1, 4), target.reshape(-1))
    assert rel_err(task.loss(output, target), expected) <= ROUNDOFF[torch.float32]


def test_tail_classification_rejects_pooled_outputs_and_wrong_targets():
    task = TailClassification(n_classes=4, n_steps=2)
    with pytest.raises(ValueError, match="pool='none'"):
        task.loss(torch.randn(3, 4), torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"`target` must be \(B, n_steps\)"):
        task.loss(torch.randn(3, 5, 4), torch.zeros(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="n_steps"):
        TailClassification(n_classes=4, n_steps=0)


def test_regression_is_the_mse_of_the_pooled_scalar():
    task = Regression()
    output, target = torch.tensor([[1.0], [2.0], [4.0]]), torch.tensor([1.5, 2.0, 3.0])  # (B, 1), (B,)
    assert task.loss(output, target).item() == pytest.approx((0.25 + 0 + 1) / 3, rel=ROUNDOFF[torch.float32])
    metric = task.metrics()
    metric.update(*task.metric_inputs(output, target))
    values = metric.compute()
    assert values["mse"].item() == pytest.approx(1.25 / 3, rel=ROUNDOFF[torch.float32])
    assert values["mae"].item() == pytest.approx(1.5 / 3, rel=ROUNDOFF[torch.float32])
    with pytest.raises(ValueError, match="does not match"):
        task.loss(torch.randn(3, 2), target)


# -- fast runs of the new experiment kinds -----------------------------------------------------


@pytest.mark.parametrize("experiment, data, monitor", [
    ("lra/s4d-copying", ["data.dataset.size=16", "data.dataset.delay=40"], "val/accuracy"),
    ("lra/s4d-selective_copying", ["data.dataset.size=16", "data.dataset.body=64"], "val/accuracy"),
    ("lra/s4d-adding", ["data.dataset.size=16", "data.dataset.length=50"], "val/mse"),
])
def test_memory_task_experiment_runs(compose_cfg, experiment, data, monitor):
    cfg = compose_cfg([f"experiment={experiment}", "debug=fast", "data.batch_size=8", "model.d_model=16",
                       "model.n_layers=1", "model.layer.d_state=16", *data])
    results = train(cfg)
    assert monitor in results and math.isfinite(results[monitor]), results


def test_retrieval_experiment_runs_on_release_format_pairs(compose_cfg, tmp_path):
    fixtures.write_aan(tmp_path / "data" / "aan", n_train=16, n_val=8, n_test=8, min_chars=50, max_chars=400)
    cfg = compose_cfg(["experiment=lra/s4d-retrieval", f"data_root={tmp_path / 'data'}", "debug=fast",
                       "data.batch_size=4", "data.dataset.l_max=256", "model.encoder.d_model=16",
                       "model.encoder.n_layers=1", "model.encoder.layer.d_state=16"])
    results = train(cfg)
    assert math.isfinite(results["val/loss"]) and 0.0 <= results["val/accuracy"] <= 1.0, results


# -- slow: short generated runs that must learn ------------------------------------------------


def majority_rate(cfg, split: str = "test") -> float:
    """Frequency of the most common label of a split: the best any constant prediction can score."""
    dataset = instantiate(cfg.data).dataset_factory(split=split)
    counts = Counter(int(dataset[i][1]) for i in range(len(dataset)))
    return max(counts.values()) / len(dataset)


def _learns(compose_cfg, tmp_path, experiment: str, overrides: list[str], margin: float) -> dict:
    cfg = compose_cfg([f"experiment={experiment}", f"data_root={tmp_path / 'data'}", *QUIET, *overrides])
    start = time.perf_counter()
    results = train(cfg)  # generates the data on first use
    wall = time.perf_counter() - start
    majority = majority_rate(cfg)
    accuracy = results["test/accuracy"]
    print(f"\n{experiment}: test accuracy {accuracy:.4f}, majority class {majority:.4f}, wall {wall:.0f} s")
    assert accuracy > majority + margin, (accuracy, majority, results)
    return results


@pytest.mark.slow
def test_s4d_learns_generated_listops(compose_cfg, tmp_path):
    # measured: 0.568 against a majority rate of ~0.11 (experiments/lra/README.md)
    _learns(compose_cfg, tmp_path, "lra/s4d-listops-generated", LISTOPS_SHORT, margin=0.2)


@pytest.mark.slow
def test_s4d_learns_generated_pathfinder32(compose_cfg, tmp_path):
    # measured: 0.707 against a test majority rate of 0.533 (300 images; experiments/lra/README.md)
    _learns(compose_cfg, tmp_path, "lra/s4d-pathfinder32-generated", PATHFINDER_SHORT, margin=0.1)
