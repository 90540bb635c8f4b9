"""``ssm-train``: instantiate, fit, test, summarise. Hydra configs live in ``configs/``.

    ssm-train                                  # the default experiment
    ssm-train experiment=NAME key=value ...     # any overlay and overrides
    ssm-train ... ckpt_path=last                # resume the run in this output directory
    ssm-train ... trust_checkpoint=true         # load a checkpoint you know without the safety checks

SIGTERM/SIGINT/SIGUSR1 during training save an exact-resume last.ckpt and exit with 128 + signal.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import hydra
import lightning as L
from hydra.utils import instantiate
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from .callbacks import (
    AtomicCheckpointIO,
    EpochAggregates,
    FinalCheckpoint,
    LogHistory,
    Preemption,
    RandomState,
    RunSummary,
    remove_stale_temp_files,
)
from .data import instantiate_data
from .loading import config_dir, config_targets, read_checkpoint  # noqa: F401  (cli.config_dir stays importable)
from .loggers import instantiate_loggers
from .metrics import ClassificationReport, ForecastReport, TestSummary
from .module import SequenceLightningModule
from .progress import PlainProgress, interactive, quiet_third_party
from .pretraining import (
    load_pretrained,
    pretrain_d_input,
    pretrain_d_output,
    pretrain_vocab,
)
from .tasks import Classification, Forecasting

# arithmetic the pretraining configs need (OmegaConf has none); registered once per process
for _name, _fn in {"ssm.pretrain_d_input": pretrain_d_input, "ssm.pretrain_vocab": pretrain_vocab,
                   "ssm.pretrain_d_output": pretrain_d_output}.items():
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _fn)


def checkpoint_trust(cfg: DictConfig) -> dict:
    """How this run reads checkpoints: ``trust_checkpoint=true`` skips the safety checks; otherwise
    the targets of the command line's own config are vouched for (a resumed run names them too)."""
    return {"trust": bool(cfg.get("trust_checkpoint", False)),
            "allowed_targets": config_targets(OmegaConf.to_container(cfg, resolve=False))}


def build(cfg: DictConfig):
    """(datamodule, lightning module, trainer) from a composed config; nothing is run."""
    quiet_third_party()
    state = instantiate(cfg.state) if cfg.get("state") is not None else None  # state.mode=tbptt: chunks
    datamodule = instantiate_data(cfg, state=state)  # fills d_input/d_output left as ??? from the data
    model = instantiate(cfg.model)
    if cfg.get("pretrained"):  # fine-tuning: start from a self-pretrained backbone
        report = load_pretrained(model, cfg.pretrained, **checkpoint_trust(cfg))
        print(f"pretrained: loaded {len(report['loaded'])} backbone tensors from {cfg.pretrained}"
              f"{' (mask entries dropped from ' + ', '.join(report['trimmed']) + ')' if report['trimmed'] else ''}; "
              f"head left at its initialisation: {', '.join(report['head'])}")
    task = instantiate(cfg.task)
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    module = SequenceLightningModule(
        model, task, instantiate(cfg.optimizer), scheduler, scheduler_interval=cfg.get("scheduler_interval", "step"),
        config=OmegaConf.to_container(cfg, resolve=True), state=state,
    )
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    batch_job = not interactive()  # a bar shows nothing in a log file: plain lines instead
    if batch_job:
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    callbacks += [RandomState(), RunSummary(cfg.output_dir, task.monitor, task.monitor_mode), LogHistory(),
                  EpochAggregates(),
                  PlainProgress(Path(cfg.output_dir) / "cli.log", every_n_steps=cfg.trainer.get("log_every_n_steps", 50),
                                echo=batch_job)]
    callbacks.append(TestSummary(cfg.output_dir))
    last = Path(cfg.output_dir) / "checkpoints" / "last.ckpt"
    callbacks += [Preemption(str(last)), FinalCheckpoint(str(last))]
    if isinstance(task, Forecasting):
        callbacks.append(ForecastReport(cfg.output_dir, task.horizon, season=task.season))
    if isinstance(task, Classification):
        callbacks.append(ClassificationReport(cfg.output_dir, task.n_classes))
    logger = instantiate_loggers(cfg.get("logger")) or False
    extra = {"enable_progress_bar": False} if batch_job else {}
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger,
                          plugins=[AtomicCheckpointIO(**checkpoint_trust(cfg))], **extra)
    return datamodule, module, trainer


def resolve_ckpt(cfg: DictConfig) -> str | None:
    ckpt = cfg.get("ckpt_path")
    if ckpt in (None, ""):
        return None
    if ckpt == "last":
        path = Path(cfg.output_dir) / "checkpoints" / "last.ckpt"
        if not path.is_file():
            raise FileNotFoundError(f"ckpt_path=last: no {path} yet (this output_dir has no run to resume)")
        return str(path)
    if not Path(ckpt).is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt}: no such file")
    return ckpt


def finished(ckpt: dict, cfg: DictConfig) -> str | None:
    """Why the run saved in ``ckpt`` has nothing left to train under ``cfg.trainer``, or None."""
    epochs = ckpt.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {}).get("total", {}).get("completed", 0)
    max_epochs, max_steps = cfg.trainer.get("max_epochs"), cfg.trainer.get("max_steps") or -1
    if max_steps > 0 and ckpt.get("global_step", 0) >= max_steps:
        return f"step {ckpt.get('global_step')} of trainer.max_steps={max_steps}"
    if max_epochs is not None and max_epochs >= 0 and epochs >= max_epochs:
        return f"epoch {epochs} of trainer.max_epochs={max_epochs}"
    return None


def evaluate_finished(cfg: DictConfig, ckpt: str) -> dict:
    """The test split on a finished run's best checkpoint (next to ``ckpt``; ``ckpt`` itself if none)."""
    best = Path(ckpt).parent / "best.ckpt"
    datamodule, module, trainer = build(cfg)
    tested = trainer.test(module, datamodule=datamodule, ckpt_path=str(best if best.is_file() else ckpt))
    return {k: float(v) for k, v in (tested[0] if tested else {}).items()}


def train(cfg: DictConfig) -> dict:
    L.seed_everything(cfg.seed, workers=True)
    if rank_zero_only.rank == 0:  # before anything else reads the directory
        for stale in remove_stale_temp_files(Path(cfg.output_dir) / "checkpoints"):
            print(f"ssm-train: removed {stale}, left by a checkpoint write that was killed")
    ckpt = resolve_ckpt(cfg)
    if ckpt is not None:  # refuse a damaged or unsafe file before building anything
        done = finished(read_checkpoint(ckpt, what="ckpt_path", **checkpoint_trust(cfg)), cfg)
        if done:
            print(f"ssm-train: the run in {ckpt} is already finished ({done}); nothing to train. "
                  "Raise trainer.max_epochs (or max_steps) to train further.")
            return evaluate_finished(cfg, ckpt) if cfg.get("test", True) else {}
    datamodule, module, trainer = build(cfg)
    preemption = next(c for c in trainer.callbacks if isinstance(c, Preemption))
    # checkpoints are read by AtomicCheckpointIO.load_checkpoint (read_checkpoint: safe unless
    # trust_checkpoint=true)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt)
    except SIGTERMException:  # a SystemExit without a code: it would exit 0
        print(preemption.message(), file=sys.stderr, flush=True)
        raise SystemExit(128 + int(preemption.signum or signal.SIGTERM)) from None
    if preemption.finished_after_signal:
        print(f"ssm-train: preempted by {signal.Signals(preemption.signum).name} after the last training step; "
              "last.ckpt holds the finished run; the test was not run: run again with ckpt_path=last to test",
              file=sys.stderr, flush=True)
        raise SystemExit(128 + int(preemption.signum))
    results = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if cfg.get("test", True) and not trainer.fast_dev_run and getattr(datamodule, "has_test", True):
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        try:
            tested = trainer.test(module, datamodule=datamodule, ckpt_path=best or None)
        except SIGTERMException:
            print("ssm-train: preempted by SIGTERM during the test after training finished (last.ckpt holds the "
                  "finished run); run again with ckpt_path=last to evaluate", file=sys.stderr, flush=True)
            raise SystemExit(128 + int(signal.SIGTERM)) from None
        results.update({k: float(v) for k, v in (tested[0] if tested else {}).items()})
    return results


def main() -> None:
    hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")(train)()


if __name__ == "__main__":
    main()
