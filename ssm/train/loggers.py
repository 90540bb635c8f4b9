"""Loggers for ``ssm-train``: CSV always (the run summary and learning curve read it), TensorBoard
when a TensorBoard writer is installed, Weights & Biases only when asked (``logger=wandb``).

``CSVLogger`` is Lightning's, except that an existing ``metrics.csv`` is appended to instead of
deleted, so a resumed run (or one whose resume failed) keeps its history; ``LogHistory`` in
``callbacks`` cuts it back to the resumed checkpoint's rows."""

from __future__ import annotations

import csv
import importlib.util
import logging

from lightning.pytorch.loggers import CSVLogger as _LightningCSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

log = logging.getLogger("ssm.train")


def tensorboard_available() -> bool:
    return any(importlib.util.find_spec(m) is not None for m in ("tensorboard", "tensorboardX"))


def tensorboard_if_installed(save_dir: str, name: str = "tensorboard", version: str = ""):
    """A TensorBoardLogger, or None (with one DEBUG line: the default config asks for TensorBoard
    only if it is there) when neither tensorboard nor tensorboardX is installed; the CSV logger
    keeps logging either way."""
    if not tensorboard_available():
        log.debug("ssm-train: TensorBoard is not installed (pip install tensorboard); logging to CSV only")
        return None
    from lightning.pytorch.loggers import TensorBoardLogger

    return TensorBoardLogger(save_dir=save_dir, name=name, version=version)


def instantiate_loggers(node) -> list:
    """``node`` is one logger node (with ``_target_``) or a mapping of named nodes; null entries
    and factories that return None are dropped."""
    from hydra.utils import instantiate

    if not node:
        return []
    nodes = [node] if "_target_" in node else [v for v in node.values() if v is not None]
    return [lg for lg in (instantiate(n) for n in nodes) if lg is not None]



class CSVLogger(_LightningCSVLogger):
    """Lightning's CSVLogger with ``AppendingCSVWriter``: nothing already logged is deleted."""

    @property
    @rank_zero_experiment
    def experiment(self):
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = AppendingCSVWriter(log_dir=self.log_dir)
        return self._experiment


class AppendingCSVWriter(ExperimentWriter):
    """Continues an existing ``metrics.csv`` (its columns too) where Lightning's writer deletes it."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = list(next(csv.reader(f), []))
