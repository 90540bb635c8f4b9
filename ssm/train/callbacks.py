"""Trainer plumbing: atomic checkpoint writes, and the end-of-run summary with a learning curve
(test-time reports and forecast plots: ``ssm.train.metrics``)."""

from __future__ import annotations

import csv
import json
import os
import random
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write to a temporary file in the same directory, fsync, then rename over the target.

    A kill during the write leaves the previous checkpoint untouched (rename is atomic on POSIX),
    where the default writer truncates the file first.
    """

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class RandomState(L.Callback):
    """Saves the global random generators (torch CPU and CUDA, Python, NumPy) in every checkpoint
    and puts them back when a run resumes, so dropout masks after a resume are the ones the
    uninterrupted run would have drawn. (Lightning restores model, optimizer, scheduler, loops
    and step counters, but not the generators.)

    The state is applied in ``on_train_start``, after Lightning's sanity check and data setup, at
    the same point of the random stream where the interrupted run saved it: after the step
    that produced the checkpoint.
    """

    def __init__(self):
        self._pending: dict | None = None

    def state_dict(self) -> dict:
        import numpy as np

        state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        self._pending = state_dict

    def on_train_start(self, trainer, pl_module):
        import numpy as np

        state, self._pending = self._pending, None
        if not state:
            return
        torch.set_rng_state(state["torch"])
        random.setstate(state["python"])
        np.random.set_state(state["numpy"])
        if "cuda" in state and torch.cuda.is_available():
            if len(state["cuda"]) != torch.cuda.device_count():
                raise RuntimeError(
                    f"RandomState: the checkpoint holds {len(state['cuda'])} CUDA generator states but this process "
                    f"sees {torch.cuda.device_count()} devices; resume on the same device layout for an exact resume."
                )
            torch.cuda.set_rng_state_all(state["cuda"])


class RunSummary(L.Callback):
    """At the end of fit: best monitored metric, parameter count, seconds per epoch, written to
    ``summary.json`` and printed; and ``learning_curve.png`` from the CSV log."""

    def __init__(self, output_dir: str, monitor: str, mode: str = "max"):
        self.output_dir, self.monitor, self.mode = Path(output_dir), monitor, mode
        self.epoch_seconds: list[float] = []
        self.best: float | None = None
        self._start: float | None = None

    def on_train_start(self, trainer, pl_module):
        # a run resumed mid-epoch gets no on_train_epoch_start for that epoch
        self._start = time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module):
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        if self._start is not None:
            self.epoch_seconds.append(time.perf_counter() - self._start)

    def on_validation_epoch_end(self, trainer, pl_module):
        value = trainer.callback_metrics.get(self.monitor)
        if value is None or trainer.sanity_checking:
            return
        value = float(value)
        if self.best is None or (value > self.best if self.mode == "max" else value < self.best):
            self.best = value

    def on_fit_end(self, trainer, pl_module):
        if trainer.global_rank != 0:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        summary = {
            "monitor": self.monitor,
            "best": self.best,
            "parameters": sum(p.numel() for p in pl_module.model.parameters()),
            "epochs": len(self.epoch_seconds),
            "seconds_per_epoch": (sum(self.epoch_seconds) / len(self.epoch_seconds)) if self.epoch_seconds else None,
            "global_step": trainer.global_step,
        }
        (self.output_dir / "summary.json").write_text(json.dumps(summary, indent=1))
        print("run summary: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items()))
        for logger in trainer.loggers:  # the CSV logger's file, whichever position it has
            log_dir = getattr(logger, "log_dir", None)
            if log_dir and (Path(log_dir) / "metrics.csv").is_file():
                plot_learning_curve(Path(log_dir) / "metrics.csv", self.output_dir / "learning_curve.png")
                break


def plot_learning_curve(metrics_csv: Path, out_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(metrics_csv) as f:
        rows = list(csv.DictReader(f))
    series: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        for key, value in row.items():
            if value and key.endswith(("loss_epoch", "/loss", "accuracy", "bits_per_token", "mse")) and key != "step":
                series.setdefault(key, []).append((float(row.get("epoch") or 0), float(value)))
    if not series:
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for key, points in sorted(series.items()):
        ax = axes[0] if "loss" in key else axes[1]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=key)
    for ax, title in zip(axes, ("loss", "metric")):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)

