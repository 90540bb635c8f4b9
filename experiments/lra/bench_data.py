"""Data-loading throughput of the LRA loaders: batches per second out of the cached arrays through
a torch DataLoader, at each task's configured batch size (configs/data/lra/<task>.yaml), to set
against a model's step time.

Data: small stand-ins in the release formats written into ``--root`` (a temporary directory by
default): generated ListOps (LRA grammar) and Pathfinder, random IMDB/AAN/CIFAR files
(``ssm.data.lra.fixtures``, document lengths like the real ones), and the in-memory tasks. For
each task it reports the first construction (parse + cache build), the second (cache open), and
the loader's batches/s over ``--batches`` batches (reshuffled epochs as needed).

    python experiments/lra/bench_data.py                      # all tasks, small sizes (< 1 min)
    python experiments/lra/bench_data.py --tasks listops text --batches 200 --num-workers 2
"""

from __future__ import annotations

import argparse
import json
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


def bench(task: str, root: Path, *, n: int, batches: int, num_workers: int) -> dict:
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
    return {"task": task, "examples": len(ds), "batch_size": batch_size, "batch_shape": shape,
            "write_s": t1 - t0, "first_build_s": t2 - t1, "cached_open_s": t3 - t2,
            "batches_per_s": batches / elapsed, "samples_per_s": batches * batch_size / elapsed,
            "ms_per_batch": 1000 * elapsed / batches}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--root", default=None, help="where to write the stand-in data (default: a temporary directory)")
    parser.add_argument("--n", type=int, default=200, help="training examples per task (Pathfinder: fewer at higher resolution)")
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.root) if args.root else Path(tmp)
        rows = [bench(t, root, n=args.n, batches=args.batches, num_workers=args.num_workers) for t in args.tasks]
    print(f"{'task':<18} {'examples':>8} {'batch':>5} {'batch shape':<18} {'build s':>8} {'open s':>7} "
          f"{'batches/s':>10} {'samples/s':>10} {'ms/batch':>9}")
    for r in rows:
        print(f"{r['task']:<18} {r['examples']:>8} {r['batch_size']:>5} {r['batch_shape']!s:<18} "
              f"{r['first_build_s']:>8.3f} {r['cached_open_s']:>7.3f} {r['batches_per_s']:>10.1f} "
              f"{r['samples_per_s']:>10.0f} {r['ms_per_batch']:>9.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
