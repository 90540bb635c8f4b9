"""Offline stand-ins for Speech Commands, CIFAR-10, MNIST and BIDMC, written in the official file
formats so the real loaders (``ssm.data.speech``, ``ssm.data.images``, ``ssm.data.bidmc``) read
them unchanged: for config tests and short training runs without the downloads.

Unlike the noise of ``ssm.data.lra.fixtures``, each stand-in carries a class- or target-dependent
signal, so a model can learn it:

- Speech Commands: word ``c`` of ``n`` is a tone burst at ``150 * 2^(4c / (n - 1))`` Hz (four
  octaves, 150 Hz to 2.4 kHz) with a random onset, length and phase, over white noise.
- CIFAR-10: class ``c`` is an image of its own colour (a fixed palette) under a random brightness
  ramp and pixel noise.
- MNIST: digit ``c`` is a bright bar ``2 + 2c`` rows tall at a random place (more ink for higher
  digits; invariant to a pixel permutation, so psMNIST learns it too) over sparse noise.
- BIDMC: the target ``y`` (HR 55-125 bpm, RR 8-30 breaths/min, SpO2 88-100 %) sets the frequency of
  a pulse wave in channel 0 and the level of channel 1, both with noise.

Every writer is a deterministic function of its arguments.
"""

from __future__ import annotations

import gzip
import math
import os
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .audio.wav import write_wav
from .bidmc import FILES as BIDMC_FILES
from .images import MNIST_FILES
from .speech import LISTS, SC35

# One colour per CIFAR-10 class (R, G, B), far apart from each other.
PALETTE = np.array([[230, 40, 40], [40, 200, 40], [40, 60, 230], [230, 220, 40], [220, 40, 220],
                    [40, 220, 220], [250, 140, 20], [130, 40, 170], [120, 120, 120], [250, 250, 250]], dtype=np.float64)
BIDMC_RANGES = {"HR": (55.0, 125.0), "RR": (8.0, 30.0), "SpO2": (88.0, 100.0)}
BIDMC_RATE = 125  # Hz: 4000 steps = 32 s


def _tone(rng: np.random.Generator, freq: float, n: int, rate: int, noise: float) -> np.ndarray:
    t = np.arange(n) / rate
    duration = rng.uniform(0.5, 0.8) * n
    onset = rng.uniform(0, n - duration)
    local = np.arange(n) - onset
    envelope = np.clip(local / (0.01 * rate), 0, 1) * np.clip((onset + duration - np.arange(n)) / (0.01 * rate), 0, 1)
    wave = rng.uniform(0.3, 0.6) * envelope * np.sin(2 * math.pi * freq * t + rng.uniform(0, 2 * math.pi))
    return np.clip(wave + noise * rng.standard_normal(n), -1, 1)


def write_speech_commands(root: str | os.PathLike, *, words: Sequence[str] = SC35, subdir: str = "SpeechCommands",
                          n_train: int = 3, n_val: int = 1, n_test: int = 1, rate: int = 16000, length: int = 16000,
                          short_every: int = 4, noise: float = 0.02, seed: int = 0) -> Path:
    """``root/subdir/<word>/<speaker>_nohash_0.wav`` (16-bit PCM) for every word, ``n_train`` +
    ``n_val`` + ``n_test`` clips each, with ``validation_list.txt``/``testing_list.txt`` naming the
    val and test clips. Every ``short_every``-th clip is 3/4 of ``length`` (the release has short
    clips too; 0 for none). Returns ``root/subdir``."""
    base, rng = Path(root) / subdir, np.random.default_rng(seed)
    listed: dict[str, list[str]] = {"val": [], "test": []}
    count = 0
    for c, word in enumerate(words):
        (base / word).mkdir(parents=True, exist_ok=True)
        freq = 150.0 * 2 ** (4.0 * c / max(1, len(words) - 1))
        for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
            for i in range(n):
                count += 1
                frames = length * 3 // 4 if short_every and count % short_every == 0 else length
                speaker = f"{(c * 7919 + count * 104729) & 0xFFFFFFFF:08x}"
                rel = f"{word}/{speaker}_nohash_0.wav"
                write_wav(base / rel, torch.from_numpy(_tone(rng, freq, frames, rate, noise)).float(), rate, bits=16)
                if split in listed:
                    listed[split].append(rel)
    for split, name in LISTS.items():
        (base / name).write_text("".join(f"{rel}\n" for rel in listed[split]))
    return base


def _cifar_batch(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """(n, 3072) uint8 R, G, B planes: each image its class colour under a random ramp, plus noise."""
    n = len(labels)
    ramp = np.linspace(0.6, 1.0, 32)
    rows = np.where(rng.random(n)[:, None, None] < 0.5, ramp[None, :, None], ramp[None, None, :])  # (n, 32, 1|32)
    shade = np.broadcast_to(rows, (n, 32, 32))
    image = PALETTE[labels][:, :, None, None] * shade[:, None] + rng.normal(0, 25, (n, 3, 32, 32))  # (n, C, H, W)
    return np.clip(image, 0, 255).astype(np.uint8).reshape(n, 3072)


def write_cifar(directory: str | os.PathLike, *, n_per_batch: int = 20, seed: int = 0) -> Path:
    """``directory/{data_batch_1..5,test_batch}``: the CIFAR-10 python batches (pickled dicts with
    b"data" (n, 3072) uint8 R, G, B planes and b"labels"), with learnable class colours."""
    directory, rng = Path(directory), np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = rng.integers(0, 10, n_per_batch)
        batch = {b"batch_label": name.encode(), b"labels": labels.tolist(), b"data": _cifar_batch(rng, labels),
                 b"filenames": [f"img_{i}.png".encode() for i in range(n_per_batch)]}
        with open(directory / name, "wb") as f:
            pickle.dump(batch, f)
    return directory


def _idx(array: np.ndarray) -> bytes:
    magic = 0x00000800 | array.ndim  # unsigned bytes
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def _digits(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    n = len(labels)
    images = np.where(rng.random((n, 28, 28)) < 0.03, rng.integers(0, 256, (n, 28, 28)), 0).astype(np.float64)
    for k, c in enumerate(labels):
        height = 2 + 2 * int(c)
        top, left = rng.integers(2, 28 - height - 1 + 1), rng.integers(3, 10)
        images[k, top:top + height, left:left + 14] = rng.uniform(200, 255)
    return images.astype(np.uint8)


def write_mnist(directory: str | os.PathLike, *, n_train: int = 120, n_test: int = 40, gz: bool = False,
                seed: int = 0) -> Path:
    """``directory/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (``.gz`` with ``gz``): the idx
    format of the MNIST database, 28 x 28 images with learnable class bars."""
    directory, rng = Path(directory), np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for part, n in (("train", n_train), ("test", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        for name, array in zip(MNIST_FILES[part], (_digits(rng, labels), labels)):
            data = _idx(array)
            if gz:
                with gzip.open(directory / f"{name}.gz", "wb") as f:
                    f.write(data)
            else:
                (directory / name).write_bytes(data)
    return directory


def write_bidmc(root: str | os.PathLike, *, targets: Sequence[str] = ("HR", "RR", "SpO2"), subdir: str = "bidmc",
                n_train: int = 48, n_val: int = 16, n_test: int = 16, length: int = 4000, reshuffle: bool = True,
                noise: float = 0.1, seed: int = 0) -> Path:
    """``root/subdir/<target>/<reshuffle|original>/{trainx,...,testy}.npy``: float64 ``(N, length, 2)``
    inputs and ``(N,)`` targets in the target's own units, as the S4 preparation script writes
    them. Returns ``root/subdir``."""
    rng = np.random.default_rng(seed)
    t = np.arange(length) / BIDMC_RATE
    for target in targets:
        lo, hi = BIDMC_RANGES[target]
        directory = Path(root) / subdir / target / ("reshuffle" if reshuffle else "original")
        directory.mkdir(parents=True, exist_ok=True)
        for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
            y = rng.uniform(lo, hi, n)
            u = (y - lo) / (hi - lo)  # (n,) in [0, 1]
            freq = (0.5 + 1.5 * u)[:, None]  # Hz
            phase = rng.uniform(0, 2 * math.pi, (n, 1))
            pulse = np.sin(2 * math.pi * freq * t[None] + phase)  # (n, L)
            level = (u - 0.5)[:, None] * np.ones((1, length))
            x = np.stack([pulse, level], axis=-1) + noise * rng.standard_normal((n, length, 2))  # (n, L, 2)
            x_name, y_name = BIDMC_FILES[split]
            np.save(directory / f"{x_name}.npy", x)
            np.save(directory / f"{y_name}.npy", y)
    return Path(root) / subdir
