"""The CUDA kernels of ``csrc/cuda`` run on the CPU through an emulation of CUDA execution.

No GPU has ever been available to the project's CI, yet ``backend="auto"`` picks ``cuda`` first
on a GPU. This module builds ``csrc/emulation/emulated_ops.cpp`` (a torch CPU extension, cached
like the other libraries), which compiles the *unchanged* kernel headers and host code of the
CUDA ops with the host compiler against a small CUDA shim (``csrc/emulation/cuda_shim.h``: one
fiber per CUDA thread, ``__syncthreads`` a real barrier, warp shuffles an exchange among 32
lanes, blocks in sequence). A missing barrier, a wrong index or a wrong shuffle therefore gives
a wrong result here, on any machine with a C++ compiler. See the shim's header for the model.

``max_grid`` caps ``gridDim.x`` (it goes to the launch-geometry functions of
``csrc/cuda/launch.cuh``, the same ones the CUDA launcher calls) so that the grid-stride loops
wrap at small sizes; ``schedule`` picks the order in which ready threads run (``"forward"`` or
``"reverse"``), a second interleaving for the same launch.

``python -m ssm.ops.emulate --check`` prints, for each CUDA kernel, the relative error of the
emulated kernel against a float64 reference on a few shapes, and exits non-zero on a mismatch.
Test infrastructure: these functions never serve an op call.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Literal

import torch

from . import _extension

log = logging.getLogger("ssm")

SOURCES = ["emulation/emulated_ops.cpp"]
# No -march=native or fast-math: the emulation should do the arithmetic the kernel text says.
FLAGS = ["-O2", "-Wno-unknown-pragmas"]
KERNELS = ("cauchy", "cauchy_backward", "vandermonde", "vandermonde_sums")
Schedule = Literal["forward", "reverse"]
_SCHEDULES = {"forward": 0, "reverse": 1}

# Normwise relative error allowed against float64 (the table of tests/helpers.py, RTOL).
TOLERANCE = {torch.complex64: 2e-5, torch.complex128: 1e-11}

_LOADED: list[str] = []


def build(*, verbose: bool = False) -> str:
    """Compile the emulation library into the cache (once) and load it; returns its path."""
    if _LOADED:
        return _LOADED[0]
    root = _extension.source_dir()
    sources = [root / s for s in SOURCES]
    key = _extension._build_key(sources, FLAGS, "emulation")
    build_dir = _extension.cache_root() / f"ssm_emulation-{key}"
    build_dir.mkdir(parents=True, exist_ok=True)
    built = build_dir / "ssm_emulation.so"
    done = build_dir / "BUILT"
    if built.exists() and done.exists():
        torch.ops.load_library(str(built))
    else:
        log.warning("ssm: building the CUDA emulation into %s (first use only)", build_dir)
        from torch.utils import cpp_extension

        cpp_extension.load(
            name="ssm_emulation",
            sources=[str(s) for s in sources],
            extra_cflags=FLAGS,
            extra_include_paths=[str(root)],
            build_directory=str(build_dir),
            verbose=verbose,
            is_python_module=False,
        )
        done.write_text(f"{built}\n")
    _LOADED.append(str(built))
    return str(built)


def _ops():
    build()
    return torch.ops.ssm_emu


def _schedule(schedule: str) -> int:
    if schedule not in _SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(_SCHEDULES)}; got {schedule!r}")
    return _SCHEDULES[schedule]


def cauchy(v, z, w, *, max_grid: int = 2**31 - 1, schedule: Schedule = "forward") -> torch.Tensor:
    """``torch.ops.ssm.cauchy`` as the CUDA kernel computes it. v, w: (R, N); z: (L,) -> (R, L)."""
    return _ops().cauchy(v, z, w, max_grid, _schedule(schedule))


def cauchy_backward(grad, v, z, w, *, max_grid: int = 2**31 - 1, schedule: Schedule = "forward"):
    """``torch.ops.ssm.cauchy_backward`` (grad_v, grad_w), as the CUDA kernel computes it."""
    return _ops().cauchy_backward(grad, v, z, w, max_grid, _schedule(schedule))


def vandermonde(v, x, L: int, *, max_grid: int = 2**31 - 1, schedule: Schedule = "forward") -> torch.Tensor:
    """``torch.ops.ssm.vandermonde`` as the CUDA kernel computes it. v, x: (R, N) -> (R, L) real."""
    return _ops().vandermonde(v, x, L, max_grid, _schedule(schedule))


def vandermonde_sums(u, x, weighted: bool, *, max_grid: int = 2**31 - 1, schedule: Schedule = "forward"):
    """``torch.ops.ssm.vandermonde_sums`` (S, T) as the CUDA kernel computes it."""
    return _ops().vandermonde_sums(u, x, weighted, max_grid, _schedule(schedule))


def geometry(kind: Literal["fwd", "sums"], R: int, N: int, L: int, *, max_grid: int = 2**31 - 1) -> dict[str, int]:
    """The launch geometry the CUDA launcher and the emulation share (csrc/cuda/launch.cuh)."""
    grid, bx, by, tasks = _ops().geometry(kind, R, N, L, max_grid)
    return {"grid": grid, "block_x": bx, "block_y": by, "tasks": tasks}


def shuffle_probe(kind: Literal["idx", "up", "down", "xor"], arg: int, width: int = 32) -> list[int]:
    """What each lane of one emulated warp receives when lane i offers i."""
    kinds = {"idx": 0, "up": 1, "down": 2, "xor": 3}
    return _ops().shuffle_probe(kinds[kind], arg, width).tolist()


def barrier_probe(threads: int, *, sync: bool = True, exit_early: int = -1) -> list[int]:
    """One emulated block: thread t writes s[t] and, after the barrier (if ``sync``), reads
    s[t + 1]; thread ``exit_early`` skips the barrier (the emulation reports a deadlock)."""
    return _ops().barrier_probe(threads, sync, exit_early).tolist()


# ---- --check: every kernel against float64 on a few shapes --------------------------------


def _poles(R: int, N: int, gen: torch.Generator) -> torch.Tensor:
    re = -torch.rand(R, N, dtype=torch.float64, generator=gen) * 0.5 - 1e-3
    return torch.complex(re, torch.randn(R, N, dtype=torch.float64, generator=gen) * 3)


def _rel(actual: torch.Tensor, expected: torch.Tensor) -> float:
    a, e = actual.to(torch.complex128), expected.to(torch.complex128)
    scale = e.abs().max().item() if e.numel() else 0.0
    return (a - e).abs().max().item() / (scale or 1.0) if e.numel() else 0.0


class EmulatedOps:
    """The four CUDA ops with ``torch.ops.ssm``'s signatures, run through the emulation."""

    def __init__(self, *, max_grid: int = 2**31 - 1, schedule: Schedule = "forward"):
        self.kw = dict(max_grid=max_grid, schedule=schedule)

    def cauchy(self, v, z, w):
        return cauchy(v, z, w, **self.kw)

    def cauchy_backward(self, grad, v, z, w):
        return cauchy_backward(grad, v, z, w, **self.kw)

    def vandermonde(self, v, x, L):
        return vandermonde(v, x, L, **self.kw)

    def vandermonde_sums(self, u, x, weighted):
        return vandermonde_sums(u, x, weighted, **self.kw)


def check_errors(R: int, N: int, L: int, dtype: torch.dtype, ops=None, *, device="cpu", seed: int = 0) -> dict[str, float]:
    """Relative error of each kernel against the float64 ``*_ref`` formulas on one shape.

    ``ops``: an object with ``torch.ops.ssm``'s four CUDA ops (default: the emulation,
    ``EmulatedOps()``); ``python -m ssm.ops.gpucheck`` passes ``torch.ops.ssm`` with
    ``device="cuda"`` to run the same check on a GPU. Inputs are rounded to ``dtype`` first, so
    the reference sees exactly what the kernel sees.
    """
    from .cauchy import cauchy_ref
    from .vandermonde import vandermonde_ref, vandermonde_transpose_ref

    ops = EmulatedOps() if ops is None else ops
    gen = torch.Generator().manual_seed(seed)
    c128 = torch.complex128
    real = torch.float32 if dtype == torch.complex64 else torch.float64
    v = torch.randn(R, N, dtype=c128, generator=gen)
    w = _poles(R, N, gen)
    z = torch.exp(1j * torch.linspace(0.1, 3.0, L, dtype=torch.float64)).to(c128) * 1.5
    grad = torch.randn(R, L, dtype=c128, generator=gen)
    x = _poles(R, N, gen) * 0.05
    u = torch.randn(R, L, dtype=torch.float64, generator=gen)
    v, w, z, grad, x = (t.to(dtype).to(c128) for t in (v, w, z, grad, x))
    u = u.to(real).double()
    lo = lambda t: t.to(device=device, dtype=dtype if t.is_complex() else real)  # noqa: E731

    # float64 references; the cauchy backward by autograd through cauchy_ref (PyTorch's
    # convention, as the op's: grad is dL/d(conj out))
    vr, wr = v.clone().requires_grad_(), w.clone().requires_grad_()
    exact_gv, exact_gw = torch.autograd.grad(cauchy_ref(vr, z, wr), (vr, wr), grad, allow_unused=True)
    exact_gv = torch.zeros_like(v) if exact_gv is None else exact_gv  # unused when the output is empty
    exact_gw = torch.zeros_like(w) if exact_gw is None else exact_gw
    ones = torch.ones_like(x)
    exact_S = vandermonde_transpose_ref(u.to(c128), ones, x)
    exact_T = vandermonde_transpose_ref((u * torch.arange(L, dtype=torch.float64)).to(c128), ones, x)

    gv, gw = ops.cauchy_backward(lo(grad), lo(v), lo(z), lo(w))
    S, T = ops.vandermonde_sums(lo(u), lo(x), True)
    return {
        "cauchy": _rel(ops.cauchy(lo(v), lo(z), lo(w)), cauchy_ref(v, z, w)),
        "cauchy_backward": max(_rel(gv, exact_gv), _rel(gw, exact_gw)),
        "vandermonde": _rel(ops.vandermonde(lo(v), lo(x), L), vandermonde_ref(v, x, L)),
        "vandermonde_sums": max(_rel(S, exact_S), _rel(T, exact_T)),
    }


def report(ops_for, shapes, title: str) -> int:
    """Print one line per (dtype, shape, kernel) and return the number of mismatches.

    ``ops_for(max_grid)`` gives the ops to check (and the device) for one shape's grid cap.
    """
    failed = 0
    print(f"{'kernel':18s} {'dtype':10s} {'R x N x L':>16s} {'max_grid':>10s} {'rel. error':>11s}  result  ({title})")
    for dtype in (torch.complex64, torch.complex128):
        for R, N, L, max_grid in shapes:
            ops, device = ops_for(max_grid)
            for name, err in check_errors(R, N, L, dtype, ops, device=device).items():
                ok = err <= TOLERANCE[dtype]
                failed += not ok
                print(f"{name:18s} {str(dtype).removeprefix('torch.'):10s} {f'{R}x{N}x{L}':>16s} {max_grid:>10d} {err:11.2e}  {'ok' if ok else 'MISMATCH'}")
    return failed


# (R, N, L, max_grid): odd L, N not a power of two, N over one shared-memory tile (128), L over
# one chunk (2048), more tasks than the grid cap, and the empty edges.
CHECK_SHAPES = [(2, 7, 33, 2**31 - 1), (3, 130, 301, 2), (2, 19, 2050, 3), (1, 0, 5, 2), (2, 5, 0, 2)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ssm.ops.emulate", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="check every emulated kernel against float64")
    parser.add_argument("--verbose", action="store_true", help="print the compiler's output")
    args = parser.parse_args(argv)
    if not args.check:
        parser.print_help()
        return 2
    build(verbose=args.verbose)
    failed = report(lambda max_grid: (EmulatedOps(max_grid=max_grid), "cpu"), CHECK_SHAPES, "CUDA kernels emulated on the CPU")
    print("all emulated kernels match float64" if not failed else f"{failed} MISMATCH(ES)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
