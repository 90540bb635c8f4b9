"""Diagonal SSM core: S4D (arXiv 2206.11893) and the S4-PTD initialisation (arXiv 2310.01698).

State x in C^n (n = d_state/2 conjugate pairs for S4D, n = d_state full modes for S4-PTD), one
diagonal A shared by groups of channels, per-channel timestep dt:

    x_t = dA x_{t-1} + dB u_t,    y_t = 2 Re(C x_t) + D u_t

ZOH: dA = exp(dt A), dB = (dA - 1)/A B; bilinear: dA = (1 + dt A/2)/(1 - dt A/2), dB = dt B/(1 - dt A/2).
The convolution kernel K_l = 2 Re sum_n C_n dB_n dA_n^l is one ``ssm.ops.vandermonde`` call with
x = log dA; the initial state contributes 2 Re sum_n C_n dA_n^{t+1} s_n (another Vandermonde) and
the final state is dA^L s + sum_t dA^{L-1-t} dB u_t (``ssm.ops.vandermonde_transpose`` of the
flipped input). All SSM math runs in float32/complex64 even under autocast (float64/complex128
for a float64 core).
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

Init = Literal["legs", "inv", "lin", "real"]
Disc = Literal["zoh", "bilinear"]
RealTransform = Literal["exp", "relu", "softplus", "none"]


def _real_param(z: torch.Tensor) -> nn.Parameter:
    """Complex values stored as a real (..., 2) parameter (optimizers and DDP see real tensors)."""
    return nn.Parameter(torch.view_as_real(z.to(torch.complex64)).clone())


def _complex(p: torch.Tensor) -> torch.Tensor:
    return torch.view_as_complex(p)


def log_uniform_dt(H: int, dt_min: float, dt_max: float, device=None) -> torch.Tensor:
    """log dt ~ U[log dt_min, log dt_max], one per channel."""
    if not 0 < dt_min <= dt_max:
        raise ValueError(f"dt range must satisfy 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
    return torch.rand(H, device=device) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)


class DiagonalSSM(SSMCore):
    """The S4D core: (B, H, L) -> (B, H, L), convolution by FFT, state passing, O(n) stepping."""

    form_kind = "channel"
    renamed_parameters = {"A_real": "A_real_raw"}

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        *,
        init: Init = "legs",
        disc: Disc = "zoh",
        real_transform: RealTransform = "exp",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        lr: float | None = 1e-3,
        n_ssm: int = 1,
        bidirectional: bool = False,
        l_max: int | None = None,
        modes: tuple[torch.Tensor, torch.Tensor] | None = None,
        c_basis: torch.Tensor | None = None,
        device=None,
        dtype=None,
    ):
        """``modes=(Lambda, B)`` overrides ``init`` (used by S4-PTD); ``c_basis`` (n, n) maps a
        random C into the eigenbasis (C = randn @ V). ``lr`` is the hint for A, B and dt (None:
        train them like everything else)."""
        super().__init__()
        name = type(self).__name__
        check_choice(name, "disc", disc, Disc)
        check_choice(name, "real_transform", real_transform, RealTransform)
        if d_model < 1 or n_ssm < 1 or d_model % n_ssm:
            raise ValueError(f"{name}: `n_ssm` ({n_ssm}) must divide d_model ({d_model})")
        if l_max is not None and l_max < 1:
            raise ValueError(f"{name}: `l_max` must be >= 1 or None, got {l_max}")
        self.d_model, self.disc, self.real_transform = d_model, disc, real_transform
        self.n_ssm, self.max_length = n_ssm, l_max
        self.causal = not bidirectional
        if modes is None:
            check_choice(name, "init", init, Init)
            Lambda, B = hippo.diag_init(init, d_state)  # (n,), (n,)
        else:
            Lambda, B = modes
        n = Lambda.shape[-1]
        self.n_modes = n  # complex modes held: d_state/2 for the conjugate-halved inits, d_state for S4-PTD

        neg_re = -Lambda.real.clamp(max=-1e-4)  # -Re A > 0
        # Re A = -real_transform(A_real_raw): the unconstrained parameter (one name, one meaning in every core)
        self.A_real_raw = nn.Parameter(self._inv_transform(neg_re.float()).repeat(n_ssm, 1))  # (n_ssm, n)
        self.A_imag = nn.Parameter(Lambda.imag.float().repeat(n_ssm, 1))  # (n_ssm, n)
        self.B = _real_param(B.repeat(n_ssm, 1))  # (n_ssm, n, 2)
        channels = 2 if bidirectional else 1
        C = torch.randn(channels, d_model, n, dtype=torch.complex128) * 0.5**0.5  # complex normal
        if c_basis is not None:
            C = C @ c_basis.to(torch.complex128)
        self.C = _real_param(C)  # (channels, H, n, 2)
        self.D = nn.Parameter(torch.randn(d_model))  # (H,)
        self.log_dt = nn.Parameter(log_uniform_dt(d_model, dt_min, dt_max))  # (H,)
        if lr is not None:
            for p in (self.A_real_raw, self.A_imag, self.B, self.log_dt):
                set_hint(p, lr=lr, weight_decay=0.0)
        self._place(device, dtype)

    # -- parameters -> discrete system ---------------------------------------------------------

    def _transform(self, p: torch.Tensor) -> torch.Tensor:
        if self.real_transform == "exp":
            return torch.exp(p)
        if self.real_transform == "relu":
            return torch.relu(p) + 1e-4
        if self.real_transform == "softplus":
            return nn.functional.softplus(p)
        return p

    def _inv_transform(self, a: torch.Tensor) -> torch.Tensor:
        a = a.clamp(min=1e-4)
        if self.real_transform == "exp":
            return torch.log(a)
        if self.real_transform == "softplus":
            return a + torch.log(-torch.expm1(-a))  # inverse of softplus
        return a

    def _A(self) -> torch.Tensor:
        A = torch.complex(-self._transform(self.A_real_raw), self.A_imag)  # (n_ssm, n)
        return A.repeat(self.d_model // self.n_ssm, 1)  # (H, n)

    def discrete(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(log dA, dB), each (H, n) complex64 (complex128 for a float64 core)."""
        rd = self.real_dtype
        with torch.autocast(self.log_dt.device.type, enabled=False):
            dt = torch.exp(self.log_dt.to(rd)).unsqueeze(-1)  # (H, 1)
            A = self._A().to(self.complex_dtype)
            B = _complex(self.B.to(rd)).repeat(self.d_model // self.n_ssm, 1)  # (H, n)
            dtA = dt * A
            if self.disc == "zoh":
                return dtA, torch.expm1(dtA) / A * B
            log_dA = torch.log1p(dtA / 2) - torch.log1p(-dtA / 2)
            return log_dA, dt * B / (1 - dtA / 2)

    def kernel(self, L: int) -> torch.Tensor:
        """Convolution kernel (channels, H, L)."""
        log_dA, dB = self.discrete()
        with torch.autocast(self.log_dt.device.type, enabled=False):
            return ops.vandermonde(_complex(self.C.to(self.real_dtype)) * dB, log_dA, L)  # (channels, H, L)

    # -- the core contract ---------------------------------------------------------------------

    def forward(self, u: torch.Tensor, state: torch.Tensor | None = None):
        L = u.shape[-1]  # u (batch, H, L)
        log_dA, dB = self.discrete()
        C = _complex(self.C.to(self.real_dtype))  # (channels, H, n)
        with torch.autocast(u.device.type, enabled=False):
            k = ops.vandermonde(C * dB, log_dA, L)  # (channels, H, L)
            if self.causal:
                y = ops.fftconv(u, k[0], self.D)
            else:
                if state is not None:
                    raise ValueError(f"{type(self).__name__}: a bidirectional layer has no recurrent state; call it with state=None")
                return ops.fftconv(u, k, self.D, bidirectional=True), None
            if state is None:
                return y, None
            state = state.to(log_dA.dtype)  # (B, H, n)
            # initial state: y_t += 2 Re sum_n C_n dA_n^{t+1} s_n
            y = y + ops.vandermonde(C[0] * torch.exp(log_dA) * state, log_dA, L).to(y.dtype)
            # final state: dA^L s + sum_t dA^{L-1-t} dB u_t
            u_rev = u.flip(-1).to(log_dA.real.dtype)  # (B, H, L)
            next_state = torch.exp(L * log_dA) * state + ops.vandermonde_transpose(u_rev, dB, log_dA)
        return y, next_state

    def default_state(self, batch: int, *, device=None) -> torch.Tensor:
        if not self.causal:
            raise ValueError(f"{type(self).__name__}: a bidirectional layer has no recurrent state")
        device = device if device is not None else self.log_dt.device
        return torch.zeros(batch, self.d_model, self.n_modes, dtype=self.complex_dtype, device=device)  # (B, H, n)


    def step_form(self) -> StepForm:
        """x' = dA x + dB u, y = 2 Re(C x') + D u; dA, dB, C (H, n)."""
        if not self.causal:
            raise ValueError(f"{type(self).__name__}: a bidirectional layer cannot be stepped")
        with torch.no_grad():
            log_dA, dB = self.discrete()
            c128 = torch.complex128
            return StepForm(dA=torch.exp(log_dA).to(c128), dB=dB.to(c128), C=_complex(self.C)[0].to(c128),
                            D=self.D.detach().double(), scale=2.0)
