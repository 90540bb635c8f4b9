"""S5 core: a MIMO diagonal SSM computed by a parallel scan (arXiv 2208.04933), and the S5-PTD
initialisation (arXiv 2310.01698).

State x in C^P' (P' = P/2 with conjugate symmetry, else P), one timestep per state:

    x_t = dA x_{t-1} + dB u_t,   y_t = f Re(C x_t) + D u_t,   f = 2 with conj_sym else 1

with ZOH dA = exp(Lambda dt), dB = (dA - 1)/Lambda * B (row-wise), B: (P', H), C: (H, P').
Bidirectional: a second scan runs backwards, y = f Re(C1 x_fwd + C2 x_bwd) + D u, with two
independently initialised C's.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from .. import hippo, ops
from ..optim import set_hint
from ..checks import check_choice
from .base import SSMCore, StepForm
from .diagonal import _complex, _real_param, log_uniform_dt

CInit = Literal["lecun_normal", "trunc_standard_normal", "complex_normal"]
S5Init = Literal["hippo", "ptd"]


def _lecun_normal(*shape: int, fan_in: int) -> torch.Tensor:
    """jax.nn.initializers.lecun_normal: a normal truncated at 2 standard deviations, scaled so
    that the truncated draw has variance 1/fan_in. (JAX takes fan_in from the second-to-last axis
    times the size of the axes before it; callers pass what it would compute for their shape.)"""
    std = math.sqrt(1.0 / fan_in) / 0.87962566103423978  # truncation at 2 std shrinks the variance
    return nn.init.trunc_normal_(torch.empty(*shape, dtype=torch.float64), std=std, a=-2 * std, b=2 * std)


def init_C(C_init: str, d_model: int, P_full: int, V: torch.Tensor) -> torch.Tensor:
    """One output matrix (H, P') as the official S5 code draws it (lindermanlab/S5, s5/ssm.py and
    s5/ssm_init.py, commit 3c18fdb): real and imaginary parts drawn separately on the full state
    size P (before conjugate halving), then mapped to the eigenbasis by V (P, P'):

    * ``trunc_standard_normal`` (its default): each row lecun_normal of shape (1, P, 2), i.e.
      variance 1/P per part, E|C_hp|^2 = 2/P;
    * ``lecun_normal``: lecun_normal of shape (H, P, 2), fan-in P H, E|C_hp|^2 = 2/(P H);
    * ``complex_normal``: each part N(0, 1/2) directly on (H, P'), no V: E|C_hp|^2 = 1."""
    if C_init == "complex_normal":
        return torch.randn(d_model, V.shape[1], dtype=torch.complex128)  # complex standard normal
    fan_in = P_full if C_init == "trunc_standard_normal" else P_full * d_model
    C = torch.complex(_lecun_normal(d_model, P_full, fan_in=fan_in), _lecun_normal(d_model, P_full, fan_in=fan_in))
    return C @ V.to(torch.complex128)  # (H, P')


class S5SSM(SSMCore):
    """(B, H, L) -> (B, H, L) with a parallel scan over the state sequence."""

    form_kind = "dense"
    renamed_parameters = {"A_real": "Lambda_real", "A_imag": "Lambda_imag"}

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        *,
        blocks: int = 1,
        init: S5Init = "hippo",
        conj_sym: bool = True,
        C_init: CInit = "trunc_standard_normal",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        clip_eigs: bool = False,
        lr: float | None = 1e-3,
        bidirectional: bool = False,
        device=None,
        dtype=None,
    ):
        super().__init__()
        name = type(self).__name__
        check_choice(name, "init", init, S5Init)
        check_choice(name, "C_init", C_init, CInit)
        if init == "ptd" and conj_sym:
            raise ValueError(f"{name}: init='ptd' keeps full complex modes; use conj_sym=False")
        self.d_model, self.conj_sym, self.clip_eigs = d_model, conj_sym, clip_eigs
        self.causal = not bidirectional
        if init == "hippo":
            Lambda, V, V_inv = hippo.s5_init(d_state, blocks, conj_sym=conj_sym)  # (P',), (P, P'), (P', P)
        else:
            Lambda, V, V_inv = hippo.s5_ptd_init(d_state, blocks)
        P = Lambda.shape[0]
        self.n_modes = P  # P' = P/2 with conj_sym (one mode per conjugate pair), else P
        self.Lambda_real = nn.Parameter(Lambda.real.float().clone())  # (P',): Re Lambda itself
        self.Lambda_imag = nn.Parameter(Lambda.imag.float().clone())
        # B: lecun_normal of shape (P, H), fan-in P (the official code's init_VinvB), then V^-1 B
        B = _lecun_normal(d_state, d_model, fan_in=d_state).to(torch.complex128)  # (P, H)
        self.B = _real_param(V_inv @ B)  # (P', H, 2)
        n_c = 2 if bidirectional else 1
        self.C = _real_param(torch.stack([init_C(C_init, d_model, d_state, V) for _ in range(n_c)]))  # (n_c, H, P', 2)
        self.D = nn.Parameter(torch.randn(d_model))  # (H,)
        self.log_dt = nn.Parameter(log_uniform_dt(P, dt_min, dt_max))  # (P',): one per state
        if lr is not None:
            for p in (self.Lambda_real, self.Lambda_imag, self.B, self.log_dt):
                set_hint(p, lr=lr, weight_decay=0.0)
        self._place(device, dtype)

    def _Lambda(self) -> torch.Tensor:
        re = self.Lambda_real.clamp(max=-1e-4) if self.clip_eigs else self.Lambda_real
        return torch.complex(re, self.Lambda_imag)  # (P',)

    def discrete(self, rate: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """(dA (P',), dB (P', H)) complex64 (complex128 for a float64 core), ZOH at dt * ``rate``."""
        with torch.autocast(self.log_dt.device.type, enabled=False):
            Lam = self._Lambda()
            dA = torch.exp(Lam * torch.exp(self.log_dt) * rate)
            return dA, ((dA - 1) / Lam).unsqueeze(-1) * _complex(self.B)

    @property
    def _factor(self) -> float:
        return 2.0 if self.conj_sym else 1.0

    def forward(self, u: torch.Tensor, state: torch.Tensor | None = None, rate: float = 1.0):
        dA, dB = self.discrete(rate)
        C = _complex(self.C)  # (n_c, H, P')
        with torch.autocast(u.device.type, enabled=False):
            uc = u.to(dB.real.dtype).transpose(1, 2).to(dB.dtype)  # (B, L, H)
            Bu = uc @ dB.transpose(0, 1)  # (B, L, P')
            if not self.causal and state is not None:
                raise ValueError(f"{type(self).__name__}: a bidirectional layer has no recurrent state; call it with state=None")
            xs = ops.scan(dA, Bu, state)  # (B, L, P')
            y = (xs @ C[0].transpose(0, 1)).real  # (B, L, H)
            if not self.causal:
                y = y + (ops.scan(dA, Bu, reverse=True) @ C[1].transpose(0, 1)).real
            y = self._factor * y.transpose(1, 2) + self.D.unsqueeze(-1) * u  # (B, H, L)
        return y.to(u.dtype), (xs[:, -1] if state is not None else None)

    def default_state(self, batch: int, *, device=None) -> torch.Tensor:
        if not self.causal:
            raise ValueError(f"{type(self).__name__}: a bidirectional layer has no recurrent state")
        device = device if device is not None else self.log_dt.device
        return torch.zeros(batch, self.n_modes, dtype=self.complex_dtype, device=device)  # (B, P')


    def step_form(self, rate: float = 1.0) -> StepForm:
        """x' = dA x + dB u, y = f Re(C x') + D u; dA (P',), dB (P', H), C (H, P')."""
        self._check_steppable()
        with torch.no_grad():
            dA, dB = self.discrete(rate)
            c128 = torch.complex128
            return StepForm(dA=dA.to(c128), dB=dB.to(c128), C=_complex(self.C)[0].to(c128),
                            D=self.D.detach().double(), scale=self._factor, mimo=True)
