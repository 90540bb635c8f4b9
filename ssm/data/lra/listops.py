"""LRA ListOps (Nangia & Bowman, arXiv 1804.06028; LRA, arXiv 2011.04006): the value (0-9) of a
nested expression of MIN, MAX, MED (median, floored) and SM (sum mod 10) over digits.

Reads the release files ``basic_{train,val,test}.tsv`` (header ``Source<TAB>Target``). A Source
is written with the generator's parenthesised pair nesting, e.g. ``[MAX 2 9 ]`` is
``( ( ( [MAX 2 ) 9 ) ] )``. Tokens are the whitespace-separated symbols with the parentheses
dropped (they add nothing to the prefix notation; S4 drops them too), so the vocabulary is
``<pad> <unk> <eos>`` + 10 digits + 4 operators + ``]`` = 18 with the default ``append_eos``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .base import (
    RELEASE_URL,
    SPLITS,
    TokenDataset,
    Vocab,
    check_split,
    check_vocab_size,
    finish_ids,
    format_error,
    pack,
    read_lines,
    require_files,
    resolve_root,
    token_dtype,
)
from .cache import ArrayCache, default_cache_root, source_fingerprint

OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")
CLOSE = "]"
PARENS = ("(", ")")
SYMBOLS = tuple(str(d) for d in range(10)) + OPERATORS + (CLOSE,)
_SYMBOL_ID = {s: i for i, s in enumerate(SYMBOLS)}  # ids local to parsing; the vocab comes from train
HEADER = ["Source", "Target"]

LAYOUT = f"""  <root>/listops/                 (the release's lra_release/listops-1000/; `subdir` to change)
    basic_train.tsv               header "Source<TAB>Target", then per line: expression<TAB>value 0-9
    basic_val.tsv                 e.g. "( ( ( [MAX 2 ) 9 ) ] )<TAB>9"
    basic_test.tsv
  Download: {RELEASE_URL}; or generate offline: python -m ssm.data.lra.generators listops --root <root>"""


def listops_tokens(source: str) -> list[str]:
    """The model's tokens of a Source string: its symbols without the parentheses."""
    return [t for t in source.split() if t not in PARENS]


def parse_listops_file(path: Path) -> tuple[list[np.ndarray], np.ndarray]:
    """(per-example arrays of symbol indices into ``SYMBOLS``, labels). Any malformed line raises
    ``LRAFormatError`` naming the file and line."""
    sequences, labels = [], []
    with open(path, "rb") as f:
        for lineno, line in enumerate(read_lines(path, f), start=1):
            fields = line.split("\t")
            if lineno == 1:
                if fields != HEADER:
                    raise format_error(path, 1, f"expected the header 'Source<TAB>Target', got {fields!r}")
                continue
            if len(fields) != 2:
                raise format_error(path, lineno, f"expected 2 tab-separated columns (Source, Target), got {len(fields)}")
            source, target = fields
            try:
                label = int(target)
            except ValueError:
                label = -1
            if not 0 <= label <= 9:
                raise format_error(path, lineno, f"Target must be an integer 0-9, got {target!r}")
            try:
                ids = [_SYMBOL_ID[t] for t in source.split() if t not in PARENS]
            except KeyError as err:
                raise format_error(path, lineno, f"unknown token {err.args[0]!r}; expected digits, {', '.join(OPERATORS)}, ], ( or )") from None
            if not ids:
                raise format_error(path, lineno, "empty Source expression")
            sequences.append(np.array(ids, dtype=np.uint8))
            labels.append(label)
        if f.tell() == 0:
            raise format_error(path, None, "empty file; expected the header 'Source<TAB>Target' and one example per line")
    return sequences, np.array(labels, dtype=np.int64)


class ListOps(TokenDataset):
    """LRA ListOps, split ``split`` of the release (train 96k / val 2k / test 2k examples).

    Item: ``(x (l_max,) long, y () long in 0..9, length () long)``; see ``ssm.data.lra.base``.
    ``max_vocab`` (optional) is the model's embedding size; a larger vocabulary is an error.
    """

    task = "listops"
    n_classes = 10

    def __init__(self, split: str = "train", *, root: str | os.PathLike | None = None, subdir: str = "listops",
                 l_max: int = 2048, append_eos: bool = True, max_vocab: int | None = None,
                 cache_dir: str | os.PathLike | None = None):
        check_split(type(self).__name__, split)
        if l_max < 2:
            raise ValueError(f"{type(self).__name__}: `l_max` must be >= 2, got {l_max}")
        self.root = resolve_root(root)
        self.data_dir = self.root / subdir
        self.split, self.l_max, self.append_eos = split, l_max, append_eos
        files = [self.data_dir / f"basic_{s}.tsv" for s in SPLITS]
        require_files(type(self).__name__, files, LAYOUT)
        cache = ArrayCache(default_cache_root(self.root, cache_dir), self.task, {
            "sources": source_fingerprint(files, self.data_dir), "l_max": l_max, "append_eos": append_eos,
        })
        arrays = cache.load() or self._build(cache, files)
        self.vocab = Vocab.from_itos(arrays.meta["vocab"], append_eos=append_eos)
        check_vocab_size(type(self).__name__, self.vocab, max_vocab)
        self._bind(arrays, f"{split}_")

    def _build(self, cache: ArrayCache, files: list[Path]):
        parsed = {s: parse_listops_file(f) for s, f in zip(SPLITS, files)}
        keep = self.l_max - int(self.append_eos)
        train = [seq[:keep] for seq in parsed["train"][0]]
        counts = np.bincount(np.concatenate(train), minlength=len(SYMBOLS)) if train else np.zeros(len(SYMBOLS), int)
        vocab = Vocab.from_counts({SYMBOLS[i]: int(c) for i, c in enumerate(counts) if c > 0}, append_eos=self.append_eos)
        table = np.array([vocab.stoi.get(s, vocab.unk_id) for s in SYMBOLS], dtype=np.int64)
        dtype = token_dtype(len(vocab))
        for split, (seqs, labels) in parsed.items():
            ids = [finish_ids(table[s[:keep]], l_max=self.l_max, eos_id=vocab.eos_id) for s in seqs]
            flat, offsets = pack(ids, dtype)
            cache.save(f"{split}_tokens", flat)
            cache.save(f"{split}_offsets", offsets)
            cache.save(f"{split}_labels", labels)
        return cache.commit({"vocab": vocab.itos})
