"""Trainer plumbing: atomic checkpoint writes, and the end-of-run summary with a learning curve."""

from __future__ import annotations

import csv
import json
import os
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
        logger = trainer.logger
        log_dir = Path(logger.log_dir) if logger is not None and getattr(logger, "log_dir", None) else None
        if log_dir is not None and (log_dir / "metrics.csv").is_file():
            plot_learning_curve(log_dir / "metrics.csv", self.output_dir / "learning_curve.png")


def plot_learning_curve(metrics_csv: Path, out_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(open(metrics_csv)))
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
