"""In-memory long-range memory tasks, deterministic functions of ``(seed, split)``.

Each item is the 3-tuple ``(x, y, length)`` of the LRA loaders.

- ``Copying`` (Hochreiter & Schmidhuber 1997; the uRNN form of Arjovsky, Shah & Bengio,
  arXiv 1511.06464): ``n_copy`` symbols from 1..``n_symbols``, ``delay - 1`` blanks (0), a
  delimiter (``n_symbols + 1``) then ``n_copy`` blanks; the model must output the symbols on the
  last ``n_copy`` steps (those after the delimiter). ``x (delay + 2 n_copy,)`` long, ``y (n_copy,)`` long (symbols in order).
- ``SelectiveCopying`` (Jing et al., arXiv 1706.02761; the version of Mamba, Gu & Dao,
  arXiv 2312.00752 Sec. 3.1): ``n_copy`` symbols at random distinct positions of a blank body of
  ``body`` steps, then ``n_copy`` recall tokens (``n_symbols + 1``); the model must output the
  symbols in order of position on the recall steps. ``x (body + n_copy,)``, ``y (n_copy,)``.
- ``Adding`` (Hochreiter & Schmidhuber 1997; Le, Jaitly & Hinton, arXiv 1504.00941): channel 0 is
  U(0, 1) noise, channel 1 marks one step in each half of the sequence with 1; the target is the
  sum of the two marked values (regression; predicting 1 scores MSE ~0.167).
  ``x (length, 2)`` float, ``y ()`` float.

Vocabulary of the token tasks: 0 = blank, 1..n_symbols = data, n_symbols + 1 = delimiter/recall,
so ``vocab_size = n_symbols + 2``; outputs are read on the last ``n_copy`` steps.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from .base import check_split

_SPLIT_OFFSET = {"train": 0, "val": 1_000_003, "test": 2_000_006}


def _generator(owner: str, seed: int, split: str) -> torch.Generator:
    check_split(owner, split)
    return torch.Generator().manual_seed(seed + _SPLIT_OFFSET[split])


class _Tensors(Dataset):
    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i], self.lengths[i]


class Copying(_Tensors):
    def __init__(self, split: str = "train", *, size: int = 10_000, n_symbols: int = 8, n_copy: int = 10,
                 delay: int = 1000, seed: int = 0):
        if n_symbols < 1 or n_copy < 1 or delay < 1:
            raise ValueError(f"Copying: need n_symbols, n_copy, delay >= 1, got {n_symbols}, {n_copy}, {delay}")
        g = _generator("Copying", seed, split)
        self.vocab_size, self.n_copy = n_symbols + 2, n_copy
        L = delay + 2 * n_copy
        self.y = torch.randint(1, n_symbols + 1, (size, n_copy), generator=g)
        self.x = torch.zeros(size, L, dtype=torch.long)
        self.x[:, :n_copy] = self.y
        self.x[:, n_copy + delay - 1] = n_symbols + 1
        self.lengths = torch.full((size,), L, dtype=torch.long)


class SelectiveCopying(_Tensors):
    def __init__(self, split: str = "train", *, size: int = 10_000, n_symbols: int = 8, n_copy: int = 16,
                 body: int = 4096, seed: int = 0):
        if n_symbols < 1 or not 1 <= n_copy <= body:
            raise ValueError(f"SelectiveCopying: need n_symbols >= 1 and 1 <= n_copy <= body, got {n_symbols}, {n_copy}, {body}")
        g = _generator("SelectiveCopying", seed, split)
        self.vocab_size, self.n_copy = n_symbols + 2, n_copy
        positions = torch.rand(size, body, generator=g).argsort(1)[:, :n_copy].sort(1).values  # (size, n_copy)
        self.y = torch.randint(1, n_symbols + 1, (size, n_copy), generator=g)
        self.x = torch.zeros(size, body + n_copy, dtype=torch.long)
        self.x.scatter_(1, positions, self.y)
        self.x[:, body:] = n_symbols + 1
        self.lengths = torch.full((size,), body + n_copy, dtype=torch.long)


class Adding(_Tensors):
    def __init__(self, split: str = "train", *, size: int = 10_000, length: int = 1000, seed: int = 0):
        if length < 2:
            raise ValueError(f"Adding: `length` must be >= 2, got {length}")
        g = _generator("Adding", seed, split)
        half = length // 2
        values = torch.rand(size, length, generator=g)
        first = torch.randint(0, half, (size,), generator=g)
        second = torch.randint(half, length, (size,), generator=g)
        marks = torch.zeros(size, length)
        rows = torch.arange(size)
        marks[rows, first] = 1.0
        marks[rows, second] = 1.0
        self.x = torch.stack([values, marks], dim=-1)  # (size, L, 2)
        self.y = values[rows, first] + values[rows, second]
        self.lengths = torch.full((size,), length, dtype=torch.long)
