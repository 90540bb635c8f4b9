"""The CUDA kernels, run on the CPU through the emulation of CUDA execution (ssm.ops.emulate).

The emulation compiles the unchanged kernel headers and host code of csrc/cuda with the host
compiler; these tests need no GPU. Every kernel is compared with the ``*_ref`` formulas (float64)
and with the C++ CPU op (same dtype), in complex64 and complex128, on shapes that reach every
branch of the index math: odd L, N not a power of two, N over one shared-memory tile (128), L
over one chunk of the partial-sum kernels (2048), more tasks than a forced grid cap (the
grid-stride loops wrap) and the empty edges.
"""

import re

import pytest
import torch
from helpers import assert_close

from ssm.ops import _extension, cauchy_ref, emulate, vandermonde_ref, vandermonde_transpose_ref

pytestmark = pytest.mark.compiled  # the emulation is built with the host C++ compiler

KMAX = 2**31 - 1
# (R, N, L, max_grid)
SHAPES = [
    (2, 7, 33, KMAX),  # odd L, N not a power of two, one task per block
    (3, 130, 301, 2),  # N over one shared-memory tile; tasks > grid cap
    (2, 19, 2050, 3),  # L over one chunk (2 chunks); tasks > grid cap
    (1, 9, 257, 1),  # one block does every task
    (1, 0, 5, 2),  # N = 0
    (2, 5, 0, 2),  # L = 0
    (0, 4, 9, 2),  # R = 0
]
IDS = [f"R{r}-N{n}-L{l}-grid{'max' if g == KMAX else g}" for r, n, l, g in SHAPES]
DTYPES = [pytest.param(torch.complex64, id="c64"), pytest.param(torch.complex128, id="c128")]


@pytest.fixture(scope="module")
def cpu_ops():
    status = _extension.load("cpu")
    assert status.loaded, f"the compiled CPU ops must build on the test machine: {status.detail}"
    return torch.ops.ssm


def _real(dtype):
    return torch.float32 if dtype == torch.complex64 else torch.float64


def _inputs(R, N, L, dtype=torch.complex128, seed=0):
    """v, w, x (R, N); z (L,); grad (R, L) complex; u (R, L) real; rounded to dtype's precision
    and returned in float64, so the float64 references see exactly the kernels' inputs."""
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(R, N, dtype=torch.complex128, generator=g)
    w = torch.complex(-torch.rand(R, N, dtype=torch.float64, generator=g) - 1e-2, torch.randn(R, N, dtype=torch.float64, generator=g) * 3)
    x = torch.complex(-torch.rand(R, N, dtype=torch.float64, generator=g) * 0.02, torch.randn(R, N, dtype=torch.float64, generator=g))
    z = 1.5 * torch.exp(1j * torch.linspace(0.05, 3.1, L, dtype=torch.float64))
    grad = torch.randn(R, L, dtype=torch.complex128, generator=g)
    u = torch.randn(R, L, dtype=torch.float64, generator=g)
    return [t.to(dtype if t.is_complex() else _real(dtype)).to(t.dtype) for t in (v, w, x, z, grad, u)]


def test_chosen_shapes_make_the_grid_stride_loops_wrap():
    """The capped shapes really have more tasks than blocks (else the wrap would go untested)."""
    wraps = 0
    for R, N, L, cap in SHAPES[1:4]:
        for kind in ("fwd", "sums"):
            g = emulate.geometry(kind, R, N, L, max_grid=cap)
            assert g["grid"] <= cap
            wraps += g["tasks"] > g["grid"]
    assert wraps == 6
    assert emulate.geometry("sums", 2, 19, 2050)["tasks"] == 2 * 3 * 2  # rows x pole groups x chunks
    assert emulate.geometry("fwd", 3, 130, 301) == {"grid": 6, "block_x": 256, "block_y": 1, "tasks": 6}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_cauchy_forward(cpu_ops, dtype, shape):
    R, N, L, cap = shape
    v, w, _, z, _, _ = _inputs(R, N, L, dtype)
    lo = [t.to(dtype) for t in (v, z, w)]
    out = emulate.cauchy(*lo, max_grid=cap)
    assert_close(out, cauchy_ref(v, z, w), dtype, "emulated cauchy vs float64")
    # the CPU op rounds too: the two errors add
    assert_close(out, cpu_ops.cauchy(*lo), dtype, "emulated cauchy vs C++ CPU op", factor=2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_cauchy_backward(cpu_ops, dtype, shape):
    R, N, L, cap = shape
    v, w, _, z, grad, _ = _inputs(R, N, L, dtype, seed=1)
    vr, wr = v.clone().requires_grad_(), w.clone().requires_grad_()
    # PyTorch's convention, as the ops': grad is dL/d(conj out), the results dL/d(conj v), dL/d(conj w)
    exact = torch.autograd.grad(cauchy_ref(vr, z, wr), (vr, wr), grad, allow_unused=True)
    lo = [t.to(dtype) for t in (grad, v, z, w)]
    got = emulate.cauchy_backward(*lo, max_grid=cap)
    want_cpu = cpu_ops.cauchy_backward(*lo)
    for name, g, e, c in zip(("grad_v", "grad_w"), got, exact, want_cpu, strict=True):
        e = torch.zeros_like(v) if e is None else e  # unused when the output is empty
        assert_close(g, e, dtype, f"emulated cauchy_backward {name} vs float64")
        # the CPU op rounds too: the two errors add
        assert_close(g, c, dtype, f"emulated cauchy_backward {name} vs C++ CPU op", factor=2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_vandermonde_forward(cpu_ops, dtype, shape):
    R, N, L, cap = shape
    v, _, x, _, _, _ = _inputs(R, N, L, dtype, seed=2)
    lo = [t.to(dtype) for t in (v, x)]
    out = emulate.vandermonde(*lo, L, max_grid=cap)
    assert_close(out, vandermonde_ref(v, x, L), _real(dtype), "emulated vandermonde vs float64")
    # the CPU op rounds too: the two errors add
    assert_close(out, cpu_ops.vandermonde(*lo, L), _real(dtype), "emulated vandermonde vs C++ CPU op", factor=2)


@pytest.mark.parametrize("weighted", [False, True], ids=["S", "S+T"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_vandermonde_sums(cpu_ops, dtype, shape, weighted):
    R, N, L, cap = shape
    _, _, x, _, _, u = _inputs(R, N, L, dtype, seed=3)
    ones = torch.ones_like(x)
    exact_S = vandermonde_transpose_ref(u.to(torch.complex128), ones, x)  # sum_l u_l exp(x l)
    exact_T = vandermonde_transpose_ref((u * torch.arange(L, dtype=torch.float64)).to(torch.complex128), ones, x)
    lo_u, lo_x = u.to(_real(dtype)), x.to(dtype)
    S, T = emulate.vandermonde_sums(lo_u, lo_x, weighted, max_grid=cap)
    cS, cT = cpu_ops.vandermonde_sums(lo_u, lo_x, weighted)
    assert_close(S, exact_S, dtype, "emulated vandermonde_sums S vs float64")
    # the CPU op rounds too: the two errors add
    assert_close(S, cS, dtype, "emulated vandermonde_sums S vs C++ CPU op", factor=2)
    if weighted:
        assert_close(T, exact_T, dtype, "emulated vandermonde_sums T vs float64")
        # the CPU op rounds too: the two errors add
        assert_close(T, cT, dtype, "emulated vandermonde_sums T vs C++ CPU op", factor=2)
    else:
        assert T.shape == (0,)


@pytest.mark.parametrize("shape", [SHAPES[1], SHAPES[2]], ids=[IDS[1], IDS[2]])
def test_reversed_thread_order_gives_the_same_result(shape):
    """A second interleaving of the block's threads: race-free kernels are order-independent."""
    R, N, L, cap = shape
    v, w, x, z, grad, u = _inputs(R, N, L, seed=4)
    for fn, args in [
        (emulate.cauchy, (v, z, w)),
        (emulate.cauchy_backward, (grad, v, z, w)),
        (emulate.vandermonde, (v, x, L)),
        (emulate.vandermonde_sums, (u, x, True)),
    ]:
        a = fn(*args, max_grid=cap, schedule="forward")
        b = fn(*args, max_grid=cap, schedule="reverse")
        for p, q in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,), strict=True):
            assert torch.equal(p, q), fn.__name__


@pytest.mark.parametrize(
    "kind, arg, width, expected",
    [
        ("down", 1, 32, [*range(1, 32), 31]),  # lane 31 + 1 is out of range: its own value
        ("down", 16, 32, [*range(16, 32), *range(16, 32)]),
        ("down", 4, 8, [lane + 4 if lane % 8 < 4 else lane for lane in range(32)]),
        ("up", 2, 16, [lane - 2 if lane % 16 >= 2 else lane for lane in range(32)]),
        ("xor", 8, 8, [lane ^ 8 if (lane ^ 8) < (lane // 8 + 1) * 8 else lane for lane in range(32)]),
        ("idx", 37, 16, [(lane // 16) * 16 + 5 for lane in range(32)]),
    ],
)
def test_shuffles_follow_cuda_rules_for_out_of_range_lanes(kind, arg, width, expected):
    assert emulate.shuffle_probe(kind, arg, width) == expected


@pytest.mark.parametrize("threads", [32, 256, 100])
def test_syncthreads_is_a_real_barrier(threads):
    assert emulate.barrier_probe(threads) == [(t + 1) % threads + 1 for t in range(threads)]
    # without the barrier a thread reads its neighbour's slot before the neighbour wrote it
    assert emulate.barrier_probe(threads, sync=False) == [0] * threads


def test_a_barrier_not_reached_by_every_thread_is_reported():
    with pytest.raises(RuntimeError, match="deadlock in block 0: 255 threads wait at __syncthreads, 0 at a warp shuffle, 1 have exited"):
        emulate.barrier_probe(256, exit_early=17)
    assert emulate.barrier_probe(64) == [(t + 1) % 64 + 1 for t in range(64)]  # the emulation recovers


def test_bad_arguments_are_named():
    v = torch.randn(2, 3, dtype=torch.complex64)
    z = torch.randn(5, dtype=torch.complex64)
    with pytest.raises(RuntimeError, match="max_grid"):
        emulate.cauchy(v, z, v, max_grid=0)
    with pytest.raises(ValueError, match="schedule must be one of"):
        emulate.cauchy(v, z, v, schedule="random")
    with pytest.raises(RuntimeError, match="`w` must be 2-D"):
        emulate.cauchy(v, z, z)


def test_check_command_reports_every_kernel(capsys):
    assert emulate.main(["--check"]) == 0
    out = capsys.readouterr().out
    for name in emulate.KERNELS:
        assert out.count(f"\n{name} ") == 2 * len(emulate.CHECK_SHAPES), name
    assert "all emulated kernels match float64" in out


def test_check_command_fails_on_a_mismatch(monkeypatch, capsys):
    """--check exits non-zero when a kernel disagrees with float64 (here: a tolerance of 0)."""
    monkeypatch.setitem(emulate.TOLERANCE, torch.complex64, 0.0)
    assert emulate.main(["--check"]) == 1
    assert "MISMATCH" in capsys.readouterr().out


# Every __global__ kernel of csrc/cuda and the test above that runs it through the emulation.
EMULATED = {
    "cauchy_fwd_kernel": test_cauchy_forward,
    "cauchy_bwd_kernel": test_cauchy_backward,
    "vandermonde_fwd_kernel": test_vandermonde_forward,
    "vandermonde_sums_kernel": test_vandermonde_sums,
}


def test_every_cuda_kernel_is_emulated():
    """A kernel added to csrc/cuda must live in a *_kernels.cuh header (so the emulation can
    compile it) and get its emulated test here; this fails until both are done."""
    cuda_dir = _extension.source_dir() / "cuda"
    kernel = re.compile(r"__global__\s+void\s+(?:__launch_bounds__\([^)]*\)\s+)?(\w+)")
    found = {name for h in cuda_dir.glob("*_kernels.cuh") for name in kernel.findall(h.read_text())}
    assert found == set(EMULATED), f"kernels without an emulated test: {sorted(found - set(EMULATED))}"
    for path in [*cuda_dir.glob("*.cu"), *cuda_dir.glob("*_host.h"), cuda_dir / "launch.cuh"]:
        assert "__global__" not in path.read_text(), f"{path.name} defines a kernel outside a *_kernels.cuh header"
