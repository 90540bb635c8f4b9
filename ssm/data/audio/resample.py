"""Band-limited sample-rate conversion: a Kaiser-windowed sinc low-pass evaluated in polyphase form.

Output sample ``j`` sits at source time ``t_j = j * orig_rate / new_rate`` (in source samples) and is

    y[j] = sum_s x[s] h(s - t_j),   h(t) = 2 f_c sinc(2 f_c t) kaiser(t / W)   for |t| <= W,

with cutoff ``f_c = rolloff * min(orig_rate, new_rate) / (2 orig_rate)`` cycles per source sample
(below the lower of the two Nyquist frequencies) and half-width ``W = zeros / (2 f_c)`` (``zeros``
zero crossings of the sinc on each side). Samples outside the signal count as zero; equal rates
return the signal itself. With ``orig/new = p/q`` in lowest terms, output ``q m + r`` uses source
samples starting at ``m p`` with the ``r``-th of ``q`` fixed filters, so the whole conversion is
one strided ``conv1d`` with ``q`` output channels (the polyphase decomposition; e.g. J. O. Smith,
"Digital Audio Resampling").

``resample_ref`` evaluates the sum above directly, in float64, as a dense matrix: obviously right
and only for small tests.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch.nn import functional as F

# 32 zero crossings and beta 6 (about 63 dB stop-band attenuation, Kaiser's formula); the
# transition band is roughly rolloff*Nyquist +- 6% of the lower rate.
ZEROS, ROLLOFF, BETA = 32, 0.94, 6.0
_MAX_FILTER_BANK = 1 << 24  # q * taps; beyond this the rate ratio is too awkward for a filter bank


def _design(orig_rate: int, new_rate: int, zeros: float, rolloff: float) -> tuple[float, float]:
    """(cutoff in cycles per source sample, half-width W in source samples)."""
    for name, value in (("orig_rate", orig_rate), ("new_rate", new_rate)):
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"resample: `{name}` must be a positive int; got {value!r}")
    if not 0 < rolloff <= 1:
        raise ValueError(f"resample: `rolloff` must be in (0, 1]; got {rolloff!r}")
    if zeros <= 0:
        raise ValueError(f"resample: `zeros` must be positive; got {zeros!r}")
    cutoff = rolloff * min(orig_rate, new_rate) / (2 * orig_rate)
    return cutoff, zeros / (2 * cutoff)


def _kernel(t: torch.Tensor, cutoff: float, half_width: float, beta: float) -> torch.Tensor:
    """h(t) for t in source samples (float64)."""
    ideal = 2 * cutoff * torch.sinc(2 * cutoff * t)
    arg = (1 - (t / half_width) ** 2).clamp(min=0)
    window = torch.special.i0(beta * torch.sqrt(arg)) / torch.special.i0(torch.tensor(beta, dtype=t.dtype))
    return torch.where(t.abs() <= half_width, ideal * window, torch.zeros_like(t))


def output_length(frames: int, orig_rate: int, new_rate: int) -> int:
    """Samples that ``resample`` makes of ``frames`` input samples: ceil(frames * new / orig)."""
    return -(-frames * new_rate // orig_rate)


def source_span(orig_rate: int, new_rate: int, start: int, length: int, *, zeros: float = ZEROS,
                rolloff: float = ROLLOFF) -> tuple[int, int]:
    """``(lo, hi)``: the source samples ``[lo, hi)`` that outputs ``[start, start + length)`` read
    (may reach below 0 or past the end of the signal, where samples count as zero)."""
    g = math.gcd(orig_rate, new_rate)
    p, q = orig_rate // g, new_rate // g
    _, half_width = _design(orig_rate, new_rate, zeros, rolloff)
    w = math.ceil(half_width)
    m0, m1 = start // q, (start + length - 1) // q
    return m0 * p - w, m1 * p + p + w + 1


@lru_cache(maxsize=16)
def _filter_bank(p: int, q: int, w: int, cutoff: float, half_width: float, beta: float) -> torch.Tensor:
    """(q, p + 2w + 1) float64: filter r weights source sample ``m p - w + i`` for output ``q m + r``,
    which sits at source time ``m p + r p / q``."""
    i = torch.arange(p + 2 * w + 1, dtype=torch.float64)
    r = torch.arange(q, dtype=torch.float64)[:, None]
    return _kernel(i - w - r * p / q, cutoff, half_width, beta)  # (q, K)


def resample(waveform: torch.Tensor, orig_rate: int, new_rate: int, *, start: int = 0, length: int | None = None,
             offset: int = 0, zeros: float = ZEROS, rolloff: float = ROLLOFF, beta: float = BETA) -> torch.Tensor:
    """Resample ``waveform`` (..., T) from ``orig_rate`` to ``new_rate`` along the last dim.

    By default returns all ``output_length(T, orig, new)`` samples. For chunked reading of long
    files: ``waveform[..., k]`` is source sample ``offset + k`` (samples outside count as zero)
    and the result is outputs ``[start, start + length)`` of the resampled whole signal; with
    ``waveform`` covering ``source_span(...)`` (clipped to the file) this equals slicing the
    resampled whole file.
    """
    cutoff, half_width = _design(orig_rate, new_rate, zeros, rolloff)
    if not waveform.is_floating_point():
        raise ValueError(f"resample: `waveform` must be a float tensor; got {waveform.dtype}")
    T = waveform.shape[-1]
    if length is None:
        length = output_length(offset + T, orig_rate, new_rate) - start
    if start < 0 or length < 0:
        raise ValueError(f"resample: `start` and `length` must be >= 0; got start={start}, length={length}")
    lead = waveform.shape[:-1]
    if length == 0:
        return waveform.new_zeros(*lead, 0)
    x = waveform.reshape(-1, T)  # (B, T)
    if orig_rate == new_rate:  # the identity (a slice, zero outside the signal), not a low-pass
        out = x.new_zeros(x.shape[0], length)  # (B, length)
        a, b = max(start, offset), min(start + length, offset + T)
        if a < b:
            out[:, a - start : b - start] = x[:, a - offset : b - offset]
        return out.reshape(*lead, length)
    g = math.gcd(orig_rate, new_rate)
    p, q = orig_rate // g, new_rate // g
    w = math.ceil(half_width)
    if q * (p + 2 * w + 1) > _MAX_FILTER_BANK:
        raise ValueError(f"resample: {orig_rate} -> {new_rate} Hz reduces to {p}:{q}, too awkward a ratio for a "
                         f"polyphase filter bank; resample through a nearby rate first")
    lo, hi = source_span(orig_rate, new_rate, start, length, zeros=zeros, rolloff=rolloff)
    window = x.new_zeros(x.shape[0], hi - lo)  # (B, hi - lo): source samples [lo, hi), zero outside the signal
    a, b = max(lo, offset), min(hi, offset + T)
    if a < b:
        window[:, a - lo : b - lo] = x[:, a - offset : b - offset]
    bank = _filter_bank(p, q, w, cutoff, half_width, beta).to(x.dtype)  # (q, K)
    y = F.conv1d(window[:, None, :], bank[:, None, :], stride=p)  # (B, q, M): y[:, r, m] = output q (m0 + m) + r
    y = y.transpose(1, 2).reshape(x.shape[0], -1)  # (B, M q)
    first = start - (start // q) * q
    return y[:, first : first + length].reshape(*lead, length)


def resample_ref(waveform: torch.Tensor, orig_rate: int, new_rate: int, *, start: int = 0, length: int | None = None,
                 offset: int = 0, zeros: float = ZEROS, rolloff: float = ROLLOFF, beta: float = BETA) -> torch.Tensor:
    """``resample`` by the direct sum over every source sample, in float64 (dense; small inputs only)."""
    cutoff, half_width = _design(orig_rate, new_rate, zeros, rolloff)
    T = waveform.shape[-1]
    if length is None:
        length = output_length(offset + T, orig_rate, new_rate) - start
    j = torch.arange(start, start + length, dtype=torch.float64)
    s = torch.arange(offset, offset + T, dtype=torch.float64)
    t = s[None, :] - j[:, None] * orig_rate / new_rate  # (length, T): source minus output time
    h = (t == 0).to(torch.float64) if orig_rate == new_rate else _kernel(t, cutoff, half_width, beta)
    return (waveform.to(torch.float64) @ h.T).to(waveform.dtype)
