"""Task types: the loss and the metrics of a run, independent of the model and the data.

- ``Classification``: cross-entropy on pooled outputs; accuracy and macro-F1.
- ``LanguageModel``: next-token cross-entropy with a ``vocab``-way softmax on per-step outputs;
  NLL reported in bits per token (the audio-LM metric of SaShiMi, arXiv 2202.09729).
- ``Forecasting``: MSE loss on the last ``horizon`` outputs; MSE and MAE. ``instance_norm="revin"``
  normalises each lag window by its own per-channel mean and std and puts them back on the
  output (reversible instance normalisation, Kim et al., ICLR 2022), so a series whose test
  range lies outside its training range (a trend) reaches the model on the scale it was trained on.
- ``TailClassification``: cross-entropy on the last ``n_steps`` per-step outputs, one class per
  step; per-step accuracy (copying, Arjovsky et al., arXiv 1511.06464; selective copying, Mamba,
  arXiv 2312.00752).
- ``Regression``: MSE on a pooled output against a real target; MSE and MAE (the adding problem,
  Le et al., arXiv 1504.00941).
Metrics go through torchmetrics so they aggregate correctly over batches and processes.
"""

from __future__ import annotations

import inspect
import math

import torch
import torchmetrics
from torch import nn
from torch.nn import functional as F


class Task(nn.Module):
    """``loss(output, target)`` and ``metrics()`` (a fresh MetricCollection per stage)."""

    monitor: str = "val/loss"
    monitor_mode: str = "min"
    chunkable: bool = False  # per-step loss and targets: trainable in chunks of a long sequence (state.mode=tbptt)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def metrics(self) -> torchmetrics.MetricCollection:
        raise NotImplementedError

    def metric_inputs(self, output, target):
        return output, target

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """The model's input for a batch's inputs (identity unless the task says otherwise)."""
        return x

    def restore(self, output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The task's output for the model's ``output`` on inputs ``x`` (identity unless the task
        undoes something ``prepare`` did)."""
        return output


def run_model(task: Task, model: nn.Module, x: torch.Tensor, lengths: torch.Tensor | None = None, *, state=None):
    """``task.restore(model(task.prepare(x)), x)``: the one forward used by training and ``ssm-predict``.
    ``lengths`` go to models whose forward takes them (masks, pooling); a causal model without
    that argument (SaShiMi) needs none for padding at the end. With ``state`` (a causal model's
    recurrent state, e.g. carried from the previous chunk of the same sequences) the model starts
    from it and ``(output, next_state)`` is returned, as the model's own forward does."""
    inputs = task.prepare(x)
    by_length = {} if lengths is None or "lengths" not in inspect.signature(model.forward).parameters \
        else {"lengths": lengths}
    if state is not None:
        output, next_state = model(inputs, state, **by_length)
        return task.restore(output, x), next_state
    return task.restore(model(inputs, **by_length), x)


class Classification(Task):
    monitor, monitor_mode = "val/accuracy", "max"

    def __init__(self, n_classes: int):
        super().__init__()
        self.n_classes = n_classes

    def loss(self, output, target):
        return F.cross_entropy(output, target)

    def metrics(self):
        return torchmetrics.MetricCollection({
            "accuracy": torchmetrics.Accuracy(task="multiclass", num_classes=self.n_classes),
            "macro_f1": torchmetrics.F1Score(task="multiclass", num_classes=self.n_classes, average="macro"),
        })


class _BitsPerToken(torchmetrics.MeanMetric):
    """Mean NLL in bits over tokens."""


class LanguageModel(Task):
    """Next-token cross-entropy. With ``ignore_padding``, positions at or after each example's
    length (padding appended by the dataset, e.g. short SC09 clips padded with silence) are left
    out of the loss, and both figures are reported: ``bits_per_token`` over every position (the
    published SC09 protocol) and ``bits_per_token_unpadded`` over the real samples only. The data
    must then give ``(x, y, lengths)`` batches."""

    monitor, monitor_mode = "val/bits_per_token", "min"
    uses_lengths = True  # loss/metric_inputs take the batch's lengths
    # the loss and metrics are means of per-step terms, so a long sequence can be trained and
    # evaluated in consecutive chunks with the state carried across (state.mode=tbptt)
    chunkable = True

    def __init__(self, vocab: int = 256, ignore_padding: bool = False):
        super().__init__()
        self.vocab, self.ignore_padding = vocab, ignore_padding

    def _valid(self, target, lengths):  # (B, L) bool: real samples
        if lengths is None:
            if self.ignore_padding:
                raise ValueError("LanguageModel: task.ignore_padding=true needs batches with lengths, (x, y, lengths); "
                                 "for SC09 set data.dataset.return_lengths=true")
            return None
        return torch.arange(target.shape[1], device=target.device)[None] < lengths.to(target.device)[:, None]

    def loss(self, output, target, lengths=None):  # output (B, L, V), target (B, L)
        valid = self._valid(target, lengths) if self.ignore_padding else None
        if valid is None:
            return F.cross_entropy(output.reshape(-1, self.vocab), target.reshape(-1))
        return F.cross_entropy(output[valid], target[valid])  # (n_valid, V) against (n_valid,)

    def metrics(self):
        metrics = {"bits_per_token": _BitsPerToken()}
        if self.ignore_padding:
            metrics["bits_per_token_unpadded"] = _BitsPerToken()
        return torchmetrics.MetricCollection(metrics, compute_groups=False)  # two means of different inputs

    def metric_inputs(self, output, target, lengths=None):
        nll = F.cross_entropy(output.reshape(-1, self.vocab), target.reshape(-1), reduction="none") / math.log(2)
        if not self.ignore_padding:
            return (nll,)
        valid = self._valid(target, lengths).reshape(-1)
        return nll, nll[valid]

    def update_metrics(self, metrics, output, target, lengths=None):
        """Each metric of ``metrics`` gets its own input (all positions, real samples only)."""
        inputs = self.metric_inputs(output, target, lengths)
        for (name, metric), value in zip(metrics.items(), inputs):
            metric.update(value)


class Forecasting(Task):
    monitor, monitor_mode = "val/mse", "min"

    def __init__(self, horizon: int, pad_horizon: bool = True, instance_norm: str = "none", season: int | None = None,
                 eps: float = 1e-5):
        super().__init__()
        if instance_norm not in ("none", "revin"):
            raise ValueError(f"Forecasting: `instance_norm` must be 'none' or 'revin', got {instance_norm!r}")
        if season is not None and (not isinstance(season, int) or season < 1):
            raise ValueError(f"Forecasting: `season` must be a positive int or null, got {season!r}")
        self.horizon, self.pad_horizon = horizon, pad_horizon
        self.instance_norm, self.eps = instance_norm, eps
        self.season = season  # seasonal-naive baseline period (null: from the data's time step)

    def _window_stats(self, x):  # per-example, per-channel statistics of the lag window (B, 1, C)
        return x.mean(1, keepdim=True), x.std(1, keepdim=True, unbiased=False) + self.eps

    def prepare(self, x):
        """With ``instance_norm="revin"``, standardise each lag window by its own statistics. With
        ``pad_horizon``, append ``horizon`` zero steps: the model's outputs there are the forecast
        (as S4 does for the Informer benchmarks). Without it the model maps the lag window to the
        forecast itself (SpaceTime)."""
        if self.instance_norm == "revin":
            mean, std = self._window_stats(x)
            x = (x - mean) / std
        if not self.pad_horizon:
            return x
        return torch.cat([x, x.new_zeros(x.shape[0], self.horizon, *x.shape[2:])], dim=1)

    def restore(self, output, x):
        """Undo the instance normalisation on the output channels (the last ``d_output`` input
        channels: the target is the last variable, so features S, M and MS all line up)."""
        if self.instance_norm != "revin":
            return output
        mean, std = self._window_stats(x)
        d = output.shape[-1]
        return output * std[..., -d:] + mean[..., -d:]

    def _tail(self, output):  # per-step outputs (B, L, D): the last `horizon` steps predict the horizon
        return output[:, -self.horizon :]

    def loss(self, output, target):
        return F.mse_loss(self._tail(output), target)

    def metrics(self):
        return torchmetrics.MetricCollection({"mse": torchmetrics.MeanSquaredError(), "mae": torchmetrics.MeanAbsoluteError()})

    def metric_inputs(self, output, target):
        return self._tail(output).reshape(-1), target.reshape(-1)


class TailClassification(Task):
    """One ``n_classes``-way prediction on each of the last ``n_steps`` steps of a per-step output.

    ``output`` (B, L, n_classes) from a model with ``pool="none"``, ``target`` (B, n_steps) class ids;
    the loss is the cross-entropy averaged over the B * n_steps predictions, and ``accuracy`` is
    the fraction of those predictions that are right.
    """

    monitor, monitor_mode = "val/accuracy", "max"

    def __init__(self, n_classes: int, n_steps: int):
        super().__init__()
        if n_classes < 2 or n_steps < 1:
            raise ValueError(f"TailClassification: need `n_classes` >= 2 and `n_steps` >= 1, got {n_classes}, {n_steps}")
        self.n_classes, self.n_steps = n_classes, n_steps

    def _tail(self, output: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if output.dim() != 3 or output.shape[1] < self.n_steps or output.shape[2] != self.n_classes:
            raise ValueError(f"TailClassification: `output` must be per-step logits (B, L >= n_steps={self.n_steps}, "
                             f"n_classes={self.n_classes}) (a model with pool='none'), got shape {tuple(output.shape)}")
        if target.shape != (output.shape[0], self.n_steps):
            raise ValueError(f"TailClassification: `target` must be (B, n_steps) = ({output.shape[0]}, {self.n_steps}), "
                             f"got shape {tuple(target.shape)}")
        logits = output[:, -self.n_steps :].reshape(-1, self.n_classes)  # (B * n_steps, C)
        return logits, target.reshape(-1)  # (B * n_steps,)

    def loss(self, output, target):
        return F.cross_entropy(*self._tail(output, target))

    def metrics(self):
        return torchmetrics.MetricCollection({"accuracy": torchmetrics.Accuracy(task="multiclass", num_classes=self.n_classes)})

    def metric_inputs(self, output, target):
        return self._tail(output, target)


class Regression(Task):
    """MSE between a pooled output and a real target: ``output`` (B, D) with ``target`` (B, D), or
    ``output`` (B, 1) with a scalar-per-example ``target`` (B,)."""

    monitor, monitor_mode = "val/mse", "min"

    def _pair(self, output: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if output.dim() == target.dim() + 1 and output.shape[-1] == 1:
            output = output.squeeze(-1)  # (B, 1) -> (B,)
        if output.shape != target.shape:
            raise ValueError(f"Regression: `output` {tuple(output.shape)} does not match `target` {tuple(target.shape)}; "
                             "expected equal shapes, or (B, 1) against (B,) (a pooled model with d_output=1)")
        return output, target.to(output.dtype)

    def loss(self, output, target):
        return F.mse_loss(*self._pair(output, target))

    def metrics(self):
        return torchmetrics.MetricCollection({"mse": torchmetrics.MeanSquaredError(), "mae": torchmetrics.MeanAbsoluteError()})

    def metric_inputs(self, output, target):
        prediction, target = self._pair(output, target)
        return prediction.reshape(-1), target.reshape(-1)
