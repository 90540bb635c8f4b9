"""Loggers for ``ssm-train``: CSV always (the run summary and learning curve read it), TensorBoard
when a TensorBoard writer is installed, Weights & Biases only when asked (``logger=wandb``)."""

from __future__ import annotations

import importlib.util
import logging

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
