"""The LightningModule that trains any backbone on any task, and ``ssm.load``.

Optimizer param groups come from the parameters' hints (``ssm.optim.param_groups``) and are
printed once as a table. The resolved Hydra config travels inside every checkpoint
(``hyper_parameters["config"]``), so ``ssm.load(path)`` rebuilds the model from the checkpoint
alone. A non-finite loss stops the run before the optimizer touches the weights.
"""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch
from torch import nn

from ..optim import param_groups
from .loading import load  # noqa: F401  (ssm.train.module.load stays importable)
from .tasks import Task, run_model


class NonFiniteLossError(RuntimeError):
    pass


class SequenceLightningModule(L.LightningModule):
    def __init__(
        self,
        model: nn.Module,
        task: Task,
        optimizer: Callable,
        scheduler: Callable | None = None,
        scheduler_interval: str = "step",
        config: dict | None = None,
    ):
        super().__init__()
        self.model, self.task = model, task
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.scheduler_interval = scheduler_interval
        check_model = getattr(task, "check_model", None)
        if callable(check_model):  # e.g. a causal objective refuses a bidirectional model
            check_model(model)
        # only the resolved config goes into the checkpoint; the modules are rebuilt from it
        self.save_hyperparameters({"config": config or {}})
        for stage in ("train", "val", "test"):  # ("train" cannot be a ModuleDict key: Module.train)
            setattr(self, f"{stage}_metrics", task.metrics().clone(prefix=f"{stage}/"))

    def forward(self, x, lengths=None):
        return run_model(self.task, self.model, x, lengths)

    def _shared_step(self, batch, stage: str):
        # (x, y) or (x, y, lengths): padded batches carry their true lengths for the model's masks
        if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
            raise ValueError(f"a batch must be (x, y) or (x, y, lengths); got {type(batch).__name__} of length "
                             f"{len(batch) if isinstance(batch, (tuple, list)) else '?'}")
        x, y, lengths = (*batch, None) if len(batch) == 2 else batch
        pretext = getattr(self.task, "pretext", None)
        if callable(pretext):  # self-supervised tasks build (inputs, target) from the inputs alone
            x, y = pretext(x, lengths)
        output = self(x, lengths)
        by_length = {"lengths": lengths} if getattr(self.task, "uses_lengths", False) else {}
        loss = self.task.loss(output, y, **by_length)
        aux_loss = getattr(self.model, "aux_loss", None)
        if callable(aux_loss) and stage == "train":  # model-specific extra objectives (e.g. SpaceTime's)
            loss = loss + aux_loss()
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"non-finite {stage} loss ({loss.item()}) at global step {self.global_step}; the run stops here "
                "and the last checkpoint on disk is from before this step. Lower the learning rate or check the data."
            )
        metrics = getattr(self, f"{stage}_metrics")
        update = getattr(self.task, "update_metrics", None)
        if callable(update):  # metrics with inputs of their own (e.g. with and without padding)
            update(metrics, output.detach(), y, **by_length)
        else:
            metrics.update(*self.task.metric_inputs(output.detach(), y))
        self.log(f"{stage}/loss", loss, prog_bar=True, on_step=stage == "train", on_epoch=True, batch_size=len(x), sync_dist=stage != "train")
        self.log_dict(metrics, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(x))
        return loss

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # how to read new data like the training data (labels, standardisation, reader options),
        # as plain Python types so a weights_only load can read it; ssm-predict uses it
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        describe = getattr(datamodule, "describe", None)
        if callable(describe):
            checkpoint["data_info"] = describe()

    def training_step(self, batch, batch_idx):
        return self._shared_step(batch, "train")

    def validation_step(self, batch, batch_idx):
        return self._shared_step(batch, "val")

    def test_step(self, batch, batch_idx):
        return self._shared_step(batch, "test")

    def configure_optimizers(self):
        try:
            probe = self.optimizer_factory([torch.nn.Parameter(torch.zeros(1))])
        except (TypeError, ValueError) as err:  # e.g. optimizer.lr=abc: torch's message names nothing
            settings = dict(getattr(self.optimizer_factory, "keywords", {}) or {})
            named = [f"optimizer.{k}={v!r}" for k, v in settings.items() if isinstance(v, str)] or \
                [f"optimizer.{k}={v!r}" for k, v in settings.items()]
            raise ValueError(f"optimizer: cannot build the optimizer from {', '.join(named) or 'its settings'} ({err}); "
                             "lr, weight_decay, betas and eps must be numbers") from None
        defaults = probe.defaults
        groups = param_groups(self.model, lr=defaults["lr"], weight_decay=defaults.get("weight_decay", 0.0))
        if self.global_rank == 0:
            print(format_groups(groups))
        optimizer = self.optimizer_factory([{k: v for k, v in g.items() if k != "names"} for g in groups])
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer, total_steps=int(self.trainer.estimated_stepping_batches))
        config = {"scheduler": scheduler, "interval": self.scheduler_interval}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            config.update(monitor=self.task.monitor, interval="epoch")
        return {"optimizer": optimizer, "lr_scheduler": config}


def format_groups(groups: list[dict]) -> str:
    lines = ["optimizer groups:", f"  {'params':>9s} {'tensors':>8s} {'lr':>9s} {'wd':>7s}  examples"]
    for g in groups:
        count = sum(p.numel() for p in g["params"])
        examples = ", ".join(n.split(".", 1)[-1] for n in g["names"][:3]) + (" ..." if len(g["names"]) > 3 else "")
        lines.append(f"  {count:9d} {len(g['params']):8d} {g['lr']:9.2e} {g['weight_decay']:7.3f}  {examples}")
    return "\n".join(lines)

