"""Audio datasets for autoregressive waveform modelling with SaShiMi (arXiv 2202.09729).

- ``SC09``: the ten spoken digits of Speech Commands (arXiv 1804.03209), 1-s clips at 16 kHz.
- ``LongRecordings``: a directory of long WAV files (YouTubeMix, Beethoven) cut into
  fixed-length chunks, split by file.
- ``GeneratedAudio``: ten classes of "digit-like" synthetic notes the package makes offline;
  ``write_generated_audio`` writes them as WAV files in the SC09 layout.

Item format (all three): ``(x, y)``, two LongTensors of shape ``(length,)`` holding codes in
``[0, 2^bits)``. ``y`` is the whole quantised example and ``x = [silence code, y[:-1]]``: the
input is the target shifted right by one step behind a fixed start token, the code of 0.0
(``2^(bits-1)``), as in the S4 repo's audio loaders. So the per-step logits (B, L, 2^bits) of a
causal model fed ``x`` predict every sample of the example, the first one included.

Per example: read -> downmix to mono (mean of channels) -> resample to ``rate`` -> fit to
``length`` -> ``normalize`` -> quantise. Conversions are logged when the dataset is built, from
the WAV headers: one DEBUG line per file and one INFO line per dataset with the counts.
Every dataset is a deterministic function of its arguments (files are listed in sorted order).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ssm.data.synthetic import SPLITS, _generator
from ...checks import check_choice

from .quantize import Normalization, Quantization, normalize, quantize, silence_code
from .resample import output_length, resample, source_span
from .wav import WavInfo, read_wav, wav_info, write_wav

log = logging.getLogger(__name__)

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


class _Tokens:
    """Validated quantisation settings shared by the datasets, and the (x, y) item convention."""

    def _setup_tokens(self, owner: str, split: str, rate: int, length: int, quantization: str, bits: int,
                      normalization: str) -> None:
        check_choice(owner, "split", split, SPLITS)
        check_choice(owner, "quantization", quantization, Quantization)
        check_choice(owner, "normalize", normalization, Normalization)
        for name, value in (("rate", rate), ("length", length)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{owner}: `{name}` must be a positive int; got {value!r}")
        if not isinstance(bits, int) or not 1 <= bits <= 16:
            raise ValueError(f"{owner}: `bits` must be an int in [1, 16]; got {bits!r}")
        self.split, self.rate, self.length = split, rate, length
        self.quantization, self.bits, self.normalization = quantization, bits, normalization
        self.start_code = silence_code(quantization, bits)

    def _item(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([codes.new_full((1,), self.start_code), codes[:-1]])  # (length,)
        return x, codes

    def _encode(self, wave: torch.Tensor) -> torch.Tensor:
        return quantize(normalize(wave, self.normalization), self.quantization, self.bits)


def _scan(owner: str, paths: list[Path], rate: int) -> list[WavInfo]:
    """Headers of ``paths`` (a ValueError names an unreadable file). Conversions are logged once
    per file at DEBUG, and summed up in one INFO line per dataset (split) so they are seen by
    default without a line per file."""
    infos = []
    for path in paths:
        info = wav_info(path)
        if info.channels > 1:
            log.debug("%s: %d channels, downmixed to mono", path, info.channels)
        if info.rate != rate:
            log.debug("%s: resampled from %d Hz to %d Hz", path, info.rate, rate)
        infos.append(info)
    n_rate = sum(i.rate != rate for i in infos)
    n_mix = sum(i.channels > 1 for i in infos)
    if n_rate or n_mix:
        log.info("%s: of %d files, %d are resampled to %d Hz and %d downmixed to mono (one DEBUG line per file "
                 "on logger %r)", owner, len(infos), n_rate, rate, n_mix, log.name)
    return infos


def _mono(waveform: torch.Tensor) -> torch.Tensor:  # (C, T) -> (T,)
    return waveform.mean(0) if waveform.shape[0] > 1 else waveform[0]


# the release's split lists, by split
LISTS = {"val": "validation_list.txt", "test": "testing_list.txt"}


def list_splits(base: Path, rel: list[str], words: tuple[str, ...], owner: str = "SpeechCommands",
                what: str = "clips") -> dict[str, str]:
    """``{word/file.wav: split}`` from the release's ``validation_list.txt``/``testing_list.txt``
    (entries of other words ignored; train = the rest). Without both lists, the Speech Commands
    speaker-hash rule (``ssm.data.audio.speech_commands_split``) decides, as the release's
    README says the lists were made."""
    lists = {split: base / name for split, name in LISTS.items()}
    present = [split for split, path in lists.items() if path.is_file()]
    if not present:
        log.info("%s: no split lists in %s; splitting by the speaker-hash rule", owner, base)
        return {r: speech_commands_split(r) for r in rel}
    if len(present) == 1:
        missing = lists["test" if present == ["val"] else "val"]
        raise FileNotFoundError(f"{owner}: {lists[present[0]]} exists but {missing} does not; provide both "
                                "split lists or neither")
    on_disk = set(rel)
    assign = dict.fromkeys(rel, "train")
    seen: dict[str, str] = {}
    for split, path in lists.items():
        entries = [e.strip().replace("\\", "/") for e in path.read_text().splitlines()]
        entries = [e for e in entries if e and e.split("/")[0] in words]
        absent = [e for e in entries if e not in on_disk]
        if absent:
            log.warning("%s: %d %s listed in %s are not on disk (e.g. %s)", owner, len(absent), what, path, absent[0])
        for e in entries:
            if seen.get(e, split) != split:
                raise ValueError(f"{owner}: {e} is listed in both {lists['val']} and {lists['test']}")
            seen[e] = split
            if e in on_disk:
                assign[e] = split
    return assign


def speech_commands_split(filename: str, *, val_percent: float = 10.0, test_percent: float = 10.0) -> str:
    """The Speech Commands rule (dataset README, arXiv 1804.03209) for datasets without the list
    files: a hash of the speaker id (the name before ``_nohash_``) picks the split, so one
    speaker's clips stay together and adding files never moves old ones."""
    speaker = re.sub(r"_nohash_.*$", "", Path(filename).name)
    max_per_class = 2**27 - 1
    digest = int(hashlib.sha1(speaker.encode()).hexdigest(), 16)
    percent = (digest % (max_per_class + 1)) * (100.0 / max_per_class)
    if percent < val_percent:
        return "val"
    if percent < val_percent + test_percent:
        return "test"
    return "train"


class SC09(_Tokens, Dataset):
    """Speech Commands digits, ``root/sc09/{zero,...,nine}/<speaker>_nohash_<n>.wav``.

    Splits: ``root/sc09/validation_list.txt`` and ``testing_list.txt`` (one ``word/file.wav`` per
    line, the Speech Commands convention; words other than digits are ignored), train = the rest.
    Without both files the splits come from ``speech_commands_split`` (logged once). Clips
    shorter than ``length`` are zero-padded at the end after normalisation (the padding is
    silence, the code of 0.0); longer ones are truncated. ``labels[i]`` is the digit of item i.
    With ``return_lengths`` items are ``(x, y, n)``, ``n`` the clip's real samples (at most
    ``length``), so a task can leave the padding out (``LanguageModel(ignore_padding=True)``).
    """

    def __init__(self, split: str = "train", *, root: str | os.PathLike, rate: int = 16000, length: int = 16000,
                 quantization: Quantization = "mu-law", bits: int = 8, normalize: Normalization = "minmax",
                 return_lengths: bool = False):
        self._setup_tokens("SC09", split, rate, length, quantization, bits, normalize)
        self.return_lengths = return_lengths
        base = Path(root) / "sc09"
        layout = (f"expected {base}/{{zero,one,...,nine}}/<speaker>_nohash_<n>.wav, optionally with "
                  f"{base}/validation_list.txt and {base}/testing_list.txt listing 'word/<file>.wav' per line")
        if not base.is_dir():
            raise FileNotFoundError(f"SC09: {base} not found; {layout}")
        missing = [d for d in DIGITS if not (base / d).is_dir()]
        if missing:
            raise FileNotFoundError(f"SC09: {base} has no folder(s) {', '.join(missing)}; {layout}")
        rel = [f"{d}/{p.name}" for d in DIGITS for p in sorted((base / d).iterdir())
               if p.is_file() and p.suffix.lower() == ".wav"]
        if not rel:
            raise FileNotFoundError(f"SC09: no .wav files under {base}; {layout}")
        assign = self._assign_splits(base, rel)
        chosen = [r for r in rel if assign[r] == split]
        if not chosen:
            raise ValueError(f"SC09: split {split!r} of {base} is empty ({len(rel)} clips in all)")
        self.files = [base / r for r in chosen]
        self.labels = torch.tensor([DIGITS.index(r.split("/")[0]) for r in chosen])
        self.infos = _scan("SC09", self.files, rate)

    @staticmethod
    def _assign_splits(base: Path, rel: list[str]) -> dict[str, str]:
        return list_splits(base, rel, DIGITS, owner="SC09", what="digit clips")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        waveform, rate = read_wav(self.files[i])
        wave = _mono(waveform)  # (T,)
        if rate != self.rate:
            wave = resample(wave, rate, self.rate)
        wave = wave[: self.length]
        codes = self._encode(wave)
        n = len(codes)
        if n < self.length:
            codes = torch.cat([codes, codes.new_full((self.length - n,), self.start_code)])
        return (*self._item(codes), torch.tensor(n)) if self.return_lengths else self._item(codes)


class LongRecordings(_Tokens, Dataset):
    """Long recordings ``root/subdir/*.wav`` cut into consecutive ``length``-sample chunks.

    Split by file, in natural name order ("2.wav" before "10.wav"): the first ``train_fraction``
    of the files (rounded down) train, the remaining files are halved between val and test (test
    gets the odd one). With the default 0.88 this is the S4 repo's 88/6/6 split for YouTubeMix and
    Beethoven. Each file gives ``floor(T / length)`` chunks (T after resampling to ``rate``); the
    leftover tail is dropped, as in the S4 repo. Chunks are read lazily (seek + read); a chunk of a
    wrong-rate file is resampled from just the source samples it needs, identical to slicing the
    resampled whole file. ``chunks[i] = (file index, first sample)`` says where item i comes from.
    """

    def __init__(self, split: str = "train", *, root: str | os.PathLike, subdir: str, rate: int = 16000,
                 length: int = 131072, quantization: Quantization = "mu-law", bits: int = 8,
                 normalize: Normalization = "minmax", train_fraction: float = 0.88):
        self._setup_tokens("LongRecordings", split, rate, length, quantization, bits, normalize)
        if not 0 < train_fraction < 1:
            raise ValueError(f"LongRecordings: `train_fraction` must be in (0, 1); got {train_fraction!r}")
        base = Path(root) / subdir
        layout = (f"expected {base}/*.wav: long recordings, split by file in name order ({train_fraction:.0%} "
                  f"train, the rest halved into val and test)")
        if not base.is_dir():
            raise FileNotFoundError(f"LongRecordings: {base} not found; {layout}")
        files = sorted((p for p in base.iterdir() if p.is_file() and p.suffix.lower() == ".wav"), key=_natural_key)
        if not files:
            raise FileNotFoundError(f"LongRecordings: no .wav files in {base}; {layout}")
        n = len(files)
        a = math.floor(train_fraction * n + 1e-9)
        b = a + (n - a) // 2
        lo, hi = {"train": (0, a), "val": (a, b), "test": (b, n)}[split]
        if lo == hi:
            raise ValueError(f"LongRecordings: split {split!r} of {base} is empty: {n} files with train_fraction="
                             f"{train_fraction} give {a}/{b - a}/{n - b} train/val/test files")
        self.files = files[lo:hi]
        self.infos = _scan("LongRecordings", self.files, rate)
        self.chunks: list[tuple[int, int]] = []
        for k, info in enumerate(self.infos):
            frames = output_length(info.frames, info.rate, rate)
            if frames < length:
                log.info("%s: %d samples at %d Hz is shorter than length=%d; it gives no chunks",
                         info.path, frames, rate, length)
            self.chunks += [(k, c * length) for c in range(frames // length)]
        if not self.chunks:
            raise ValueError(f"LongRecordings: split {split!r} of {base} has no file of at least length={length} "
                             f"samples at {rate} Hz")

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, i: int):
        k, start = self.chunks[i]
        info = self.infos[k]
        if info.rate == self.rate:
            wave = _mono(read_wav(info.path, offset=start, frames=self.length)[0])  # (length,)
        else:
            lo, hi = source_span(info.rate, self.rate, start, self.length)
            lo, hi = max(lo, 0), min(hi, info.frames)
            window = _mono(read_wav(info.path, offset=lo, frames=hi - lo)[0])  # (hi - lo,)
            wave = resample(window, info.rate, self.rate, start=start, length=self.length, offset=lo)
        return self._item(self._encode(wave))


def _natural_key(path: Path):
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", path.name)]


def generate_notes(labels: torch.Tensor, *, rate: int, length: int, noise: float,
                   generator: torch.Generator) -> torch.Tensor:
    """(N, length) float32 waveforms in [-1, 1], one synthetic note per label.

    Class c (of 10, or more) has a fundamental ``150 * 2^(0.3 c)`` Hz (150 Hz .. ~980 Hz for ten
    classes), a glide of ``(c % 5 - 2) / 2`` octaves over the note, and ``1 + c % 3`` harmonics
    of amplitude 1/k. Each example jitters the pitch by +-3%, starts at a random onset, lasts
    50-90% of the clip with a 5-20 ms attack and an exponential decay, peaks at 0.3-0.8, and has
    N(0, noise^2) background noise."""
    N = len(labels)
    g = generator
    c = labels.to(torch.float64)[:, None]  # (N, 1)
    f0 = 150 * 2 ** (0.3 * c) * (1 + 0.03 * (2 * torch.rand(N, 1, generator=g, dtype=torch.float64) - 1))
    glide = (torch.remainder(c, 5) - 2) / 2
    n_harm = 1 + torch.remainder(labels, 3)  # (N,)
    dur = (0.5 + 0.4 * torch.rand(N, 1, generator=g, dtype=torch.float64)) * length  # samples
    onset = torch.rand(N, 1, generator=g, dtype=torch.float64) * (length - dur)
    attack = (0.005 + 0.015 * torch.rand(N, 1, generator=g, dtype=torch.float64)) * rate
    peak = 0.3 + 0.5 * torch.rand(N, 1, generator=g, dtype=torch.float64)
    phase0 = 2 * math.pi * torch.rand(N, 1, generator=g, dtype=torch.float64)
    noise_wave = noise * torch.randn(N, length, generator=g, dtype=torch.float64)

    n = torch.arange(length, dtype=torch.float64)[None, :]  # (1, L)
    local = n - onset  # (N, L): samples since the onset
    tau = (local / dur).clamp(0, 1)
    freq = f0 * 2 ** (glide * tau)  # (N, L) Hz
    phase = phase0 + 2 * math.pi * torch.cumsum(freq, dim=1) / rate  # (N, L)
    tone = torch.zeros(N, length, dtype=torch.float64)
    for k in range(1, 4):
        audible = (n_harm[:, None] >= k) & (k * freq < 0.45 * rate)  # below Nyquist
        tone += torch.where(audible, torch.sin(k * phase) / k, torch.zeros_like(tone))
    release = (0.02 * rate) * torch.ones_like(dur)
    env = (local / attack).clamp(0, 1) * torch.exp(-3 * local.clamp(min=0) / dur)
    env = env * ((onset + dur - n) / release).clamp(0, 1)  # short fade-out, no click at the end
    note = tone * env
    note = note * (peak / note.abs().amax(dim=1, keepdim=True).clamp(min=1e-12))
    return (note + noise_wave).clamp(-1, 1).to(torch.float32)


class GeneratedAudio(_Tokens, Dataset):
    """``size`` synthetic notes per split (see ``generate_notes``), labels uniform over
    ``n_classes``; items ``(x, y)`` as for SC09. ``waveforms`` (size, length) and ``labels`` are
    kept. A deterministic function of (seed, split) like ``ssm.data.synthetic``."""

    def __init__(self, split: str = "train", *, size: int = 256, rate: int = 16000, length: int = 4096,
                 quantization: Quantization = "mu-law", bits: int = 8, n_classes: int = 10, noise: float = 0.005,
                 seed: int = 0):
        self._setup_tokens("GeneratedAudio", split, rate, length, quantization, bits, "none")
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"GeneratedAudio: `size` must be a positive int; got {size!r}")
        if not isinstance(n_classes, int) or n_classes < 1:
            raise ValueError(f"GeneratedAudio: `n_classes` must be a positive int; got {n_classes!r}")
        if not 0 <= noise <= 1:
            raise ValueError(f"GeneratedAudio: `noise` must be in [0, 1]; got {noise!r}")
        g = _generator(seed, split)
        self.labels = torch.randint(0, n_classes, (size,), generator=g)
        self.waveforms = generate_notes(self.labels, rate=rate, length=length, noise=noise, generator=g)
        self.codes = quantize(self.waveforms, quantization, bits)  # (size, length)

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, i: int):
        return self._item(self.codes[i])


def write_generated_audio(root: str | os.PathLike, *, train_size: int = 200, val_size: int = 25, test_size: int = 25,
                          rate: int = 16000, length: int = 16000, noise: float = 0.005, seed: int = 0) -> Path:
    """Write ``GeneratedAudio`` (10 classes) as 16-bit WAV files in the SC09 layout under
    ``root/sc09`` with ``validation_list.txt``/``testing_list.txt``, so ``SC09(split, root=root,
    normalize="none")`` reads back split ``split`` of ``GeneratedAudio(split, size=<its size>)``.
    File ``<digit>/<split><i:05d>_nohash_0.wav`` is item i of that split. Returns ``root/sc09``."""
    base = Path(root) / "sc09"
    for d in DIGITS:
        (base / d).mkdir(parents=True, exist_ok=True)
    listed: dict[str, list[str]] = {"val": [], "test": []}
    for split, size in (("train", train_size), ("val", val_size), ("test", test_size)):
        data = GeneratedAudio(split, size=size, rate=rate, length=length, noise=noise, seed=seed)
        for i, (label, wave) in enumerate(zip(data.labels.tolist(), data.waveforms)):
            rel = f"{DIGITS[label]}/{split}{i:05d}_nohash_0.wav"
            write_wav(base / rel, wave, rate, bits=16)
            if split in listed:
                listed[split].append(rel)
    for split, name in (("val", "validation_list.txt"), ("test", "testing_list.txt")):
        tmp = base / f".{name}.tmp"
        tmp.write_text("".join(f"{rel}\n" for rel in listed[split]))
        os.replace(tmp, base / name)
    return base
