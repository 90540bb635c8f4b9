"""Backend choice for the ops: one dispatcher, a ``supports`` predicate per backend.

``backend="auto"`` picks, in order, ``cuda`` (CUDA tensors, CUDA library loaded), ``cpp``
(CPU tensors, CPU library loaded), then ``torch``. ``keops`` is only used when asked for: its
per-formula JIT compile is slow and it is an optional accelerator, not a default.

``backend=`` on a call, or ``SSM_BACKEND`` in the environment, forces a choice. A forced backend
that cannot serve the call raises with the reason; it never silently falls back. ``SSM_BACKEND``
applies to the ops that have that backend; an op without it (``fftconv``, ``scan``) keeps its
own implementation.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Mapping
from typing import Literal

import torch

from . import _extension

Backend = Literal["auto", "cuda", "cpp", "keops", "torch"]
BACKENDS: tuple[str, ...] = ("cuda", "cpp", "keops", "torch")
AUTO_ORDER: tuple[str, ...] = ("cuda", "cpp", "torch")

# A predicate returns None when the backend can serve the call, else the reason it cannot.
Predicate = Callable[..., "str | None"]


def _env_backend() -> str | None:
    env = os.environ.get("SSM_BACKEND", "").strip().lower()
    if not env or env == "auto":
        return None
    if env not in BACKENDS:
        raise ValueError(f"SSM_BACKEND must be one of {', '.join(BACKENDS)} or auto, got {env!r}")
    return env


def choose(op: str, backend: str, predicates: Mapping[str, Predicate], *args) -> str:
    """Name of the backend that will run ``op`` on ``args``."""
    if backend not in ("auto", *BACKENDS):
        raise ValueError(f"{op}: backend must be one of auto, {', '.join(BACKENDS)}; got {backend!r}")
    forced = backend if backend != "auto" else _env_backend()
    if forced is not None and (backend != "auto" or forced in predicates):
        if forced not in predicates:
            raise ValueError(
                f"{op}: backend {forced!r} is not implemented for this op; "
                f"choose one of {', '.join(predicates)}"
            )
        reason = predicates[forced](*args)
        if reason is not None:
            origin = "backend=" if backend != "auto" else "SSM_BACKEND="
            raise RuntimeError(f"{op}: {origin}{forced!r} cannot run this call: {reason}")
        return forced
    for name in AUTO_ORDER:
        if name in predicates and predicates[name](*args) is None:
            return name
    raise RuntimeError(f"{op}: no backend can run this call")  # torch always can


# ---- shared predicates ---------------------------------------------------------------------


def compiled(library: str, device_type: str, tensors, *, dtypes=(torch.complex64, torch.complex128)):
    """Reason the compiled ``library`` cannot take ``tensors``, or None."""
    if any(t.device.type != device_type for t in tensors):
        return f"inputs are not all on {device_type}"
    if any(t.dtype not in dtypes for t in tensors):
        return f"dtype {tensors[0].dtype} is not one of {dtypes}"
    status = _extension.load(library)
    if not status.loaded:
        return f"the compiled {library} library is not available ({status.detail})"
    return None


_KEOPS: list[str | None] = []  # memo, a plain list so torch.compile can read it


def keops_status() -> str | None:
    """None when pykeops imports, else why not (the first call still JIT-compiles formulas)."""
    if _KEOPS:
        return _KEOPS[0]
    if torch.compiler.is_compiling():
        return "pykeops was not imported before torch.compile traced this call"
    _KEOPS.append(_keops_import_error())
    return _KEOPS[0]


def _keops_import_error() -> str | None:
    if importlib.util.find_spec("pykeops") is None:
        return "pykeops is not installed (pip install pykeops)"
    try:
        import pykeops.torch  # noqa: F401
    except (ImportError, OSError, RuntimeError) as err:
        return f"pykeops failed to import: {err}"
    return None


def backends() -> dict[str, str]:
    """Which backends are available in this process, and why the others are not.

    Triggers the (cached) build of the compiled libraries if that has not happened yet.
    """
    cpu = _extension.load("cpu")
    cuda = _extension.load("cuda")
    keops = keops_status()
    return {
        "torch": "available",
        "cpp": f"available ({cpu.origin}: {cpu.detail}; {_cpu_parallelism()})" if cpu.loaded else f"unavailable: {cpu.detail}",
        "cuda": f"available ({cuda.origin}: {cuda.detail})" if cuda.loaded else f"unavailable: {cuda.detail}",
        "keops": "available" if keops is None else f"unavailable: {keops}",
    }


def _cpu_parallelism() -> str:
    """How the loaded CPU library runs its loops (csrc/parallel.h)."""
    if not torch.ops.ssm.built_with_openmp():
        return "serial: built without OpenMP"
    return f"parallel on torch's {torch.get_num_threads()} intra-op threads"
