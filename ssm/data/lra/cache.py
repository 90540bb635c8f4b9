"""An on-disk cache of tokenised/decoded LRA arrays, so only the first construction parses text.

Layout: ``<cache_root>/<task>/<key>/{<name>.npy ..., manifest.json}`` with ``cache_root``
defaulting to ``<data root>/.ssm_cache``. ``key`` hashes the source files' (relative path, size,
mtime) and the tokenisation settings, so editing a source file or changing a setting selects a
new directory. Arrays are opened with ``np.load(mmap_mode="r")``: a split costs no memory
until its items are read, and DataLoader workers share the page cache.

Every file is written to a temporary name and moved into place with ``os.replace``;
``manifest.json`` goes last and marks the entry complete, so a killed run or two processes
building the same entry (DDP ranks) never leave a half-written cache that later loads.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterable
from pathlib import Path

import numpy as np

MANIFEST = "manifest.json"
CACHE_VERSION = 1


def default_cache_root(root: Path, cache_dir: str | os.PathLike | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir else root / ".ssm_cache"


def source_fingerprint(paths: Iterable[Path], base: Path) -> str:
    """sha256 over (path relative to ``base``, size, mtime_ns) of every source file."""
    h = hashlib.sha256()
    count = 0
    for path in paths:
        st = path.stat()
        rel = os.path.relpath(path, base)
        h.update(f"{rel}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
        count += 1
    h.update(f"count={count}".encode())
    return h.hexdigest()


def _tmp_name(directory: Path, name: str) -> Path:
    return directory / f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path.parent, path.name)
    tmp.write_text(text)
    os.replace(tmp, path)


class CachedArrays:
    """Named read-only arrays of a complete cache entry, memory-mapped on first use in each
    process (pickles as paths only, so DataLoader workers reopen rather than copy)."""

    def __init__(self, directory: Path, names: list[str], meta: dict):
        self.directory, self.names, self.meta = Path(directory), list(names), meta
        self._open: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._open:
            if name not in self.names:
                raise KeyError(f"cache entry {self.directory} has no array {name!r} (has {self.names})")
            self._open[name] = np.load(self.directory / f"{name}.npy", mmap_mode="r")
        return self._open[name]

    def __getstate__(self):
        return {"directory": self.directory, "names": self.names, "meta": self.meta, "_open": {}}


class ArrayCache:
    """One cache entry, addressed by ``task`` and a JSON-serialisable ``key_material``."""

    def __init__(self, cache_root: Path, task: str, key_material: dict):
        blob = json.dumps({"version": CACHE_VERSION, **key_material}, sort_keys=True).encode()
        self.key = hashlib.sha256(blob).hexdigest()[:20]
        self.directory = Path(cache_root) / task / self.key
        self.key_material = key_material
        self._pending: dict[str, Path] = {}
        self._maps: list[np.memmap] = []

    def load(self) -> CachedArrays | None:
        manifest = self.directory / MANIFEST
        if not manifest.is_file():
            return None
        info = json.loads(manifest.read_text())
        if any(not (self.directory / f"{n}.npy").is_file() for n in info["arrays"]):
            return None  # deleted by hand: rebuild
        return CachedArrays(self.directory, info["arrays"], info["meta"])

    # -- writing -------------------------------------------------------------------------------

    def save(self, name: str, array: np.ndarray) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = _tmp_name(self.directory, name)
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(array), allow_pickle=False)
        self._pending[name] = tmp

    def create(self, name: str, shape: tuple[int, ...], dtype) -> np.memmap:
        """A writable memory-mapped .npy to fill in place (for arrays too big to hold twice)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = _tmp_name(self.directory, name)
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        self._pending[name] = tmp
        self._maps.append(array)
        return array

    def commit(self, meta: dict) -> CachedArrays:
        for array in self._maps:
            array.flush()
        self._maps.clear()
        for name, tmp in self._pending.items():
            os.replace(tmp, self.directory / f"{name}.npy")
        names = sorted(self._pending)
        self._pending.clear()
        manifest = {"arrays": names, "meta": meta, "key_material": self.key_material}
        atomic_write_text(self.directory / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
        return CachedArrays(self.directory, names, meta)

    def abort(self) -> None:
        self._maps.clear()
        for tmp in self._pending.values():
            tmp.unlink(missing_ok=True)
        self._pending.clear()
