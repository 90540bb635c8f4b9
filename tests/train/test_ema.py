"""``callbacks=ema``: an exponential moving average of the weights, used by validation and the
test, stored in checkpoints and restored on resume."""

from functools import partial

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import Dataset

import ssm
from ssm.train.callbacks import EMA, AtomicCheckpointIO
from ssm.train.data import DataModule
from ssm.train.module import SequenceLightningModule
from ssm.train.tasks import LanguageModel

from helpers import ROUNDOFF, SIGNAL

VOCAB, LENGTH = 16, 16
DECAY = 0.6  # far from 1, so that every step shows in the average


class Tokens(Dataset):
    def __init__(self, split="train", *, size=8):
        g = torch.Generator().manual_seed({"train": 0, "val": 1, "test": 2}[split])
        self.tokens = torch.randint(0, VOCAB, (size, LENGTH + 1), generator=g)

    def __len__(self):
        return len(self.tokens)

    def __getitem__(self, i):
        return self.tokens[i, :-1], self.tokens[i, 1:]


def make_module(seed=0):
    torch.manual_seed(seed)
    layer = partial(ssm.S4D, d_state=8, bidirectional=False)
    model = ssm.SequenceModel(None, VOCAB, d_model=8, n_layers=1, layer=layer, vocab_size=VOCAB, pool="none")
    return SequenceLightningModule(model, LanguageModel(vocab=VOCAB), partial(torch.optim.AdamW, lr=5e-2))


def make_data():
    return DataModule(partial(Tokens), batch_size=4, seed=0)  # 2 steps per epoch


def trainer(callbacks=(), **kwargs):
    settings = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False, num_sanity_val_steps=0, max_epochs=-1,
                    reload_dataloaders_every_n_epochs=1, plugins=[AtomicCheckpointIO()])
    if any(isinstance(c, ModelCheckpoint) for c in callbacks):
        settings["enable_checkpointing"] = True
    return L.Trainer(callbacks=list(callbacks), **{**settings, **kwargs})


def weights(module) -> dict:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


class Trained(L.Callback):
    """The trained weights after every optimizer step, and the weights each evaluation ran on."""

    def __init__(self):
        self.steps, self.validated, self.tested = [], [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps.append(weights(pl_module))

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if batch_idx == 0:
            self.validated.append((trainer.global_step, weights(pl_module)))

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if batch_idx == 0:
            self.tested.append(weights(pl_module))


def by_hand(steps: list[dict], decay: float) -> dict:
    """ema_1 = w_1; ema_t = decay * ema_{t-1} + (1 - decay) * w_t."""
    ema = dict(steps[0])
    for w in steps[1:]:
        ema = {k: decay * ema[k] + (1 - decay) * w[k] for k in ema}
    return ema


def assert_weights(got: dict, want: dict, exact=False):
    assert got.keys() == want.keys()
    for k in want:
        if exact:
            assert torch.equal(got[k], want[k]), k
        else:
            # the same average, perhaps in another order: float32 round-off; absolutely a tenth of it
            # (an eps of these order-1 weights) where the terms cancel
            tol = ROUNDOFF[torch.float32]
            torch.testing.assert_close(got[k], want[k], rtol=tol, atol=tol / 10, msg=k)


def different(a: dict, b: dict) -> bool:
    return any(not torch.allclose(a[k], b[k], rtol=SIGNAL, atol=SIGNAL) for k in a)


def test_the_average_is_the_ema_formula_and_validation_and_test_use_it(tmp_path):
    module, seen = make_module(), Trained()
    best = ModelCheckpoint(dirpath=tmp_path, filename="best", monitor="val/loss", mode="min")
    run = trainer([EMA(decay=DECAY), seen, best], max_steps=4, limit_val_batches=1)
    run.fit(module, datamodule=make_data())
    assert len(seen.steps) == 4 and [step for step, _ in seen.validated] == [2, 4]
    for step, validated in seen.validated:  # each validation ran on the average of the steps so far
        assert_weights(validated, by_hand(seen.steps[:step], DECAY))
        assert different(validated, seen.steps[step - 1])
    # after fit the module holds the average (the run's result)
    final = by_hand(seen.steps, DECAY)
    assert_weights(weights(module), final)
    # the best checkpoint stores the average as its weights, the trained ones beside them
    ckpt = torch.load(best.best_model_path, weights_only=True)
    step = ckpt["global_step"]
    assert_weights({k[6:]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")},
                   {k[6:]: v for k, v in by_hand(seen.steps[:step], DECAY).items()})
    assert_weights({k: ckpt["current_model_state"][k] for k in seen.steps[step - 1]}, seen.steps[step - 1], exact=True)
    assert int(ckpt["averaging_state"]["n_averaged"]) == step
    # testing that checkpoint in the same process runs on its average, not on its trained weights
    run.test(module, datamodule=make_data(), ckpt_path=best.best_model_path, verbose=False)
    assert_weights(seen.tested[-1], {k: ckpt["state_dict"][k] for k in seen.tested[-1]}, exact=True)
    assert different(seen.tested[-1], seen.steps[step - 1])
    # and ssm.load gives the average too
    from ssm.train.loading import model_from_checkpoint

    ckpt["hyper_parameters"] = {"config": {"model": {"_target_": "ssm.SequenceModel", "d_input": None,
                                                     "d_output": VOCAB, "d_model": 8, "n_layers": 1,
                                                     "vocab_size": VOCAB, "pool": "none",
                                                     "layer": {"_target_": "ssm.S4D", "_partial_": True,
                                                               "d_state": 8, "bidirectional": False}}}}
    loaded = model_from_checkpoint(ckpt)
    assert_weights({f"model.{k}": v.detach() for k, v in loaded.named_parameters()},
                   {k: ckpt["state_dict"][k] for k in seen.tested[-1]}, exact=True)


def test_checkpoint_round_trip_resumes_weights_and_average_exactly(tmp_path):
    """A checkpoint after step 3 of 6, resumed: the trained weights and the average at the end
    equal those of the run never stopped; the checkpoint written after fit ends keeps the
    trained weights beside the average."""
    mid = tmp_path / "mid.ckpt"

    class SaveAt(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step == 3:
                trainer.save_checkpoint(mid)

    straight, seen = make_module(), Trained()
    ema = EMA(decay=DECAY)
    run = trainer([ema, SaveAt(), seen], max_steps=6, limit_val_batches=0)
    run.fit(straight, datamodule=make_data())
    run.save_checkpoint(tmp_path / "end.ckpt")  # what ssm-train's last.ckpt is at the end of fit
    end = torch.load(tmp_path / "end.ckpt", weights_only=True)
    assert_weights({k: end["current_model_state"][k] for k in seen.steps[-1]}, seen.steps[-1], exact=True)
    assert_weights({k: end["state_dict"][k] for k in seen.steps[-1]}, weights(straight), exact=True)

    resumed, seen_again = make_module(seed=7), Trained()  # other initial weights: all come from the file
    trainer([EMA(decay=DECAY), seen_again], max_steps=6, limit_val_batches=0).fit(
        resumed, datamodule=make_data(), ckpt_path=mid)
    assert len(seen_again.steps) == 3
    assert_weights(seen_again.steps[-1], seen.steps[-1], exact=True)  # trained weights
    assert_weights(weights(resumed), weights(straight), exact=True)  # the average
    assert different(weights(resumed), seen.steps[-1])


@pytest.mark.parametrize("decay", [0.0, 1.0, 1.5, -0.1, True, "0.99", None])
def test_bad_decay_is_refused(decay):
    with pytest.raises(ValueError, match=r"callbacks.ema.decay: must be a number strictly between 0 and 1"):
        EMA(decay=decay)


def test_bad_update_settings_are_refused():
    with pytest.raises(ValueError, match="callbacks.ema.update_every_n_steps"):
        EMA(update_every_n_steps=0)
    with pytest.raises(ValueError, match="callbacks.ema.update_starting_at_step"):
        EMA(update_starting_at_step=-1)


def test_callbacks_ema_composes_with_the_default_callbacks(compose_cfg):
    from ssm.train.cli import build

    cfg = compose_cfg(["callbacks=ema", "callbacks.ema.decay=0.9", "model.d_model=8", "model.n_layers=1"])
    _, _, run = build(cfg)
    emas = [c for c in run.callbacks if isinstance(c, EMA)]
    assert len(emas) == 1 and emas[0].decay == 0.9
    assert any(isinstance(c, ModelCheckpoint) for c in run.callbacks)  # the default ones are still there
    _, _, run = build(compose_cfg(["model.d_model=8", "model.n_layers=1"]))
    assert not any(isinstance(c, EMA) for c in run.callbacks)  # off by default
    with pytest.raises(Exception, match="callbacks.ema.decay"):
        build(compose_cfg(["callbacks=ema", "callbacks.ema.decay=1.2", "model.d_model=8", "model.n_layers=1"]))
