"""Parallel scan against the sequential loop: real and complex, broadcast a, x0, reverse, gradients."""

import pytest
import torch
from helpers import GRADCHECK, assert_close

from ssm.ops import scan, scan_ref


def inputs(shape_a, shape_b, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    if dtype.is_complex:
        mag = torch.rand(shape_a, dtype=torch.float64, generator=g) * 0.9 + 0.05
        phase = torch.rand(shape_a, dtype=torch.float64, generator=g) * 6.28
        a = torch.polar(mag, phase).to(dtype)
    else:
        a = (torch.rand(shape_a, dtype=torch.float64, generator=g) * 1.8 - 0.9).to(dtype)
    b = torch.randn(shape_b, dtype=torch.float64, generator=g).to(dtype)
    return a, b


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.complex64, torch.complex128])
@pytest.mark.parametrize("shape_a,shape_b", [((1, 1), (1, 1)), ((3, 7, 5), (3, 7, 5)), ((5,), (2, 257, 5)), ((1000, 3), (2, 1000, 3))])
@pytest.mark.parametrize("reverse", [False, True])
def test_matches_sequential_loop(dtype, shape_a, shape_b, reverse):
    a, b = inputs(shape_a, shape_b, dtype)
    x0 = torch.randn(shape_b[:-2] + shape_b[-1:], dtype=torch.float64).to(dtype)
    exact = scan_ref(*(t.to(torch.complex128 if dtype.is_complex else torch.float64) for t in (a, b, x0)), reverse=reverse)
    assert_close(scan(a, b, x0, reverse=reverse), exact, dtype)
    # scan_ref in dtype too: the two errors add
    assert_close(scan(a, b, reverse=reverse), scan_ref(a, b, reverse=reverse), dtype, factor=2)


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_gradcheck(dtype):
    a, b = inputs((6, 3), (2, 6, 3), dtype, seed=1)
    x0 = torch.randn(2, 3, dtype=dtype)
    for t in (a, b, x0):
        t.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b, x0: scan(a, b, x0), (a, b, x0), **GRADCHECK)
    assert torch.autograd.gradcheck(lambda a, b: scan(a, b, reverse=True), (a, b), **GRADCHECK)
    a_ti = torch.rand(3, dtype=dtype, requires_grad=True)  # time-invariant a, broadcast
    assert torch.autograd.gradcheck(lambda a, b: scan(a, b), (a_ti, b), **GRADCHECK)


def test_gradients_match_reference_complex64():
    a, b = inputs((64,), (3, 500, 64), torch.complex64, seed=2)
    a.requires_grad_(True)
    b.requires_grad_(True)
    out = scan(a, b)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, (a, b), grad)
    a64, b64 = (t.detach().to(torch.complex128).requires_grad_(True) for t in (a, b))
    want = torch.autograd.grad(scan_ref(a64, b64), (a64, b64), grad.to(torch.complex128))
    for g, e in zip(got, want, strict=True):
        assert_close(g, e, torch.complex64)


def test_nan_propagates():
    a, b = inputs((4, 2), (4, 2), torch.float32)
    b[1, 0] = float("nan")
    out = scan(a, b)
    assert torch.isnan(out[1:, 0]).all() and not torch.isnan(out[:, 1]).any()
