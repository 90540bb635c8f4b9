"""``ssm-bench layers``: per layer, forward+backward throughput and the latency of one recurrent step.

    ssm-bench layers [layers=S4,S4D,S4PTD,S5,S5PTD] [d_model=256] [d_state=64] [threads=1,2] [json=out.json]

Each layer is built at ``d_model``/``d_state`` with its defaults (S5: ``d_state // 16`` blocks)
and timed in training mode on a (``batch``, ``length``, ``d_model``) input, then in eval mode one
``step`` at each of ``step_batches``. On CUDA also the peak memory of one training step.
"""

from __future__ import annotations

import dataclasses
import json

import torch
from torch import nn

from ...layers import S4, S4D, S4PTD, S5, S5PTD
from ..args import boolean, choices, integer, integers, option, path
from .common import bench_device, machine, peak_mb, thread_counts, threads_option, time_threads, write_json

LAYERS = ("S4", "S4D", "S4PTD", "S5", "S5PTD")


def make_layer(name: str, d_model: int, d_state: int) -> nn.Module:
    """The benchmarked layer ``name`` at its defaults."""
    if name in ("S5", "S5PTD"):
        return {"S5": S5, "S5PTD": S5PTD}[name](d_model, d_state, blocks=max(1, d_state // 16))
    return {"S4": S4, "S4D": S4D, "S4PTD": S4PTD}[name](d_model, d_state)


@dataclasses.dataclass
class Options:
    layers: tuple[str, ...] = option(LAYERS, choices(*LAYERS), "comma list of layers")
    d_model: int = option(256, integer(1), "channels H")
    d_state: int = option(64, integer(1), "state size N")
    length: int = option(4096, integer(1), "sequence length of the forward+backward timing")
    batch: int = option(1, integer(1), "batch of the forward+backward timing")
    step_batches: tuple[int, ...] = option((1, 16), integers(1), "comma list of batch sizes for the step latency")
    repeats: int = option(5, integer(1), "timed runs after one warm-up (steps: at least 50)")
    threads: tuple[int, ...] | None = threads_option()
    cpu: bool = option(False, boolean, "benchmark on CPU even when CUDA is present")
    json: str | None = option(None, path, "write the records here")


def bench_layers(args: Options) -> list[dict]:
    """Step latency at the given batch sizes and forward+backward throughput, per layer."""
    device = bench_device(args.cpu)
    threads = thread_counts(args.threads)
    rows = []
    for name in args.layers:
        torch.manual_seed(0)
        layer = make_layer(name, args.d_model, args.d_state).to(device)
        # forward + backward throughput (training mode, no state)
        x = torch.randn(args.batch, args.length, args.d_model, device=device, requires_grad=True)  # (B, L, H)

        def train_step(layer=layer, x=x):
            layer.zero_grad(set_to_none=True)
            y, _ = layer(x)
            y.square().mean().backward()

        # peak memory of one training step above the inputs (CUDA only: an in-process RSS probe
        # on CPU would be confounded by the allocator's cache)
        peak = peak_mb(train_step, device) if device == "cuda" else None
        for t, (med, iqr) in zip(threads, time_threads(train_step, threads, args.repeats, device), strict=True):
            rows.append({"layer": name, "what": f"fwd+bwd B={args.batch} L={args.length}", "threads": t, "median_ms": med,
                         "iqr_ms": iqr, "throughput": args.batch * args.length / (med / 1e3), "unit": "tokens/s",
                         "peak_mb": peak})
            print(row(rows[-1]), flush=True)
        layer.eval()
        with torch.no_grad():
            layer.setup_step()
            for batch in args.step_batches:
                state = layer.default_state(batch)
                xt = torch.randn(batch, args.d_model, device=device)  # (B, H)

                def one_step(state=state, xt=xt, layer=layer):
                    return layer.step(xt, state)

                timed = time_threads(one_step, threads, max(args.repeats, 50), device)
                for t, (med, iqr) in zip(threads, timed, strict=True):
                    rows.append({"layer": name, "what": f"step B={batch}", "threads": t, "median_ms": med, "iqr_ms": iqr,
                                 "throughput": batch / (med / 1e3), "unit": "samples/s"})
                    print(row(rows[-1]), flush=True)
        layer.train()
    return rows


HEADER = f"{'layer':8s} {'what':26s} {'threads':>7s} {'median ms':>10s} {'IQR ms':>9s} {'throughput':>14s}"


def row(r: dict) -> str:
    peak = f"  peak {r['peak_mb']:.0f} MB" if r.get("peak_mb") is not None else ""
    return (f"{r['layer']:8s} {r['what']:26s} {r['threads']:7d} {r['median_ms']:10.3f} {r['iqr_ms']:9.3f} "
            f"{r['throughput']:14.0f} {r['unit']}{peak}")


def run(args: Options) -> None:
    print(f"# {json.dumps(machine())}\n# d_model={args.d_model} d_state={args.d_state}")
    print(HEADER)
    write_json(args.json, args, bench_layers(args))
