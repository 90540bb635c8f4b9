"""LightningDataModule around any map-style dataset factory ``dataset(split=...)``, with data
order that survives a kill.

Exact resume needs two things from the data side: the order of an epoch must be a function of
(seed, epoch), and a run resumed mid-epoch must continue at the first batch the killed run had
not trained on. Lightning restarts an interrupted epoch's loader from its first batch unless
the loader is stateful, so the train loader saves its position (epoch, batches trained) in every
checkpoint and, restored, skips those batches. Skipping happens on the loader's own batch stream, after any sampler that
Lightning injects (e.g. ``DistributedSampler`` under DDP), so it is right for every rank.

With ``state.mode=tbptt`` (truncated backpropagation through time) every split is served as
consecutive chunks of its sequences (``SequenceChunks``, ``ChunkBatches``): row b of a batch
continues the sequence it held in the previous batch, and a ``first`` flag marks the chunks that
start a sequence, where the model's carried state is reset.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterable

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


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


class SequenceChunks(Dataset):
    """A dataset of equal-length sequences with per-step targets, seen as consecutive chunks.

    ``dataset[i]`` must be ``(x, y)`` with ``x`` of ``L`` steps (``(L,)`` tokens or ``(L, D)``) and
    ``y`` of the same ``L`` steps (next-token targets); ``chunk`` must divide ``L``. Item ``(i, k)``
    is ``{"x": x[k*chunk:(k+1)*chunk], "y": y[...same...], "first": k == 0}``. Batches of such
    items in the order of ``ChunkBatches`` carry one sequence per row from chunk to chunk.
    The last ``cache`` sequences read are kept, so a batch's rows are read once per group of
    chunks rather than once per chunk.
    """

    def __init__(self, dataset, chunk: int, *, cache: int = 0):
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise ValueError(f"state.chunk: must be a positive integer (steps per chunk), got {chunk!r}")
        if len(dataset) == 0:
            raise ValueError("state.mode=tbptt: the dataset is empty")
        self.dataset, self.chunk, self.cache = dataset, chunk, cache
        self.length = None
        self._cache: OrderedDict = OrderedDict()
        x, _ = self._sequence(0)
        if x.shape[0] % chunk:
            raise ValueError(f"state.chunk={chunk} must divide the sequence length {x.shape[0]} "
                             f"(e.g. state.chunk={_largest_divisor(x.shape[0], chunk)})")
        self.n_chunks = x.shape[0] // chunk

    def _sequence(self, i: int):
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        item = self.dataset[i]
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            size = len(item) if isinstance(item, (tuple, list)) else "?"
            raise ValueError(f"state.mode=tbptt: dataset items must be (x, y) with per-step targets, got a "
                             f"{type(item).__name__} of length {size} (items with lengths, i.e. padded "
                             "sequences, cannot be chunked: use equal-length sequences)")
        x, y = (torch.as_tensor(v) for v in item)
        if x.dim() == 0 or y.dim() == 0 or y.shape[0] != x.shape[0]:
            raise ValueError(f"state.mode=tbptt: needs per-step targets (y as long as x); item {i} has x of shape "
                             f"{tuple(x.shape)} and y of shape {tuple(y.shape)}")
        if self.length is None:
            self.length = x.shape[0]
        elif x.shape[0] != self.length:
            raise ValueError(f"state.mode=tbptt: every sequence must have the same length; item 0 has {self.length} "
                             f"steps, item {i} has {x.shape[0]}")
        if self.cache:
            self._cache[i] = (x, y)
            if len(self._cache) > self.cache:
                self._cache.popitem(last=False)
        return x, y

    def __len__(self) -> int:
        return len(self.dataset) * self.n_chunks

    def __getitem__(self, index: tuple[int, int]) -> dict:
        i, k = index
        x, y = self._sequence(i)
        window = slice(k * self.chunk, (k + 1) * self.chunk)
        return {"x": x[window], "y": y[window], "first": torch.tensor(k == 0)}


def _largest_divisor(n: int, at_most: int) -> int:
    return max(d for d in range(1, min(n, at_most) + 1) if n % d == 0)


class ChunkBatches(Sampler[list]):
    """Batches of ``(sequence, chunk)`` indices for ``SequenceChunks``: the sequences of ``order``
    in groups of ``batch_size``, each group's chunks 0, 1, ..., n_chunks - 1 in turn, so row b of
    every batch of a group continues the sequence it held in the batch before. (The state-spaces/s4
    reference resets one flag per batch, ``src/dataloaders/base.py`` TBPTTDataLoader at commit
    e757cef57d89e448c413de7325ed5601aceaac13; here the flag is per row.)"""

    def __init__(self, order: Iterable[int], batch_size: int, n_chunks: int):
        if batch_size < 1 or n_chunks < 1:
            raise ValueError(f"ChunkBatches: `batch_size` and `n_chunks` must be >= 1, got {batch_size}, {n_chunks}")
        self.order, self.batch_size, self.n_chunks = order, batch_size, n_chunks

    def __len__(self) -> int:
        return math.ceil(len(self.order) / self.batch_size) * self.n_chunks

    def __iter__(self):
        sequences = list(self.order)
        for start in range(0, len(sequences), self.batch_size):
            rows = sequences[start : start + self.batch_size]
            for k in range(self.n_chunks):
                yield [(i, k) for i in rows]


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
        self.chunk: int | None = None  # state.mode=tbptt: serve every split as chunks of this many steps
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

    def use_chunks(self, chunk: int | None) -> None:
        """Serve every split as in-order chunks of ``chunk`` steps (``SequenceChunks``), or whole
        sequences again with None."""
        if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
            raise ValueError(f"state.chunk: must be a positive integer (steps per chunk), got {chunk!r}")
        self.chunk = chunk

    def _chunks(self, split: str, batch_size: int) -> SequenceChunks:
        return SequenceChunks(self.splits[split], self.chunk, cache=batch_size)

    def train_dataloader(self):
        epoch = self._epoch()
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        order = EpochShuffle(len(self.splits["train"]), seed=self.seed, epoch=epoch)
        position = self._batches_done if self.trainer is not None else None
        if self.chunk is not None:  # shuffled sequences, each one's chunks in order
            chunks = self._chunks("train", self.batch_size)
            loader = ResumingLoader(chunks, batch_sampler=ChunkBatches(order, self.batch_size, chunks.n_chunks),
                                    generator=generator, num_workers=self.num_workers, seed=self.seed, epoch=epoch,
                                    position=position)
        else:
            loader = ResumingLoader(self.splits["train"], batch_size=self.batch_size, sampler=order,
                                    generator=generator, num_workers=self.num_workers, drop_last=False,
                                    seed=self.seed, epoch=epoch, position=position)
        if self._resume is not None and self._resume.get("epoch") == epoch:
            loader.load_state_dict(self._resume)
            self._resume = None
        self._train_loader = loader
        return loader

    def _eval_loader(self, split: str) -> DataLoader:
        if self.chunk is None:
            return DataLoader(self.splits[split], batch_size=self.eval_batch_size, num_workers=self.num_workers)
        chunks = self._chunks(split, self.eval_batch_size)
        order = range(len(self.splits[split]))
        return DataLoader(chunks, batch_sampler=ChunkBatches(order, self.eval_batch_size, chunks.n_chunks),
                          num_workers=self.num_workers)

    def val_dataloader(self):
        return self._eval_loader("val")

    def test_dataloader(self):
        return self._eval_loader("test")

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


def instantiate_data(cfg, state=None):
    """The DataModule of ``cfg.data``. ``d_input``/``d_output`` left as ``???`` are read from the
    training split's ``describe()`` and written into ``cfg`` (the model and task configs
    interpolate them, and the checkpoint stores the resolved values). With ``state``
    (``ssm.train.module.StatePassing``) in tbptt mode, every split is served in chunks."""
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
    if state is not None and state.enabled:
        use_chunks = getattr(datamodule, "use_chunks", None)
        if not callable(use_chunks):
            raise ValueError(f"state.mode=tbptt: the data module {type(datamodule).__name__} cannot serve chunks "
                             "(use one built on ssm.train.data.DataModule)")
        use_chunks(state.chunk)
    return datamodule
