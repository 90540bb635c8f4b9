"""Progress reports that work on a terminal and in a batch job.

On a terminal the rich progress bar stays. When stdout is not a terminal (cluster jobs, ``nohup``,
CI) a bar shows nothing until the run ends, so ``PlainProgress`` prints one plain line per epoch
and every ``log_every_n_steps`` training steps (step, loss, throughput, ETA), flushed at once,
and appends the same lines to ``cli.log`` in the run directory (on a terminal too).
``track`` is the same idea for a loop outside Lightning (``ssm-predict``).
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import lightning as L


def interactive(stream=None) -> bool:
    """Whether ``stream`` (default stdout) is a terminal."""
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return bool(callable(isatty) and isatty())


def _duration(seconds: float) -> str:
    seconds = max(int(round(seconds)), 0)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class PlainProgress(L.Callback):
    """One line per epoch (and every ``every_n_steps`` steps) on stdout when it is not a terminal,
    and always in ``log_file``. Lines look like

        epoch 1/8 step 40 train/loss 0.412 val/loss 0.398 val/accuracy 0.871 | 212.4 samples/s | 0:03 elapsed, ETA 0:21
    """

    def __init__(self, log_file: str | Path | None, *, every_n_steps: int = 50, echo: bool | None = None):
        self.log_file = Path(log_file) if log_file else None
        self.every_n_steps = max(int(every_n_steps), 0)
        self.echo = (not interactive()) if echo is None else echo
        self._start = self._epoch_start = 0.0
        self._samples = 0

    def setup(self, trainer, pl_module, stage):
        # the package's own records (logger "ssm" does not propagate to the root logger that
        # Hydra writes cli.log from) go to the same file while the trainer runs
        self._handler = None
        if self.log_file is not None and trainer.global_rank == 0:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            self._handler = logging.FileHandler(self.log_file)
            self._handler.setFormatter(logging.Formatter("%(name)s %(levelname)s: %(message)s"))
            logging.getLogger("ssm").addHandler(self._handler)

    def teardown(self, trainer, pl_module, stage):
        if getattr(self, "_handler", None) is not None:
            logging.getLogger("ssm").removeHandler(self._handler)
            self._handler.close()
            self._handler = None

    @staticmethod
    def _epoch(trainer) -> str:
        total = trainer.max_epochs
        return f"epoch {trainer.current_epoch + 1}" + (f"/{total}" if total and total > 0 else "")

    def _emit(self, line: str) -> None:
        if self.echo:
            print(line, flush=True)
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            with self.log_file.open("a") as f:
                f.write(line + "\n")

    def _eta(self, trainer) -> str:
        done = trainer.global_step
        total = trainer.estimated_stepping_batches
        elapsed = time.perf_counter() - self._start
        if not done or not total or total == float("inf"):
            return f"{_duration(elapsed)} elapsed"
        return f"{_duration(elapsed)} elapsed, ETA {_duration(elapsed * (total - done) / done)}"

    def on_train_start(self, trainer, pl_module):
        if trainer.global_rank == 0:
            self._start = time.perf_counter()
            epochs = f"{trainer.max_epochs} epochs" if trainer.max_epochs and trainer.max_epochs > 0 else f"{trainer.max_steps} steps"
            self._emit(f"training: {epochs}, {trainer.num_training_batches} batches per epoch")

    def on_train_epoch_start(self, trainer, pl_module):
        self._epoch_start, self._samples = time.perf_counter(), 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_rank != 0:
            return
        if isinstance(batch, dict):  # state.mode=tbptt chunks {"x", "y", "first"}: rows of chunks
            self._samples += len(batch["x"]) if "x" in batch else 0
        else:
            self._samples += len(batch[0]) if isinstance(batch, (tuple, list)) else 0
        step = trainer.global_step
        if self.every_n_steps and step and step % self.every_n_steps == 0:
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            loss = f" train/loss {float(loss):.4g}" if loss is not None else ""
            rate = self._samples / max(time.perf_counter() - self._epoch_start, 1e-9)
            self._emit(f"{self._epoch(trainer)} step {step}{loss} | "
                       f"{rate:.1f} samples/s | {self._eta(trainer)}")

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.global_rank != 0:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()
                   if k.startswith(("train/", "val/")) and not k.endswith("_step") and getattr(v, "numel", lambda: 1)() == 1}
        metrics = {k.removesuffix("_epoch"): v for k, v in metrics.items()}  # train/loss_epoch is train/loss
        shown = " ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items()))
        seconds = time.perf_counter() - self._epoch_start
        rate = self._samples / max(seconds, 1e-9)
        self._emit(f"{self._epoch(trainer)} step {trainer.global_step} {shown} | "
                   f"{rate:.1f} samples/s, {seconds:.1f} s | {self._eta(trainer)}")

    def on_test_end(self, trainer, pl_module):
        if trainer.global_rank != 0:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
        if metrics:
            self._emit("test: " + " ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items())))


def track(items: Iterable, *, total: int, description: str) -> Iterator:
    """``items``, with a rich progress bar on a terminal, else a plain line at every 10%."""
    if interactive():
        from rich.progress import track as rich_track

        yield from rich_track(items, total=total, description=description)
        return
    start, shown = time.perf_counter(), -1
    for i, item in enumerate(items, start=1):
        yield item
        tenth = (10 * i) // max(total, 1)
        if tenth != shown and (tenth > shown or i == total):
            shown = tenth
            elapsed = time.perf_counter() - start
            print(f"{description} {i}/{total} batches | {_duration(elapsed)} elapsed, "
                  f"ETA {_duration(elapsed * (total - i) / i)}", flush=True)


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


# Warnings nothing in a run can act on: Lightning's own deprecations of torch internals, and
# advice that fits large data sets but not ours (worker counts, a logging interval longer than a
# tiny epoch). Matched by message so that every other warning still shows.
_IGNORED_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",
    r".*does not have many workers which may be a bottleneck.*",
    r".*is smaller than the logging interval.*",
)


def quiet_third_party() -> None:
    """Silence third-party noise on every run: Lightning's product tips and the warnings above."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropTips) for f in logger.filters):
            logger.addFilter(_DropTips())
    for pattern in _IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)

