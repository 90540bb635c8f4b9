"""FFT convolution against the explicit Toeplitz product, causal and bidirectional, any L."""

import pytest
import torch
from helpers import GRADCHECK, ROUNDOFF, assert_close, rel_err

from ssm.ops import fftconv, fftconv_ref
from ssm.ops.fftconv import fast_length


@pytest.mark.parametrize("L,Lk", [(1, 1), (7, 7), (255, 100), (1000, 1000), (97, 200)])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("with_D", [False, True])
def test_matches_toeplitz_reference(L, Lk, bidirectional, with_D):
    g = torch.Generator().manual_seed(L + Lk)
    u = torch.randn(2, 3, L, dtype=torch.float64, generator=g)
    k = torch.randn(*((2,) if bidirectional else ()), 3, Lk, dtype=torch.float64, generator=g)
    D = torch.randn(3, dtype=torch.float64, generator=g) if with_D else None
    assert_close(fftconv(u, k, D, bidirectional=bidirectional), fftconv_ref(u, k, D, bidirectional=bidirectional), torch.float64)
    assert_close(
        fftconv(u.float(), k.float(), None if D is None else D.float(), bidirectional=bidirectional),
        fftconv_ref(u, k, D, bidirectional=bidirectional),
        torch.float32,
    )


def test_causal_and_anticausal_structure():
    """A unit impulse at t=5: the causal kernel appears from t=5 on, the backward one before it."""
    L = 12
    u = torch.zeros(1, 1, L, dtype=torch.float64)
    u[..., 5] = 1
    k = torch.arange(1, 2 * L + 1, dtype=torch.float64).reshape(2, 1, L)
    y = fftconv(u, k, bidirectional=True)[0, 0]
    # float64 FFT round-off only: the products are exact shifts of integer kernels
    assert rel_err(y[5:], k[0, 0, : L - 5]) <= ROUNDOFF[torch.float64]  # y_t = k0_{t-5}
    assert rel_err(y[:5], k[1, 0, :5].flip(0)) <= ROUNDOFF[torch.float64]  # y_t = k1_{5-t-1}
    yc = fftconv(u, k[0])[0, 0]
    assert yc[:5].abs().max() <= ROUNDOFF[torch.float64]


def test_gradients_match_reference():
    g = torch.Generator().manual_seed(0)
    u = torch.randn(2, 3, 31, dtype=torch.float64, generator=g, requires_grad=True)
    k = torch.randn(2, 3, 31, dtype=torch.float64, generator=g, requires_grad=True)
    D = torch.randn(3, dtype=torch.float64, generator=g, requires_grad=True)
    grad = torch.randn(2, 3, 31, dtype=torch.float64, generator=g)
    got = torch.autograd.grad(fftconv(u, k, D, bidirectional=True), (u, k, D), grad)
    want = torch.autograd.grad(fftconv_ref(u, k, D, bidirectional=True), (u, k, D), grad)
    for a, b in zip(got, want, strict=True):
        assert_close(a, b, torch.float64)
    assert torch.autograd.gradcheck(lambda u, k, D: fftconv(u, k[0], D), (u, k, D), **GRADCHECK)


def test_half_precision_input_runs_in_float32():
    u = torch.randn(2, 4, 64)
    k = torch.randn(4, 64)
    y = fftconv(u.bfloat16(), k)
    assert y.dtype == torch.bfloat16
    assert_close(y.float(), fftconv_ref(u.bfloat16().float(), k), torch.bfloat16)


def _smooth(m: int) -> bool:
    for p in (2, 3, 5):
        while m % p == 0:
            m //= p
    return m == 1


def test_fast_length_is_smooth_and_minimal():
    for n in [1, 2, 7, 97, 1000, 4097, 16385]:
        m = fast_length(n)
        assert m >= n and m % 2 == 0 and _smooth(m)
        assert not any(_smooth(c) for c in range(max(2, n), m) if c % 2 == 0), f"{m} is not minimal for {n}"
