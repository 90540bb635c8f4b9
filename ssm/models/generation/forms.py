"""The shapes of one step that the batched banks need, derived from each core's ``StepForm``.

``SSMCore.step_form()`` (ssm/kernels/base.py) is the one statement of a core's recurrence,
x' = dA x + sum_r Re(F_r . x) G_r + dB u, y = scale Re(C . x') + D u. The banks reorder it so
that everything that depends only on the old state is known before the layer's input arrives:

    y = Re(Fy . x) + d u,                     Fy = scale C dA + sum_r cu_r F_r,
    x' = dA x + sum_r Re(F_r . x) G_r + dB u,  cu_r = scale Re(C . G_r),  d = scale Re(C . dB) + D

(``ChannelForm``, per-channel cores: S4, S4D, S4-PTD), and for the MIMO core (S5)
y = Re(x Cy) + u Deff, x' = dA x + u dB_t with Cy = scale dA C^T, Deff = scale Re(dB^T C^T) + diag D
(``DenseForm``). All in complex128/float64; the banks cast to the working precision.
"""

from __future__ import annotations

import dataclasses

import torch

from ...kernels.base import StepForm


def real_functional(Fc: torch.Tensor) -> torch.Tensor:
    """Complex weights (..., n) -> real (..., 2n) with Re(sum F x) = that . view_as_real(x)."""
    return torch.view_as_real(Fc.conj().resolve_conj()).flatten(-2)


def real_vector(Vc: torch.Tensor) -> torch.Tensor:
    """Complex (..., n) -> interleaved real (..., 2n), the layout of view_as_real(state)."""
    return torch.view_as_real(Vc.resolve_conj()).flatten(-2)


@dataclasses.dataclass(frozen=True)
class ChannelForm:
    """A per-channel core's step with m = r + 1 real functionals psi_j = Re(F_j . x):
    psi_j for j < r feed the state, psi_r is the state part of y;
    x' = E x + sum_{j<r} psi_j U_j + u U_r,  y = psi_r + deff u."""

    E: torch.Tensor  # (H, n) complex128
    F: torch.Tensor  # (H, m, n) complex128
    U: torch.Tensor  # (H, m, n) complex128
    deff: torch.Tensor  # (H,) float64

    @classmethod
    def of(cls, form: StepForm) -> ChannelForm:
        if form.mimo:
            raise ValueError("ChannelForm: this is a MIMO core's step; use DenseForm")
        C, dA, dB, s = form.C, form.dA, form.dB, form.scale
        Fy = s * C * dA  # (H, n)
        deff = s * (C * dB).sum(-1).real + form.D
        if form.F is None:
            return cls(E=dA, F=Fy.unsqueeze(1), U=dB.unsqueeze(1), deff=deff)
        cu = s * (C * form.G).sum(-1).real  # (r, H): y's coefficient of Re(F_r . x)
        Fy = Fy + (cu[..., None].to(Fy.dtype) * form.F).sum(0)
        F = torch.cat([form.F.transpose(0, 1), Fy.unsqueeze(1)], 1)  # (H, r+1, n)
        U = torch.cat([form.G.transpose(0, 1), dB.unsqueeze(1)], 1)  # (H, r+1, n)
        return cls(E=dA, F=F, U=U, deff=deff)


@dataclasses.dataclass(frozen=True)
class DenseForm:
    """A MIMO core's step: y = Re(x Cy) + u Deff, x' = dA x + u dB_t."""

    dA: torch.Tensor  # (P,) complex128
    Cy: torch.Tensor  # (P, H) complex128
    dB_t: torch.Tensor  # (H, P) complex128
    Deff: torch.Tensor  # (H, H) float64

    @classmethod
    def of(cls, form: StepForm) -> DenseForm:
        if not form.mimo:
            raise ValueError("DenseForm: this is a per-channel core's step; use ChannelForm")
        C_t, dB_t = form.C.transpose(0, 1), form.dB.transpose(0, 1)  # (P, H), (H, P)
        Deff = form.scale * (dB_t @ C_t).real + torch.diag(form.D)
        return cls(dA=form.dA, Cy=form.scale * form.dA[:, None] * C_t, dB_t=dB_t, Deff=Deff)
