"""``ssm-bench generate``: samples/second of SaShiMi sampling, reference step loop against the fast path.

    ssm-bench generate [batches=1,16,64] [length=256] [repeats=3] [threads=1,2] [json=out.json]

Times end-to-end ``ssm.models.generation.sample`` of the default SaShiMi (random weights;
d_model 64, 8 layers, pool 4,4, expand 2, S4 d_state 64, 256 tokens) per batch size: the
reference (``model.step`` once per sample, i.e. every layer's ``step``) against the fast path
(``FastStepper``, with its fused C++ residual chain and state banks on CPU; ``fast-torch`` is the
same stepper with ``backend="torch"``, the PyTorch reference versions of both), and on CUDA also
the fast path replayed from CUDA graphs. Each figure is the median over ``repeats`` runs after
one warm-up run, setup included, the paths taking turns run by run (a drift in the machine's
speed then hits them alike); throughput is generated samples per second summed over the batch.
``setup s`` is the median time of building the stepper alone (what ``sample`` does once per call
before the first step), and ``steady/s`` the throughput with it taken out: what a long
generation approaches.
"""

from __future__ import annotations

import dataclasses
import functools
import json

import torch

from ...layers import S4, S4D, S5
from ...models.generation import make_stepper, sample
from ...models.sashimi import SaShiMi
from ..args import boolean, choice, integer, integers, option, path
from .common import machine, thread_counts, threads_option, time_at_threads, write_json

LAYERS = {"S4": S4, "S4D": S4D, "S5": S5}


@dataclasses.dataclass
class Options:
    batches: tuple[int, ...] = option((1, 16, 64), integers(1), "comma list of batch sizes")
    length: int = option(256, integer(2), "tokens per sequence (the first is the start token)")
    repeats: int = option(3, integer(1), "timed runs after one warm-up")
    d_model: int = option(64, integer(1), "SaShiMi channels")
    n_layers: int = option(8, integer(1), "residual blocks per tier")
    pool: tuple[int, ...] = option((4, 4), integers(1), "comma list of pooling factors")
    expand: int = option(2, integer(1), "channel expansion per pooling")
    ff: int = option(2, integer(1), "feed-forward expansion")
    layer: str = option("S4", choice(*LAYERS), "the SSM layer: S4, S4D or S5")
    d_state: int = option(64, integer(1), "state size N")
    compile: bool = option(False, boolean, "also time the torch.compile-d fast path (slow to build)")
    threads: tuple[int, ...] | None = threads_option()
    cpu: bool = option(False, boolean, "CPU only even when CUDA is present")
    json: str | None = option(None, path, "write the records here")


def bench_generate(args: Options) -> list[dict]:
    """Samples/second of ``sample`` per device and batch size: reference step loop vs fast path."""
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and not args.cpu else [])
    threads = thread_counts(args.threads)
    rows = []
    for device in devices:
        torch.manual_seed(0)
        model = SaShiMi(args.d_model, args.n_layers, pool=args.pool, expand=args.expand, ff=args.ff,
                        layer=functools.partial(LAYERS[args.layer], d_state=args.d_state), device=device).eval()
        paths = [("reference", {"fast": False}), ("fast", {"fast": True})]
        if device == "cpu":  # the fast path with its PyTorch chain and banks instead of the fused C++ ops
            paths.insert(1, ("fast-torch", {"fast": True, "backend": "torch"}))
        if args.compile:
            paths.append(("fast+compile", {"fast": True, "compile": True}))
        if device == "cuda":
            paths.append(("fast+graph", {"fast": True, "cuda_graph": True}))
        for batch in args.batches:
            def run(kw, batch=batch, model=model, device=device):
                g = torch.Generator(device=device).manual_seed(0)
                return sample(model, batch, args.length, generator=g, **kw)

            def setup(kw, batch=batch, model=model):  # what sample() builds before its first step
                with torch.inference_mode():
                    return make_stepper(model, batch, **kw)

            # every path and its setup at every thread count in round robin, so the ratios are side by side
            runs = [(t, name, kw) for t in threads for name, kw in paths]
            timed = time_at_threads([(t, functools.partial(f, kw)) for t, _, kw in runs for f in (run, setup)],
                                    args.repeats, device)
            reference = None
            for k, (t, name, kw) in enumerate(runs):
                (med, iqr), (setup_ms, _) = timed[2 * k], timed[2 * k + 1]
                rate = batch * (args.length - 1) / (med / 1e3)
                steady = batch * (args.length - 1) / (max(med - setup_ms, 1e-9) / 1e3)
                reference = (rate, steady) if name == "reference" else reference  # same thread count: it comes first
                rows.append({"device": device, "batch": batch, "threads": t, "path": name, "length": args.length,
                             "median_ms": med, "iqr_ms": iqr, "samples_per_s": rate,
                             "speedup": rate / reference[0] if reference else None, "setup_ms": setup_ms,
                             "steady_samples_per_s": steady,
                             "steady_speedup": steady / reference[1] if reference else None})
                print(row(rows[-1]), flush=True)
    return rows


HEADER = (f"{'device':6s} {'batch':>5s} {'threads':>7s} {'path':13s} {'median s':>9s} {'IQR s':>7s} {'samples/s':>10s} "
          f"{'speed-up':>8s} {'setup s':>8s} {'steady/s':>9s} {'speed-up':>8s}")


def row(r: dict) -> str:
    def x(v):
        return f"{v:7.1f}x" if v else "       -"

    return (f"{r['device']:6s} {r['batch']:5d} {r['threads']:7d} {r['path']:13s} {r['median_ms'] / 1e3:9.3f} {r['iqr_ms'] / 1e3:7.3f} "
            f"{r['samples_per_s']:10.0f} {x(r['speedup'])} {r['setup_ms'] / 1e3:8.3f} {r['steady_samples_per_s']:9.0f} "
            f"{x(r['steady_speedup'])}")


def run(args: Options) -> None:
    pool = ",".join(map(str, args.pool))
    print(f"# {json.dumps(machine())}\n# SaShiMi d_model={args.d_model} n_layers={args.n_layers} pool={pool} "
          f"expand={args.expand} ff={args.ff} layer={args.layer} d_state={args.d_state} length={args.length} "
          f"repeats={args.repeats} (median of end-to-end sample() calls, setup included)")
    print(HEADER, flush=True)
    write_json(args.json, args, bench_generate(args))
