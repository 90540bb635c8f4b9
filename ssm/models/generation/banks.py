"""State banks: the SSM layers of one SaShiMi tier stacked, their state work batched.

``ChannelBank`` holds per-channel cores (S4, S4D, S4-PTD) and steps them in chunks of T samples;
``DenseBank`` holds S5 cores and updates every step. Both take their numbers from the cores'
``step_form()`` (through ``ssm.models.generation.forms``) and expose, per step, the slots the
tier's depth-sequential chain reads (each layer's state part of y) and writes (its input u).
"""

from __future__ import annotations

import torch

from ...layers.base import SSMBlock
from ...ops import step as step_ops
from ..sashimi import FeedForward, Residual
from .forms import ChannelForm, DenseForm, real_functional, real_vector

_COMPLEX = {torch.float32: torch.complex64, torch.float64: torch.complex128}


def complex_of(dtype: torch.dtype) -> torch.dtype:
    """The complex dtype of a working precision (float32 or float64)."""
    return _COMPLEX[dtype]


class ChannelBank:
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
        forms = [ChannelForm.of(c.step_form()) for c in cores]
        K, (H, m, n) = len(cores), forms[0].F.shape
        T, KH, cdt = chunk, len(cores) * H, complex_of(dtype)
        self.K, self.H, self.m, self.n, self.T, self.j = K, H, m, n, T, 0
        E = torch.stack([f.E for f in forms]).reshape(KH, n)  # complex128
        Fm = torch.stack([f.F for f in forms]).reshape(KH, m, n)
        U = torch.stack([f.U for f in forms]).reshape(KH, m, n)
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
        self.deff = [f.deff.to(device=device, dtype=dtype) for f in forms]  # K x (H,)
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


class DenseBank:
    """K S5 cores stacked: state X (K, B, P) complex, inputs U (K, B, H). Updated every step
    (``chunk`` does not apply): the (B, 2P) @ (2P, H) products are already ordinary GEMMs."""

    siso = False

    def __init__(self, cores, batch: int, dtype, device, chunk: int, fused: bool = False):
        forms = [DenseForm.of(c.step_form()) for c in cores]
        K = len(cores)
        P, H = forms[0].Cy.shape
        cdt = complex_of(dtype)
        self.dA = torch.stack([f.dA for f in forms]).to(cdt).to(device).unsqueeze(1)  # (K, 1, P)
        Cr = torch.stack([real_functional(f.Cy.transpose(0, 1)) for f in forms])  # (K, H, 2P)
        self.Cr = Cr.transpose(1, 2).contiguous().to(dtype).to(device)  # (K, 2P, H)
        self.Br = torch.stack([real_vector(f.dB_t) for f in forms]).to(dtype).to(device)  # (K, H, 2P)
        self.deff = [f.Deff.to(dtype).to(device) for f in forms]  # K x (H, H)
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


def bank_for(blocks: list[Residual]):
    """The stacked bank class for these blocks' SSM layers, or None when they need the generic path."""
    layers = [b.f for b in blocks if b.stateful]
    if not layers or not all(isinstance(m, SSMBlock) for m in layers):
        return None
    if not all(isinstance(b.f, FeedForward) for b in blocks if not b.stateful):
        return None
    kinds = {m.core.form_kind for m in layers}
    same = len({(m.activation, type(m.out)) for m in layers}) == 1
    if len(kinds) != 1 or not same:
        return None
    return {"channel": ChannelBank, "dense": DenseBank, None: None}[kinds.pop()]
