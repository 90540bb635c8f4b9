"""Cauchy kernel: every backend against cauchy_ref and a float64 reference, values and gradients."""

import pytest
import torch
from helpers import BACKEND_PARAMS, CPU_BACKEND_PARAMS, GRADCHECK, ROUNDOFF, assert_close, crandn, device_of, rel_err, wide

from ssm.ops import cauchy, cauchy_ref

# (batch shape of v, batch shape of w, N, L): odd L, non-power-of-two N, broadcast batch dims.
SHAPES = [
    ((3,), (3,), 1, 1),
    ((2, 3), (3,), 17, 255),
    ((5,), (5,), 32, 1000),
    ((1,), (4,), 3, 7),
]
if wide():
    SHAPES += [((2, 8), (2, 8), 64, 4097), ((3,), (3,), 100, 16385)]


def s4_nodes(L, dtype=torch.complex128):
    """S4's evaluation points: z = 2(1-w)/(1+w) at roots of unity w (imaginary axis)."""
    omega = torch.exp(-2j * torch.pi * torch.arange(L, dtype=torch.float64) / (2 * L))
    return (2 * (1 - omega) / (1 + omega)).to(dtype)


def inputs(bv, bw, n, length, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    v = crandn(*bv, n, generator=g)
    w = torch.complex(-torch.rand(*bw, n, dtype=torch.float64, generator=g), torch.randn(*bw, n, dtype=torch.float64, generator=g) * 3)
    z = s4_nodes(length)
    return [t.to(dtype).to(device) for t in (v, z, w)]


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_forward_matches_reference(backend, shape):
    v, z, w = inputs(*shape, torch.complex64, device_of(backend))
    out = cauchy(v, z, w, backend=backend)
    exact = cauchy_ref(*(t.cpu().to(torch.complex128) for t in (v, z, w)))
    assert_close(out.cpu(), exact, torch.complex64, f"{backend} vs float64")
    # cauchy_ref in complex64 too: the two errors add
    assert_close(out, cauchy_ref(v, z, w), torch.complex64, f"{backend} vs cauchy_ref", factor=2)


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
@pytest.mark.parametrize("shape", SHAPES[1:3], ids=str)
def test_gradients_match_float64_reference(backend, shape):
    v, z, w = inputs(*shape, torch.complex64, device_of(backend), seed=1)
    v.requires_grad_(True)
    w.requires_grad_(True)
    out = cauchy(v, z, w, backend=backend)
    grad = torch.randn_like(out)
    gv, gw = torch.autograd.grad(out, (v, w), grad)
    v64, z64, w64 = (t.detach().cpu().to(torch.complex128).requires_grad_(t.requires_grad) for t in (v, z, w))
    ev, ew = torch.autograd.grad(cauchy_ref(v64, z64, w64), (v64, w64), grad.cpu().to(torch.complex128))
    assert_close(gv.cpu(), ev, torch.complex64, f"{backend} dv")
    assert_close(gw.cpu(), ew, torch.complex64, f"{backend} dw")


@pytest.mark.parametrize("backend", CPU_BACKEND_PARAMS)
def test_gradcheck_float64(backend):
    v, z, w = inputs((2,), (2,), 3, 5, torch.complex128, "cpu", seed=2)
    v.requires_grad_(True)
    w.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v, w: cauchy(v, z, w, backend=backend), (v, w), **GRADCHECK)


def test_torch_backend_gradient_for_z():
    v, z, w = inputs((2,), (2,), 3, 5, torch.complex128, "cpu", seed=3)
    z.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: cauchy(v, z, w, backend="torch"), (z,), **GRADCHECK)


@pytest.mark.compiled
def test_z_gradient_refused_by_compiled_backend():
    v, z, w = inputs((2,), (2,), 3, 5, torch.complex128, "cpu")
    z.requires_grad_(True)
    with pytest.raises(RuntimeError, match="gradient for `z`"):
        cauchy(v, z, w, backend="cpp")
    # auto picks a backend that can differentiate z instead of dropping the gradient
    (gz,) = torch.autograd.grad(cauchy(v, z, w).real.sum(), z)
    (ez,) = torch.autograd.grad(cauchy_ref(v, z, w).real.sum(), z)
    assert rel_err(gz, ez) <= ROUNDOFF[torch.complex128]  # the same complex128 sums, differentiated by hand and by autograd


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_non_contiguous_inputs(backend):
    device = device_of(backend)
    v, z, w = inputs((6,), (6,), 8, 33, torch.complex64, device, seed=4)
    vt = torch.stack([v, v], -1)[..., 0]  # stride-2 view
    wt = w.t().contiguous().t()  # transposed layout
    zt = torch.stack([z, z], -1)[:, 1]
    assert not vt.is_contiguous() and not zt.is_contiguous()
    # against cauchy_ref in complex64
    assert_close(cauchy(vt, zt, wt, backend=backend), cauchy_ref(v, z, w), torch.complex64, backend, factor=2)


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_nan_in_nan_out(backend):
    v, z, w = inputs((2,), (2,), 4, 9, torch.complex64, device_of(backend))
    v[1, 2] = complex(float("nan"), 0)
    out = cauchy(v, z, w, backend=backend)
    assert torch.isnan(out[1]).all()
    assert not torch.isnan(out[0]).any()


@pytest.mark.compiled
def test_cpp_result_independent_of_thread_count():
    """The parallel split of rows/blocks must not change the result."""
    v, z, w = inputs((64,), (64,), 16, 3001, torch.complex64, "cpu", seed=5)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = cauchy(v, z, w, backend="cpp")
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, cauchy(v, z, w, backend="cpp"))
