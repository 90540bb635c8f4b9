"""Dual-encoder classifier for LRA Retrieval (Tay et al., arXiv 2011.04006, Sec. 3.3): both
documents go through one shared encoder, their pooled features ``a``, ``b`` are combined as
``[a, b, a * b, a - b]`` and an MLP classifies the pair (the setup S4 uses for AAN,
arXiv 2111.00396; the feature combination follows Conneau et al.'s NLI encoder, arXiv 1705.02364).
"""

from __future__ import annotations

import torch
from torch import nn

from ..checks import check_choice


class RetrievalClassifier(nn.Module):
    """``forward(x: (B, 2, L), lengths: (B, 2) | None) -> logits (B, n_classes)``.

    ``encoder`` maps tokens ``(B', L)`` (and ``lengths=(B',)``) to pooled features ``(B', d_model)``,
    e.g. ``SequenceModel(None, d_model, ..., vocab_size=V, pool="mean")``: its masked mean pooling
    ignores the padding, and its ``decoder`` (``d_output = d_model``) acts as a projection. Both
    documents are encoded in one batch of ``2B``.
    """

    def __init__(self, encoder: nn.Module, d_model: int, n_classes: int = 2, *, d_hidden: int | None = None,
                 activation: str = "gelu", dropout: float = 0.0):
        super().__init__()
        check_choice("RetrievalClassifier", "activation", activation, ("gelu", "relu"))
        if getattr(encoder, "pool", "mean") == "none":
            raise ValueError("RetrievalClassifier: `encoder` must pool over length (e.g. SequenceModel(pool='mean')), got pool='none'")
        d_out = getattr(encoder, "d_output", d_model)
        if d_out != d_model:
            raise ValueError(f"RetrievalClassifier: `d_model`={d_model} must equal the encoder's output size ({d_out})")
        if n_classes < 2:
            raise ValueError(f"RetrievalClassifier: `n_classes` must be >= 2, got {n_classes}")
        d_hidden = d_hidden or d_model
        self.encoder, self.d_model, self.n_classes = encoder, d_model, n_classes
        self.head = nn.Sequential(
            nn.Linear(4 * d_model, d_hidden), nn.GELU() if activation == "gelu" else nn.ReLU(),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(), nn.Linear(d_hidden, n_classes),
        )

    def encode(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled features ``(a, b)``, each (B, d_model)."""
        if x.dim() != 3 or x.shape[1] != 2:
            raise ValueError(f"RetrievalClassifier: `x` must be (B, 2, L) token pairs, got shape {tuple(x.shape)}")
        B, _, L = x.shape
        flat_lengths = None
        if lengths is not None:
            if lengths.shape != (B, 2):
                raise ValueError(f"RetrievalClassifier: `lengths` must be (B, 2) = ({B}, 2), got {tuple(lengths.shape)}")
            flat_lengths = lengths.reshape(2 * B)  # (2B,) in the order of x.reshape
        h = self.encoder(x.reshape(2 * B, L), lengths=flat_lengths)  # (2B, d_model)
        h = h.reshape(B, 2, self.d_model)
        return h[:, 0], h[:, 1]

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        a, b = self.encode(x, lengths)
        return self.head(torch.cat([a, b, a * b, a - b], dim=-1))  # (B, n_classes)
