"""Task types: the loss and the metrics of a run, independent of the model and the data.

- ``Classification``: cross-entropy on pooled outputs; accuracy.
- ``LanguageModel``: next-token cross-entropy with a ``vocab``-way softmax on per-step outputs;
  NLL reported in bits per token (the audio-LM metric of SaShiMi, arXiv 2202.09729).
- ``Forecasting``: MSE loss on the last ``horizon`` outputs; MSE and MAE.
Metrics go through torchmetrics so they aggregate correctly over batches and processes.
"""

from __future__ import annotations

import math

import torch
import torchmetrics
from torch import nn
from torch.nn import functional as F


class Task(nn.Module):
    """``loss(output, target)`` and ``metrics()`` (a fresh MetricCollection per stage)."""

    monitor: str = "val/loss"
    monitor_mode: str = "min"

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def metrics(self) -> torchmetrics.MetricCollection:
        raise NotImplementedError

    def metric_inputs(self, output, target):
        return output, target

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """The model's input for a batch's inputs (identity unless the task says otherwise)."""
        return x


class Classification(Task):
    monitor, monitor_mode = "val/accuracy", "max"

    def __init__(self, n_classes: int):
        super().__init__()
        self.n_classes = n_classes

    def loss(self, output, target):
        return F.cross_entropy(output, target)

    def metrics(self):
        return torchmetrics.MetricCollection({"accuracy": torchmetrics.Accuracy(task="multiclass", num_classes=self.n_classes)})


class _BitsPerToken(torchmetrics.MeanMetric):
    """Mean NLL in bits over tokens."""


class LanguageModel(Task):
    monitor, monitor_mode = "val/bits_per_token", "min"

    def __init__(self, vocab: int = 256):
        super().__init__()
        self.vocab = vocab

    def loss(self, output, target):  # output (B, L, V), target (B, L)
        return F.cross_entropy(output.reshape(-1, self.vocab), target.reshape(-1))

    def metrics(self):
        return torchmetrics.MetricCollection({"bits_per_token": _BitsPerToken()})

    def metric_inputs(self, output, target):
        nll = F.cross_entropy(output.reshape(-1, self.vocab), target.reshape(-1), reduction="none") / math.log(2)
        return (nll,)


class Forecasting(Task):
    monitor, monitor_mode = "val/mse", "min"

    def __init__(self, horizon: int, pad_horizon: bool = True):
        super().__init__()
        self.horizon, self.pad_horizon = horizon, pad_horizon

    def prepare(self, x):
        """With ``pad_horizon``, append ``horizon`` zero steps: the model's outputs there are the
        forecast (as S4 does for the Informer benchmarks). Without it the model maps the lag window
        to the forecast itself (SpaceTime)."""
        if not self.pad_horizon:
            return x
        return torch.cat([x, x.new_zeros(x.shape[0], self.horizon, *x.shape[2:])], dim=1)

    def _tail(self, output):  # per-step outputs (B, L, D): the last `horizon` steps predict the horizon
        return output[:, -self.horizon :]

    def loss(self, output, target):
        return F.mse_loss(self._tail(output), target)

    def metrics(self):
        return torchmetrics.MetricCollection({"mse": torchmetrics.MeanSquaredError(), "mae": torchmetrics.MeanAbsoluteError()})

    def metric_inputs(self, output, target):
        return self._tail(output).reshape(-1), target.reshape(-1)
