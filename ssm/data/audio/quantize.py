"""8-bit (or ``bits``-bit) audio tokens: mu-law or linear quantisation, and per-example scaling.

- mu-law (ITU-T G.711 companding, as used for WaveNet's 256-way softmax, arXiv 1609.03499):
  ``ssm.data.synthetic.mu_law_encode``/``mu_law_decode`` (one implementation in the package).
- linear: ``2^bits`` equal bins over [-1, 1]; decoding returns the bin centre, so the round-trip
  error is at most half a bin, ``2^-bits``.

For both, 0.0 encodes to ``2^(bits-1)`` (``silence_code``), the start token of autoregressive
inputs. SaShiMi (arXiv 2202.09729) uses mu-law for SC09/YouTubeMix and linear for Beethoven, each
example min-max scaled to [-1, 1] before quantisation (``normalize="minmax"``).
"""

from __future__ import annotations

from typing import Literal

import torch

from ssm.data.synthetic import mu_law_decode, mu_law_encode
from ...checks import check_choice

Quantization = Literal["mu-law", "linear"]
Normalization = Literal["minmax", "peak", "none"]


def _check_bits(bits: int) -> None:
    if not isinstance(bits, int) or not 1 <= bits <= 16:
        raise ValueError(f"quantize: `bits` must be an int in [1, 16]; got {bits!r}")


def linear_encode(x: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """[-1, 1] floats -> integer codes in [0, 2^bits): bin ``floor((x + 1) 2^(bits-1))``."""
    _check_bits(bits)
    half = 2 ** (bits - 1)
    return torch.floor((x.clamp(-1, 1) + 1) * half).long().clamp(0, 2 * half - 1)


def linear_decode(q: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Codes -> the centres of their bins in [-1, 1]."""
    _check_bits(bits)
    half = 2 ** (bits - 1)
    return (q.float() + 0.5) / half - 1


def quantize(x: torch.Tensor, method: Quantization = "mu-law", bits: int = 8) -> torch.Tensor:
    """Waveform in [-1, 1] -> LongTensor codes in [0, 2^bits), same shape."""
    check_choice("quantize", "method", method, Quantization)
    _check_bits(bits)
    return mu_law_encode(x, bits) if method == "mu-law" else linear_encode(x, bits)


def dequantize(q: torch.Tensor, method: Quantization = "mu-law", bits: int = 8) -> torch.Tensor:
    """Codes -> float waveform in [-1, 1], same shape."""
    check_choice("dequantize", "method", method, Quantization)
    _check_bits(bits)
    return mu_law_decode(q, bits) if method == "mu-law" else linear_decode(q, bits)


def silence_code(method: Quantization = "mu-law", bits: int = 8) -> int:
    """The code of 0.0 (``2^(bits-1)`` for both methods): padding and the autoregressive start token."""
    return int(quantize(torch.zeros(1), method, bits))


def normalize(x: torch.Tensor, mode: Normalization = "minmax") -> torch.Tensor:
    """Scale one example (any shape) into [-1, 1].

    ``minmax``: the affine map sending min -> -1 and max -> 1 (the S4 repo's per-example scaling;
    it also removes a DC offset); ``peak``: divide by max |x| (keeps 0.0 at 0.0); ``none``: as is.
    A constant (e.g. silent) example maps to zeros under ``minmax`` and stays as is under ``peak``."""
    check_choice("normalize", "mode", mode, Normalization)
    if mode == "none" or x.numel() == 0:
        return x
    if mode == "peak":
        peak = x.abs().max()
        return x / peak if peak > 0 else x
    lo, hi = x.min(), x.max()
    if hi <= lo:
        return torch.zeros_like(x)
    return (x - lo) * (2 / (hi - lo)) - 1
