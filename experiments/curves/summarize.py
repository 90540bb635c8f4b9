"""Tables of the learning-curve runs of ``run_curves.py``: loss/accuracy at chosen steps per arm and
seed, and when each run leaves the chance plateau.

Plateau exit, two measures (chance loss is ln 10 = 2.30 for both tasks):
- ``train exit``: the first step at which the mean training loss of the last ``--window`` batches
  (default 25) is below ``--loss`` (default 2.0): per-step resolution, from the batches trained on;
- ``val exit``: the step at which the validation loss first falls below ``--loss``, linearly
  interpolated between the two evaluations around the crossing.
``first >= a``: the step at which validation accuracy first reaches a, interpolated likewise.

    python experiments/curves/summarize.py experiments/results/curves/*.json \
        --json experiments/results/curves_summary.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

ARM_ORDER = ["s4", "s4-oldC", "s4d", "s4d-oldC", "s4d-lin"]
REACH = {"marker": [0.5, 0.8], "listops": [0.3]}  # accuracy levels whose first crossing is reported
STEPS = {"marker": [0, 50, 100, 125, 150, 200, 300, 400], "listops": [0, 50, 100, 150, 200, 300, 500]}


def train_exit(run: dict, loss: float, window: int) -> int | None:
    """First step (1-based) whose trailing ``window``-batch mean training loss is below ``loss``."""
    losses = run["step_loss"]
    for i in range(window, len(losses) + 1):
        if sum(losses[i - window:i]) / window < loss:
            return i
    return None


def crossing(run: dict, key: str, level: float, below: bool) -> float | None:
    """Interpolated step at which ``key`` of the evaluations first goes below (or reaches) ``level``."""
    evals = run["evals"]
    for prev, e in zip(evals, evals[1:]):
        if (e[key] < level) if below else (e[key] >= level):
            a, b = prev[key], e[key]
            frac = 1.0 if a == b else (a - level) / (a - b)
            return prev["step"] + max(0.0, min(1.0, frac)) * (e["step"] - prev["step"])
    return None


def at(run: dict, step: int) -> dict | None:
    return next((e for e in run["evals"] if e["step"] == step), None)


def fmt(x) -> str:
    return "—" if x is None else f"{x:.0f}"


def spread(values: list) -> str:
    """mean (min-max) over seeds, or the list when some run never crossed."""
    if any(v is None for v in values):
        return ", ".join(fmt(v) for v in values)
    return f"{statistics.mean(values):.0f} ({min(values):.0f}-{max(values):.0f})"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--loss", type=float, default=2.0, help="loss level that counts as off the plateau")
    parser.add_argument("--window", type=int, default=25, help="batches in the trailing mean of the training loss")
    parser.add_argument("--json", default=None, help="write the summary here")
    args = parser.parse_args(argv)
    runs = [json.loads(Path(p).read_text()) for p in args.runs]
    by_task = defaultdict(list)
    for run in runs:
        by_task[run["task"]].append(run)
    summary = {"loss_level": args.loss, "window": args.window, "tasks": {}}
    for task, task_runs in sorted(by_task.items()):
        task_runs.sort(key=lambda r: (ARM_ORDER.index(r["arm"]) if r["arm"] in ARM_ORDER else 99, r["seed"]))
        steps = [s for s in STEPS.get(task, [e["step"] for e in task_runs[0]["evals"]]) if all(at(r, s) for r in task_runs)]
        reach = REACH.get(task, [])
        rows = []
        for r in task_runs:
            rows.append({
                "arm": r["arm"], "seed": r["seed"], "wall_s": round(r["wall_s"], 1),
                "mean_abs_C_squared_start": r["mean_abs_C_squared_start"], "val_majority_rate": r["val_majority_rate"],
                "train_exit": train_exit(r, args.loss, args.window),
                "val_exit": crossing(r, "val_loss", args.loss, below=True),
                "reach": {str(a): crossing(r, "val_accuracy", a, below=False) for a in reach},
                "at": {str(s): {k: at(r, s)[k] for k in ("val_loss", "val_accuracy", "train_loss", "train_accuracy")}
                       for s in steps},
            })
        for split in ("val", "train"):
            name = "validation" if split == "val" else f"training subset (first {task_runs[0]['train_eval_examples']})"
            print(f"\n{task}, {name}: loss / accuracy at step\n")
            extra = ["train exit", "val exit", *(f"first >= {a}" for a in reach)] if split == "val" else []
            print("| arm | seed | " + "".join(f"{x} | " for x in extra) + " | ".join(f"{s}" for s in steps) + " |")
            print("|---|---|" + "---|" * (len(extra) + len(steps)))
            for row in rows:
                marks = [row["train_exit"], row["val_exit"], *row["reach"].values()] if split == "val" else []
                cells = [f"{row['at'][str(s)][split + '_loss']:.2f} / {row['at'][str(s)][split + '_accuracy']:.2f}"
                         for s in steps]
                print(f"| {row['arm']} | {row['seed']} | " + "".join(f"{fmt(m)} | " for m in marks) + " | ".join(cells) + " |")
        per_arm = {}
        for row in rows:
            per_arm.setdefault(row["arm"], []).append(row)
        final = str(steps[-1])
        print(f"\n{task}, per arm: mean (min-max) over seeds\n")
        print("| arm | seeds | train exit | val exit | " + "".join(f"first >= {a} | " for a in reach)
              + f"val loss at {final} | val accuracy at {final} |")
        print("|---|---|---|---|" + "---|" * len(reach) + "---|---|")
        means = {}
        for arm, arm_rows in per_arm.items():
            m = {"seeds": [row["seed"] for row in arm_rows],
                 "train_exit": [row["train_exit"] for row in arm_rows],
                 "val_exit": [row["val_exit"] for row in arm_rows],
                 "reach": {str(a): [row["reach"][str(a)] for row in arm_rows] for a in reach},
                 "final_val_loss": [row["at"][final]["val_loss"] for row in arm_rows],
                 "final_val_accuracy": [row["at"][final]["val_accuracy"] for row in arm_rows]}
            means[arm] = m
            print(f"| {arm} | {len(arm_rows)} | {spread(m['train_exit'])} | {spread(m['val_exit'])} | "
                  + "".join(f"{spread(v)} | " for v in m["reach"].values())
                  + f"{statistics.mean(m['final_val_loss']):.3f} | {statistics.mean(m['final_val_accuracy']):.3f} |")
        summary["tasks"][task] = {"steps": steps, "runs": rows, "per_arm": means,
                                  "overrides": task_runs[0]["overrides"], "date": task_runs[0]["date"]}
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
