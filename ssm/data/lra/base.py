"""What the Long Range Arena loaders share: the data root, file checks with a layout sketch,
format errors that name the file and line, vocabularies, S4-style splits and the padded item.

Long Range Arena: Tay et al., arXiv 2011.04006. The conventions follow the S4 code
(state-spaces/s4, ``src/dataloaders/lra.py``; arXiv 2111.00396), which reports the LRA numbers
this package compares against.

Item format (every LRA dataset here returns a 3-tuple):
- token tasks (ListOps, Text): ``x`` LongTensor (l_max,) padded with ``PAD`` = 0, ``y`` LongTensor
  scalar, ``length`` LongTensor scalar (tokens before the padding, the end-of-sequence token
  included);
- Retrieval: ``x`` (2, l_max), ``y`` scalar, ``length`` (2,);
- Image, Pathfinder: ``x`` FloatTensor (L, 1) normalised pixels, ``y`` scalar, ``length`` = L.

Special tokens (ids fixed, then the train split's tokens by descending count, ties by token):
``<pad>`` = 0, ``<unk>`` = 1 (anything unseen in train, or rarer than ``min_freq``), and
``<eos>`` = 2 appended to every sequence when ``append_eos`` (S4's default).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ...checks import check_choice

SPLITS = ("train", "val", "test")
PAD, UNK, EOS = "<pad>", "<unk>", "<eos>"
RELEASE_URL = "https://github.com/google-research/long-range-arena (lra_release.gz)"


class LRAFormatError(ValueError):
    """A source file does not have the release format: the message names the file (and line)."""


def check_split(owner: str, split: str) -> None:
    check_choice(owner, "split", split, SPLITS)


def resolve_root(root: str | os.PathLike | None) -> Path:
    """``root``, else ``$SSM_DATA_ROOT``, else ``./data``."""
    if root is None or root == "":
        root = os.environ.get("SSM_DATA_ROOT") or "./data"
    return Path(root).expanduser()


def require_files(owner: str, paths: Sequence[Path], layout: str) -> None:
    """Fail fast, before any parsing, on the first missing file with the expected layout."""
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(
                f"{owner}: missing {path}\nExpected layout under the data root (constructor `root`, config "
                f"`data_root`, or $SSM_DATA_ROOT):\n{layout}"
            )


def format_error(path: Path, line: int | None, what: str) -> LRAFormatError:
    where = f"{path}:{line}" if line is not None else str(path)
    return LRAFormatError(f"{where}: {what}")


def read_lines(path: Path, f):
    """Decoded lines of a binary file object without their line ends; a line that is not UTF-8
    raises ``LRAFormatError`` with its number."""
    for lineno, raw in enumerate(f, start=1):
        try:
            yield raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as err:
            raise format_error(path, lineno, f"not valid UTF-8 ({err.reason} at column {err.start})") from None


def s4_split(n: int, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Index sets of sizes ``int(f * n)`` for each fraction after the first, the rest first, from
    ``torch.randperm(n)`` under ``seed``: the same sets as S4's ``torch.utils.data.random_split``
    with ``torch.Generator().manual_seed(seed)`` on data in the same order."""
    tail = [int(f * n) for f in fractions[1:]]
    sizes = [n - sum(tail), *tail]
    if sizes[0] < 0:
        raise ValueError(f"split fractions {tuple(fractions)} leave no room for the first part of {n} examples")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    bounds = np.cumsum([0, *sizes])
    return [perm[a:b] for a, b in itertools.pairwise(bounds)]


class Vocab:
    """Token strings <-> ids. ``itos[0:3]`` are the specials (``<eos>`` only when used)."""

    def __init__(self, tokens: Sequence[str], *, append_eos: bool):
        self.specials = [PAD, UNK] + ([EOS] if append_eos else [])
        self.itos = list(self.specials) + [t for t in tokens if t not in self.specials]
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("Vocab: duplicate tokens")
        self.pad_id, self.unk_id = 0, 1
        self.eos_id = 2 if append_eos else None

    def __len__(self) -> int:
        return len(self.itos)

    @classmethod
    def from_itos(cls, itos: Sequence[str], *, append_eos: bool) -> Vocab:
        """Rebuild a vocab saved as its ``itos`` list (specials first)."""
        n_special = 3 if append_eos else 2
        return cls(itos[n_special:], append_eos=append_eos)

    @classmethod
    def from_counts(cls, counts: dict[str, int], *, min_freq: int = 1, append_eos: bool = True) -> Vocab:
        kept = [t for t, c in counts.items() if c >= min_freq]
        kept.sort(key=lambda t: (-counts[t], t))
        return cls(kept, append_eos=append_eos)


def check_vocab_size(owner: str, vocab: Vocab, max_vocab: int | None) -> None:
    if max_vocab is not None and len(vocab) > max_vocab:
        raise ValueError(
            f"{owner}: the train split's vocabulary has {len(vocab)} entries (specials included), more than "
            f"`max_vocab`={max_vocab} (the model's embedding size, config `data.vocab_size`); raise it to at least {len(vocab)}"
        )


def codepoints(text: str, *, level: str) -> np.ndarray:
    """A string as an int array: unicode code points (``level="char"``) or UTF-8 bytes (``"byte"``)."""
    if level == "char":
        return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)


def char_token(cp: int, level: str) -> str:
    """The vocab entry of a code point: the character itself, or ``"0x41"`` for a byte."""
    return chr(cp) if level == "char" else f"0x{cp:02x}"


class CharEncoder:
    """Maps code-point arrays to vocab ids with one ``searchsorted`` (no Python loop per char)."""

    def __init__(self, vocab: Vocab, *, level: str):
        special = len(vocab.specials)
        cps = np.array([ord(t) if level == "char" else int(t, 16) for t in vocab.itos[special:]], dtype=np.int64)
        order = np.argsort(cps)
        self.cps, self.ids = cps[order], order + special
        self.vocab = vocab

    def __call__(self, cp: np.ndarray) -> np.ndarray:
        if len(self.cps) == 0:
            return np.full(len(cp), self.vocab.unk_id, dtype=np.int64)
        pos = np.clip(np.searchsorted(self.cps, cp), 0, len(self.cps) - 1)
        hit = self.cps[pos] == cp
        return np.where(hit, self.ids[pos], self.vocab.unk_id)


def count_codepoints(docs: Sequence[np.ndarray]) -> dict[int, int]:
    if not docs:
        return {}
    values, counts = np.unique(np.concatenate(docs), return_counts=True)
    return dict(zip(values.tolist(), counts.tolist()))


def pack(sequences: Sequence[np.ndarray], dtype) -> tuple[np.ndarray, np.ndarray]:
    """Ragged sequences -> (flat tokens, offsets (N + 1,))."""
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    offsets = np.zeros(len(sequences) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.concatenate(sequences).astype(dtype) if len(sequences) else np.zeros(0, dtype=dtype)
    return flat, offsets


def token_dtype(vocab_size: int):
    return np.uint8 if vocab_size <= 256 else np.uint16 if vocab_size <= 65536 else np.int32


def finish_ids(ids: np.ndarray, *, l_max: int, eos_id: int | None) -> np.ndarray:
    """Truncate to leave room for ``<eos>`` and append it."""
    if eos_id is None:
        return ids[:l_max]
    return np.concatenate([ids[: l_max - 1], np.array([eos_id], dtype=ids.dtype)])


def padded(flat: np.ndarray, offsets: np.ndarray, j: int, l_max: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequence ``j`` as a LongTensor (l_max,) padded with 0, and its length."""
    a, b = int(offsets[j]), int(offsets[j + 1])
    x = torch.zeros(l_max, dtype=torch.long)
    x[: b - a] = torch.from_numpy(np.asarray(flat[a:b], dtype=np.int64))
    return x, torch.tensor(b - a, dtype=torch.long)


class TokenDataset(torch.utils.data.Dataset):
    """Shared item logic of the token tasks: arrays ``<prefix>tokens``/``offsets``/``labels`` of a
    cache entry, optionally restricted to ``indices`` (a held-out slice)."""

    l_max: int
    vocab: Vocab

    def _bind(self, arrays, prefix: str, indices: np.ndarray | None = None) -> None:
        self._arrays, self._prefix = arrays, prefix
        self._indices = None if indices is None else np.asarray(indices, dtype=np.int64)
        self._n = len(self._indices) if indices is not None else len(arrays[f"{prefix}labels"])

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def __len__(self) -> int:
        return self._n

    def _row(self, i: int) -> int:
        if not -self._n <= i < self._n:
            raise IndexError(f"{type(self).__name__}: index {i} out of range for {self._n} examples")
        i = i % self._n
        return int(self._indices[i]) if self._indices is not None else i

    def labels(self) -> np.ndarray:
        y = np.asarray(self._arrays[f"{self._prefix}labels"])
        return y[self._indices] if self._indices is not None else y

    def __getitem__(self, i: int):
        j = self._row(i)
        a = self._arrays
        x, n = padded(a[f"{self._prefix}tokens"], a[f"{self._prefix}offsets"], j, self.l_max)
        return x, torch.tensor(int(a[f"{self._prefix}labels"][j]), dtype=torch.long), n
