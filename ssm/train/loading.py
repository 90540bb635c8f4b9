"""``ssm.load``: rebuild a model from an ``ssm-train`` checkpoint without importing Lightning
(the resolved config inside the checkpoint says what to instantiate; Hydra does it)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def load(checkpoint_path: str | Path, *, map_location="cpu") -> nn.Module:
    """Rebuild the model of an ``ssm-train`` checkpoint from the config stored inside it."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    path = Path(checkpoint_path)
    if not path.is_file():
        raise FileNotFoundError(f"ssm.load: no checkpoint at {path}")
    ckpt = torch.load(path, map_location=map_location, weights_only=False)
    config = ckpt.get("hyper_parameters", {}).get("config")
    if not config or "model" not in config:
        raise ValueError(f"ssm.load: {path} holds no model config (was it written by ssm-train?)")
    model = instantiate(OmegaConf.create(config)["model"])
    state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    model.load_state_dict(state)
    return model
