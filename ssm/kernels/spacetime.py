"""SpaceTime's SSM cores (arXiv 2303.09489): companion and shift, on (B, H, L) tensors.

Every core holds ``n_kernels`` independent single-input single-output SSMs of state size d,
each shared by ``d_model / n_kernels`` consecutive channels (the paper's "heads"):

    x_t = A x_{t-1} + b u_t,   y_t = c^T x_t + D u_t,   A = S + a e_{d-1}^T

* ``CompanionCore``: a, b, c learned; with ``norm_order=1``, a is divided by its l1 norm, which
  bounds the spectral radius by 1 (only a is normalised, as in the paper's open loop). Kernel by
  ``ssm.kernels.companion.companion_kernel``; state passing and stepping in O(d) per step.
* ``ShiftCore``: a = 0, b = e_0 frozen, c learned: the state is the last d inputs and the kernel is
  c itself (a learned FIR filter of length d).

``CompanionParams`` (the checked settings and the (a, b, c) draw) is shared with the closed-loop
decoder ``ssm.layers.ClosedLoopCompanionSSM``. Initialisation: a ~ N(0, 1) (normalised),
b, c ~ N(0, 1/d), skip D = 1 (see ssm/layers/companion.py for why b, c are not N(0, 1) as in the
reference repository). ``lr`` is the optimizer hint for a and b; they never get weight decay.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from .. import ops
from ..checks import check_choice
from ..optim import set_hint
from .base import SSMCore
from .companion import Method, companion_kernel, companion_last_state, companion_step, polymul

NormOrder = Literal[0, 1, 2]

__all__ = ["CompanionCore", "CompanionParams", "NormOrder", "ShiftCore"]


def _groups(owner: str, d_model: int, d_state: int, n_kernels: int | None) -> int:
    if d_model < 1 or d_state < 1:
        raise ValueError(f"{owner}: `d_model` and `d_state` must be >= 1, got {d_model}, {d_state}")
    n_kernels = d_model if n_kernels is None else n_kernels
    if n_kernels < 1 or d_model % n_kernels:
        raise ValueError(f"{owner}: `n_kernels` ({n_kernels}) must be >= 1 and divide d_model ({d_model})")
    return n_kernels


def normalise(a: torch.Tensor, order: int) -> torch.Tensor:
    if order == 0:
        return a
    return a / torch.linalg.vector_norm(a, ord=order, dim=-1, keepdim=True).clamp_min(1e-8)


class CompanionParams:
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


class CompanionCore(CompanionParams, SSMCore):
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
        return normalise(self.a.to(rd), self.norm_order), self.b.to(rd), self.c.to(rd)

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

    def forward(self, u: torch.Tensor, state: torch.Tensor | None = None, rate: float = 1.0):
        """u (B, H, L) -> y (B, H, L), and the final state (B, H, d) when a state is passed in."""
        self._discrete_time_only(rate)
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

    def _discrete_time_only(self, rate: float) -> None:
        if rate != 1.0:
            raise ValueError(f"{type(self).__name__}: a companion SSM is a discrete-time recurrence with no timestep; "
                             f"`rate` must be 1, got {rate!r}")

    def setup_step(self, rate: float = 1.0) -> None:
        """Per-channel a, b, c (H, d) and D (H,) for ``step``."""
        self._discrete_time_only(rate)
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
