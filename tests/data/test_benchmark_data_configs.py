"""The data configs of the S4/S4D benchmarks (configs/data/audio/sc{35,10}.yaml, images/*.yaml,
bidmc.yaml) compose, instantiate their DataModule on the ssm.data.fixtures stand-ins under
``data_root`` and give batches of the shapes they declare (d_input, d_output)."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from ssm.data import fixtures
from ssm.data.speech import SC35
from helpers import compose_config
from ssm.train.cli import config_dir

CONFIGS = {  # config -> (sequence length, classes or None for regression, overrides)
    "audio/sc35": (16000, 35, []),
    "audio/sc10": (1600, 10, ["data.dataset.length=1600"]),  # drop_short: stand-in clips are 1600 samples
    "images/scifar": (1024, 10, []),
    "images/smnist": (784, 10, []),
    "images/psmnist": (784, 10, []),
    "bidmc": (300, None, []),
}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("benchmarks")
    fixtures.write_speech_commands(root, words=SC35, n_train=6, n_val=2, n_test=2, length=1600, short_every=0)
    fixtures.write_cifar(root / "cifar-10-batches-py", n_per_batch=10)
    fixtures.write_mnist(root / "MNIST" / "raw", n_train=40, n_test=10, gz=True)
    fixtures.write_bidmc(root, n_train=12, n_val=4, n_test=4, length=300)
    return root


def test_every_benchmark_data_config_is_tested():
    images = {f"images/{p.stem}" for p in (config_dir() / "data" / "images").glob("*.yaml")}
    assert images | {"audio/sc35", "audio/sc10", "bidmc"} == set(CONFIGS)
    assert all((config_dir() / "data" / f"{name}.yaml").is_file() for name in CONFIGS)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_builds_batches(name, data_root):
    length, classes, overrides = CONFIGS[name]
    cfg = compose_config([f"data={name}", f"++data_root={data_root}", "data.batch_size=4", *overrides])
    dm = instantiate(cfg.data)
    dm.setup("fit")
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        x, y = next(iter(loader))
        assert x.shape == (4, length, dm.d_input) and x.dtype == torch.float32 and torch.isfinite(x).all()
        if classes is None:
            assert y.shape == (4,) and y.dtype == torch.float32 and dm.d_output == 1
        else:
            assert y.dtype == torch.long and dm.d_output == classes and 0 <= int(y.min()) and int(y.max()) < classes
    assert dm.d_input == {"images/scifar": 3, "bidmc": 2}.get(name, 1)


def test_sc10_zero_shot_option_halves_the_eval_clips(data_root):
    cfg = compose_config(["data=audio/sc10", f"++data_root={data_root}", "data.dataset.length=1600",
                    "data.dataset.eval_rate=8000"])
    dm = instantiate(cfg.data)
    dm.setup("fit")
    assert next(iter(dm.train_dataloader()))[0].shape[1] == 1600
    assert next(iter(dm.val_dataloader()))[0].shape[1] == 800 and next(iter(dm.test_dataloader()))[0].shape[1] == 800
