"""LRA Image: grayscale CIFAR-10 as a sequence of 1024 pixels (Krizhevsky 2009; LRA,
arXiv 2011.04006; S4 ``cifar`` with ``grayscale=True``, arXiv 2111.00396).

Reads the CIFAR-10 "python version" batches (``cifar-10-batches-py/data_batch_1..5`` and
``test_batch``: pickled dicts with ``b"data"`` (10000, 3072) uint8 in R, G, B planes and
``b"labels"``). These are pickles, so only point ``root`` at files you trust (as with
torchvision's loader). Gray = ITU-R 601-2 luma with PIL's integer rounding
(``(19595 R + 38470 G + 7471 B + 2^15) >> 16``, what ``PIL.Image.convert("L")`` and torchvision's
``Grayscale`` give), row-major, normalised as S4: ``(p - 122.6) / 61.0``.

Splits as S4: ``val`` is ``int(0.1 * 50000)`` training images chosen by ``torch.randperm`` under
``split_seed`` = 42 (its ``random_split`` of the train set), ``train`` the other 45000, ``test`` the
test batch.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import torch

from .base import check_split, format_error, require_files, resolve_root, s4_split
from .cache import ArrayCache, default_cache_root, source_fingerprint

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)
MEAN, STD = 122.6, 61.0

LAYOUT = """  <root>/cifar-10-batches-py/     (cifar-10-python.tar.gz, extracted; `subdir` to change)
    data_batch_1 ... data_batch_5 pickled dicts: b"data" (10000, 3072) uint8 (R, G, B planes), b"labels"
    test_batch
  Download: https://www.cs.toronto.edu/~kriz/cifar.html (CIFAR-10 python version)"""


def rgb_to_gray(rgb: np.ndarray) -> np.ndarray:
    """(N, 3072) uint8 R, G, B planes -> (N, 1024) uint8 luma, rounded exactly as PIL's "L"."""
    r, g, b = (rgb[:, k * 1024:(k + 1) * 1024].astype(np.uint32) for k in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)


def read_cifar_batch(path: Path, *, gray: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(pixels, labels) of one batch file, validated: (N, 1024) uint8 luma (``gray``) or the
    (N, 3072) uint8 R, G, B planes as stored, and (N,) int64 classes."""
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError, KeyError) as err:
        raise format_error(path, None, f"not a CIFAR-10 python batch (unpickling failed: {type(err).__name__}: {err})") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise format_error(path, None, f'expected a dict with keys b"data" and b"labels", got {keys}')
    data, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise format_error(path, None, f'b"data" must be (N, 3072) uint8, got {data.shape} {data.dtype}')
    if labels.shape != (data.shape[0],):
        raise format_error(path, None, f'b"labels" must have one label per image ({data.shape[0]}), got shape {labels.shape}')
    bad = np.flatnonzero((labels < 0) | (labels > 9))
    if bad.size:
        raise format_error(path, None, f'b"labels"[{bad[0]}] = {labels[bad[0]]} is not a class 0-9')
    return (rgb_to_gray(data) if gray else data), labels.astype(np.int64)


class Image(torch.utils.data.Dataset):
    """LRA Image, split ``split``; item ``(x (1024, 1) float, y () long in 0..9, length = 1024)``."""

    task = "image"
    n_classes = 10
    length = 1024
    cache_key = {"gray": "pil-L"}  # what the cached arrays hold (part of the cache entry's key)

    def __init__(self, split: str = "train", *, root: str | os.PathLike | None = None,
                 subdir: str = "cifar-10-batches-py", val_split: float = 0.1, split_seed: int = 42,
                 cache_dir: str | os.PathLike | None = None):
        owner = type(self).__name__
        check_split(owner, split)
        if not 0.0 <= val_split < 1.0:
            raise ValueError(f"{owner}: `val_split` must be in [0, 1), got {val_split}")
        self.root = resolve_root(root)
        self.data_dir = self.root / subdir
        files = [self.data_dir / name for name in TRAIN_BATCHES + TEST_BATCHES]
        require_files(owner, files, LAYOUT)
        cache = ArrayCache(default_cache_root(self.root, cache_dir), self.task,
                           {"sources": source_fingerprint(files, self.data_dir), **self.cache_key})
        self._arrays = cache.load() or self._build(cache)
        self.split = split
        part = "test" if split == "test" else "train"
        self._prefix = f"{part}_"
        self._indices = None
        if part == "train" and val_split > 0:
            n = len(self._arrays["train_labels"])
            train_idx, val_idx = s4_split(n, [1.0 - val_split, val_split], split_seed)
            self._indices = train_idx if split == "train" else val_idx
        elif split == "val":
            raise ValueError(f"{owner}: split 'val' needs `val_split` > 0")
        self._n = len(self._indices) if self._indices is not None else len(self._arrays[f"{part}_labels"])

    def _build(self, cache: ArrayCache):
        for part, names in (("train", TRAIN_BATCHES), ("test", TEST_BATCHES)):
            batches = [read_cifar_batch(self.data_dir / name) for name in names]
            cache.save(f"{part}_pixels", np.concatenate([b[0] for b in batches]))
            cache.save(f"{part}_labels", np.concatenate([b[1] for b in batches]))
        return cache.commit({})

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int):
        if not -self._n <= i < self._n:
            raise IndexError(f"{type(self).__name__}: index {i} out of range for {self._n} examples")
        i %= self._n
        j = int(self._indices[i]) if self._indices is not None else i
        pixels = torch.from_numpy(np.array(self._arrays[f"{self._prefix}pixels"][j], dtype=np.float32))
        x = ((pixels - MEAN) / STD).unsqueeze(-1)  # (1024, 1)
        y = torch.tensor(int(self._arrays[f"{self._prefix}labels"][j]), dtype=torch.long)
        return x, y, torch.tensor(self.length, dtype=torch.long)
