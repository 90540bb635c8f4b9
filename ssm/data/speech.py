"""Speech Commands keyword classification from raw 16 kHz waveforms (Warden, arXiv 1804.03209),
the sequence-classification benchmark of S4 (arXiv 2111.00396, SC10) and S4D (arXiv 2206.11893,
the full 35 classes).

Reads the Speech Commands v0.02 directory as released: one folder of 1-s 16 kHz WAV files per
word, and ``validation_list.txt`` / ``testing_list.txt`` listing ``word/<file>.wav`` (the same
files the SC09 audio config reads; ``_background_noise_`` and other folders are ignored).

Per clip: read -> downmix to mono -> resample to ``rate`` if the file has another rate -> cut
or zero-pad at the end to ``length`` -> standardise with the training split's mean and std (one
scalar each, over every sample of the padded training clips, as the S4 code does) -> for the
val/test splits with ``eval_rate``, change the sample rate (the zero-shot test at another
frequency). Items are ``(x (L, 1) float32, y () long)``.

The two published protocols (state-spaces/s4 @e757cef, ``src/dataloaders/datasets/sc.py``):

- SC35 (``classes="sc35"``; S4D, and S4's ``dataset.all_classes=true``): the release's split
  lists, short clips zero-padded: ``split_rule="lists"``, ``drop_short=False``.
- SC10 (``classes="sc10"``: yes, no, up, down, left, right, on, off, stop, go; the S4 paper's
  table, after Kidger et al. arXiv 2005.08926 and Romero et al. arXiv 2102.02611): clips shorter
  than 1 s dropped and a class-stratified random 70/15/15 split (``split_rule="stratified"``,
  ``drop_short=True``). The reference draws that split with scikit-learn's ``train_test_split``
  over files in directory order; here it is ``ssm.data.classify.stratified_split`` under
  ``seed`` over files in sorted order: the same proportions, not the same clips.

Zero-shot at another sampling rate (S4, Table 5, "0.5x"): ``eval_rate=8000`` gives val and test
clips of 8000 samples; train stays at ``rate``. ``eval_resampler="subsample"`` keeps every
``rate // eval_rate``-th sample, which is what the reference does (no anti-aliasing filter);
``"sinc"`` band-limits first (``ssm.data.audio.resample``). The model must be told the step
changed: evaluated with ``rate=2`` (each step spans two training steps).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from ..checks import check_choice
from .audio.datasets import LISTS, list_splits  # noqa: F401  (LISTS: the release's list files)
from .audio.resample import output_length, resample
from .audio.wav import read_wav, wav_info
from .classify import stratified_split
from .lra.base import check_split, resolve_root
from .lra.cache import ArrayCache, default_cache_root, source_fingerprint

log = logging.getLogger(__name__)

# The 35 words of v0.02, in the S4 code's label order (``_SpeechCommands.ALL_CLASSES``: the 30 words
# of v0.01 alphabetically, then the five added in v0.02), so label ids match its checkpoints.
SC35 = ("bed", "cat", "down", "five", "forward", "go", "house", "left", "marvin", "no", "on", "right", "sheila",
        "tree", "up", "visual", "yes", "backward", "bird", "dog", "eight", "follow", "four", "happy", "learn",
        "nine", "off", "one", "seven", "six", "stop", "three", "two", "wow", "zero")
SC10 = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
CLASSES = {"sc35": SC35, "sc10": SC10}

Classes = Literal["sc35", "sc10"]
SplitRule = Literal["lists", "stratified"]
Resampler = Literal["subsample", "sinc"]


def stratified_splits(rel: list[str], labels: np.ndarray, seed: int) -> dict[str, str]:
    """A class-stratified 70/15/15 split: 30% of each class held out under ``seed``, then halved
    into val and test under ``seed + 1`` (the reference's two-stage draw)."""
    try:
        train, rest = stratified_split(labels, 0.3, seed)
        val, test = stratified_split(labels[rest], 0.5, seed + 1)
    except ValueError:
        counts = np.bincount(labels)
        raise ValueError(f"SpeechCommands: split_rule='stratified' holds out 30% of each word, then halves it into "
                         f"val and test; {len(labels)} clips ({counts.min()} to {counts.max()} per word) leave "
                         "val or test empty; use more clips, or split_rule='lists'") from None
    assign = {rel[i]: "train" for i in train}
    assign.update({rel[rest[i]]: "val" for i in val})
    assign.update({rel[rest[i]]: "test" for i in test})
    return assign


class SpeechCommands(Dataset):
    """One split of Speech Commands classification; see the module docstring.

    ``root/subdir/<word>/*.wav`` for every word of ``classes``. ``targets[i]`` is the class id of
    item i (the index of its word in ``words``; ``labels`` are the words, for reports), ``files[i]``
    its path; ``mean``/``std`` the training split's statistics (0 and 1 without ``standardize``),
    computed once and cached under ``<root>/.ssm_cache/speech_commands`` (``cache_dir`` to move it).
    """

    d_input = 1

    def __init__(self, split: str = "train", *, root: str | os.PathLike | None = None, subdir: str = "SpeechCommands",
                 classes: Classes = "sc35", rate: int = 16000, length: int = 16000, split_rule: SplitRule = "lists",
                 drop_short: bool = False, standardize: bool = True, eval_rate: int | None = None,
                 eval_resampler: Resampler = "subsample", seed: int = 0, cache_dir: str | os.PathLike | None = None):
        owner = type(self).__name__
        check_split(owner, split)
        check_choice(owner, "classes", classes, tuple(CLASSES))
        check_choice(owner, "split_rule", split_rule, SplitRule)
        check_choice(owner, "eval_resampler", eval_resampler, Resampler)
        for name, value in (("rate", rate), ("length", length)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{owner}: `{name}` must be a positive int; got {value!r}")
        if eval_rate is not None:
            if isinstance(eval_rate, bool) or not isinstance(eval_rate, int) or eval_rate < 1:
                raise ValueError(f"{owner}: `eval_rate` must be a positive int (Hz) or null; got {eval_rate!r}")
            if eval_resampler == "subsample" and rate % eval_rate:
                raise ValueError(f"{owner}: eval_resampler='subsample' keeps every (rate / eval_rate)-th sample, so "
                                 f"`eval_rate` must divide rate={rate}; got {eval_rate} (use eval_resampler='sinc')")
        self.words, self.classes = CLASSES[classes], classes
        self.split, self.rate, self.length = split, rate, length
        self.eval_rate = eval_rate if split != "train" and eval_rate not in (None, rate) else None
        self.eval_resampler = eval_resampler
        self.base = resolve_root(root) / subdir
        layout = (f"expected {self.base}/<word>/<speaker>_nohash_<n>.wav for the {len(self.words)} words of "
                  f"classes={classes!r}, with {self.base}/validation_list.txt and testing_list.txt "
                  "(Speech Commands v0.02, http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz)")
        if not self.base.is_dir():
            raise FileNotFoundError(f"{owner}: {self.base} not found; {layout}")
        missing = [w for w in self.words if not (self.base / w).is_dir()]
        if missing:
            raise FileNotFoundError(f"{owner}: {self.base} has no folder(s) {', '.join(missing)}; {layout}")
        rel = [f"{w}/{p.name}" for w in self.words for p in sorted((self.base / w).iterdir())
               if p.is_file() and p.suffix.lower() == ".wav"]
        if drop_short:
            rel = [r for r in rel if self._frames(self.base / r) >= length]
        if not rel:
            raise FileNotFoundError(f"{owner}: no usable .wav files under {self.base}; {layout}")
        labels = np.array([self.words.index(r.split("/")[0]) for r in rel], dtype=np.int64)
        if split_rule == "lists":
            assign = list_splits(self.base, rel, self.words)
        else:
            assign = stratified_splits(rel, labels, seed)
        chosen = [k for k, r in enumerate(rel) if assign.get(r) == split]
        if not chosen:
            raise ValueError(f"{owner}: split {split!r} of {self.base} is empty ({len(rel)} clips in all)")
        self.files = [self.base / rel[k] for k in chosen]
        self.targets = torch.from_numpy(labels[chosen])
        self.labels = list(self.words)
        if standardize:
            train = [self.base / r for r in rel if assign.get(r) == "train"]
            key = {"sources": source_fingerprint(train, self.base), "rate": rate, "length": length}
            cache = ArrayCache(default_cache_root(resolve_root(root), cache_dir), "speech_commands", key)
            self.mean, self.std = self._train_stats(cache, train)
            self._scale = self.std + 1e-5  # the reference's (x - mean) / (std + 1e-5)
        else:
            self.mean, self.std, self._scale = 0.0, 1.0, 1.0

    @property
    def d_output(self) -> int:
        return len(self.words)

    @property
    def item_length(self) -> int:
        """Samples per item: ``length``, or its value at ``eval_rate`` for a resampled split."""
        if self.eval_rate is None:
            return self.length
        if self.eval_resampler == "subsample":
            return math.ceil(self.length / (self.rate // self.eval_rate))
        return output_length(self.length, self.rate, self.eval_rate)

    def _frames(self, path: Path) -> int:
        """Samples of ``path`` at ``rate`` (from its header only)."""
        info = wav_info(path)
        return output_length(info.frames, info.rate, self.rate)

    def _clip(self, path: Path) -> torch.Tensor:
        """(length,) float32: mono, at ``rate``, cut or zero-padded at the end; not standardised."""
        waveform, file_rate = read_wav(path)
        wave = waveform.mean(0) if waveform.shape[0] > 1 else waveform[0]  # (T,)
        if file_rate != self.rate:
            wave = resample(wave, file_rate, self.rate)
        wave = wave[: self.length]
        if len(wave) < self.length:
            wave = torch.cat([wave, wave.new_zeros(self.length - len(wave))])
        return wave

    def _train_stats(self, cache: ArrayCache, train: list[Path]) -> tuple[float, float]:
        entry = cache.load()
        if entry is not None:
            return float(entry.meta["mean"]), float(entry.meta["std"])
        if not train:
            raise ValueError(f"{type(self).__name__}: the training split of {self.base} is empty, so there is "
                             "nothing to standardise with; set standardize=false")
        log.info("SpeechCommands: mean and std of %d training clips (once; cached in %s)", len(train), cache.directory)
        total = total_sq = 0.0
        for path in train:
            wave = self._clip(path).double()
            total += float(wave.sum())
            total_sq += float((wave * wave).sum())
        n = len(train) * self.length
        mean = total / n
        std = math.sqrt(max(total_sq / n - mean * mean, 0.0) * n / max(n - 1, 1))  # unbiased, as torch.std
        std = std if std > 0 else 1.0
        cache.commit({"mean": mean, "std": std, "clips": len(train)})
        return mean, std

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        wave = (self._clip(self.files[i]) - self.mean) / self._scale  # (length,)
        if self.eval_rate is not None:
            if self.eval_resampler == "subsample":
                wave = wave[:: self.rate // self.eval_rate]
            else:
                wave = resample(wave, self.rate, self.eval_rate)
        return wave.to(torch.float32).unsqueeze(-1), self.targets[i].clone()  # (L, 1), ()
