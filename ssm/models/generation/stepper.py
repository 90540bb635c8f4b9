"""Steppers: whole-model autoregressive stepping, one sample per call.

``FastStepper`` computes ``SaShiMi.step`` with far fewer operations (see the package docstring):
per pooling level a down tier, a buffer of the last p inputs and the queue of the coarser level's
outputs, an up tier, and the U-Net skips. ``ReferenceStepper`` calls ``model.step`` once per
sample, for any causal model with the stepping contract; it is what the fast one is tested against.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.nn import functional as F

from ...ops import _dispatch
from ..sashimi import SaShiMi, SaShiMiState, TierState
from .tiers import FastTier, ModuleTier, _t, fused_chain_reason, make_tier


@dataclasses.dataclass
class PoolLevel:
    """What ``FastStepper`` keeps for one pooling level of the U-Net."""

    p: int  # pooling factor
    H: int  # width
    stride: int  # samples per step of this level
    down: FastTier | ModuleTier | None
    up: FastTier | ModuleTier | None
    Wd: torch.Tensor  # down-pool linear, transposed
    bd: torch.Tensor
    Wu: torch.Tensor  # up-pool linear, transposed
    bu: torch.Tensor
    buf: torch.Tensor  # (B, p, H): this coarse step's inputs so far
    queue: torch.Tensor  # (B, p, H): the coarser level's outputs, shifted by one coarse step
    skips: list[torch.Tensor] | None  # U-Net skips (unet only)
    collect: list[torch.Tensor] | None = None
    add: list[torch.Tensor] | None = None


class FastStepper:
    """Whole-SaShiMi stepping with precomputed step forms and preallocated, in-place state.

    ``FastStepper(model, batch)`` snapshots the model's (eval-mode) weights: rebuild it after the
    weights change. ``reset(state=None)`` starts from zeros or from a ``SaShiMiState`` (e.g. from
    ``model(prompt, state)``); ``step(x_t)`` takes (B,) tokens or (B, d_input) and returns the
    logits (B, d_output) in a buffer that the next step overwrites; ``export_state()`` returns the
    equivalent ``SaShiMiState``. Dropout is not applied (inference).

    ``dtype`` is the working precision (float32, or float64 for checks); ``chunk`` is T, the
    number of steps per batched state update of the S4/S4D/S4-PTD banks (see ``ChannelBank``;
    1 = update every step); ``compile`` wraps each tier's chain in ``torch.compile`` (measured on
    2 CPU cores: ~70 s to compile for ~10% faster steps); ``cuda_graph`` (CUDA only, every tier on
    the batched path) captures one graph per phase t mod prod(pool) and replays it (it forces
    chunk=1 so that a phase fixes all control flow). The CUDA-graph path is written for, but was
    not run on, a GPU. ``backend``: ``"auto"`` uses the compiled CPU ops (``ssm.residual_chain``,
    ``ssm.siso_bank_*``) when the model is on CPU, ``compile`` is off and the compiled library is
    loaded, else the PyTorch path; ``"cpp"`` insists on the compiled ops (and says why it cannot);
    ``"torch"`` is the PyTorch path. ``SSM_BACKEND`` applies as for the other ops.
    """

    def __init__(self, model: SaShiMi, batch: int, *, dtype: torch.dtype = torch.float32, chunk: int = 8,
                 compile: bool = False, cuda_graph: bool = False, backend: str = "auto"):
        if not isinstance(model, SaShiMi):
            raise TypeError(f"FastStepper: `model` must be a SaShiMi, got {type(model).__name__}")
        if not model.causal:
            raise ValueError("FastStepper: a SaShiMi built with causal=False cannot be stepped")
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"FastStepper: `dtype` must be torch.float32 or torch.float64, got {dtype}")
        if batch < 1:
            raise ValueError(f"FastStepper: `batch` must be >= 1, got {batch}")
        if chunk < 1:
            raise ValueError(f"FastStepper: `chunk` must be >= 1, got {chunk}")
        chunk = 1 if cuda_graph else chunk
        device = model.decoder.weight.device  # the stepper runs where the model lives
        if cuda_graph and device.type != "cuda":
            raise ValueError(f"FastStepper: cuda_graph=True needs a model on a CUDA device, got {device}")
        self.model, self.batch, self.dtype, self.device = model, batch, dtype, device
        self.unet, self.period = model.unet, model.period
        self.backend = _dispatch.choose("FastStepper", backend, {"cpp": fused_chain_reason, "torch": lambda *a: None},
                                        model, device, dtype, compile)
        fused = self.backend == "cpp"
        kw = {"dtype": dtype, "device": device}
        with torch.inference_mode():
            model.setup_step()
            self.tokens = model.vocab_size is not None
            self.W_enc = _t(model.encoder.weight if self.tokens else model.encoder.weight.t(), **kw)
            self.b_enc = None if self.tokens else _t(model.encoder.bias, **kw)
            self.tiers = []
            stride = 1
            for tier in model.tiers:
                p, H = tier.pool, tier.d_model
                nb = len(tier.down)
                spec = PoolLevel(
                    p=p, H=H, stride=stride,
                    down=make_tier(tier.down, batch, dtype, device, compile, chunk, fused),
                    up=make_tier(tier.up, batch, dtype, device, compile, chunk, fused),
                    Wd=_t(tier.down_pool.linear.weight.t(), **kw), bd=_t(tier.down_pool.linear.bias, **kw),
                    Wu=_t(tier.up_pool.linear.weight.t(), **kw), bu=_t(tier.up_pool.linear.bias, **kw),
                    buf=torch.zeros(batch, p, H, **kw), queue=torch.zeros(batch, p, H, **kw),
                    skips=[torch.zeros(batch, H, **kw) for _ in range(nb + 1)] if self.unet else None,
                )
                if self.unet:
                    spec.collect = spec.skips[1:]
                    spec.add = spec.skips[-2::-1]  # the up path takes the skips back in reverse
                self.tiers.append(spec)
                stride *= p
            self.center = make_tier(model.center, batch, dtype, device, compile, chunk, fused)
            self.ln = (_t(model.norm.weight, **kw), _t(model.norm.bias, **kw), model.norm.eps, (model.d_model,))
            self.W_dec, self.b_dec = _t(model.decoder.weight.t(), **kw), _t(model.decoder.bias, **kw)
            self.out = torch.zeros(batch, model.d_output, **kw)
        self.t = 0
        self._graphs = None
        if cuda_graph:
            everything = [s.up for s in self.tiers] + [s.down for s in self.tiers] + [self.center]
            if not all(t is None or t.fast for t in everything):
                raise ValueError("FastStepper: cuda_graph=True needs every tier on the batched path (S4, S4D, "
                                 "S4PTD or S5 layers); this model has layers that step through their own modules")
            self._capture()

    # -- the step ---------------------------------------------------------------------------------

    def _encode(self, x_t: torch.Tensor) -> torch.Tensor:
        if self.tokens:
            return F.embedding(x_t, self.W_enc)  # (B, H)
        return torch.addmm(self.b_enc, x_t.to(self.dtype), self.W_enc)

    def _tier_step(self, k: int, x: torch.Tensor, phase: int) -> torch.Tensor:
        if k == len(self.tiers):
            return self.center.run(x) + x
        s = self.tiers[k]
        i = (phase // s.stride) % s.p  # position in this tier's coarse step
        if self.unet:
            s.skips[0].copy_(x)
            h = s.down.run(x, collect=s.collect)
        else:
            h = x
        s.buf[:, i].copy_(h)
        u = s.queue[:, i] + h  # the queue still holds the previous coarse step: the shift
        if i == s.p - 1:
            z = torch.addmm(s.bd, s.buf.view(self.batch, s.p * s.H), s.Wd)  # (B, H*expand)
            z = self._tier_step(k + 1, z, phase)
            torch.addmm(s.bu, z, s.Wu, out=s.queue.view(self.batch, s.p * s.H))
        if self.unet:
            return s.up.run(u, add=s.add)
        return s.up.run(u) + u

    def _step_phase(self, phase: int, x_t: torch.Tensor) -> torch.Tensor:
        h = self._tier_step(0, self._encode(x_t), phase)
        w, b, eps, shape = self.ln
        return torch.addmm(self.b_dec, F.layer_norm(h, shape, w, b, eps), self.W_dec, out=self.out)

    def step(self, x_t: torch.Tensor) -> torch.Tensor:
        """One sample for the whole batch; returns the logits buffer (B, d_output)."""
        phase = self.t % self.period
        if self._graphs is not None:
            self._static_in.copy_(x_t)
            self._graphs[phase].replay()
        else:
            # On CPU, oneDNN's per-call setup costs several times the arithmetic of GELU on a
            # (B, H) tensor; ATen's own kernels serve these small ops faster (the setting is
            # restored after the step).
            onednn = torch.backends.mkldnn.enabled
            torch.backends.mkldnn.enabled = self.device.type != "cpu" and onednn
            try:
                with torch.inference_mode():
                    self._step_phase(phase, x_t)
            finally:
                torch.backends.mkldnn.enabled = onednn
        self.t += 1
        return self.out

    # -- state ------------------------------------------------------------------------------------

    def _all_tiers(self) -> list:
        return [t for t in [self.center] + [s.up for s in self.tiers] + [s.down for s in self.tiers] if t is not None]

    def _tensors(self) -> list[torch.Tensor]:
        """Every persistent buffer (what a CUDA-graph warm-up must leave as it found)."""
        out = [self.out]
        for s in self.tiers:
            out += [s.buf, s.queue] + (s.skips or [])
        for tier in self._all_tiers():
            out += tier.bank.tensors()
        return out

    def reset(self, state: SaShiMiState | None = None) -> None:
        """Start from zeros, or from a model state (any t; e.g. after ``model(prompt, state)``)."""
        with torch.inference_mode():
            if state is None:
                for s in self.tiers:
                    for t in [s.buf, s.queue] + (s.skips or []):
                        t.zero_()
                for tier in self._all_tiers():
                    tier.zero()
                self.t = 0
                return
            self.model._check_state(state, self.batch, "FastStepper.reset")
            for s, st in zip(self.tiers, state.tiers):
                s.buf.copy_(st.buffer)
                s.queue.copy_(st.queue)
                if s.down is not None:
                    s.down.load(st.down)
                s.up.load(st.up)
            self.center.load(state.center)
            self.t = state.t

    def export_state(self) -> SaShiMiState:
        """The model-format state after the samples stepped so far."""
        def ex(tier, blocks):
            return [] if tier is None else tier.export([b.stateful for b in blocks])

        dt = self.model.decoder.weight.dtype
        tiers = [TierState(down=ex(s.down, m.down), buffer=s.buf.to(dt).clone(), queue=s.queue.to(dt).clone(),
                           up=ex(s.up, m.up)) for s, m in zip(self.tiers, self.model.tiers)]
        return SaShiMiState(t=self.t, tiers=tiers, center=ex(self.center, self.model.center))

    # -- CUDA graphs ------------------------------------------------------------------------------

    def _capture(self) -> None:
        """One CUDA graph per phase. Warm-up runs mutate the state, so it is saved and restored."""
        shape = (self.batch,) if self.tokens else (self.batch, self.model.d_input)
        self._static_in = torch.zeros(shape, dtype=torch.long if self.tokens else self.dtype, device=self.device)
        with torch.inference_mode():
            saved = [t.clone() for t in self._tensors()]
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for phase in range(self.period):
                    self._step_phase(phase, self._static_in)
            torch.cuda.current_stream().wait_stream(stream)
            pool = torch.cuda.graph_pool_handle()
            graphs = []
            for phase in range(self.period):
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g, pool=pool):
                    self._step_phase(phase, self._static_in)
                graphs.append(g)
            for t, s in zip(self._tensors(), saved):
                t.copy_(s)
        self._graphs = graphs


class ReferenceStepper:
    """``model.step`` once per sample, for any causal model with the stepping contract."""

    def __init__(self, model, batch: int, state=None):
        model.setup_step()
        self.model = model
        self.state = state if state is not None else model.default_state(batch)

    def step(self, x_t: torch.Tensor) -> torch.Tensor:
        y, self.state = self.model.step(x_t, self.state)
        return y


def make_stepper(model: nn.Module, batch: int, *, fast: bool = True, compile: bool = False, cuda_graph: bool = False,
                 backend: str = "auto", state=None):
    """The stepper ``sample`` uses, ready to step from ``state`` (None = zeros): ``FastStepper``
    when ``fast``, else ``model.step`` once per sample. Call under ``torch.inference_mode``."""
    if not fast:
        return ReferenceStepper(model, batch, state)
    stepper = FastStepper(model, batch, compile=compile, cuda_graph=cuda_graph, backend=backend)
    stepper.reset(state)
    return stepper
