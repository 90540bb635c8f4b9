"""Optimizer hints on parameters, and the one function that turns them into param groups.

SSM parameters (the state matrix A, B and the timestep) are usually trained with a smaller
learning rate and no weight decay (S4, arXiv 2111.00396 App. D). A layer records that on the
parameter itself as ``param._optim = {"lr": ..., "weight_decay": 0.0}`` (the attribute named
``HINT``); nothing else in the package reads or writes it. Any training loop can then call::

    groups = ssm.optim.param_groups(model, lr=1e-2, weight_decay=0.05)
    opt = torch.optim.AdamW(groups)

Parameters without a hint get ``lr``/``weight_decay``, except biases and normalisation weights
(every parameter with fewer than 2 dims), which get no weight decay. One group is made per
distinct setting.
"""

from __future__ import annotations

import torch
from torch import nn

HINT = "_optim"


def set_hint(param: nn.Parameter, **settings) -> nn.Parameter:
    """Attach optimizer settings (e.g. ``lr=1e-3, weight_decay=0.0``) to a parameter."""
    unknown = set(settings) - {"lr", "weight_decay", "betas", "eps"}
    if unknown:
        raise ValueError(f"set_hint: unknown optimizer settings {sorted(unknown)}; expected lr, weight_decay, betas, eps")
    setattr(param, HINT, {k: v for k, v in settings.items() if v is not None})
    return param


def get_hint(param: torch.Tensor) -> dict:
    return dict(getattr(param, HINT, {}))


def param_groups(model: nn.Module, *, lr: float, weight_decay: float = 0.0, no_decay_1d: bool = True) -> list[dict]:
    """Torch optimizer param groups from the parameters' hints (see the module docstring)."""
    groups: dict[tuple, dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        setting = {"lr": lr, "weight_decay": weight_decay if (p.dim() >= 2 or not no_decay_1d) else 0.0}
        setting.update(get_hint(p))
        key = tuple(sorted((k, str(v)) for k, v in setting.items()))
        group = groups.setdefault(key, {"params": [], "names": [], **setting})
        group["params"].append(p)
        group["names"].append(name)
    return list(groups.values())
