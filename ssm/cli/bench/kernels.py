"""``ssm-bench kernels``: every available backend of ``cauchy`` and ``vandermonde``, side by side.

    ssm-bench kernels [rows=256] [n=32] [length=4096] [repeats=7] [threads=1,2] [backends=torch,cpp] [json=out.json]

All backends run in one process, on the same inputs, forward and forward+backward: ``naive``
(the ``*_ref`` functions, which materialise the (rows, N, L) tensor), ``torch`` (chunked),
``cpp``, ``keops``, ``cuda``. For each it reports the median and interquartile range of
``repeats`` timed runs after one warm-up, the peak extra memory of one run, and the max relative
error against a float64 reference on the first ``check_rows`` rows. N is the number of conjugate
pairs (d_state/2). With ``threads=1,2`` every figure is taken at each count, in turns, and the
table adds the speed-up and parallel efficiency of each count over the smallest.

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` above the inputs. On CPU, one run in
a fresh subprocess whose resident set size is sampled every 0.5 ms, reported above its level
before the run; that subprocess fixes glibc's ``MALLOC_MMAP_THRESHOLD_`` so freed blocks go back
to the system and cannot hide a peak. Timing stays in the main process with the normal allocator
(a fixed mmap threshold makes every large temporary page-fault, which would slow the naive path
unfairly).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ... import ops
from ...ops.cauchy import PREDICATES as CAUCHY_SUPPORTS
from ...ops.vandermonde import PREDICATES as VANDERMONDE_SUPPORTS
from ...ops._dispatch import BACKENDS as DISPATCH_BACKENDS
from ..args import boolean, choices, integer, number, option, path
from .common import bench_device, machine, peak_mb, thread_counts, threads_option, time_threads, write_json

MMAP_ENV = "MALLOC_MMAP_THRESHOLD_"
OPS = ("cauchy", "vandermonde")
MODES = ("fwd", "fwd+bwd")
BACKENDS = ("naive", "torch", "cpp", "keops", "cuda")  # the table's order; naive = the *_ref functions
assert set(BACKENDS) == {"naive", *DISPATCH_BACKENDS}


@dataclasses.dataclass
class Options:
    rows: int = option(256, integer(1), "rows (independent kernels)")
    n: int = option(32, integer(1), "conjugate pairs (d_state / 2)")
    length: int = option(4096, integer(1), "kernel length L")
    repeats: int = option(7, integer(1), "timed runs after one warm-up")
    ops: tuple[str, ...] = option(OPS, choices(*OPS), "comma list of ops")
    modes: tuple[str, ...] = option(MODES, choices(*MODES), "comma list of fwd, fwd+bwd")
    backends: tuple[str, ...] | None = option(None, choices(*BACKENDS), "comma list of backends (none: all)")
    check_rows: int = option(8, integer(1), "rows compared with the float64 reference")
    naive_budget_gb: float = option(0.0, number(lambda v: v >= 0, "a number >= 0"),
                                    "skip naive above this many GB (0: half of the free memory)")
    keops_max_terms: int = option(2**31, integer(1), "skip keops above rows*N*L terms")
    threads: tuple[int, ...] | None = threads_option()
    cpu: bool = option(False, boolean, "benchmark on CPU even when CUDA is present")
    json: str | None = option(None, path, "write the records here")


@dataclass
class Record:
    op: str
    mode: str
    backend: str
    rows: int
    n: int
    length: int
    device: str
    status: str
    median_ms: float | None = None
    iqr_ms: float | None = None
    peak_extra_mb: float | None = None
    max_rel_err: float | None = None
    threads: int | None = None


# ---- peak memory on CPU: one run in a fresh process ------------------------------------------------


PROBE = "_peak"  # the hidden subcommand of ssm-bench that runs peak_probe


def _peak_mb_cpu_subprocess(op: str, mode: str, backend: str, rows: int, n: int, length: int, threads: int) -> float:
    spec = json.dumps({"op": op, "mode": mode, "backend": backend, "rows": rows, "n": n, "length": length, "threads": threads})
    env = dict(os.environ, **{MMAP_ENV: str(1 << 16)})
    proc = subprocess.run([sys.executable, "-m", "ssm.cli.bench", PROBE, spec], env=env, capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"memory probe failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    return float(proc.stdout.strip().splitlines()[-1])


def peak_probe(spec: str) -> int:
    """``ssm-bench _peak SPEC``: one warmed-up run in this fresh process, print the peak extra MB."""
    cfg = json.loads(spec)
    torch.set_num_threads(cfg["threads"])
    v, z, w = _inputs(cfg["rows"], cfg["n"], cfg["length"], "cpu")
    grad = cfg["mode"] == "fwd+bwd"
    v.requires_grad_(grad)
    w.requires_grad_(grad)
    run = _runner(cfg["op"], cfg["backend"], v, z, w, cfg["length"], cfg["mode"])
    run()  # warm-up: library load, keops compile
    print(f"{peak_mb(run, 'cpu'):.3f}")
    return 0


# ---- the benchmark -------------------------------------------------------------------------------


def _inputs(rows: int, n: int, length: int, device: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(rows, n, dtype=torch.complex64, generator=g)
    # S4-like poles and nodes: w = dt * Lambda, z on the imaginary axis
    dt = torch.exp(torch.empty(rows, 1).uniform_(-7, -2, generator=g))
    lam = torch.complex(torch.full((n,), -0.5), torch.pi * torch.arange(n, dtype=torch.float32))
    w = (dt * lam).to(torch.complex64)
    omega = torch.exp(-2j * torch.pi * torch.arange(length, dtype=torch.float64) / (2 * length))
    z = (2 * (1 - omega) / (1 + omega)).to(torch.complex64)
    return v.to(device), z.to(device), w.to(device)


def _naive_bytes(op: str, rows: int, n: int, length: int, mode: str) -> int:
    """Rough size of what the reference materialises: a few (rows, N, L) complex64 tensors."""
    per = rows * n * length * 8
    return per * (5 if op == "cauchy" else 3) * (2 if mode == "fwd+bwd" else 1)


def _available_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 * 2**30


def _runner(op: str, backend: str, v, z, w, length: int, mode: str) -> Callable[[], object]:
    if op == "cauchy":
        call = (lambda: ops.cauchy_ref(v, z, w)) if backend == "naive" else (lambda: ops.cauchy(v, z, w, backend=backend))
    else:
        call = (lambda: ops.vandermonde_ref(v, w, length)) if backend == "naive" else (lambda: ops.vandermonde(v, w, length, backend=backend))
    if mode == "fwd":
        def run():
            with torch.no_grad():
                return call()
        return run

    def run_bwd():
        v.grad = w.grad = None
        out = call()
        out.real.sum().backward() if out.is_complex() else out.sum().backward()
    return run_bwd


def _reference(op: str, v, z, w, length: int, check_rows: int) -> torch.Tensor:
    """float64 reference on the first rows through the chunked torch backend (bounded memory)."""
    v64, z64, w64 = (t[:check_rows].detach().cpu().to(torch.complex128) if t.dim() == 2 else t.detach().cpu().to(torch.complex128) for t in (v, z, w))
    with torch.no_grad():
        if op == "cauchy":
            return ops.cauchy(v64, z64, w64, backend="torch")
        return ops.vandermonde(v64, w64, length, backend="torch")


def bench_kernels(args: Options) -> list[Record]:
    device = bench_device(args.cpu)
    budget = args.naive_budget_gb * 2**30 if args.naive_budget_gb else 0.5 * _available_bytes()
    threads = thread_counts(args.threads)
    records: list[Record] = []
    for op in args.ops:
        v, z, w = _inputs(args.rows, args.n, args.length, device)
        ref = _reference(op, v, z, w, args.length, args.check_rows)
        for mode in args.modes:
            for backend in args.backends or BACKENDS:
                recs = [Record(op, mode, backend, args.rows, args.n, args.length, device, "ok", threads=t) for t in threads]
                records.extend(recs)
                status = _skip_reason(op, mode, backend, v, z, w, args, budget)
                if status is None:
                    grad = mode == "fwd+bwd"
                    vv, ww = v.detach().clone().requires_grad_(grad), w.detach().clone().requires_grad_(grad)
                    run = _runner(op, backend, vv, z, ww, args.length, mode)
                    try:
                        _measure(recs, run, op, backend, vv, z, ww, ref, args, device)
                    except (RuntimeError, MemoryError) as e:  # OOM and backend failures are results here
                        status = f"failed: {str(e).splitlines()[0][:120]}"
                for rec in recs:
                    rec.status = status or "ok"
                    print(row(rec), flush=True)
    return records


def _skip_reason(op: str, mode: str, backend: str, v, z, w, args: Options, budget: float) -> str | None:
    """Why ``backend`` is not run for this op and size, or None."""
    if backend != "naive":
        reason = _dispatch_reason(op, backend, v, z, w)
        if reason:
            return f"unavailable: {reason}"
    if backend == "naive" and _naive_bytes(op, args.rows, args.n, args.length, mode) > budget:
        need = _naive_bytes(op, args.rows, args.n, args.length, mode) / 2**30
        return f"not run: needs ~{need:.0f} GB > budget {budget / 2**30:.0f} GB"
    if backend == "keops" and args.length * args.rows * args.n > args.keops_max_terms:
        return "not run: above keops_max_terms"
    return None


def _measure(recs: list[Record], run, op: str, backend: str, v, z, w, ref, args: Options, device: str) -> None:
    """Time, peak memory and error of ``run`` at each record's thread count (timings in turns)."""
    timed = time_threads(run, [r.threads for r in recs], args.repeats, device)
    before = torch.get_num_threads()
    try:
        for rec, (median, iqr) in zip(recs, timed, strict=True):
            rec.median_ms, rec.iqr_ms = median, iqr
            torch.set_num_threads(rec.threads)
            rec.peak_extra_mb = (
                peak_mb(run, device) if device == "cuda"
                else _peak_mb_cpu_subprocess(op, rec.mode, backend, args.rows, args.n, args.length, rec.threads)
            )
            with torch.no_grad():
                out = _runner(op, backend, v[: args.check_rows].detach(), z, w[: args.check_rows].detach(), args.length, "fwd")()
            rec.max_rel_err = float((out.detach().cpu().to(ref.dtype) - ref).abs().max() / ref.abs().max())
    finally:
        torch.set_num_threads(before)


def _dispatch_reason(op: str, backend: str, v, z, w) -> str | None:
    """The op's own ``supports`` predicate for ``backend``: None when it would run."""
    if op == "cauchy":
        return CAUCHY_SUPPORTS[backend](v, z, w)
    return VANDERMONDE_SUPPORTS[backend](v, w)


HEADER = (f"{'op':12s} {'mode':8s} {'backend':8s} {'threads':>7s} {'median ms':>11s} {'IQR ms':>9s} {'peak MB':>9s} "
          f"{'rel err':>9s}  status")


def row(r: Record) -> str:
    fmt = lambda x, f: (f % x) if x is not None else "-"
    return (f"{r.op:12s} {r.mode:8s} {r.backend:8s} {fmt(r.threads, '%7d'):>7s} {fmt(r.median_ms, '%11.2f'):>11s} "
            f"{fmt(r.iqr_ms, '%9.2f'):>9s} {fmt(r.peak_extra_mb, '%9.1f'):>9s} {fmt(r.max_rel_err, '%9.1e'):>9s}  {r.status}")


def table(records: list[Record]) -> str:
    """Every record, then the fast backend's speed-up over each other backend at the same thread
    count, and each backend's thread scaling: speed-up and parallel efficiency over the smallest
    count."""
    lines = [HEADER] + [row(r) for r in records]
    by_key = {(r.op, r.mode, r.backend, r.threads): r for r in records if r.median_ms}
    threads = sorted({r.threads for r in records})
    for op in sorted({r.op for r in records}):
        for mode in ("fwd", "fwd+bwd"):
            for t in threads:
                fast = by_key.get((op, mode, "cpp", t)) or by_key.get((op, mode, "cuda", t))
                for other in ("naive", "torch", "keops"):
                    slow = by_key.get((op, mode, other, t))
                    if fast and slow:
                        lines.append(f"- {op} {mode}, {t} thread{'s' * (t > 1)}: {fast.backend} is "
                                     f"{slow.median_ms / fast.median_ms:.1f}x faster than {other}")
            for backend in ("cpp", "naive", "torch", "keops"):
                base = by_key.get((op, mode, backend, threads[0]))
                for t in threads[1:]:
                    more = by_key.get((op, mode, backend, t))
                    if base and more:
                        gain = base.median_ms / more.median_ms
                        lines.append(f"- {op} {mode}, {backend}: {t} threads are {gain:.2f}x {threads[0]} "
                                     f"(parallel efficiency {gain / (t / threads[0]):.0%})")
    return "\n".join(lines)


def run(args: Options) -> None:
    print(f"# {json.dumps(machine())}\n# rows={args.rows} N={args.n} pairs (d_state {2 * args.n}) L={args.length} "
          f"repeats={args.repeats}")
    print(HEADER, flush=True)
    records = bench_kernels(args)
    print()
    print(table(records))
    write_json(args.json, args, [asdict(r) for r in records])
