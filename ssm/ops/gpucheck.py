"""Validate a real GPU in one command: ``python -m ssm.ops.gpucheck --out DIR``.

The CUDA kernels are checked in CI through the CPU emulation only (``ssm.ops.emulate``). On the
day a GPU is available this runs, in order, each step in its own process with a time limit:

1. ``build``: compile and load the CUDA library (``python -m ssm.ops.build --cuda``);
2. ``kernels-check``: every CUDA kernel against float64 on the emulation's shapes (odd L, N over
   a tile, L over a chunk, empty edges), the same check as ``python -m ssm.ops.emulate --check``;
3. ``pytest-cuda``: the test suite's CUDA cases, ``pytest -m cuda`` (needs the repository's tests/);
4. ``bench-kernels``: ``ssm-bench kernels`` at rows 1024, N = 32 pairs, L = 16384, fwd and
   fwd+bwd, cuda vs torch (vs keops where installed), with the fraction of the H100 floor
   (shared/reference/performance.md section 4) for each cuda figure;
5. ``bench-layers``: ``ssm-bench layers`` for S4, S4D, S5 at d_model 256, L 16384, batch 16
   (time and peak memory);
6. ``bench-generate``: ``ssm-bench generate`` (the CUDA rows include the CUDA-graph path);
7. ``memcheck`` / ``racecheck``: step 2 once more under ``compute-sanitizer`` (PyTorch's caching
   allocator off, so out-of-bounds accesses hit real allocation boundaries).

Each step writes ``DIR/<step>.log`` (and the benchmarks ``DIR/<step>.json``); ``DIR/summary.json``
holds every step's command, exit status and time, and a table goes to stdout. A step that needs
something missing (no GPU, no tests/ directory, no compute-sanitizer, no pykeops) is skipped with
one line saying so. Nothing here imports hydra-core, omegaconf or pykeops.

``--dry-run`` (works on CPU) prints the plan and checks that every module the steps import is
importable with hydra, omegaconf and pykeops hidden, as on a GPU machine without them.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Modules the steps import (in their subprocesses), checked by --dry-run.
IMPORTS = ["torch", "ssm", "ssm.ops", "ssm.ops.build", "ssm.ops.emulate", "ssm.cli.bench", "ssm.layers",
           "ssm.models.sashimi", "ssm.models.generation", "pytest"]
# Not on the project's GPU machine: never needed by a step (pykeops only widens bench-kernels).
ABSENT_ON_GPU_MACHINE = ("hydra", "omegaconf", "pykeops")

# Floors per (row, conjugate pair, l) term on an H100 (shared/reference/performance.md, sec. 4):
# FP32 at 60 TFLOP/s, SFU at 3.75 T op/s. Cauchy: two-term form, 32 flop forward, ~64 backward.
# Vandermonde: 3 SFU ops (ex2, sin, cos) per term, forward and again in the backward's sums.
FLOOR_S_PER_TERM = {
    ("cauchy", "fwd"): 32 / 60e12,
    ("cauchy", "fwd+bwd"): (32 + 64) / 60e12,
    ("vandermonde", "fwd"): 3 / 3.75e12,
    ("vandermonde", "fwd+bwd"): 6 / 3.75e12,
}

KERNEL_BENCH = dict(rows=1024, n=32, length=16384)
LAYER_BENCH = dict(layers="S4,S4D,S5", d_model=256, length=16384, batch=16)


@dataclass
class Step:
    name: str
    what: str
    cmd: list[str]
    timeout_s: int
    env: dict[str, str] = field(default_factory=dict)
    json_out: str = ""
    skip: str = ""  # why the step cannot run here ("" when it can)


@dataclass
class Result:
    name: str
    status: str  # "ok", "FAILED (rc N)", "TIMEOUT", "skipped: why"
    seconds: float
    cmd: str
    log: str = ""
    json: str = ""


def _repo_tests() -> Path | None:
    """tests/ of the source checkout this package runs from (absent in an installed wheel)."""
    here = Path(__file__).resolve().parent.parent.parent
    return here / "tests" if (here / "tests" / "conftest.py").is_file() else None


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def plan(out: Path, *, has_gpu: bool, sanitizer: str | None, tests: Path | None) -> list[Step]:
    py = sys.executable
    no_gpu = "" if has_gpu else "no CUDA device"
    backends = "torch,cuda" + (",keops" if _has("pykeops") else "")
    k, ly = KERNEL_BENCH, LAYER_BENCH
    test_dirs = [str(tests / d) for d in ("ops", "layers", "models") if tests and (tests / d).is_dir()]
    # the check covers more than the load-time self-test, and should report its figures even when
    # the self-test would disable the library
    check_env = {"SSM_CUDA_SELFTEST": "0"}
    sanitize_env = {**check_env, "PYTORCH_NO_CUDA_MEMORY_CACHING": "1"}
    check = [py, "-m", "ssm.ops.gpucheck", "--kernels-check"]
    steps = [
        Step("build", "compile and load the CUDA library", [py, "-m", "ssm.ops.build", "--cuda"], 110, skip=no_gpu),
        Step("kernels-check", "every CUDA kernel vs float64 (emulation's shapes)", check, 25, env=check_env, skip=no_gpu),
        Step("pytest-cuda", "the suite's CUDA cases", [py, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", *test_dirs], 70,
             skip=no_gpu or ("" if test_dirs else "no tests/ directory next to the package (run from a source checkout)")
             or ("" if _has("pytest") else "pytest is not installed")),
        Step("bench-kernels", f"ssm-bench kernels rows={k['rows']} N={k['n']} L={k['length']} ({backends})",
             [py, "-m", "ssm.cli.bench", "kernels", f"rows={k['rows']}", f"n={k['n']}", f"length={k['length']}",
              f"backends={backends}", "repeats=7", f"json={out / 'bench-kernels.json'}"], 70,
             json_out="bench-kernels.json", skip=no_gpu),
        Step("bench-layers", f"ssm-bench layers {ly['layers']} d_model={ly['d_model']} L={ly['length']} B={ly['batch']}",
             [py, "-m", "ssm.cli.bench", "layers", f"layers={ly['layers']}", f"d_model={ly['d_model']}", f"length={ly['length']}",
              f"batch={ly['batch']}", "step_batches=1,16", "repeats=5", f"json={out / 'bench-layers.json'}"], 55,
             json_out="bench-layers.json", skip=no_gpu),
        Step("bench-generate", "ssm-bench generate (reference, fast, fast+graph)",
             [py, "-m", "ssm.cli.bench", "generate", "batches=1,16", "length=256", "repeats=3",
              f"json={out / 'bench-generate.json'}"], 50, json_out="bench-generate.json", skip=no_gpu),
    ]
    for tool in ("memcheck", "racecheck"):
        steps.append(Step(tool, f"kernels-check under compute-sanitizer --tool {tool}",
                          [sanitizer or "compute-sanitizer", "--tool", tool, "--error-exitcode", "1", *check], 50,
                          env=sanitize_env, skip=no_gpu or ("" if sanitizer else "compute-sanitizer not found on PATH")))
    return steps


def run_step(step: Step, out: Path) -> Result:
    cmd = " ".join(step.cmd)
    if step.skip:
        print(f"[{step.name}] skipped: {step.skip}", flush=True)
        return Result(step.name, f"skipped: {step.skip}", 0.0, cmd)
    log = out / f"{step.name}.log"
    print(f"[{step.name}] {step.what}\n  $ {cmd}", flush=True)
    t0 = time.perf_counter()
    with log.open("w") as fh:
        try:
            proc = subprocess.run(step.cmd, stdout=fh, stderr=subprocess.STDOUT, timeout=step.timeout_s,
                                  env={**os.environ, **step.env}, check=False)
            status = "ok" if proc.returncode == 0 else f"FAILED (rc {proc.returncode})"
        except subprocess.TimeoutExpired:
            status = f"TIMEOUT after {step.timeout_s} s"
    seconds = time.perf_counter() - t0
    if status != "ok":
        tail = log.read_text(errors="replace").splitlines()[-15:]
        print("\n".join(f"  | {line}" for line in tail), flush=True)
    return Result(step.name, status, seconds, cmd, str(log), str(out / step.json_out) if step.json_out else "")


def kernel_figures(path: Path) -> list[dict]:
    """The bench-kernels records with the fraction of the H100 floor for each timed figure."""
    data = json.loads(path.read_text())
    rows = []
    for r in data["records"]:
        floor = FLOOR_S_PER_TERM.get((r["op"], r["mode"]))
        frac = None
        if floor and r.get("median_ms"):
            frac = floor * r["rows"] * r["n"] * r["length"] / (r["median_ms"] / 1e3)
        rows.append({**r, "floor_fraction": frac})
    return rows


def summary_table(results: list[Result], out: Path) -> str:
    lines = [f"{'step':15s} {'status':36s} {'seconds':>8s}"]
    lines += [f"{r.name:15s} {r.status[:36]:36s} {r.seconds:8.1f}" for r in results]
    kernels = out / "bench-kernels.json"
    if kernels.is_file():
        lines += ["", f"{'op':12s} {'mode':8s} {'backend':8s} {'median ms':>10s} {'peak MB':>9s} {'rel err':>9s} {'of H100 floor':>13s}"]
        for r in kernel_figures(kernels):
            f = lambda v, spec: "-" if v is None else spec % v  # noqa: E731
            lines.append(f"{r['op']:12s} {r['mode']:8s} {r['backend']:8s} {f(r['median_ms'], '%10.3f'):>10s} "
                         f"{f(r['peak_extra_mb'], '%9.1f'):>9s} {f(r['max_rel_err'], '%9.1e'):>9s} {f(r['floor_fraction'] and 100 * r['floor_fraction'], '%12.1f%%'):>13s}")
    for name in ("bench-layers", "bench-generate"):
        path = out / f"{name}.json"
        if path.is_file():
            lines += ["", f"{name}: {len(json.loads(path.read_text())['records'])} records in {path}"]
    return "\n".join(lines)


def dry_run(steps: list[Step]) -> int:
    """Print the plan; import every module a step needs with hydra/omegaconf/pykeops hidden."""
    for s in steps:
        print(f"[{s.name}] {s.what} (limit {s.timeout_s} s){'  -- would skip: ' + s.skip if s.skip else ''}\n  $ {' '.join(s.cmd)}")
    print(f"time limits: {sum(s.timeout_s for s in steps)} s in all on a GPU machine, "
          f"{sum(s.timeout_s for s in steps if not s.skip)} s of the steps that would run here")
    hide = ABSENT_ON_GPU_MACHINE
    code = (
        "import importlib.abc, sys\n"
        "class Hide(importlib.abc.MetaPathFinder):\n"
        f"    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {hide!r}: raise ImportError(f'{{name}} is hidden (absent on the GPU machine)')\n"
        "sys.meta_path.insert(0, Hide())\n"
        "failed = 0\n"
        f"for m in {IMPORTS!r}:\n"
        "    try:\n"
        "        __import__(m); print(f'import {m}: ok')\n"
        "    except Exception as e:\n"
        "        failed += 1; print(f'import {m}: FAILED ({type(e).__name__}: {e})')\n"
        f"leaked = [m for m in sys.modules if m.split('.')[0] in {hide!r}]\n"
        "print('hidden modules imported:', leaked or 'none')\n"
        "sys.exit(1 if failed or leaked else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    print(proc.stdout + proc.stderr, end="")
    print(f"imports with {', '.join(hide)} hidden: {'ok' if proc.returncode == 0 else 'FAILED'}")
    return proc.returncode


def kernels_check() -> int:
    """Step 2's body: every CUDA kernel on the GPU against float64 (and the sanitizers' payload)."""
    import torch

    from . import emulate

    if not torch.cuda.is_available():
        print("--kernels-check needs a CUDA device")
        return 2
    failed = emulate.report(lambda max_grid: (torch.ops.ssm, "cuda"), emulate.CHECK_SHAPES, "CUDA kernels on the GPU")
    torch.cuda.synchronize()
    print("all CUDA kernels match float64" if not failed else f"{failed} MISMATCH(ES)")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ssm.ops.gpucheck", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="directory for the logs, JSON and summary.json")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and check the imports; run nothing")
    parser.add_argument("--kernels-check", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.kernels_check:
        from . import _extension

        status = _extension.load("cuda")
        if not status.loaded:
            print(f"the CUDA library is not available: {status.detail}")
            return 1
        return kernels_check()
    import torch

    out = args.out or Path("gpucheck-out")
    steps = plan(out, has_gpu=torch.cuda.is_available(), sanitizer=shutil.which("compute-sanitizer"), tests=_repo_tests())
    if not _has("pykeops"):
        print("pykeops not installed: bench-kernels compares cuda with torch only")
    if args.dry_run:
        return dry_run(steps)
    if args.out is None:
        parser.error("--out DIR is required (or --dry-run)")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results = [run_step(s, out) for s in steps]
    table = summary_table(results, out)
    summary = {"total_s": time.perf_counter() - t0, "steps": [asdict(r) for r in results]}
    if (out / "bench-kernels.json").is_file():
        summary["kernels"] = kernel_figures(out / "bench-kernels.json")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print("\n" + table + f"\n\ntotal {summary['total_s']:.0f} s; wrote {out / 'summary.json'}")
    ran = [r for r in results if not r.status.startswith("skipped")]
    return 0 if ran and all(r.status == "ok" for r in ran) else 1


if __name__ == "__main__":
    sys.exit(main())
