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
DtTransform = Literal["exp", "softplus"]


def positive(p: torch.Tensor, transform: str) -> torch.Tensor:
    """A positive quantity from its unconstrained parameter (the reference's ``param_transform``)."""
    if transform == "exp":
        return torch.exp(p)
    if transform == "relu":
        return torch.relu(p) + 1e-4
    if transform == "softplus":
        return nn.functional.softplus(p)
    return p


def positive_inverse(a: torch.Tensor, transform: str) -> torch.Tensor:
    """The parameter that ``positive(., transform)`` maps to ``a`` (clamped at 1e-4 like the reference)."""
    a = a.clamp(min=1e-4)
    if transform == "exp":
        return torch.log(a)
    if transform == "softplus":
        return a + torch.log(-torch.expm1(-a))  # log(exp(a) - 1), stable
    return a


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


def dt_parameter(H: int, dt_min: float, dt_max: float, transform: str) -> torch.Tensor:
    """``inv_dt`` with dt = positive(inv_dt, transform) log-uniform in [dt_min, dt_max]."""
    log_dt = log_uniform_dt(H, dt_min, dt_max)
    return log_dt if transform == "exp" else positive_inverse(torch.exp(log_dt), transform)


class DiagonalSSM(SSMCore):
    """The S4D core: (B, H, L) -> (B, H, L), convolution by FFT, state passing, O(n) stepping."""

    form_kind = "channel"
    renamed_parameters = {"A_real": "A_real_raw", "log_dt": "inv_dt"}

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
        dt_transform: DtTransform = "exp",
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
        train them like everything else). ``dt_transform``: dt = exp(inv_dt) or softplus(inv_dt)
        (the s4 reference's layer config uses softplus). ``l_max`` is accepted for configs shared
        with S4 and has no effect here: the Vandermonde kernel is exact at every length."""
        super().__init__()
        name = type(self).__name__
        check_choice(name, "disc", disc, Disc)
        check_choice(name, "real_transform", real_transform, RealTransform)
        check_choice(name, "dt_transform", dt_transform, DtTransform)
        if d_model < 1 or n_ssm < 1 or d_model % n_ssm:
            raise ValueError(f"{name}: `n_ssm` ({n_ssm}) must divide d_model ({d_model})")
        if l_max is not None and l_max < 1:
            raise ValueError(f"{name}: `l_max` must be >= 1 or None, got {l_max}")
        self.d_model, self.disc, self.real_transform, self.dt_transform = d_model, disc, real_transform, dt_transform
        self.n_ssm, self.l_max = n_ssm, l_max
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
        self.A_real_raw = nn.Parameter(positive_inverse(neg_re.float(), real_transform).repeat(n_ssm, 1))  # (n_ssm, n)
        self.A_imag = nn.Parameter(Lambda.imag.float().repeat(n_ssm, 1))  # (n_ssm, n)
        self.B = _real_param(B.repeat(n_ssm, 1))  # (n_ssm, n, 2)
        channels = 2 if bidirectional else 1
        # complex standard normal, E|C_n|^2 = 1, as the s4 reference draws it (torch.randn of a complex
        # dtype already splits unit variance over the real and imaginary parts; state-spaces/s4
        # src/models/sequence/kernels/ssm.py, init_ssm_dplr, commit e757cef)
        C = torch.randn(channels, d_model, n, dtype=torch.complex128)
        if c_basis is not None:
            C = C @ c_basis.to(torch.complex128)
        self.C = _real_param(C)  # (channels, H, n, 2)
        self.D = nn.Parameter(torch.randn(d_model))  # (H,)
        self.inv_dt = nn.Parameter(dt_parameter(d_model, dt_min, dt_max, dt_transform))  # (H,)
        if lr is not None:
            for p in (self.A_real_raw, self.A_imag, self.B, self.inv_dt):
                set_hint(p, lr=lr, weight_decay=0.0)
        self._place(device, dtype)

    # -- parameters -> discrete system ---------------------------------------------------------

    def _A(self) -> torch.Tensor:
        A = torch.complex(-positive(self.A_real_raw, self.real_transform), self.A_imag)  # (n_ssm, n)
        return A.repeat(self.d_model // self.n_ssm, 1)  # (H, n)

    def dt(self, rate: float = 1.0) -> torch.Tensor:
        """The timestep (H,) in the working precision, times ``rate`` (the continuous-time model
        sampled ``rate`` times more coarsely: S4 paper's zero-shot resolution change)."""
        return positive(self.inv_dt.to(self.real_dtype), self.dt_transform) * rate

    def discrete(self, rate: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """(log dA, dB), each (H, n) complex64 (complex128 for a float64 core).

        Bilinear: log dA = log((1 + dtA/2)/(1 - dtA/2)) = 2 atanh(dtA/2), which keeps its relative
        precision for slowly decaying modes (|dtA| << 1) where the difference of two log1p loses it."""
        rd = self.real_dtype
        with torch.autocast(self.inv_dt.device.type, enabled=False):
            dt = self.dt(rate).unsqueeze(-1)  # (H, 1)
            A = self._A().to(self.complex_dtype)
            B = _complex(self.B.to(rd)).repeat(self.d_model // self.n_ssm, 1)  # (H, n)
            dtA = dt * A
            if self.disc == "zoh":
                return dtA, torch.expm1(dtA) / A * B
            return 2 * torch.atanh(dtA / 2), dt * B / (1 - dtA / 2)

    def kernel(self, L: int, rate: float = 1.0) -> torch.Tensor:
        """Convolution kernel (channels, H, L)."""
        log_dA, dB = self.discrete(rate)
        with torch.autocast(self.inv_dt.device.type, enabled=False):
            return ops.vandermonde(_complex(self.C.to(self.real_dtype)) * dB, log_dA, L)  # (channels, H, L)

    # -- the core contract ---------------------------------------------------------------------

    def forward(self, u: torch.Tensor, state: torch.Tensor | None = None, rate: float = 1.0):
        L = u.shape[-1]  # u (batch, H, L)
        log_dA, dB = self.discrete(rate)
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
        device = device if device is not None else self.inv_dt.device
        return torch.zeros(batch, self.d_model, self.n_modes, dtype=self.complex_dtype, device=device)  # (B, H, n)


    def step_form(self, rate: float = 1.0) -> StepForm:
        """x' = dA x + dB u, y = 2 Re(C x') + D u; dA, dB, C (H, n)."""
        self._check_steppable()
        with torch.no_grad():
            log_dA, dB = self.discrete(rate)
            c128 = torch.complex128
            return StepForm(dA=torch.exp(log_dA).to(c128), dB=dB.to(c128), C=_complex(self.C)[0].to(c128),
                            D=self.D.detach().double(), scale=2.0)
