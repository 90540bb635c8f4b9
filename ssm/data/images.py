"""Sequential image classification: images read pixel by pixel as one long sequence (S4,
arXiv 2111.00396, Section 4.2; S4D, arXiv 2206.11893).

- ``SequentialCIFAR`` (sCIFAR): CIFAR-10 in colour, 1024 steps of 3 channels (R, G, B) in row-major
  pixel order, each channel normalised with the CIFAR-10 mean and std. It reads the same
  "python version" batches as LRA Image (``ssm.data.lra.Image``, the grayscale variant) with the
  same reader, cache and split.
- ``SequentialMNIST`` (sMNIST, and psMNIST with ``permutation``): MNIST digits as 784 steps of one
  channel in [0, 1], from the original idx files (optionally gzipped).

Conventions follow the S4 repository (state-spaces/s4 @e757cef, ``src/dataloaders/basic.py``):
sCIFAR normalises with mean (0.4914, 0.4822, 0.4465) and std (0.247, 0.243, 0.261) on the [0, 1]
scale, sMNIST is not normalised, and ``val`` is ``int(0.1 * n_train)`` training images drawn by
``torch.randperm`` under ``split_seed`` = 42 (its ``random_split``; ``ssm.data.lra.base.s4_split``).
Items are ``(x (L, C) float32, y () long)``.
"""

from __future__ import annotations

import gzip
import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from ..checks import check_choice
from .lra.base import check_split, format_error, resolve_root, s4_split
from .lra.cache import ArrayCache
from .lra.image import TEST_BATCHES, TRAIN_BATCHES, Image, read_cifar_batch

Permutation = Literal["random", "bitreversal"]
PERMUTATIONS: tuple[str, ...] = ("random", "bitreversal")


class SequentialCIFAR(Image):
    """sCIFAR, split ``split``; item ``(x (1024, 3) float, y () long in 0..9)``.

    Same files, ``root``/``subdir`` and 45k/5k/10k split as ``ssm.data.lra.Image``; the decoded
    RGB planes are cached beside LRA Image's gray ones (``<root>/.ssm_cache/scifar``).
    """

    task = "scifar"
    cache_key = {"pixels": "rgb-planes"}
    labels = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")  # class names
    channels = 3
    MEAN = np.array([0.4914, 0.4822, 0.4465], dtype=np.float32)
    STD = np.array([0.247, 0.243, 0.261], dtype=np.float32)

    def _build(self, cache: ArrayCache):
        for part, names in (("train", TRAIN_BATCHES), ("test", TEST_BATCHES)):
            batches = [read_cifar_batch(self.data_dir / name, gray=False) for name in names]
            cache.save(f"{part}_pixels", np.concatenate([b[0] for b in batches]))  # (N, 3072): R, G, B planes
            cache.save(f"{part}_labels", np.concatenate([b[1] for b in batches]))
        return cache.commit({})

    def __getitem__(self, i: int):
        if not -self._n <= i < self._n:
            raise IndexError(f"{type(self).__name__}: index {i} out of range for {self._n} examples")
        i %= self._n
        j = int(self._indices[i]) if self._indices is not None else i
        planes = np.asarray(self._arrays[f"{self._prefix}pixels"][j], dtype=np.float32).reshape(3, 1024)  # (C, L)
        x = (planes.T / 255.0 - self.MEAN) / self.STD  # (L, C): pixel (row, col) at step 32 row + col
        y = torch.tensor(int(self._arrays[f"{self._prefix}labels"][j]), dtype=torch.long)
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), y


# -- MNIST ---------------------------------------------------------------------------------------

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MNIST_LAYOUT = """  <root>/MNIST/raw/     (`subdir` to change; torchvision's layout)
    train-images-idx3-ubyte  train-labels-idx1-ubyte  t10k-images-idx3-ubyte  t10k-labels-idx1-ubyte
    (each may instead be gzipped, with the .gz suffix, as distributed)
  Download: the four files of the MNIST database (LeCun, Cortes, Burges)"""
_IDX_MAGIC = {3: 0x00000803, 1: 0x00000801}  # unsigned-byte data, 3 or 1 dimensions


def bit_reversal_permutation(n: int) -> np.ndarray:
    """The indices 0..n-1 in bit-reversed order of ceil(log2 n) bits, those >= n left out (the
    S4 repository's psMNIST permutation, ``src/utils/permutations.py``)."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"bit_reversal_permutation: `n` must be a positive int, got {n!r}")
    bits = max(1, (n - 1).bit_length())
    order = np.array([int(format(i, f"0{bits}b")[::-1], 2) for i in range(1 << bits)], dtype=np.int64)
    return order[order < n]


def random_permutation(n: int, seed: int) -> np.ndarray:
    """``numpy.random.RandomState(seed).permutation(n)``: the legacy generator, whose stream numpy
    keeps fixed across versions, so a seed names the same permutation everywhere (seed 92916 is
    the one an earlier psMNIST literature used, as the S4 repository notes)."""
    return np.random.RandomState(seed).permutation(n).astype(np.int64)


def _find(directory: Path, name: str) -> Path | None:
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An idx file of unsigned bytes with ``ndim`` dimensions (gzipped if it ends in .gz), validated."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:  # a truncated or non-gzip .gz file
        raise format_error(path, None, f"cannot read the file ({type(err).__name__}: {err})") from None
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise format_error(path, None, f"{len(raw)} bytes is shorter than an idx header with {ndim} dimensions")
    magic = int.from_bytes(raw[:4], "big")
    if magic != _IDX_MAGIC[ndim]:
        raise format_error(path, None, f"idx magic number 0x{magic:08x}, expected 0x{_IDX_MAGIC[ndim]:08x} "
                                       f"(unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''})")
    shape = tuple(int.from_bytes(raw[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim))
    size = int(np.prod(shape))
    if len(raw) - head != size:
        raise format_error(path, None, f"the header says {shape} = {size} bytes of data, "
                                       f"the file holds {len(raw) - head}")
    return np.frombuffer(raw, dtype=np.uint8, offset=head).reshape(shape)


@lru_cache(maxsize=4)
def _read_mnist_part(images: Path, labels: Path, stamps: tuple) -> tuple[np.ndarray, np.ndarray]:
    x, y = read_idx(images, 3), read_idx(labels, 1)
    if len(x) != len(y):
        raise format_error(labels, None, f"{len(y)} labels for the {len(x)} images of {images.name}")
    bad = np.flatnonzero(y > 9)
    if bad.size:
        raise format_error(labels, None, f"label {bad[0]} is {y[bad[0]]}, not a digit 0-9")
    return x.reshape(len(x), -1), y.astype(np.int64)  # (N, rows * cols), (N,)


class SequentialMNIST(Dataset):
    """sMNIST (``permutation=None``) or psMNIST, split ``split``; item ``(x (784, 1) float in [0, 1], y)``.

    ``permutation``: ``"random"`` is ``random_permutation(784, permutation_seed)``;
    ``"bitreversal"`` is the S4 repository's fixed permutation. The same permutation reorders every
    image of every split (``self.permutation``, None for sMNIST).
    """

    n_classes = 10
    labels = tuple(str(d) for d in range(10))  # class names

    def __init__(self, split: str = "train", *, root: str | os.PathLike | None = None, subdir: str = "MNIST/raw",
                 permutation: Permutation | None = None, permutation_seed: int = 0, val_split: float = 0.1,
                 split_seed: int = 42):
        owner = type(self).__name__
        check_split(owner, split)
        if permutation is not None:
            check_choice(owner, "permutation", permutation, PERMUTATIONS)
        if not 0.0 <= val_split < 1.0:
            raise ValueError(f"{owner}: `val_split` must be in [0, 1), got {val_split}")
        self.data_dir = resolve_root(root) / subdir
        part = "test" if split == "test" else "train"
        found = [_find(self.data_dir, name) for name in MNIST_FILES[part]]
        for name, path in zip(MNIST_FILES[part], found):
            if path is None:
                raise FileNotFoundError(f"{owner}: missing {self.data_dir / name} (or {name}.gz)\nExpected layout "
                                        f"under the data root (constructor `root`, config `data_root`, or "
                                        f"$SSM_DATA_ROOT):\n{MNIST_LAYOUT}")
        stamps = tuple(os.stat(p).st_mtime_ns for p in found)
        self._pixels, self._labels = _read_mnist_part(found[0], found[1], stamps)
        self.length = self._pixels.shape[1]
        if permutation == "random":
            self.permutation = random_permutation(self.length, permutation_seed)
        elif permutation == "bitreversal":
            self.permutation = bit_reversal_permutation(self.length)
        else:
            self.permutation = None
        self._indices = None
        if part == "train" and val_split > 0:
            train_idx, val_idx = s4_split(len(self._labels), [1.0 - val_split, val_split], split_seed)
            self._indices = train_idx if split == "train" else val_idx
        elif split == "val":
            raise ValueError(f"{owner}: split 'val' needs `val_split` > 0")
        self.split = split

    def __len__(self) -> int:
        return len(self._indices) if self._indices is not None else len(self._labels)

    @property
    def targets(self) -> np.ndarray:
        """(N,) the class of every item."""
        return self._labels[self._indices] if self._indices is not None else self._labels

    def __getitem__(self, i: int):
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"{type(self).__name__}: index {i} out of range for {n} examples")
        i %= n
        j = int(self._indices[i]) if self._indices is not None else i
        pixels = self._pixels[j] if self.permutation is None else self._pixels[j][self.permutation]  # (L,)
        x = torch.from_numpy(pixels.astype(np.float32) / 255.0).unsqueeze(-1)  # (L, 1)
        return x, torch.tensor(int(self._labels[j]), dtype=torch.long)
