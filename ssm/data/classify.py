"""Labelled sequences from the user's own files, for classification with ``ssm-train data=classify``.

Formats (chosen by extension, or ``format=``):

- ``ts``: the sktime/UEA time-series classification format (Bagnall et al., the UEA & UCR
  archive, arXiv 1811.00075): ``@``-header lines (``@problemName``, ``@univariate``,
  ``@dimensions``, ``@equalLength``, ``@classLabel true a b ...``), then after ``@data`` one case
  per line, dimensions separated by ``:``, values by ``,``, the label last. Cases may differ in
  length (padded, with their true ``lengths``); ``?`` is a missing value.
- ``npz``: arrays ``x`` ``(N, L)`` or ``(N, L, C)`` and ``y`` ``(N,)``, optional ``lengths`` ``(N,)``.
- ``csv``: one sequence per row (a ``label_column``, every other cell a value; trailing empty
  cells make a row shorter), or, with ``id_column``, the long layout: one row per time step with
  id, time and one column per channel (the label column constant within an id).
- ``wav``: a directory of class folders of WAV files (the Speech Commands layout), downmixed to
  mono, resampled to ``rate`` and cut or zero-padded to ``length`` samples.

Labels are strings (numbers are kept as their text); the vocabulary is the training file's
labels, in the order its header declares them (``.ts``) or sorted (numerically when they all
are numbers). Missing values follow ``missing``: ``error`` (default: the file and line are
named), ``zero``, or ``interpolate`` (linear inside a sequence, the nearest value at its ends).
Every malformed line, ragged case or unknown label is a ValueError naming the file and line.

``ClassificationFiles(split, train=..., test=...)`` is the dataset ``ssm-train`` builds: the
optional ``val`` file, or a seeded class-stratified ``val_fraction`` of train; per-channel
standardisation fitted on the training split only. Items are ``(x, y)`` with ``x`` float32
``(L, C)``, or ``(x, y, lengths)`` when the sequences differ in length. ``describe()`` is what a
checkpoint stores (plain Python types) so ``ssm-predict`` reads new files the same way.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from .synthetic import SPLITS

log = logging.getLogger(__name__)

Format = Literal["ts", "npz", "csv", "wav"]
Missing = Literal["error", "zero", "interpolate"]
FORMATS: tuple[str, ...] = ("ts", "npz", "csv", "wav")
MISSING: tuple[str, ...] = ("error", "zero", "interpolate")


@dataclass
class LabelledSequences:
    """A parsed file: ``values[i]`` float64 ``(L_i, C)`` (NaN where missing), ``labels[i]`` a string
    or None (unlabelled), ``where[i]`` the place in the file (``line 12``) for messages."""

    path: Path
    values: list[np.ndarray]
    labels: list[str | None]
    where: list[str]
    ids: list[str]
    declared: tuple[str, ...] | None = None  # labels a header declares (.ts @classLabel)
    notes: list[str] = field(default_factory=list)

    @property
    def channels(self) -> int:
        return self.values[0].shape[1]


def detect_format(path: str | os.PathLike, format: str | None = None) -> str:
    """``format`` if given, else from the path: a directory is ``wav``; else the extension."""
    if format is not None:
        if format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
        return format
    path = Path(path)
    if path.is_dir():
        return "wav"
    ext = path.suffix.lower().lstrip(".")
    if ext not in ("ts", "npz", "csv"):
        raise ValueError(f"{path}: cannot tell the format from the extension {path.suffix!r}; expected .ts, .npz, "
                         f".csv or a directory of class folders of WAV files (or set format= one of {FORMATS})")
    return ext


def read_labelled(path: str | os.PathLike, *, format: str | None = None, label_column: str = "label",
                  id_column: str | None = None, time_column: str = "time", missing: Missing = "error",
                  rate: int = 16000, length: int | None = None) -> LabelledSequences:
    """Parse one file (or WAV class-folder directory) into ``LabelledSequences``, with ``missing``
    applied. Raises FileNotFoundError, or ValueError naming the file and line."""
    if missing not in MISSING:
        raise ValueError(f"missing must be one of {MISSING}, got {missing!r}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no data file at {path}")
    fmt = detect_format(path, format)
    if fmt == "ts":
        seqs = read_ts(path)
    elif fmt == "npz":
        seqs = read_npz(path)
    elif fmt == "csv":
        seqs = read_csv_long(path, id_column=id_column, time_column=time_column, label_column=label_column) \
            if id_column else read_csv_wide(path, label_column=label_column)
    else:
        seqs = read_wav_folders(path, rate=rate, length=length)
    if not seqs.values:
        raise ValueError(f"{path}: no sequences in the file")
    return _fill_missing(seqs, missing)


def _fill_missing(seqs: LabelledSequences, missing: str) -> LabelledSequences:
    for i, v in enumerate(seqs.values):
        gaps = np.isnan(v)
        if not gaps.any():
            continue
        if missing == "error":
            t, c = np.argwhere(gaps)[0]
            raise ValueError(f"{seqs.path}, {seqs.where[i]}: missing value at step {t + 1} of channel {c + 1}; "
                             "set missing=zero or missing=interpolate (data.missing=...) to fill missing values")
        if missing == "zero":
            v[gaps] = 0.0
            continue
        for c in range(v.shape[1]):  # interpolate
            col, bad = v[:, c], gaps[:, c]
            if bad.all():
                raise ValueError(f"{seqs.path}, {seqs.where[i]}: channel {c + 1} has no values to interpolate from")
            steps = np.arange(len(col))
            col[bad] = np.interp(steps[bad], steps[~bad], col[~bad])  # ends: the nearest value
    return seqs


def _number(text: str, where: str) -> float:
    text = text.strip()
    if text in ("?", "", "nan", "NaN"):
        return float("nan")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not a number") from None
    if not np.isfinite(value):
        raise ValueError(f"{where}: {text!r} is not a finite number")
    return value


# ---------------------------------------------------------------------------------------------
# Readers


def read_ts(path: Path) -> LabelledSequences:
    """The sktime ``.ts`` format (classification; ``@timeStamps true`` is refused)."""
    header: dict[str, str] = {}
    declared: tuple[str, ...] | None = None
    has_label = True
    values, labels, where = [], [], []
    dims: int | None = None
    in_data = False
    with path.open(encoding="utf-8-sig") as f:
        for n, raw in enumerate(f, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                if not line.startswith("@"):
                    raise ValueError(f"{path}, line {n}: expected an @-header line or @data before the cases, "
                                     f"found {line[:40]!r}")
                key, _, rest = line[1:].partition(" ")
                key, rest = key.lower(), rest.strip()
                if key == "data":
                    in_data = True
                    if header.get("timestamps", "false").lower() == "true":
                        raise ValueError(f"{path}: @timeStamps true is not supported (give the values only)")
                    if "dimensions" in header:
                        dims = int(header["dimensions"])
                    elif header.get("univariate", "").lower() == "true":
                        dims = 1
                elif key == "classlabel":
                    words = rest.split()
                    if not words or words[0].lower() not in ("true", "false"):
                        raise ValueError(f"{path}, line {n}: @classLabel must be followed by true or false")
                    has_label = words[0].lower() == "true"
                    declared = tuple(words[1:]) if has_label and len(words) > 1 else None
                else:
                    header[key] = rest
                continue
            fields = line.split(":")
            if has_label:
                if len(fields) < 2:
                    raise ValueError(f"{path}, line {n}: expected dimensions separated by ':' and the label last")
                label, fields = fields[-1].strip(), fields[:-1]
            else:
                label = None
            if dims is None:
                dims = len(fields)
            if len(fields) != dims:
                raise ValueError(f"{path}, line {n}: {len(fields)} dimensions, expected {dims} "
                                 f"({'@dimensions' if 'dimensions' in header else 'as on the first case'})")
            channels = []
            for d, text in enumerate(fields):
                cells = text.split(",")
                channels.append([_number(c, f"{path}, line {n}, dimension {d + 1}, value {k + 1}")
                                 for k, c in enumerate(cells)])
            lengths = {len(c) for c in channels}
            if len(lengths) > 1:
                raise ValueError(f"{path}, line {n}: ragged case, its dimensions have lengths "
                                 f"{[len(c) for c in channels]}; the dimensions of one case must have equal length")
            if declared is not None and label not in declared:
                raise ValueError(f"{path}, line {n}: label {label!r} is not one of the @classLabel labels {list(declared)}")
            values.append(np.array(channels, dtype=np.float64).T)  # (L, C)
            labels.append(label)
            where.append(f"line {n}")
    if not in_data:
        raise ValueError(f"{path}: no @data line; is this a .ts file?")
    return LabelledSequences(path, values, labels, where, [str(i) for i in range(len(values))], declared)


def read_npz(path: Path) -> LabelledSequences:
    """Arrays ``x`` (N, L) or (N, L, C), optional ``y`` (N,) and ``lengths`` (N,)."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    if "x" not in arrays:
        raise ValueError(f"{path}: no array 'x'; expected x (N, L) or (N, L, C), y (N,), optional lengths (N,); "
                         f"the file has {sorted(arrays)}")
    x = arrays["x"]
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3:
        raise ValueError(f"{path}: x has shape {x.shape}, expected (N, L) or (N, L, C)")
    n = len(x)
    y = arrays.get("y")
    if y is not None and y.shape != (n,):
        raise ValueError(f"{path}: y has shape {y.shape}, expected ({n},) (one label per row of x)")
    lengths = arrays.get("lengths")
    if lengths is not None and (lengths.shape != (n,) or (lengths < 1).any() or (lengths > x.shape[1]).any()):
        raise ValueError(f"{path}: lengths must be ({n},) integers in [1, {x.shape[1]}], got shape {lengths.shape}")
    x = x.astype(np.float64)
    if np.isinf(x).any():
        i = int(np.argwhere(np.isinf(x))[0][0])
        raise ValueError(f"{path}, item {i}: x holds an infinite value")
    values = [x[i, : (int(lengths[i]) if lengths is not None else x.shape[1])] for i in range(n)]
    labels = [None] * n if y is None else [str(v.item() if hasattr(v, "item") else v) for v in y]
    if y is not None and y.dtype.kind == "f":  # 1.0 -> "1"
        labels = [str(int(float(v))) if float(v).is_integer() else v for v in labels]
    return LabelledSequences(path, values, labels, [f"item {i}" for i in range(n)], [str(i) for i in range(n)])


def _csv_rows(path: Path):
    """(file, header, records): ``records`` yields (line number, row) for every non-empty row,
    each checked to have the header's number of fields."""
    f = path.open(newline="", encoding="utf-8-sig")
    reader = csv.reader(f)
    header = next(reader, None)
    if not header:
        f.close()
        raise ValueError(f"{path}, line 1: expected a header line naming the columns")

    def records():
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise ValueError(f"{path}, line {reader.line_num}: {len(row)} fields, expected {len(header)} as in the header")
            yield reader.line_num, row

    return f, [h.strip() for h in header], records()


def read_csv_wide(path: Path, *, label_column: str) -> LabelledSequences:
    """One sequence per row: ``label_column`` and value columns; trailing empty cells shorten a row."""
    f, header, records = _csv_rows(path)
    with f:
        label_j = header.index(label_column) if label_column in header else None
        value_j = [j for j in range(len(header)) if j != label_j]
        values, labels, where = [], [], []
        for n, row in records:
            cells = [row[j] for j in value_j]
            while cells and not cells[-1].strip():
                cells.pop()  # a shorter sequence
            if not cells:
                raise ValueError(f"{path}, line {n}: no values")
            values.append(np.array([[_number(c, f"{path}, line {n}, column {value_j[k] + 1}")] for k, c in enumerate(cells)]))
            labels.append(row[label_j].strip() if label_j is not None else None)
            where.append(f"line {n}")
    return LabelledSequences(path, values, labels, where, [str(i) for i in range(len(values))])


def read_csv_long(path: Path, *, id_column: str, time_column: str, label_column: str) -> LabelledSequences:
    """One row per time step: ``id_column``, ``time_column``, one column per channel, optional label."""
    f, header, records = _csv_rows(path)
    with f:
        for name, what in ((id_column, "id_column"), (time_column, "time_column")):
            if name not in header:
                raise ValueError(f"{path}, line 1: no {name!r} column ({what}); the header has {header}")
        id_j, time_j = header.index(id_column), header.index(time_column)
        label_j = header.index(label_column) if label_column in header else None
        value_j = [j for j in range(len(header)) if j not in (id_j, time_j, label_j)]
        if not value_j:
            raise ValueError(f"{path}, line 1: no value columns besides {id_column!r}, {time_column!r}, {label_column!r}")
        steps: dict[str, list] = {}
        first_line: dict[str, int] = {}
        label_of: dict[str, str | None] = {}
        for n, row in records:
            key = row[id_j].strip()
            label = row[label_j].strip() if label_j is not None else None
            if key in label_of and label_of[key] != label:
                raise ValueError(f"{path}, line {n}: id {key!r} has label {label!r} here but {label_of[key]!r} on "
                                 f"line {first_line[key]}; the label must be the same on every row of an id")
            label_of.setdefault(key, label)
            first_line.setdefault(key, n)
            t = row[time_j].strip()
            try:
                t_key: float | str = float(t)
            except ValueError:
                t_key = t  # ISO dates sort as text
            steps.setdefault(key, []).append((t_key, [_number(row[j], f"{path}, line {n}, column {j + 1}") for j in value_j]))
    values, labels, where, ids = [], [], [], []
    for key, rows in steps.items():
        try:
            rows = sorted(rows, key=lambda r: r[0])
        except TypeError:
            raise ValueError(f"{path}, line {first_line[key]}: id {key!r} mixes numeric and text times") from None
        values.append(np.array([r[1] for r in rows], dtype=np.float64))
        labels.append(label_of[key])
        where.append(f"line {first_line[key]} (id {key!r})")
        ids.append(key)
    return LabelledSequences(path, values, labels, where, ids)


def read_wav_folders(path: Path, *, rate: int, length: int | None) -> LabelledSequences:
    """``path/<label>/*.wav``: mono, resampled to ``rate``, truncated to ``length`` (if given).
    Per-file conversions are logged at DEBUG and summed up in one INFO line."""
    from .audio import read_wav, resample

    folders = sorted(p for p in path.iterdir() if p.is_dir())
    files = [(d.name, p) for d in folders for p in sorted(d.iterdir()) if p.is_file() and p.suffix.lower() == ".wav"]
    if not files:
        raise FileNotFoundError(f"{path}: no WAV files; expected {path}/<label>/<file>.wav (one folder per class)")
    values, labels, where = [], [], []
    n_rate = n_mix = 0
    for label, p in files:
        wave, file_rate = read_wav(p)  # (C, T); an unreadable file is a ValueError naming it
        if wave.shape[0] > 1:
            n_mix += 1
            log.debug("%s: %d channels, downmixed to mono", p, wave.shape[0])
        mono = wave.mean(0)
        if file_rate != rate:
            n_rate += 1
            log.debug("%s: resampled from %d Hz to %d Hz", p, file_rate, rate)
            mono = resample(mono, file_rate, rate)
        if length is not None:
            mono = mono[:length]
        values.append(mono.double().numpy()[:, None])
        labels.append(label)
        where.append(str(p.relative_to(path)))
    note = f"{path}: {len(files)} WAV files, {n_rate} resampled to {rate} Hz, {n_mix} downmixed to mono"
    log.info(note)
    return LabelledSequences(path, values, labels, where, where[:], notes=[note])


# ---------------------------------------------------------------------------------------------
# Vocabulary, split, encoding


def vocabulary(seqs: LabelledSequences) -> list[str]:
    """The training labels: declared order if the header declares them, else sorted (numerically
    when every label is a number)."""
    if any(label is None for label in seqs.labels):
        i = seqs.labels.index(None)
        raise ValueError(f"{seqs.path}, {seqs.where[i]}: no label; the training file must label every case")
    present = set(seqs.labels)
    if seqs.declared:
        return [d for d in seqs.declared if d in present] + sorted(present - set(seqs.declared))
    try:
        return sorted(present, key=float)
    except ValueError:
        return sorted(present)


def label_ids(seqs: LabelledSequences, labels: Sequence[str], *, required: bool = True) -> np.ndarray:
    """Class index per sequence (-1 when unlabelled and not ``required``); an unknown label is an
    error naming the file and line."""
    index = {name: k for k, name in enumerate(labels)}
    out = np.empty(len(seqs.labels), dtype=np.int64)
    for i, name in enumerate(seqs.labels):
        if name is None:
            if required:
                raise ValueError(f"{seqs.path}, {seqs.where[i]}: no label")
            out[i] = -1
        elif name not in index:
            raise ValueError(f"{seqs.path}, {seqs.where[i]}: label {name!r} is not one of the {len(labels)} "
                             f"training labels {_preview(labels)}")
        else:
            out[i] = index[name]
    return out


def _preview(names: Sequence[str], n: int = 10) -> str:
    return "[" + ", ".join(repr(x) for x in names[:n]) + (", ..." if len(names) > n else "") + "]"


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, val indices): ``round(fraction * n_c)`` random cases of each class ``c``
    held out (at least one for a class of two or more), a function of ``seed`` only; both sorted."""
    if not 0 < fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {fraction!r}")
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        k = int(round(fraction * len(members)))
        k = min(max(k, 1 if len(members) >= 2 else 0), len(members) - 1)
        held.append(rng.permutation(members)[:k])
    val = np.sort(np.concatenate(held)) if held else np.array([], dtype=np.int64)
    train = np.setdiff1d(np.arange(len(y)), val)
    if len(val) == 0:
        raise ValueError(f"val_fraction={fraction} of {len(y)} training cases holds out none; give a val file "
                         "(data.val=...) or a larger fraction")
    return train, val


def channel_stats(values: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std (ddof=0) over every step of ``values``; a constant channel gets std 1."""
    stacked = np.concatenate(list(values), axis=0)  # (sum L_i, C)
    mean, std = stacked.mean(0), stacked.std(0)
    return mean, np.where(std > 0, std, 1.0)


def encode(values: Sequence[np.ndarray], mean: np.ndarray, std: np.ndarray, length: int | None = None):
    """``(x, lengths)``: float32 ``(N, L, C)`` standardised and zero-padded at the end to ``length``
    (default: the longest), int64 ``(N,)``. Longer sequences are refused."""
    lengths = np.array([len(v) for v in values], dtype=np.int64)
    L = int(lengths.max()) if length is None else int(length)
    if lengths.max() > L:
        raise ValueError(f"a sequence has {lengths.max()} steps, longer than length={L}")
    C = values[0].shape[1]
    x = np.zeros((len(values), L, C), dtype=np.float32)
    for i, v in enumerate(values):
        x[i, : len(v)] = (v - mean) / std
    return torch.from_numpy(x), torch.from_numpy(lengths)


class SequenceSet(Dataset):
    """Encoded sequences: ``x`` (N, L, C), ``y`` (N,) (-1: unlabelled), ``lengths`` (N,), ``ids``.
    Items are ``(x, y)``, or ``(x, y, lengths)`` when ``padded``."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, lengths: torch.Tensor, ids: list[str], *, padded: bool):
        self.x, self.y, self.lengths, self.ids, self.padded = x, y, lengths, ids, padded

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return (self.x[i], self.y[i], self.lengths[i]) if self.padded else (self.x[i], self.y[i])


@dataclass(frozen=True)
class _Prepared:
    splits: dict  # split -> (LabelledSequences-like subset: values, labels, ids)
    labels: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    channels: int
    padded: bool
    train_length: int


@lru_cache(maxsize=4)
def _prepare(train: str, val: str | None, test: str | None, stamps: tuple, options: tuple, val_fraction: float,
             seed: int, standardize: bool) -> _Prepared:
    kw = dict(options)
    seqs = read_labelled(train, **kw)
    labels = vocabulary(seqs)
    if len(labels) < 2:
        raise ValueError(f"{train}: every case has the label {labels[0]!r}; classification needs two or more classes")
    y_train = label_ids(seqs, labels)
    parts = {}
    if val:
        val_seqs = read_labelled(val, **kw)
        parts["train"] = (seqs.values, y_train, seqs.ids)
        parts["val"] = (val_seqs.values, label_ids(val_seqs, labels), val_seqs.ids)
        others = [val_seqs]
    else:
        tr, va = stratified_split(y_train, val_fraction, seed)
        parts["train"] = ([seqs.values[i] for i in tr], y_train[tr], [seqs.ids[i] for i in tr])
        parts["val"] = ([seqs.values[i] for i in va], y_train[va], [seqs.ids[i] for i in va])
        others = []
    if test:
        test_seqs = read_labelled(test, **kw)
        parts["test"] = (test_seqs.values, label_ids(test_seqs, labels), test_seqs.ids)
        others.append(test_seqs)
    for other in others:
        if other.channels != seqs.channels:
            raise ValueError(f"{other.path}: {other.channels} channels, but the training file {train} has {seqs.channels}")
    mean, std = channel_stats(parts["train"][0]) if standardize else (np.zeros(seqs.channels), np.ones(seqs.channels))
    all_lengths = {len(v) for p in parts.values() for v in p[0]}
    return _Prepared(parts, tuple(labels), mean, std, seqs.channels, len(all_lengths) > 1,
                     max(len(v) for v in parts["train"][0]))


class ClassificationFiles(SequenceSet):
    """One split of the user's labelled files (see the module docstring).

    ``train`` and ``test`` are paths (``test`` may be None for a run without a test split);
    ``val`` a path, else ``val_fraction`` of train is held out (stratified by class, seeded by
    ``seed``). ``standardize``: per-channel mean/std of the training split applied to all.
    ``labels`` is the class vocabulary, ``d_input`` the channels, ``d_output`` the class count.
    """

    def __init__(self, split: str = "train", *, train: str | os.PathLike, test: str | os.PathLike | None = None,
                 val: str | os.PathLike | None = None, format: Format | None = None, label_column: str = "label",
                 id_column: str | None = None, time_column: str = "time", missing: Missing = "error",
                 val_fraction: float = 0.1, seed: int = 0, standardize: bool = True, rate: int = 16000,
                 length: int | None = None):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if split == "test" and not test:
            raise ValueError("ClassificationFiles: no test file (data.test=PATH)")
        if train in (None, ""):
            raise ValueError("ClassificationFiles: `train` must be a path (data.train=PATH)")
        options = (("format", format), ("label_column", label_column), ("id_column", id_column),
                   ("time_column", time_column), ("missing", missing), ("rate", rate), ("length", length))
        paths = [str(p) if p else None for p in (train, val, test)]
        stamps = tuple(os.stat(p).st_mtime_ns if p and os.path.exists(p) else None for p in paths)
        prepared = _prepare(*paths, stamps, options, float(val_fraction), int(seed), bool(standardize))
        values, y, ids = prepared.splits[split]
        x, lengths = encode(values, prepared.mean, prepared.std)
        super().__init__(x, torch.as_tensor(y), lengths, list(ids), padded=prepared.padded)
        self.split, self.path = split, {"train": train, "val": val or train, "test": test}[split]
        self.labels = list(prepared.labels)
        self.mean, self.std = prepared.mean, prepared.std
        self.d_input, self.d_output = prepared.channels, len(prepared.labels)
        self._options = dict(options)
        self._standardize = bool(standardize)
        self._train_length = prepared.train_length

    def describe(self) -> dict:
        """What ``ssm-predict`` needs to read new files like these (plain Python types)."""
        return {
            "kind": "classification",
            "labels": list(self.labels),
            "d_input": int(self.d_input),
            "d_output": int(self.d_output),
            "train_length": int(self._train_length),
            "standardize": self._standardize,
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "options": {k: v for k, v in self._options.items()},
        }
