"""SaShiMi: the multi-scale S4 backbone for autoregressive waveform modelling (arXiv 2202.09729).

    tokens (B, L) or features (B, L, d_input)
      -> encoder (embedding or linear) to d_model channels
      -> per tier: [unet: blocks] DownPool (p steps stacked into channels, linear to H*expand)
      -> center blocks at L / prod(pool), plus a skip from the center's input
      -> per tier, coarsest first: UpPool (linear H*expand -> H*p, shifted right by one coarse
         step when causal, unstacked into p steps) + skip, blocks, + skip
      -> LayerNorm -> decoder (B, L, d_output)

A "block" is ``n_layers`` pairs of prenorm residual blocks ``x + Drop(f(LN(x)))`` with f an SSM
layer and then a feed-forward ``Linear(H, ff*H) GELU Dropout Linear(ff*H, H)`` (none if ff=0).

Causality: coarse step j summarises fine steps jp..jp+p-1. After the shift the fine outputs
jp..jp+p-1 receive coarse step j-1, which saw only inputs <= jp-1; the current sample reaches the
output through the fine-level skip and layers. ``step`` realises the same function one sample at
a time: DownPool buffers p inputs and the coarser tiers run only when a coarse step completes;
UpPool keeps a queue of p outputs, all zero at first (that zero is the shift), so the work per
sample is O(1) amortised. ``forward(x, state)`` continues from a state taken at a multiple of
``prod(pool)`` samples, and returns the state ``step`` would have reached.

``unet=True`` adds ``n_layers`` pairs of blocks to every down tier, with a skip after every
residual block (the DiffWave-style variant of the paper). ``causal=False`` builds the layers
bidirectional where the layer factory takes ``bidirectional`` and drops the shift (for
non-autoregressive use); such a model cannot be stepped.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ..layers.s4 import S4

LayerFactory = Callable[..., nn.Module]


# ---- building blocks ---------------------------------------------------------------------------


class FeedForward(nn.Module):
    """``Linear(H, ff*H) -> GELU -> Dropout -> Linear(ff*H, H)``, pointwise in time."""

    def __init__(self, d_model: int, expand: int = 2, *, dropout: float = 0.0, device=None, dtype=None):
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.fc1 = nn.Linear(d_model, expand * d_model, **kw)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc2 = nn.Linear(expand * d_model, d_model, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., H) -> (..., H)
        return self.fc2(self.drop(nn.functional.gelu(self.fc1(x))))


class Residual(nn.Module):
    """Prenorm residual block ``x + Drop(f(LN(x)))``; f is an SSM layer (with state) or a FeedForward."""

    def __init__(self, f: nn.Module, d_model: int, *, dropout: float = 0.0, device=None, dtype=None):
        super().__init__()
        self.norm = nn.LayerNorm(d_model, device=device, dtype=dtype)
        self.f = f
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.stateful = not isinstance(f, FeedForward)

    def forward(self, x: torch.Tensor, state=None):  # (B, L, H) -> (B, L, H), next state
        if self.stateful:
            y, state = self.f(self.norm(x), state)
        else:
            y = self.f(self.norm(x))
        return x + self.drop(y), state

    def step(self, x: torch.Tensor, state):  # (B, H) -> (B, H), next state
        if self.stateful:
            y, state = self.f.step(self.norm(x), state)
        else:
            y = self.f(self.norm(x))
        return x + self.drop(y), state

    def default_state(self, batch: int, *, device=None):
        return self.f.default_state(batch, device=device) if self.stateful else None

    def setup_step(self) -> None:
        if self.stateful:
            self.f.setup_step()


class DownPool(nn.Module):
    """(B, L, H) -> (B, L/p, H*expand): p consecutive steps stacked into channels, then a linear map."""

    def __init__(self, d_model: int, expand: int, pool: int, *, device=None, dtype=None):
        super().__init__()
        self.d_model, self.pool = d_model, pool
        self.linear = nn.Linear(d_model * pool, d_model * expand, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, H = x.shape
        return self.linear(x.reshape(B, L // self.pool, self.pool * H))  # (B, L/p, p*H) -> (B, L/p, H*expand)


class UpPool(nn.Module):
    """(B, L/p, H*expand) -> (B, L, H): a linear map to p*H channels unstacked into p steps.

    With ``shift`` (causal models) the result moves right by one coarse step: the p fine outputs
    of coarse step j come from coarse step j-1 (from ``queue`` for j = 0, zeros by default).
    ``shift`` is an attribute so that tests can switch it off and watch causality break.
    """

    def __init__(self, d_model: int, expand: int, pool: int, *, shift: bool, device=None, dtype=None):
        super().__init__()
        self.d_model, self.pool, self.shift = d_model, pool, shift
        self.linear = nn.Linear(d_model * expand, d_model * pool, device=device, dtype=dtype)

    def project(self, z: torch.Tensor) -> torch.Tensor:
        """One coarse step (B, H*expand) -> its p fine outputs (B, p, H), unshifted."""
        return self.linear(z).view(z.shape[0], self.pool, self.d_model)

    def forward(self, z: torch.Tensor, queue: torch.Tensor | None = None):
        """``z: (B, Lc, H*expand)`` -> ``(y (B, Lc*p, H), last (B, p, H))``; ``last`` is the
        unshifted projection of the final coarse step, the UpPool queue after this input."""
        B, Lc, _ = z.shape
        y = self.linear(z).view(B, Lc, self.pool, self.d_model)  # (B, Lc, p, H)
        last = y[:, -1]  # (B, p, H)
        if self.shift:
            first = queue if queue is not None else torch.zeros_like(last)
            y = torch.cat([first.unsqueeze(1).to(y.dtype), y[:, :-1]], dim=1)  # (B, Lc, p, H)
        return y.reshape(B, Lc * self.pool, self.d_model), last


class _Tier(nn.Module):
    """One resolution of the U-Net: optional down blocks, the pools, the up blocks."""

    def __init__(self, down: nn.ModuleList, down_pool: DownPool, up_pool: UpPool, up: nn.ModuleList):
        super().__init__()
        self.down, self.down_pool, self.up_pool, self.up = down, down_pool, up_pool, up
        self.pool, self.d_model = down_pool.pool, down_pool.d_model


# ---- the recurrent state -------------------------------------------------------------------------


@dataclass
class TierState:
    """State of one tier: its blocks' states (None for feed-forward blocks), the DownPool buffer
    of the coarse step in progress and the UpPool queue feeding the current fine steps."""

    down: list
    buffer: torch.Tensor  # (B, p, H): inputs of the coarse step in progress
    queue: torch.Tensor  # (B, p, H): UpPool outputs for the p fine steps of this coarse step
    up: list


@dataclass
class SaShiMiState:
    """Whole-stack state after ``t`` samples; ``tiers`` finest first."""

    t: int
    tiers: list[TierState] = field(default_factory=list)
    center: list = field(default_factory=list)


# ---- the model ----------------------------------------------------------------------------------


def _accepts(factory: Callable, name: str) -> bool:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


class SaShiMi(nn.Module):
    """SaShiMi backbone with token or real-valued inputs and per-step outputs.

    ``layer`` builds one SSM layer from its width (``layer(d_model) -> module`` following the
    layer contract of ``ssm.layers.base``), e.g. ``functools.partial(ssm.S4D, d_state=64)``;
    default ``S4`` with d_state 64. SaShiMi decides the direction: when the factory takes a
    ``bidirectional`` keyword it is called with ``bidirectional=not causal`` (overriding a value
    bound in a partial); with ``causal=True`` every layer built must report ``causal``.

    Inputs: ``vocab_size`` tokens ``(B, L)`` int64 (the default, 256 tokens, when ``d_input`` is
    None) or ``d_input`` features ``(B, L, d_input)``. ``forward(x)`` returns ``(B, L, d_output)``;
    ``forward(x, state)`` returns ``(y, next_state)``. L must be a multiple of ``prod(pool)``.
    Widths per tier: d_model * expand**k.
    """

    def __init__(
        self,
        d_model: int = 64,
        n_layers: int = 8,
        *,
        pool: Sequence[int] = (4, 4),
        expand: int = 2,
        ff: int = 2,
        layer: LayerFactory | None = None,
        causal: bool = True,
        unet: bool = False,
        dropout: float = 0.0,
        vocab_size: int | None = None,
        d_input: int | None = None,
        d_output: int = 256,
        device=None,
        dtype=None,
    ):
        super().__init__()
        name = "SaShiMi"
        pool = tuple(int(p) for p in pool)
        for arg, value, low in (("d_model", d_model, 1), ("n_layers", n_layers, 1), ("expand", expand, 1),
                                ("ff", ff, 0), ("d_output", d_output, 1)):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{name}: `{arg}` must be an integer >= {low}, got {value!r}")
        if any(p < 1 for p in pool):
            raise ValueError(f"{name}: every `pool` factor must be >= 1, got {pool}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"{name}: `dropout` must be in [0, 1), got {dropout}")
        if d_input is not None and vocab_size is not None:
            raise ValueError(f"{name}: give `vocab_size` (token inputs) or `d_input` (real features), not both")
        if d_input is None and vocab_size is None:
            vocab_size = 256
        layer = layer if layer is not None else functools.partial(S4, d_state=64)
        kw = {"device": device, "dtype": dtype}

        self.d_model, self.n_layers, self.pool, self.expand, self.ff = d_model, n_layers, pool, expand, ff
        self.unet, self.vocab_size, self.d_input, self.d_output = unet, vocab_size, d_input, d_output
        self._causal = causal
        self.period = math.prod(pool)  # samples per coarsest step

        def blocks(H: int) -> nn.ModuleList:
            out = []
            for _ in range(n_layers):
                out.append(Residual(self._build_layer(layer, H, device), H, dropout=dropout, **kw))
                if ff > 0:
                    out.append(Residual(FeedForward(H, ff, dropout=dropout, **kw), H, dropout=dropout, **kw))
            return nn.ModuleList(out)

        if vocab_size is not None:
            self.encoder = nn.Embedding(vocab_size, d_model, **kw)
        else:
            self.encoder = nn.Linear(d_input, d_model, **kw)
        tiers, H = [], d_model
        for p in pool:
            tiers.append(_Tier(
                down=blocks(H) if unet else nn.ModuleList(),
                down_pool=DownPool(H, expand, p, **kw),
                up_pool=UpPool(H, expand, p, shift=causal, **kw),
                up=blocks(H),
            ))
            H *= expand
        self.tiers = nn.ModuleList(tiers)  # finest first
        self.center = blocks(H)
        self.norm = nn.LayerNorm(d_model, **kw)
        self.decoder = nn.Linear(d_model, d_output, **kw)

    def _build_layer(self, factory: LayerFactory, H: int, device) -> nn.Module:
        module = factory(H, bidirectional=not self._causal) if _accepts(factory, "bidirectional") else factory(H)
        if self._causal and getattr(module, "causal", None) is not True:
            raise ValueError(
                f"SaShiMi: causal=True needs causal layers, but `layer` built a {type(module).__name__} with "
                f"causal={getattr(module, 'causal', 'missing')}; pass a causal layer factory or causal=False"
            )
        return module.to(device) if device is not None else module

    @property
    def causal(self) -> bool:
        return self._causal

    # -- inputs ---------------------------------------------------------------------------------

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        if self.vocab_size is not None:
            if x.dim() != 2 or x.dtype not in (torch.int32, torch.int64):
                raise ValueError(f"SaShiMi: token input must be int64 (B, L), got {x.dtype} of shape {tuple(x.shape)}")
            if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.vocab_size):
                raise ValueError(f"SaShiMi: tokens must lie in [0, vocab_size={self.vocab_size}), got range "
                                 f"[{int(x.min())}, {int(x.max())}]")
        elif x.dim() != 3 or x.shape[-1] != self.d_input:
            raise ValueError(f"SaShiMi: input must be (B, L, d_input={self.d_input}), got shape {tuple(x.shape)}")
        L = x.shape[1]
        if L == 0 or L % self.period:
            raise ValueError(
                f"SaShiMi: input length L={L} must be a positive multiple of prod(pool)={self.period} "
                f"(pool={self.pool}); pad or crop the sequence"
            )
        return self.encoder(x)  # (B, L, H)

    def _encode_step(self, x_t: torch.Tensor) -> torch.Tensor:
        if self.vocab_size is not None:
            if x_t.dim() != 1 or x_t.dtype not in (torch.int32, torch.int64):
                raise ValueError(f"SaShiMi.step: token input must be int64 (B,), got {x_t.dtype} of shape {tuple(x_t.shape)}")
        elif x_t.dim() != 2 or x_t.shape[-1] != self.d_input:
            raise ValueError(f"SaShiMi.step: input must be (B, d_input={self.d_input}), got shape {tuple(x_t.shape)}")
        return self.encoder(x_t)  # (B, H)

    # -- convolutional forward ------------------------------------------------------------------

    def forward(self, x: torch.Tensor, state: SaShiMiState | None = None):
        """``x: (B, L)`` tokens or ``(B, L, d_input)`` -> ``(B, L, d_output)``; with ``state``,
        ``(y, next_state)`` (state.t must be a multiple of prod(pool): step the remainder)."""
        h = self._encode(x)  # (B, L, H)
        if state is not None:
            self._check_state(state, h.shape[0], "forward")
            if state.t % self.period:
                raise ValueError(
                    f"SaShiMi.forward: a state can be continued by forward only at a multiple of prod(pool)="
                    f"{self.period} samples, got state.t={state.t}; use step for the remaining samples"
                )
        h, tiers, center = self._forward_tier(0, h, state)
        y = self.decoder(self.norm(h))  # (B, L, d_output)
        if state is None:
            return y
        return y, SaShiMiState(t=state.t + x.shape[1], tiers=tiers, center=center)

    @staticmethod
    def _run(blocks, h, states, *, collect=None, pop=None):
        new = []
        for i, block in enumerate(blocks):
            h, s = block(h, None if states is None else states[i])
            new.append(s)
            if collect is not None:
                collect.append(h)
            if pop is not None:
                h = h + pop.pop()
        return h, new

    def _forward_tier(self, k: int, x: torch.Tensor, state: SaShiMiState | None):
        """Tier k on its input ``x (B, L_k, H_k)`` -> (output, tier states from k on, center states)."""
        if k == len(self.tiers):
            h, center = self._run(self.center, x, None if state is None else state.center)
            return h + x, [], center
        tier, st = self.tiers[k], (None if state is None else state.tiers[k])
        skips = [x]
        h, down = self._run(tier.down, x, None if st is None else st.down, collect=skips)
        pooled = h[:, -tier.pool:]  # the last coarse step's inputs: the DownPool buffer step would hold
        z = tier.down_pool(h)  # (B, L_k/p, H_k*expand)
        z, deeper, center = self._forward_tier(k + 1, z, state)
        up, last = tier.up_pool(z, None if st is None else st.queue)  # (B, L_k, H_k)
        if self.unet:
            h, ups = self._run(tier.up, up + skips.pop(), None if st is None else st.up, pop=skips)
        else:
            u = up + x
            h, ups = self._run(tier.up, u, None if st is None else st.up)
            h = h + u
        return h, [TierState(down=down, buffer=pooled, queue=last, up=ups), *deeper], center

    # -- stepping -------------------------------------------------------------------------------

    def _refuse_noncausal(self, what: str) -> None:
        if not self._causal:
            raise ValueError(f"SaShiMi.{what}: this SaShiMi was built with causal=False (bidirectional layers, no "
                             f"UpPool shift) and cannot be stepped; build it with causal=True for generation")

    def default_state(self, batch: int, *, device=None) -> SaShiMiState:
        self._refuse_noncausal("default_state")
        device = device if device is not None else self.decoder.weight.device
        dtype = self.decoder.weight.dtype

        def states(blocks):
            return [b.default_state(batch, device=device) for b in blocks]

        tiers = []
        for tier in self.tiers:
            zeros = torch.zeros(batch, tier.pool, tier.d_model, device=device, dtype=dtype)
            tiers.append(TierState(down=states(tier.down), buffer=zeros, queue=zeros.clone(), up=states(tier.up)))
        return SaShiMiState(t=0, tiers=tiers, center=states(self.center))

    def setup_step(self) -> None:
        """Precompute every layer's discrete step matrices (after training or loading weights)."""
        self._refuse_noncausal("setup_step")
        for module in self.modules():
            if isinstance(module, Residual):
                module.setup_step()

    def _check_state(self, state, batch: int, what: str) -> None:
        self._refuse_noncausal(what)
        if not isinstance(state, SaShiMiState) or len(state.tiers) != len(self.tiers):
            raise TypeError(f"SaShiMi.{what}: `state` must be a SaShiMiState from default_state/forward/step, "
                            f"got {type(state).__name__}")
        if state.tiers and state.tiers[0].buffer.shape[0] != batch:
            raise ValueError(f"SaShiMi.{what}: state is for batch {state.tiers[0].buffer.shape[0]}, input has batch {batch}")

    def step(self, x_t: torch.Tensor, state: SaShiMiState):
        """One sample: ``x_t`` (B,) tokens or (B, d_input) -> ``(y_t (B, d_output), next_state)``.

        The coarser tiers run only on the samples that complete one of their steps; the input
        state is not modified."""
        h = self._encode_step(x_t)  # (B, H)
        self._check_state(state, h.shape[0], "step")
        h, tiers, center = self._step_tier(0, h, state.t, state)
        return self.decoder(self.norm(h)), SaShiMiState(t=state.t + 1, tiers=tiers, center=center)

    @staticmethod
    def _run_step(blocks, h, states, *, collect=None, pop=None):
        new = []
        for block, s in zip(blocks, states):
            h, s = block.step(h, s)
            new.append(s)
            if collect is not None:
                collect.append(h)
            if pop is not None:
                h = h + pop.pop()
        return h, new

    def _step_tier(self, k: int, x: torch.Tensor, t: int, state: SaShiMiState):
        """Tier k at its own time t on ``x (B, H_k)`` -> (output, tier states from k on, center states)."""
        if k == len(self.tiers):
            h, center = self._run_step(self.center, x, state.center)
            return h + x, [], center
        tier, st = self.tiers[k], state.tiers[k]
        i = t % tier.pool
        skips = [x]
        h, down = self._run_step(tier.down, x, st.down, collect=skips)
        buffer = st.buffer.clone()
        buffer[:, i] = h
        up = st.queue[:, i]  # coarse step j-1's output for this sample: the shift
        if i == tier.pool - 1:  # coarse step complete: run the coarser tiers once
            z = tier.down_pool(buffer)[:, 0]  # (B, H_k*expand)
            z, deeper, center = self._step_tier(k + 1, z, t // tier.pool, state)
            queue = tier.up_pool.project(z)  # (B, p, H_k): the next p fine steps' inputs
        else:
            deeper, center, queue = state.tiers[k + 1:], state.center, st.queue
        if self.unet:
            h, ups = self._run_step(tier.up, up + skips.pop(), st.up, pop=skips)
        else:
            u = up + x
            h, ups = self._run_step(tier.up, u, st.up)
            h = h + u
        return h, [TierState(down=down, buffer=buffer, queue=queue, up=ups), *deeper], center
