"""Bad trainer settings get an error that names the setting."""

import pytest

from ssm.train.cli import build


def test_non_numeric_learning_rate_is_named(compose_cfg):
    _, module, _ = build(compose_cfg(["optimizer.lr=abc", "model.d_model=8", "model.n_layers=1"]))
    with pytest.raises(ValueError, match=r"optimizer: cannot build the optimizer from optimizer.lr='abc'.*must be numbers"):
        module.configure_optimizers()
