"""The compiled CPU ops run on torch's intra-op threads: every op forks at a compute-bound size,
stays serial when small or when torch is set to one thread (DataLoader workers), binds to the one
OpenMP runtime torch loaded, and gives the same bits at any thread count."""

import sys
from pathlib import Path

import pytest
import torch

from ssm.ops import _extension, cauchy, vandermonde, vandermonde_transpose

pytestmark = [pytest.mark.compiled,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="OpenMP build on Linux only")]


@pytest.fixture(scope="module")
def ops():
    status = _extension.load("cpu")
    assert status.loaded, f"the compiled CPU ops must build on the test machine: {status.detail}"
    return torch.ops.ssm


@pytest.fixture
def threads():
    """Set torch's intra-op thread count inside a test; restored afterwards."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def _threads_used(ops, fn) -> int:
    """Distinct pool threads that ran loop bodies of the compiled ops during ``fn()``."""
    ops.thread_probe(True)
    try:
        fn()
    finally:
        used = ops.thread_probe(False)
    return used


def test_built_with_openmp_like_torch(ops):
    assert ops.built_with_openmp() == torch.backends.openmp.is_available()


def test_one_openmp_runtime_in_the_process(ops):
    """The library links no runtime of its own: only torch's OpenMP library is mapped."""
    runtimes = {line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines()
                if any(name in line for name in ("libgomp", "libiomp", "libomp"))}
    assert len(runtimes) <= 1, f"more than one OpenMP runtime loaded: {sorted(runtimes)}"


def _complex(g, *shape):
    return torch.randn(*shape, dtype=torch.complex128, generator=g)


def _poles(g, rows, n):
    return torch.complex(-torch.rand(rows, n, dtype=torch.float64, generator=g) * 0.1,
                         torch.randn(rows, n, dtype=torch.float64, generator=g))


def _cases():
    """Each compiled op at a compute-bound size: name -> a function of nothing that returns tensors."""
    g = torch.Generator().manual_seed(0)
    R, N, L = 16, 8, 2048
    v, w, z = _complex(g, R, N), _complex(g, R, N), _complex(g, L)
    x, u = _poles(g, R, N), torch.randn(R, L, dtype=torch.float64, generator=g)
    grad = _complex(g, R, L)
    B, H, F = 4096, 32, 64
    xb = torch.randn(B, H, dtype=torch.float64, generator=g)
    ff = [torch.randn(*s, dtype=torch.float64, generator=g) for s in ((H,), (H,), (H, F), (F,), (F, H), (H,))]
    ssm_block = [torch.randn(*s, dtype=torch.float64, generator=g) for s in ((H,), (H,), (H,), (H, 2 * H), (2 * H,))]
    s_in, u_slot = torch.randn(B, H, dtype=torch.float64, generator=g), torch.zeros(B, H, dtype=torch.float64)
    Rb, n, T, m, Bb = 256, 8, 4, 2, 64
    FT = torch.randn(Rb, T * m, 2 * n, dtype=torch.float64, generator=g)
    X = torch.randn(Rb, 2 * n, Bb, dtype=torch.float64, generator=g)
    Acc = torch.randn(T, m, Rb, Bb, dtype=torch.float64, generator=g)
    Kd = torch.randn(T - 1, m, m, Rb, dtype=torch.float64, generator=g)
    U = torch.randn(Rb, 2 * n, T * m, dtype=torch.float64, generator=g)
    ETr, ETi = torch.randn(Rb, n, dtype=torch.float64, generator=g), torch.randn(Rb, n, dtype=torch.float64, generator=g)
    ops = torch.ops.ssm

    def chain():
        us = [u_slot.clone()]
        out = ops.residual_chain(xb, ff + ssm_block, [s_in], us, ["feed_forward", "channel_ssm"], [1e-5, 1e-5], "relu",
                                 "glu", [], [])
        return out, us[0]

    def bank_begin():
        acc = torch.zeros_like(Acc)
        ops.siso_bank_begin(FT, X, acc)
        return (acc,)

    def bank_end(j):
        def run():
            X2, Acc2 = X.clone(), Acc.clone()
            ops.siso_bank_end(X2, Acc2, Kd, U, ETr, ETi, j)
            return X2, Acc2
        return run

    return {
        "cauchy": lambda: (ops.cauchy(v, z, w),),
        "cauchy_backward": lambda: ops.cauchy_backward(grad, v, z, w),
        "vandermonde": lambda: (ops.vandermonde(v, x, L),),
        "vandermonde_sums": lambda: ops.vandermonde_sums(u, x, True),
        "residual_chain": chain,
        "siso_bank_begin": bank_begin,
        "siso_bank_end(push)": bank_end(0),
        "siso_bank_end(advance)": bank_end(T - 1),
    }


OPS = ["cauchy", "cauchy_backward", "vandermonde", "vandermonde_sums", "residual_chain", "siso_bank_begin",
       "siso_bank_end(push)", "siso_bank_end(advance)"]


@pytest.mark.parametrize("name", OPS)
def test_every_op_uses_every_thread_and_gives_the_same_bits(ops, threads, name):
    run = _cases()[name]
    results, used = {}, {}
    for n in (1, 2, 3):
        threads(n)
        out = []
        used[n] = _threads_used(ops, lambda: out.extend(run()))
        results[n] = out
    assert used == {1: 1, 2: 2, 3: 3}, f"{name}: threads that ran its loops at 1/2/3 torch threads: {used}"
    for n in (2, 3):
        for a, b in zip(results[1], results[n], strict=True):
            assert torch.equal(a, b), f"{name}: output at {n} threads differs from 1 thread by {(a - b).abs().max()}"


def test_small_calls_stay_serial(ops, threads):
    threads(2)
    v, w, z = torch.randn(2, 4, dtype=torch.complex64), torch.randn(2, 4, dtype=torch.complex64), torch.randn(16, dtype=torch.complex64)
    assert _threads_used(ops, lambda: ops.cauchy(v, z, w)) == 1


def test_gradients_through_the_public_ops_do_not_depend_on_threads(ops, threads):
    """cauchy, vandermonde and vandermonde_transpose, forward and backward, through autograd."""
    g = torch.Generator().manual_seed(1)
    R, N, L = 8, 16, 4096
    leaves = dict(v=_complex(g, R, N), w=_complex(g, R, N) - 2.0, x=_poles(g, R, N), u=torch.randn(R, L, dtype=torch.float64, generator=g))
    z = torch.exp(2j * torch.pi * torch.arange(L, dtype=torch.float64) / L).to(torch.complex128)
    outs = {}
    for n in (1, 2):
        threads(n)
        t = {k: val.clone().requires_grad_() for k, val in leaves.items()}
        loss = (cauchy(t["v"], z, t["w"], backend="cpp").abs().sum() + vandermonde(t["v"], t["x"], L, backend="cpp").sum()
                + vandermonde_transpose(t["u"], t["v"], t["x"], backend="cpp").abs().sum())
        loss.backward()
        outs[n] = [loss.detach()] + [t[k].grad for k in sorted(t)]
    for a, b in zip(outs[1], outs[2], strict=True):
        assert torch.equal(a, b)


class _OpInWorker(torch.utils.data.Dataset):
    def __len__(self):
        return 1

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(0)
        v, w, z = _complex(g, 64, 32), _complex(g, 64, 32), _complex(g, 4096)
        ops = torch.ops.ssm
        ops.thread_probe(True)
        out = ops.cauchy(v, z, w)
        return torch.get_num_threads(), ops.thread_probe(False), out


def test_dataloader_workers_stay_on_one_thread(ops, threads):
    """torch gives each worker one thread; the op respects it (no oversubscription) and, in a
    worker forked after the parent used the pool, still computes the same values."""
    threads(2)
    _, _, expected = _OpInWorker()[0]  # the parent's pool is now started
    loader = torch.utils.data.DataLoader(_OpInWorker(), batch_size=None, num_workers=1,
                                         multiprocessing_context="fork")
    worker_threads, used, out = next(iter(loader))
    assert (worker_threads, used) == (1, 1)
    assert torch.equal(out, expected)


def test_backends_says_how_the_cpu_library_runs(ops, threads):
    import ssm.ops

    threads(2)
    assert "parallel on torch's 2 intra-op threads" in ssm.ops.backends()["cpp"]
