"""Trainer plumbing: atomic checkpoint writes and safe reads, preemption saves, a CSV log that
survives resumes, the end-of-run summary with a learning curve (test-time reports and
forecast plots: ``ssm.train.metrics``), and an exponential moving average of the weights."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import lightning as L
import lightning.pytorch.callbacks as _lightning_callbacks
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write to a temporary file in the same directory, fsync, then rename over the target.

    A kill during the write leaves the previous checkpoint untouched (rename is atomic on POSIX),
    where the default writer truncates the file first; the temporary file it leaves behind is
    removed at the next start (``remove_stale_temp_files``).

    Reads go through ``read_checkpoint`` (weights-only with our allowlist, config targets checked)
    unless ``trust``; ``allowed_targets`` are the ``_target_`` values the command line vouches for.
    """

    TEMP_GLOB = ".*.ckpt.*.tmp"

    def __init__(self, *, trust: bool = False, allowed_targets=(), what: str = "ckpt_path"):
        super().__init__()
        self.trust, self.allowed_targets, self.what = trust, frozenset(allowed_targets), what

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        from .loading import read_checkpoint

        # Lightning's default map_location keeps storages on the CPU; it moves them itself
        return read_checkpoint(path, map_location=map_location or "cpu", trust=self.trust,
                               allowed_targets=self.allowed_targets, what=self.what)

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


def remove_stale_temp_files(directory) -> list[Path]:
    """Delete the temporary files that a write killed mid-way left in ``directory`` (only the
    ``AtomicCheckpointIO`` pattern); returns what was removed. Call it before training starts,
    when no write can be in progress."""
    directory = Path(directory)
    removed = sorted(directory.glob(AtomicCheckpointIO.TEMP_GLOB)) if directory.is_dir() else []
    for p in removed:
        p.unlink(missing_ok=True)
    return removed


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
    ``summary.json`` and printed; and ``learning_curve.png`` from the CSV log.

    Its counters travel in every checkpoint, so the summary of a resumed run covers the whole run;
    ``epochs`` is the loop's count of finished epochs."""

    def __init__(self, output_dir: str, monitor: str, mode: str = "max"):
        self.output_dir, self.monitor, self.mode = Path(output_dir), monitor, mode
        self.epoch_seconds: list[float] = []
        self.best: float | None = None
        self._start: float | None = None

    def state_dict(self) -> dict:
        return {"epoch_seconds": list(self.epoch_seconds), "best": self.best}

    def load_state_dict(self, state_dict: dict) -> None:
        self.epoch_seconds = [float(s) for s in state_dict.get("epoch_seconds", [])]
        self.best = state_dict.get("best")

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
            "epochs": trainer.fit_loop.epoch_progress.total.completed,
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


# -- preemption -------------------------------------------------------------------------------------

class Preemption(L.Callback):
    """SIGTERM (what SLURM and Kubernetes send before they stop a job), SIGINT (Ctrl+C) or SIGUSR1:
    save an exact-resume ``last.ckpt`` at the step being finished, then stop the run; ``ssm-train``
    exits with status 128 + signal and says ``resume with ckpt_path=last``.

    Lightning's signal connector owns SIGTERM: it sets ``trainer.received_sigterm`` and raises
    ``SIGTERMException`` at the end of the training batch (also killing DDP children and telling
    the other ranks). A signal that arrives mid-step would be acted on after our hooks ran, so
    during training this callback holds the signal and hands it to Lightning's handler at the next
    ``on_train_batch_end``, right after saving at the same point where step checkpoints are taken,
    so the checkpoint is exactly the state at that step. A signal after the last step lets fit
    finish (``last.ckpt`` is then the finished run) and ``ssm-train`` exits before testing. SIGUSR1 is
    left to Lightning when its SLURM auto-requeue handler has claimed it. A second SIGINT
    interrupts at once.
    """

    SIGNALS = ("SIGTERM", "SIGINT", "SIGUSR1")

    def __init__(self, checkpoint_path: str):
        self.checkpoint_path = Path(checkpoint_path)
        self.signum: int | None = None  # the signal that stopped the run
        self.saved_step: int | None = None  # the global step of the preemption checkpoint
        self.finished_after_signal = False  # the signal came after the last training step
        self._pending: int | None = None
        self._previous: dict = {}

    def _hold(self, signum, frame):
        if signum == signal.SIGINT and self._pending is not None:
            raise KeyboardInterrupt  # a second Ctrl+C: stop now
        self._pending = signum
        print(f"ssm-train: received {signal.Signals(signum).name}; saving a checkpoint at the end of this step",
              file=sys.stderr, flush=True)

    def on_train_start(self, trainer, pl_module):
        # Lightning registered its handlers when the run started; ours sit in front while training
        if threading.current_thread() is not threading.main_thread():
            return
        for name in self.SIGNALS:
            signum = getattr(signal, name, None)
            if signum is None:
                continue
            current = signal.getsignal(signum)
            if name == "SIGUSR1" and current not in (signal.SIG_DFL, None):
                continue  # SLURM auto-requeue (or the user) already handles it
            self._previous[signum] = current
            signal.signal(signum, self._hold)

    def _restore(self):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def _act(self, trainer):
        pending = self._pending is not None
        if trainer.world_size > 1:  # a signal seen by any rank stops every rank at the same step
            pending = trainer.strategy.reduce_boolean_decision(pending, all=False)
        if not pending:
            return
        signum, self._pending = self._pending or signal.SIGTERM, None
        self.signum = signum
        if trainer.global_step > 0:  # nothing trained yet: nothing worth saving
            trainer.save_checkpoint(self.checkpoint_path)
            self.saved_step = trainer.global_step
        lightning_handler = self._previous.get(signal.SIGTERM)
        self._restore()
        # Lightning's own SIGTERM path from here: its handler flags the trainer (and tells DDP
        # children and other ranks), and the loop raises SIGTERMException after this hook
        if callable(lightning_handler):
            lightning_handler(signal.SIGTERM, None)
        if not trainer.received_sigterm:  # no Lightning handler installed (not under trainer.fit)
            raise SIGTERMException

    # Only at the end of a step that is not an epoch's last: a signal then, during validation or
    # the epoch's end hooks waits for the next step (the epoch-end checkpoint is on disk by then):
    # a save before validation would skip it on resume, and one at on_train_epoch_end comes
    # before Lightning logs the epoch's training means, losing that row.
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return  # before the epoch's validation: wait for the next step (see LastCheckpoint)
        self._act(trainer)

    def on_train_end(self, trainer, pl_module):
        self._restore()
        if self._pending is not None:  # arrived after the last step: training is complete
            self.signum, self.finished_after_signal = self._pending, True

    def on_exception(self, trainer, pl_module, exception):
        self._restore()
        if isinstance(exception, SIGTERMException) and self.signum is None:
            self.signum = signal.SIGTERM  # Lightning's handler caught it outside training

    def message(self) -> str:
        name = signal.Signals(self.signum).name if self.signum else "a signal"
        saved = (f"saved an exact-resume checkpoint at step {self.saved_step} to {self.checkpoint_path}"
                 if self.saved_step is not None else
                 f"no new checkpoint (the last one on disk, if any, is {self.checkpoint_path})")
        return f"ssm-train: preempted by {name}; {saved}; resume with ckpt_path=last"


class LastCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` for ``last.ckpt`` that skips a step checkpoint on an epoch's last batch:
    that state is before the epoch's validation, and a run resumed from it skips that validation
    (its metrics row, and the best-checkpoint update); the epoch-end save right after covers it."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


class FinalCheckpoint(L.Callback):
    """``last.ckpt`` at the very end of fit: the true last state (every step, epoch-end hooks and
    loop counters done), so resuming a finished run finds nothing left to train."""

    def __init__(self, checkpoint_path: str):
        self.checkpoint_path = Path(checkpoint_path)

    def on_train_end(self, trainer, pl_module):
        if not trainer.fast_dev_run and trainer.global_step > 0:
            trainer.save_checkpoint(self.checkpoint_path)


# -- a CSV history that survives resumes --------------------------------------------------------------

class LogHistory(L.Callback):
    """Keeps ``metrics.csv`` whole across resumes (with ``ssm.train.loggers.CSVLogger``, which
    appends instead of deleting the file).

    Every checkpoint records how many rows the CSV log held when it was written (the logger is
    flushed first, so no logged row is only in memory); resuming from it cuts the file back to
    that many rows, dropping the rows of steps the killed process did after its last checkpoint,
    which the resumed run logs again. One exception is kept: a checkpoint taken at the end of a
    step comes before Lightning logs that step's ``*_step`` values (under the step label it had
    then), and the resumed run starts at the next step, so that row stays.
    """

    def __init__(self):
        self._state: dict | None = None

    @staticmethod
    def _csv_files(trainer) -> list[Path]:
        files = []
        for logger in trainer.loggers:
            log_dir = getattr(logger, "log_dir", None)
            if log_dir is not None and hasattr(logger, "experiment") and type(logger).__name__.endswith("CSVLogger"):
                files.append(Path(log_dir) / "metrics.csv")
        return files

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        for logger in trainer.loggers:
            logger.save()
        files = self._csv_files(trainer)
        rows = csv_rows(files[0]) if files and trainer.is_global_zero else 0
        label = getattr(trainer.fit_loop.epoch_loop, "_batches_that_stepped", None)  # the step Lightning logs under
        checkpoint.setdefault("callbacks", {})[self.state_key] = {"rows": rows, "step_label": label}

    def load_state_dict(self, state_dict):
        self._state = dict(state_dict)

    def on_train_start(self, trainer, pl_module):
        state, self._state = self._state, None
        if state is None or not trainer.is_global_zero:
            return
        label = str(state.get("step_label"))

        def same_step_values(row: dict) -> bool:  # the checkpointed step's *_step row, logged just after it
            logged = [k for k, v in row.items() if v and k not in ("epoch", "step")]
            return row.get("step") == label and bool(logged) and all(k.endswith("_step") for k in logged)

        for path in self._csv_files(trainer):
            truncate_csv(path, int(state.get("rows", 0)), keep=same_step_values)


class EpochAggregates(L.Callback):
    """Carries the running training-epoch aggregates through a checkpoint, so the epoch a run is
    interrupted in logs the same ``train/loss_epoch`` and ``train/<metric>`` as an uninterrupted run.

    Lightning restores model, optimizer and loops but starts an interrupted epoch's means from
    zero. Saved: the states of the module's ``train_metrics`` (torchmetrics) and the sums behind
    each mean-reduced ``self.log(..., on_epoch=True)`` of ``training_step`` (Lightning's result
    collection). Restored: the metric states when training starts (before any update); the
    logged sums added to the fresh ones after the first resumed batch (a + b == b + a exactly, so
    the epoch's mean is bit-identical). Single-process runs only: a checkpoint holds rank 0's sums.
    """

    def __init__(self):
        self._saved_metrics: dict | None = None
        self._logged: dict | None = None

    @staticmethod
    def _results(trainer) -> dict:
        return getattr(trainer.fit_loop.epoch_loop, "_results", None) or {}

    @staticmethod
    def _metrics(pl_module) -> dict:
        collection = getattr(pl_module, "train_metrics", None)
        return dict(collection.items(keep_base=True, copy_state=False)) if collection is not None else {}

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        metrics = self._metrics(pl_module)
        logged = {key: {"value": m.value.detach().clone(), "count": m.cumulated_batch_size.detach().clone()}
                  for key, m in self._results(trainer).items()
                  if key.startswith("training_step.") and m.is_tensor and m.meta.on_epoch and m.meta.is_mean_reduction}
        checkpoint.setdefault("callbacks", {})[self.state_key] = {
            "metrics": {name: {k: (v.detach().clone() if isinstance(v, torch.Tensor) else list(v))
                               for k, v in m.metric_state.items()} | {"_update_count": m._update_count}
                        for name, m in metrics.items()},
            "logged": logged,
        }

    def load_state_dict(self, state_dict):
        self._saved_metrics, self._logged = state_dict.get("metrics") or {}, state_dict.get("logged") or {}

    def setup(self, trainer, pl_module, stage):
        if trainer.world_size > 1:  # the checkpoint holds rank 0's partial sums only: keep each rank's own
            self._saved_metrics = self._logged = None

    def on_train_start(self, trainer, pl_module):
        saved, self._saved_metrics = self._saved_metrics, None
        metrics = self._metrics(pl_module)
        for name, state in (saved or {}).items():
            if name in metrics:
                metric = metrics[name]
                for k, v in state.items():
                    if k == "_update_count":
                        metric._update_count = int(v)
                    else:
                        setattr(metric, k, v.to(metric.device) if isinstance(v, torch.Tensor) else list(v))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if not self._logged:
            return
        saved, self._logged = self._logged, None
        results = self._results(trainer)
        for key, state in saved.items():
            if key in results:
                m = results[key]
                m.value = state["value"].to(m.value.device) + m.value
                m.cumulated_batch_size = state["count"].to(m.cumulated_batch_size.device) + m.cumulated_batch_size


def csv_rows(path: Path) -> int:
    """Data rows (header excluded) in a CSV file; 0 when there is none."""
    if not Path(path).is_file():
        return 0
    with open(path, newline="") as f:
        return max(sum(1 for _ in csv.reader(f)) - 1, 0)


def truncate_csv(path: Path, rows: int, *, keep=None) -> int:
    """Keep the header and the first ``rows`` data rows of ``path`` (atomically), and of the rest
    those for which ``keep(row as a dict)`` is true; returns how many rows were dropped."""
    path = Path(path)
    if not path.is_file():
        return 0
    with open(path, newline="") as f:
        table = list(csv.reader(f))
    header, rest = table[0] if table else [], table[rows + 1 :]
    kept = [r for r in rest if keep is not None and keep(dict(zip(header, r)))]
    dropped = len(rest) - len(kept)
    if dropped:
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", newline="") as f:
            csv.writer(f).writerows(table[: rows + 1] + kept)
        os.replace(tmp, path)
    return dropped


# -- an exponential moving average of the weights ------------------------------------------------------

_EMABase = getattr(_lightning_callbacks, "EMAWeightAveraging", None)  # Lightning >= 2.6


class EMA(_EMABase or L.Callback):
    """An exponential moving average of the weights (``callbacks=ema``, ``callbacks.ema.decay``):
    after optimizer step t (one in ``update_every_n_steps``, from ``update_starting_at_step`` on)
    ``ema = decay * ema + (1 - decay) * weights``, starting from the weights after the first
    update. Validation runs on the average (swapped in and out around every validation epoch),
    and so do the test after fitting and ``ssm.load``: a checkpoint's ``state_dict`` holds the
    average, its ``current_model_state`` the trained weights, which a resumed run continues from.

    Lightning's ``EMAWeightAveraging`` (which averages buffers too) with three changes: the decay
    is checked; a checkpoint loaded to test or validate (not to fit) keeps the average it holds
    as the weights, where Lightning's would load the trained weights when the callback already
    averaged in this process (``ssm-train`` tests the best checkpoint right after fitting); and
    a checkpoint written after fit ends (``last.ckpt``) keeps the trained weights as
    ``current_model_state``, where Lightning has already copied the average over them, so a
    finished run trained further continues from its trained weights, not from the average.
    (The state-spaces/s4 trainer's ``train.ema`` is the same average kept in the optimizer state:
    src/utils/optim/ema.py at commit e757cef57d89e448c413de7325ed5601aceaac13.)
    """

    def __init__(self, decay: float = 0.999, update_every_n_steps: int = 1, update_starting_at_step: int | None = None,
                 use_buffers: bool = True):
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 < decay < 1.0:
            raise ValueError(f"callbacks.ema.decay: must be a number strictly between 0 and 1 (e.g. 0.999), "
                             f"got {decay!r}")

        def integer(value, low: int) -> bool:
            return not isinstance(value, bool) and isinstance(value, int) and value >= low

        if not integer(update_every_n_steps, 1):
            raise ValueError(f"callbacks.ema.update_every_n_steps: must be a positive integer, got {update_every_n_steps!r}")
        if update_starting_at_step is not None and not integer(update_starting_at_step, 0):
            raise ValueError("callbacks.ema.update_starting_at_step: must be null or an integer >= 0, "
                             f"got {update_starting_at_step!r}")
        if _EMABase is None:
            raise ImportError("callbacks.ema needs Lightning's EMAWeightAveraging (lightning>=2.6); "
                              "pip install -U lightning")
        super().__init__(decay=float(decay), update_every_n_steps=update_every_n_steps,
                         update_starting_at_step=update_starting_at_step, use_buffers=use_buffers)
        self.decay = float(decay)
        self._trained: dict | None = None  # the trained weights once fit has put the average in their place

    def setup(self, trainer, pl_module, stage):
        if stage == "fit":
            self._trained = None
        super().setup(trainer, pl_module, stage)

    def on_train_end(self, trainer, pl_module):
        self._trained = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
        super().on_train_end(trainer, pl_module)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        super().on_save_checkpoint(trainer, pl_module, checkpoint)
        if self._trained is not None and "current_model_state" in checkpoint:
            checkpoint["current_model_state"] = self._trained

    def on_load_checkpoint(self, trainer, pl_module, checkpoint):
        if trainer.state.fn != TrainerFn.FITTING:  # test/validate/predict: the stored average is the model
            return
        super().on_load_checkpoint(trainer, pl_module, checkpoint)
