"""``ssm-generate`` on checkpoints that ``ssm-train`` wrote: valid WAV files scored by their exact
likelihood, refusal of non-causal models, prompt continuation with resampling/downmixing, and
errors that name the bad argument."""

import json
import math
import subprocess

import pytest
import torch
from helpers import RTOL, capture_log
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

import ssm
from ssm.data.audio import (
    GeneratedAudio,
    quantize,
    read_wav,
    resample,
    wav_info,
    write_wav,
)
from ssm.cli.generate import UsageError, generate, main, parse_args, rank_samples
from ssm.train.cli import config_dir, train

TINY = ["experiment=audio/sashimi-tones", "model.d_model=8", "model.n_layers=1", "model.layer.d_state=8",
        "data.dataset.size=16", "data.dataset.length=256", "data.batch_size=8", "+trainer.max_steps=2",
        "trainer.max_epochs=1", "callbacks.progress=null", "test=false"]
RATE = 16000  # data/audio/tones


def _train(out_dir, extra=()):
    """What compose_cfg (conftest) does, for a module-scoped checkpoint: compose, then ssm-train's train()."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose("config", overrides=[f"output_dir={out_dir}", *TINY, *extra])
        train(cfg)
    finally:
        GlobalHydra.instance().clear()
    path = out_dir / "checkpoints" / "last.ckpt"
    assert path.is_file()
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("tones"))


@pytest.fixture
def generate_log():
    """The records of ``ssm.cli.generate`` at INFO and above (``helpers.capture_log``)."""
    with capture_log("ssm.cli.generate") as records:
        yield records


def _codes(path):
    waveform, rate = read_wav(path)
    return quantize(waveform[0], "mu-law", 8), rate


def test_samples_are_valid_wavs_ranked_by_their_exact_likelihood(checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    n, length = 4, 320  # a multiple of prod(pool)=16, for the convolutional re-scoring below
    rc = main([f"checkpoint={checkpoint}", f"n_samples={n}", f"length={length}", "seed=3", f"output_dir={out}",
               "progress=false", "drop_worst=0.25", "spectrogram=true"])
    assert rc == 0
    assert "samples/s" in capsys.readouterr().out
    summary = json.loads((out / "samples.json").read_text())
    records = summary["samples"]
    assert [r["index"] for r in records] == list(range(n))
    assert sorted(r["rank"] for r in records) == list(range(n))
    by_rank = sorted(records, key=lambda r: r["rank"])
    nll = [r["nll_bits_per_sample"] for r in by_rank]
    assert nll == sorted(nll) and all(math.isfinite(v) and 0 < v < 16 for v in nll)
    # drop_worst=0.25 of 4: exactly the least likely sample is dropped and has no file
    assert [r["kept"] for r in by_rank] == [True, True, True, False]
    assert by_rank[-1]["file"] is None and not (out / f"sample_{by_rank[-1]['index']:03d}.wav").exists()

    model = ssm.load(checkpoint).eval()
    for r in by_rank[:-1]:
        path = out / r["file"]
        assert r["file"] == f"sample_{r['index']:03d}.wav"
        info = wav_info(path)
        assert (info.rate, info.channels, info.frames, info.bits, info.sample_format) == (RATE, 1, length, 16, "pcm")
        wave, _ = read_wav(path)
        assert torch.isfinite(wave).all() and wave.std() > 1e-4 and len(wave.unique()) > 10  # not silence
        assert (out / r["spectrogram"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        # the NLL in samples.json is the model's own: re-score the file with the convolutional forward
        codes, _ = _codes(path)
        x = torch.cat([torch.tensor([128]), codes[:-1]])[None]  # start token, then the audio
        with torch.no_grad():
            logp = torch.log_softmax(model(x)[0].double(), -1)  # (L, 256)
        rescored = -logp.gather(-1, codes[:, None]).sum().item() / (length * math.log(2))
        assert rescored == pytest.approx(r["nll_bits_per_sample"], rel=RTOL[torch.float32])  # conv vs recurrence


def test_fast_and_reference_steppers_write_the_same_samples(checkpoint, tmp_path):
    args = [f"checkpoint={checkpoint}", "n_samples=2", "length=100", "seed=7", "progress=false", "temperature=0.9",
            "top_p=0.95"]
    fast = generate(parse_args(args + [f"output_dir={tmp_path / 'fast'}"]))
    ref = generate(parse_args(args + [f"output_dir={tmp_path / 'ref'}", "fast=false"]))
    generate(parse_args(args + [f"output_dir={tmp_path / 'fast-torch'}", "backend=torch"]))
    assert fast["fast"] and not ref["fast"]
    for i in range(2):
        a, _ = _codes(tmp_path / "fast" / f"sample_{i:03d}.wav")
        b, _ = _codes(tmp_path / "ref" / f"sample_{i:03d}.wav")
        c, _ = _codes(tmp_path / "fast-torch" / f"sample_{i:03d}.wav")
        assert torch.equal(a, b) and torch.equal(c, b)
        assert fast["samples"][i]["nll_bits_per_sample"] == pytest.approx(ref["samples"][i]["nll_bits_per_sample"],
                                                                         rel=RTOL[torch.float32])


def test_console_entry_point(checkpoint, tmp_path):
    out = tmp_path / "cli"
    run = subprocess.run(["ssm-generate", f"checkpoint={checkpoint}", "n_samples=2", "length=0.01s",
                          f"output_dir={out}"], check=False, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "samples/s" in run.stdout
    assert sorted(p.name for p in out.iterdir()) == ["sample_000.wav", "sample_001.wav", "samples.json"]
    assert wav_info(out / "sample_000.wav").frames == 160  # 0.01 s at 16 kHz
    helped = subprocess.run(["ssm-generate", "--help"], check=False, capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0 and "checkpoint=PATH" in helped.stdout and "top_p" in helped.stdout


def test_non_causal_checkpoint_is_refused_with_the_reason(tmp_path, capsys):
    path = _train(tmp_path / "noncausal", ["model.causal=false"])
    assert main([f"checkpoint={path}", f"output_dir={tmp_path / 'out'}", "progress=false"]) == 2
    err = capsys.readouterr().err
    assert "not causal" in err and "model.causal=true" in err and "ssm-generate: error:" in err
    assert not (tmp_path / "out").exists()


def test_prompt_is_downmixed_resampled_and_continued(checkpoint, tmp_path, generate_log):
    wave = GeneratedAudio("val", size=1, rate=8000, length=400).waveforms[0]  # (400,) at 8 kHz
    stereo = torch.stack([wave, 0.5 * wave])  # (2, 400)
    prompt = tmp_path / "prompt.wav"
    write_wav(prompt, stereo, 8000)
    summary = generate(parse_args([f"checkpoint={checkpoint}", f"prompt={prompt}", "prompt_length=500", "length=600",
                                   "n_samples=2", f"output_dir={tmp_path / 'out'}", "progress=false"]))
    messages = [r.getMessage() for r in generate_log.records]
    assert any("2 channels downmixed to mono" in m for m in messages), messages
    assert any("resampled from 8000 Hz to 16000 Hz" in m for m in messages), messages
    # what the prompt should become: the file as written, mono, at 16 kHz, first 500 samples, mu-law
    written, _ = read_wav(prompt)
    expected = quantize(resample(written.mean(0), 8000, RATE)[:500], "mu-law", 8)
    assert summary["prompt_samples"] == 500
    for i in range(2):
        codes, rate = _codes(tmp_path / "out" / f"sample_{i:03d}.wav")
        assert rate == RATE and len(codes) == 600
        assert torch.equal(codes[:500], expected)
    a, _ = _codes(tmp_path / "out" / "sample_000.wav")
    b, _ = _codes(tmp_path / "out" / "sample_001.wav")
    assert not torch.equal(a[500:], b[500:])  # the continuations are sampled independently


@pytest.mark.parametrize(("args", "named"), [
    (["n_samples=4"], "`checkpoint`"),
    (["checkpoint=x.ckpt", "temperature=-1"], "`temperature`"),
    (["checkpoint=x.ckpt", "temperature=hot"], "`temperature`"),
    (["checkpoint=x.ckpt", "top_p=0"], "`top_p`"),
    (["checkpoint=x.ckpt", "n_samples=0"], "`n_samples`"),
    (["checkpoint=x.ckpt", "length=abc"], "`length`"),
    (["checkpoint=x.ckpt", "length=-2s"], "`length`"),
    (["checkpoint=x.ckpt", "temprature=1"], "did you mean `temperature`"),
    (["checkpoint=x.ckpt", "device=tpu"], "`device`"),
    (["checkpoint=x.ckpt", "fast=maybe"], "`fast`"),
    (["checkpoint=x.ckpt", "backend=fused"], "`backend` must be auto, cpp or torch"),
    (["checkpoint=x.ckpt", "cuda_graph=true"], "`cuda_graph`"),
    (["checkpoint=x.ckpt", "drop_worst=0.6", "drop_best=0.5"], "`drop_worst` + `drop_best`"),
    (["checkpoint=x.ckpt", "seed=1", "seed=2"], "`seed` given twice"),
    (["checkpoint=x.ckpt", "oops"], "'oops' is not of the form key=value"),
])
def test_bad_arguments_are_named(args, named):
    with pytest.raises(UsageError) as err:
        parse_args(args)
    assert named in str(err.value)


def test_bad_inputs_at_run_time_are_named(checkpoint, tmp_path, capsys):
    assert main([f"checkpoint={tmp_path / 'missing.ckpt'}"]) == 2
    assert "`checkpoint`: no such file" in capsys.readouterr().err
    not_a_ckpt = tmp_path / "notes.ckpt"
    not_a_ckpt.write_text("hello")
    with pytest.raises(UsageError, match=r"checkpoint=.*notes.ckpt: the checkpoint is damaged and cannot be read"):
        generate(parse_args([f"checkpoint={not_a_ckpt}"]))
    prompt = tmp_path / "p.wav"
    write_wav(prompt, torch.zeros(200), RATE)
    with pytest.raises(UsageError, match="`length`=100 samples leaves nothing to generate"):
        generate(parse_args([f"checkpoint={checkpoint}", f"prompt={prompt}", "length=100", "progress=false",
                             f"output_dir={tmp_path}"]))
    with pytest.raises(UsageError, match="`prompt`: no such file"):
        generate(parse_args([f"checkpoint={checkpoint}", f"prompt={tmp_path / 'nope.wav'}", "progress=false"]))
    with pytest.raises(UsageError, match="`rate`=8000 contradicts"):
        generate(parse_args([f"checkpoint={checkpoint}", "rate=8000", "progress=false"]))
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="`device`=cuda"):
            generate(parse_args([f"checkpoint={checkpoint}", "device=cuda", "progress=false"]))


def test_rank_and_the_sashimi_keep_band():
    nll = [float(v) for v in torch.randperm(20)]
    rank, kept = rank_samples(nll, drop_worst=0.4, drop_best=0.05)
    assert [nll[i] for i in sorted(range(20), key=rank.__getitem__)] == sorted(nll)
    assert sum(kept) == 11  # 8 least likely and 1 most likely dropped
    assert not kept[nll.index(0.0)] and not kept[nll.index(19.0)] and kept[nll.index(1.0)]
    assert kept[nll.index(11.0)] and not kept[nll.index(12.0)]
    assert rank_samples([2.0, 1.0]) == ([1, 0], [True, True])
