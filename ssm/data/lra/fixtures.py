"""Random stand-ins for the downloaded LRA sources (IMDB, AAN, CIFAR-10), written in the exact
release formats: for loader benchmarks and smoke runs without the real data. The content is
noise (labels are not learnable); ListOps and Pathfinder have real generators in
``ssm.data.lra.generators``.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

_ALPHABET = np.array(list("abcdefghijklmnopqrstuvwxyz     .,'!?ABCDEFGHIJ0123456789"))


def _text(rng: np.random.Generator, low: int, high: int) -> str:
    return "".join(rng.choice(_ALPHABET, size=int(rng.integers(low, high + 1)))).strip() or "x"


def write_imdb(directory: str | os.PathLike, *, n_per_class: int = 50, min_chars: int = 200, max_chars: int = 3000,
               seed: int = 0) -> Path:
    """``directory/{train,test}/{pos,neg}/<id>_<rating>.txt``."""
    directory, rng = Path(directory), np.random.default_rng(seed)
    for part in ("train", "test"):
        for label in ("pos", "neg"):
            d = directory / part / label
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n_per_class):
                rating = int(rng.integers(7, 11)) if label == "pos" else int(rng.integers(1, 5))
                (d / f"{i}_{rating}.txt").write_text(_text(rng, min_chars, max_chars), encoding="utf-8")
    return directory


def write_aan(directory: str | os.PathLike, *, n_train: int = 100, n_val: int = 20, n_test: int = 20,
              min_chars: int = 500, max_chars: int = 6000, seed: int = 0) -> Path:
    """``directory/new_aan_pairs.{train,eval,test}.tsv``: label, id1, id2, text1, text2."""
    directory, rng = Path(directory), np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", n_train), ("eval", n_val), ("test", n_test)):
        lines = [f"{float(rng.integers(2))}\tP{2 * i}\tP{2 * i + 1}\t{_text(rng, min_chars, max_chars)}\t"
                 f"{_text(rng, min_chars, max_chars)}" for i in range(n)]
        (directory / f"new_aan_pairs.{name}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory


def write_cifar(directory: str | os.PathLike, *, n_per_batch: int = 100, seed: int = 0) -> Path:
    """``directory/{data_batch_1..5,test_batch}``: pickled dicts with b"data" (n, 3072) uint8, b"labels"."""
    directory, rng = Path(directory), np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"batch_label": name.encode(), b"labels": rng.integers(0, 10, n_per_batch).tolist(),
                 b"data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
                 b"filenames": [f"img_{i}.png".encode() for i in range(n_per_batch)]}
        with open(directory / name, "wb") as f:
            pickle.dump(batch, f)
    return directory
