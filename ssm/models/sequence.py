"""Residual backbone: encoder -> n_layers x [norm, SSM layer, dropout, residual (+ FFN)] -> head.

The deep SSM stack of S4 (arXiv 2111.00396 App. D.2) and its successors, usable on its own:
``SequenceModel(d_input, d_output, ...)(x)`` with ``x: (B, L, d_input)`` returns
``(B, d_output)`` for a pooled head, or ``(B, L, d_output)`` for per-step outputs. Causal
stacks step like every layer (``setup_step`` / ``default_state`` / ``step``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from ..checks import check_choice, check_rate
from ..layers.base import length_mask

Norm = Literal["layer", "batch", "none"]
Pool = Literal["mean", "last", "none"]
LayerFactory = Callable[[int], nn.Module]


class _BatchNorm(nn.Module):
    """BatchNorm over channels for (B, L, H) tensors (what S4's LRA configs and S5 use)."""

    def __init__(self, d: int):
        super().__init__()
        self.norm = nn.BatchNorm1d(d)

    def forward(self, x):
        if x.dim() == 2:  # (B, H): one step
            return self.norm(x)
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


def _norm(kind: str, d: int) -> nn.Module:
    return {"layer": lambda: nn.LayerNorm(d), "batch": lambda: _BatchNorm(d), "none": nn.Identity}[kind]()


class ResidualBlock(nn.Module):
    """x + dropout(layer(norm(x))) (prenorm) or norm(x + dropout(layer(x))) (postnorm), then an FFN."""

    def __init__(self, layer: nn.Module, d_model: int, *, norm: Norm, prenorm: bool, dropout: float, ffn: int):
        super().__init__()
        self.layer, self.prenorm = layer, prenorm
        self.norm = _norm(norm, d_model)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.ffn = None
        if ffn:
            self.ffn_norm = _norm(norm, d_model)
            self.ffn = nn.Sequential(
                nn.Linear(d_model, ffn * d_model), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn * d_model, d_model)
            )

    def _mix(self, x, y_fn):
        if self.prenorm:
            y, state = y_fn(self.norm(x))
            return x + self.drop(y), state
        y, state = y_fn(x)
        return self.norm(x + self.drop(y)), state

    def _ff(self, x):
        if self.ffn is None:
            return x
        return x + self.drop(self.ffn(self.ffn_norm(x))) if self.prenorm else self.ffn_norm(x + self.drop(self.ffn(x)))

    def forward(self, x, state=None, lengths=None, rate: float = 1.0):
        if rate == 1.0:  # (a custom layer need not know about rate)
            x, state = self._mix(x, lambda h: self.layer(h, state, lengths=lengths))
        else:
            x, state = self._mix(x, lambda h: self.layer(h, state, lengths=lengths, rate=rate))
        return self._ff(x), state

    def step(self, x, state):
        x, state = self._mix(x, lambda h: self.layer.step(h, state))
        return self._ff(x), state


class SequenceModel(nn.Module):
    """Encoder, ``n_layers`` residual SSM blocks, final norm, pooling and decoder.

    ``layer`` builds one SSM layer from ``d_model`` (e.g. ``functools.partial(ssm.S4D,
    d_state=64, bidirectional=True)``; Hydra configs pass a ``_partial_`` node). ``d_input=None``
    with ``vocab_size`` uses an embedding for integer tokens instead of a linear encoder.
    ``rate`` (default 1) is passed to every layer's forward and ``setup_step``: the timestep is
    scaled by it, so a model trained on signals at one sampling rate runs on signals sampled
    ``rate`` times more coarsely (``model.rate = 2`` for 16 kHz -> 8 kHz; a ``rate=`` argument
    to ``forward`` overrides it for one call).
    """

    def __init__(
        self,
        d_input: int | None,
        d_output: int,
        d_model: int = 128,
        n_layers: int = 4,
        *,
        layer: LayerFactory,
        vocab_size: int | None = None,
        norm: Norm = "layer",
        prenorm: bool = True,
        dropout: float = 0.0,
        ffn: int = 0,
        pool: Pool = "mean",
        rate: float = 1.0,
    ):
        super().__init__()
        self.rate = check_rate("SequenceModel", rate)
        check_choice("SequenceModel", "norm", norm, Norm)
        check_choice("SequenceModel", "pool", pool, Pool)
        if (d_input is None) == (vocab_size is None):
            raise ValueError("SequenceModel: give exactly one of `d_input` (real features) or `vocab_size` (tokens)")
        if n_layers < 1 or d_model < 1:
            raise ValueError(f"SequenceModel: `n_layers` and `d_model` must be >= 1, got {n_layers}, {d_model}")
        self.d_input, self.d_output, self.d_model, self.pool = d_input, d_output, d_model, pool
        self.encoder = nn.Embedding(vocab_size, d_model) if vocab_size is not None else nn.Linear(d_input, d_model)
        self.blocks = nn.ModuleList(
            ResidualBlock(layer(d_model), d_model, norm=norm, prenorm=prenorm, dropout=dropout, ffn=ffn) for _ in range(n_layers)
        )
        self.final_norm = _norm(norm, d_model) if prenorm else nn.Identity()
        self.decoder = nn.Linear(d_model, d_output)

    @property
    def causal(self) -> bool:
        return all(getattr(b.layer, "causal", False) for b in self.blocks)

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.encoder, nn.Embedding):
            if x.dtype not in (torch.int32, torch.int64):
                raise TypeError(f"SequenceModel: token inputs must be int64 (B, L), got {x.dtype}")
            return self.encoder(x)
        if x.dim() != 3 or x.shape[-1] != self.d_input:
            raise ValueError(f"SequenceModel: input must be (B, L, d_input={self.d_input}), got shape {tuple(x.shape)}")
        return self.encoder(x)

    def features(self, x: torch.Tensor, state=None, *, lengths: torch.Tensor | None = None, rate: float | None = None):
        """(B, L, d_model) features before pooling, and the per-block states."""
        rate = self.rate if rate is None else check_rate("SequenceModel", rate)
        h = self._encode(x)  # (B, L, H)
        if lengths is not None:  # padding is zero from here on (a select: NaN/Inf in it stay out)
            h = torch.where(length_mask("SequenceModel", lengths, h.shape[0], h.shape[1], h.device)[..., None], h, 0.0)
        states = []
        for i, block in enumerate(self.blocks):
            h, s = block(h, None if state is None else state[i], lengths, rate)
            states.append(s)
        return self.final_norm(h), (states if state is not None else None)

    def forward(self, x: torch.Tensor, state=None, *, lengths: torch.Tensor | None = None, rate: float | None = None):
        """Pooled ``(B, d_output)`` when ``pool != "none"``, else ``(B, L, d_output)``.

        Returns only the output when ``state`` is None, else ``(output, next_state)``."""
        h, next_state = self.features(x, state, lengths=lengths, rate=rate)
        if self.pool == "mean":
            if lengths is None:
                h = h.mean(1)
            else:
                mask = length_mask("SequenceModel", lengths, h.shape[0], h.shape[1], h.device).unsqueeze(-1)  # (B, L, 1)
                h = torch.where(mask, h, 0.0).sum(1) / mask.sum(1)
        elif self.pool == "last":
            h = h[:, -1] if lengths is None else h[torch.arange(h.shape[0]), lengths.to(h.device) - 1]
        y = self.decoder(h)
        return y if state is None else (y, next_state)

    # -- stepping (causal stacks) --------------------------------------------------------------

    def default_state(self, batch: int, *, device=None):
        return [b.layer.default_state(batch, device=device) for b in self.blocks]

    def setup_step(self, rate: float | None = None) -> None:
        rate = self.rate if rate is None else check_rate("SequenceModel", rate)
        for b in self.blocks:
            b.layer.setup_step() if rate == 1.0 else b.layer.setup_step(rate)

    def step(self, x_t: torch.Tensor, state):
        """One step: ``x_t`` (B, d_input) or (B,) tokens -> per-step output (B, d_output)."""
        if self.pool != "none":
            raise ValueError("SequenceModel.step needs pool='none' (a per-step head)")
        h = self.encoder(x_t)
        new_state = []
        for block, s in zip(self.blocks, state):
            h, s = block.step(h, s)
            new_state.append(s)
        return self.decoder(self.final_norm(h)), new_state
