"""Loggers: CSV always, TensorBoard only when installed, W&B only when asked."""

import pytest

from ssm.train import loggers
from ssm.train.cli import build
from ssm.train.loggers import CSVLogger  # Lightning's, appending to metrics.csv instead of deleting it


def test_default_logs_csv_and_tensorboard_only_when_installed(compose_cfg, monkeypatch):
    monkeypatch.setattr(loggers, "tensorboard_available", lambda: False)
    _, _, trainer = build(compose_cfg(["callbacks.progress=null"]))
    assert [type(lg) for lg in trainer.loggers] == [CSVLogger]

    monkeypatch.setattr(loggers, "tensorboard_available", lambda: True)
    created = {}

    class FakeTensorBoard(CSVLogger):  # stands in for TensorBoardLogger, which needs the package
        def __init__(self, save_dir, name, version):
            created.update(save_dir=save_dir, name=name)
            super().__init__(save_dir, name=name, version=version)

    monkeypatch.setattr("lightning.pytorch.loggers.TensorBoardLogger", FakeTensorBoard)
    _, _, trainer = build(compose_cfg(["callbacks.progress=null"]))
    assert [type(lg) for lg in trainer.loggers] == [CSVLogger, FakeTensorBoard] and created["name"] == "tensorboard"


def test_csv_only_and_wandb_only_when_asked(compose_cfg):
    _, _, trainer = build(compose_cfg(["logger=csv"]))
    assert [type(lg) for lg in trainer.loggers] == [CSVLogger]
    assert "wandb" not in str(compose_cfg([]).logger)
    try:
        import wandb  # noqa: F401
    except ImportError:
        with pytest.raises(Exception, match="wandb"):
            build(compose_cfg(["logger=wandb"]))
