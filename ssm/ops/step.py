"""The compiled CPU pieces of SaShiMi's fast generation step (``FastStepper`` in
``ssm/models/generation.py``, whose PyTorch path is their reference and the math's home).

    residual_chain   one tier's depth-sequential chain of prenorm residual blocks for one sample:
                     layer norms, skip terms, activation, output map, residual adds
                     (csrc/cpu/residual_chain_cpu.cpp)
    siso_bank_begin  the chunked state bank of per-channel SSM layers: every step's state part
    siso_bank_end    of the output at a chunk's start, then each step's push / the chunk's end
                     (csrc/cpu/siso_bank_cpu.cpp)

Inference only (no autograd). Their fake kernels are registered here, at import, so the ops trace
under ``torch.compile`` however the library was loaded.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from . import _schemas  # noqa: F401  (torch.ops.ssm.* defined)

# The choices of residual_chain, by name (the C++ op maps them to its own codes).
KINDS = ("feed_forward", "channel_ssm", "dense_ssm")  # a block: feed-forward, per-channel SSM (S4/S4D), S5
ACTIVATIONS = ("identity", "gelu", "silu", "relu", "tanh")
FINALS = ("identity", "linear", "glu")  # the SSM block's output map


def residual_chain(x: torch.Tensor, params: Sequence[torch.Tensor], ys: Sequence[torch.Tensor],
                   us: Sequence[torch.Tensor], kinds: Sequence[str], eps: Sequence[float], activation: str,
                   final: str, collect: Sequence[torch.Tensor] = (), add: Sequence[torch.Tensor] = ()) -> torch.Tensor:
    """The new ``x`` (B, H) after the blocks ``kinds`` (one of ``KINDS`` each, ``eps`` its layer
    norm's epsilon): feed-forward blocks take 6 ``params`` (ln weight, ln bias, W1 (H, F), b1,
    W2 (F, H), b2), SSM blocks 5 (ln weight, ln bias, skip d (H,) or (H, H), W, bias of the
    ``final`` map). ``ys[i]`` is SSM layer i's state part of the output; its input is written to
    ``us[i]``. ``collect[j]`` (if given) receives x after block j, ``add[j]`` is added to it."""
    return torch.ops.ssm.residual_chain(x, list(params), list(ys), list(us), list(kinds), list(eps), activation,
                                        final, list(collect), list(add))


def siso_bank_begin(FT: torch.Tensor, X: torch.Tensor, Acc: torch.Tensor) -> None:
    """``Acc[j, q] = Re(F_q E^j X)`` for every step j of the chunk (written in place)."""
    torch.ops.ssm.siso_bank_begin(FT, X, Acc)


def siso_bank_end(X: torch.Tensor, Acc: torch.Tensor, Kd: torch.Tensor, U: torch.Tensor, ETr: torch.Tensor,
                  ETi: torch.Tensor, j: int) -> None:
    """After step ``j``: push its psi into the chunk's later steps, or (j = T-1) advance the state
    ``X`` by the whole chunk (both in place)."""
    torch.ops.ssm.siso_bank_end(X, Acc, Kd, U, ETr, ETi, j)


# ---- fake kernels: shapes and dtypes only ----------------------------------------------------


@torch.library.register_fake("ssm::residual_chain")
def _residual_chain_fake(x, params, ys, us, kinds, eps, activation, final, collect, add):
    torch._check(x.dim() == 2, lambda: f"ssm::residual_chain: x must be (B, H), got {tuple(x.shape)}")
    torch._check(len(eps) == len(kinds), lambda: f"ssm::residual_chain: {len(kinds)} blocks but {len(eps)} eps")
    torch._check(len(ys) == len(us), lambda: "ssm::residual_chain: ys and us need one entry per SSM layer")
    return torch.empty_like(x, memory_format=torch.contiguous_format)


@torch.library.register_fake("ssm::siso_bank_begin")
def _siso_bank_begin_fake(FT, X, Acc):
    torch._check(X.dim() == 3 and FT.dim() == 3 and Acc.dim() == 4,
                 lambda: "ssm::siso_bank_begin: FT (R, T*m, 2n), X (R, 2n, B), Acc (T, m, R, B)")
    return None


@torch.library.register_fake("ssm::siso_bank_end")
def _siso_bank_end_fake(X, Acc, Kd, U, ETr, ETi, j):
    torch._check(X.dim() == 3 and Acc.dim() == 4 and Kd.dim() == 4 and U.dim() == 3,
                 lambda: "ssm::siso_bank_end: X (R, 2n, B), Acc (T, m, R, B), Kd (T-1, m, m, R), U (R, 2n, T*m)")
    return None
