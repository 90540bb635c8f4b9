"""SpaceTime's SSM layers (arXiv 2303.09489): companion, shift, and closed-loop companion.

Every core holds ``n_kernels`` independent single-input single-output SSMs of state size d,
each shared by ``d_model / n_kernels`` consecutive channels (the paper's "heads"):

    x_t = A x_{t-1} + b u_t,   y_t = c^T x_t + D u_t,   A = S + a e_{d-1}^T

The cores (``CompanionCore``, ``ShiftCore``) live in ``ssm.kernels.spacetime``; these are the
layers around them.

* ``CompanionSSM``: a, b, c learned; with ``norm_order=1``, a is divided by its l1 norm, which
  bounds the spectral radius by 1 (only a is normalised, as in the paper's open loop). Kernel by
  ``ssm.kernels.companion.companion_kernel``; state passing and stepping in O(d) per step.
* ``ShiftSSM``: a = 0, b = e_0 frozen, c learned: the state is the last d inputs and the kernel is
  c itself (a learned FIR filter of length d).
* ``ClosedLoopCompanionSSM``: the forecasting decoder. It reads the lag window, takes the last
  state, and rolls it out with ``A + b k^T``, predicting its own next input ``u_hat = k^T x``.
  The open loop, the state and the rollout all use one set of (normalised) parameters, so the
  forecast's step 0 equals the open-loop output at the last lag step exactly. (The reference
  repository builds the state with the unnormalised b and the rollout with normalised b, k, c,
  which puts a factor ||b||_1 between the two.) Unlike the repository, b, c and k are not
  normalised here: that would not bound the closed-loop spectrum anyway, and it would pin the
  gain of the input predictor k (an AR(p) step needs ||k||_1 = sum |phi_i|). k starts at 0, so
  the rollout starts as the free response of A.

Initialisation: a ~ N(0, 1) (normalised), b, c ~ N(0, 1/d), skip D = 1. (The reference
repository draws b and c from N(0, 1); with ||a||_1 = 1 the kernel then decays slowly and a
layer amplifies white noise by ~d, which compounds over the encoder and decoder.)
``lr`` is the optimizer hint for a and b (and k); they never get weight decay.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .. import ops
from ..kernels.base import place, working_dtype
from ..kernels.companion import Method, companion_closed_loop, companion_kernel, companion_last_state
from ..kernels.spacetime import CompanionCore, CompanionParams, NormOrder, ShiftCore, normalise
from ..optim import set_hint
from .base import Activation, Final, SSMBlock

__all__ = ["ClosedLoopCompanionSSM", "ClosedLoopOutput", "CompanionCore", "CompanionSSM", "ShiftCore", "ShiftSSM"]


def _causal_only(owner: str, bidirectional: bool) -> None:
    """The flag exists so configs written for S4/S4D layers can switch to these; only False works."""
    if bidirectional:
        raise ValueError(f"{owner}: companion and shift SSMs are causal recurrences; `bidirectional` must be False")


class CompanionSSM(SSMBlock):
    """Companion SSM layer (SpaceTime): ``x: (B, L, d_model) -> (y, state)``, state (B, H, d).

    ``n_kernels`` distinct SSMs (default one per channel), each shared by d_model/n_kernels
    consecutive channels; ``norm_order`` 1 (default) divides a by its l1 norm, 0 disables it;
    ``skip`` adds D u; ``method`` picks the kernel algorithm (``ssm.kernels.companion``);
    ``bidirectional`` must be False (accepted for configs shared with S4/S4D). Then the S4 block: activation, dropout, output linear.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        *,
        n_kernels: int | None = None,
        norm_order: NormOrder = 1,
        skip: bool = True,
        method: Method = "series",
        lr: float | None = None,
        bidirectional: bool = False,
        dropout: float = 0.0,
        activation: Activation = "gelu",
        final: Final = "glu",
        device=None,
        dtype=None,
    ):
        _causal_only(type(self).__name__, bidirectional)
        core = CompanionCore(d_model, d_state, n_kernels=n_kernels, norm_order=norm_order, skip=skip, method=method,
                             lr=lr, device=device, dtype=dtype)
        super().__init__(core, activation=activation, final=final, dropout=dropout, device=device, dtype=dtype)


class ShiftSSM(SSMBlock):
    """Shift SSM layer (SpaceTime): a learned causal FIR filter of length ``d_state`` per kernel,
    in the companion-SSM form (a = 0, b = e_0); ``x: (B, L, d_model) -> (y, state)``."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        *,
        n_kernels: int | None = None,
        skip: bool = True,
        bidirectional: bool = False,
        dropout: float = 0.0,
        activation: Activation = "gelu",
        final: Final = "glu",
        device=None,
        dtype=None,
    ):
        _causal_only(type(self).__name__, bidirectional)
        core = ShiftCore(d_model, d_state, n_kernels=n_kernels, skip=skip, device=device, dtype=dtype)
        super().__init__(core, activation=activation, final=final, dropout=dropout, device=device, dtype=dtype)


class ClosedLoopOutput(NamedTuple):
    """What ``ClosedLoopCompanionSSM`` returns; the last two only with ``open_loop=True``."""

    forecast: torch.Tensor  # (B, horizon, H): y_h = c^T x_h, x_{h+1} = (A + b k^T) x_h
    forecast_inputs: torch.Tensor  # (B, horizon, H): u_hat_h = k^T x_h, the inputs it feeds itself
    open_loop: torch.Tensor | None  # (B, L, H): c^T x_t over the lag window (teacher forcing)
    next_input: torch.Tensor | None  # (B, L, H): k^T x_t over the lag window, predicts u_{t+1}


class ClosedLoopCompanionSSM(CompanionParams, nn.Module):
    """Closed-loop companion SSM, SpaceTime's decoder: ``x: (B, L, H)``, ``horizon`` -> forecasts.

    With x_t the state after the input u_t (x_{-1} = 0): the forecast is
    ``y_h = c^T (A + b k^T)^h x_{L-1}`` for h < horizon, so step h stands for time L + h when the
    layer's outputs are trained to predict the next step (step 0 is the open-loop output at
    t = L - 1). ``open_loop=True`` also returns the teacher-forced outputs ``c^T x_t`` and the
    next-input predictions ``k^T x_t`` over the window, for the paper's two auxiliary losses.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        *,
        n_kernels: int | None = None,
        norm_order: NormOrder = 1,
        method: Method = "series",
        lr: float | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        self._configure(d_model, d_state, n_kernels, norm_order, method)
        self.k = nn.Parameter(torch.zeros(self.n_kernels, d_state))
        for p in (self.a, self.b, self.k):
            set_hint(p, lr=lr, weight_decay=0.0)
        place(self, device, dtype)

    def system(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(a, b, c, k), each (n_kernels, d) float32 (float64 for float64 parameters), a normalised."""
        rd = working_dtype(self)
        return normalise(self.a.to(rd), self.norm_order), self.b.to(rd), self.c.to(rd), self.k.to(rd)

    def forward(self, x: torch.Tensor, horizon: int, *, open_loop: bool = False) -> ClosedLoopOutput:
        name = type(self).__name__
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[-1] != self.d_model or x.shape[1] < 1:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name}: input must be (B, L, H) with H={self.d_model} and L >= 1, got {got}")
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
            raise ValueError(f"{name}: `horizon` must be an int >= 1, got {horizon!r}")
        with torch.autocast(x.device.type, enabled=False):
            u = x.to(working_dtype(self)).transpose(1, 2)  # (B, H, L)
            a, b, c, k = self.system()
            aH, bH, cH, kH = self._per_channel(a, b, c, k)
            last = companion_last_state(aH, bH, u)  # (B, H, d)
            y, u_hat = companion_closed_loop(aH, bH, cH, kH, last, horizon)  # (B, H, horizon) each
            y_open = u_next = None
            if open_loop:
                L = u.shape[-1]
                kern = companion_kernel(a, b, torch.stack([c, k]), L, method=self.method)  # (2, n, L)
                kc, kk = self._per_channel(kern[0], kern[1])  # (H, L) each
                y_open = ops.fftconv(u, kc).transpose(1, 2).to(x.dtype)  # (B, L, H)
                u_next = ops.fftconv(u, kk).transpose(1, 2).to(x.dtype)
        return ClosedLoopOutput(y.transpose(1, 2).to(x.dtype), u_hat.transpose(1, 2).to(x.dtype), y_open, u_next)
