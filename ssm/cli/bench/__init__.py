"""``ssm-bench``: side-by-side benchmarks, printed as a table and written as JSON.

    ssm-bench kernels [rows=256] [n=32] [length=4096] [repeats=7] [threads=1,2] [json=out.json]
    ssm-bench layers [layers=S4,S4D,...] [d_model=256] [threads=1,2] [json=out.json]   (CUDA: also peak memory)
    ssm-bench generate [batches=1,16,64] [length=256] [repeats=3] [threads=1,2] [json=out.json]

Each benchmark is its own module (``kernels``, ``layers``, ``generate``) with its options and
its table; ``common`` holds the timing in turns, the peak-memory probes and the JSON writer.
``threads=1,2`` (a comma list of torch intra-op thread counts; default torch's own count) takes
each measurement at every count, the counts taking turns run by run, and every row names its
count. ``ssm-bench BENCHMARK --help`` lists a benchmark's options.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .. import args
from ..args import UsageError
from . import generate, kernels, layers

BENCHMARKS = {
    "kernels": (kernels, "Cauchy and Vandermonde, every backend side by side"),
    "layers": (layers, "per-layer step latency and forward+backward throughput"),
    "generate": (generate, "SaShiMi sampling: reference step loop vs fast path, samples/s"),
}


def usage() -> str:
    lines = ["usage:", __doc__.split("\n\n")[1], "", "benchmarks:"]
    lines += [f"  {name:9s} {summary}" for name, (_, summary) in BENCHMARKS.items()]
    lines += ["", "ssm-bench BENCHMARK --help lists its key=value options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``ssm-bench BENCHMARK key=value ...``: 0 on success, 2 (with an error naming the argument) on bad input."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [kernels.PROBE]:  # hidden: the CPU peak-memory probe, run in a fresh process
        return kernels.peak_probe(argv[1])
    if argv[:1] and argv[0] in args.HELP_FLAGS:
        print(usage())
        return 0
    if not argv:
        print(f"{usage()}\n\nssm-bench: error: give a benchmark: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    name, rest = argv[0], argv[1:]
    if name not in BENCHMARKS:
        print(f"ssm-bench: error: unknown benchmark {name!r}{args.did_you_mean(name, list(BENCHMARKS))}",
              file=sys.stderr)
        return 2
    module = BENCHMARKS[name][0]
    prog = f"ssm-bench {name}"
    return args.run(module.run, module.Options, rest, prog=prog, synopsis=f"{prog} [key=value ...]",
                    summary=module.__doc__.split("\n\n")[2])


__all__ = ["BENCHMARKS", "UsageError", "main"]
