"""Vandermonde kernel and its transpose: every backend against the references, values and gradients."""

import pytest
import torch
from helpers import BACKEND_PARAMS, CPU_BACKEND_PARAMS, GRADCHECK, ROUNDOFF, assert_close, crandn, device_of, stable_poles, wide

from ssm.ops import vandermonde, vandermonde_ref, vandermonde_transpose, vandermonde_transpose_ref

# (batch of v, batch of x, N, L)
SHAPES = [
    ((2,), (2,), 1, 1),
    ((2, 3), (3,), 17, 255),
    ((4,), (4,), 32, 1000),
    ((1,), (3,), 5, 513),
]
if wide():
    SHAPES += [((2, 8), (2, 8), 64, 4097), ((3,), (3,), 100, 16385)]


def s4d_inputs(bv, bx, n, length, dtype, device, seed=0):
    """x = dt * A with S4D-Lin-like poles (slow decay, fast rotation) so long L matters."""
    g = torch.Generator().manual_seed(seed)
    dt = torch.exp(torch.empty(*bx, 1, dtype=torch.float64).uniform_(-7, -2, generator=g))
    A = torch.complex(torch.full((n,), -0.5, dtype=torch.float64), torch.pi * torch.arange(n, dtype=torch.float64))
    x = (dt * A + 0.01 * stable_poles(*bx, n, generator=g)).to(dtype)
    v = crandn(*bv, n, generator=g).to(dtype)
    return v.to(device), x.to(device)


def to64(*ts):
    return [t.detach().cpu().to(torch.complex128 if t.is_complex() else torch.float64).requires_grad_(t.requires_grad) for t in ts]


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_forward_matches_reference(backend, shape):
    *_, length = shape
    v, x = s4d_inputs(*shape, torch.complex64, device_of(backend))
    out = vandermonde(v, x, length, backend=backend)
    assert out.dtype == torch.float32
    assert_close(out.cpu(), vandermonde_ref(*to64(v, x), length), torch.float32, f"{backend} vs float64")


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
@pytest.mark.parametrize("shape", SHAPES[1:3], ids=str)
def test_gradients_match_float64_reference(backend, shape):
    *_, length = shape
    v, x = s4d_inputs(*shape, torch.complex64, device_of(backend), seed=1)
    v.requires_grad_(True)
    x.requires_grad_(True)
    out = vandermonde(v, x, length, backend=backend)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, (v, x), grad)
    v64, x64 = to64(v, x)
    want = torch.autograd.grad(vandermonde_ref(v64, x64, length), (v64, x64), grad.cpu().double())
    for name, g, e in zip("vx", got, want, strict=True):
        assert_close(g.cpu(), e, torch.complex64, f"{backend} d{name}")


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
@pytest.mark.parametrize("shape", SHAPES[:3], ids=str)
def test_transpose_matches_reference_with_gradients(backend, shape):
    bv, bx, n, length = shape
    device = device_of(backend)
    v, x = s4d_inputs(bv, bx, n, length, torch.complex64, device, seed=2)
    u = torch.randn(*bx, length, device=device)
    for t in (u, v, x):
        t.requires_grad_(True)
    out = vandermonde_transpose(u, v, x, backend=backend)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, (u, v, x), grad)
    u64, v64, x64 = to64(u, v, x)
    ref = vandermonde_transpose_ref(u64, v64, x64)
    # sums over L (up to 1000) terms, the forward over N
    assert_close(out.cpu(), ref, torch.complex64, f"{backend} transpose", factor=2)
    want = torch.autograd.grad(ref, (u64, v64, x64), grad.cpu().to(torch.complex128))
    for name, g, e in zip("uvx", got, want, strict=True):
        # sums over L of products of two rounded factors
        assert_close(g.cpu(), e, torch.complex64, f"{backend} transpose d{name}", factor=5)


def test_transpose_is_adjoint_of_forward():
    """<vandermonde(v, x), u> = 2 Re sum_n vandermonde_transpose(u, v, x)_n for real u."""
    v, x = s4d_inputs((3,), (3,), 6, 50, torch.complex128, "cpu", seed=3)
    u = torch.randn(3, 50, dtype=torch.float64)
    lhs = (vandermonde(v, x, 50) * u).sum(-1)
    rhs = 2 * vandermonde_transpose(u, v, x).sum(-1).real
    assert torch.allclose(lhs, rhs, rtol=ROUNDOFF[torch.float64], atol=ROUNDOFF[torch.float64])


@pytest.mark.parametrize("backend", CPU_BACKEND_PARAMS)
def test_gradcheck_float64(backend):
    v, x = s4d_inputs((2,), (2,), 3, 9, torch.complex128, "cpu", seed=4)
    u = torch.randn(2, 9, dtype=torch.float64)
    for t in (u, v, x):
        t.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v, x: vandermonde(v, x, 9, backend=backend), (v, x), **GRADCHECK)
    assert torch.autograd.gradcheck(lambda u, v, x: vandermonde_transpose(u, v, x, backend=backend), (u, v, x), **GRADCHECK)


@pytest.mark.compiled
def test_long_sequence_accuracy_cpp():
    """Block anchors keep float32 accurate where a running product of exp(x) would drift."""
    v, x = s4d_inputs((2,), (2,), 16, 65536, torch.complex64, "cpu", seed=5)
    out = vandermonde(v, x, 65536, backend="cpp")
    # 64 x the grid's longest L: the anchors' round-off adds up
    assert_close(out, vandermonde_ref(*to64(v, x), 65536), torch.float32, "L=65536", factor=5)


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_non_contiguous_inputs(backend):
    v, x = s4d_inputs((6,), (6,), 8, 33, torch.complex64, device_of(backend), seed=6)
    vt = torch.stack([v, v], -1)[..., 1]
    xt = x.t().contiguous().t()
    assert not vt.is_contiguous()
    assert_close(vandermonde(vt, xt, 33, backend=backend).cpu(), vandermonde_ref(*to64(v, x), 33), torch.float32, backend)


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_nan_in_nan_out(backend):
    v, x = s4d_inputs((2,), (2,), 4, 9, torch.complex64, device_of(backend))
    x[0, 1] = complex(float("nan"), 0)
    out = vandermonde(v, x, 9, backend=backend)
    assert torch.isnan(out[0]).all() and not torch.isnan(out[1]).any()
    u = torch.randn(2, 9, device=out.device)
    u[1, 3] = float("nan")
    s = vandermonde_transpose(u, v, x, backend=backend)
    assert torch.isnan(s[1]).all()
