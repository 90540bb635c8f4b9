"""BIDMC vital-signs regression: heart rate (HR), respiratory rate (RR) or blood-oxygen
saturation (SpO2) from 32-s windows of two physiological signals (PPG and ECG at 125 Hz, 4000
steps), the medical time-series benchmark of LSSL (arXiv 2110.13985), S4 (arXiv 2111.00396) and
S4D (arXiv 2206.11893); the windows are the BIDMC32{HR,RR,SpO2} sets of the Monash/UEA/UCR time
series extrinsic regression archive (Tan et al. 2020), cut from the BIDMC PPG and respiration
recordings (Pimentel et al., IEEE TBME 2016).

Reads the preprocessed arrays the S4 code reads (state-spaces/s4 @e757cef,
``src/dataloaders/ts.py`` class ``BIDMC``; written by ``src/dataloaders/prepare/bidmc/process_data.py``
from the archive's ``BIDMC32<target>_{TRAIN,TEST}.ts``)::

    <root>/bidmc/<target>/reshuffle/{trainx,trainy,validx,validy,testx,testy}.npy
    <root>/bidmc/<target>/original/...        (reshuffle=false)

``*x.npy`` is ``(N, 4000, 2)`` and ``*y.npy`` ``(N,)``. ``reshuffle`` (the published setting) is
the archive's train and test sets pooled and re-split 70/15/15 at random; ``original`` keeps the
archive's test set and holds out the last seventh of its train set.

Items are ``(x (4000, 2) float32, y () float32)``, the inputs as stored (not normalised) and the
target in its own units, as the reference trains them (MSE loss; papers report the RMSE, the
square root of ``test/mse``). ``normalize_target`` standardises the target with the training
split's mean and std instead (``target_mean``/``target_std`` undo it): a faster start for short
runs, not the published protocol.
"""

from __future__ import annotations

import os
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from ..checks import check_choice
from .lra.base import check_split, format_error, resolve_root

Target = Literal["HR", "RR", "SpO2"]
FILES = {"train": ("trainx", "trainy"), "val": ("validx", "validy"), "test": ("testx", "testy")}


def _load(path, ndim: int, *, mmap: bool) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as err:  # object arrays (allow_pickle) or a damaged header
        raise format_error(path, None, f"not a plain numeric .npy array ({err})") from None
    if array.ndim != ndim or not np.issubdtype(array.dtype, np.number):
        want = "(N, L, C)" if ndim == 3 else "(N,)"
        raise format_error(path, None, f"expected a numeric array of shape {want}, got {array.shape} {array.dtype}")
    return array


class BIDMC(Dataset):
    """One split of BIDMC ``target`` regression; see the module docstring. ``x`` is the
    memory-mapped ``(N, L, C)`` input array, ``y`` the ``(N,)`` float32 targets (normalised with
    ``normalize_target``)."""

    def __init__(self, split: str = "train", *, root: str | os.PathLike | None = None, subdir: str = "bidmc",
                 target: Target = "RR", reshuffle: bool = True, normalize_target: bool = False):
        owner = type(self).__name__
        check_split(owner, split)
        check_choice(owner, "target", target, Target)
        self.directory = resolve_root(root) / subdir / target / ("reshuffle" if reshuffle else "original")
        paths = {part: [self.directory / f"{name}.npy" for name in names] for part, names in FILES.items()}
        for path in (p for pair in paths.values() for p in pair):
            if not path.is_file():
                raise FileNotFoundError(
                    f"{owner}: missing {path}\nExpected under the data root (constructor `root`, config `data_root`, "
                    f"or $SSM_DATA_ROOT): {subdir}/<HR|RR|SpO2>/<reshuffle|original>/"
                    "{trainx,trainy,validx,validy,testx,testy}.npy, as written by the S4 repository's "
                    "src/dataloaders/prepare/bidmc/process_data.py from the Monash archive's "
                    "BIDMC32<target>_{TRAIN,TEST}.ts")
        x_path, y_path = paths[split]
        self.x, y = _load(x_path, 3, mmap=True), _load(y_path, 1, mmap=False)
        if len(y) != len(self.x):
            raise format_error(y_path, None, f"{len(y)} targets for the {len(self.x)} windows of {x_path.name}")
        if not np.isfinite(y).all():
            raise format_error(y_path, None, f"target {int(np.flatnonzero(~np.isfinite(y))[0])} is not finite")
        bad = np.flatnonzero(~np.isfinite(self.x).all(axis=(1, 2)))
        if bad.size:
            raise format_error(x_path, None, f"window {int(bad[0])} has NaN or infinite values")
        self.target, self.split = target, split
        self.length, self.channels = int(self.x.shape[1]), int(self.x.shape[2])
        if normalize_target:
            train_y = y if split == "train" else _load(paths["train"][1], 1, mmap=False)
            self.target_mean, self.target_std = float(train_y.mean()), float(train_y.std()) or 1.0
        else:
            self.target_mean, self.target_std = 0.0, 1.0
        self.y = ((y.astype(np.float64) - self.target_mean) / self.target_std).astype(np.float32)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        n = len(self.y)
        if not -n <= i < n:
            raise IndexError(f"{type(self).__name__}: index {i} out of range for {n} examples")
        x = torch.from_numpy(np.array(self.x[i], dtype=np.float32))  # (L, C)
        return x, torch.tensor(self.y[i])
