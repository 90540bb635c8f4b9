"""SpaceTime's SSM layers (arXiv 2303.09489): companion, shift, and closed-loop companion.

Every core holds ``n_kernels`` independent single-input single-output SSMs of state size d,
each shared by ``d_model / n_kernels`` consecutive channels (the paper's "heads"):

    x_t = A x_{t-1} + b u_t,   y_t = c^T x_t + D u_t,   A = S + a e_{d-1}^T

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

import math
from typing import Literal, NamedTuple

import torch
from torch import nn

from .. import ops
from ..kernels.base import place, working_dtype
from ..kernels.companion import (
    Method,
    companion_closed_loop,
    companion_kernel,
    companion_last_state,
    companion_step,
    polymul,
)
from ..optim import set_hint
from .base import Activation, Final, SSMBlock, SSMCore, check_choice

NormOrder = Literal[0, 1, 2]

__all__ = ["ClosedLoopCompanionSSM", "ClosedLoopOutput", "CompanionCore", "CompanionSSM", "ShiftCore", "ShiftSSM"]


def _groups(owner: str, d_model: int, d_state: int, n_kernels: int | None) -> int:
    if d_model < 1 or d_state < 1:
        raise ValueError(f"{owner}: `d_model` and `d_state` must be >= 1, got {d_model}, {d_state}")
    n_kernels = d_model if n_kernels is None else n_kernels
    if n_kernels < 1 or d_model % n_kernels:
        raise ValueError(f"{owner}: `n_kernels` ({n_kernels}) must be >= 1 and divide d_model ({d_model})")
    return n_kernels


def _causal_only(owner: str, bidirectional: bool) -> None:
    """The flag exists so configs written for S4/S4D layers can switch to these; only False works."""
    if bidirectional:
        raise ValueError(f"{owner}: companion and shift SSMs are causal recurrences; `bidirectional` must be False")


def _normalise(a: torch.Tensor, order: int) -> torch.Tensor:
    if order == 0:
        return a
    return a / torch.linalg.vector_norm(a, ord=order, dim=-1, keepdim=True).clamp_min(1e-8)


class _CompanionParams:
    """What the open- and closed-loop companion modules share: checked settings, the (a, b, c) draw
    and the expansion of per-kernel tensors to channels."""

    def _configure(self, d_model: int, d_state: int, n_kernels: int | None, norm_order, method) -> None:
        name = type(self).__name__
        check_choice(name, "norm_order", norm_order, NormOrder)
        check_choice(name, "method", method, Method)
        n_kernels = _groups(name, d_model, d_state, n_kernels)
        self.d_model, self.d_state, self.n_kernels = d_model, d_state, n_kernels
        self.norm_order, self.method = norm_order, method
        self._init_abc(n_kernels, d_state)

    def _init_abc(self, n: int, d: int) -> None:
        self.a = nn.Parameter(torch.randn(n, d))  # (n_kernels, d): the last column of A
        self.b = nn.Parameter(torch.randn(n, d) / math.sqrt(d))
        self.c = nn.Parameter(torch.randn(n, d) / math.sqrt(d))

    def _per_channel(self, *ts: torch.Tensor) -> tuple[torch.Tensor, ...]:
        g = self.d_model // self.n_kernels
        return tuple(t.repeat_interleave(g, dim=0) for t in ts)  # (H, ...)


class CompanionCore(_CompanionParams, SSMCore):
    """The companion SSM on (B, H, L) tensors, with the core contract of ``ssm.layers.base``."""

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
        device=None,
        dtype=None,
    ):
        super().__init__()
        self._configure(d_model, d_state, n_kernels, norm_order, method)
        self.D = nn.Parameter(torch.ones(d_model)) if skip else None  # (H,)
        for p in (self.a, self.b):
            if isinstance(p, nn.Parameter):
                set_hint(p, lr=lr, weight_decay=0.0)
        self._place(device, dtype)

    # -- parameters -> system --------------------------------------------------------------------

    def system(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(a, b, c), each (n_kernels, d) float32 (float64 for a float64 core), a normalised."""
        rd = self.real_dtype
        return _normalise(self.a.to(rd), self.norm_order), self.b.to(rd), self.c.to(rd)

    def kernel(self, L: int) -> torch.Tensor:
        """Convolution kernel (H, L)."""
        a, b, c = self.system()
        return self._per_channel(companion_kernel(a, b, c, L, method=self.method))[0]

    def _from_state(self, state: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Output contribution of an initial state, c^T A^{t+1} x0, and its part of the final
        state, A^L x0. state (B, H, d), u (B, H, L) -> (B, H, L), (B, H, d)."""
        a, _, c = self._per_channel(*self.system())
        L = u.shape[-1]
        ax0 = companion_step(a, state)  # A x0
        y = companion_kernel(a, ax0, c, L, method=self.method)  # (B, H, L)
        impulse = torch.zeros(L, dtype=state.dtype, device=state.device)
        impulse[0] = 1  # the input at t=0 is propagated L-1 more times: A^{L-1} (A x0)
        return y, companion_last_state(a, ax0, impulse)

    def _last_state(self, u: torch.Tensor) -> torch.Tensor:
        a, b, _ = self._per_channel(*self.system())
        return companion_last_state(a, b, u)

    # -- the core contract -----------------------------------------------------------------------

    def forward(self, u: torch.Tensor, state: torch.Tensor | None = None):
        """u (B, H, L) -> y (B, H, L), and the final state (B, H, d) when a state is passed in."""
        L = u.shape[-1]
        with torch.autocast(u.device.type, enabled=False):
            uf = u.to(self.real_dtype)
            D = self.D.to(self.real_dtype) if self.D is not None else None
            y = ops.fftconv(uf, self.kernel(L), D)  # (B, H, L)
            if state is None:
                return y.to(u.dtype), None
            state = state.to(uf.dtype)
            y_state, carried = self._from_state(state, uf)
            next_state = self._last_state(uf) + carried  # (B, H, d)
            return (y + y_state).to(u.dtype), next_state

    def default_state(self, batch: int, *, device=None) -> torch.Tensor:
        device = device if device is not None else self.c.device
        return torch.zeros(batch, self.d_model, self.d_state, dtype=self.real_dtype, device=device)  # (B, H, d)

    def setup_step(self) -> None:
        """Per-channel a, b, c (H, d) and D (H,) for ``step``."""
        with torch.no_grad():
            a, b, c = self._per_channel(*self.system())
            D = (self.D.detach().to(c.dtype).clone() if self.D is not None
                 else torch.zeros(self.d_model, dtype=c.dtype, device=c.device))
            self._cache_step(a, b, c, D)

    def step(self, u: torch.Tensor, state: torch.Tensor):
        """u (B, H), state (B, H, d) -> y (B, H), next state; O(d) per channel."""
        a, b, c, D = self._step_matrices()
        uf = u.to(a.dtype)
        state = companion_step(a, state) + b * uf.unsqueeze(-1)  # (B, H, d)
        y = (c * state).sum(-1) + D * uf  # (B, H)
        return y.to(u.dtype), state


class ShiftCore(CompanionCore):
    """a = 0, b = e_0 (buffers), c learned: the state is a delay line of the last d inputs."""

    def __init__(self, d_model: int, d_state: int = 64, *, n_kernels: int | None = None, skip: bool = True,
                 device=None, dtype=None):
        super().__init__(d_model, d_state, n_kernels=n_kernels, norm_order=0, skip=skip, device=device, dtype=dtype)

    def _init_abc(self, n: int, d: int) -> None:
        e0 = torch.zeros(n, d)
        e0[:, 0] = 1
        self.register_buffer("a", torch.zeros(n, d))
        self.register_buffer("b", e0)
        self.c = nn.Parameter(torch.randn(n, d) / math.sqrt(d))

    def kernel(self, L: int) -> torch.Tensor:
        """K = c, zero-padded or truncated to L: (H, L)."""
        c = self._per_channel(self.c.to(self.real_dtype))[0]
        d = c.shape[-1]
        return c[:, :L] if L <= d else nn.functional.pad(c, (0, L - d))

    def _from_state(self, state: torch.Tensor, u: torch.Tensor):
        # the state holds (u_{-1}, u_{-2}, ..., u_{-d}): y_t += sum_i c_{t+1+i} x0_i
        c = self._per_channel(self.c.to(self.real_dtype))[0]
        d, L = c.shape[-1], u.shape[-1]
        r = polymul(c.flip(-1), state, d).flip(-1)  # (B, H, d): r_j = sum_i c_{i+j} x0_i
        y = nn.functional.pad(r[..., 1:], (0, max(0, L - d + 1)))[..., :L]  # y_t = r_{t+1}
        carried = nn.functional.pad(state, (L, 0))[..., :d]  # x0 moves down L places
        return y, carried

    def _last_state(self, u: torch.Tensor) -> torch.Tensor:
        d = self.d_state
        last = u.flip(-1)[..., :d]  # (u_{L-1}, u_{L-2}, ...)
        return nn.functional.pad(last, (0, d - last.shape[-1]))


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


class ClosedLoopCompanionSSM(_CompanionParams, nn.Module):
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
        return _normalise(self.a.to(rd), self.norm_order), self.b.to(rd), self.c.to(rd), self.k.to(rd)

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
