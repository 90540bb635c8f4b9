"""Tiers: a run of SaShiMi residual blocks at one width, stepped one sample at a time.

``FastTier`` keeps its SSM layers' state work in a bank (``ssm.models.generation.banks``) and runs
only the depth-sequential chain per sample: per block a layer norm, then either the SSM layer's
``d * u`` plus its state part, activation and output map, or the feed-forward block, and the
residual add. The chain is a Python loop over a plan of named per-block records, or one call of
the compiled ``ssm.ops.step.residual_chain`` (``fused``). ``ModuleTier`` is the generic path:
each block's own ``step`` (any layer that honours the stepping contract).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from ...layers.base import _ACTIVATIONS, SSMBlock
from ...ops import _dispatch
from ...ops import step as step_ops
from ..sashimi import Residual, SaShiMi
from .banks import bank_for


class SSMBlockPlan(NamedTuple):
    """A prenorm SSM block: x + final(act(y_state + d * u)), u = layer_norm(x)."""

    norm_shape: tuple[int]
    norm_weight: torch.Tensor
    norm_bias: torch.Tensor
    eps: float
    layer: int  # index of the layer in the tier's bank
    d: torch.Tensor  # (H,) per-channel skip, or (H, H) for a MIMO core
    W: torch.Tensor | None  # output map, transposed for addmm; None for final="identity"
    bias: torch.Tensor | None


class FeedForwardPlan(NamedTuple):
    """A prenorm feed-forward block: x + W2 gelu(W1 layer_norm(x) + b1) + b2."""

    norm_shape: tuple[int]
    norm_weight: torch.Tensor
    norm_bias: torch.Tensor
    eps: float
    W1: torch.Tensor  # (H, F), transposed for addmm
    b1: torch.Tensor
    W2: torch.Tensor  # (F, H)
    b2: torch.Tensor


def fused_chain_reason(model: SaShiMi, device: torch.device, dtype: torch.dtype, compile: bool) -> str | None:
    """Why the compiled ``ssm.residual_chain`` cannot run this stepper's tiers, or None."""
    if device.type != "cpu":
        return f"the fused residual chain is CPU-only (the model is on {device})"
    if compile:
        return "compile=True traces the Python chain"
    acts = {b.f.activation for b in model.modules() if isinstance(b, Residual) and isinstance(b.f, SSMBlock)}
    if not acts <= set(step_ops.ACTIVATIONS):
        return f"activation {sorted(acts - set(step_ops.ACTIVATIONS))} has no fused kernel"
    return _dispatch.compiled("cpu", "cpu", [torch.empty(0, dtype=dtype, device=device)],
                              dtypes=(torch.float32, torch.float64))


def _t(w: torch.Tensor, dtype, device) -> torch.Tensor:
    return w.detach().to(device=device, dtype=dtype).contiguous()


def _final_of(block: SSMBlock) -> str:
    return "glu" if isinstance(block.out, nn.Sequential) else "linear" if isinstance(block.out, nn.Linear) else "identity"


class FastTier:
    """Residual blocks of one width with their SSM layers' state work batched in a bank."""

    fast = True

    def __init__(self, blocks: list[Residual], batch: int, dtype, device, compile: bool, chunk: int, fused: bool):
        bank_cls = bank_for(blocks)
        ssm_layers = [b.f for b in blocks if b.stateful]
        self.bank = bank_cls([m.core for m in ssm_layers], batch, dtype, device, chunk, fused)
        first = ssm_layers[0]
        self.act = _ACTIVATIONS[first.activation]
        self.final = _final_of(first)
        self.plan: list[SSMBlockPlan | FeedForwardPlan] = []
        i = 0
        for b in blocks:
            norm = ((b.norm.normalized_shape[0],), _t(b.norm.weight, dtype, device), _t(b.norm.bias, dtype, device), b.norm.eps)
            if b.stateful:
                lin = b.f.out[0] if self.final == "glu" else b.f.out
                W, bias = (None, None) if self.final == "identity" else (_t(lin.weight.t(), dtype, device), _t(lin.bias, dtype, device))
                self.plan.append(SSMBlockPlan(*norm, layer=i, d=self.bank.deff[i], W=W, bias=bias))
                i += 1
            else:
                f = b.f
                self.plan.append(FeedForwardPlan(*norm, W1=_t(f.fc1.weight.t(), dtype, device), b1=_t(f.fc1.bias, dtype, device),
                                                 W2=_t(f.fc2.weight.t(), dtype, device), b2=_t(f.fc2.bias, dtype, device)))
        self.chain = torch.compile(self._chain, dynamic=False) if compile else self._chain
        self.fused = None
        if fused:  # the same plan, flattened for ssm.ops.step.residual_chain
            params, kinds, eps = [], [], []
            for p in self.plan:
                eps.append(p.eps)
                if isinstance(p, SSMBlockPlan):
                    kinds.append("channel_ssm" if self.bank.siso else "dense_ssm")
                    empty = p.norm_weight.new_empty(0)
                    params += [p.norm_weight, p.norm_bias, p.d, empty if p.W is None else p.W, empty if p.bias is None else p.bias]
                else:
                    kinds.append("feed_forward")
                    params += [p.norm_weight, p.norm_bias, p.W1, p.b1, p.W2, p.b2]
            self.fused = (params, kinds, eps, first.activation, self.final)

    def _chain(self, x: torch.Tensor, slots, collect, add) -> torch.Tensor:
        """The depth-sequential part; ``slots[i] = (y_state, u_slot)`` views of layer i's bank rows."""
        siso, act, final = self.bank.siso, self.act, self.final
        layer_norm, addmm = torch.layer_norm, torch.addmm
        for j, p in enumerate(self.plan):
            h = layer_norm(x, p.norm_shape, p.norm_weight, p.norm_bias, p.eps)  # (B, H)
            if isinstance(p, SSMBlockPlan):
                sy, u = slots[p.layer]
                y = torch.addcmul(sy, p.d, h) if siso else addmm(sy, h, p.d)
                u.copy_(h)  # after y: in per-channel banks the input's slot is where sy was
                y = act(y)
                if final == "glu":
                    y = F.glu(addmm(p.bias, y, p.W), -1)
                elif final == "linear":
                    y = addmm(p.bias, y, p.W)
                x = x + y
            else:
                x = addmm(x, F.gelu(addmm(p.b1, h, p.W1)), p.W2).add_(p.b2)
            if collect is not None:
                collect[j].copy_(x)
            if add is not None:
                x = x + add[j]
        return x

    def run(self, x: torch.Tensor, collect=None, add=None) -> torch.Tensor:
        slots = self.bank.begin()
        if self.fused is not None:
            params, kinds, eps, act, final = self.fused
            ys, us = self.bank.slot_lists[self.bank.j]
            x = step_ops.residual_chain(x, params, ys, us, kinds, eps, act, final, collect or (), add or ())
        else:
            x = self.chain(x, slots, collect, add)
        self.bank.end()
        return x

    def zero(self) -> None:
        self.bank.zero()

    def load(self, states: list) -> None:
        self.bank.load([s for s in states if s is not None])

    def export(self, stateful: list[bool]) -> list:
        it = iter(self.bank.export())
        return [next(it) if st else None for st in stateful]


class ModuleTier:
    """Generic path: the blocks' own ``step`` (any layer honouring the contract)."""

    fast = False

    def __init__(self, blocks: list[Residual], batch: int, dtype, device, compile: bool, chunk: int, fused: bool):
        self.blocks, self.batch, self.device, self.dtype = blocks, batch, device, dtype
        self.module_dtype = blocks[0].norm.weight.dtype
        self.states = [b.default_state(batch, device=device) for b in blocks]

    def run(self, x: torch.Tensor, collect=None, add=None) -> torch.Tensor:
        for j, b in enumerate(self.blocks):
            x, self.states[j] = b.step(x.to(self.module_dtype), self.states[j])
            x = x.to(self.dtype)
            if collect is not None:
                collect[j].copy_(x)
            if add is not None:
                x = x + add[j]
        return x

    def zero(self) -> None:
        self.states = [b.default_state(self.batch, device=self.device) for b in self.blocks]

    def load(self, states: list) -> None:
        self.states = list(states)

    def export(self, stateful: list[bool]) -> list:
        return list(self.states)


def make_tier(blocks, batch, dtype, device, compile, chunk, fused) -> FastTier | ModuleTier | None:
    """The batched tier when ``bank_for`` has a bank for these blocks, else the generic one."""
    blocks = list(blocks)
    if not blocks:
        return None
    cls = FastTier if bank_for(blocks) is not None else ModuleTier
    return cls(blocks, batch, dtype, device, compile, chunk, fused)
