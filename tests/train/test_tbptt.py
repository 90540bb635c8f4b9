"""``state.mode=tbptt``: long sequences trained and evaluated in chunks with the causal state
carried between them (truncated backpropagation through time).

A chunk as long as the sequence trains exactly like whole sequences; chunked evaluation equals
whole-sequence evaluation (the state carried across chunks and reset where a new group of
sequences starts); a run resumed mid-sequence continues from the carried state it saved."""

from functools import partial

import lightning as L
import pytest
import torch
from torch.utils.data import Dataset

import ssm
from ssm.models.sashimi import SaShiMi
from ssm.train.callbacks import AtomicCheckpointIO
from ssm.train.data import ChunkBatches, DataModule, SequenceChunks
from ssm.train.module import SequenceLightningModule, StatePassing, _from_leaves, _leaves, reset_rows
from ssm.train.tasks import Classification, LanguageModel

from helpers import ROUNDOFF, SIGNAL

VOCAB, LENGTH = 16, 32


class Tokens(Dataset):
    """(tokens[:-1], tokens[1:]) of a random token walk (smooth enough that the state matters)."""

    def __init__(self, split="train", *, size=8, length=LENGTH):
        g = torch.Generator().manual_seed({"train": 0, "val": 1, "test": 2}[split])
        steps = torch.randint(-1, 2, (size, length + 1), generator=g).cumsum(1)
        self.tokens = steps.remainder(VOCAB)

    def __len__(self):
        return len(self.tokens)

    def __getitem__(self, i):
        return self.tokens[i, :-1], self.tokens[i, 1:]


def make_model(*, seed=0, bidirectional=False, pool="none"):
    torch.manual_seed(seed)
    layer = partial(ssm.S4D, d_state=8, bidirectional=bidirectional)
    return ssm.SequenceModel(None, VOCAB, d_model=8, n_layers=2, layer=layer, vocab_size=VOCAB, pool=pool)


def make_module(mode="none", chunk=None, *, seed=0, task=None, model=None):
    model = model if model is not None else make_model(seed=seed)
    return SequenceLightningModule(model, task or LanguageModel(vocab=VOCAB), partial(torch.optim.AdamW, lr=1e-2),
                                   state=StatePassing(mode, chunk))


def make_data(chunk=None, *, size=8, batch_size=4, eval_batch_size=None):
    data = DataModule(partial(Tokens, size=size), batch_size=batch_size, eval_batch_size=eval_batch_size, seed=0)
    data.use_chunks(chunk)
    return data


def trainer(**kwargs):
    settings = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                    max_epochs=-1 if "max_steps" in kwargs else 1, reload_dataloaders_every_n_epochs=1)
    return L.Trainer(**{**settings, **kwargs})


def params(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


# -- data ----------------------------------------------------------------------------------------------

def test_chunk_batches_carry_each_row_through_its_sequence_in_order():
    dataset = Tokens(size=6)
    chunks = SequenceChunks(dataset, 8)
    order = [4, 1, 5, 0, 2, 3]
    batches = [[chunks[index] for index in batch] for batch in ChunkBatches(order, 4, chunks.n_chunks)]
    assert len(batches) == len(ChunkBatches(order, 4, chunks.n_chunks)) == 2 * 4  # 2 groups x 4 chunks
    for group, rows in ((batches[:4], order[:4]), (batches[4:], order[4:])):
        assert [bool(item["first"]) for item in group[0]] == [True] * len(rows)
        assert not any(bool(item["first"]) for batch in group[1:] for item in batch)
        for b, i in enumerate(rows):  # row b's chunks, joined, are sequence i
            assert torch.equal(torch.cat([batch[b]["x"] for batch in group]), dataset[i][0])
            assert torch.equal(torch.cat([batch[b]["y"] for batch in group]), dataset[i][1])


# -- training --------------------------------------------------------------------------------------------

def test_a_chunk_of_the_whole_length_trains_like_whole_sequences():
    """Same batches, same loss, same weights after three optimizer steps (to float tolerance:
    the chunked forward adds the zero initial state's contribution)."""
    whole, chunked = make_module(), make_module("tbptt", LENGTH)
    losses = {}
    for name, module, data in (("whole", whole, make_data()), ("chunked", chunked, make_data(LENGTH))):
        losses[name] = []
        trainer(max_steps=3, callbacks=[Record(losses[name])]).fit(module, datamodule=data)
    assert len(losses["whole"]) == len(losses["chunked"]) == 3
    assert losses["chunked"] == pytest.approx(losses["whole"], rel=ROUNDOFF[torch.float32], abs=ROUNDOFF[torch.float32])
    a, b = params(whole), params(chunked)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=ROUNDOFF[torch.float32], atol=ROUNDOFF[torch.float32], msg=k)
    assert any(not torch.equal(a[k], params(make_module())[k]) for k in a)  # training did move the weights


class Record(L.Callback):
    def __init__(self, into):
        self.into = into

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.into.append(float(outputs["loss"]))


def test_training_chunks_carry_a_detached_state():
    module, data = make_module("tbptt", 8), make_data(8)
    carried = []

    class Spy(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            carried.append(pl_module._carried["train"])

    trainer(max_steps=4, callbacks=[Spy()]).fit(module, datamodule=data)
    leaves = [v for state in carried for v in _leaves(state)]
    assert leaves and all(isinstance(v, torch.Tensor) and not v.requires_grad and v.grad_fn is None for v in leaves)
    assert all(v.abs().sum() > 0 for v in _leaves(carried[-1]))  # a real state, not the zero one


# -- evaluation and resets -----------------------------------------------------------------------------------

def test_chunked_evaluation_equals_whole_sequence_evaluation():
    """8 validation sequences in 2 groups of 4, 4 chunks each: the second group must start from
    the zero state, so this fails if the reset at sequence boundaries is dropped."""
    module = make_module("tbptt", 8, seed=1)
    whole_module = make_module(seed=1)
    whole_module.load_state_dict(module.state_dict())
    chunked = trainer(limit_val_batches=None).validate(module, datamodule=make_data(8), verbose=False)[0]
    whole = trainer(limit_val_batches=None).validate(whole_module, datamodule=make_data(), verbose=False)[0]
    assert set(chunked) == set(whole) == {"val/loss", "val/bits_per_token"}
    for key in whole:
        assert chunked[key] == pytest.approx(whole[key], rel=ROUNDOFF[torch.float32]), key
    # evaluating each chunk from the zero state (no carrying) gives another number: the state matters
    fresh = make_module("tbptt", 8, seed=1)
    fresh._state_into = lambda stage, x, first: fresh.model.default_state(x.shape[0])
    cut = trainer(limit_val_batches=None).validate(fresh, datamodule=make_data(8), verbose=False)[0]
    assert abs(cut["val/loss"] - whole["val/loss"]) > SIGNAL


def test_reset_at_sequence_boundaries_is_what_makes_chunks_equal_the_whole():
    module = make_module("tbptt", 8, seed=2).eval()
    data = make_data(8, size=8, eval_batch_size=4)
    data.setup()
    batches = list(data.val_dataloader())
    assert len(batches) == 8 and [bool(b["first"].all()) for b in batches] == [True, False, False, False] * 2

    def outputs(batches):
        module._carried.clear()
        with torch.no_grad():
            return [module._chunk_forward(b, "val")[2] for b in batches]

    sequences = data.splits["val"].tokens[:, :-1]  # (8, L)
    with torch.no_grad():
        full = module.model(sequences)  # (8, L, V)
    expected = [full[4 * (k // 4) : 4 * (k // 4) + 4, 8 * (k % 4) : 8 * (k % 4) + 8] for k in range(8)]
    for got, want in zip(outputs(batches), expected):
        torch.testing.assert_close(got, want, rtol=ROUNDOFF[torch.float32], atol=ROUNDOFF[torch.float32])  # the same sums, chunked
    # the same chunks with the second group's reset dropped: its outputs no longer match
    dropped = [dict(b) for b in batches]
    dropped[4]["first"] = torch.zeros_like(dropped[4]["first"])
    got = outputs(dropped)
    assert not torch.allclose(got[4], expected[4], rtol=SIGNAL, atol=SIGNAL)


def test_state_is_reset_per_row_where_a_sequence_starts():
    module = make_module("tbptt", 8)
    x = torch.zeros(3, 8, dtype=torch.long)
    template = module.model.default_state(3)
    carried = [torch.randn_like(s) for s in template]
    module._carried["train"] = carried
    state = module._state_into("train", x, torch.tensor([True, False, True]))
    for got, before in zip(state, carried):
        assert torch.equal(got[1], before[1])  # continues
        assert torch.equal(got[0], torch.zeros_like(got[0])) and torch.equal(got[2], torch.zeros_like(got[2]))
    assert module._state_into("train", x, torch.tensor([False, False, False])) is carried
    with pytest.raises(RuntimeError, match="no state was carried"):
        module._carried.clear()
        module._state_into("train", x, torch.tensor([False, False, False]))
    module._carried["train"] = [s[:2] for s in carried]
    with pytest.raises(RuntimeError, match="carried state is for 2 rows but this train batch has 3"):
        module._state_into("train", x, torch.tensor([True, False, False]))


def test_sashimi_state_resets_per_row_and_round_trips_as_leaves():
    model = SaShiMi(8, 2, pool=(2,), layer=partial(ssm.S4D, d_state=8), vocab_size=VOCAB, d_output=VOCAB)
    make_module("tbptt", 8, model=model)  # a causal SaShiMi is accepted
    with pytest.raises(ValueError, match=r"state.chunk=7 must be a multiple of SaShiMi's period 2"):
        make_module("tbptt", 7, model=model)
    x = torch.randint(0, VOCAB, (2, 8))
    _, state = model(x, model.default_state(2))
    leaves = _leaves(state)
    assert 8 in leaves  # the step count travels as a number
    again = _from_leaves(model.default_state(2), leaves)
    assert again.t == state.t and all(torch.equal(a, b) for a, b in zip(_leaves(again)[1:], leaves[1:]))
    mixed = reset_rows(state, model.default_state(2), torch.tensor([True, False]))
    tensors = [(m, s) for m, s in zip(_leaves(mixed), leaves) if isinstance(m, torch.Tensor)]
    assert all(torch.equal(m[1], s[1]) and not m[0].any() for m, s in tensors)
    assert any(s[0].any() for _, s in tensors)  # there was something to reset


# -- resume ---------------------------------------------------------------------------------------------

def test_resume_mid_sequence_continues_from_the_saved_state(tmp_path):
    """A checkpoint after step 3 (inside the first group's 4 chunks, where a step checkpoint
    would be taken) resumed to step 6 ends with the weights of the run never stopped; without
    the saved state the resume refuses to start the fourth chunk from nothing."""
    path = tmp_path / "mid.ckpt"

    class SaveAt(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step == 3:
                trainer.save_checkpoint(path)

    straight = make_module("tbptt", 8)
    trainer(max_steps=6, callbacks=[SaveAt()], plugins=[AtomicCheckpointIO()]).fit(straight, datamodule=make_data(8))
    saved = torch.load(path, weights_only=True)
    assert saved["global_step"] == 3 and len(saved["carried_state"]) == 2  # one (B, H, n) state per layer
    assert all(v.shape[0] == 4 and v.abs().sum() > 0 for v in saved["carried_state"])

    resumed = make_module("tbptt", 8, seed=5)  # other initial weights: all must come from the checkpoint
    trainer(max_steps=6, plugins=[AtomicCheckpointIO()]).fit(resumed, datamodule=make_data(8), ckpt_path=path)
    a, b = params(straight), params(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:3]

    del saved["carried_state"]
    torch.save(saved, tmp_path / "stateless.ckpt")
    with pytest.raises(RuntimeError, match="no state was carried"):
        trainer(max_steps=6).fit(make_module("tbptt", 8), datamodule=make_data(8),
                                 ckpt_path=tmp_path / "stateless.ckpt")


# -- bad input --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("chunk", [0, -4, None, 2.5, True, "16"])
def test_bad_chunk_is_refused(chunk):
    with pytest.raises(ValueError, match="state.chunk"):
        StatePassing("tbptt", chunk)


def test_bad_mode_and_a_chunk_without_tbptt_are_refused():
    with pytest.raises(ValueError, match="`mode` must be one of 'none', 'tbptt'"):
        StatePassing("bptt", 8)
    with pytest.raises(ValueError, match="only used with state.mode=tbptt"):
        StatePassing("none", 8)


def test_a_chunk_that_does_not_divide_the_length_is_refused():
    with pytest.raises(ValueError, match=r"state.chunk=12 must divide the sequence length 32 \(e.g. state.chunk=8\)"):
        SequenceChunks(Tokens(), 12)
    data = make_data(12)
    data.setup()
    with pytest.raises(ValueError, match="state.chunk=12 must divide"):
        data.val_dataloader()


def test_items_without_per_step_targets_are_refused():
    class Labelled(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return torch.zeros(16, 1), torch.tensor(1)

    with pytest.raises(ValueError, match="per-step targets"):
        SequenceChunks(Labelled(), 8)

    class Padded(Labelled):
        def __getitem__(self, i):
            return torch.zeros(16), torch.zeros(16), torch.tensor(16)

    with pytest.raises(ValueError, match="cannot be chunked"):
        SequenceChunks(Padded(), 8)


def test_models_and_tasks_without_a_causal_state_are_refused():
    with pytest.raises(ValueError, match="not causal.*bidirectional=false"):
        make_module("tbptt", 8, model=make_model(bidirectional=True))
    with pytest.raises(ValueError, match="model.pool=none"):
        make_module("tbptt", 8, model=make_model(pool="mean"))
    with pytest.raises(ValueError, match="task Classification cannot be trained in chunks"):
        make_module("tbptt", 8, task=Classification(n_classes=2))
    spacetime = ssm.models.SpaceTime(1, 1, 8, lag=16, horizon=4, d_state=8, n_kernels=2)
    with pytest.raises(ValueError, match="causal recurrent state.*SpaceTime has none"):
        make_module("tbptt", 8, model=spacetime)
    make_module("none", model=make_model(bidirectional=True))  # off by default: anything goes


def test_the_config_key_reaches_the_data_and_the_module(compose_cfg):
    from ssm.train.cli import build

    common = ["experiment=sine-lm", "data.dataset.size=8", "data.dataset.length=64", "model.d_model=8",
              "model.n_layers=1"]
    datamodule, module, _ = build(compose_cfg([*common, "state.mode=tbptt", "state.chunk=16"]))
    assert module.state_passing.enabled and datamodule.chunk == 16
    datamodule.setup()
    batch = next(iter(datamodule.val_dataloader()))
    assert batch["x"].shape == (8, 16) and bool(batch["first"].all())
    datamodule, module, _ = build(compose_cfg(common))  # off by default
    assert not module.state_passing.enabled and datamodule.chunk is None
    with pytest.raises(ValueError, match="not causal"):
        build(compose_cfg([*common, "state.mode=tbptt", "state.chunk=16", "model.layer.bidirectional=true"]))
