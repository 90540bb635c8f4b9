"""Learning curves of S4 against S4D, and S4 with the old half-scale C (issue 18, item 6).

Question: does S4 leave the chance plateau as early as S4D now that C is drawn complex standard
normal (E|C_n|^2 = 1, as state-spaces/s4 does), and how much of the gap did the old scale
(E|C_n|^2 = 1/2) cause? The arms differ only in the layer (its type, init or C scale); backbone,
optimiser, schedule, data, data order and seeds are the same:

    s4        S4 (``model/layer=s4``), as the library builds it now
    s4d       S4D (``model/layer=s4d``), as the library builds it now
    s4-oldC   S4 built exactly like ``s4`` (same seed, so the same draw), then every core's C
              multiplied by sqrt(1/2): the C scale of the library before commit 137b109
    s4d-oldC  the same for S4D
    s4d-lin   S4D with ``init=lin`` (S4D-Lin), the init of the reference's layer config s4d.yaml
    s4d-bilinear  S4D with ``disc=bilinear``, S4's discretisation (a diagnostic for the S4/S4D gap)

The model is built by ``ssm.train.cli.build`` from the composed Hydra config (the seed is set
first, as ``ssm-train`` does); C is scaled right after construction, before the first step.
C~ = C (I - dA^L) of S4 is linear in C, so the scaling is exact whether or not C~ was prepared.

Every ``--eval-every`` optimiser steps (and at step 0) the model is evaluated (eval mode, no
dropout, BatchNorm running statistics) on the validation split (its first ``--val-eval``
examples) and on a fixed subset of the training split (its first ``--train-eval`` examples); the
per-step training loss of the batches trained on is recorded as well. One JSON file per
(task, arm, seed) run; ``run_all.sh`` runs them all, ``summarize.py`` tabulates them.

    taskset -c 1 python experiments/curves/run_curves.py --task marker --arm s4 --seed 0 \
        --steps 400 --eval-every 25 --train-eval 500 --val-eval 500 \
        --out experiments/results/curves/marker_s4_seed0.json

Data (``--data-root``, default /tmp/ssm-curves-data) is generated on first use.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import tempfile
import time
from collections import Counter
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from torch.utils.data import DataLoader, Subset

from ssm.train.cli import build, config_dir

ARMS = {  # arm -> (model/layer config, factor applied to every core's C after construction, overrides)
    "s4": ("s4", 1.0, []),
    "s4d": ("s4d", 1.0, []),
    "s4-oldC": ("s4", math.sqrt(0.5), []),
    "s4d-oldC": ("s4d", math.sqrt(0.5), []),
    "s4d-lin": ("s4d", 1.0, ["model.layer.init=lin"]),  # the s4 reference's configs/model/layer/s4d.yaml init
    "s4d-bilinear": ("s4d", 1.0, ["model.layer.disc=bilinear"]),  # S4's discretisation on the S4D layer
}

# Generated ListOps of medium difficulty: nesting depth <= 5, 2-5 arguments, 20-200 tokens
# (l_max 256), 6000/500 train/val examples; the lra/s4d-listops-generated recipe (postnorm
# BatchNorm, bidirectional layers, AdamW lr 0.01 wd 0.05, SSM lr 1e-3, cosine with 10% warmup,
# batch 32, dt_transform softplus) at 4 layers x 64, d_state 64, one shared SSM (n_ssm 1).
TASKS = {
    "listops": [
        "experiment=lra/s4d-listops-generated", "data.dataset.subdir=listops_curves",
        "data.dataset.n_train=6000", "data.dataset.n_val=500", "data.dataset.n_test=100",
        "data.dataset.max_depth=5", "data.dataset.max_args=5", "data.dataset.min_length=20",
        "data.dataset.max_length=200", "data.dataset.l_max=256",
        "model.d_model=64", "model.n_layers=4",
    ],
    # The default experiment's marker task made harder: tone amplitude 2 (default 3) over N(0, 1)
    # noise, length 256, 4000 examples per split; the default recipe otherwise (4 x 64 prenorm
    # LayerNorm, bidirectional layers, AdamW lr 4e-3 wd 0.01, SSM lr 1e-3, cosine with 10% warmup,
    # batch 64, dt_transform exp).
    "marker": ["data.dataset.amplitude=2.0"],
}


def compose_config(task: str, layer: str, seed: int, steps: int, data_root: str, output_dir: str, extra: list[str]):
    overrides = [
        *TASKS[task], f"model/layer={layer}", f"seed={seed}", f"data_root={data_root}", f"output_dir={output_dir}",
        f"+trainer.max_steps={steps}", "trainer.max_epochs=-1", "+trainer.limit_val_batches=0",
        "+trainer.num_sanity_val_steps=0", "trainer.accelerator=cpu", "test=false",
        "callbacks.progress=null", "callbacks.checkpoint=null", "callbacks.last=null", "callbacks.lr_monitor=null",
        "logger.csv=null", "logger.tensorboard=null", *extra,
    ]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    GlobalHydra.instance().clear()
    return cfg, overrides


@torch.no_grad()
def scale_C(model: torch.nn.Module, factor: float) -> int:
    """Multiply the C parameter of every SSM core in ``model`` by ``factor``; returns how many."""
    count = 0
    for module in model.modules():
        core = getattr(module, "core", None)
        if core is not None and isinstance(getattr(core, "C", None), torch.nn.Parameter):
            core.C.mul_(factor)
            count += 1
    return count


def mean_C_power(model: torch.nn.Module) -> float:
    """Mean |C_n|^2 over every core's C (real/imag pairs in the last axis)."""
    powers = [m.core.C.detach().pow(2).sum(-1).mean().item() for m in model.modules()
              if isinstance(getattr(getattr(m, "core", None), "C", None), torch.nn.Parameter)]
    return sum(powers) / len(powers)


@torch.no_grad()
def evaluate(module, loader) -> dict:
    """Mean loss and accuracy of ``module`` (eval mode) over ``loader``."""
    was_training = module.training
    module.eval()
    task = module.task
    total, n, correct = 0.0, 0, 0
    for batch in loader:
        x, y, lengths = (*batch, None) if len(batch) == 2 else batch
        output = module(x, lengths)
        by_length = {"lengths": lengths} if getattr(task, "uses_lengths", False) else {}
        total += task.loss(output, y, **by_length).item() * len(y)
        correct += (output.argmax(-1) == y).sum().item()
        n += len(y)
    module.train(was_training)
    return {"loss": total / n, "accuracy": correct / n}


class Curves(L.Callback):
    """Records the training loss of every step and, every ``every`` steps, full evaluations."""

    def __init__(self, every: int, train_eval: int, val_eval: int | None, eval_batch_size: int):
        self.every, self.train_eval, self.val_eval, self.eval_batch_size = every, train_eval, val_eval, eval_batch_size
        self.step_loss: list[float] = []
        self.evals: list[dict] = []
        self.eval_seconds = 0.0
        self._start = 0.0

    def _evaluate(self, trainer, module):
        t0 = time.perf_counter()
        splits = trainer.datamodule.splits
        val = evaluate(module, DataLoader(first(splits["val"], self.val_eval), batch_size=self.eval_batch_size))
        train = evaluate(module, DataLoader(first(splits["train"], self.train_eval), batch_size=self.eval_batch_size))
        self.eval_seconds += time.perf_counter() - t0
        step = trainer.global_step
        recent = self.step_loss[-self.every:]
        row = {"step": step, "val_loss": val["loss"], "val_accuracy": val["accuracy"],
               "train_loss": train["loss"], "train_accuracy": train["accuracy"],
               "train_batch_loss_mean": sum(recent) / len(recent) if recent else None,
               "wall_s": time.perf_counter() - self._start}
        self.evals.append(row)
        print(f"step {step:5d}  train {row['train_loss']:.4f} / {row['train_accuracy']:.3f}  "
              f"val {row['val_loss']:.4f} / {row['val_accuracy']:.3f}  ({row['wall_s']:.0f} s)", flush=True)

    def on_train_start(self, trainer, module):
        self._start = time.perf_counter()
        self._evaluate(trainer, module)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.step_loss.append(float(loss))
        if trainer.global_step % self.every == 0 or trainer.global_step == trainer.max_steps:
            self._evaluate(trainer, module)


def first(dataset, n: int | None):
    """The first ``n`` examples of ``dataset`` (all of them for None)."""
    return dataset if n is None or n >= len(dataset) else Subset(dataset, range(n))


def majority(dataset) -> float:
    counts = Counter(int(dataset[i][1]) for i in range(len(dataset)))
    return max(counts.values()) / len(dataset)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arm", choices=sorted(ARMS), required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--task", choices=sorted(TASKS), default="listops")
    parser.add_argument("--steps", type=int, default=1000, help="optimiser steps (the schedule spans them)")
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--train-eval", type=int, default=1000, help="training examples evaluated at each point")
    parser.add_argument("--val-eval", type=int, default=None,
                        help="validation examples evaluated at each point (default: the whole split)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the runs in the README use 1)")
    parser.add_argument("--data-root", default="/tmp/ssm-curves-data")
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, applied after the task's")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    layer, factor, arm_overrides = ARMS[args.arm]
    with tempfile.TemporaryDirectory(prefix="ssm-curves-") as output_dir:
        cfg, overrides = compose_config(args.task, layer, args.seed, args.steps, args.data_root, output_dir,
                                        [*arm_overrides, *args.overrides])
        L.seed_everything(cfg.seed, workers=True)  # as ssm-train does before building
        datamodule, module, trainer = build(cfg)
        power_built = mean_C_power(module.model)
        scaled = scale_C(module.model, factor) if factor != 1.0 else 0
        curves = Curves(args.eval_every, args.train_eval, args.val_eval, cfg.data.batch_size)
        trainer.callbacks.append(curves)
        start = time.perf_counter()
        trainer.fit(module, datamodule=datamodule)
        wall = time.perf_counter() - start
        splits = datamodule.splits

    result = {
        "arm": args.arm, "layer": layer, "C_factor": factor, "cores_scaled": scaled,
        "mean_abs_C_squared_built": power_built, "mean_abs_C_squared_start": power_built * factor ** 2,
        "seed": args.seed, "task": args.task, "steps": args.steps, "eval_every": args.eval_every,
        "train_eval_examples": len(first(splits["train"], args.train_eval)),
        "val_eval_examples": len(first(splits["val"], args.val_eval)),
        "val_majority_rate": majority(first(splits["val"], args.val_eval)),
        "parameters": sum(p.numel() for p in module.model.parameters()),
        "overrides": [o for o in overrides if not o.startswith("output_dir=")],
        "wall_s": wall, "eval_s": curves.eval_seconds, "threads": torch.get_num_threads(),
        "date": datetime.date.today().isoformat(), "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "evals": curves.evals, "step_loss": curves.step_loss,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}: {len(curves.evals)} evaluations, {wall:.0f} s ({curves.eval_seconds:.0f} s evaluating)")


if __name__ == "__main__":
    main()
