"""The layer contract and the block every SSM layer shares.

Contract (every public layer):
    y, state = layer(x, state=None)       x, y: (B, L, H); state: the recurrent state after x
    state = layer.default_state(B)        the zero state
    layer.setup_step()                    precompute the discrete step matrices (optional: step
                                          calls it when the parameters changed since)
    layer(x, rate=r), setup_step(rate=r)  the continuous-time model at timestep dt * r (input
                                          sampled r times more coarsely; S4 paper Sec. 4.3)
    y_t, state = layer.step(x_t, state)   x_t, y_t: (B, H)
so that ``forward`` on a whole sequence, ``forward`` on chunks passing the state along, and
``step`` token by token give the same outputs.

``SSMBlock`` wraps an SSM *core* (which maps ``(B, H, L) -> (B, H, L)`` and includes the D
skip) with what S4 calls the block (arXiv 2111.00396 App. D.2; S4D arXiv 2206.11893 Sec. 4):
activation, dropout, an output linear (GLU by default), and a ``lengths`` mask for padded
batches. Everything outside the core is pointwise in time, so stepping it is trivial.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from ..checks import check_choice, check_rate
from ..kernels.base import SSMCore

Activation = Literal["gelu", "silu", "relu", "tanh", "identity"]
Final = Literal["glu", "linear", "identity"]

_ACTIVATIONS = {
    "gelu": F.gelu,
    "silu": F.silu,
    "relu": F.relu,
    "tanh": torch.tanh,
    "identity": lambda x: x,
}


def length_mask(name: str, lengths, B: int, L: int, device) -> torch.Tensor:
    """The ``(B, L)`` bool mask of valid positions for ``lengths`` (validated: an integer tensor
    of shape ``(B,)`` with ``1 <= lengths <= L``). Callers zero padding with ``torch.where`` on
    it, never by multiplying, so NaN/Inf in padded positions cannot reach valid outputs."""
    if not isinstance(lengths, torch.Tensor):
        raise TypeError(f"{name}: `lengths` must be an integer tensor of shape (B,) = ({B},), got {type(lengths).__name__}")
    if lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool:
        raise TypeError(f"{name}: `lengths` must be an integer tensor (e.g. int64), got {lengths.dtype}")
    if lengths.shape != (B,):
        raise ValueError(f"{name}: `lengths` must be (B,) = ({B},), got {tuple(lengths.shape)}")
    lo, hi = int(lengths.min()), int(lengths.max())
    if lo < 1 or hi > L:
        raise ValueError(f"{name}: `lengths` must satisfy 1 <= length <= L = {L}, got values in [{lo}, {hi}]")
    return torch.arange(L, device=device)[None, :] < lengths.to(device)[:, None]  # (B, L)


class SSMBlock(nn.Module):
    """``y = out_linear(dropout(activation(core(x))))`` with the layer contract; (B, L, H) at the boundary."""

    def __init__(
        self,
        core: SSMCore,
        *,
        activation: Activation = "gelu",
        final: Final = "glu",
        dropout: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        name = type(self).__name__
        check_choice(name, "activation", activation, Activation)
        check_choice(name, "final", final, Final)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"{name}: `dropout` must be in [0, 1), got {dropout}")
        self.core = core
        self.d_model = core.d_model
        self.activation = activation
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        H = core.d_model
        if final == "glu":
            self.out = nn.Sequential(nn.Linear(H, 2 * H, device=device, dtype=dtype), nn.GLU(dim=-1))
        elif final == "linear":
            self.out = nn.Linear(H, H, device=device, dtype=dtype)
        else:
            self.out = nn.Identity()

    @property
    def causal(self) -> bool:
        return self.core.causal

    # -- input checks --------------------------------------------------------------------------

    def _check(self, x: torch.Tensor, *, step: bool = False) -> None:
        name = type(self).__name__
        want = "(B, H)" if step else "(B, L, H)"
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name}: input must be a torch.Tensor {want}, got {type(x).__name__}")
        if x.dim() != (2 if step else 3):
            raise ValueError(f"{name}: input must be {want} with H={self.d_model}, got shape {tuple(x.shape)}")
        if x.shape[-1] != self.d_model:
            raise ValueError(f"{name}: input must be {want} with H={self.d_model} channels, got shape {tuple(x.shape)}")
        if not x.dtype.is_floating_point:
            raise TypeError(f"{name}: input must be a floating-point tensor, got {x.dtype}")
        if not step:
            if x.shape[1] == 0:
                raise ValueError(f"{name}: input must be (B, L, H) with L >= 1, got shape {tuple(x.shape)}")
        if x.shape[0] == 0:
            raise ValueError(f"{name}: input must be {want} with B >= 1 (an empty batch), got shape {tuple(x.shape)}")

    def _check_state(self, state, batch: int) -> None:
        """A passed-in state must have the shape ``default_state(batch)`` has."""
        if state is None:
            return
        name = type(self).__name__
        want = self.core.default_state(batch, device="meta")
        if not isinstance(state, torch.Tensor) or state.shape != want.shape:
            got = tuple(state.shape) if isinstance(state, torch.Tensor) else type(state).__name__
            raise ValueError(f"{name}: `state` must have the shape of default_state({batch}), {tuple(want.shape)}, "
                             f"got {got}")

    def _compute_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in the dtype the layer computes in. Input and parameters must share a dtype, except
        half/bf16 input to a float32 layer: under autocast it is autocast's; without, the layer
        computes in float32 and ``forward``/``step`` cast the output back to the input's dtype."""
        p = self.core.real_dtype
        if x.dtype == p:
            return x
        if x.dtype in (torch.float16, torch.bfloat16) and p == torch.float32:
            return x if torch.is_autocast_enabled(x.device.type) else x.float()
        raise TypeError(
            f"{type(self).__name__}: input is {x.dtype} but the layer's parameters are {p}; build the layer with "
            f"dtype={x.dtype} (or call .to({x.dtype})), or cast the input to {p}")

    def _pointwise(self, y: torch.Tensor) -> torch.Tensor:
        return self.out(self.dropout(_ACTIVATIONS[self.activation](y)))

    # -- the contract --------------------------------------------------------------------------

    def forward(self, x: torch.Tensor, state=None, *, lengths: torch.Tensor | None = None, rate: float = 1.0):
        """``x: (B, L, H)`` -> ``(y: (B, L, H), next_state)``. ``lengths: (B,)`` masks padding;
        ``rate`` scales the timestep (evaluate a model trained at one sampling rate at another)."""
        self._check(x)
        rate = check_rate(type(self).__name__, rate)
        if state is not None and self.core.causal:  # (a bidirectional core refuses any state itself)
            self._check_state(state, x.shape[0])
        dtype, x = x.dtype, self._compute_input(x)
        mask = None
        if lengths is not None:
            mask = length_mask(type(self).__name__, lengths, x.shape[0], x.shape[1], x.device).unsqueeze(-1)  # (B, L, 1)
            x = torch.where(mask, x, 0.0)  # a select: NaN in padding stays out
        u = x.transpose(1, 2)  # (B, H, L)
        y, next_state = self.core(u, state) if rate == 1.0 else self.core(u, state, rate=rate)
        y = self._pointwise(y.transpose(1, 2))  # (B, L, H)
        if mask is not None:
            y = torch.where(mask, y, 0.0)
        return y.to(dtype), next_state

    def default_state(self, batch: int, *, device=None):
        return self.core.default_state(batch, device=device)

    def setup_step(self, rate: float = 1.0) -> None:
        self.core.setup_step(rate)

    def step(self, x_t: torch.Tensor, state):
        """``x_t: (B, H)`` -> ``(y_t: (B, H), next_state)``."""
        self._check(x_t, step=True)
        self._check_state(state, x_t.shape[0])
        dtype, x_t = x_t.dtype, self._compute_input(x_t)
        y, state = self.core.step(x_t, state)
        return self._pointwise(y).to(dtype), state
