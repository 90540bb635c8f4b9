"""``ssm-bench``: side-by-side benchmarks, printed as a table and written as JSON.

    ssm-bench kernels [--rows 256] [--n 32] [--length 4096] [--repeats 7] [--threads 1,2] [--json out.json]
    ssm-bench layers [--layers S4,S4D,...] [--d-model 256] [--threads 1,2] [--json out.json]   (CUDA: also peak memory)
    ssm-bench generate [--batches 1,16,64] [--length 256] [--repeats 3] [--threads 1,2] [--json out.json]

``--threads`` takes a comma list of torch intra-op thread counts (default: torch's own count):
each measurement is then taken at every count, the counts taking turns run by run, and every row
names its count; ``kernels`` adds the speed-up and parallel efficiency of each count over the
smallest.

``kernels`` times every available backend of ``cauchy`` and ``vandermonde`` in one process, on
the same inputs, forward and forward+backward: ``naive`` (the ``*_ref`` functions, which
materialise the (rows, N, L) tensor), ``torch`` (chunked), ``cpp``, ``keops``, ``cuda``.
For each it reports the median and interquartile range of ``--repeats`` timed runs after one
warm-up, the peak extra memory of one run, and the max relative error against a float64
reference on the first ``--check-rows`` rows. N is the number of conjugate pairs (d_state/2).

``generate`` times end-to-end ``ssm.models.generation.sample`` of the default SaShiMi (random
weights; d_model 64, 8 layers, pool 4,4, expand 2, S4 d_state 64, 256 tokens) per batch size:
the reference (``model.step`` once per sample, i.e. every layer's ``step``) against the fast path
(``FastStepper``, with its fused C++ residual chain and state banks on CPU; ``fast-torch`` is the
same stepper with ``backend="torch"``, the PyTorch reference versions of both), and on CUDA also
the fast path replayed from CUDA graphs. Each figure is the median over ``--repeats`` runs after
one warm-up run, setup included, the paths taking turns run by run (a drift in the machine's
speed then hits them alike); throughput is generated samples per second summed over the batch. ``setup s`` is the median time of building the stepper
alone (what ``sample`` does once per call before the first step), and ``steady/s`` the
throughput with it taken out: what a long generation approaches.

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` above the inputs. On CPU, one run in
a fresh subprocess whose resident set size is sampled every 0.5 ms, reported above its level
before the run; that subprocess fixes glibc's ``MALLOC_MMAP_THRESHOLD_`` so freed blocks go back
to the system and cannot hide a peak. Timing stays in the main process with the normal allocator
(a fixed mmap threshold makes every large temporary page-fault, which would slow the naive path
unfairly).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from . import ops
from .ops import _dispatch

MMAP_ENV = "MALLOC_MMAP_THRESHOLD_"


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


# ---- measurement ---------------------------------------------------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _PeakRSS:
    """Peak resident memory above the level at entry, sampled in a background thread."""

    def __enter__(self):
        self.base = self.peak = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(0.0005)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())
        self.extra = self.peak - self.base


def _sync(device: str):
    if device == "cuda":
        torch.cuda.synchronize()


def _thread_counts(spec: str) -> list[int]:
    """``--threads``: a comma list of positive intra-op thread counts; '' is torch's current one."""
    if not spec:
        return [torch.get_num_threads()]
    try:
        counts = [int(t) for t in spec.split(",")]
    except ValueError:
        counts = []
    if not counts or any(c < 1 for c in counts):
        raise SystemExit(f"ssm-bench: --threads must be a comma list of positive integers, got {spec!r}")
    return counts


def _at_threads(threads: int, fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` run with torch set to ``threads`` intra-op threads (setting them costs microseconds)."""
    def run():
        torch.set_num_threads(threads)
        return fn()
    return run


def _time_at_threads(runs: list[tuple[int, Callable[[], object]]], repeats: int, device: str) -> list[tuple[float, float]]:
    """``_time_interleaved`` of (thread count, function) pairs, each run at its count; torch's
    count is restored afterwards."""
    before = torch.get_num_threads()
    try:
        return _time_interleaved([_at_threads(t, fn) for t, fn in runs], repeats, device)
    finally:
        torch.set_num_threads(before)


def _time_threads(fn: Callable[[], object], threads: list[int], repeats: int, device: str) -> list[tuple[float, float]]:
    """(median, IQR) in ms of ``fn`` at each thread count, the counts in round robin."""
    return _time_at_threads([(t, fn) for t in threads], repeats, device)


def _time_interleaved(fns: list[Callable[[], object]], repeats: int, device: str) -> list[tuple[float, float]]:
    """(median, IQR) in ms of several functions in round robin (one warm-up each, then ``repeats`` rounds of
    one run each), so that a machine whose speed drifts over minutes slows them all alike and
    their ratios stay side by side."""
    for fn in fns:
        fn()
    _sync(device)
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times):
            start = time.perf_counter()
            fn()
            _sync(device)
            ts.append((time.perf_counter() - start) * 1e3)
    out = []
    for ts in times:
        q = statistics.quantiles(ts, n=4) if len(ts) > 1 else [ts[0]] * 3
        out.append((statistics.median(ts), q[2] - q[0]))
    return out


def _peak_mb(fn: Callable[[], object], device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    with _PeakRSS() as peak:
        fn()
    return peak.extra / 2**20


def _peak_mb_cpu_subprocess(op: str, mode: str, backend: str, rows: int, n: int, length: int, threads: int) -> float:
    spec = json.dumps({"op": op, "mode": mode, "backend": backend, "rows": rows, "n": n, "length": length, "threads": threads})
    env = dict(os.environ, **{MMAP_ENV: str(1 << 16)})
    proc = subprocess.run([sys.executable, "-m", "ssm.bench", "_peak", spec], env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"memory probe failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    return float(proc.stdout.strip().splitlines()[-1])


def _peak_probe(spec: str) -> int:
    """Hidden subcommand: one warmed-up run in this fresh process, print the peak extra MB."""
    cfg = json.loads(spec)
    torch.set_num_threads(cfg["threads"])
    v, z, w = _inputs(cfg["rows"], cfg["n"], cfg["length"], "cpu")
    grad = cfg["mode"] == "fwd+bwd"
    v.requires_grad_(grad)
    w.requires_grad_(grad)
    run = _runner(cfg["op"], cfg["backend"], v, z, w, cfg["length"], cfg["mode"])
    run()  # warm-up: library load, keops compile
    print(f"{_peak_mb(run, 'cpu'):.3f}")
    return 0


# ---- the kernels benchmark -----------------------------------------------------------------


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


def bench_kernels(args) -> list[Record]:
    device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    candidates = ["naive", "torch", "cpp", "keops", "cuda"] if not args.backends else args.backends.split(",")
    budget = args.naive_budget_gb * 2**30 if args.naive_budget_gb else 0.5 * _available_bytes()
    threads = _thread_counts(args.threads)
    records: list[Record] = []
    for op in args.ops.split(","):
        v, z, w = _inputs(args.rows, args.n, args.length, device)
        ref = _reference(op, v, z, w, args.length, args.check_rows)
        for mode in args.modes.split(","):
            for backend in candidates:
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
                    print(_row(rec), flush=True)
    return records


def _skip_reason(op: str, mode: str, backend: str, v, z, w, args, budget: float) -> str | None:
    """Why ``backend`` is not run for this op and size, or None."""
    if backend not in ("naive", *_dispatch.BACKENDS):
        return f"unknown backend {backend!r}"
    if backend != "naive":
        reason = _dispatch_reason(op, backend, v, z, w)
        if reason:
            return f"unavailable: {reason}"
    if backend == "naive" and _naive_bytes(op, args.rows, args.n, args.length, mode) > budget:
        need = _naive_bytes(op, args.rows, args.n, args.length, mode) / 2**30
        return f"not run: needs ~{need:.0f} GB > budget {budget / 2**30:.0f} GB"
    if backend == "keops" and args.length * args.rows * args.n > args.keops_max_terms:
        return "not run: above --keops-max-terms"
    return None


def _measure(recs: list[Record], run, op: str, backend: str, v, z, w, ref, args, device: str) -> None:
    """Time, peak memory and error of ``run`` at each record's thread count (timings in turns)."""
    timed = _time_threads(run, [r.threads for r in recs], args.repeats, device)
    before = torch.get_num_threads()
    try:
        for rec, (median, iqr) in zip(recs, timed, strict=True):
            rec.median_ms, rec.iqr_ms = median, iqr
            torch.set_num_threads(rec.threads)
            rec.peak_extra_mb = (
                _peak_mb(run, device) if device == "cuda"
                else _peak_mb_cpu_subprocess(op, rec.mode, backend, args.rows, args.n, args.length, rec.threads)
            )
            with torch.no_grad():
                out = _runner(op, backend, v[: args.check_rows].detach(), z, w[: args.check_rows].detach(), args.length, "fwd")()
            rec.max_rel_err = float((out.detach().cpu().to(ref.dtype) - ref).abs().max() / ref.abs().max())
    finally:
        torch.set_num_threads(before)


def _dispatch_reason(op: str, backend: str, v, z, w) -> str | None:
    import importlib

    module = importlib.import_module(f"ssm.ops.{op}")
    return module.PREDICATES[backend](v, z, w) if op == "cauchy" else module.PREDICATES[backend](v, w)


HEADER = (f"{'op':12s} {'mode':8s} {'backend':8s} {'threads':>7s} {'median ms':>11s} {'IQR ms':>9s} {'peak MB':>9s} "
          f"{'rel err':>9s}  status")


def _row(r: Record) -> str:
    fmt = lambda x, f: (f % x) if x is not None else "-"
    return (f"{r.op:12s} {r.mode:8s} {r.backend:8s} {fmt(r.threads, '%7d'):>7s} {fmt(r.median_ms, '%11.2f'):>11s} "
            f"{fmt(r.iqr_ms, '%9.2f'):>9s} {fmt(r.peak_extra_mb, '%9.1f'):>9s} {fmt(r.max_rel_err, '%9.1e'):>9s}  {r.status}")


def _table(records: list[Record]) -> str:
    """Every record, then the fast backend's speed-up over each other backend at the same thread
    count, and each backend's thread scaling: speed-up and parallel efficiency over the smallest
    count."""
    lines = [HEADER] + [_row(r) for r in records]
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


LAYER_FACTORIES = {
    "S4": lambda H, N: __import__("ssm").S4(H, N),
    "S4D": lambda H, N: __import__("ssm").S4D(H, N),
    "S4PTD": lambda H, N: __import__("ssm").S4PTD(H, N),
    "S5": lambda H, N: __import__("ssm").S5(H, N, blocks=max(1, N // 16)),
    "S5PTD": lambda H, N: __import__("ssm").S5PTD(H, N, blocks=max(1, N // 16)),
}


def bench_layers(args) -> list[dict]:
    """Step latency at the given batch sizes and forward+backward throughput, per layer."""
    device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    threads = _thread_counts(args.threads)
    rows = []
    for name in args.layers.split(","):
        torch.manual_seed(0)
        layer = LAYER_FACTORIES[name](args.d_model, args.d_state).to(device)
        # forward + backward throughput (training mode, no state)
        x = torch.randn(args.batch, args.length, args.d_model, device=device, requires_grad=True)

        def train_step(layer=layer, x=x):
            layer.zero_grad(set_to_none=True)
            y, _ = layer(x)
            y.square().mean().backward()

        # peak memory of one training step above the inputs (CUDA only: an in-process RSS probe
        # on CPU would be confounded by the allocator's cache)
        peak = _peak_mb(train_step, device) if device == "cuda" else None
        for t, (med, iqr) in zip(threads, _time_threads(train_step, threads, args.repeats, device), strict=True):
            rows.append({"layer": name, "what": f"fwd+bwd B={args.batch} L={args.length}", "threads": t, "median_ms": med,
                         "iqr_ms": iqr, "throughput": args.batch * args.length / (med / 1e3), "unit": "tokens/s",
                         "peak_mb": peak})
            print(_layer_row(rows[-1]), flush=True)
        layer.eval()
        with torch.no_grad():
            layer.setup_step()
            for batch in [int(b) for b in args.step_batches.split(",")]:
                state = layer.default_state(batch)
                xt = torch.randn(batch, args.d_model, device=device)

                def one_step(state=state, xt=xt, layer=layer):
                    return layer.step(xt, state)

                timed = _time_threads(one_step, threads, max(args.repeats, 50), device)
                for t, (med, iqr) in zip(threads, timed, strict=True):
                    rows.append({"layer": name, "what": f"step B={batch}", "threads": t, "median_ms": med, "iqr_ms": iqr,
                                 "throughput": batch / (med / 1e3), "unit": "samples/s"})
                    print(_layer_row(rows[-1]), flush=True)
        layer.train()
    return rows


def _layer_row(r: dict) -> str:
    peak = f"  peak {r['peak_mb']:.0f} MB" if r.get("peak_mb") is not None else ""
    return (f"{r['layer']:8s} {r['what']:26s} {r['threads']:7d} {r['median_ms']:10.3f} {r['iqr_ms']:9.3f} "
            f"{r['throughput']:14.0f} {r['unit']}{peak}")


def bench_generate(args) -> list[dict]:
    """Samples/second of ``sample`` per device and batch size: reference step loop vs fast path."""
    import functools

    from .layers import S4, S4D, S5
    from .models.generation import make_stepper, sample
    from .models.sashimi import SaShiMi

    layers = {"S4": S4, "S4D": S4D, "S5": S5}
    if args.layer not in layers:
        raise SystemExit(f"ssm-bench generate: --layer must be one of {', '.join(layers)}, got {args.layer!r}")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and not args.cpu else [])
    pool = tuple(int(p) for p in args.pool.split(","))
    threads = _thread_counts(args.threads)
    rows = []
    for device in devices:
        torch.manual_seed(0)
        model = SaShiMi(args.d_model, args.n_layers, pool=pool, expand=args.expand, ff=args.ff,
                        layer=functools.partial(layers[args.layer], d_state=args.d_state), device=device).eval()
        paths = [("reference", {"fast": False}), ("fast", {"fast": True})]
        if device == "cpu":  # the fast path with its PyTorch chain and banks instead of the fused C++ ops
            paths.insert(1, ("fast-torch", {"fast": True, "backend": "torch"}))
        if args.compile:
            paths.append(("fast+compile", {"fast": True, "compile": True}))
        if device == "cuda":
            paths.append(("fast+graph", {"fast": True, "cuda_graph": True}))
        for batch in [int(b) for b in args.batches.split(",")]:
            def run(kw, batch=batch, model=model, device=device):
                g = torch.Generator(device=device).manual_seed(0)
                return sample(model, batch, args.length, generator=g, **kw)

            def setup(kw, batch=batch, model=model):  # what sample() builds before its first step
                with torch.inference_mode():
                    return make_stepper(model, batch, **kw)

            # every path and its setup at every thread count in round robin, so the ratios are side by side
            runs = [(t, path, kw) for t in threads for path, kw in paths]
            timed = _time_at_threads([(t, functools.partial(f, kw)) for t, _, kw in runs for f in (run, setup)],
                                     args.repeats, device)
            reference = None
            for k, (t, path, kw) in enumerate(runs):
                (med, iqr), (setup_ms, _) = timed[2 * k], timed[2 * k + 1]
                rate = batch * (args.length - 1) / (med / 1e3)
                steady = batch * (args.length - 1) / (max(med - setup_ms, 1e-9) / 1e3)
                reference = (rate, steady) if path == "reference" else reference  # same thread count: it comes first
                rows.append({"device": device, "batch": batch, "threads": t, "path": path, "length": args.length,
                             "median_ms": med, "iqr_ms": iqr, "samples_per_s": rate,
                             "speedup": rate / reference[0] if reference else None, "setup_ms": setup_ms,
                             "steady_samples_per_s": steady,
                             "steady_speedup": steady / reference[1] if reference else None})
                print(_generate_row(rows[-1]), flush=True)
    return rows


GENERATE_HEADER = (f"{'device':6s} {'batch':>5s} {'threads':>7s} {'path':13s} {'median s':>9s} {'IQR s':>7s} {'samples/s':>10s} "
                   f"{'speed-up':>8s} {'setup s':>8s} {'steady/s':>9s} {'speed-up':>8s}")


def _generate_row(r: dict) -> str:
    def x(v):
        return f"{v:7.1f}x" if v else "       -"

    return (f"{r['device']:6s} {r['batch']:5d} {r['threads']:7d} {r['path']:13s} {r['median_ms'] / 1e3:9.3f} {r['iqr_ms'] / 1e3:7.3f} "
            f"{r['samples_per_s']:10.0f} {x(r['speedup'])} {r['setup_ms'] / 1e3:8.3f} {r['steady_samples_per_s']:9.0f} "
            f"{x(r['steady_speedup'])}")


def _machine() -> dict:
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),  # torch's default; each record names the count it ran at
        "cores": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ssm-bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    k = sub.add_parser("kernels", help="Cauchy and Vandermonde, every backend side by side")
    k.add_argument("--rows", type=int, default=256)
    k.add_argument("--n", type=int, default=32, help="conjugate pairs (d_state / 2)")
    k.add_argument("--length", type=int, default=4096)
    k.add_argument("--repeats", type=int, default=7)
    k.add_argument("--ops", default="cauchy,vandermonde")
    k.add_argument("--modes", default="fwd,fwd+bwd")
    k.add_argument("--backends", default="", help="comma list from naive,torch,cpp,keops,cuda (default: all)")
    k.add_argument("--check-rows", type=int, default=8, help="rows compared with the float64 reference")
    k.add_argument("--naive-budget-gb", type=float, default=0.0, help="skip naive above this (default: half of free RAM)")
    k.add_argument("--keops-max-terms", type=int, default=2**31, help="skip keops above rows*N*L terms")
    k.add_argument("--threads", default="", help="comma list of torch intra-op thread counts (default: torch's)")
    k.add_argument("--cpu", action="store_true", help="benchmark on CPU even when CUDA is present")
    k.add_argument("--json", default="", help="write the records here")
    ly = sub.add_parser("layers", help="per-layer step latency and forward+backward throughput")
    ly.add_argument("--layers", default="S4,S4D,S4PTD,S5,S5PTD")
    ly.add_argument("--d-model", type=int, default=256)
    ly.add_argument("--d-state", type=int, default=64)
    ly.add_argument("--length", type=int, default=4096)
    ly.add_argument("--batch", type=int, default=1)
    ly.add_argument("--step-batches", default="1,16")
    ly.add_argument("--repeats", type=int, default=5)
    ly.add_argument("--threads", default="", help="comma list of thread counts (default: torch's)")
    ly.add_argument("--cpu", action="store_true")
    ly.add_argument("--json", default="")
    gen = sub.add_parser("generate", help="SaShiMi sampling: reference step loop vs fast path, samples/s")
    gen.add_argument("--batches", default="1,16,64")
    gen.add_argument("--length", type=int, default=256, help="tokens per sequence (the first is the start token)")
    gen.add_argument("--repeats", type=int, default=3)
    gen.add_argument("--d-model", type=int, default=64)
    gen.add_argument("--n-layers", type=int, default=8)
    gen.add_argument("--pool", default="4,4")
    gen.add_argument("--expand", type=int, default=2)
    gen.add_argument("--ff", type=int, default=2)
    gen.add_argument("--layer", default="S4", help="S4, S4D or S5")
    gen.add_argument("--d-state", type=int, default=64)
    gen.add_argument("--compile", action="store_true", help="also time the torch.compile-d fast path (slow to build)")
    gen.add_argument("--threads", default="", help="comma list of thread counts (default: torch's)")
    gen.add_argument("--cpu", action="store_true", help="CPU only even when CUDA is present")
    gen.add_argument("--json", default="")
    probe = sub.add_parser("_peak", help=argparse.SUPPRESS)
    probe.add_argument("spec")
    args = parser.parse_args(argv)
    if args.command == "_peak":
        return _peak_probe(args.spec)

    if args.command == "generate":
        print(f"# {json.dumps(_machine())}\n# SaShiMi d_model={args.d_model} n_layers={args.n_layers} pool={args.pool} "
              f"expand={args.expand} ff={args.ff} layer={args.layer} d_state={args.d_state} length={args.length} "
              f"repeats={args.repeats} (median of end-to-end sample() calls, setup included)")
        print(GENERATE_HEADER, flush=True)
        rows = bench_generate(args)
        if args.json:
            Path(args.json).write_text(json.dumps({"machine": _machine(), "args": vars(args), "records": rows}, indent=1))
            print(f"wrote {args.json}")
        return 0
    if args.command == "layers":
        print(f"# {json.dumps(_machine())}\n# d_model={args.d_model} d_state={args.d_state}")
        print(f"{'layer':8s} {'what':26s} {'threads':>7s} {'median ms':>10s} {'IQR ms':>9s} {'throughput':>14s}")
        rows = bench_layers(args)
        if args.json:
            Path(args.json).write_text(json.dumps({"machine": _machine(), "args": vars(args), "records": rows}, indent=1))
            print(f"wrote {args.json}")
        return 0
    print(f"# {json.dumps(_machine())}\n# rows={args.rows} N={args.n} pairs (d_state {2 * args.n}) L={args.length} repeats={args.repeats}")
    print(HEADER, flush=True)
    records = bench_kernels(args)
    print()
    print(_table(records))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": _machine(), "args": vars(args), "records": [asdict(r) for r in records]}, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
