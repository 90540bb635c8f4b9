"""LRA Retrieval: do two ACL Anthology Network papers cite each other? (Radev et al. 2013; LRA,
arXiv 2011.04006). Byte/character-level, each document cut to ``l_max`` = 4000 tokens.

Reads the release files ``new_aan_pairs.{train,eval,test}.tsv``: no header, five tab-separated
columns ``label id1 id2 text1 text2`` (label 0/1, possibly written as a float such as ``1.0``);
``eval`` is the validation split. One vocabulary, built from both texts of the train split
(``<pad> <unk> <eos>`` first; S4 uses characters with no frequency cut, ``min_freq=1``).
Items: ``x (2, l_max)`` long, ``y ()`` long, ``length (2,)``; the model encodes the two rows with
one shared encoder (``ssm.models.retrieval.RetrievalClassifier``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ...checks import check_choice
from .base import (
    RELEASE_URL,
    CharEncoder,
    TokenDataset,
    Vocab,
    char_token,
    check_split,
    check_vocab_size,
    codepoints,
    count_codepoints,
    finish_ids,
    format_error,
    pack,
    padded,
    read_lines,
    require_files,
    resolve_root,
    token_dtype,
)
from .cache import ArrayCache, default_cache_root, source_fingerprint

Level = Literal["char", "byte"]
FILES = {"train": "new_aan_pairs.train.tsv", "val": "new_aan_pairs.eval.tsv", "test": "new_aan_pairs.test.tsv"}

LAYOUT = f"""  <root>/aan/                     (the release's lra_release/tsv_data/; `subdir` to change)
    new_aan_pairs.train.tsv       no header; per line: label<TAB>id1<TAB>id2<TAB>text1<TAB>text2
    new_aan_pairs.eval.tsv        (the validation split)
    new_aan_pairs.test.tsv
  Download: {RELEASE_URL}"""


def parse_aan_file(path: Path, *, level: str, keep: int) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    docs1, docs2, labels = [], [], []
    with open(path, "rb") as f:
        for lineno, line in enumerate(read_lines(path, f), start=1):
            fields = line.split("\t")
            if len(fields) != 5:
                raise format_error(path, lineno, f"expected 5 tab-separated columns (label, id1, id2, text1, text2), got {len(fields)}")
            try:
                value = float(fields[0])
            except ValueError:
                value = -1.0
            if value not in (0.0, 1.0):
                raise format_error(path, lineno, f"label must be 0 or 1, got {fields[0]!r}")
            docs1.append(codepoints(fields[3], level=level)[:keep])
            docs2.append(codepoints(fields[4], level=level)[:keep])
            labels.append(int(value))
    if not labels:
        raise format_error(path, None, "no examples; expected one tab-separated pair per line")
    return docs1, docs2, np.array(labels, dtype=np.int64)


class Retrieval(TokenDataset):
    """LRA Retrieval (AAN), split ``split``; item ``(x (2, l_max) long, y () long, length (2,) long)``."""

    task = "retrieval"
    n_classes = 2

    def __init__(self, split: str = "train", *, root: str | os.PathLike | None = None, subdir: str = "aan",
                 l_max: int = 4000, level: Level = "char", min_freq: int = 1, append_eos: bool = True,
                 max_vocab: int | None = None, cache_dir: str | os.PathLike | None = None):
        owner = type(self).__name__
        check_split(owner, split)
        check_choice(owner, "level", level, Level)
        if l_max < 2 or min_freq < 1:
            raise ValueError(f"{owner}: `l_max` must be >= 2 and `min_freq` >= 1, got {l_max}, {min_freq}")
        self.root = resolve_root(root)
        self.data_dir = self.root / subdir
        self.split, self.l_max, self.level, self.min_freq, self.append_eos = split, l_max, level, min_freq, append_eos
        files = {s: self.data_dir / name for s, name in FILES.items()}
        require_files(owner, list(files.values()), LAYOUT)
        cache = ArrayCache(default_cache_root(self.root, cache_dir), self.task, {
            "sources": source_fingerprint(files.values(), self.data_dir),
            "l_max": l_max, "level": level, "min_freq": min_freq, "append_eos": append_eos,
        })
        arrays = cache.load() or self._build(cache, files)
        self.vocab = Vocab.from_itos(arrays.meta["vocab"], append_eos=append_eos)
        check_vocab_size(owner, self.vocab, max_vocab)
        self._bind(arrays, f"{split}_")

    def _build(self, cache: ArrayCache, files: dict):
        keep = self.l_max - int(self.append_eos)
        parsed = {s: parse_aan_file(path, level=self.level, keep=keep) for s, path in files.items()}
        counts = count_codepoints(parsed["train"][0] + parsed["train"][1])
        vocab = Vocab.from_counts({char_token(c, self.level): n for c, n in counts.items()},
                                  min_freq=self.min_freq, append_eos=self.append_eos)
        encode = CharEncoder(vocab, level=self.level)
        dtype = token_dtype(len(vocab))
        for split, (docs1, docs2, labels) in parsed.items():
            for k, docs in ((1, docs1), (2, docs2)):
                flat, offsets = pack([finish_ids(encode(d), l_max=self.l_max, eos_id=vocab.eos_id) for d in docs], dtype)
                cache.save(f"{split}_tokens{k}", flat)
                cache.save(f"{split}_offsets{k}", offsets)
            cache.save(f"{split}_labels", labels)
        return cache.commit({"vocab": vocab.itos})

    def __getitem__(self, i: int):
        j = self._row(i)
        a, p = self._arrays, self._prefix
        x1, n1 = padded(a[f"{p}tokens1"], a[f"{p}offsets1"], j, self.l_max)
        x2, n2 = padded(a[f"{p}tokens2"], a[f"{p}offsets2"], j, self.l_max)
        y = torch.tensor(int(a[f"{p}labels"][j]), dtype=torch.long)
        return torch.stack([x1, x2]), y, torch.stack([n1, n2])  # (2, l_max), (), (2,)
