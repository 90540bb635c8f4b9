"""LRA Pathfinder and Path-X: are the two dots joined by one dashed path? (Linsley et al.,
arXiv 1805.08315; Kim et al. 2020; LRA, arXiv 2011.04006). Pixels in row-major order: L = 1024
at 32x32 (Pathfinder), 4096 at 64x64, 16384 at 128x128 (Path-X).

Reads the release layout ``pathfinder{32,64,128}/<difficulty>/{imgs/<n>/sample_<k>.png,
metadata/<n>.npy}``. Despite the extension a metadata file is text: one whitespace-separated row
per image, ``<imgs subdir> <file name> <index> <label> ...`` (the generator's further columns
are contour/paddle settings), so the image is ``<difficulty>/<col 0>/<col 1>`` and the label is
column 3. Metadata files are read in numeric order, rows in file order, as S4 does; LRA uses the
hardest difficulty, ``curv_contour_length_14``.

Splits as S4 (``resolution=128`` is its Path-X): ``val`` and ``test`` are ``int(0.1 N)`` images
each and ``train`` the rest, from one ``torch.randperm(N)`` under ``split_seed`` = 42.
Pixels are normalised as S4, ``p / 127.5 - 1`` in [-1, 1].

The cache key covers the metadata files and the ``imgs/<n>`` directories (size and mtime) rather
than every image: adding, removing or renaming images changes a directory's mtime, but an image
rewritten in place under the same name does not; delete ``<root>/.ssm_cache/pathfinder*`` then.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ...checks import check_choice
from .base import (
    RELEASE_URL,
    check_split,
    format_error,
    read_lines,
    require_files,
    resolve_root,
    s4_split,
)
from .cache import ArrayCache, default_cache_root, source_fingerprint

Difficulty = Literal["curv_baseline", "curv_contour_length_9", "curv_contour_length_14"]
# Known-empty files of the release, excluded by name (S4 excludes the same one).
KNOWN_EMPTY = {("pathfinder32", "curv_baseline", "imgs/0", "sample_172.png")}

_log = logging.getLogger("ssm")


def layout(resolution: int, difficulty: str) -> str:
    return f"""  <root>/pathfinder/pathfinder{resolution}/{difficulty}/   (the release's lra_release/pathfinder{resolution}/; `subdir` to change)
    imgs/<n>/sample_<k>.png       {resolution}x{resolution} grayscale images
    metadata/<n>.npy              text, one row per image: "imgs/<n> sample_<k>.png <index> <label 0|1> ..."
  Download: {RELEASE_URL}; or generate offline: python -m ssm.data.lra.generators pathfinder --root <root> --resolution {resolution}"""


def metadata_files(data_dir: Path) -> list[Path]:
    files = [p for p in (data_dir / "metadata").iterdir() if p.suffix == ".npy"]
    bad = [p.name for p in files if not p.stem.isdigit()]
    if bad:
        raise format_error(data_dir / "metadata" / bad[0], None, "metadata files must be named <n>.npy with an integer n")
    return sorted(files, key=lambda p: int(p.stem))


def read_metadata(data_dir: Path, files: list[Path], *, resolution_dir: str, difficulty: str) -> list[tuple[Path, int, Path, int]]:
    """(image path, label, metadata file, line) per listed image, in release order."""
    rows = []
    for meta in files:
        with open(meta, "rb") as f:
            for lineno, line in enumerate(read_lines(meta, f), start=1):
                cols = line.split()
                if not cols:
                    raise format_error(meta, lineno, "empty metadata row; expected '<imgs subdir> <file> <index> <label> ...'")
                if len(cols) < 4:
                    raise format_error(meta, lineno, f"expected at least 4 whitespace-separated columns "
                                                     f"('<imgs subdir> <file> <index> <label> ...'), got {len(cols)}")
                if cols[3] not in ("0", "1"):
                    raise format_error(meta, lineno, f"label (column 4) must be 0 or 1, got {cols[3]!r}")
                if (resolution_dir, difficulty, cols[0], cols[1]) in KNOWN_EMPTY:
                    continue
                rows.append((data_dir / cols[0] / cols[1], int(cols[3]), meta, lineno))
    return rows


def read_png(path: Path, resolution: int, meta: Path, lineno: int) -> np.ndarray:
    """A (resolution, resolution) uint8 grayscale image; errors name the image and its metadata row."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    if not path.is_file():
        raise FileNotFoundError(f"{meta}:{lineno}: lists image {path}, which does not exist")
    try:
        with PILImage.open(path) as im:
            pixels = np.asarray(im.convert("L"))
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise format_error(path, None, f"unreadable PNG (listed at {meta}:{lineno}): {err}") from None
    if pixels.shape != (resolution, resolution):
        raise format_error(path, None, f"image is {pixels.shape[1]}x{pixels.shape[0]}, expected "
                                       f"{resolution}x{resolution} (listed at {meta}:{lineno})")
    return pixels


class Pathfinder(torch.utils.data.Dataset):
    """LRA Pathfinder at ``resolution`` 32/64/128; item ``(x (L, 1) float in [-1, 1], y () long,
    length = L)`` with L = resolution^2."""

    task = "pathfinder"
    n_classes = 2

    def __init__(self, split: str = "train", *, root: str | os.PathLike | None = None, resolution: int = 32,
                 difficulty: Difficulty = "curv_contour_length_14", subdir: str = "pathfinder",
                 val_split: float = 0.1, test_split: float = 0.1, split_seed: int = 42,
                 cache_dir: str | os.PathLike | None = None):
        owner = type(self).__name__
        check_split(owner, split)
        check_choice(owner, "difficulty", difficulty, Difficulty)
        if resolution < 4:
            raise ValueError(f"{owner}: `resolution` must be >= 4 (32, 64 or 128 in LRA), got {resolution}")
        if val_split < 0 or test_split < 0 or val_split + test_split >= 1:
            raise ValueError(f"{owner}: need val_split, test_split >= 0 with a sum below 1, got {val_split}, {test_split}")
        self.root = resolve_root(root)
        self.resolution, self.length, self.split = resolution, resolution * resolution, split
        self.data_dir = self.root / subdir / f"pathfinder{resolution}" / difficulty
        self._difficulty = difficulty
        require_files(owner, [self.data_dir / "metadata", self.data_dir / "imgs"], layout(resolution, difficulty))
        metas = metadata_files(self.data_dir)
        if not metas:
            raise FileNotFoundError(f"{owner}: no metadata/<n>.npy files in {self.data_dir}\n{layout(resolution, difficulty)}")
        img_dirs = sorted(p for p in (self.data_dir / "imgs").iterdir() if p.is_dir())
        cache = ArrayCache(default_cache_root(self.root, cache_dir), f"{self.task}{resolution}", {
            "sources": source_fingerprint([*metas, *img_dirs], self.data_dir), "difficulty": difficulty,
        })
        self._arrays = cache.load() or self._build(cache, metas)
        n = len(self._arrays["labels"])
        parts = s4_split(n, [1.0 - val_split - test_split, val_split, test_split], split_seed)
        self._indices = dict(zip(("train", "val", "test"), parts))[split]

    def _build(self, cache: ArrayCache, metas: list[Path]):
        rows = read_metadata(self.data_dir, metas, resolution_dir=f"pathfinder{self.resolution}", difficulty=self._difficulty)
        if not rows:
            raise format_error(self.data_dir / "metadata", None, "the metadata files list no images")
        _log.info("Pathfinder: decoding %d images of %s into the cache (once)", len(rows), self.data_dir)
        pixels = cache.create("pixels", (len(rows), self.length), np.uint8)
        try:
            for k, (path, _, meta, lineno) in enumerate(rows):
                pixels[k] = read_png(path, self.resolution, meta, lineno).reshape(-1)
        except BaseException:
            cache.abort()
            raise
        cache.save("labels", np.array([label for _, label, _, _ in rows], dtype=np.uint8))
        return cache.commit({"resolution": self.resolution})

    def __len__(self) -> int:
        return len(self._indices)

    def labels(self) -> np.ndarray:
        return np.asarray(self._arrays["labels"])[self._indices].astype(np.int64)

    def __getitem__(self, i: int):
        n = len(self._indices)
        if not -n <= i < n:
            raise IndexError(f"{type(self).__name__}: index {i} out of range for {n} examples")
        j = int(self._indices[i])
        pixels = torch.from_numpy(np.array(self._arrays["pixels"][j], dtype=np.float32))
        x = (pixels / 127.5 - 1.0).unsqueeze(-1)  # (L, 1)
        y = torch.tensor(int(self._arrays["labels"][j]), dtype=torch.long)
        return x, y, torch.tensor(self.length, dtype=torch.long)


class PathX(Pathfinder):
    """Path-X: Pathfinder at 128x128, L = 16384 (S4's ``pathfinder`` with ``resolution=128``)."""

    def __init__(self, split: str = "train", *, root: str | os.PathLike | None = None,
                 difficulty: Difficulty = "curv_contour_length_14", subdir: str = "pathfinder",
                 val_split: float = 0.1, test_split: float = 0.1, split_seed: int = 42,
                 cache_dir: str | os.PathLike | None = None):
        super().__init__(split, root=root, resolution=128, difficulty=difficulty, subdir=subdir, val_split=val_split,
                         test_split=test_split, split_seed=split_seed, cache_dir=cache_dir)
