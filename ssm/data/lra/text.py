"""LRA Text: byte/character-level IMDB sentiment (Maas et al. 2011; LRA, arXiv 2011.04006).

Reads the standard ``aclImdb`` archive layout (``{train,test}/{pos,neg}/<id>_<rating>.txt``;
label 1 = pos, 0 = neg). Documents are cut to ``l_max`` = 4096 tokens (``<eos>`` included).
``level="char"`` (default, as S4) tokenises unicode characters and keeps those seen at least
``min_freq`` = 15 times in train (rarer ones map to ``<unk>``); ``level="byte"`` tokenises the
UTF-8 bytes (LRA's byte encoder) with the same frequency rule.

Validation split: by default ``val`` is the test set, as in LRA and S4 (``val_split=0``, whose
IMDB loader uses the test set for validation). ``val_split=f > 0`` instead holds out
``int(f * 25000)`` training documents chosen by ``torch.randperm`` under ``split_seed``
(S4's ``random_split`` convention) and trains on the rest.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

import numpy as np

from ...checks import check_choice
from .base import (
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
    require_files,
    resolve_root,
    s4_split,
    token_dtype,
)
from .cache import ArrayCache, default_cache_root, source_fingerprint

Level = Literal["char", "byte"]
LABEL_DIRS = (("neg", 0), ("pos", 1))

LAYOUT = """  <root>/aclImdb/                 (the IMDB archive aclImdb_v1.tar.gz, extracted; `subdir` to change)
    train/pos/<id>_<rating>.txt   one review per file, UTF-8; label 1
    train/neg/<id>_<rating>.txt   label 0
    test/pos/*.txt, test/neg/*.txt
  Download: https://ai.stanford.edu/~amaas/data/sentiment/ (LRA Text uses this archive)"""


def _natural_key(path: Path):
    m = re.match(r"(\d+)_", path.name)
    return (0, int(m.group(1)), path.name) if m else (1, 0, path.name)


def list_imdb_files(data_dir: Path, part: str) -> list[tuple[Path, int]]:
    files = []
    for name, label in LABEL_DIRS:
        directory = data_dir / part / name
        found = sorted((p for p in directory.iterdir() if p.suffix == ".txt"), key=_natural_key)
        if not found:
            raise FileNotFoundError(f"Text: no *.txt reviews in {directory}\nExpected layout:\n{LAYOUT}")
        files += [(p, label) for p in found]
    return files


def read_review(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise format_error(path, line, f"not valid UTF-8 ({err.reason} at byte {err.start})") from None


def parse_imdb(files: list[tuple[Path, int]], *, level: str, keep: int) -> tuple[list[np.ndarray], np.ndarray]:
    docs = [codepoints(read_review(p), level=level)[:keep] for p, _ in files]
    return docs, np.array([label for _, label in files], dtype=np.int64)


class Text(TokenDataset):
    """LRA Text (IMDB), split ``split``; item ``(x (l_max,) long, y () long in {0, 1}, length)``."""

    task = "text"
    n_classes = 2

    def __init__(self, split: str = "train", *, root: str | os.PathLike | None = None, subdir: str = "aclImdb",
                 l_max: int = 4096, level: Level = "char", min_freq: int = 15, append_eos: bool = True,
                 val_split: float = 0.0, split_seed: int = 42, max_vocab: int | None = None,
                 cache_dir: str | os.PathLike | None = None):
        owner = type(self).__name__
        check_split(owner, split)
        check_choice(owner, "level", level, Level)
        if l_max < 2 or min_freq < 1:
            raise ValueError(f"{owner}: `l_max` must be >= 2 and `min_freq` >= 1, got {l_max}, {min_freq}")
        if not 0.0 <= val_split < 1.0:
            raise ValueError(f"{owner}: `val_split` must be in [0, 1), got {val_split}")
        self.root = resolve_root(root)
        self.data_dir = self.root / subdir
        self.split, self.l_max, self.level, self.min_freq, self.append_eos = split, l_max, level, min_freq, append_eos
        require_files(owner, [self.data_dir / p / n for p in ("train", "test") for n, _ in LABEL_DIRS], LAYOUT)
        files = {part: list_imdb_files(self.data_dir, part) for part in ("train", "test")}
        cache = ArrayCache(default_cache_root(self.root, cache_dir), self.task, {
            "sources": source_fingerprint((p for part in files.values() for p, _ in part), self.data_dir),
            "l_max": l_max, "level": level, "min_freq": min_freq, "append_eos": append_eos,
        })
        arrays = cache.load() or self._build(cache, files)
        self.vocab = Vocab.from_itos(arrays.meta["vocab"], append_eos=append_eos)
        check_vocab_size(owner, self.vocab, max_vocab)

        if split == "test" or (split == "val" and val_split == 0.0):
            self._bind(arrays, "test_")
        elif val_split == 0.0:
            self._bind(arrays, "train_")
        else:
            n = len(arrays["train_labels"])
            train_idx, val_idx = s4_split(n, [1.0 - val_split, val_split], split_seed)
            self._bind(arrays, "train_", train_idx if split == "train" else val_idx)

    def _build(self, cache: ArrayCache, files: dict):
        keep = self.l_max - int(self.append_eos)
        parsed = {part: parse_imdb(f, level=self.level, keep=keep) for part, f in files.items()}
        counts = count_codepoints(parsed["train"][0])
        vocab = Vocab.from_counts({char_token(c, self.level): n for c, n in counts.items()},
                                  min_freq=self.min_freq, append_eos=self.append_eos)
        encode = CharEncoder(vocab, level=self.level)
        dtype = token_dtype(len(vocab))
        for part, (docs, labels) in parsed.items():
            flat, offsets = pack([finish_ids(encode(d), l_max=self.l_max, eos_id=vocab.eos_id) for d in docs], dtype)
            cache.save(f"{part}_tokens", flat)
            cache.save(f"{part}_offsets", offsets)
            cache.save(f"{part}_labels", labels)
        return cache.commit({"vocab": vocab.itos})
