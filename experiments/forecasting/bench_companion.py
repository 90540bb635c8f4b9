"""Companion-SSM kernel timings (SpaceTime, arXiv 2303.09489): the fast O((d + L) log(d + L))
paths against dense matrix powering, over state size d and length L.

Methods (``ssm.kernels.companion``), each computing K_l = c^T A^l b, l < L, for ``--rows``
independent SSMs in float32:
- ``series``: power series N/D with a Newton series inverse (the layers' default),
- ``woodbury``: FFT/Woodbury at the L-th roots of unity, c~ = c (I - A^L) from ``companion_power_row``,
- ``woodbury-c~``: the same with c~ given (learned directly, as the reference repository does),
- ``dense``: ``companion_kernel_ref``, L dense mat-vecs with A (O(L d^2) per row); skipped when
  rows * L * d^2 exceeds ``--dense-budget``.
Each figure is the median (and IQR) over ``--repeats`` runs after one warm-up, forward and
forward+backward (gradients to a, b, c). "err" is max |K - K_ref| / max |K_ref| on the first 4
rows against the float64 dense reference on those rows.

    python experiments/forecasting/bench_companion.py --d 16 64 256 --L 256 1024 4096 --json bench.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from ssm.kernels.companion import (
    companion_kernel,
    companion_kernel_ref,
    companion_power_row,
)

METHODS = ["series", "woodbury", "woodbury-c~", "dense"]


def kernel_fn(method: str):
    if method == "dense":
        return lambda a, b, c, L: companion_kernel_ref(a, b, c, L)
    if method == "woodbury-c~":
        return lambda a, b, c, L: companion_kernel(a, b, c, L, method="woodbury", c_tilde=True)
    return lambda a, b, c, L: companion_kernel(a, b, c, L, method=method)


def timed(fn, repeats: int) -> tuple[float, float]:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    q = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    return statistics.median(times) * 1e3, (q[2] - q[0]) * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--d", type=int, nargs="+", default=[16, 64, 256])
    p.add_argument("--L", type=int, nargs="+", default=[256, 1024, 4096])
    p.add_argument("--rows", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--dense-budget", type=float, default=3e9, help="max rows * L * d^2 for the dense method")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    records = []
    for d in args.d:
        for L in args.L:
            g = torch.Generator().manual_seed(0)
            a64 = torch.randn(args.rows, d, generator=g, dtype=torch.float64)
            a64 = a64 / a64.abs().sum(-1, keepdim=True)  # ||a||_1 = 1, as the layers normalise it
            b64 = torch.randn(args.rows, d, generator=g, dtype=torch.float64) / d**0.5
            c64 = torch.randn(args.rows, d, generator=g, dtype=torch.float64) / d**0.5
            dense_ok = args.rows * L * d * d <= args.dense_budget
            small = (a64[:4], b64[:4], c64[:4])
            ref = companion_kernel_ref(*small, L) if 4 * L * d * d <= args.dense_budget else companion_kernel(*small, L)
            c_tilde = c64 - companion_power_row(a64, c64, L)  # the c~ a model would have learned
            for method in METHODS:
                rec = {"d": d, "L": L, "rows": args.rows, "method": method}
                if method == "dense" and not dense_ok:
                    records.append({**rec, "status": f"skipped: rows*L*d^2 > {args.dense_budget:.0e}"})
                    continue
                fn = kernel_fn(method)
                c_in = c_tilde if method == "woodbury-c~" else c64
                a, b, c = (t.float().requires_grad_() for t in (a64, b64, c_in))

                def fwd(fn=fn, a=a, b=b, c=c, L=L):
                    with torch.no_grad():
                        fn(a, b, c, L)

                def fwd_bwd(fn=fn, a=a, b=b, c=c, L=L):
                    fn(a, b, c, L).square().sum().backward()

                rec["fwd_ms"], rec["fwd_iqr_ms"] = timed(fwd, args.repeats)
                rec["fwd_bwd_ms"], rec["fwd_bwd_iqr_ms"] = timed(fwd_bwd, args.repeats)
                with torch.no_grad():
                    out = fn(a[:4], b[:4], c[:4], L).double()
                rec["err"] = ((out - ref).abs().max() / ref.abs().max()).item()
                rec["status"] = "ok"
                records.append(rec)
                print(f"d={d:4d} L={L:5d} {method:12s} fwd {rec['fwd_ms']:9.2f} ms  fwd+bwd {rec['fwd_bwd_ms']:9.2f} ms"
                      f"  err {rec['err']:.1e}", flush=True)

    print(f"\nrows = {args.rows}, float32, {torch.get_num_threads()} threads, torch {torch.__version__}\n")
    print("| d | L | method | fwd ms (IQR) | fwd+bwd ms (IQR) | rel. err vs float64 | speed-up fwd vs dense |")
    print("|---|---|---|---|---|---|---|")
    for r in records:
        if r["status"] != "ok":
            print(f"| {r['d']} | {r['L']} | {r['method']} | - | - | - | {r['status']} |")
            continue
        dense = next((x for x in records if x["d"] == r["d"] and x["L"] == r["L"] and x["method"] == "dense"
                      and x["status"] == "ok"), None)
        speed = f"{dense['fwd_ms'] / r['fwd_ms']:.1f}x" if dense else "-"
        print(f"| {r['d']} | {r['L']} | {r['method']} | {r['fwd_ms']:.2f} ({r['fwd_iqr_ms']:.2f}) | "
              f"{r['fwd_bwd_ms']:.2f} ({r['fwd_bwd_iqr_ms']:.2f}) | {r['err']:.1e} | {speed} |")
    if args.json:
        meta = {"args": vars(args), "torch": torch.__version__, "machine": platform.machine(),
                "processor": platform.processor(), "threads": torch.get_num_threads()}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "records": records}, f, indent=1)


if __name__ == "__main__":
    main()
