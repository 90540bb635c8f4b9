"""Audio likelihood without the padding: task.ignore_padding leaves padded positions out of the
loss and reports bits per token with and without them."""

import math

import torch
from helpers import ROUNDOFF, SIGNAL, rel_err
from torch.nn import functional as F

from ssm.data.audio import DIGITS, SC09, write_wav
from ssm.train.cli import train
from ssm.train.tasks import LanguageModel


def test_ignore_padding_loss_and_both_figures():
    torch.manual_seed(0)
    output, target = torch.randn(3, 10, 16), torch.randint(0, 16, (3, 10))
    lengths = torch.tensor([10, 4, 7])
    task = LanguageModel(vocab=16, ignore_padding=True)
    valid = torch.arange(10)[None] < lengths[:, None]
    expect = F.cross_entropy(output[valid], target[valid])
    assert rel_err(task.loss(output, target, lengths=lengths), expect) <= ROUNDOFF[torch.float32]
    metrics = task.metrics()
    task.update_metrics(metrics, output, target, lengths)
    values = metrics.compute()
    all_positions = F.cross_entropy(output.reshape(-1, 16), target.reshape(-1)) / math.log(2)
    assert rel_err(values["bits_per_token"], all_positions) <= ROUNDOFF[torch.float32]
    assert rel_err(values["bits_per_token_unpadded"], expect / math.log(2)) <= ROUNDOFF[torch.float32]
    assert (values["bits_per_token"] - values["bits_per_token_unpadded"]).abs() > SIGNAL
    # without the flag the loss counts every position, as before
    assert rel_err(LanguageModel(vocab=16).loss(output, target), all_positions * math.log(2)) <= ROUNDOFF[torch.float32]


def _short_clips(root, n_per_digit=2, rate=16000):
    base = root / "sc09"
    for d, digit in enumerate(DIGITS):
        (base / digit).mkdir(parents=True)
        for k in range(n_per_digit):
            n = 150 + 30 * k + d  # shorter than length=256: padded
            wave = 0.5 * torch.sin(2 * math.pi * (200 + 50 * d) * torch.arange(n) / rate)
            write_wav(base / digit / f"s{d}{k}_nohash_{k}.wav", wave[None], rate)
    return root


def test_sc09_lengths_and_a_run_reporting_both_figures(tmp_path, compose_cfg):
    root = _short_clips(tmp_path)
    data = SC09("train", root=root, length=256, return_lengths=True)
    x, y, n = data[0]
    assert x.shape == y.shape == (256,) and 150 <= int(n) < 256
    assert (y[int(n):] == data.start_code).all()
    cfg = compose_cfg(["experiment=audio/sashimi-sc09", f"data_root={root}", "data.dataset.length=256",
                       "task.ignore_padding=true", "model.d_model=8", "model.n_layers=1", "model.pool=[4]",
                       "model.layer.d_state=8", "data.batch_size=4", "debug=fast"])
    results = train(cfg)
    for stage in ("train", "val"):
        assert f"{stage}/bits_per_token_unpadded" in results and f"{stage}/bits_per_token" in results
        assert results[f"{stage}/bits_per_token_unpadded"] != results[f"{stage}/bits_per_token"]
