"""Reading ``ssm-train`` checkpoints safely, and ``ssm.load`` (rebuild a model from a checkpoint
alone). Nothing here imports Lightning.

A checkpoint is a pickle, and unpickling an untrusted file can run any code, so every read goes
through ``read_checkpoint``: ``torch.load(weights_only=True)`` with an allowlist of the few
non-tensor types our checkpoints hold (NumPy's random state), and a check that every
``_target_`` in the stored config is one we ship (Hydra would otherwise instantiate whatever the
file names, e.g. ``shutil.copyfile``). ``trust=True`` (``trust_checkpoint=true`` on the command
lines) turns both checks off for a file the user knows.

A damaged file (empty, truncated, not a checkpoint) gets a ``CheckpointError`` that names it,
says it is damaged and lists the other checkpoints next to it. ``ssm.load``, ``ssm-predict``,
``ssm-generate``, ``pretrained=`` and ``ckpt_path=`` all read through ``read_checkpoint``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: damaged, or refused as unsafe. The message names the file."""


class UntrustedCheckpointError(CheckpointError):
    """The checkpoint holds a pickled object or a config ``_target_`` outside the allowlists."""


def config_dir() -> Path:
    """``configs/``: shipped inside the package (wheel) or at the repository root (editable)."""
    here = Path(__file__).resolve().parent.parent  # ssm/
    for candidate in (here / "configs", here.parent / "configs"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"ssm-train: configs/ not found next to {here}")


# -- what a checkpoint may contain ------------------------------------------------------------------

def _safe_globals() -> list:
    """Non-tensor types our checkpoints store: NumPy's generator state (``RandomState``), an array
    of uint32 keys. (Python's and torch's generator states are plain tuples and tensors.)"""
    import numpy as np

    multiarray = getattr(np, "_core", None) or np.core  # NumPy 2 renamed np.core
    return [multiarray.multiarray._reconstruct, np.ndarray, np.dtype, np.dtypes.UInt32DType,
            np.dtypes.Float64DType, np.dtypes.Int64DType]


# modules whose import does not pull in Lightning/Hydra: their classes are allowed as targets
_SSM_CLASS_MODULES = ("ssm", "ssm.layers", "ssm.models", "ssm.kernels", "ssm.data")
_TORCH_BASES = ("torch.nn.", "torch.optim.")


@lru_cache(maxsize=1)
def shipped_targets() -> frozenset[str]:
    """Every ``_target_`` named in the shipped ``configs/`` (our classes and factories, and the
    torch/Lightning classes the configs use)."""
    try:
        root = config_dir()
    except FileNotFoundError:
        return frozenset()
    pattern = re.compile(r"_target_:\s*([A-Za-z_][\w.]*)")
    return frozenset(m for p in root.rglob("*.yaml") for m in pattern.findall(p.read_text()))


def _allowed(target: str, extra: frozenset[str]) -> bool:
    if target in extra or target in shipped_targets():
        return True
    module, _, name = target.rpartition(".")
    if not module or not name[:1].isupper():  # only classes beyond the shipped list
        return False
    if module == "ssm" or any(module.startswith(m + ".") or module == m for m in _SSM_CLASS_MODULES[1:]):
        import importlib

        try:
            obj = getattr(importlib.import_module(module), name, None)
        except ImportError:
            return False
        return isinstance(obj, type) and obj.__module__.startswith("ssm.")
    if target.startswith(_TORCH_BASES):
        import importlib

        try:
            obj = getattr(importlib.import_module(module), name, None)
        except ImportError:
            return False
        return isinstance(obj, type) and issubclass(
            obj, (nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler))
    return False


def _targets(node, where: str = "") -> Iterable[tuple[str, str]]:
    """(config key, target) for every ``_target_`` in a nested dict/list config."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "_target_":
                yield where or "<root>", str(value)
            else:
                yield from _targets(value, f"{where}.{key}" if where else str(key))
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _targets(value, f"{where}[{i}]")


def check_targets(config: dict, *, source: str, allowed: Iterable[str] = ()) -> None:
    """Refuse a config with a ``_target_`` outside the allowlist: the shipped configs' targets,
    ``ssm`` classes from modules that need no trainer, ``torch.nn``/``torch.optim`` classes, and
    ``allowed`` (what the caller vouches for, e.g. the targets of the command line's own config)."""
    extra = frozenset(allowed)
    refused = [(key, target) for key, target in _targets(config) if not _allowed(target, extra)]
    if refused:
        listed = ", ".join(f"{key}._target_={target}" for key, target in refused[:5])
        raise UntrustedCheckpointError(
            f"{source}: its stored config names {len(refused)} `_target_` outside the allowlist ({listed}); "
            "instantiating it could run arbitrary code. If you know where this file comes from, load it with "
            "trust=True (Python) or trust_checkpoint=true (command line).")


def config_targets(config) -> set[str]:
    """The ``_target_`` values in a (resolved) config: what a command line vouches for."""
    return {target for _, target in _targets(config)}


# -- reading --------------------------------------------------------------------------------------

def checkpoint_neighbours(path: Path) -> list[str]:
    """The other ``*.ckpt`` files in the directory of ``path`` (for error messages)."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    return sorted(str(p) for p in path.parent.glob("*.ckpt") if p.resolve() != path.resolve())


def read_checkpoint(path: str | Path, *, map_location="cpu", trust: bool = False, mmap: bool = False,
                    allowed_targets: Iterable[str] = (), what: str = "checkpoint") -> dict:
    """The dict saved in an ``ssm-train`` checkpoint, read safely unless ``trust``.

    Raises ``FileNotFoundError`` for a missing file, ``UntrustedCheckpointError`` for a pickled
    object or a config ``_target_`` outside the allowlists, ``CheckpointError`` for a damaged
    file. ``what`` is how the messages name the argument (e.g. ``"ckpt_path"``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}={path}: no such checkpoint file")
    try:
        if path.stat().st_size == 0:
            raise EOFError("the file is empty")
        if trust:
            ckpt = torch.load(path, map_location=map_location, weights_only=False, mmap=mmap)
        else:
            with torch.serialization.safe_globals(_safe_globals()):
                ckpt = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as err:  # noqa: BLE001  (any failure to read is reported with the file's name)
        message = str(err)
        found = re.findall(r"GLOBAL ([\w.]+)", message) if "Weights only load failed" in message else []
        if found:  # a well-formed pickle naming a type we do not load (otherwise: damaged bytes)
            raise UntrustedCheckpointError(
                f"{what}={path}: refused: the file holds a pickled object outside the allowlist "
                f"({', '.join(dict.fromkeys(found))}), and unpickling it could run arbitrary code. "
                "If you know where this file comes from, load it with trust=True (Python) or "
                "trust_checkpoint=true (command line).") from None
        others = checkpoint_neighbours(path)
        raise CheckpointError(
            f"{what}={path}: the checkpoint is damaged and cannot be read ({type(err).__name__}: "
            f"{message.splitlines()[0][:200] if message else 'no detail'}); a write may have been cut off. "
            + (f"Other checkpoints in {path.parent}: {', '.join(others)}." if others
               else f"There is no other checkpoint in {path.parent}.")) from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{what}={path}: not an ssm-train checkpoint (holds a {type(ckpt).__name__}, not a dict)")
    config = (ckpt.get("hyper_parameters") or {}).get("config")
    if config and not trust:
        check_targets(config, source=f"{what}={path}", allowed=allowed_targets)
    return ckpt


def checkpoint_config(ckpt: dict, path: str | Path = "the checkpoint") -> dict:
    """The resolved ``ssm-train`` config stored in ``ckpt`` (from ``read_checkpoint``); ValueError if
    it holds none."""
    config = (ckpt.get("hyper_parameters") or {}).get("config")
    if not config or "model" not in config:
        raise ValueError(f"ssm.load: {path} holds no model config (was it written by ssm-train?)")
    return config


def model_from_checkpoint(ckpt: dict, path: str | Path = "the checkpoint") -> nn.Module:
    """The model of ``ckpt`` (from ``read_checkpoint``), rebuilt from its config, weights loaded."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    model = instantiate(OmegaConf.create(checkpoint_config(ckpt, path))["model"])
    state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    model.load_state_dict(state)
    return model


def load(checkpoint_path: str | Path, *, map_location="cpu", trust: bool = False) -> nn.Module:
    """Rebuild the model of an ``ssm-train`` checkpoint from the config stored inside it.

    The file is read with ``read_checkpoint``: refused (``UntrustedCheckpointError``) when it holds
    pickled objects or config targets outside the allowlists, unless ``trust=True``."""
    ckpt = read_checkpoint(checkpoint_path, map_location=map_location, trust=trust, what="checkpoint")
    return model_from_checkpoint(ckpt, checkpoint_path)
