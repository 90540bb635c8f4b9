"""Sampling: temperature and nucleus draws, prompt continuation, and the exact log-likelihood of
each sampled sequence under the model (SaShiMi ranks its samples by it, arXiv 2202.09729)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ..sashimi import SaShiMi
from .stepper import make_stepper


def sample_token(logits: torch.Tensor, *, temperature: float = 1.0, top_p: float = 1.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one token per row of ``logits (B, V)`` -> (B,) int64.

    Temperature first, then the nucleus: keep the most probable tokens until their mass reaches
    ``top_p`` (the first is always kept, so a tiny top_p is greedy), renormalise, and invert the CDF
    at one uniform per row from ``generator``. ``temperature=0`` is greedy (no draw)."""
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)  # (B, V)
    order = None
    if top_p < 1.0:
        probs, order = probs.sort(dim=-1, descending=True)
        keep = (probs.cumsum(-1) - probs) < top_p  # mass before this token still short of top_p
        probs = probs * keep
    cdf = probs.cumsum(-1)  # (B, V)
    device = generator.device if generator is not None else logits.device
    u = torch.rand(logits.shape[0], 1, generator=generator, device=device).to(cdf.device) * cdf[:, -1:]
    j = torch.searchsorted(cdf, u, right=True).clamp_(max=logits.shape[-1] - 1)  # (B, 1)
    return (order.gather(-1, j) if order is not None else j).squeeze(-1)


def sample(
    model: nn.Module,
    n_samples: int,
    length: int,
    *,
    temperature: float = 1.0,
    top_p: float = 1.0,
    prompt: torch.Tensor | None = None,
    start_token: int | None = None,
    generator: torch.Generator | None = None,
    fast: bool = True,
    compile: bool = False,
    cuda_graph: bool = False,
    backend: str = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample token sequences autoregressively -> ``(tokens (B, length) int64, log_likelihood (B,) float64)``.

    ``tokens`` holds the whole sequence: the prompt (P tokens; without one, a single
    ``start_token``, default ``vocab_size // 2``, the mu-law zero level) followed by ``length - P``
    sampled tokens. ``log_likelihood`` is the exact log-probability of the sampled part given the
    prompt under the model itself, i.e. the sum over sampled tokens of log-softmax of the
    untempered, untruncated logits; ``temperature`` and ``top_p`` shape only the draws. (SaShiMi
    ranks samples by this quantity.)

    ``model``: a causal model with token inputs and the stepping contract (``SaShiMi``, or a
    ``SequenceModel`` with ``pool='none'`` for ``fast=False``); its ``d_output`` logits index the
    vocabulary. ``fast=True`` steps with ``FastStepper`` (SaShiMi only); ``fast=False`` calls
    ``model.step`` per sample (the reference). ``backend`` picks ``FastStepper``'s kernels for
    its residual chains and S4 state banks (``"auto"``: the compiled CPU ops on CPU when the
    library is there, else ``"torch"``, the PyTorch versions). A SaShiMi prompt runs through the convolutional
    forward for its largest multiple of prod(pool) strictly before the last prompt token and is
    stepped for the rest. ``generator`` drives every draw, so both paths give the same samples.
    ``progress(t, length)`` is called after each position. The model is put in eval mode for
    the call (and restored).
    """
    if not getattr(model, "causal", False):
        raise ValueError(f"sample: `model` must be causal (got {type(model).__name__} with causal="
                         f"{getattr(model, 'causal', 'missing')})")
    encoder = getattr(model, "encoder", None)
    if not isinstance(encoder, nn.Embedding):
        raise TypeError("sample: `model` must take tokens (an nn.Embedding encoder, e.g. SaShiMi(vocab_size=...))")
    vocab = encoder.num_embeddings
    d_output = getattr(model, "d_output", None)
    if d_output != vocab:
        raise ValueError(f"sample: the model's d_output ({d_output}) must equal its vocabulary ({vocab}) to feed samples back")
    if fast and not isinstance(model, SaShiMi):
        raise ValueError(f"sample: fast=True steps SaShiMi models only; use fast=False for {type(model).__name__}")
    if not (isinstance(temperature, (int, float)) and temperature >= 0 and math.isfinite(temperature)):
        raise ValueError(f"sample: `temperature` must be a finite number >= 0 (0 = greedy), got {temperature!r}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"sample: `top_p` must be in (0, 1], got {top_p!r}")
    if n_samples < 1:
        raise ValueError(f"sample: `n_samples` must be >= 1, got {n_samples}")
    device = encoder.weight.device
    if prompt is None:
        start = vocab // 2 if start_token is None else int(start_token)
        if not 0 <= start < vocab:
            raise ValueError(f"sample: `start_token` must be in [0, {vocab}), got {start}")
        prompt = torch.full((n_samples, 1), start, dtype=torch.long)
    else:
        if start_token is not None:
            raise ValueError("sample: give `prompt` or `start_token`, not both")
        if prompt.dim() != 2 or prompt.shape[1] < 1 or prompt.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"sample: `prompt` must be int64 (B, P) with P >= 1, got {prompt.dtype} {tuple(prompt.shape)}")
        if prompt.shape[0] not in (1, n_samples):
            raise ValueError(f"sample: `prompt` batch {prompt.shape[0]} must be 1 or n_samples={n_samples}")
        if int(prompt.min()) < 0 or int(prompt.max()) >= vocab:
            raise ValueError(f"sample: prompt tokens must lie in [0, {vocab})")
        prompt = prompt.long().expand(n_samples, -1)
    P = prompt.shape[1]
    if length < P:
        raise ValueError(f"sample: `length` ({length}) must be at least the prompt length ({P})")

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            tokens = torch.empty(n_samples, length, dtype=torch.long, device=device)
            tokens[:, :P] = prompt.to(device)
            state, done = None, 0
            period = getattr(model, "period", 0)
            if isinstance(model, SaShiMi) and P - 1 >= period:
                done = (P - 1) // period * period
                _, state = model(tokens[:, :done], model.default_state(n_samples))
            stepper = make_stepper(model, n_samples, fast=fast, compile=compile, cuda_graph=cuda_graph, backend=backend,
                                   state=state)
            for t in range(done, P):
                logits = stepper.step(tokens[:, t])
            ll = torch.zeros(n_samples, dtype=torch.float64, device=device)
            for t in range(P, length):
                tok = sample_token(logits, temperature=temperature, top_p=top_p, generator=generator)
                ll += torch.log_softmax(logits.float(), -1).gather(-1, tok[:, None]).squeeze(-1).double()
                tokens[:, t] = tok
                if t + 1 < length:
                    logits = stepper.step(tok)
                if progress is not None:
                    progress(t + 1, length)
        return tokens, ll
    finally:
        model.train(was_training)
