"""The LightningModule that trains any backbone on any task, and ``ssm.load``.

Optimizer param groups come from the parameters' hints (``ssm.optim.param_groups``) and are
printed once as a table. The resolved Hydra config travels inside every checkpoint
(``hyper_parameters["config"]``), so ``ssm.load(path)`` rebuilds the model from the checkpoint
alone. A non-finite loss stops the run before the optimizer touches the weights.

``StatePassing`` (``state.mode=tbptt state.chunk=N``): truncated backpropagation through time
for sequences too long for one batch. The data arrive as consecutive chunks
(``ssm.train.data.SequenceChunks``), each row of a batch continuing its sequence from the batch
before; the model's final state is carried, detached, into the next chunk of each row and reset
to ``default_state`` on the rows whose chunk starts a sequence. Training, validation and test
carry separate states; the training state travels in checkpoints, so a run resumed mid-sequence
continues from it. (The option of the state-spaces/s4 trainer, ``train.state.mode``: train.py
``_process_state`` at commit e757cef57d89e448c413de7325ed5601aceaac13.)
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Literal

import lightning as L
import torch
from torch import nn

from ..checks import check_choice
from ..optim import param_groups
from .loading import load  # noqa: F401  (ssm.train.module.load stays importable)
from .tasks import Task, run_model


class NonFiniteLossError(RuntimeError):
    pass


StateMode = Literal["none", "tbptt"]


class StatePassing:
    """How the recurrent state travels between batches: ``mode="none"`` (every batch starts from
    the zero state) or ``"tbptt"`` (chunks of ``chunk`` steps, the state carried between them;
    see the module docstring)."""

    def __init__(self, mode: StateMode = "none", chunk: int | None = None):
        check_choice("state", "mode", mode, StateMode)
        if mode == "tbptt" and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
            raise ValueError(f"state.chunk: state.mode=tbptt needs a positive integer chunk length (steps per "
                             f"chunk), got {chunk!r}")
        if mode == "none" and chunk is not None:
            raise ValueError(f"state.chunk={chunk!r} is only used with state.mode=tbptt (state.mode is 'none')")
        self.mode, self.chunk = mode, chunk

    @property
    def enabled(self) -> bool:
        return self.mode == "tbptt"

    def check(self, model: nn.Module, task) -> None:
        """Refuse a model or task that cannot be trained in chunks, with what to change."""
        name = type(model).__name__
        if getattr(task, "chunkable", False) is not True:
            raise ValueError(f"state.mode=tbptt: the task {type(task).__name__} cannot be trained in chunks (its loss "
                             "is not a mean of per-step terms); use a per-step task (task=lm) or state.mode=none")
        forward = getattr(model, "forward", None)
        takes_state = forward is not None and "state" in inspect.signature(forward).parameters
        if not takes_state or not callable(getattr(model, "default_state", None)):
            raise ValueError(f"state.mode=tbptt needs a model with a causal recurrent state (forward(x, state) and "
                             f"default_state(batch)); {name} has none")
        if getattr(model, "causal", False) is not True:
            raise ValueError(f"state.mode=tbptt needs a causal model, but this {name} is not causal (it has no state "
                             "to carry): build it with causal layers, e.g. model.layer.bidirectional=false")
        pool = getattr(model, "pool", "none")  # SequenceModel's head ("mean"/"last" pool over time)
        if isinstance(pool, str) and pool != "none":
            raise ValueError(f"state.mode=tbptt needs per-step outputs; set model.pool=none (got {pool!r})")
        period = getattr(model, "period", 1)  # SaShiMi continues a state only at multiples of prod(pool)
        if isinstance(period, int) and self.chunk % period:
            raise ValueError(f"state.chunk={self.chunk} must be a multiple of {name}'s period {period} (prod(pool))")


def _map_leaves(state, fn):
    """``state`` (nested lists, tuples, dicts, dataclasses) with every leaf that is not None
    (tensors, and scalars such as SaShiMi's step count) replaced by ``fn(leaf)``; traversal order
    is fixed, so ``_leaves`` and a rebuild from a template agree."""
    if state is None:
        return None
    if isinstance(state, (list, tuple)):
        items = [_map_leaves(s, fn) for s in state]
        return type(state)(*items) if hasattr(state, "_fields") else type(state)(items)
    if isinstance(state, dict):
        return {k: _map_leaves(v, fn) for k, v in state.items()}
    if dataclasses.is_dataclass(state) and not isinstance(state, type):
        return dataclasses.replace(state, **{f.name: _map_leaves(getattr(state, f.name), fn)
                                             for f in dataclasses.fields(state) if f.init})
    return fn(state)


def _leaves(state) -> list:
    out: list = []
    _map_leaves(state, lambda leaf: out.append(leaf) or leaf)
    return out


def _from_leaves(template, leaves: list):
    """``template``'s structure holding ``leaves`` (from ``_leaves`` of a state of that structure)."""
    if len(leaves) != len(_leaves(template)):
        raise ValueError(f"state.mode=tbptt: the carried state has {len(leaves)} parts but this model's state has "
                         f"{len(_leaves(template))}; the checkpoint was written by a different model")
    it = iter(leaves)
    return _map_leaves(template, lambda _: next(it))


def detach_state(state):
    return _map_leaves(state, lambda v: v.detach() if isinstance(v, torch.Tensor) else v)


def reset_rows(state, fresh, first: torch.Tensor):
    """``state`` with the rows where ``first`` (B,) is true replaced by those of ``fresh`` (a
    default state of the same batch); every tensor of a state has the batch in dimension 0."""
    def pick(carried, zero):
        if not isinstance(carried, torch.Tensor):
            return carried
        mask = first.to(carried.device).view(-1, *([1] * (carried.dim() - 1)))  # (B, 1, ...)
        return torch.where(mask, zero.to(carried.dtype), carried)

    merged = [pick(c, z) for c, z in zip(_leaves(state), _leaves(fresh))]
    return _from_leaves(fresh, merged)


class SequenceLightningModule(L.LightningModule):
    def __init__(
        self,
        model: nn.Module,
        task: Task,
        optimizer: Callable,
        scheduler: Callable | None = None,
        scheduler_interval: str = "step",
        config: dict | None = None,
        state: StatePassing | None = None,
    ):
        super().__init__()
        self.model, self.task = model, task
        self.state_passing = state if state is not None else StatePassing()
        if self.state_passing.enabled:
            self.state_passing.check(model, task)
        self._carried: dict = {}  # stage -> the state carried into that stage's next chunk
        self._resumed_state: list | None = None  # the training state's leaves from a checkpoint
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

    # -- state passing (state.mode=tbptt) ---------------------------------------------------------

    def _state_into(self, stage: str, x: torch.Tensor, first: torch.Tensor):
        """The state this chunk starts from: the one carried from the row's previous chunk, or
        the default state on rows that start a sequence."""
        batch = x.shape[0]
        if first.shape != (batch,):
            raise ValueError(f"state.mode=tbptt: a batch's `first` flags must be (B,) = ({batch},), "
                             f"got {tuple(first.shape)}")
        if bool(first.all()):  # every row starts a sequence (the batch may have changed size)
            if stage == "train":
                self._resumed_state = None
            return self.model.default_state(batch, device=x.device)
        fresh = self.model.default_state(batch, device=x.device)
        carried = self._carried.get(stage)
        if carried is None and stage == "train" and self._resumed_state is not None:  # resumed mid-sequence
            carried = _from_leaves(fresh, [v.to(x.device) if isinstance(v, torch.Tensor) else v
                                           for v in self._resumed_state])
            self._resumed_state = None
        if carried is None:
            raise RuntimeError(f"state.mode=tbptt: a {stage} batch continues its sequences (first=False) but no state "
                               "was carried into it; chunks must come in order from each sequence's first chunk "
                               "(ssm.train.data.ChunkBatches)")
        rows = next((v.shape[0] for v in _leaves(carried) if isinstance(v, torch.Tensor)), batch)
        if rows != batch:
            raise RuntimeError(f"state.mode=tbptt: the carried state is for {rows} rows but this {stage} batch has "
                               f"{batch}; a batch may change size only where every row starts a new sequence")
        return reset_rows(carried, fresh, first) if bool(first.any()) else carried

    def _chunk_forward(self, batch, stage: str):
        if not isinstance(batch, dict) or not {"x", "y", "first"} <= batch.keys():
            raise ValueError("state.mode=tbptt: batches must be chunks {'x', 'y', 'first'} "
                             f"(ssm.train.data.SequenceChunks), got {type(batch).__name__}")
        x, y = batch["x"], batch["y"]
        state = self._state_into(stage, x, batch["first"])
        output, next_state = run_model(self.task, self.model, x, state=state)
        self._carried[stage] = detach_state(next_state)  # truncation: no gradient into earlier chunks
        return x, y, output

    def setup(self, stage: str) -> None:
        if self.state_passing.enabled and self.trainer.world_size > 1:
            # each rank would need its own rows of every group of sequences (ChunkBatches is not sharded)
            raise ValueError(f"state.mode=tbptt runs in a single process; this run has {self.trainer.world_size} "
                             "processes (set trainer.devices=1 trainer.num_nodes=1)")

    def on_validation_epoch_start(self) -> None:
        self._carried.pop("val", None)

    def on_test_epoch_start(self) -> None:
        self._carried.pop("test", None)

    # -- steps ----------------------------------------------------------------------------------

    def _shared_step(self, batch, stage: str):
        if self.state_passing.enabled:
            (x, y, output), lengths = self._chunk_forward(batch, stage), None
        else:
            x, y, lengths, output = self._whole_forward(batch)
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

    def _whole_forward(self, batch):
        # (x, y) or (x, y, lengths): padded batches carry their true lengths for the model's masks
        if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
            raise ValueError(f"a batch must be (x, y) or (x, y, lengths); got {type(batch).__name__} of length "
                             f"{len(batch) if isinstance(batch, (tuple, list)) else '?'}")
        x, y, lengths = (*batch, None) if len(batch) == 2 else batch
        pretext = getattr(self.task, "pretext", None)
        if callable(pretext):  # self-supervised tasks build (inputs, target) from the inputs alone
            x, y = pretext(x, lengths)
        return x, y, lengths, self(x, lengths)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # how to read new data like the training data (labels, standardisation, reader options),
        # as plain Python types so a weights_only load can read it; ssm-predict uses it
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        describe = getattr(datamodule, "describe", None)
        if callable(describe):
            checkpoint["data_info"] = describe()
        # the state carried into the next training chunk, as a flat list of tensors and numbers
        # (weights_only-loadable); a run resumed mid-sequence continues from it
        if self.state_passing.enabled and self._carried.get("train") is not None:
            checkpoint["carried_state"] = _leaves(self._carried["train"])

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._carried.pop("train", None)
        self._resumed_state = checkpoint.get("carried_state") if self.state_passing.enabled else None

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

