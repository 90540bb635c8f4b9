"""``ssm-train``: instantiate, fit, test, summarise. Hydra configs live in ``configs/``.

    ssm-train                                  # the default experiment
    ssm-train experiment=NAME key=value ...     # any overlay and overrides
    ssm-train ... ckpt_path=last                # resume the run in this output directory
"""

from __future__ import annotations

from pathlib import Path

import hydra
import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ProgressBar
from omegaconf import DictConfig, OmegaConf

from .callbacks import AtomicCheckpointIO, RandomState, RunSummary
from .data import instantiate_data
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


def config_dir() -> Path:
    """``configs/``: shipped inside the package (wheel) or at the repository root (editable)."""
    here = Path(__file__).resolve().parent.parent  # ssm/
    for candidate in (here / "configs", here.parent / "configs"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"ssm-train: configs/ not found next to {here}")


def build(cfg: DictConfig):
    """(datamodule, lightning module, trainer) from a composed config; nothing is run."""
    quiet_third_party()
    datamodule = instantiate_data(cfg)  # fills d_input/d_output left as ??? from the data
    model = instantiate(cfg.model)
    if cfg.get("pretrained"):  # fine-tuning: start from a self-pretrained backbone
        report = load_pretrained(model, cfg.pretrained)
        print(f"pretrained: loaded {len(report['loaded'])} backbone tensors from {cfg.pretrained}"
              f"{' (mask entries dropped from ' + ', '.join(report['trimmed']) + ')' if report['trimmed'] else ''}; "
              f"head left at its initialisation: {', '.join(report['head'])}")
    task = instantiate(cfg.task)
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    module = SequenceLightningModule(
        model, task, instantiate(cfg.optimizer), scheduler, scheduler_interval=cfg.get("scheduler_interval", "step"),
        config=OmegaConf.to_container(cfg, resolve=True),
    )
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    batch_job = not interactive()  # a bar shows nothing in a log file: plain lines instead
    if batch_job:
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    callbacks += [RandomState(), RunSummary(cfg.output_dir, task.monitor, task.monitor_mode),
                  PlainProgress(Path(cfg.output_dir) / "cli.log", every_n_steps=cfg.trainer.get("log_every_n_steps", 50),
                                echo=batch_job)]
    callbacks.append(TestSummary(cfg.output_dir))
    if isinstance(task, Forecasting):
        callbacks.append(ForecastReport(cfg.output_dir, task.horizon, season=task.season))
    if isinstance(task, Classification):
        callbacks.append(ClassificationReport(cfg.output_dir, task.n_classes))
    logger = instantiate_loggers(cfg.get("logger")) or False
    extra = {"enable_progress_bar": False} if batch_job else {}
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger, plugins=[AtomicCheckpointIO()], **extra)
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


def train(cfg: DictConfig) -> dict:
    L.seed_everything(cfg.seed, workers=True)
    ckpt = resolve_ckpt(cfg)
    datamodule, module, trainer = build(cfg)
    # Our checkpoints hold optimizer/scheduler state that torch's weights_only loader refuses;
    # they are the run's own files (or one the user named), so they are loaded in full.
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt, weights_only=False)
    results = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if cfg.get("test", True) and not trainer.fast_dev_run and getattr(datamodule, "has_test", True):
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        tested = trainer.test(module, datamodule=datamodule, ckpt_path=best or None, weights_only=False)
        results.update({k: float(v) for k, v in (tested[0] if tested else {}).items()})
    return results


def main() -> None:
    hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")(train)()


if __name__ == "__main__":
    main()
