"""Long convolution by FFT, the convolution mode of every convolutional SSM layer.

    y = irfft(rfft(u, n) * rfft(k, n), n)[..., :L] + D u

Causal (``k: (H, Lk)``): ``y_t = sum_{j<=t} k_j u_{t-j}``. Bidirectional (``k: (2, H, Lk)``):
the first kernel is causal, the second runs backwards and starts one step ahead,
``y_t = sum_j k0_j u_{t-j} + sum_{m>=1} k1_{m-1} u_{t+m}``, the two-sided kernel of
S4 (arXiv 2111.00396) with the current step counted once.

Any L: the FFT size ``n`` is the smallest 5-smooth even number that avoids wrap-around
(``>= L + Lk - 1`` causal, ``>= 2L`` bidirectional), not the next power of two. The math runs
in float32 (or float64 for float64 inputs); half-precision inputs are upcast and the output cast
back, so mixed precision never runs the FFT in bf16.

``fftconv_ref`` builds the Toeplitz matrix and multiplies: O(L^2), obviously right.
"""

from __future__ import annotations

import functools

import torch

from . import _validate

__all__ = ["fftconv", "fftconv_ref"]

OP = "fftconv"


@functools.cache
def fast_length(n: int) -> int:
    """Smallest even m >= n whose only prime factors are 2, 3 and 5 (fast for every FFT library)."""
    m = max(2, n + (n % 2))
    while True:
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 2


def _check(u, k, D, bidirectional: bool) -> tuple[int, int, int]:
    _validate.real_tensor(OP, "u", u)
    if u.dim() != 3:
        raise ValueError(f"{OP}: `u` must be (B, H, L), got shape {tuple(u.shape)}")
    _validate.real_tensor(OP, "k", k)
    B, H, L = u.shape
    want = (2, H) if bidirectional else (H,)
    if k.dim() != len(want) + 1 or tuple(k.shape[:-1]) != want:
        form = "(2, H, Lk)" if bidirectional else "(H, Lk)"
        raise ValueError(
            f"{OP}: `k` must be {form} with H={H} (bidirectional={bidirectional}), got shape {tuple(k.shape)}"
        )
    if D is not None:
        _validate.real_tensor(OP, "D", D)
        if tuple(D.shape) != (H,):
            raise ValueError(f"{OP}: `D` must be (H,) = ({H},), got shape {tuple(D.shape)}")
        _validate.same_device(OP, u=u, k=k, D=D)
    else:
        _validate.same_device(OP, u=u, k=k)
    return B, H, L


def _compute_dtype(*ts) -> torch.dtype:
    return torch.float64 if any(t is not None and t.dtype == torch.float64 for t in ts) else torch.float32


def fftconv(
    u: torch.Tensor, k: torch.Tensor, D: torch.Tensor | None = None, *, bidirectional: bool = False
) -> torch.Tensor:
    """Convolve ``u: (B, H, L)`` with ``k: (H, Lk)`` (or ``(2, H, Lk)`` bidirectional) -> ``(B, H, L)``.

    A kernel longer than L is truncated to L; a shorter one is zero-padded.
    """
    B, H, L = _check(u, k, D, bidirectional)
    dtype = _compute_dtype(u, k, D)
    kk = k[..., :L].to(dtype)  # (H, Lk) or (2, H, Lk), Lk <= L
    lk = kk.shape[-1]
    if bidirectional:
        n = fast_length(2 * L)
        # Two-sided kernel on the FFT circle: causal part at 0..Lk-1, the reversed backward part
        # at n-Lk..n-1 so that index n-m multiplies u_{t+m}.
        full = kk.new_zeros(H, n)  # (H, n)
        full[:, :lk] = kk[0]
        full[:, n - lk :] = kk[1].flip(-1)
    else:
        n = fast_length(L + lk - 1)
        full = kk  # rfft zero-pads to n
    uf = torch.fft.rfft(u.to(dtype), n=n)  # (B, H, n//2+1)
    kf = torch.fft.rfft(full, n=n)  # (H, n//2+1)
    y = torch.fft.irfft(uf * kf, n=n)[..., :L]  # (B, H, L)
    if D is not None:
        y = y + u.to(dtype) * D.to(dtype).unsqueeze(-1)
    return y.to(u.dtype)


def fftconv_ref(
    u: torch.Tensor, k: torch.Tensor, D: torch.Tensor | None = None, *, bidirectional: bool = False
) -> torch.Tensor:
    """Reference: explicit Toeplitz matrix, ``y_t = sum_s T[t, s] u_s``."""
    B, H, L = _check(u, k, D, bidirectional)
    dtype = _compute_dtype(u, k, D)
    t = torch.arange(L, device=u.device)
    lag = t[:, None] - t[None, :]  # (L, L): t - s
    kk = k[..., :L].to(dtype)
    lk = kk.shape[-1]

    def toeplitz(kernel, lags):  # kernel (H, Lk) evaluated at lags >= 0, zero elsewhere
        valid = (lags >= 0) & (lags < lk)
        return kernel[:, lags.clamp(0, lk - 1)] * valid  # (H, L, L)

    T = toeplitz(kk[0] if bidirectional else kk, lag)
    if bidirectional:
        T = T + toeplitz(kk[1], -lag - 1)  # s = t + m, m >= 1, uses k1[m - 1]
    y = torch.einsum("hts,bhs->bht", T, u.to(dtype))  # (B, H, L)
    if D is not None:
        y = y + u.to(dtype) * D.to(dtype).unsqueeze(-1)
    return y.to(u.dtype)
