"""Self-pretraining on the task's own training inputs, then fine-tuning (SPT, "Never Train from
Scratch", arXiv 2310.02980).

Two denoising objectives, chosen by ``objective``:

- ``masked`` (bidirectional models): every valid position is masked i.i.d. with probability
  ``mask_prob``. Real-valued inputs become ``[x * (1 - m), m]`` (the mask indicator is one extra
  channel, so the pretraining model has ``d_input + 1`` inputs); token inputs have masked tokens
  replaced by ``mask_token`` (default ``vocab``: one extra embedding row). The loss counts
  masked positions only: cross-entropy over the vocabulary for tokens, L1 for real values.
- ``causal``: predict the next input from the prefix (target = input shifted by one, the last
  position ignored). The model must be causal; that is checked before training starts.

Padding (positions ``>= lengths``) never counts. Fine-tuning loads the pretrained backbone with
``load_pretrained``: every weight except the head must be found and loaded; the encoder rows or
columns that served the mask (the extra embedding row, the mask-indicator input column) are
dropped, which is exact for unmasked inputs.

Differences from the reference recipe: real-valued inputs (sCIFAR, Pathfinder pixels) use L1 on
the values (the paper uses L1 for sCIFAR and a 256-way CE over pixel values for Pathfinder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
import torchmetrics
from torch import nn
from torch.nn import functional as F

from ..checks import check_choice
from .loading import read_checkpoint
from .tasks import Task

Objective = Literal["masked", "causal"]
IGNORE = -100


class SelfPretraining(Task):
    """``pretext(x, lengths) -> (inputs, target)`` builds the denoising problem from a batch's
    inputs (its labels are not used); ``loss`` and metrics count only the positions the objective
    scores. ``vocab`` set: token inputs (B, L); ``vocab`` None: real-valued inputs (B, L, D)."""

    monitor, monitor_mode = "val/loss", "min"

    def __init__(self, objective: Objective = "masked", mask_prob: float = 0.5, vocab: int | None = None,
                 mask_token: int | None = None):
        super().__init__()
        check_choice("SelfPretraining", "objective", objective, Objective)
        if objective == "masked" and not 0.0 < mask_prob < 1.0:
            raise ValueError(f"SelfPretraining: `mask_prob` must be in (0, 1) for the masked objective, got {mask_prob}")
        if objective == "causal" and mask_prob not in (0, 0.0, None):
            raise ValueError(f"SelfPretraining: the causal objective masks nothing; set `mask_prob` to 0, got {mask_prob}")
        self.objective, self.mask_prob, self.vocab = objective, mask_prob, vocab
        self.mask_token = (vocab if mask_token is None else mask_token) if vocab is not None else None

    # -- the model must fit the objective ----------------------------------------------------------

    def check_model(self, model: nn.Module) -> None:
        if self.objective == "causal" and not getattr(model, "causal", False):
            raise ValueError(
                "SelfPretraining: the causal objective needs a causal model (every layer unidirectional, e.g. "
                "model.layer.bidirectional=false); this model can see the future, so the targets would leak."
            )

    # -- the pretext problem -------------------------------------------------------------------------

    def pretext(self, x: torch.Tensor, lengths: torch.Tensor | None = None):
        tokens = self.vocab is not None
        if tokens and x.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"SelfPretraining: `vocab` is set, so inputs must be integer tokens (B, L); got {x.dtype}")
        if not tokens and x.dim() != 3:
            raise ValueError(f"SelfPretraining: real-valued inputs must be (B, L, D); got shape {tuple(x.shape)}")
        B, L = x.shape[:2]
        valid = torch.ones(B, L, dtype=torch.bool, device=x.device)
        if lengths is not None:
            valid = torch.arange(L, device=x.device)[None] < lengths.to(x.device)[:, None]  # (B, L)
        if self.objective == "causal":
            scored = valid.clone()
            scored[:, -1] = False  # nothing to predict after the last input
            scored[:, :-1] &= valid[:, 1:]
            target = torch.roll(x, -1, dims=1)  # target[t] = x[t + 1]
            return x, (target, scored)
        mask = (torch.rand(B, L, device=x.device) < self.mask_prob) & valid  # (B, L)
        if tokens:
            inputs = torch.where(mask, torch.full_like(x, self.mask_token), x)
        else:
            m = mask.unsqueeze(-1).to(x.dtype)  # (B, L, 1)
            inputs = torch.cat([x * (1 - m), m], dim=-1)  # (B, L, D + 1)
        return inputs, (x, mask)

    # -- loss and metrics ---------------------------------------------------------------------------

    def _per_position(self, output, target):
        values, scored = target
        if self.vocab is not None:  # output (B, L, V)
            labels = torch.where(scored, values, torch.full_like(values, IGNORE))
            return F.cross_entropy(output.reshape(-1, output.shape[-1]), labels.reshape(-1), ignore_index=IGNORE,
                                   reduction="none").reshape(scored.shape)
        if output.shape != values.shape:
            raise ValueError(f"SelfPretraining: output {tuple(output.shape)} must match the inputs {tuple(values.shape)} "
                             "(model.d_output = data.d_input, model.pool = none)")
        return (output - values).abs().mean(-1)  # (B, L)

    def loss(self, output, target):
        scored = target[1]
        per = self._per_position(output, target)
        return (per * scored).sum() / scored.sum().clamp(min=1)

    def metrics(self):
        name = "masked_nll" if self.objective == "masked" else "next_nll"
        if self.vocab is None:
            name = "masked_mae" if self.objective == "masked" else "next_mae"
        return torchmetrics.MetricCollection({name: torchmetrics.MeanMetric()})

    def metric_inputs(self, output, target):
        return (self._per_position(output, target)[target[1]],)  # one value per scored position


# -- conversions for the pretraining model's config -------------------------------------------------

def pretrain_d_input(d_input, objective: str):
    """The pretraining model's ``d_input``: one more channel (the mask) for masked real values."""
    return None if d_input is None else int(d_input) + (objective == "masked")


def pretrain_vocab(vocab_size, objective: str):
    """The pretraining model's ``vocab_size``: one more token (the mask) for masked tokens."""
    return None if vocab_size is None else int(vocab_size) + (objective == "masked")


def pretrain_d_output(d_input, vocab_size):
    """Per-step outputs: logits over the vocabulary, or the input values."""
    return int(vocab_size) if vocab_size is not None else int(d_input)


# -- fine-tuning ------------------------------------------------------------------------------------

def load_pretrained(model: nn.Module, path: str | Path, *, head: tuple[str, ...] = ("decoder",), trust: bool = False,
                    allowed_targets=()) -> dict:
    """Load an ``ssm-train`` checkpoint's backbone into ``model``: every tensor outside ``head``
    must exist in the checkpoint with the same shape, except the encoder, whose extra
    pretraining rows (mask token) or columns (mask channel) are dropped. Anything missing,
    unexpected or of another shape is an error that lists the names. The file is read with
    ``read_checkpoint`` (refused when unsafe, unless ``trust``). Returns what was loaded."""
    path = Path(path)
    ckpt = read_checkpoint(path, trust=trust, allowed_targets=allowed_targets, what="pretrained")
    if "state_dict" not in ckpt:
        raise ValueError(f"pretrained={path}: not an ssm-train checkpoint (no state_dict)")
    source = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}

    def is_head(name: str) -> bool:
        return any(name == h or name.startswith(h + ".") for h in head)

    own = {k: v for k, v in model.state_dict().items() if not is_head(k)}
    missing = [k for k in own if k not in source]
    unexpected = [k for k in source if not is_head(k) and k not in own]
    loaded, trimmed, wrong = [], [], []
    new_state = {}
    for name, tensor in own.items():
        if name not in source:
            continue
        src = source[name]
        if src.shape == tensor.shape:
            new_state[name] = src
        elif name == "encoder.weight" and src.dim() == 2 and tensor.dim() == 2:
            rows, cols = tensor.shape
            if src.shape[0] >= rows and src.shape[1] == cols:  # embedding: drop the mask-token row(s)
                new_state[name] = src[:rows]
            elif src.shape[0] == rows and src.shape[1] >= cols:  # linear: drop the mask-indicator column(s)
                new_state[name] = src[:, :cols]
            else:
                wrong.append(f"{name} {tuple(src.shape)} -> {tuple(tensor.shape)}")
                continue
            trimmed.append(name)
        else:
            wrong.append(f"{name} {tuple(src.shape)} -> {tuple(tensor.shape)}")
            continue
        loaded.append(name)
    if missing or unexpected or wrong:
        raise ValueError(
            f"pretrained={path}: the backbone does not match this model "
            f"(missing: {missing[:8]}, unexpected: {unexpected[:8]}, shape: {wrong[:8]}). "
            "Fine-tune with the same model config as the pretraining run (only the head may differ)."
        )
    with torch.no_grad():
        for name, tensor in new_state.items():
            model.state_dict()[name].copy_(tensor)
    return {"loaded": loaded, "trimmed": trimmed, "head": [k for k in model.state_dict() if is_head(k)]}
