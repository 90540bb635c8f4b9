"""Every configs/data/lra/*.yaml composes, instantiates its DataModule on small data in the
release formats under ``data_root``, and describes its batches (d_input, d_output, vocab_size)."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from ssm.data.lra import fixtures
from ssm.data.lra.generators import PathfinderStyle, write_pathfinder
from helpers import compose_config
from ssm.train.cli import config_dir

NAMES = sorted(p.stem for p in (config_dir() / "data" / "lra").glob("*.yaml"))
EXPECTED = {"listops", "text", "retrieval", "image", "pathfinder32", "pathfinder64", "pathfinder128", "pathx",
            "listops_generated", "pathfinder32_generated", "copying", "selective_copying", "adding"}

# small sizes for the generated and in-memory configs
SMALL = {
    "listops_generated": ["data.dataset.n_train=40", "data.dataset.n_val=8", "data.dataset.n_test=8",
                          "data.dataset.min_length=10", "data.dataset.max_length=200", "data.dataset.max_depth=5"],
    "pathfinder32_generated": ["data.dataset.n=20"],
    "copying": ["data.dataset.size=16", "data.dataset.delay=50"],
    "selective_copying": ["data.dataset.size=16", "data.dataset.body=100"],
    "adding": ["data.dataset.size=16", "data.dataset.length=64"],
}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("lra_root")
    from ssm.data.lra.generators import ListOpsSpec, write_listops

    write_listops(root / "listops", ListOpsSpec(n_train=20, n_val=4, n_test=4, max_depth=5, max_args=5, min_length=10,
                                                max_length=200))
    fixtures.write_imdb(root / "aclImdb", n_per_class=4, max_chars=500)
    fixtures.write_aan(root / "aan", n_train=6, n_val=4, n_test=4, max_chars=500)
    fixtures.write_cifar(root / "cifar-10-batches-py", n_per_batch=4)
    for res, n in ((32, 20), (64, 10), (128, 10)):
        write_pathfinder(root / "pathfinder" / f"pathfinder{res}" / "curv_contour_length_14", n=n,
                         style=PathfinderStyle.for_resolution(res))
    return root


def test_all_configs_exist():
    assert EXPECTED <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_config_builds_batches(name, data_root):
    cfg = compose_config([f"data=lra/{name}", f"++data_root={data_root}", *SMALL.get(name, [])])
    dm = instantiate(cfg.data)
    dm.setup("fit")
    x, y, lengths = next(iter(dm.train_dataloader()))
    B = min(dm.batch_size, len(dm.splits["train"]))
    assert len(x) == len(y) == len(lengths) == B
    ds = dm.splits["train"]
    if dm.vocab_size is not None:  # token inputs: ids below the embedding size
        assert x.dtype == torch.long and int(x.max()) < dm.vocab_size and dm.d_input is None
        if hasattr(ds, "vocab"):
            assert ds.vocab_size <= dm.vocab_size
        assert (lengths <= x.shape[-1]).all()
    else:
        assert x.dtype == torch.float32 and x.shape[-1] == dm.d_input
    if y.dtype == torch.long:
        assert int(y.max()) < dm.d_output
    if "l_max" in cfg.data.dataset:
        assert x.shape[-1] == cfg.data.dataset.l_max
    if name == "retrieval":
        assert x.shape[1] == 2 and lengths.shape == (B, 2)
    if name.startswith("path"):
        res = 128 if name == "pathx" else int(name.removeprefix("pathfinder").removesuffix("_generated"))
        assert x.shape[1:] == (res * res, 1) and (lengths == res * res).all()
    assert len(dm.splits["val"]) > 0 and len(dm.splits["test"]) > 0
