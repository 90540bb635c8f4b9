"""Data-loading throughput of the LRA loaders: batches per second out of the cached arrays through
a torch DataLoader, at each task's configured batch size (configs/data/lra/<task>.yaml), to set
against a model's step time.

Data: small stand-ins in the release formats written into ``--root`` (a temporary directory by
default): generated ListOps (LRA grammar) and Pathfinder, random IMDB/AAN/CIFAR files
(``ssm.data.lra.fixtures``, document lengths like the real ones), and the in-memory tasks. For
each task it reports the first construction (parse + cache build), the second (cache open), and
the loader's batches/s over ``--batches`` batches (reshuffled epochs as needed).

With ``--step`` it also times one training step (forward, backward, AdamW step with the
trainer's param groups) of the model of the task's experiment (``configs/experiment/lra/
<family>-<task>.yaml``, ``--family``) on a batch of that experiment's batch size, on this CPU.
``--step-layers`` (default 1) replaces the experiment's depth: the full model costs about
``n_layers`` times as much, so the comparison with data loading is conservative. The step is the
median of ``--step-repeats`` timed steps after one untimed warm-up step.

    python experiments/lra/bench_data.py                      # all tasks, small sizes (< 1 min)
    python experiments/lra/bench_data.py --tasks listops text --batches 200 --num-workers 2
    python experiments/lra/bench_data.py --step --family s4d  # + one training step per task
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from ssm.data import lra
from ssm.data.lra import fixtures
from ssm.data.lra.generators import (
    ListOpsSpec,
    PathfinderStyle,
    write_listops,
    write_pathfinder,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "data" / "lra"
TASKS = ("listops", "text", "retrieval", "image", "pathfinder32", "pathfinder64", "pathx", "copying",
         "selective_copying", "adding")
FAMILIES = ("s4", "s4d", "s4ptd", "s5", "s5ptd")
# the experiment (configs/experiment/lra/<family>-<name>) whose model a task's step is timed with;
# Pathfinder 64x64 has none, the memory tasks only an S4D one
EXPERIMENT = {"listops": "listops", "text": "text", "retrieval": "retrieval", "image": "image",
              "pathfinder32": "pathfinder", "pathx": "pathx"}
S4D_ONLY = {"copying": "copying", "selective_copying": "selective_copying", "adding": "adding"}


def prepare(task: str, root: Path, n: int) -> None:
    """Write the task's source files (nothing for the in-memory tasks)."""
    if task == "listops":
        write_listops(root / "listops", ListOpsSpec(n_train=n, n_val=max(n // 10, 2), n_test=max(n // 10, 2)))
    elif task == "text":
        fixtures.write_imdb(root / "aclImdb", n_per_class=max(n // 2, 2), min_chars=200, max_chars=2500)
    elif task == "retrieval":
        fixtures.write_aan(root / "aan", n_train=n, n_val=max(n // 10, 2), n_test=max(n // 10, 2), min_chars=1000, max_chars=7000)
    elif task == "image":
        fixtures.write_cifar(root / "cifar-10-batches-py", n_per_batch=max(n // 5, 2))
    elif task.startswith("path"):
        res = 128 if task == "pathx" else int(task.removeprefix("pathfinder"))
        count = max(n // (res // 32) ** 2, 20)
        write_pathfinder(root / "pathfinder" / f"pathfinder{res}" / "curv_contour_length_14", n=count,
                         style=PathfinderStyle.for_resolution(res))


def build(task: str, root: Path, n: int):
    if task == "listops":
        return lra.ListOps("train", root=root)
    if task == "text":
        return lra.Text("train", root=root)
    if task == "retrieval":
        return lra.Retrieval("train", root=root)
    if task == "image":
        return lra.Image("train", root=root)
    if task == "pathx":
        return lra.PathX("train", root=root)
    if task.startswith("pathfinder"):
        return lra.Pathfinder("train", root=root, resolution=int(task.removeprefix("pathfinder")))
    if task == "copying":
        return lra.Copying("train", size=n, delay=1000)
    if task == "selective_copying":
        return lra.SelectiveCopying("train", size=n, body=4096)
    return lra.Adding("train", size=n, length=1000)


def experiment_name(task: str, family: str) -> str | None:
    if task in EXPERIMENT:
        return f"lra/{family}-{EXPERIMENT[task]}"
    if task in S4D_ONLY and family == "s4d":
        return f"lra/s4d-{S4D_ONLY[task]}"
    return None


def time_step(experiment: str, dataset, *, layers: int | None, repeats: int) -> dict:
    """Median wall time of one training step of the experiment's model on one of its batches."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    from ssm.optim import param_groups
    from ssm.train.cli import config_dir

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={experiment}", "output_dir=."])
    GlobalHydra.instance().clear()
    model_cfg = cfg.model.encoder if "encoder" in cfg.model else cfg.model  # Retrieval: the encoder's depth
    full_layers = int(model_cfg.n_layers)
    if layers is not None:
        model_cfg.n_layers = layers
    model, task = instantiate(cfg.model), instantiate(cfg.task)
    optimizer_factory = instantiate(cfg.optimizer)
    defaults = optimizer_factory([torch.nn.Parameter(torch.zeros(1))]).defaults
    groups = param_groups(model, lr=defaults["lr"], weight_decay=defaults.get("weight_decay", 0.0))
    optimizer = optimizer_factory([{k: v for k, v in g.items() if k != "names"} for g in groups])
    batch_size = int(cfg.data.batch_size)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(0))
    x, y, lengths = next(iter(loader))
    if len(x) < batch_size:
        raise ValueError(f"bench_data: {experiment} needs batches of {batch_size}, the stand-in data has {len(x)} "
                         "examples; raise --n")
    model.train()
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        loss = task.loss(model(task.prepare(x), lengths=lengths), y)  # as SequenceLightningModule's step
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i:  # the first step (allocations, kernel caches) is not timed
            times.append(time.perf_counter() - t0)
    return {"experiment": experiment, "step_batch_size": batch_size, "step_layers": int(model_cfg.n_layers),
            "full_layers": full_layers, "parameters": sum(p.numel() for p in model.parameters()),
            "step_ms": 1000 * statistics.median(times)}


def bench(task: str, root: Path, *, n: int, batches: int, num_workers: int, step: bool = False, family: str = "s4d",
          step_layers: int | None = 1, step_repeats: int = 3) -> dict:
    batch_size = int(OmegaConf.load(CONFIGS / f"{task}.yaml").batch_size)
    t0 = time.perf_counter()
    prepare(task, root, n)
    t1 = time.perf_counter()
    build(task, root, n)
    t2 = time.perf_counter()
    ds = build(task, root, n)  # from the cache
    t3 = time.perf_counter()
    loader = DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=num_workers,
                        generator=torch.Generator().manual_seed(0), persistent_workers=num_workers > 0)
    done, start, shape = 0, None, None
    while done < batches + 1:
        for x, _, _ in loader:
            if start is None:  # the first batch (worker start-up) is not timed
                start, shape = time.perf_counter(), tuple(x.shape)
            else:
                done += 1
            if done == batches:
                break
        if done == batches:
            break
    elapsed = time.perf_counter() - start
    row = {"task": task, "examples": len(ds), "batch_size": batch_size, "batch_shape": shape,
           "write_s": t1 - t0, "first_build_s": t2 - t1, "cached_open_s": t3 - t2,
           "batches_per_s": batches / elapsed, "samples_per_s": batches * batch_size / elapsed,
           "ms_per_batch": 1000 * elapsed / batches}
    experiment = experiment_name(task, family) if step else None
    if experiment is not None:
        row.update(time_step(experiment, ds, layers=step_layers, repeats=step_repeats))
        # data time for the step's batch size, from the measured per-sample rate
        row["data_ms_per_step_batch"] = 1000 * row["step_batch_size"] / row["samples_per_s"]
        row["step_over_data"] = row["step_ms"] / row["data_ms_per_step_batch"]
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--root", default=None, help="where to write the stand-in data (default: a temporary directory)")
    parser.add_argument("--n", type=int, default=200, help="training examples per task (Pathfinder: fewer at higher resolution)")
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    parser.add_argument("--step", action="store_true", help="also time one training step of the task's experiment model")
    parser.add_argument("--family", default="s4d", choices=FAMILIES, help="layer family of the timed experiment")
    parser.add_argument("--step-layers", type=int, default=1,
                        help="depth of the timed model (0: the experiment's own depth)")
    parser.add_argument("--step-repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.step_layers < 0 or args.step_repeats < 1:
        parser.error(f"--step-layers must be >= 0 and --step-repeats >= 1, got {args.step_layers}, {args.step_repeats}")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.root) if args.root else Path(tmp)
        rows = [bench(t, root, n=args.n, batches=args.batches, num_workers=args.num_workers, step=args.step,
                      family=args.family, step_layers=args.step_layers or None, step_repeats=args.step_repeats)
                for t in args.tasks]
    print(f"{'task':<18} {'examples':>8} {'batch':>5} {'batch shape':<18} {'build s':>8} {'open s':>7} "
          f"{'batches/s':>10} {'samples/s':>10} {'ms/batch':>9}")
    for r in rows:
        print(f"{r['task']:<18} {r['examples']:>8} {r['batch_size']:>5} {r['batch_shape']!s:<18} "
              f"{r['first_build_s']:>8.3f} {r['cached_open_s']:>7.3f} {r['batches_per_s']:>10.1f} "
              f"{r['samples_per_s']:>10.0f} {r['ms_per_batch']:>9.2f}")
    if args.step:
        print(f"\n{'task':<18} {'experiment':<26} {'batch':>5} {'layers':>9} {'step ms':>9} {'data ms':>8} {'step/data':>9}")
        for r in rows:
            if "step_ms" not in r:
                print(f"{r['task']:<18} {'(no ' + args.family + ' experiment)':<26}")
                continue
            print(f"{r['task']:<18} {r['experiment']:<26} {r['step_batch_size']:>5} "
                  f"{str(r['step_layers']) + ' of ' + str(r['full_layers']):>9} {r['step_ms']:>9.1f} "
                  f"{r['data_ms_per_step_batch']:>8.2f} {r['step_over_data']:>9.0f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
