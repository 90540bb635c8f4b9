"""RetrievalClassifier: shapes, per-document length masks, symmetric inputs, gradients, and a
batch from the Retrieval loader end to end."""

from __future__ import annotations

import functools

import pytest
import torch
from helpers import ROUNDOFF, SIGNAL, rel_err

import ssm
from ssm.models import SequenceModel
from ssm.models.retrieval import RetrievalClassifier

V, H = 12, 16


def make(pool="mean", d_output=H):
    torch.manual_seed(0)
    encoder = SequenceModel(None, d_output, d_model=H, n_layers=2, vocab_size=V, pool=pool,
                            layer=functools.partial(ssm.S4D, d_state=8, bidirectional=True))
    return RetrievalClassifier(encoder, d_model=d_output, n_classes=2)


def test_shapes_and_length_masks():
    model = make().eval()
    x = torch.randint(1, V, (3, 2, 20))
    lengths = torch.tensor([[20, 7], [5, 12], [1, 20]])
    with torch.no_grad():
        out = model(x, lengths)
        assert out.shape == (3, 2) and torch.isfinite(out).all()
        x2 = x.clone()
        x2[0, 1, 7:] = 0  # padding of the second document of pair 0 only
        x2[1, 0, 5:] = 3  # and of the first document of pair 1
        assert rel_err(model(x2, lengths), out) <= ROUNDOFF[torch.float32]
        assert (model(x2) - model(x)).abs().max() > SIGNAL  # without lengths the padding counts
        swapped = lengths[:, [1, 0]]
        assert (model(x, swapped) - out).abs().max() > SIGNAL  # each document gets its own length


def test_identical_documents_and_gradients():
    model = make()
    doc = torch.randint(1, V, (4, 1, 16))
    x = doc.expand(4, 2, 16).clone()
    lengths = torch.tensor([[16, 16], [9, 9], [3, 3], [16, 16]])
    a, b = model.encode(x, lengths)
    assert (a - b).abs().max() <= ROUNDOFF[torch.float32]  # a - b = 0 for a symmetric pair, nothing degenerate downstream
    logits = model(x, lengths)
    assert torch.isfinite(logits).all()
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 1, 0])).backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert grads["encoder.encoder.weight"] is not None and grads["encoder.encoder.weight"].abs().sum() > 0
    ssm_grads = [g for n, g in grads.items() if n.startswith("encoder.blocks.0.layer") and g is not None]
    assert ssm_grads and any(g.abs().sum() > 0 for g in ssm_grads)
    assert grads["head.0.weight"].abs().sum() > 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="pool='none'"):
        make(pool="none")
    encoder = SequenceModel(None, 8, d_model=H, n_layers=1, vocab_size=V, layer=functools.partial(ssm.S4D, d_state=4))
    with pytest.raises(ValueError, match="`d_model`=16 must equal the encoder's output size \\(8\\)"):
        RetrievalClassifier(encoder, d_model=16)
    model = make()
    with pytest.raises(ValueError, match="\\(B, 2, L\\)"):
        model(torch.randint(0, V, (2, 20)))
    with pytest.raises(ValueError, match="`lengths` must be \\(B, 2\\)"):
        model(torch.randint(0, V, (2, 2, 20)), torch.tensor([20, 20]))


def test_on_a_retrieval_batch(tmp_path):
    from ssm.data.lra import Retrieval

    d = tmp_path / "aan"
    d.mkdir()
    for name in ("train", "eval", "test"):
        (d / f"new_aan_pairs.{name}.tsv").write_text("1\ta\tb\tabcab\tcab\n0\tc\td\tbb\tabcabcabc\n")
    ds = Retrieval("train", root=tmp_path, l_max=12)
    x, y, lengths = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert x.shape == (2, 2, 12) and lengths.tolist() == [[6, 4], [3, 10]]
    torch.manual_seed(0)
    encoder = SequenceModel(None, H, d_model=H, n_layers=1, vocab_size=ds.vocab_size,
                            layer=functools.partial(ssm.S4D, d_state=4, bidirectional=True))
    logits = RetrievalClassifier(encoder, d_model=H)(x, lengths)
    assert logits.shape == (2, 2) and torch.isfinite(torch.nn.functional.cross_entropy(logits, y))
