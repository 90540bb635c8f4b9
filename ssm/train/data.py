"""LightningDataModule around any map-style dataset factory ``dataset(split=...)``, with data
order that survives a kill.

Exact resume needs two things from the data side: the order of an epoch must be a function of
(seed, epoch), and a run resumed mid-epoch must continue at the first batch the killed run had
not trained on. Lightning restarts an interrupted epoch's loader from its first batch unless
the loader is stateful, so the train loader saves its position (epoch, batches trained) in every
checkpoint and, restored, skips those batches. Skipping happens on the loader's own batch stream, after any sampler that
Lightning injects (e.g. ``DistributedSampler`` under DDP), so it is right for every rank.
"""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch
from torch.utils.data import DataLoader, Sampler


def epoch_seed(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch


class EpochShuffle(Sampler[int]):
    """A random permutation of ``range(n)`` that is a pure function of (seed, epoch): every
    iteration draws from its own fresh generator, so no other consumer of a shared generator
    (or of the global one) can shift it."""

    def __init__(self, n: int, *, seed: int, epoch: int):
        self.n, self.seed, self.epoch = n, seed, epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        return iter(torch.randperm(self.n, generator=generator).tolist())


class ResumingLoader(DataLoader):
    """A DataLoader that knows how far training got into its epoch, for Lightning's checkpoints.

    ``state_dict()`` records (seed, epoch, batches trained), reading the count from ``position``
    (a callable; the DataModule passes Lightning's own progress counter, which counts batches
    whose optimizer step ran, unaffected by prefetching). ``load_state_dict`` on a loader of the
    same epoch makes its next iteration skip that many batches, once. ``len()`` stays the full
    epoch, which is what Lightning's progress counters expect. Skipped batches are still loaded
    and collated (one pass over the part of the epoch already trained): that costs loading time
    but never touches the model or the random state.
    """

    def __init__(self, *args, seed: int = 0, epoch: int = 0, position: Callable[[], int] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.seed, self.epoch, self.position, self.skip = seed, epoch, position, 0

    def state_dict(self) -> dict:
        done = self.position() if self.position is not None else 0
        return {"seed": self.seed, "epoch": self.epoch, "batches_done": int(done)}

    def load_state_dict(self, state: dict) -> None:
        if state.get("seed", self.seed) != self.seed:
            raise ValueError(
                f"DataModule: the checkpoint was written with data seed {state['seed']}, this run has seed {self.seed}; "
                "resuming would change the data order. Resume with the same `seed`."
            )
        if state.get("epoch") == self.epoch:
            self.skip = int(state.get("batches_done", 0))

    def __iter__(self):
        if self.generator is not None:
            # Every iterator draws a base seed (for worker seeding) from this generator, and
            # Lightning may create an epoch's iterator more than once; reseeding keeps that draw
            # (and everything else) a function of (seed, epoch), and off the global generator.
            self.generator.manual_seed(epoch_seed(self.seed, self.epoch))
        iterator = super().__iter__()
        skip, self.skip = self.skip, 0  # one-shot: only the interrupted epoch is shortened
        for _ in range(skip):
            if next(iterator, None) is None:
                break
        return iterator


class DataModule(L.LightningDataModule):
    """Builds the train/val/test splits from ``dataset`` (a partial taking ``split=``).

    ``d_input``/``d_output``/``vocab_size`` describe the data for the model config. Shuffling uses
    a generator seeded with ``seed`` and the epoch, so data order is a function of (seed, epoch);
    the train loader's ``state_dict`` (saved in checkpoints by Lightning) lets a run resumed
    mid-epoch see exactly the batches the interrupted run had not trained on yet.
    """

    def __init__(self, dataset: Callable, *, batch_size: int = 32, eval_batch_size: int | None = None,
                 num_workers: int = 0, seed: int = 0, d_input: int | None = None, d_output: int | None = None,
                 vocab_size: int | None = None):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"DataModule: `batch_size` must be >= 1, got {batch_size}")
        self.dataset_factory, self.batch_size = dataset, batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers, self.seed = num_workers, seed
        self.d_input, self.d_output, self.vocab_size = d_input, d_output, vocab_size
        self.splits: dict = {}
        self._train_loader: ResumingLoader | None = None
        self._resume: dict | None = None  # the train loader's position from a checkpoint, until applied

    # The train loader's position is saved here as well as by Lightning: Lightning restores loader
    # states only into a loader it builds after the restore, but the schedulers' total step count
    # (``trainer.estimated_stepping_batches``) builds the first epoch's loader before it, so a run
    # resumed in epoch 0 would restart that epoch from its first batch.
    def state_dict(self) -> dict:
        return {"train_loader": self._train_loader.state_dict()} if self._train_loader is not None else {}

    def load_state_dict(self, state: dict) -> None:
        self._resume = state.get("train_loader")

    def setup(self, stage: str | None = None):
        for split in ("train", "val", "test"):
            if split not in self.splits:
                self.splits[split] = self.dataset_factory(split=split)

    def _epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def _batches_done(self) -> int:
        return self.trainer.fit_loop.epoch_loop.batch_progress.current.processed

    def train_dataloader(self):
        epoch = self._epoch()
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        order = EpochShuffle(len(self.splits["train"]), seed=self.seed, epoch=epoch)
        loader = ResumingLoader(self.splits["train"], batch_size=self.batch_size, sampler=order, generator=generator,
                                num_workers=self.num_workers, drop_last=False, seed=self.seed, epoch=epoch,
                                position=self._batches_done if self.trainer is not None else None)
        if self._resume is not None and self._resume.get("epoch") == epoch:
            loader.load_state_dict(self._resume)
            self._resume = None
        self._train_loader = loader
        return loader

    def val_dataloader(self):
        return DataLoader(self.splits["val"], batch_size=self.eval_batch_size, num_workers=self.num_workers)

    def test_dataloader(self):
        return DataLoader(self.splits["test"], batch_size=self.eval_batch_size, num_workers=self.num_workers)

    def describe(self) -> dict:
        """The training split's ``describe()`` (what ``ssm-predict`` needs to read new data like it:
        label vocabulary, standardisation, reader options), or {} for datasets without one."""
        if "train" not in self.splits:
            self.splits["train"] = self.dataset_factory(split="train")
        describe = getattr(self.splits["train"], "describe", None)
        return describe() if callable(describe) else {}


class ClassificationData(DataModule):
    """``data=classify``: the user's labelled files through ``ssm.data.classify.ClassificationFiles``
    (``train``, ``test``, optional ``val`` paths and the reader options); ``d_input``/``d_output``
    are inferred from the training file when the config leaves them ``???``."""

    def __init__(self, *, train: str, test: str | None = None, val: str | None = None, format: str | None = None,
                 label_column: str = "label", id_column: str | None = None, time_column: str = "time",
                 missing: str = "error", val_fraction: float = 0.1, standardize: bool = True, rate: int = 16000,
                 length: int | None = None, seed: int = 0, **kwargs):
        from functools import partial

        from ..data.classify import ClassificationFiles

        if not train:
            raise ValueError("data=classify: set data.train=PATH (and data.test=PATH)")
        factory = partial(ClassificationFiles, train=train, test=test, val=val, format=format,
                          label_column=label_column, id_column=id_column, time_column=time_column, missing=missing,
                          val_fraction=val_fraction, seed=seed, standardize=standardize, rate=rate, length=length)
        super().__init__(factory, seed=seed, **kwargs)
        self.has_test = bool(test)


def instantiate_data(cfg):
    """The DataModule of ``cfg.data``. ``d_input``/``d_output`` left as ``???`` are read from the
    training split's ``describe()`` and written into ``cfg`` (the model and task configs
    interpolate them, and the checkpoint stores the resolved values)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf, open_dict

    missing = [k for k in ("d_input", "d_output") if k in cfg.data.keys() and OmegaConf.is_missing(cfg.data, k)]
    if missing:  # instantiate a resolved copy with the missing sizes as None, read them, fill them in
        node = OmegaConf.to_container(cfg.data, resolve=True, throw_on_missing=False)
        node.update(dict.fromkeys(missing))
        datamodule = instantiate(OmegaConf.create(node))
    else:
        datamodule = instantiate(cfg.data)
    if missing:
        info = datamodule.describe()
        absent = [k for k in missing if k not in info]
        if absent:
            raise ValueError(f"data: {', '.join(absent)} left as ??? but the dataset does not say it; set data.<key>=...")
        with open_dict(cfg):
            for key in missing:
                cfg.data[key] = info[key]
                setattr(datamodule, key, info[key])
    return datamodule
