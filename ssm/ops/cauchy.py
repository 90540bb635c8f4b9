"""Cauchy kernel with conjugate-pair symmetry, the core of the S4 (DPLR) convolution kernel.

    cauchy(v, z, w)[..., l] = sum_n v_n / (z_l - w_n) + conj(v_n) / (z_l - conj(w_n))

Only one half of each conjugate pair of poles is stored (S4, arXiv 2111.00396, Sec. 3.3 and
App. C.3). Shapes: ``v, w: (..., N)`` complex with broadcastable batch dims, ``z: (L,)``
complex; the result is ``(..., L)`` complex. Gradients flow to ``v`` and ``w`` on every backend;
to ``z`` on the ``torch`` and ``keops`` backends only (S4 never needs it).

Backends:
    cpp    fused C++ kernel (csrc/cpu/cauchy_cpu.cpp): O(rows * (N + L)) memory
    cuda   CUDA kernel (csrc/cuda/cauchy_cuda.cu)
    keops  pykeops map-reduce (optional; compiles each formula on first use)
    torch  plain PyTorch in chunks of L with the analytic backward, so memory stays bounded
and ``cauchy_ref``: the formula written out over a materialised (..., N, L) tensor, differentiated
by autograd; the yardstick for every backend.
"""

from __future__ import annotations

import torch

from . import _dispatch, _schemas, _validate  # noqa: F401  (_schemas: torch.ops.ssm.* defined)
from ._dispatch import Backend

__all__ = ["cauchy", "cauchy_ref"]

OP = "cauchy"
# Elements of the (rows, N, chunk) temporaries in the torch backend (~32 MB in complex64).
_TORCH_CHUNK_ELEMENTS = 1 << 22


def cauchy_ref(v: torch.Tensor, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Reference: materialise every (n, l) term. Memory O(batch * N * L)."""
    v, w = v.unsqueeze(-1), w.unsqueeze(-1)  # (..., N, 1)
    terms = v / (z - w) + v.conj() / (z - w.conj())  # (..., N, L)
    return terms.sum(dim=-2)  # (..., L)


# ---- torch backend: chunked forward and analytic backward ---------------------------------


def _chunk(rows: int, n: int, length: int) -> int:
    return max(1, min(length, _TORCH_CHUNK_ELEMENTS // max(1, rows * n)))


def _torch_forward(v: torch.Tensor, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    R, N = v.shape
    L = z.shape[0]
    out = v.new_empty(R, L)
    step = _chunk(R, N, L)
    vc, wc = v.unsqueeze(-1), w.unsqueeze(-1)  # (R, N, 1)
    for start in range(0, L, step):
        zc = z[start : start + step]  # (Lc,)
        out[:, start : start + step] = (vc / (zc - wc) + vc.conj() / (zc - wc.conj())).sum(-2)
    return out


def _torch_backward(grad, v, z, w, need_z: bool):
    """dL/d(conj v), dL/d(conj w) (and dL/d(conj z)) in PyTorch's complex convention."""
    R, N = v.shape
    L = z.shape[0]
    step = _chunk(R, N, L)
    gv = torch.zeros_like(v)
    t = torch.zeros_like(v)
    gz = torch.empty_like(z) if need_z else None
    wc = w.conj().unsqueeze(-1)  # (R, N, 1)
    for start in range(0, L, step):
        sl = slice(start, start + step)
        zc, gc = z[sl], grad[:, None, sl]  # (Lc,), (R, 1, Lc)
        a = zc.conj() - wc  # conj(z - w)        (R, N, Lc)
        b = zc - wc  # z - conj(w)
        p, q = gc / a, gc.conj() / b
        gv += (p + q).sum(-1)
        t += (p / a + q / b).sum(-1)
        if need_z:
            # d out / d z = -sum_n [v/(z-w)^2 + conj(v)/(z-conj w)^2], holomorphic in z
            dz = -(v.unsqueeze(-1) / (zc - w.unsqueeze(-1)) ** 2 + v.conj().unsqueeze(-1) / b**2).sum(-2)
            gz[sl] = (grad[:, sl] * dz.conj()).sum(0)
    return gv, v.conj() * t, gz


class _CauchyTorch(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v, z, w):
        ctx.save_for_backward(v, z, w)
        return _torch_forward(v, z, w)

    @staticmethod
    def backward(ctx, grad):
        v, z, w = ctx.saved_tensors
        gv, gw, gz = _torch_backward(grad, v, z, w, ctx.needs_input_grad[1])
        return gv, gz, gw


# ---- keops backend -------------------------------------------------------------------------


def _keops(v: torch.Tensor, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    from pykeops.torch import LazyTensor

    R, L0 = v.shape[0], z.shape[0]
    # KeOps infers i/j/parameter from the shape and misreads axes of size 1: pad both to >= 2
    # with terms that contribute exactly nothing (a zero residue far from every z; a dropped z).
    if v.shape[1] == 1:
        far = z.abs().max().detach() + 1
        v = torch.cat([v, torch.zeros_like(v)], dim=1)
        w = torch.cat([w, torch.full_like(w, far)], dim=1)
    if L0 == 1:
        z = torch.cat([z, z])
    N, L = v.shape[1], z.shape[0]
    z_i = LazyTensor(z.reshape(1, L, 1, 1))  # i: the L axis
    v_j = LazyTensor(v.reshape(R, 1, N, 1))  # j: the N axis, reduced
    w_j = LazyTensor(w.reshape(R, 1, N, 1))
    terms = v_j / (z_i - w_j) + v_j.conj() / (z_i - w_j.conj())
    return terms.sum(dim=2).reshape(R, L)[:, :L0]


# ---- dispatcher ----------------------------------------------------------------------------


def _no_z_grad(z):
    return "a gradient for `z` is only computed by the torch and keops backends" if z.requires_grad else None


# ---- the compiled op torch.ops.ssm.cauchy: fake kernel and autograd, registered at import -----


@torch.library.register_fake("ssm::cauchy")
def _cauchy_fake(v, z, w):
    torch._check(v.dim() == 2 and w.shape == v.shape and z.dim() == 1,
                 lambda: f"ssm::cauchy: v, w (R, N) and z (L,), got {tuple(v.shape)}, {tuple(w.shape)}, {tuple(z.shape)}")
    return v.new_empty((v.shape[0], z.shape[0]))  # (R, L)


@torch.library.register_fake("ssm::cauchy_backward")
def _cauchy_backward_fake(grad, v, z, w):
    torch._check(grad.shape == (v.shape[0], z.shape[0]),
                 lambda: f"ssm::cauchy_backward: grad must be (R, L) = {(v.shape[0], z.shape[0])}, got {tuple(grad.shape)}")
    return torch.empty_like(v), torch.empty_like(w)


def _cauchy_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _cauchy_vjp(ctx, grad):
    v, z, w = ctx.saved_tensors
    if ctx.needs_input_grad[1]:
        raise NotImplementedError("ssm::cauchy computes no gradient for `z`; use backend='torch' or 'keops'")
    gv, gw = torch.ops.ssm.cauchy_backward(grad.contiguous(), v, z, w)
    return gv, None, gw


torch.library.register_autograd("ssm::cauchy", _cauchy_vjp, setup_context=_cauchy_setup)


PREDICATES = {
    "cuda": lambda v, z, w: _no_z_grad(z) or _dispatch.compiled("cuda", "cuda", (v, z, w)),
    "cpp": lambda v, z, w: _no_z_grad(z) or _dispatch.compiled("cpu", "cpu", (v, z, w)),
    "keops": lambda v, z, w: _dispatch.keops_status(),
    "torch": lambda v, z, w: None,
}

IMPLEMENTATIONS = {
    "cuda": lambda v, z, w: torch.ops.ssm.cauchy(v, z, w),
    "cpp": lambda v, z, w: torch.ops.ssm.cauchy(v, z, w),
    "keops": _keops,
    "torch": _CauchyTorch.apply,
}


def check(v, z, w) -> tuple[torch.Size, int, int]:
    """Validate arguments; returns (batch shape, N, L)."""
    _validate.complex_tensor(OP, "v", v)
    _validate.complex_tensor(OP, "w", w)
    _validate.complex_tensor(OP, "z", z)
    if z.dim() != 1:
        raise ValueError(f"{OP}: `z` must be 1-D (L,), got shape {tuple(z.shape)}")
    _validate.same_dtype(OP, v=v, z=z, w=w)
    _validate.same_device(OP, v=v, z=z, w=w)
    n = _validate.same_last_dim(OP, "v", v, "w", w)
    batch = _validate.broadcast_batch(OP, v=v, w=w)
    return batch, n, z.shape[0]


def cauchy(v: torch.Tensor, z: torch.Tensor, w: torch.Tensor, *, backend: Backend = "auto") -> torch.Tensor:
    """``sum_n v/(z-w) + conj(v)/(z-conj(w))`` for ``v, w: (..., N)``, ``z: (L,)`` -> ``(..., L)``."""
    batch, n, length = check(v, z, w)
    v2 = v.expand(*batch, n).reshape(-1, n)  # (R, N)
    w2 = w.expand(*batch, n).reshape(-1, n)
    name = _dispatch.choose(OP, backend, PREDICATES, v2, z, w2)
    out = IMPLEMENTATIONS[name](v2, z, w2)  # (R, L)
    return out.reshape(*batch, length)
