"""``ssm.load``: rebuild a model from an ``ssm-train`` checkpoint without importing Lightning
(the resolved config inside the checkpoint says what to instantiate; Hydra does it).

``read_checkpoint`` is the one place a checkpoint file is read; ``ssm.load`` and ``ssm-predict``
go through it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def read_checkpoint(checkpoint_path: str | Path, *, map_location="cpu") -> dict:
    """The checkpoint dictionary of an ``ssm-train`` checkpoint (state_dict, hyper_parameters with
    the resolved config, and ``data_info`` where the data describes itself)."""
    path = Path(checkpoint_path)
    if not path.is_file():
        raise FileNotFoundError(f"ssm.load: no checkpoint at {path}")
    return torch.load(path, map_location=map_location, weights_only=False)


def checkpoint_config(ckpt: dict, path: str | Path = "the checkpoint") -> dict:
    """The resolved ``ssm-train`` config stored in ``ckpt``; ValueError if it holds none."""
    config = ckpt.get("hyper_parameters", {}).get("config")
    if not config or "model" not in config:
        raise ValueError(f"ssm.load: {path} holds no model config (was it written by ssm-train?)")
    return config


def model_from_checkpoint(ckpt: dict, path: str | Path = "the checkpoint") -> nn.Module:
    """The model of ``ckpt`` (from ``read_checkpoint``), rebuilt from its config, weights loaded."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    model = instantiate(OmegaConf.create(checkpoint_config(ckpt, path))["model"])
    state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    model.load_state_dict(state)
    return model


def load(checkpoint_path: str | Path, *, map_location="cpu") -> nn.Module:
    """Rebuild the model of an ``ssm-train`` checkpoint from the config stored inside it."""
    return model_from_checkpoint(read_checkpoint(checkpoint_path, map_location=map_location), checkpoint_path)
