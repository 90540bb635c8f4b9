"""Fake (meta) kernels and autograd formulas for the compiled ``torch.ops.ssm.*`` ops.

Registered once, right after the compiled library is loaded, so ``torch.compile`` can trace the
ops and autograd can differentiate them. The backward formulas are the ones every backend shares
(``ssm.ops.vandermonde.vandermonde_vjp`` / ``sums_vjp``, and the Cauchy backward op).
"""

from __future__ import annotations

import functools

import torch

from ._validate import REAL_OF


def _ops():
    return torch.ops.ssm


def _vand_forward(v, x, L):
    return _ops().vandermonde(v, x, L)


def _vand_sums(u, x, weighted):
    return _ops().vandermonde_sums(u, x, weighted)


@functools.cache
def register() -> None:
    from .vandermonde import sums_vjp, vandermonde_vjp

    # -- fake kernels: shapes and dtypes only ---------------------------------------------------
    @torch.library.register_fake("ssm::cauchy")
    def _(v, z, w):
        return v.new_empty((v.shape[0], z.shape[0]))

    @torch.library.register_fake("ssm::cauchy_backward")
    def _(grad, v, z, w):
        return torch.empty_like(v), torch.empty_like(w)

    @torch.library.register_fake("ssm::vandermonde")
    def _(v, x, L):
        return v.new_empty((v.shape[0], L), dtype=REAL_OF[v.dtype])

    @torch.library.register_fake("ssm::vandermonde_sums")
    def _(u, x, weighted):
        return torch.empty_like(x), (torch.empty_like(x) if weighted else x.new_empty(0))

    # generation-time ops (inference only: no autograd)
    @torch.library.register_fake("ssm::residual_chain")
    def _(x, params, ys, us, kinds, eps, activation, final, collect, add):
        return torch.empty_like(x, memory_format=torch.contiguous_format)

    @torch.library.register_fake("ssm::siso_bank_begin")
    def _(FT, X, Acc):
        return None

    @torch.library.register_fake("ssm::siso_bank_end")
    def _(X, Acc, Kd, U, ETr, ETi, j):
        return None

    # -- autograd ------------------------------------------------------------------------------
    def cauchy_setup(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def cauchy_backward(ctx, grad):
        v, z, w = ctx.saved_tensors
        if ctx.needs_input_grad[1]:
            raise NotImplementedError(
                "ssm::cauchy computes no gradient for `z`; use backend='torch' or 'keops'"
            )
        gv, gw = _ops().cauchy_backward(grad.contiguous(), v, z, w)
        return gv, None, gw

    torch.library.register_autograd("ssm::cauchy", cauchy_backward, setup_context=cauchy_setup)

    def vand_setup(ctx, inputs, output):
        v, x, _ = inputs
        ctx.save_for_backward(v, x)

    def vand_backward(ctx, grad):
        v, x = ctx.saved_tensors
        gv, gx = vandermonde_vjp(grad, v, x, ctx.needs_input_grad[0], ctx.needs_input_grad[1], _vand_sums)
        return gv, gx, None

    torch.library.register_autograd("ssm::vandermonde", vand_backward, setup_context=vand_setup)

    def sums_setup(ctx, inputs, output):
        u, x, weighted = inputs
        ctx.weighted = weighted
        ctx.save_for_backward(u, x)

    def sums_backward(ctx, grad_s, grad_t):
        u, x = ctx.saved_tensors
        gu, gx = sums_vjp(
            grad_s, grad_t, u, x, ctx.weighted, ctx.needs_input_grad[0], ctx.needs_input_grad[1],
            _vand_forward, _vand_sums,
        )
        return gu, gx, None

    torch.library.register_autograd("ssm::vandermonde_sums", sums_backward, setup_context=sums_setup)
