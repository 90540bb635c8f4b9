"""Associative (parallel) scan for diagonal linear recurrences, the S5 forward pass
(arXiv 2208.04933, Sec. 2.2 and App. H).

    x_t = a_t * x_{t-1} + b_t,    x_{-1} = x0 (default 0)

``a, b: (..., L, N)`` real or complex, broadcastable (a time-invariant ``a`` of shape ``(N,)``
is fine); time is dim -2, so ``(B, L, P)`` layer activations scan without a transpose.
``x0: (..., N)``. Returns every state, ``(..., L, N)``; ``reverse=True`` runs from the end.

The forward is a Hillis-Steele scan: ceil(log2 L) rounds of elementwise work, combining
``(a_i, b_i) . (a_j, b_j) = (a_j a_i, a_j b_i + b_j)``. Autograd does not record those rounds:
the backward is the adjoint recurrence, itself a scan running backwards,
``g_t = dL/dx_t + conj(a_{t+1}) g_{t+1}``, ``db_t = g_t``, ``da_t = g_t conj(x_{t-1})``,
so memory is O(inputs) however long the sequence.

``scan_ref`` is the plain Python loop over t.
"""

from __future__ import annotations

import torch

from . import _validate

__all__ = ["scan", "scan_ref"]

OP = "scan"


def _check(a, b, x0):
    for name, t in (("a", a), ("b", b)):
        _validate.tensor(OP, name, t)
        if not (t.dtype.is_floating_point or t.dtype.is_complex):
            raise TypeError(f"{OP}: `{name}` must be a floating-point or complex tensor, got {t.dtype}")
    if b.dim() < 2:
        raise ValueError(f"{OP}: `b` must be (..., L, N), got shape {tuple(b.shape)}")
    try:
        shape = torch.broadcast_shapes(a.shape, b.shape)
    except RuntimeError:
        raise ValueError(
            f"{OP}: `a` {tuple(a.shape)} must broadcast against `b` {tuple(b.shape)} (time is dim -2)"
        ) from None
    if shape != b.shape:
        raise ValueError(f"{OP}: `a` {tuple(a.shape)} must broadcast to the shape of `b` {tuple(b.shape)}")
    if x0 is not None:
        _validate.tensor(OP, "x0", x0)
        want = b.shape[:-2] + b.shape[-1:]
        try:
            fits = torch.broadcast_shapes(x0.shape, want) == want
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(f"{OP}: `x0` must broadcast to (..., N) = {tuple(want)}, got {tuple(x0.shape)}")
        _validate.same_device(OP, a=a, b=b, x0=x0)
    else:
        _validate.same_device(OP, a=a, b=b)


def scan_ref(a, b, x0=None, *, reverse: bool = False):
    """Reference: the recurrence stepped one t at a time."""
    _check(a, b, x0)
    dtype = torch.promote_types(torch.promote_types(a.dtype, b.dtype), x0.dtype if x0 is not None else a.dtype)
    a, b = torch.broadcast_tensors(a.to(dtype), b.to(dtype))
    if reverse:
        a, b = a.flip(-2), b.flip(-2)
    x = torch.zeros_like(b[..., 0, :]) if x0 is None else x0.to(dtype).expand_as(b[..., 0, :])
    states = []
    for t in range(b.shape[-2]):
        x = a[..., t, :] * x + b[..., t, :]
        states.append(x)
    out = torch.stack(states, dim=-2)
    return out.flip(-2) if reverse else out


def _parallel_scan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """All prefixes of the recurrence with x_{-1} = 0, in ceil(log2 L) rounds (no autograd)."""
    A, X = a.clone(), b.clone()  # (..., L, N)
    L = X.shape[-2]
    s = 1
    while s < L:
        # element t absorbs the segment ending at t - s: X_t += A_t X_{t-s}, A_t *= A_{t-s}
        X[..., s:, :] += A[..., s:, :] * X[..., :-s, :]
        if 2 * s < L:
            A[..., s:, :] = A[..., s:, :] * A[..., :-s, :]
        s *= 2
    return X


class _Scan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, x0):
        a_full = a.expand_as(b)
        b_eff = b.clone()
        if x0 is not None:
            b_eff[..., 0, :] += a_full[..., 0, :] * x0
        x = _parallel_scan(a_full, b_eff)
        ctx.save_for_backward(a, x, x0)
        ctx.a_shape, ctx.b_shape = a.shape, b.shape
        return x

    @staticmethod
    def backward(ctx, grad):
        a, x, x0 = ctx.saved_tensors
        a_full = a.expand(ctx.b_shape)
        # adjoint: g_t = grad_t + conj(a_{t+1}) g_{t+1}, a backwards scan with shifted coefficients
        a_next = torch.zeros_like(a_full)
        a_next[..., :-1, :] = a_full[..., 1:, :].conj()
        g = _parallel_scan(a_next.flip(-2), grad.flip(-2)).flip(-2)  # (..., L, N)
        grad_a = grad_x0 = None
        if ctx.needs_input_grad[0]:
            x_prev = torch.zeros_like(x)
            x_prev[..., 1:, :] = x[..., :-1, :]
            if x0 is not None:
                x_prev[..., 0, :] = x0
            grad_a = (g * x_prev.conj()).sum_to_size(ctx.a_shape)
        if x0 is not None and ctx.needs_input_grad[2]:
            grad_x0 = (a_full[..., 0, :].conj() * g[..., 0, :]).sum_to_size(x0.shape)
        grad_b = g if ctx.needs_input_grad[1] else None
        return grad_a, grad_b, grad_x0


def scan(a: torch.Tensor, b: torch.Tensor, x0: torch.Tensor | None = None, *, reverse: bool = False) -> torch.Tensor:
    """States of ``x_t = a_t x_{t-1} + b_t`` for ``a, b: (..., L, N)``; returns ``(..., L, N)``."""
    _check(a, b, x0)
    dtype = torch.promote_types(a.dtype, b.dtype)
    if x0 is not None:
        dtype = torch.promote_types(dtype, x0.dtype)
        x0 = x0.to(dtype).expand(b.shape[:-2] + b.shape[-1:])
    a, b = a.to(dtype), b.to(dtype)
    if reverse:
        return _Scan.apply(a.flip(-2) if a.dim() >= 2 and a.shape[-2] > 1 else a, b.flip(-2), x0).flip(-2)
    return _Scan.apply(a, b, x0)
