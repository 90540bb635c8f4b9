"""ssm.data.audio: WAV I/O, resampling (fast vs reference), quantisation, and the audio datasets."""

from __future__ import annotations

import logging
import math
import re
import struct
import wave

import pytest
import torch
from helpers import HALF_ULP32, MU_LAW_8BIT, RESAMPLING, ROUNDOFF, assert_close, capture_log, rel_err

from ssm.data.audio import (
    DIGITS,
    SC09,
    GeneratedAudio,
    LongRecordings,
    dequantize,
    normalize,
    quantize,
    read_wav,
    resample,
    resample_ref,
    silence_code,
    source_span,
    speech_commands_split,
    wav_info,
    write_generated_audio,
    write_wav,
)
from ssm.data.audio.__main__ import main as audio_cli

# ----------------------------------------------------------------------------- fixtures


@pytest.fixture
def audio_log():
    """The records of ``ssm.data.audio`` at DEBUG and above (``helpers.capture_log``)."""
    with capture_log("ssm.data.audio", logging.DEBUG) as records:
        yield records


def _stdlib_pcm(path, ints: torch.Tensor, rate: int, bits: int):
    """Write integer samples (C, T) with the stdlib ``wave`` writer (independent of write_wav)."""
    frames = ints.T.reshape(-1).tolist()
    if bits == 8:
        payload = bytes(v + 128 for v in frames)
    elif bits == 24:
        payload = b"".join(struct.pack("<i", v)[:3] for v in frames)
    else:
        payload = struct.pack(f"<{len(frames)}{'h' if bits == 16 else 'i'}", *frames)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(ints.shape[0])
        w.setsampwidth(bits // 8)
        w.setframerate(rate)
        w.writeframes(payload)


def _riff(fmt_body: bytes, data: bytes, extra_chunks: bytes = b"") -> bytes:
    chunks = b"fmt " + struct.pack("<I", len(fmt_body)) + fmt_body + extra_chunks
    chunks += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def _fmt(tag: int, channels: int, rate: int, bits: int, extensible_tag: int | None = None) -> bytes:
    block = channels * bits // 8
    body = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    if extensible_tag is not None:
        guid = struct.pack("<H", extensible_tag) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        body += struct.pack("<HHI", 22, bits, 0) + guid
    return body


def _float_wav(path, x: torch.Tensor, rate: int, *, extensible: bool = False):
    """(C, T) float32 as a hand-built IEEE-float WAV (plain or WAVE_FORMAT_EXTENSIBLE header)."""
    data = struct.pack(f"<{x.numel()}f", *x.T.reshape(-1).tolist())
    fmt = _fmt(0xFFFE, x.shape[0], rate, 32, 3) if extensible else _fmt(3, x.shape[0], rate, 32)
    path.write_bytes(_riff(fmt, data, extra_chunks=b"LIST" + struct.pack("<I", 3) + b"abc\x00"))


def _tone(freq: float, rate: int, n: int, amp: float = 0.5) -> torch.Tensor:
    t = torch.arange(n, dtype=torch.float64) / rate
    return (amp * torch.sin(2 * math.pi * freq * t)).to(torch.float32)


# ----------------------------------------------------------------------------- WAV I/O


@pytest.mark.parametrize("bits", [8, 16, 24, 32])
@pytest.mark.parametrize("channels", [1, 2])
def test_write_read_round_trip(tmp_path, bits, channels):
    scale = 2 ** (bits - 1)
    g = torch.Generator().manual_seed(bits + channels)
    ints = torch.randint(-scale, scale, (channels, 257), generator=g, dtype=torch.int64)
    ints[0, :2] = torch.tensor([-scale, scale - 1])  # both full-scale ends
    x = (ints.to(torch.float64) / scale).to(torch.float32)
    path = tmp_path / "x.wav"
    write_wav(path, x, 22050, bits=bits)
    info = wav_info(path)
    assert (info.rate, info.channels, info.frames, info.bits, info.sample_format) == (22050, channels, 257, bits, "pcm")
    y, rate = read_wav(path)
    assert rate == 22050 and y.dtype == torch.float32 and y.shape == (channels, 257)
    if bits <= 24:  # exactly representable in float32
        assert torch.equal(y, x)
    else:
        assert (y.double() - ints.double() / scale).abs().max() <= HALF_ULP32
    assert y.min() >= -1 and y.max() <= 1
    assert not list(tmp_path.glob(".*tmp")), "temporary file left behind"


@pytest.mark.parametrize("bits", [8, 16, 24, 32])
def test_reader_matches_stdlib_writer(tmp_path, bits):
    scale = 2 ** (bits - 1)
    ints = torch.tensor([[0, 1, -1, scale - 1, -scale, scale // 3, -scale // 5]])
    path = tmp_path / f"pcm{bits}.wav"
    _stdlib_pcm(path, ints, 8000, bits)
    y, rate = read_wav(path)
    assert rate == 8000
    assert (y.double() - ints.double() / scale).abs().max() <= HALF_ULP32


@pytest.mark.parametrize("extensible", [False, True])
def test_read_float32_and_extensible(tmp_path, extensible):
    x = torch.tensor([[0.0, 0.25, -0.5, 1.0, -1.0, 1e-3], [0.5, -0.125, 0.0, 0.3, -0.7, 0.9]])
    path = tmp_path / "f.wav"
    _float_wav(path, x, 16000, extensible=extensible)
    info = wav_info(path)
    assert info.sample_format == "float" and info.bits == 32 and info.channels == 2
    y, rate = read_wav(path)
    assert rate == 16000 and torch.equal(y, x)


def test_read_extensible_pcm16(tmp_path):
    ints = torch.tensor([1, -2, 300, -32768, 32767])
    path = tmp_path / "ext.wav"
    path.write_bytes(_riff(_fmt(0xFFFE, 1, 16000, 16, 1), struct.pack("<5h", *ints.tolist())))
    y, _ = read_wav(path)
    assert torch.equal(y[0], ints.float() / 2**15)


def test_partial_read_is_a_slice(tmp_path):
    x = (torch.arange(2 * 100, dtype=torch.float32).reshape(2, 100) - 100) / 128
    path = tmp_path / "x.wav"
    write_wav(path, x, 16000)
    y, _ = read_wav(path, offset=37, frames=20)
    assert torch.equal(y, read_wav(path)[0][:, 37:57])
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*frames"):
        read_wav(path, offset=90, frames=20)


def test_float_out_of_range_clipped_with_warning(tmp_path, audio_log):
    path = tmp_path / "loud.wav"
    _float_wav(path, torch.tensor([[0.5, 1.5, -2.0]]), 16000)
    y, _ = read_wav(path)
    assert torch.equal(y, torch.tensor([[0.5, 1.0, -1.0]]))
    assert "loud.wav" in audio_log.text and "clipped" in audio_log.text


def test_corrupt_and_unsupported_files_name_the_file(tmp_path):
    cases = {
        "text.wav": (b"hello, this is not audio at all", "not a RIFF/WAVE"),
        "mulaw.wav": (_riff(_fmt(7, 1, 8000, 8), b"\x00" * 8), "unsupported WAV encoding.*0x0007.*mu-law"),
        "pcm12.wav": (_riff(_fmt(1, 1, 8000, 12), b"\x00" * 8), "unsupported WAV encoding.*12 bits"),
        "nodata.wav": (b"RIFF\x10\x00\x00\x00WAVEfmt " + struct.pack("<I", 16) + _fmt(1, 1, 8000, 16), "no 'data'"),
        "truncated.wav": (_riff(_fmt(1, 1, 8000, 16), b"\x00" * 100)[:-40], "truncated"),
        "oddframes.wav": (_riff(_fmt(1, 2, 8000, 16), b"\x00" * 6), "whole number of 4-byte frames"),
        "badguid.wav": (_riff(_fmt(0xFFFE, 1, 8000, 16, 1)[:-1] + b"\x01", b"\x00" * 4), "sub-format GUID"),
    }
    for name, (content, what) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ValueError, match=re.escape(str(path)) + ".*" + what):
            read_wav(path)
    nan = tmp_path / "nan.wav"
    _float_wav(nan, torch.tensor([[0.0, float("nan")]]), 8000)
    with pytest.raises(ValueError, match=re.escape(str(nan)) + ".*NaN"):
        read_wav(nan)


def test_write_wav_is_atomic_and_validates(tmp_path, audio_log):
    path = tmp_path / "x.wav"
    write_wav(path, torch.zeros(10), 8000)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="`bits`"):
        write_wav(path, torch.ones(10) * 0.5, 8000, bits=12)
    with pytest.raises(ValueError, match="NaN"):
        write_wav(path, torch.tensor([0.0, float("nan")]), 8000)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["x.wav"]
    write_wav(path, torch.tensor([0.5, 3.0, -3.0]), 8000)
    assert "2 samples outside [-1, 1] clipped" in audio_log.text
    assert torch.equal(read_wav(path)[0], torch.tensor([[0.5, 32767 / 32768, -1.0]]))


# ----------------------------------------------------------------------------- resampling

RATE_PAIRS = [(16000, 8000), (8000, 16000), (44100, 16000), (22050, 16000), (48000, 16000), (3, 2), (16000, 16000)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("orig,new", RATE_PAIRS)
def test_resample_matches_reference(orig, new, dtype):
    g = torch.Generator().manual_seed(orig + new)
    x = torch.randn(2, 3, 401, generator=g).to(dtype)  # batched, odd length
    y = resample(x, orig, new)
    assert y.shape == (2, 3, math.ceil(401 * new / orig)) and y.dtype == dtype
    assert_close(y, resample_ref(x, orig, new), dtype, f"resample {orig}->{new}")
    x_nc = x.transpose(0, 1)  # non-contiguous
    assert_close(resample(x_nc, orig, new), resample_ref(x_nc, orig, new), dtype, "non-contiguous")


@pytest.mark.parametrize("orig,new", RATE_PAIRS)
def test_resample_window_equals_slice_of_whole(orig, new):
    x = torch.randn(1000, generator=torch.Generator().manual_seed(1))
    whole = resample(x, orig, new)
    for start, length in [(0, 40), (37, 100), (len(whole) - 30, 30)]:
        lo, hi = source_span(orig, new, start, length)
        lo, hi = max(lo, 0), min(hi, len(x))
        part = resample(x[lo:hi], orig, new, start=start, length=length, offset=lo)
        assert torch.allclose(part, whole[start : start + length], rtol=ROUNDOFF[torch.float32], atol=ROUNDOFF[torch.float32]), (start, length)
        ref = resample_ref(x[lo:hi], orig, new, start=start, length=length, offset=lo)
        assert_close(part, ref, torch.float32, "window vs reference")


def _fit_sine(y: torch.Tensor, freq: float, rate: int, first: int):
    """(amplitude, rms residual) of the least-squares sine at ``freq`` through y[n], n from ``first``."""
    t = (torch.arange(len(y), dtype=torch.float64) + first) / rate
    basis = torch.stack([torch.sin(2 * math.pi * freq * t), torch.cos(2 * math.pi * freq * t)], 1)  # (n, 2)
    coef = torch.linalg.lstsq(basis, y.double()[:, None]).solution
    residual = y.double() - (basis @ coef)[:, 0]
    return coef.norm().item(), residual.pow(2).mean().sqrt().item()


@pytest.mark.parametrize("orig,new,freq", [(44100, 16000, 1000.0), (44100, 16000, 6000.0), (8000, 16000, 3000.0),
                                           (48000, 16000, 440.0), (22050, 16000, 7000.0)])
def test_sine_below_nyquist_survives(orig, new, freq):
    y = resample(_tone(freq, orig, orig // 4, amp=0.8), orig, new)
    edge = 200  # the zero padding outside the signal tapers the ends
    amp, residual = _fit_sine(y[edge:-edge], freq, new, edge)
    assert abs(amp - 0.8) <= 0.8 * RESAMPLING, f"amplitude {amp:.4f} != 0.8"
    assert residual <= RESAMPLING, f"residual {residual:.2e}: not a pure sine at {freq} Hz"


@pytest.mark.parametrize("freq", [9000.0, 10000.0, 15000.0])
def test_sine_above_new_nyquist_is_attenuated(freq):
    y = resample(_tone(freq, 44100, 11025, amp=1.0), 44100, 16000)[200:-200]
    assert y.pow(2).mean().sqrt() * math.sqrt(2) <= RESAMPLING  # at least 54 dB down


def test_resample_validates():
    with pytest.raises(ValueError, match="`orig_rate`"):
        resample(torch.zeros(10), 0, 16000)
    with pytest.raises(ValueError, match="float tensor"):
        resample(torch.zeros(10, dtype=torch.long), 8000, 16000)


# ----------------------------------------------------------------------------- quantisation


@pytest.mark.parametrize("bits", [8, 4])
def test_mu_law_round_trip_bound_and_codes(bits):
    mu = 2**bits - 1
    x = torch.linspace(-1, 1, 20001)
    q = quantize(x, "mu-law", bits)
    assert q.dtype == torch.long and q.min() == 0 and q.max() == mu
    assert len(torch.unique(q)) == mu + 1, "every code is used"
    assert (q[1:] >= q[:-1]).all(), "encoding is monotone"
    x_hat = dequantize(q, "mu-law", bits)
    # half a step (1/mu) in the companded domain, times the largest slope of the expansion there
    bound = (1 / mu) * math.log1p(mu) / mu * (1 + mu * x.abs()) * (1 + mu) ** (1 / mu)
    assert ((x_hat - x).abs() <= bound + ROUNDOFF[torch.float32]).all()  # the bound and x_hat in float32
    assert (x_hat - x).abs().max() > 0.2 * bound.max(), "bound is far from tight: wrong formula?"
    codes = torch.arange(mu + 1)
    levels = dequantize(codes, "mu-law", bits)
    assert (levels[1:] > levels[:-1]).all() and torch.equal(quantize(levels, "mu-law", bits), codes)


@pytest.mark.parametrize("bits", [8, 3])
def test_linear_round_trip_bound_and_codes(bits):
    x = torch.linspace(-1, 1, 20001)
    q = quantize(x, "linear", bits)
    assert q.min() == 0 and q.max() == 2**bits - 1 and len(torch.unique(q)) == 2**bits
    assert (q[1:] >= q[:-1]).all()
    err = (dequantize(q, "linear", bits) - x).abs()
    assert err.max() <= 2.0**-bits + ROUNDOFF[torch.float32] and err.max() > 0.9 * 2.0**-bits
    codes = torch.arange(2**bits)
    assert torch.equal(quantize(dequantize(codes, "linear", bits), "linear", bits), codes)


def test_silence_code_and_choices():
    assert silence_code("mu-law", 8) == 128 and silence_code("linear", 8) == 128 and silence_code("linear", 4) == 8
    with pytest.raises(ValueError, match="`method`.*'mu-law'.*'linear'.*alaw"):
        quantize(torch.zeros(3), "alaw")
    with pytest.raises(ValueError, match="`bits`"):
        quantize(torch.zeros(3), "linear", 0)


def test_normalize():
    x = torch.tensor([0.1, 0.3, -0.2, 0.05])
    m = normalize(x, "minmax")
    assert m.min() == -1 and abs(m.max().item() - 1) <= ROUNDOFF[torch.float32] and torch.argmax(m) == 1
    assert rel_err(normalize(x, "peak"), x / 0.3) <= ROUNDOFF[torch.float32]
    assert torch.equal(normalize(x, "none"), x)
    assert torch.equal(normalize(torch.full((5,), 0.3), "minmax"), torch.zeros(5))
    with pytest.raises(ValueError, match="`mode`"):
        normalize(x, "rms")


# ----------------------------------------------------------------------------- SC09


def _sc09(root, files: dict[str, torch.Tensor], rate: int = 16000, lists: dict[str, list[str]] | None = None):
    """Write ``{"digit/name.wav": waveform}`` in the SC09 layout (every digit folder exists)."""
    base = root / "sc09"
    for d in DIGITS:
        (base / d).mkdir(parents=True, exist_ok=True)
    for rel, x in files.items():
        write_wav(base / rel, x, rate)
    for split, name in (("val", "validation_list.txt"), ("test", "testing_list.txt")):
        if lists is not None and split in lists:
            (base / name).write_text("".join(f"{e}\n" for e in lists[split]))
    return base


def test_sc09_layout_lists_and_items(tmp_path, audio_log):
    files = {f"{d}/spk{k}_nohash_0.wav": _tone(200 + 50 * i + 7 * k, 16000, 1000) for i, d in enumerate(DIGITS)
             for k in range(3)}
    lists = {"val": ["one/spk1_nohash_0.wav", "left/abc_nohash_0.wav"],  # non-digit words are ignored
             "test": ["two/spk2_nohash_0.wav", "nine/spk0_nohash_0.wav", "six/ghost_nohash_0.wav"]}
    base = _sc09(tmp_path, files, lists=lists)
    val, test, train = (SC09(s, root=tmp_path, length=1000, normalize="none") for s in ("val", "test", "train"))
    assert "1 digit clips listed in" in audio_log.text and "six/ghost_nohash_0.wav" in audio_log.text
    assert [p.name for p in val.files] == ["spk1_nohash_0.wav"] and val.labels.tolist() == [1]
    assert sorted(test.labels.tolist()) == [2, 9]
    assert len(train) == 30 - 3 and set(train.labels.tolist()) == set(range(10))
    x, y = train[0]
    assert x.dtype == y.dtype == torch.long and x.shape == y.shape == (1000,)
    assert x[0] == 128 and torch.equal(x[1:], y[:-1])
    expected = quantize(read_wav(train.files[0])[0][0], "mu-law", 8)
    assert torch.equal(y, expected)
    (base / "testing_list.txt").write_text("one/spk1_nohash_0.wav\n")
    with pytest.raises(ValueError, match="one/spk1_nohash_0.wav is listed in both"):
        SC09("train", root=tmp_path)


def test_sc09_pads_short_and_truncates_long(tmp_path):
    short, long = _tone(300, 16000, 600, amp=0.9), _tone(500, 16000, 3000, amp=0.9)
    _sc09(tmp_path, {"zero/a_nohash_0.wav": short, "zero/b_nohash_0.wav": long}, lists={"val": [], "test": []})
    for norm in ("none", "minmax"):
        data = SC09("train", root=tmp_path, length=1000, normalize=norm, quantization="linear")
        (_, y_short), (_, y_long) = data[0], data[1]
        assert y_short.shape == y_long.shape == (1000,)
        assert (y_short[600:] == 128).all(), "padding is the code of 0.0"
        assert len(torch.unique(y_short[:600])) > 50
        wave_long = read_wav(data.files[1])[0][0, :1000]
        assert torch.equal(y_long, quantize(normalize(wave_long, norm), "linear", 8))


def test_sc09_hash_fallback_and_half_lists(tmp_path):
    names = [f"{d}/{s}_nohash_{n}.wav" for d in DIGITS[:3] for s in ("aa11", "bb22", "cc33", "dd44", "ee55")
             for n in (0, 1)]
    base = _sc09(tmp_path, {n: torch.zeros(100) for n in names})
    seen = {}
    for split in ("train", "val", "test"):
        try:
            data = SC09(split, root=tmp_path, length=100)
        except ValueError as err:  # a split the hash rule left empty
            assert "is empty" in str(err)
            continue
        for p in data.files:
            seen[f"{p.parent.name}/{p.name}"] = split
    assert seen == {n: speech_commands_split(n) for n in names}
    assert len({speech_commands_split(f"zero/{s}_nohash_0.wav") for s in map(str, range(200))}) == 3
    assert speech_commands_split("zero/aa11_nohash_0.wav") == speech_commands_split("six/aa11_nohash_7.wav")
    (base / "testing_list.txt").write_text("")
    with pytest.raises(FileNotFoundError, match="validation_list.txt.*does not"):
        SC09("train", root=tmp_path)


def test_sc09_wrong_rate_and_stereo_are_converted_and_logged(tmp_path, audio_log):
    slow = _tone(440, 8000, 4000, amp=0.5)
    stereo = torch.stack([_tone(440, 16000, 8000, amp=0.6), _tone(660, 16000, 8000, amp=0.2)])
    base = _sc09(tmp_path, {"three/a_nohash_0.wav": stereo}, lists={"val": [], "test": []})
    write_wav(base / "three/b_nohash_0.wav", slow, 8000)
    data = SC09("train", root=tmp_path, length=8000, normalize="none")
    lines = [r.getMessage() for r in audio_log.records if r.levelno == logging.DEBUG]
    assert any("a_nohash_0.wav" in m and "2 channels" in m and "mono" in m for m in lines)
    assert any("b_nohash_0.wav" in m and "8000 Hz" in m and "16000 Hz" in m for m in lines)
    assert len(lines) == 2, lines
    summary = [r.getMessage() for r in audio_log.records if r.levelno >= logging.INFO]
    expected = ("SC09: of 2 files, 1 are resampled to 16000 Hz and 1 downmixed to mono (one DEBUG line per file "
                "on logger 'ssm.data.audio.datasets')")
    assert summary == [expected]  # one line per split by default, the per-file ones at DEBUG
    _, y_stereo = data[0]
    mean = (read_wav(data.files[0])[0]).mean(0)
    assert torch.equal(y_stereo, quantize(mean, "mu-law", 8))
    _, y_slow = data[1]
    assert torch.equal(y_slow, quantize(resample(read_wav(data.files[1])[0][0], 8000, 16000), "mu-law", 8))
    amp, residual = _fit_sine(dequantize(y_slow, "mu-law")[200:7800], 440.0, 16000, 200)
    assert abs(amp - 0.5) <= MU_LAW_8BIT and residual <= MU_LAW_8BIT


def test_sc09_errors_name_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "sc09")) + ".*zero,one"):
        SC09("train", root=tmp_path)
    base = _sc09(tmp_path, {"four/a_nohash_0.wav": torch.zeros(10)}, lists={"val": [], "test": []})
    (base / "four/bad_nohash_0.wav").write_bytes(b"RIFF....WAVEjunk")
    with pytest.raises(ValueError, match=re.escape(str(base / "four/bad_nohash_0.wav"))):
        SC09("train", root=tmp_path)
    (base / "four/bad_nohash_0.wav").unlink()
    (base / "seven").rmdir()
    with pytest.raises(FileNotFoundError, match="no folder.*seven"):
        SC09("train", root=tmp_path)
    with pytest.raises(ValueError, match="`split`"):
        SC09("validation", root=tmp_path)
    with pytest.raises(ValueError, match="`quantization`"):
        SC09("train", root=tmp_path, quantization="mulaw")


# ----------------------------------------------------------------------------- long recordings


def test_long_recordings_split_chunks_and_content(tmp_path):
    sub = tmp_path / "music"
    sub.mkdir()
    g = torch.Generator().manual_seed(0)
    lengths = {f"{k}.wav": 256 * (k % 3) + 100 + 37 * k for k in range(1, 11)}  # "10.wav" sorts last
    waves = {}
    for name, n in lengths.items():
        waves[name] = (torch.rand(n, generator=g) - 0.5)
        write_wav(sub / name, waves[name], 16000)
    (sub / "notes.txt").write_text("not audio")
    parts = {s: LongRecordings(s, root=tmp_path, subdir="music", length=256, normalize="none") for s in
             ("train", "val", "test")}
    assert [p.name for p in parts["train"].files] == [f"{k}.wav" for k in range(1, 9)]  # floor(0.88 * 10) = 8
    assert [p.name for p in parts["val"].files] == ["9.wav"] and [p.name for p in parts["test"].files] == ["10.wav"]
    train = parts["train"]
    assert len(train) == sum(lengths[f"{k}.wav"] // 256 for k in range(1, 9))
    for i in range(len(train)):
        k, start = train.chunks[i]
        name = train.files[k].name
        x, y = train[i]
        chunk = read_wav(sub / name)[0][0, start : start + 256]
        assert torch.equal(y, quantize(chunk, "mu-law", 8)) and x[0] == 128 and torch.equal(x[1:], y[:-1])
        assert start + 256 <= lengths[name]
    mm = LongRecordings("train", root=tmp_path, subdir="music", length=256, quantization="linear")  # minmax default
    _, y = mm[0]
    assert y.min() == 0 and y.max() == 255


def test_long_recordings_resampled_chunks_match_whole_file(tmp_path, audio_log):
    sub = tmp_path / "rec"
    sub.mkdir()
    x = torch.stack([_tone(300, 22050, 9000, 0.4), _tone(300, 22050, 9000, 0.2)]) + 0.1 * torch.randn(2, 9000)
    write_wav(sub / "a.wav", x.clamp(-1, 1), 22050)
    data = LongRecordings("test", root=tmp_path, subdir="rec", length=1000, normalize="none")  # 1 file: 0/0/1
    assert "a.wav: resampled from 22050 Hz to 16000 Hz" in audio_log.text and "a.wav: 2 channels" in audio_log.text
    whole = resample(read_wav(sub / "a.wav")[0].mean(0), 22050, 16000)  # 6531 samples
    assert len(data) == len(whole) // 1000 == 6
    for i in range(len(data)):
        _, start = data.chunks[i]
        _, y = data[i]
        assert torch.equal(y, quantize(whole[start : start + 1000], "mu-law", 8)), i


def test_long_recordings_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "youtube_mix")) + ".*\\*\\.wav"):
        LongRecordings("train", root=tmp_path, subdir="youtube_mix", length=100)
    (tmp_path / "few").mkdir()
    for k in range(3):
        write_wav(tmp_path / "few" / f"{k}.wav", torch.zeros(500), 16000)
    with pytest.raises(ValueError, match="split 'val'.*3 files.*2/0/1"):
        LongRecordings("val", root=tmp_path, subdir="few", length=100)
    with pytest.raises(ValueError, match="no file of at least length=1000"):
        LongRecordings("train", root=tmp_path, subdir="few", length=1000)


# ----------------------------------------------------------------------------- generated audio


def test_generated_audio_deterministic_and_audible():
    a = GeneratedAudio("train", size=40, length=2048, seed=3)
    b = GeneratedAudio("train", size=40, length=2048, seed=3)
    assert torch.equal(a.codes, b.codes) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.codes, GeneratedAudio("val", size=40, length=2048, seed=3).codes)
    assert not torch.equal(a.codes, GeneratedAudio("train", size=40, length=2048, seed=4).codes)
    peaks = a.waveforms.abs().amax(1)
    assert (peaks > 0.25).all() and (peaks <= 1).all()
    assert all(len(torch.unique(c)) > 60 for c in a.codes), "every clip spans many codes"
    x, y = a[5]
    assert x.shape == y.shape == (2048,) and x[0] == 128 and torch.equal(x[1:], y[:-1]) and torch.equal(y, a.codes[5])
    # the classes differ audibly: the pitch (zero-crossing rate over the loud part) rises with the class
    big = GeneratedAudio("train", size=100, length=2048, seed=0, noise=0.0)
    rate = {}
    for c in (0, 9):
        w = big.waveforms[big.labels == c]
        loud = w.abs() > 0.05
        crossings = ((w[:, 1:] * w[:, :-1]) < 0) & loud[:, 1:]
        rate[c] = crossings.sum().item() / loud.sum().item()
    assert rate[9] > 3 * rate[0], rate


def test_write_generated_audio_reads_back_as_sc09(tmp_path):
    audio_cli(["generate", "--root", str(tmp_path), "--train-size", "12", "--val-size", "3", "--test-size", "4",
               "--length", "2000", "--seed", "1"])
    base = tmp_path / "sc09"
    assert len(list(base.glob("*/*.wav"))) == 19
    for split, size in (("train", 12), ("val", 3), ("test", 4)):
        gen = GeneratedAudio(split, size=size, length=2000, seed=1)
        data = SC09(split, root=tmp_path, length=2000, normalize="none")
        assert len(data) == size
        for path, label, i in zip(data.files, data.labels, range(size), strict=True):
            k = int(path.name[len(split) : len(split) + 5])
            assert DIGITS[gen.labels[k]] == path.parent.name and label == gen.labels[k]
            wave_read = read_wav(path)[0][0]
            assert (wave_read - gen.waveforms[k]).abs().max() <= 2**-15 + HALF_ULP32  # one 16-bit step
            assert (data[i][1] - gen.codes[k]).abs().max() <= 1  # 16-bit rounding can cross a code boundary
    again = write_generated_audio(tmp_path, train_size=12, val_size=3, test_size=4, length=2000, seed=1)
    assert again == base and len(list(base.glob("*/*.wav"))) == 19


# ----------------------------------------------------------------------------- configs


# The dataset node is instantiated on its own (the DataModule around it is Lightning's, tested
# in tests/train), which keeps these tests free of the Lightning import.


@pytest.fixture
def compose_data():
    from pathlib import Path

    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import ssm

    config_dir = Path(ssm.__file__).resolve().parent.parent / "configs"
    if not (config_dir / "data" / "audio").is_dir():
        pytest.skip("configs/ is not beside the package (not an editable install)")

    def _compose(name, overrides=()):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            return compose("config", overrides=[f"data={name}", *overrides])

    yield _compose
    GlobalHydra.instance().clear()


def test_tones_config_gives_lm_batches(compose_data):
    from hydra.utils import instantiate

    cfg = compose_data("audio/tones", ["data.dataset.size=8"])
    assert cfg.data._target_ == "ssm.train.data.DataModule"
    assert cfg.data.vocab_size == 256 and cfg.data.d_output == 256 and cfg.data.d_input is None
    dataset = instantiate(cfg.data.dataset)(split="train")
    x, y = next(iter(torch.utils.data.DataLoader(dataset, batch_size=cfg.data.batch_size)))
    assert x.shape == y.shape == (8, 4096) and x.dtype == torch.long and (x[:, 0] == 128).all()


def test_sc09_config_reads_data_root(compose_data, tmp_path):
    from hydra.utils import instantiate

    write_generated_audio(tmp_path, train_size=5, val_size=2, test_size=2, length=16000)
    cfg = compose_data("audio/sc09", [f"++data_root={tmp_path}"])
    assert (cfg.data.batch_size, cfg.data.dataset.length, cfg.data.dataset.quantization) == (32, 16000, "mu-law")
    assert cfg.data.vocab_size == 256
    dataset = instantiate(cfg.data.dataset)(split="val")
    x, y = next(iter(torch.utils.data.DataLoader(dataset, batch_size=cfg.data.batch_size)))
    assert x.shape == (2, 16000) and torch.equal(x[:, 1:], y[:, :-1])


@pytest.mark.parametrize("name,subdir,length,quantization", [("youtubemix", "youtube_mix", 131072, "mu-law"),
                                                              ("beethoven", "beethoven", 128000, "linear")])
def test_music_configs(compose_data, tmp_path, name, subdir, length, quantization):
    from hydra.utils import instantiate

    cfg = compose_data(f"audio/{name}", [f"++data_root={tmp_path}"])
    ds = cfg.data.dataset
    assert (ds.subdir, ds.length, ds.quantization, ds.rate, cfg.data.batch_size) == (subdir, length, quantization,
                                                                                      16000, 1)
    assert cfg.data.vocab_size == 256
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / subdir))):
        instantiate(cfg.data.dataset)(split="train")
