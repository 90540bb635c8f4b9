"""ssm.data.speech: Speech Commands classification from the release layout (lists and stratified
splits, padding and cutting, standardisation with the training split's statistics, the 8 kHz
zero-shot resampling) on stand-ins written by ssm.data.fixtures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ssm.data import fixtures
from ssm.data.audio import resample, write_wav
from ssm.data.speech import SC10, SC35, SpeechCommands

from helpers import PCM16_STEP, ROUNDOFF

LENGTH = 800  # samples per stand-in clip: short, so the files are quick to write and read


@pytest.fixture(scope="module")
def sc35_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("sc35")
    fixtures.write_speech_commands(root, words=SC35, n_train=2, n_val=1, n_test=1, length=LENGTH, short_every=3)
    return root


@pytest.fixture(scope="module")
def sc10_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("sc10")
    fixtures.write_speech_commands(root, words=SC10, n_train=8, n_val=1, n_test=1, length=LENGTH, short_every=5)
    return root


def _listed(root, name):
    return {line for line in (root / "SpeechCommands" / name).read_text().splitlines() if line}


def test_lists_split_and_labels(sc35_root):
    base = sc35_root / "SpeechCommands"
    splits = {s: SpeechCommands(s, root=sc35_root, length=LENGTH) for s in ("train", "val", "test")}
    assert [len(splits[s]) for s in ("train", "val", "test")] == [70, 35, 35]
    for split, name in (("val", "validation_list.txt"), ("test", "testing_list.txt")):
        assert {f"{p.parent.name}/{p.name}" for p in splits[split].files} == _listed(sc35_root, name)
    train = {p for p in splits["train"].files}
    assert not train & set(splits["val"].files) and not train & set(splits["test"].files)
    for ds in splits.values():  # every item's class is the index of its folder's word, in the S4 code's order
        assert [SC35[int(t)] for t in ds.targets] == [p.parent.name for p in ds.files]
    assert splits["train"].labels == list(SC35) and splits["train"].d_output == 35
    x, y = splits["val"][0]
    assert x.shape == (LENGTH, 1) and x.dtype == torch.float32 and y.dtype == torch.long
    assert base.is_dir()


def test_training_statistics_standardise_every_split_and_are_cached(sc35_root, monkeypatch):
    train = SpeechCommands("train", root=sc35_root, length=LENGTH)
    stacked = torch.cat([train[i][0] for i in range(len(train))])  # (N * L, 1)
    # mean 0 and std 1 up to round-off, less the reference's 1e-5 in the denominator
    assert abs(float(stacked.mean())) < ROUNDOFF[torch.float32]
    assert float(stacked.std()) == pytest.approx(train.std / (train.std + 1e-5), rel=ROUNDOFF[torch.float32])
    test = SpeechCommands("test", root=sc35_root, length=LENGTH)
    assert (test.mean, test.std) == (train.mean, train.std)
    raw = test._clip(test.files[0])
    assert torch.allclose(test[0][0][:, 0], (raw - train.mean) / (train.std + 1e-5), rtol=ROUNDOFF[torch.float32], atol=ROUNDOFF[torch.float32])

    def no_reads(self, path):
        raise AssertionError("the statistics were recomputed instead of read from the cache")

    monkeypatch.setattr(SpeechCommands, "_clip", no_reads)
    again = SpeechCommands("val", root=sc35_root, length=LENGTH)
    assert (again.mean, again.std) == (train.mean, train.std)


def test_short_clips_are_zero_padded_and_long_ones_cut(tmp_path):
    base = tmp_path / "SpeechCommands"
    fixtures.write_speech_commands(tmp_path, words=SC10, n_train=1, n_val=0, n_test=0, length=LENGTH, short_every=0)
    ramp = torch.linspace(-0.5, 0.5, 2 * LENGTH)
    write_wav(base / "yes" / "long_nohash_0.wav", ramp, 16000)
    write_wav(base / "no" / "short_nohash_0.wav", ramp[: LENGTH // 2], 16000)
    stereo = torch.stack([ramp[:LENGTH], -ramp[:LENGTH]])  # (2, T): the mean of the channels is silence
    write_wav(base / "up" / "stereo_nohash_0.wav", stereo, 16000)
    ds = SpeechCommands("train", root=tmp_path, classes="sc10", length=LENGTH, standardize=False)
    item = {p.name: ds[i][0][:, 0] for i, p in enumerate(ds.files)}
    assert torch.allclose(item["long_nohash_0.wav"], ramp[:LENGTH], rtol=0, atol=PCM16_STEP)
    short = item["short_nohash_0.wav"]
    assert torch.allclose(short[: LENGTH // 2], ramp[: LENGTH // 2], rtol=0, atol=PCM16_STEP) and (short[LENGTH // 2:] == 0).all()
    assert item["stereo_nohash_0.wav"].abs().max() <= PCM16_STEP


def test_files_at_another_rate_are_resampled_on_reading(tmp_path):
    fixtures.write_speech_commands(tmp_path, words=SC10, n_train=1, n_val=0, n_test=0, length=LENGTH, short_every=0)
    t = torch.arange(LENGTH // 2) / 8000
    tone = 0.5 * torch.sin(2 * torch.pi * 440 * t)
    write_wav(tmp_path / "SpeechCommands" / "go" / "slow_nohash_0.wav", tone, 8000)
    ds = SpeechCommands("train", root=tmp_path, classes="sc10", length=LENGTH, standardize=False)
    got = ds[[p.name for p in ds.files].index("slow_nohash_0.wav")][0][:, 0]
    # the 8 kHz file's 16-bit rounding (<= half a step a sample) through the interpolation filter (its
    # taps' L1 norm is <= 2.5): <= 1.25 steps (measured 0.8)
    assert torch.allclose(got, resample(tone, 8000, 16000)[:LENGTH], rtol=0, atol=2 * PCM16_STEP)


def test_sc10_stratified_split_drops_short_clips(sc10_root):
    kw = dict(root=sc10_root, classes="sc10", length=LENGTH, split_rule="stratified", drop_short=True)
    splits = {s: SpeechCommands(s, **kw) for s in ("train", "val", "test")}
    files = [set(splits[s].files) for s in ("train", "val", "test")]
    on_disk = {p for w in SC10 for p in (sc10_root / "SpeechCommands" / w).glob("*.wav")}
    long = {p for p in on_disk if SpeechCommands._frames(splits["train"], p) >= LENGTH}
    assert len(long) < len(on_disk)  # the stand-in has short clips, and they are gone
    assert files[0] | files[1] | files[2] == long and sum(len(f) for f in files) == len(long)
    for s, share in (("train", 0.7), ("val", 0.15), ("test", 0.15)):
        counts = torch.bincount(splits[s].targets, minlength=10)  # stratified: each word in each split
        assert (counts >= 1).all() and abs(len(splits[s]) / len(long) - share) < 0.08, (s, counts)
    assert splits["val"].labels == list(SC10)
    other = SpeechCommands("val", **{**kw, "seed": 1})
    assert set(other.files) != files[1]  # the draw is a function of the seed
    assert set(SpeechCommands("val", **kw).files) == files[1]


def test_sc10_lists_ignore_other_words(sc35_root):
    val = SpeechCommands("val", root=sc35_root, classes="sc10", length=LENGTH)
    listed = {e for e in _listed(sc35_root, "validation_list.txt") if e.split("/")[0] in SC10}
    assert {f"{p.parent.name}/{p.name}" for p in val.files} == listed and val.d_output == 10


@pytest.mark.parametrize("resampler", ["subsample", "sinc"])
def test_eval_rate_resamples_val_and_test_only(sc35_root, resampler):
    kw = dict(root=sc35_root, length=LENGTH, eval_resampler=resampler)
    full = SpeechCommands("test", **kw)
    half = SpeechCommands("test", **kw, eval_rate=8000)
    x16, x8 = full[0][0][:, 0], half[0][0][:, 0]
    assert x8.shape == (LENGTH // 2,) and half.item_length == LENGTH // 2 and half[0][1] == full[0][1]
    expected = x16[::2] if resampler == "subsample" else resample(x16, 16000, 8000)
    assert torch.allclose(x8, expected, rtol=ROUNDOFF[torch.float32], atol=ROUNDOFF[torch.float32])
    train = SpeechCommands("train", **kw, eval_rate=8000)
    assert train[0][0].shape == (LENGTH, 1) and train.eval_rate is None


def test_bad_arguments_name_what_was_expected(sc35_root, tmp_path):
    with pytest.raises(ValueError, match="`classes` must be one of 'sc35', 'sc10'"):
        SpeechCommands("train", root=sc35_root, classes="sc12")
    with pytest.raises(ValueError, match="`eval_rate` must divide rate=16000"):
        SpeechCommands("test", root=sc35_root, eval_rate=7000)
    with pytest.raises(ValueError, match="`split_rule` must be one of"):
        SpeechCommands("test", root=sc35_root, split_rule="random")
    with pytest.raises(FileNotFoundError, match="SpeechCommands.*not found.*validation_list.txt"):
        SpeechCommands("train", root=tmp_path / "nowhere")
    (tmp_path / "SpeechCommands" / "yes").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no folder.*\\bno\\b"):
        SpeechCommands("train", root=tmp_path, classes="sc10")


def test_one_split_list_without_the_other_is_refused(tmp_path):
    base = fixtures.write_speech_commands(tmp_path, words=SC10, n_train=1, n_val=1, n_test=1, length=LENGTH)
    (base / "testing_list.txt").unlink()
    with pytest.raises(FileNotFoundError, match="validation_list.txt exists but .*testing_list.txt does not"):
        SpeechCommands("train", root=tmp_path, classes="sc10", length=LENGTH)


def test_stratified_split_too_small_says_so(tmp_path):
    fixtures.write_speech_commands(tmp_path, words=SC10, n_train=1, n_val=1, n_test=1, length=LENGTH, short_every=0)
    with pytest.raises(ValueError, match="split_rule='stratified'.*leave val or test empty"):
        SpeechCommands("val", root=tmp_path, classes="sc10", split_rule="stratified", length=LENGTH)


def test_stand_in_tones_depend_on_the_word(sc10_root):
    ds = SpeechCommands("train", root=sc10_root, classes="sc10", length=LENGTH, standardize=False)
    peak = {}
    for i in range(len(ds)):
        spectrum = np.abs(np.fft.rfft(ds[i][0][:, 0].numpy()))
        peak.setdefault(int(ds.targets[i]), []).append(int(spectrum.argmax()))
    medians = [np.median(peak[c]) for c in range(10)]
    assert all(a < b for a, b in zip(medians, medians[1:])), medians  # higher words, higher tones
