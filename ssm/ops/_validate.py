"""Argument checks shared by the ops: clear errors that name the argument and what was expected."""

from __future__ import annotations

import torch

COMPLEX = (torch.complex64, torch.complex128)
REAL_OF = {torch.complex64: torch.float32, torch.complex128: torch.float64}


def tensor(op: str, name: str, t) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: `{name}` must be a torch.Tensor, got {type(t).__name__}")
    if t.numel() == 0:
        raise ValueError(f"{op}: `{name}` is empty (shape {tuple(t.shape)}); expected at least one element")
    return t


def complex_tensor(op: str, name: str, t, *, min_dim: int = 1) -> torch.Tensor:
    tensor(op, name, t)
    if t.dtype not in COMPLEX:
        raise TypeError(f"{op}: `{name}` must be complex64 or complex128, got {t.dtype}")
    if t.dim() < min_dim:
        raise ValueError(f"{op}: `{name}` must have at least {min_dim} dim(s), got shape {tuple(t.shape)}")
    return t


def real_tensor(op: str, name: str, t, *, min_dim: int = 1) -> torch.Tensor:
    tensor(op, name, t)
    if not t.dtype.is_floating_point:
        raise TypeError(f"{op}: `{name}` must be a floating-point tensor, got {t.dtype}")
    if t.dim() < min_dim:
        raise ValueError(f"{op}: `{name}` must have at least {min_dim} dim(s), got shape {tuple(t.shape)}")
    return t


def same_dtype(op: str, **named: torch.Tensor) -> torch.dtype:
    dtypes = {name: t.dtype for name, t in named.items()}
    if len(set(dtypes.values())) > 1:
        listing = ", ".join(f"`{n}`: {d}" for n, d in dtypes.items())
        raise TypeError(f"{op}: inputs must share one dtype, got {listing}")
    return next(iter(dtypes.values()))


def same_device(op: str, **named: torch.Tensor) -> torch.device:
    devices = {name: t.device for name, t in named.items()}
    if len(set(devices.values())) > 1:
        listing = ", ".join(f"`{n}`: {d}" for n, d in devices.items())
        raise ValueError(f"{op}: inputs must be on one device, got {listing}")
    return next(iter(devices.values()))


def same_last_dim(op: str, a: str, ta: torch.Tensor, b: str, tb: torch.Tensor) -> int:
    if ta.shape[-1] != tb.shape[-1]:
        raise ValueError(
            f"{op}: `{a}` and `{b}` must have the same state size N in their last dim, "
            f"got {tuple(ta.shape)} and {tuple(tb.shape)}"
        )
    return ta.shape[-1]


def broadcast_batch(op: str, **named: torch.Tensor) -> torch.Size:
    """Broadcast the leading (batch) dims of tensors whose last dim is the op's own axis."""
    try:
        return torch.broadcast_shapes(*(t.shape[:-1] for t in named.values()))
    except RuntimeError:
        listing = ", ".join(f"`{n}`: {tuple(t.shape)}" for n, t in named.items())
        raise ValueError(f"{op}: batch dims (all but the last) must broadcast, got {listing}") from None


def length(op: str, name: str, L) -> int:
    if isinstance(L, bool) or not isinstance(L, int):
        raise TypeError(f"{op}: `{name}` must be an int, got {type(L).__name__}")
    if L < 1:
        raise ValueError(f"{op}: `{name}` must be >= 1, got {L}")
    return L
