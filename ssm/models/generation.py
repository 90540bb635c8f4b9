"""Autoregressive sampling from a causal stack, with a fast whole-stack step for SaShiMi.

SaShiMi (arXiv 2202.09729) generates audio one sample at a time, so generation speed is the cost
of one whole-stack step, which at small widths is dominated by per-operation overhead rather than
arithmetic. ``SaShiMi.step`` (the reference) calls every layer's ``step``; ``FastStepper`` computes
the same function with far fewer operations:

- every SSM layer's step (S4 DPLR, S4D / S4-PTD diagonal, S5) is rewritten once, from the matrices
  its ``setup_step`` prepared, as ``y = psi(x) + d * u`` and ``x' = E x + sum_j psi_j(x) U_j + u V``
  with a few real-linear functionals psi of the state. The state-only parts (psi and the update)
  do not wait for the layer's input, so they run batched over all layers of a tier, outside the
  depth-sequential chain, and for S4/S4D/S4-PTD in chunks of T samples: one ``bmm`` gives
  Re(F E^j X0) for the whole chunk, each step adds the feedback of the chunk's earlier steps with
  m ``addcmul_``, and the state is written once per chunk (``_SisoBank``). Only the per-channel
  ``d * u`` stays in the chain;
- on CPU, each tier's depth-sequential chain (layer norms, skip terms, activations, output
  linears, feed-forward blocks: about seven ATen calls per block) is one call of the compiled op
  ``ssm.ops.step.residual_chain``, and the S4/S4D/S4-PTD bank's chunk work is done by ``siso_bank_begin``
  / ``_end`` (``backend="auto"`` or ``"cpp"``); ``backend="torch"`` runs the PyTorch versions,
  which are the reference the compiled ones are tested against;
- states, pooling buffers, queues and logits are preallocated and updated in place;
- parameters are pre-transposed for ``addmm``; everything runs under ``torch.inference_mode``,
  on CPU with oneDNN switched off for the step (its per-call setup dominates small GELUs);
- optionally each tier's chain is ``torch.compile``-d (``compile=True``), and on CUDA the whole
  step of each of the prod(pool) phases is captured in a CUDA graph (``cuda_graph=True``) and
  replayed (one launch per sample).

For the S4 (DPLR, rank r) step with D_l = (2/dt - Lambda)^-1, E = D_l (2/dt + Lambda),
G = D_l P, W = (I + M)^-1, M_sr = 2 Re sum conj(P_s) D_l P_r, k_s = 2 Re sum conj(P_s) 2 D_l B,
the Woodbury correction collapses (since I - W M = W) to a = W (phi + k u) with the r functionals
phi_s = 2 Re sum conj(P_s)(1 + E) x, so x' = E x - sum_t G_t a_t + 2 D_l B u.

``sample`` is the sampling loop (temperature, nucleus/top-p, prompt continuation) over either
stepper, and returns the exact log-likelihood of each sampled sequence under the model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import SimpleNamespace

import torch
from torch import nn
from torch.nn import functional as F

from ..kernels.diagonal import DiagonalSSM
from ..kernels.dplr import DPLRSSM
from ..kernels.s5 import S5SSM
from ..layers.base import _ACTIVATIONS, SSMBlock
from ..ops import _dispatch
from ..ops import step as step_ops
from .sashimi import FeedForward, Residual, SaShiMi, SaShiMiState, TierState

_COMPLEX = {torch.float32: torch.complex64, torch.float64: torch.complex128}


def _real_functional(Fc: torch.Tensor) -> torch.Tensor:
    """Complex weights (..., n) -> real (..., 2n) with Re(sum F x) = that . view_as_real(x)."""
    return torch.view_as_real(Fc.conj().resolve_conj()).flatten(-2)


def _real_vector(Vc: torch.Tensor) -> torch.Tensor:
    """Complex (..., n) -> interleaved real (..., 2n), the layout of view_as_real(state)."""
    return torch.view_as_real(Vc.resolve_conj()).flatten(-2)


# ---- per-core step forms --------------------------------------------------------------------------


def _siso_form(core) -> tuple[torch.Tensor, ...]:
    """(E (H, n), F (H, m, n), U_ext (H, m, n), deff (H,)) in complex128/float64 for a per-channel core:
    psi_j = Re sum_n F_jn x_n (j < m-1 feed the state, psi_{m-1} is the state part of y),
    x' = E x + sum_{j<m-1} psi_j U_j + u U_{m-1},  y = psi_{m-1} + deff u.

    Built from what the core's ``setup_step`` cached (``_step_matrices``: the very numbers its
    ``step`` uses); the fast-vs-reference tests catch any drift in that tuple."""
    c128 = torch.complex128
    if isinstance(core, DiagonalSSM):
        dA, dB, C, D = core._step_matrices()
        dA, dB, C, D = dA.to(c128), dB.to(c128), C.to(c128), D.double()
        Fm = (2 * C * dA).unsqueeze(1)  # (H, 1, n)
        U = dB.unsqueeze(1)  # (H, 1, n): only the input column
        deff = 2 * (C * dB).sum(-1).real + D
        return dA, Fm, U, deff
    if isinstance(core, DPLRSSM):
        dt, Lam, P, B, Dl, W, C, D = core._step_matrices()
        dt, D, W = dt.double(), D.double(), W.double()
        Lam, P, B, Dl, C = (t.to(c128) for t in (Lam, P, B, Dl, C))  # P (r, H, n); W (H, r, r)
        E = Dl * (2 / dt[:, None] + Lam)  # (H, n)
        G = Dl * P  # (r, H, n)
        Fphi = 2 * P.conj() * (1 + E)  # (r, H, n)
        k = 2 * (P.conj() * (2 * Dl * B)).sum(-1).real  # (r, H)
        Wc = W.to(c128)
        Uphi = -torch.einsum("hts,thn->shn", Wc, G)  # (r, H, n): coefficient vector of phi_s
        Wk = torch.einsum("hts,sh->th", W, k).to(c128)  # (r, H)
        V = 2 * Dl * B - (Wk[..., None] * G).sum(0)  # (H, n)
        cu = 2 * (C * Uphi).sum(-1).real  # (r, H): y's coefficient of phi_s
        Fy = 2 * C * E + (cu[..., None].to(c128) * Fphi).sum(0)  # (H, n)
        Fm = torch.cat([Fphi.transpose(0, 1), Fy.unsqueeze(1)], 1)  # (H, r+1, n)
        U = torch.cat([Uphi.transpose(0, 1), V.unsqueeze(1)], 1)  # (H, r+1, n)
        deff = 2 * (C * V).sum(-1).real + D
        return E, Fm, U, deff
    raise TypeError(f"no per-channel step form for {type(core).__name__}")


def _mimo_form(core: S5SSM) -> tuple[torch.Tensor, ...]:
    """(dA (P,), Cy (P, H), dB_t (H, P), Deff (H, H)): y = Re(x Cy) + u Deff, x' = dA x + u dB_t."""
    dA, dB_t, C_t, D = core._step_matrices()  # (P,), (H, P), (P, H), (H,)
    c128 = torch.complex128
    dA, dB_t, C_t = dA.to(c128), dB_t.to(c128), C_t.to(c128)
    f = core._factor
    Cy = f * dA[:, None] * C_t  # (P, H)
    Deff = f * (dB_t @ C_t).real + torch.diag(D.double())  # (H, H)
    return dA, Cy, dB_t, Deff


# ---- tiers: a run of residual blocks at one width ---------------------------------------------------


class _SisoBank:
    """K per-channel cores stacked, stepped in chunks of T samples.

    State X (K*H, n, B) complex, held as real ``Xr (KH, 2n, B)`` (rows ``[:n]`` the real parts,
    ``[n:]`` the imaginary ones), batch last (the batched products are then (., 2n) @ (2n, B), far
    cheaper on CPU than batch-first, and real GEMMs beat complex ones). Within a chunk that starts
    from X0, with psi_hat_s the m real functionals of step s (the last one replaced by the input
    u_s once the chain ran),

        psi_j = Re(F E^j X0) + sum_{s<j} Re(F E^(j-1-s) U) psi_hat_s
        X_T   = E^T X0 + sum_{s<T} E^(T-1-s) U psi_hat_s

    so X is read twice and written once per chunk: one real ``bmm`` at the start forms
    Re(F E^j X0) = [Re F E^j, -Im F E^j] Xr, copied into ``Acc (T, m, KH, B)``; at the end X is
    rotated by E^T (elementwise, on the two halves) and one real ``baddbmm_`` adds
    [Re; Im](E^(T-1-s) U) times the psi_hat rows of ``Acc``, which are real. Once step s is done its
    psi_hat_s is pushed into every later row of ``Acc`` with m ``addcmul_`` (tiny batched GEMMs
    cost far more per matrix on CPU; this layout keeps those pushes contiguous, and costs one
    transposing copy each way per chunk). T = 1 is the plain per-step update.

    ``fused=True`` does the same three things with the compiled CPU ops ``ssm.ops.step.siso_bank_begin``
    and ``siso_bank_end`` (csrc/cpu/siso_bank_cpu.cpp): one pass over the rows per call, each
    row's small products done while its state block is in L1, no transposing copies; the ATen
    calls here are their reference.
    """

    siso = True

    def __init__(self, cores, batch: int, dtype, device, chunk: int, fused: bool = False):
        forms = [_siso_form(c) for c in cores]
        K, (H, m, n) = len(cores), forms[0][1].shape
        T, KH, cdt = chunk, len(cores) * forms[0][1].shape[0], _COMPLEX[dtype]
        self.K, self.H, self.m, self.n, self.T, self.j = K, H, m, n, T, 0
        E = torch.stack([f[0] for f in forms]).reshape(KH, n)  # complex128
        Fm = torch.stack([f[1] for f in forms]).reshape(KH, m, n)
        U = torch.stack([f[2] for f in forms]).reshape(KH, m, n)
        powers = E.new_ones(T + 1, KH, n)  # E^0..E^T, by T products (cumprod is slow on complex)
        for j in range(T):
            torch.mul(powers[j], E, out=powers[j + 1])
        # Re(F E^d U) in float64: the coefficients that carry psi through the chunk
        Kd = torch.einsum("kqn,dkn,kpn->dpqk", Fm, powers[: max(T - 1, 1)], U).real  # (T-1, m_p, m_q, KH)
        # The two big tables are formed in the working precision, directly in their final layouts.
        Pw, Fw, Uw = powers.to(device=device, dtype=cdt), Fm.to(device=device, dtype=cdt), U.to(device=device, dtype=cdt)
        FE = Fw.unsqueeze(1) * Pw[:T].transpose(0, 1).unsqueeze(2)  # (KH, T, m, n): F_q E^j
        self.FTr = torch.cat([FE.real, -FE.imag], -1).reshape(KH, T * m, 2 * n)  # row j*m+q
        UE = Pw[:T].flip(0).permute(1, 2, 0).unsqueeze(-1) * Uw.transpose(1, 2).unsqueeze(2)  # (KH, n, T, m)
        self.Ur = torch.cat([UE.real, UE.imag], 1).reshape(KH, 2 * n, T * m)  # column s*m+p: E^(T-1-s) U_p
        self.fused = fused  # ssm.ops.step.siso_bank_begin / _end instead of the ATen calls below
        real = {"device": device, "dtype": dtype}
        Kd = Kd.to(**real).contiguous()  # (T-1, m_p, m_q, KH): coefficient of psi_hat_s[p] in psi_{s+1+d}[q]
        if fused:
            self.Kd, self.ETr, self.ETi = Kd, Pw[T].real.contiguous(), Pw[T].imag.contiguous()  # E^T: (KH, n)
        else:
            self.Kp = [Kd[:, p_].unsqueeze(-1) for p_ in range(m)]  # m x (T-1, m, KH, 1)
            # E^T expanded over the batch: broadcasting along the short last dimension (B)
            # measured about 1.6x slower on CPU than the plain elementwise rotation
            ET = Pw[T].unsqueeze(-1).expand(-1, -1, batch)  # (KH, n, B)
            self.ETr, self.ETi = ET.real.contiguous(), ET.imag.contiguous()
        self.E, self.U = Pw[1].unsqueeze(-1), Uw.transpose(1, 2).contiguous()  # for export
        self.deff = [f[3].to(device=device, dtype=dtype) for f in forms]  # K x (H,)
        self.Xr = torch.zeros(KH, 2 * n, batch, **real)  # the state at the start of the chunk
        self.Acc = torch.zeros(T, m, KH, batch, **real)
        if not fused:  # the PyTorch path's work buffers
            self.Ab = torch.zeros(KH, T * m, batch, **real)  # Acc batch-first: the bmm's output, the baddbmm's input
            self.tmp = [torch.zeros(KH, n, batch, **real) for _ in range(2)]
        last = self.Acc[:, m - 1].view(T, K, H, batch)  # (T, K, H, B)
        # per chunk position j: y's state part for layer i, and the slot its input u goes to
        # (same memory: u overwrites it once y is formed)
        self.slots = [[(v, v) for v in (last[j, i].t() for i in range(K))] for j in range(T)]  # T x K x (B, H)
        self.slot_lists = [([y for y, _ in row], [u for _, u in row]) for row in self.slots]  # for the fused chain

    def begin(self) -> list:
        if self.j == 0:
            if self.fused:
                step_ops.siso_bank_begin(self.FTr, self.Xr, self.Acc)
                return self.slots[0]
            T, m, KH, B = self.Acc.shape
            torch.bmm(self.FTr, self.Xr, out=self.Ab)  # Re(F E^j X0)
            self.Acc.view(T * m, KH, B).copy_(self.Ab.transpose(0, 1))
        return self.slots[self.j]

    def end(self) -> None:
        j, T = self.j, self.T
        if self.fused:
            step_ops.siso_bank_end(self.Xr, self.Acc, self.Kd, self.Ur, self.ETr, self.ETi, j)
            self.j = j + 1 if j + 1 < T else 0
            return
        if j + 1 < T:  # push psi_hat_j into the later steps of the chunk
            future = self.Acc[j + 1:]  # (T-1-j, m, KH, B)
            for p_, Kp in enumerate(self.Kp):
                future.addcmul_(Kp[: T - 1 - j], self.Acc[j, p_])
            self.j = j + 1
            return
        self.j = 0
        T, m, KH, B = self.Acc.shape
        self.Ab.copy_(self.Acc.view(T * m, KH, B).transpose(0, 1))
        n = self.n
        re, im = self.Xr[:, :n], self.Xr[:, n:]
        t_re, t_im = self.tmp
        torch.mul(im, self.ETi, out=t_im)
        torch.mul(re, self.ETi, out=t_re)
        re.mul_(self.ETr).sub_(t_im)  # Re(E^T X)
        im.mul_(self.ETr).add_(t_re)  # Im(E^T X)
        self.Xr.baddbmm_(self.Ur, self.Ab)

    def zero(self) -> None:
        self.j = 0
        for t in self.tensors():
            t.zero_()

    def tensors(self) -> list[torch.Tensor]:
        return [self.Xr, self.Acc] if self.fused else [self.Xr, self.Acc, self.Ab, *self.tmp]

    def load(self, states: list[torch.Tensor]) -> None:
        self.j = 0
        n = self.n
        X = self.Xr.view(self.K, self.H, 2 * n, -1)
        for i, s in enumerate(states):
            s = s.permute(1, 2, 0)  # (B, H, n) -> (H, n, B)
            X[i, :, :n].copy_(s.real)
            X[i, :, n:].copy_(s.imag)

    def export(self) -> list[torch.Tensor]:
        n = self.n
        X = torch.complex(self.Xr[:, :n], self.Xr[:, n:])  # (KH, n, B)
        for s_ in range(self.j):  # replay the chunk so far
            X = X * self.E + self.U @ self.Acc[s_].transpose(0, 1).to(X.dtype)  # (KH, n, m) @ (KH, m, B)
        X = X.view(self.K, self.H, *X.shape[1:])
        return [X[i].permute(2, 0, 1).to(torch.complex64).contiguous() for i in range(self.K)]


class _MimoBank:
    """K S5 cores stacked: state X (K, B, P) complex, inputs U (K, B, H). Updated every step
    (``chunk`` does not apply): the (B, 2P) @ (2P, H) products are already ordinary GEMMs."""

    siso = False

    def __init__(self, cores, batch: int, dtype, device, chunk: int, fused: bool = False):
        forms = [_mimo_form(c) for c in cores]
        K = len(cores)
        P, H = forms[0][1].shape
        cdt = _COMPLEX[dtype]
        self.dA = torch.stack([f[0] for f in forms]).to(cdt).to(device).unsqueeze(1)  # (K, 1, P)
        Cr = torch.stack([_real_functional(f[1].transpose(0, 1)) for f in forms])  # (K, H, 2P)
        self.Cr = Cr.transpose(1, 2).contiguous().to(dtype).to(device)  # (K, 2P, H)
        self.Br = torch.stack([_real_vector(f[2]) for f in forms]).to(dtype).to(device)  # (K, H, 2P)
        self.deff = [f[3].to(dtype).to(device) for f in forms]  # K x (H, H)
        self.X = torch.zeros(K, batch, P, dtype=cdt, device=device)
        self.Xr = torch.view_as_real(self.X).view(K, batch, 2 * P)
        self.Y = torch.zeros(K, batch, H, dtype=dtype, device=device)
        self.U = torch.zeros(K, batch, H, dtype=dtype, device=device)
        self.sy, self.u = list(self.Y.unbind(0)), list(self.U.unbind(0))
        self.slots = list(zip(self.sy, self.u))
        self.j, self.slot_lists = 0, [(self.sy, self.u)]  # the same slots at every step

    def begin(self) -> list:
        torch.bmm(self.Xr, self.Cr, out=self.Y)  # (K, B, H)
        return self.slots

    def end(self) -> None:
        self.X.mul_(self.dA)
        self.Xr.baddbmm_(self.U, self.Br)  # + u dB_t

    def zero(self) -> None:
        for t in self.tensors():
            t.zero_()

    def tensors(self) -> list[torch.Tensor]:
        return [self.X, self.Y, self.U]

    def load(self, states: list[torch.Tensor]) -> None:
        for i, s in enumerate(states):
            self.X[i].copy_(s)

    def export(self) -> list[torch.Tensor]:
        return [self.X[i].to(torch.complex64).clone() for i in range(self.X.shape[0])]


def _bank_for(blocks: list[Residual]):
    """The stacked bank class for these blocks' SSM layers, or None when they need the generic path."""
    layers = [b.f for b in blocks if b.stateful]
    if not layers or not all(isinstance(m, SSMBlock) for m in layers):
        return None
    if not all(isinstance(b.f, FeedForward) for b in blocks if not b.stateful):
        return None
    kinds = {type(m.core) for m in layers}
    same = len({(m.activation, type(m.out)) for m in layers}) == 1
    if len(kinds) != 1 or not same:
        return None
    kind = kinds.pop()
    if issubclass(kind, (DiagonalSSM, DPLRSSM)):
        return _SisoBank
    if issubclass(kind, S5SSM):
        return _MimoBank
    return None


def _fused_chain_reason(model: SaShiMi, device: torch.device, dtype: torch.dtype, compile: bool) -> str | None:
    """Why the compiled ``ssm.residual_chain`` cannot run this stepper's tiers, or None."""
    if device.type != "cpu":
        return f"the fused residual chain is CPU-only (the model is on {device})"
    if compile:
        return "compile=True traces the Python chain"
    acts = {b.f.activation for b in model.modules() if isinstance(b, Residual) and isinstance(b.f, SSMBlock)}
    if not acts <= set(step_ops.ACTIVATIONS):
        return f"activation {sorted(acts - set(step_ops.ACTIVATIONS))} has no fused kernel"
    return _dispatch.compiled("cpu", "cpu", [torch.empty(0, dtype=dtype, device=device)],
                              dtypes=(torch.float32, torch.float64))




def _t(w: torch.Tensor, dtype, device) -> torch.Tensor:
    return w.detach().to(device=device, dtype=dtype).contiguous()


class _FastTier:
    """Residual blocks of one width with their SSM layers' state work batched in a bank."""

    fast = True

    def __init__(self, blocks: list[Residual], batch: int, dtype, device, compile: bool, chunk: int, fused: bool):
        bank_cls = _bank_for(blocks)
        ssm_layers = [b.f for b in blocks if b.stateful]
        self.bank = bank_cls([m.core for m in ssm_layers], batch, dtype, device, chunk, fused)
        first = ssm_layers[0]
        self.act = _ACTIVATIONS[first.activation]
        self.final = "glu" if isinstance(first.out, nn.Sequential) else "linear" if isinstance(first.out, nn.Linear) else "identity"
        self.plan = []  # one flat tuple per residual block: fewer Python lookups per sample
        i = 0
        for b in blocks:
            norm = ((b.norm.normalized_shape[0],), _t(b.norm.weight, dtype, device), _t(b.norm.bias, dtype, device), b.norm.eps)
            if b.stateful:
                lin = b.f.out[0] if self.final == "glu" else b.f.out
                W, bias = (None, None) if self.final == "identity" else (_t(lin.weight.t(), dtype, device), _t(lin.bias, dtype, device))
                self.plan.append((True, *norm, i, self.bank.deff[i], W, bias))
                i += 1
            else:
                f = b.f
                self.plan.append((False, *norm, _t(f.fc1.weight.t(), dtype, device), _t(f.fc1.bias, dtype, device),
                                  _t(f.fc2.weight.t(), dtype, device), _t(f.fc2.bias, dtype, device)))
        self.chain = torch.compile(self._chain, dynamic=False) if compile else self._chain
        self.fused = None
        if fused:  # the same plan, flattened for ssm.ops.step.residual_chain
            params, kinds, eps = [], [], []
            for ssm, _shape, w, b, e, a1, a2, a3, a4 in self.plan:
                eps.append(e)
                if ssm:
                    kinds.append("channel_ssm" if self.bank.siso else "dense_ssm")
                    empty = w.new_empty(0)
                    params += [w, b, a2, empty if a3 is None else a3, empty if a4 is None else a4]
                else:
                    kinds.append("feed_forward")
                    params += [w, b, a1, a2, a3, a4]
            self.fused = (params, kinds, eps, first.activation, self.final)

    def _chain(self, x: torch.Tensor, slots, collect, add) -> torch.Tensor:
        """The depth-sequential part; ``slots[i] = (y_state, u_slot)`` views of layer i's bank rows."""
        siso, act, final = self.bank.siso, self.act, self.final
        layer_norm, addmm = torch.layer_norm, torch.addmm
        for j, (ssm, shape, w, b, eps, a1, a2, a3, a4) in enumerate(self.plan):
            h = layer_norm(x, shape, w, b, eps)  # (B, H)
            if ssm:  # a1 = layer index, a2 = d (H,) or (H, H), a3/a4 = output linear
                sy, u = slots[a1]
                y = torch.addcmul(sy, a2, h) if siso else addmm(sy, h, a2)
                u.copy_(h)  # after y: in per-channel banks the input's slot is where sy was
                y = act(y)
                if final == "glu":
                    y = F.glu(addmm(a4, y, a3), -1)
                elif final == "linear":
                    y = addmm(a4, y, a3)
                x = x + y
            else:  # a1, a2, a3, a4 = W1, b1, W2, b2
                x = addmm(x, F.gelu(addmm(a2, h, a1)), a3).add_(a4)
            if collect is not None:
                collect[j].copy_(x)
            if add is not None:
                x = x + add[j]
        return x

    def run(self, x: torch.Tensor, collect=None, add=None) -> torch.Tensor:
        slots = self.bank.begin()
        if self.fused is not None:
            params, kinds, eps, act, final = self.fused
            ys, us = self.bank.slot_lists[self.bank.j]
            x = step_ops.residual_chain(x, params, ys, us, kinds, eps, act, final, collect or (), add or ())
        else:
            x = self.chain(x, slots, collect, add)
        self.bank.end()
        return x

    def zero(self) -> None:
        self.bank.zero()

    def load(self, states: list) -> None:
        self.bank.load([s for s in states if s is not None])

    def export(self, n_blocks: int, stateful: list[bool]) -> list:
        it = iter(self.bank.export())
        return [next(it) if st else None for st in stateful]


class _ModuleTier:
    """Generic path: the blocks' own ``step`` (any layer honouring the contract)."""

    fast = False

    def __init__(self, blocks: list[Residual], batch: int, dtype, device, compile: bool, chunk: int, fused: bool):
        self.blocks, self.batch, self.device, self.dtype = blocks, batch, device, dtype
        self.module_dtype = blocks[0].norm.weight.dtype
        self.states = [b.default_state(batch, device=device) for b in blocks]

    def run(self, x: torch.Tensor, collect=None, add=None) -> torch.Tensor:
        for j, b in enumerate(self.blocks):
            x, self.states[j] = b.step(x.to(self.module_dtype), self.states[j])
            x = x.to(self.dtype)
            if collect is not None:
                collect[j].copy_(x)
            if add is not None:
                x = x + add[j]
        return x

    def zero(self) -> None:
        self.states = [b.default_state(self.batch, device=self.device) for b in self.blocks]

    def load(self, states: list) -> None:
        self.states = list(states)

    def export(self, n_blocks: int, stateful: list[bool]) -> list:
        return list(self.states)


def _tier(blocks, batch, dtype, device, compile, chunk, fused):
    blocks = list(blocks)
    if not blocks:
        return None
    cls = _FastTier if _bank_for(blocks) is not None else _ModuleTier
    return cls(blocks, batch, dtype, device, compile, chunk, fused)


# ---- the whole stack --------------------------------------------------------------------------------


class FastStepper:
    """Whole-SaShiMi stepping with precomputed step forms and preallocated, in-place state.

    ``FastStepper(model, batch)`` snapshots the model's (eval-mode) weights: rebuild it after the
    weights change. ``reset(state=None)`` starts from zeros or from a ``SaShiMiState`` (e.g. from
    ``model(prompt, state)``); ``step(x_t)`` takes (B,) tokens or (B, d_input) and returns the
    logits (B, d_output) in a buffer that the next step overwrites; ``export_state()`` returns the
    equivalent ``SaShiMiState``. Dropout is not applied (inference).

    ``dtype`` is the working precision (float32, or float64 for checks); ``chunk`` is T, the
    number of steps per batched state update of the S4/S4D/S4-PTD banks (see ``_SisoBank``;
    1 = update every step); ``compile`` wraps each tier's chain in ``torch.compile`` (measured on
    2 CPU cores: ~70 s to compile for ~10% faster steps); ``cuda_graph`` (CUDA only, every tier on
    the batched path) captures one graph per phase t mod prod(pool) and replays it (it forces
    chunk=1 so that a phase fixes all control flow). The CUDA-graph path is written for, but was
    not run on, a GPU. ``backend``: ``"auto"`` uses the compiled CPU ops (``ssm.residual_chain``,
    ``ssm.siso_bank_*``) when the model is on CPU, ``compile`` is off and the compiled library is
    loaded, else the PyTorch path; ``"cpp"`` insists on the compiled ops (and says why it cannot);
    ``"torch"`` is the PyTorch path. ``SSM_BACKEND`` applies as for the other ops.
    """

    def __init__(self, model: SaShiMi, batch: int, *, dtype: torch.dtype = torch.float32, chunk: int = 8,
                 compile: bool = False, cuda_graph: bool = False, backend: str = "auto"):
        if not isinstance(model, SaShiMi):
            raise TypeError(f"FastStepper: `model` must be a SaShiMi, got {type(model).__name__}")
        if not model.causal:
            raise ValueError("FastStepper: a SaShiMi built with causal=False cannot be stepped")
        if dtype not in _COMPLEX:
            raise ValueError(f"FastStepper: `dtype` must be torch.float32 or torch.float64, got {dtype}")
        if batch < 1:
            raise ValueError(f"FastStepper: `batch` must be >= 1, got {batch}")
        if chunk < 1:
            raise ValueError(f"FastStepper: `chunk` must be >= 1, got {chunk}")
        chunk = 1 if cuda_graph else chunk
        device = model.decoder.weight.device  # the stepper runs where the model lives
        if cuda_graph and device.type != "cuda":
            raise ValueError(f"FastStepper: cuda_graph=True needs a model on a CUDA device, got {device}")
        self.model, self.batch, self.dtype, self.device = model, batch, dtype, device
        self.unet, self.period = model.unet, model.period
        self.backend = _dispatch.choose("FastStepper", backend, {"cpp": _fused_chain_reason, "torch": lambda *a: None},
                                        model, device, dtype, compile)
        fused = self.backend == "cpp"
        kw = {"dtype": dtype, "device": device}
        with torch.inference_mode():
            model.setup_step()
            self.tokens = model.vocab_size is not None
            self.W_enc = _t(model.encoder.weight if self.tokens else model.encoder.weight.t(), **kw)
            self.b_enc = None if self.tokens else _t(model.encoder.bias, **kw)
            self.tiers = []
            stride = 1
            for tier in model.tiers:
                p, H = tier.pool, tier.d_model
                nb = len(tier.down)
                spec = SimpleNamespace(
                    p=p, H=H, stride=stride,
                    down=_tier(tier.down, batch, dtype, device, compile, chunk, fused),
                    up=_tier(tier.up, batch, dtype, device, compile, chunk, fused),
                    Wd=_t(tier.down_pool.linear.weight.t(), **kw), bd=_t(tier.down_pool.linear.bias, **kw),
                    Wu=_t(tier.up_pool.linear.weight.t(), **kw), bu=_t(tier.up_pool.linear.bias, **kw),
                    buf=torch.zeros(batch, p, H, **kw), queue=torch.zeros(batch, p, H, **kw),
                    skips=[torch.zeros(batch, H, **kw) for _ in range(nb + 1)] if self.unet else None,
                )
                if self.unet:
                    spec.collect = spec.skips[1:]
                    spec.add = spec.skips[-2::-1]  # the up path takes the skips back in reverse
                self.tiers.append(spec)
                stride *= p
            self.center = _tier(model.center, batch, dtype, device, compile, chunk, fused)
            self.ln = (_t(model.norm.weight, **kw), _t(model.norm.bias, **kw), model.norm.eps, (model.d_model,))
            self.W_dec, self.b_dec = _t(model.decoder.weight.t(), **kw), _t(model.decoder.bias, **kw)
            self.out = torch.zeros(batch, model.d_output, **kw)
        self.t = 0
        self._graphs = None
        if cuda_graph:
            everything = [s.up for s in self.tiers] + [s.down for s in self.tiers] + [self.center]
            if not all(t is None or t.fast for t in everything):
                raise ValueError("FastStepper: cuda_graph=True needs every tier on the batched path (S4, S4D, "
                                 "S4PTD or S5 layers); this model has layers that step through their own modules")
            self._capture()

    # -- the step ---------------------------------------------------------------------------------

    def _encode(self, x_t: torch.Tensor) -> torch.Tensor:
        if self.tokens:
            return F.embedding(x_t, self.W_enc)  # (B, H)
        return torch.addmm(self.b_enc, x_t.to(self.dtype), self.W_enc)

    def _tier_step(self, k: int, x: torch.Tensor, phase: int) -> torch.Tensor:
        if k == len(self.tiers):
            return self.center.run(x) + x
        s = self.tiers[k]
        i = (phase // s.stride) % s.p  # position in this tier's coarse step
        if self.unet:
            s.skips[0].copy_(x)
            h = s.down.run(x, collect=s.collect)
        else:
            h = x
        s.buf[:, i].copy_(h)
        u = s.queue[:, i] + h  # the queue still holds the previous coarse step: the shift
        if i == s.p - 1:
            z = torch.addmm(s.bd, s.buf.view(self.batch, s.p * s.H), s.Wd)  # (B, H*expand)
            z = self._tier_step(k + 1, z, phase)
            torch.addmm(s.bu, z, s.Wu, out=s.queue.view(self.batch, s.p * s.H))
        if self.unet:
            return s.up.run(u, add=s.add)
        return s.up.run(u) + u

    def _step_phase(self, phase: int, x_t: torch.Tensor) -> torch.Tensor:
        h = self._tier_step(0, self._encode(x_t), phase)
        w, b, eps, shape = self.ln
        return torch.addmm(self.b_dec, F.layer_norm(h, shape, w, b, eps), self.W_dec, out=self.out)

    def step(self, x_t: torch.Tensor) -> torch.Tensor:
        """One sample for the whole batch; returns the logits buffer (B, d_output)."""
        phase = self.t % self.period
        if self._graphs is not None:
            self._static_in.copy_(x_t)
            self._graphs[phase].replay()
        else:
            # On CPU, oneDNN's per-call setup costs several times the arithmetic of GELU on a
            # (B, H) tensor; ATen's own kernels serve these small ops faster (the setting is
            # restored after the step).
            onednn = torch.backends.mkldnn.enabled
            torch.backends.mkldnn.enabled = self.device.type != "cpu" and onednn
            try:
                with torch.inference_mode():
                    self._step_phase(phase, x_t)
            finally:
                torch.backends.mkldnn.enabled = onednn
        self.t += 1
        return self.out

    # -- state ------------------------------------------------------------------------------------

    def _all_tiers(self) -> list:
        return [t for t in [self.center] + [s.up for s in self.tiers] + [s.down for s in self.tiers] if t is not None]

    def _tensors(self) -> list[torch.Tensor]:
        """Every persistent buffer (what a CUDA-graph warm-up must leave as it found)."""
        out = [self.out]
        for s in self.tiers:
            out += [s.buf, s.queue] + (s.skips or [])
        for tier in self._all_tiers():
            out += tier.bank.tensors()
        return out

    def reset(self, state: SaShiMiState | None = None) -> None:
        """Start from zeros, or from a model state (any t; e.g. after ``model(prompt, state)``)."""
        with torch.inference_mode():
            if state is None:
                for s in self.tiers:
                    for t in [s.buf, s.queue] + (s.skips or []):
                        t.zero_()
                for tier in self._all_tiers():
                    tier.zero()
                self.t = 0
                return
            self.model._check_state(state, self.batch, "FastStepper.reset")
            for s, st in zip(self.tiers, state.tiers):
                s.buf.copy_(st.buffer)
                s.queue.copy_(st.queue)
                if s.down is not None:
                    s.down.load(st.down)
                s.up.load(st.up)
            self.center.load(state.center)
            self.t = state.t

    def export_state(self) -> SaShiMiState:
        """The model-format state after the samples stepped so far."""
        def ex(tier, blocks):
            return [] if tier is None else tier.export(len(blocks), [b.stateful for b in blocks])

        dt = self.model.decoder.weight.dtype
        tiers = [TierState(down=ex(s.down, m.down), buffer=s.buf.to(dt).clone(), queue=s.queue.to(dt).clone(),
                           up=ex(s.up, m.up)) for s, m in zip(self.tiers, self.model.tiers)]
        return SaShiMiState(t=self.t, tiers=tiers, center=ex(self.center, self.model.center))

    # -- CUDA graphs ------------------------------------------------------------------------------

    def _capture(self) -> None:
        """One CUDA graph per phase. Warm-up runs mutate the state, so it is saved and restored."""
        shape = (self.batch,) if self.tokens else (self.batch, self.model.d_input)
        self._static_in = torch.zeros(shape, dtype=torch.long if self.tokens else self.dtype, device=self.device)
        with torch.inference_mode():
            saved = [t.clone() for t in self._tensors()]
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for phase in range(self.period):
                    self._step_phase(phase, self._static_in)
            torch.cuda.current_stream().wait_stream(stream)
            pool = torch.cuda.graph_pool_handle()
            graphs = []
            for phase in range(self.period):
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g, pool=pool):
                    self._step_phase(phase, self._static_in)
                graphs.append(g)
            for t, s in zip(self._tensors(), saved):
                t.copy_(s)
        self._graphs = graphs


# ---- sampling ---------------------------------------------------------------------------------------


def sample_token(logits: torch.Tensor, *, temperature: float = 1.0, top_p: float = 1.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one token per row of ``logits (B, V)`` -> (B,) int64.

    Temperature first, then the nucleus: keep the most probable tokens until their mass reaches
    ``top_p`` (the first is always kept, so a tiny top_p is greedy), renormalise, and invert the CDF
    at one uniform per row from ``generator``. ``temperature=0`` is greedy (no draw)."""
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)  # (B, V)
    order = None
    if top_p < 1.0:
        probs, order = probs.sort(dim=-1, descending=True)
        keep = (probs.cumsum(-1) - probs) < top_p  # mass before this token still short of top_p
        probs = probs * keep
    cdf = probs.cumsum(-1)  # (B, V)
    device = generator.device if generator is not None else logits.device
    u = torch.rand(logits.shape[0], 1, generator=generator, device=device).to(cdf.device) * cdf[:, -1:]
    j = torch.searchsorted(cdf, u, right=True).clamp_(max=logits.shape[-1] - 1)  # (B, 1)
    return (order.gather(-1, j) if order is not None else j).squeeze(-1)


class _ReferenceStepper:
    """``model.step`` once per sample, for any causal model with the stepping contract."""

    def __init__(self, model, batch: int, state=None):
        model.setup_step()
        self.model = model
        self.state = state if state is not None else model.default_state(batch)

    def step(self, x_t: torch.Tensor) -> torch.Tensor:
        y, self.state = self.model.step(x_t, self.state)
        return y


def make_stepper(model: nn.Module, batch: int, *, fast: bool = True, compile: bool = False, cuda_graph: bool = False,
                 backend: str = "auto", state=None):
    """The stepper ``sample`` uses, ready to step from ``state`` (None = zeros): ``FastStepper``
    when ``fast``, else ``model.step`` once per sample. Call under ``torch.inference_mode``."""
    if not fast:
        return _ReferenceStepper(model, batch, state)
    stepper = FastStepper(model, batch, compile=compile, cuda_graph=cuda_graph, backend=backend)
    stepper.reset(state)
    return stepper


def sample(
    model: nn.Module,
    n_samples: int,
    length: int,
    *,
    temperature: float = 1.0,
    top_p: float = 1.0,
    prompt: torch.Tensor | None = None,
    start_token: int | None = None,
    generator: torch.Generator | None = None,
    fast: bool = True,
    compile: bool = False,
    cuda_graph: bool = False,
    backend: str = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample token sequences autoregressively -> ``(tokens (B, length) int64, log_likelihood (B,) float64)``.

    ``tokens`` holds the whole sequence: the prompt (P tokens; without one, a single
    ``start_token``, default ``vocab_size // 2``, the mu-law zero level) followed by ``length - P``
    sampled tokens. ``log_likelihood`` is the exact log-probability of the sampled part given the
    prompt under the model itself, i.e. the sum over sampled tokens of log-softmax of the
    untempered, untruncated logits; ``temperature`` and ``top_p`` shape only the draws. (SaShiMi
    ranks samples by this quantity.)

    ``model``: a causal model with token inputs and the stepping contract (``SaShiMi``, or a
    ``SequenceModel`` with ``pool='none'`` for ``fast=False``); its ``d_output`` logits index the
    vocabulary. ``fast=True`` steps with ``FastStepper`` (SaShiMi only); ``fast=False`` calls
    ``model.step`` per sample (the reference). ``backend`` picks ``FastStepper``'s kernels for
    its residual chains and S4 state banks (``"auto"``: the compiled CPU ops on CPU when the
    library is there, else ``"torch"``, the PyTorch versions). A SaShiMi prompt runs through the convolutional
    forward for its largest multiple of prod(pool) strictly before the last prompt token and is
    stepped for the rest. ``generator`` drives every draw, so both paths give the same samples.
    ``progress(t, length)`` is called after each position. The model is put in eval mode for
    the call (and restored).
    """
    if not getattr(model, "causal", False):
        raise ValueError(f"sample: `model` must be causal (got {type(model).__name__} with causal="
                         f"{getattr(model, 'causal', 'missing')})")
    encoder = getattr(model, "encoder", None)
    if not isinstance(encoder, nn.Embedding):
        raise TypeError("sample: `model` must take tokens (an nn.Embedding encoder, e.g. SaShiMi(vocab_size=...))")
    vocab = encoder.num_embeddings
    d_output = getattr(model, "d_output", None)
    if d_output != vocab:
        raise ValueError(f"sample: the model's d_output ({d_output}) must equal its vocabulary ({vocab}) to feed samples back")
    if fast and not isinstance(model, SaShiMi):
        raise ValueError(f"sample: fast=True steps SaShiMi models only; use fast=False for {type(model).__name__}")
    if not (isinstance(temperature, (int, float)) and temperature >= 0 and math.isfinite(temperature)):
        raise ValueError(f"sample: `temperature` must be a finite number >= 0 (0 = greedy), got {temperature!r}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"sample: `top_p` must be in (0, 1], got {top_p!r}")
    if n_samples < 1:
        raise ValueError(f"sample: `n_samples` must be >= 1, got {n_samples}")
    device = encoder.weight.device
    if prompt is None:
        start = vocab // 2 if start_token is None else int(start_token)
        if not 0 <= start < vocab:
            raise ValueError(f"sample: `start_token` must be in [0, {vocab}), got {start}")
        prompt = torch.full((n_samples, 1), start, dtype=torch.long)
    else:
        if start_token is not None:
            raise ValueError("sample: give `prompt` or `start_token`, not both")
        if prompt.dim() != 2 or prompt.shape[1] < 1 or prompt.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"sample: `prompt` must be int64 (B, P) with P >= 1, got {prompt.dtype} {tuple(prompt.shape)}")
        if prompt.shape[0] not in (1, n_samples):
            raise ValueError(f"sample: `prompt` batch {prompt.shape[0]} must be 1 or n_samples={n_samples}")
        if int(prompt.min()) < 0 or int(prompt.max()) >= vocab:
            raise ValueError(f"sample: prompt tokens must lie in [0, {vocab})")
        prompt = prompt.long().expand(n_samples, -1)
    P = prompt.shape[1]
    if length < P:
        raise ValueError(f"sample: `length` ({length}) must be at least the prompt length ({P})")

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            tokens = torch.empty(n_samples, length, dtype=torch.long, device=device)
            tokens[:, :P] = prompt.to(device)
            state, done = None, 0
            period = getattr(model, "period", 0)
            if isinstance(model, SaShiMi) and P - 1 >= period:
                done = (P - 1) // period * period
                _, state = model(tokens[:, :done], model.default_state(n_samples))
            stepper = make_stepper(model, n_samples, fast=fast, compile=compile, cuda_graph=cuda_graph, backend=backend,
                                   state=state)
            for t in range(done, P):
                logits = stepper.step(tokens[:, t])
            ll = torch.zeros(n_samples, dtype=torch.float64, device=device)
            for t in range(P, length):
                tok = sample_token(logits, temperature=temperature, top_p=top_p, generator=generator)
                ll += torch.log_softmax(logits.float(), -1).gather(-1, tok[:, None]).squeeze(-1).double()
                tokens[:, t] = tok
                if t + 1 < length:
                    logits = stepper.step(tok)
                if progress is not None:
                    progress(t + 1, length)
        return tokens, ll
    finally:
        model.train(was_training)
