"""LightningDataModule around any map-style dataset factory ``dataset(split=...)``."""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch
from torch.utils.data import DataLoader


class DataModule(L.LightningDataModule):
    """Builds the train/val/test splits from ``dataset`` (a partial taking ``split=``).

    ``d_input``/``d_output``/``vocab_size`` describe the data for the model config. Shuffling uses
    a generator seeded with ``seed`` and the epoch, so data order is a function of (seed, epoch).
    """

    def __init__(self, dataset: Callable, *, batch_size: int = 32, eval_batch_size: int | None = None,
                 num_workers: int = 0, seed: int = 0, d_input: int | None = None, d_output: int | None = None,
                 vocab_size: int | None = None):
        super().__init__()
        self.dataset_factory, self.batch_size = dataset, batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers, self.seed = num_workers, seed
        self.d_input, self.d_output, self.vocab_size = d_input, d_output, vocab_size
        self.splits: dict = {}

    def setup(self, stage: str | None = None):
        for split in ("train", "val", "test"):
            if split not in self.splits:
                self.splits[split] = self.dataset_factory(split=split)

    def train_dataloader(self):
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return DataLoader(self.splits["train"], batch_size=self.batch_size, shuffle=True, generator=generator,
                          num_workers=self.num_workers, drop_last=False)

    def val_dataloader(self):
        return DataLoader(self.splits["val"], batch_size=self.eval_batch_size, num_workers=self.num_workers)

    def test_dataloader(self):
        return DataLoader(self.splits["test"], batch_size=self.eval_batch_size, num_workers=self.num_workers)
