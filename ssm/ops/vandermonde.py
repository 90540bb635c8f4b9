"""Vandermonde kernel for diagonal SSMs (S4D, S4-PTD; arXiv 2206.11893 Sec. 3), and its transpose.

    vandermonde(v, x, L)[..., l]          = 2 Re sum_n v_n exp(x_n l),     l = 0..L-1
    vandermonde_transpose(u, v, x)[..., n] = v_n sum_l u_l exp(x_n l)

With ``x = dt * A`` and ``v = C * B * (exp(dt A) - 1) / A`` the first is the S4D convolution
kernel under ZOH; the second maps an input sequence to the state it leaves behind (the
adjoint of the first, up to the 2 Re), which is what state passing needs: feed ``u`` flipped.

Shapes: ``v, x: (..., N)`` complex with broadcastable batch dims; ``u: (..., L)`` real of the
matching precision (float32 with complex64). Gradients flow to every input on every backend.

Backends: ``cpp`` (csrc/cpu/vandermonde_cpu.cpp), ``cuda`` (csrc/cuda/vandermonde_cuda.cu),
``keops`` (optional), ``torch`` (chunked over L with the analytic backward, bounded memory), and
the ``*_ref`` functions: the (..., N, L) matrix written out and differentiated by autograd.

All backends share one set of backward formulas (``vandermonde_vjp``, ``sums_vjp``), built on
two primitives per backend: the forward kernel and the power sums
``S_n = sum_l u_l exp(x_n l)``, ``T_n = sum_l u_l l exp(x_n l)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from . import _dispatch, _schemas, _validate  # noqa: F401  (_schemas: torch.ops.ssm.* defined)
from ._dispatch import Backend

__all__ = ["vandermonde", "vandermonde_ref", "vandermonde_transpose", "vandermonde_transpose_ref"]

OP = "vandermonde"
OP_T = "vandermonde_transpose"
_TORCH_CHUNK_ELEMENTS = 1 << 22

Forward = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
Sums = Callable[[torch.Tensor, torch.Tensor, bool], "tuple[torch.Tensor, torch.Tensor]"]


def _positions(length: int, like: torch.Tensor, start: int = 0) -> torch.Tensor:
    real = _validate.REAL_OF[like.dtype]
    return torch.arange(start, start + length, device=like.device, dtype=real)


def vandermonde_ref(v: torch.Tensor, x: torch.Tensor, L: int) -> torch.Tensor:
    """Reference: the (..., N, L) Vandermonde matrix written out."""
    powers = torch.exp(x.unsqueeze(-1) * _positions(L, x))  # (..., N, L)
    return 2 * (v.unsqueeze(-1) * powers).sum(dim=-2).real  # (..., L)


def vandermonde_transpose_ref(u: torch.Tensor, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reference: ``v_n * sum_l u_l exp(x_n l)`` with the matrix written out."""
    powers = torch.exp(x.unsqueeze(-1) * _positions(u.shape[-1], x))  # (..., N, L)
    return v * (u.unsqueeze(-2) * powers).sum(dim=-1)  # (..., N)


# ---- backward formulas shared by every backend ---------------------------------------------


def vandermonde_vjp(grad, v, x, need_v: bool, need_x: bool, sums: Sums):
    """Gradients of ``2 Re sum_n v_n exp(x_n l)`` (PyTorch's conj-Wirtinger convention):
    dv = 2 sum_l g_l exp(conj(x) l),  dx = 2 conj(v) sum_l g_l l exp(conj(x) l)."""
    if not (need_v or need_x):
        return None, None
    s, t = sums(grad.contiguous(), x.conj().resolve_conj(), need_x)
    return (2 * s if need_v else None), (2 * v.conj() * t if need_x else None)


def sums_vjp(grad_s, grad_t, u, x, weighted: bool, need_u: bool, need_x: bool, forward: Forward, sums: Sums):
    """Gradients of ``S = sum_l u_l exp(x l)`` (and of ``T = sum_l u_l l exp(x l)`` for u).

    du_l = Re sum_n conj(exp(x_n l)) gS_n = forward(gS, conj x, L)/2 (likewise l * ... for T);
    dx_n = gS_n conj(T_n). The x-gradient of T would need third-order sums: it is only reached
    by double backward through the Vandermonde op, which we do not support.
    """
    length = u.shape[-1]
    xc = x.conj().resolve_conj()
    grad_u = grad_x = None
    if need_u:
        grad_u = 0.5 * forward(grad_s.contiguous(), xc, length)
        if weighted and grad_t is not None:
            grad_u = grad_u + 0.5 * _positions(length, x) * forward(grad_t.contiguous(), xc, length)
    if need_x:
        if weighted:
            raise NotImplementedError(
                "vandermonde: second derivatives with respect to `x` are not implemented"
            )
        _, t = sums(u.contiguous(), x, True)
        grad_x = grad_s * t.conj()
    return grad_u, grad_x


# ---- torch backend -------------------------------------------------------------------------


def _chunk(rows: int, n: int, length: int) -> int:
    return max(1, min(length, _TORCH_CHUNK_ELEMENTS // max(1, rows * n)))


def _torch_forward(v: torch.Tensor, x: torch.Tensor, L: int) -> torch.Tensor:
    R, N = v.shape
    out = torch.empty(R, L, device=v.device, dtype=_validate.REAL_OF[v.dtype])
    step = _chunk(R, N, L)
    for start in range(0, L, step):
        ln = _positions(min(step, L - start), x, start)  # (Lc,)
        out[:, start : start + step] = 2 * (v.unsqueeze(-1) * torch.exp(x.unsqueeze(-1) * ln)).sum(-2).real
    return out


def _torch_sums(u: torch.Tensor, x: torch.Tensor, weighted: bool):
    R, L = u.shape
    N = x.shape[1]
    s = torch.zeros_like(x)
    t = torch.zeros_like(x) if weighted else x.new_empty(0)
    step = _chunk(R, N, L)
    for start in range(0, L, step):
        ln = _positions(min(step, L - start), x, start)  # (Lc,)
        terms = u[:, None, start : start + step] * torch.exp(x.unsqueeze(-1) * ln)  # (R, N, Lc)
        s += terms.sum(-1)
        if weighted:
            t += (terms * ln).sum(-1)
    return s, t


class _VandermondeTorch(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v, x, L):
        ctx.save_for_backward(v, x)
        return _torch_forward(v, x, L)

    @staticmethod
    def backward(ctx, grad):
        v, x = ctx.saved_tensors
        gv, gx = vandermonde_vjp(grad, v, x, ctx.needs_input_grad[0], ctx.needs_input_grad[1], _torch_sums)
        return gv, gx, None


class _SumsTorch(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, x):
        ctx.save_for_backward(u, x)
        return _torch_sums(u, x, False)[0]

    @staticmethod
    def backward(ctx, grad_s):
        u, x = ctx.saved_tensors
        return sums_vjp(grad_s, None, u, x, False, *ctx.needs_input_grad[:2], _torch_forward, _torch_sums)


# ---- keops backend (pykeops differentiates its own formulas) -------------------------------


def _pad_poles(*ts):
    """KeOps misreads axes of size 1 (see cauchy._keops): add a zero pole, which adds nothing."""
    return [torch.cat([t, torch.zeros_like(t)], dim=1) for t in ts] if ts[0].shape[1] == 1 else list(ts)


def _keops_forward(v, x, L0):
    from pykeops.torch import LazyTensor

    v, x = _pad_poles(v, x)
    R, N = v.shape
    L = max(L0, 2)  # an extra position is computed and dropped
    ln = _positions(L, v).to(v.dtype).reshape(1, L, 1, 1)
    l_i = LazyTensor(ln)  # i: the L axis
    x_j, v_j = LazyTensor(x.reshape(R, 1, N, 1)), LazyTensor(v.reshape(R, 1, N, 1))  # j: reduced
    return 2 * (v_j * (x_j * l_i).exp()).sum(dim=2).reshape(R, L)[:, :L0].real


def _keops_sums(u, x):
    from pykeops.torch import LazyTensor

    N0 = x.shape[1]
    (x,) = _pad_poles(x)
    if u.shape[1] == 1:  # a zero weight at an extra position adds nothing
        u = torch.cat([u, torch.zeros_like(u)], dim=1)
    R, L = u.shape
    N = x.shape[1]
    ln = _positions(L, x).to(x.dtype).reshape(1, 1, L, 1)
    x_i = LazyTensor(x.reshape(R, N, 1, 1))  # i: the N axis
    u_j = LazyTensor(u.to(x.dtype).reshape(R, 1, L, 1))  # j: the L axis, reduced
    return (u_j * (x_i * LazyTensor(ln)).exp()).sum(dim=2).reshape(R, N)[:, :N0]


# ---- the compiled ops torch.ops.ssm.vandermonde(_sums): fake kernels and autograd -----------


def _vand_op(v, x, L):
    return torch.ops.ssm.vandermonde(v, x, L)


def _sums_op(u, x, weighted):
    return torch.ops.ssm.vandermonde_sums(u, x, weighted)


@torch.library.register_fake("ssm::vandermonde")
def _vandermonde_fake(v, x, L):
    torch._check(v.dim() == 2 and x.shape == v.shape,
                 lambda: f"ssm::vandermonde: v, x must be (R, N) alike, got {tuple(v.shape)}, {tuple(x.shape)}")
    torch._check(L >= 0, lambda: f"ssm::vandermonde: L must be >= 0, got {L}")
    return v.new_empty((v.shape[0], L), dtype=_validate.REAL_OF[v.dtype])  # (R, L) real


@torch.library.register_fake("ssm::vandermonde_sums")
def _sums_fake(u, x, weighted):
    torch._check(u.dim() == 2 and x.dim() == 2 and u.shape[0] == x.shape[0],
                 lambda: f"ssm::vandermonde_sums: u (R, L) and x (R, N), got {tuple(u.shape)}, {tuple(x.shape)}")
    return torch.empty_like(x), (torch.empty_like(x) if weighted else x.new_empty(0))


def _vand_setup(ctx, inputs, output):
    v, x, _ = inputs
    ctx.save_for_backward(v, x)


def _vand_backward(ctx, grad):
    v, x = ctx.saved_tensors
    gv, gx = vandermonde_vjp(grad, v, x, ctx.needs_input_grad[0], ctx.needs_input_grad[1], _sums_op)
    return gv, gx, None


def _sums_setup(ctx, inputs, output):
    u, x, weighted = inputs
    ctx.weighted = weighted
    ctx.save_for_backward(u, x)


def _sums_backward(ctx, grad_s, grad_t):
    u, x = ctx.saved_tensors
    gu, gx = sums_vjp(grad_s, grad_t, u, x, ctx.weighted, ctx.needs_input_grad[0], ctx.needs_input_grad[1],
                      _vand_op, _sums_op)
    return gu, gx, None


torch.library.register_autograd("ssm::vandermonde", _vand_backward, setup_context=_vand_setup)
torch.library.register_autograd("ssm::vandermonde_sums", _sums_backward, setup_context=_sums_setup)


# ---- dispatch ------------------------------------------------------------------------------

PREDICATES = {
    "cuda": lambda *ts: _dispatch.compiled("cuda", "cuda", [t for t in ts if t.is_complex()]),
    "cpp": lambda *ts: _dispatch.compiled("cpu", "cpu", [t for t in ts if t.is_complex()]),
    "keops": lambda *ts: _dispatch.keops_status(),
    "torch": lambda *ts: None,
}

FORWARD: dict[str, Forward] = {
    "cuda": lambda v, x, L: torch.ops.ssm.vandermonde(v, x, L),
    "cpp": lambda v, x, L: torch.ops.ssm.vandermonde(v, x, L),
    "keops": _keops_forward,
    "torch": _VandermondeTorch.apply,
}

SUMS = {  # S only, differentiable
    "cuda": lambda u, x: torch.ops.ssm.vandermonde_sums(u, x, False)[0],
    "cpp": lambda u, x: torch.ops.ssm.vandermonde_sums(u, x, False)[0],
    "keops": _keops_sums,
    "torch": _SumsTorch.apply,
}


def check(v, x) -> tuple[torch.Size, int]:
    _validate.complex_tensor(OP, "v", v)
    _validate.complex_tensor(OP, "x", x)
    _validate.same_dtype(OP, v=v, x=x)
    _validate.same_device(OP, v=v, x=x)
    n = _validate.same_last_dim(OP, "v", v, "x", x)
    return _validate.broadcast_batch(OP, v=v, x=x), n


def vandermonde(v: torch.Tensor, x: torch.Tensor, L: int, *, backend: Backend = "auto") -> torch.Tensor:
    """``2 Re sum_n v_n exp(x_n l)`` for ``v, x: (..., N)`` complex -> ``(..., L)`` real."""
    batch, n = check(v, x)
    _validate.length(OP, "L", L)
    v2, x2 = v.expand(*batch, n).reshape(-1, n), x.expand(*batch, n).reshape(-1, n)  # (R, N)
    name = _dispatch.choose(OP, backend, PREDICATES, v2, x2)
    return FORWARD[name](v2, x2, L).reshape(*batch, L)


def vandermonde_transpose(
    u: torch.Tensor, v: torch.Tensor, x: torch.Tensor, *, backend: Backend = "auto"
) -> torch.Tensor:
    """``v_n sum_l u_l exp(x_n l)`` for ``u: (..., L)`` real, ``v, x: (..., N)`` -> ``(..., N)``."""
    _validate.complex_tensor(OP_T, "v", v)
    _validate.complex_tensor(OP_T, "x", x)
    _validate.real_tensor(OP_T, "u", u)
    _validate.same_dtype(OP_T, v=v, x=x)
    _validate.same_device(OP_T, u=u, v=v, x=x)
    if u.dtype != _validate.REAL_OF[x.dtype]:
        raise TypeError(f"{OP_T}: `u` must be {_validate.REAL_OF[x.dtype]} to match `x` ({x.dtype}), got {u.dtype}")
    n = _validate.same_last_dim(OP_T, "v", v, "x", x)
    batch = _validate.broadcast_batch(OP_T, u=u, v=v, x=x)
    length = u.shape[-1]
    u2 = u.expand(*batch, length).reshape(-1, length)  # (R, L)
    x2 = x.expand(*batch, n).reshape(-1, n)  # (R, N)
    name = _dispatch.choose(OP_T, backend, PREDICATES, u2, x2)
    return v * SUMS[name](u2, x2).reshape(*batch, n)
