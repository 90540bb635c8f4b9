"""Data the package generates itself, so every experiment type runs offline.

- ``MarkerClassification``: classify which of ``n_classes`` short patterns is hidden at a random
  position in a long noisy sequence (chance = 1/n_classes). The pattern can sit anywhere, so a
  model must carry it across the sequence to its pooled output.
- ``SineTokens``: 8-bit mu-law tokens of random sums of sinusoids, for autoregressive modelling
  with a 256-way softmax (the audio-LM task shape).
- ``SeasonalSeries``: lag/horizon windows of a random series with trend, two seasonalities and
  noise, for forecasting.

Every dataset is a deterministic function of its seed and split: the same arguments give the
same tensors on every machine.
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import Dataset

SPLITS = ("train", "val", "test")
_SPLIT_OFFSET = {"train": 0, "val": 1_000_003, "test": 2_000_006}


def _generator(seed: int, split: str) -> torch.Generator:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return torch.Generator().manual_seed(seed + _SPLIT_OFFSET[split])


class MarkerClassification(Dataset):
    """x: (L, 1) float, y: int label. A burst of ``pattern_length`` steps, the class's tone
    (class c oscillates c + 1 times over the burst, under a Hann window) scaled by ``amplitude``,
    is added to N(0, 1) noise at a uniformly random offset."""

    def __init__(self, split: str = "train", *, size: int = 4000, length: int = 256, n_classes: int = 10,
                 pattern_length: int = 32, amplitude: float = 3.0, seed: int = 0):
        if not 1 <= pattern_length <= length:
            raise ValueError(f"pattern_length must be in [1, length={length}], got {pattern_length}")
        j = torch.arange(pattern_length, dtype=torch.float32)
        cycles = torch.arange(1, n_classes + 1, dtype=torch.float32)[:, None]
        window = torch.sin(math.pi * (j + 0.5) / pattern_length) ** 2
        templates = window * torch.sin(2 * math.pi * cycles * j / pattern_length) * math.sqrt(2)  # (C, P)
        g = _generator(seed, split)
        self.y = torch.randint(0, n_classes, (size,), generator=g)
        x = torch.randn(size, length, generator=g)
        offsets = torch.randint(0, length - pattern_length + 1, (size,), generator=g)
        idx = offsets[:, None] + torch.arange(pattern_length)  # (size, P)
        x.scatter_add_(1, idx, amplitude * templates[self.y])
        self.x = x.unsqueeze(-1)  # (size, L, 1)
        self.n_classes, self.length = n_classes, length

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def mu_law_encode(x: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """[-1, 1] floats -> integer codes in [0, 2^bits)."""
    mu = 2**bits - 1
    y = torch.sign(x) * torch.log1p(mu * x.abs().clamp(max=1)) / math.log1p(mu)
    return ((y + 1) / 2 * mu + 0.5).long().clamp(0, mu)


def mu_law_decode(q: torch.Tensor, bits: int = 8) -> torch.Tensor:
    mu = 2**bits - 1
    y = q.float() / mu * 2 - 1
    return torch.sign(y) * ((1 + mu) ** y.abs() - 1) / mu


class SineTokens(Dataset):
    """(tokens[:-1], tokens[1:]) pairs of length ``length`` from mu-law coded sums of sinusoids."""

    def __init__(self, split: str = "train", *, size: int = 512, length: int = 512, n_tones: int = 3, seed: int = 0):
        g = _generator(seed, split)
        t = torch.arange(length + 1, dtype=torch.float32)
        freq = torch.rand(size, n_tones, 1, generator=g) * 0.2 + 0.01  # cycles per step
        phase = torch.rand(size, n_tones, 1, generator=g) * 2 * math.pi
        amp = torch.rand(size, n_tones, 1, generator=g) / n_tones
        wave = (amp * torch.sin(2 * math.pi * freq * t + phase)).sum(1)  # (size, L+1)
        self.tokens = mu_law_encode(wave)

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, i):
        return self.tokens[i, :-1], self.tokens[i, 1:]


class SeasonalSeries(Dataset):
    """(lag window (lag, 1), horizon targets (horizon, 1)) from one long random seasonal series,
    split chronologically 70/10/20 and standardised with the training part's statistics."""

    def __init__(self, split: str = "train", *, lag: int = 96, horizon: int = 24, total: int = 4000,
                 period: int = 24, stride: int = 1, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        t = torch.arange(total, dtype=torch.float32)
        series = (0.002 * t + torch.sin(2 * math.pi * t / period) + 0.5 * torch.sin(2 * math.pi * t / (7 * period))
                  + 0.2 * torch.randn(total, generator=g))
        a, b = int(0.7 * total), int(0.8 * total)
        train = series[:a]
        series = (series - train.mean()) / train.std()
        start, end = {"train": (0, a), "val": (a - lag, b), "test": (b - lag, total)}[split]
        part = series[start:end]
        n = (len(part) - lag - horizon) // stride + 1
        if n < 1:
            raise ValueError(f"SeasonalSeries: split {split!r} is too short for lag={lag} + horizon={horizon}")
        idx = torch.arange(n)[:, None] * stride + torch.arange(lag + horizon)
        windows = part[idx]  # (n, lag + horizon)
        self.x, self.y = windows[:, :lag, None], windows[:, lag:, None]
        self.period = period  # the season (ssm-train's seasonal-naive baseline uses it)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]
