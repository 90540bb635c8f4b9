"""The S4/S4D benchmark experiments (configs/experiment/{sc,images,bidmc}/) end to end on the
offline stand-ins of ssm.data.fixtures: one batch of every experiment with a tiny model, and a
short run of each task type that must learn: Speech Commands and sequential-image classification
above chance, BIDMC regression below the mean predictor's error.

The published settings stay as configured except the model size, the batch size, the epochs and
the clip length (the stand-ins' clips are short); each learning run takes a few seconds on CPU.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from ssm.data import fixtures
from ssm.data.speech import SC10, SC35
from ssm.train.cli import config_dir, train

EXPERIMENTS = sorted(f"{family}/{p.stem}" for family in ("sc", "images", "bidmc")
                     for p in (config_dir() / "experiment" / family).glob("*.yaml"))
TINY = ["model.d_model=8", "model.n_layers=1", "model.layer.d_state=8", "data.batch_size=4", "callbacks.progress=null"]
CLIP = 800  # samples per stand-in Speech Commands clip (the release's are 16000)
WINDOW = 200  # steps per stand-in BIDMC window (the release's are 4000)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy machine two threads make each step
    of these runs many times slower (measured: 0.05 s against 0.84 s per step); restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("benchmarks")
    fixtures.write_speech_commands(root, words=SC35, n_train=5, n_val=1, n_test=1, length=CLIP, short_every=0)
    fixtures.write_cifar(root / "cifar-10-batches-py", n_per_batch=8)
    fixtures.write_mnist(root / "MNIST" / "raw", n_train=20, n_test=8)
    fixtures.write_bidmc(root, n_train=8, n_val=4, n_test=4, length=WINDOW)
    return root


def test_the_benchmark_experiments_exist():
    assert {"sc/s4-sc35", "sc/s4d-sc35", "sc/s4-sc10", "sc/s4-sc10-8khz", "sc/s4-sc-ablation", "sc/s4d-sc-ablation",
            "images/s4-scifar", "images/s4d-scifar", "images/s4-scifar-ablation", "images/s4d-scifar-ablation",
            "images/s4d-minimal-scifar", "images/s4-smnist", "images/s4-psmnist", "bidmc/s4-bidmc",
            "bidmc/s4d-bidmc", "bidmc/s4-bidmc-ablation", "bidmc/s4d-bidmc-ablation"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_runs_one_batch(compose_cfg, data_root, experiment):
    clip = [f"data.dataset.length={CLIP}"] if experiment.startswith("sc/") else []
    cfg = compose_cfg([f"experiment={experiment}", f"data_root={data_root}", "debug=fast", *TINY, *clip])
    results = train(cfg)
    monitor = "val/mse" if experiment.startswith("bidmc/") else "val/accuracy"
    assert monitor in results and math.isfinite(results[monitor]) and math.isfinite(results["train/loss"]), results


# -- short runs that must learn ----------------------------------------------------------------


def _majority(cfg, split: str = "test") -> float:
    dataset = instantiate(cfg.data).dataset_factory(split=split)
    counts = Counter(int(dataset[i][1]) for i in range(len(dataset)))
    return max(counts.values()) / len(dataset)


def test_speech_commands_classification_learns_and_evaluates_at_8khz(compose_cfg, tmp_path):
    fixtures.write_speech_commands(tmp_path, words=SC10, n_train=14, n_val=3, n_test=3, length=CLIP, short_every=0)
    small = [f"data_root={tmp_path}", f"data.dataset.length={CLIP}", "model.d_model=16", "model.n_layers=1",
             "model.layer.d_state=16", "model.dropout=0", "data.batch_size=10", "trainer.max_epochs=4",
             "callbacks.progress=null"]
    cfg = compose_cfg(["experiment=sc/s4-sc10", *small])
    results = train(cfg)
    majority = _majority(cfg)
    print(f"\nsc/s4-sc10 stand-in: test accuracy {results['test/accuracy']:.3f}, majority class {majority:.3f}")
    assert results["test/accuracy"] > majority + 0.25, (results, majority)
    # the zero-shot protocol: the finished 16 kHz run, tested on 8 kHz clips through ckpt_path
    last = Path(cfg.output_dir) / "checkpoints" / "last.ckpt"
    zero_shot = compose_cfg(["experiment=sc/s4-sc10-8khz", *small, f"ckpt_path={last}"])
    assert instantiate(zero_shot.data).dataset_factory(split="test")[0][0].shape == (CLIP // 2, 1)
    assert zero_shot.model.rate == 2.0  # the layers step at twice the training dt
    evaluated = train(zero_shot)
    assert 0.0 <= evaluated["test/accuracy"] <= 1.0 and math.isfinite(evaluated["test/loss"]), evaluated


def test_sequential_image_classification_learns(compose_cfg, tmp_path):
    fixtures.write_cifar(tmp_path / "cifar-10-batches-py", n_per_batch=40)
    cfg = compose_cfg(["experiment=images/s4-scifar-ablation", f"data_root={tmp_path}", "model.d_model=16",
                       "model.n_layers=1", "model.layer.d_state=16", "model.dropout=0", "data.batch_size=20",
                       "trainer.max_epochs=2", "scheduler.warmup=1", "callbacks.progress=null"])
    results = train(cfg)
    majority = _majority(cfg)
    print(f"\nimages/s4-scifar-ablation stand-in: test accuracy {results['test/accuracy']:.3f}, "
          f"majority {majority:.3f}")
    assert results["test/accuracy"] > majority + 0.3, (results, majority)


def test_bidmc_regression_beats_the_mean_predictor(compose_cfg, tmp_path):
    fixtures.write_bidmc(tmp_path, targets=("HR",), n_train=120, n_val=30, n_test=40, length=WINDOW)
    cfg = compose_cfg(["experiment=bidmc/s4-bidmc-ablation", f"data_root={tmp_path}", "data.dataset.target=HR",
                       "data.dataset.normalize_target=true", "model.d_model=16", "model.n_layers=1",
                       "model.layer.d_state=16", "data.batch_size=20", "trainer.max_epochs=4",
                       "optimizer.lr=0.01", "callbacks.progress=null"])
    results = train(cfg)
    data = instantiate(cfg.data)
    train_y, test_y = (data.dataset_factory(split=s).y for s in ("train", "test"))
    baseline = float(np.mean((test_y - train_y.mean()) ** 2))  # the training mean, predicted for every window
    print(f"\nbidmc/s4-bidmc-ablation stand-in (HR): test MSE {results['test/mse']:.4f}, mean predictor {baseline:.4f}")
    assert results["test/mse"] < 0.5 * baseline, (results, baseline)
    assert torch.isfinite(torch.tensor(results["test/mae"]))
