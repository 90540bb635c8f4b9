"""WAV files in and out with the standard library and torch only (no torchaudio/soundfile).

Reads RIFF/WAVE with PCM 8/16/24/32-bit integer or IEEE float 32/64-bit samples, in the plain
(``WAVE_FORMAT_PCM``/``WAVE_FORMAT_IEEE_FLOAT``) or ``WAVE_FORMAT_EXTENSIBLE`` header, by walking
the RIFF chunks directly: one parser for every encoding (the stdlib ``wave`` reader of Python
3.11 knows PCM only). Writes integer PCM through the stdlib ``wave`` writer, atomically.

Waveforms are float32 ``(C, T)`` in [-1, 1]: integer samples are divided by 2^(bits-1) (8-bit
WAV is unsigned with 128 as zero), so full scale -2^(bits-1) maps to exactly -1.
"""

from __future__ import annotations

import logging
import os
import struct
import sys
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import torch

log = logging.getLogger(__name__)

_PCM, _FLOAT, _EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
# The 14 bytes every KSDATAFORMAT_SUBTYPE GUID shares after its 2-byte format tag.
_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
_TAG_NAMES = {0x0002: "MS ADPCM", 0x0006: "A-law", 0x0007: "mu-law", 0x0011: "IMA ADPCM", 0x0055: "MP3"}
_PCM_BITS, _FLOAT_BITS = (8, 16, 24, 32), (32, 64)


@dataclass(frozen=True)
class WavInfo:
    """What the header of a WAV file says; ``data_offset`` is the byte offset of frame 0."""

    path: str
    rate: int
    channels: int
    frames: int
    bits: int
    sample_format: Literal["pcm", "float"]
    data_offset: int

    @property
    def block_align(self) -> int:  # bytes per frame
        return self.channels * self.bits // 8


def wav_info(path: str | os.PathLike) -> WavInfo:
    """Parse the header of ``path`` (no sample data is read). Raises ValueError if the file is not
    a WAV file this module can read, naming the file and what was found."""
    with open(path, "rb") as f:
        return _parse_header(f, str(path))


def read_wav(path: str | os.PathLike, *, offset: int = 0, frames: int | None = None) -> tuple[torch.Tensor, int]:
    """``(waveform, rate)``: float32 ``(C, frames)`` in [-1, 1], frames ``[offset, offset + frames)``
    of the file (all of them by default). Seeks, so reading a chunk of a long file is cheap."""
    name = str(path)
    with open(path, "rb") as f:
        info = _parse_header(f, name)
        if frames is None:
            frames = info.frames - offset
        if offset < 0 or frames < 0 or offset + frames > info.frames:
            raise ValueError(f"{name}: cannot read frames [{offset}, {offset + frames}) of a file with {info.frames}")
        f.seek(info.data_offset + offset * info.block_align)
        raw = f.read(frames * info.block_align)
    if len(raw) != frames * info.block_align:
        raise ValueError(f"{name}: truncated sample data: expected {frames * info.block_align} bytes, read {len(raw)}")
    samples = _decode(bytearray(raw), info)  # (frames * C,)
    waveform = samples.reshape(frames, info.channels).T.contiguous()  # (C, T)
    if info.sample_format == "float":
        if not torch.isfinite(waveform).all():
            raise ValueError(f"{name}: float samples contain NaN or infinity")
        peak = waveform.abs().max().item() if waveform.numel() else 0.0
        if peak > 1.0:
            log.warning("%s: float samples reach %.3f; clipped to [-1, 1]", name, peak)
            waveform = waveform.clamp(-1.0, 1.0)
    return waveform, info.rate


def write_wav(path: str | os.PathLike, waveform: torch.Tensor, rate: int, bits: int = 16) -> None:
    """Write ``waveform`` ((C, T) or (T,), floats in [-1, 1]) as ``bits``-bit integer PCM.

    The file appears complete or not at all: it is written beside ``path`` and moved into place
    with ``os.replace``. Samples outside [-1, 1] are clipped, with a warning."""
    path = Path(path)
    if bits not in _PCM_BITS:
        raise ValueError(f"write_wav: `bits` must be one of {_PCM_BITS}; got {bits!r}")
    if not isinstance(rate, int) or rate <= 0:
        raise ValueError(f"write_wav: `rate` must be a positive int; got {rate!r}")
    if not isinstance(waveform, torch.Tensor) or waveform.dim() not in (1, 2) or not waveform.is_floating_point():
        raise ValueError(f"write_wav({path}): `waveform` must be a float tensor of shape (C, T) or (T,)")
    x = waveform.detach().to("cpu", torch.float64)
    x = x[None] if x.dim() == 1 else x  # (C, T)
    if x.shape[0] < 1:
        raise ValueError(f"write_wav({path}): `waveform` has no channels")
    if not torch.isfinite(x).all():
        raise ValueError(f"write_wav({path}): `waveform` contains NaN or infinity")
    n_clip = int((x.abs() > 1).sum())
    if n_clip:
        log.warning("write_wav(%s): %d samples outside [-1, 1] clipped", path, n_clip)
    x = x.clamp(-1.0, 1.0).T.contiguous()  # (T, C): frames interleave channels
    scale = 2 ** (bits - 1)
    q = torch.round(x * scale).clamp(-scale, scale - 1).to(torch.int64)
    if bits == 8:
        data = (q + 128).to(torch.uint8)
    elif bits == 16:
        data = q.to(torch.int16)
    elif bits == 24:
        data = q.to(torch.int32).reshape(-1, 1).view(torch.uint8).reshape(-1, 4)  # (T*C, 4) little-endian
        data = data[:, :3] if sys.byteorder == "little" else data[:, 1:].flip(-1)
    else:
        data = q.to(torch.int32)
    if bits in (16, 32) and sys.byteorder != "little":
        data = data.reshape(-1, 1).view(torch.uint8).flip(-1)
    payload = data.contiguous().numpy().tobytes()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with wave.open(str(tmp), "wb") as w:
            w.setnchannels(x.shape[1])
            w.setsampwidth(bits // 8)
            w.setframerate(rate)
            w.writeframes(payload)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _parse_header(f: BinaryIO, name: str) -> WavInfo:
    head = f.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise ValueError(f"{name}: not a RIFF/WAVE file (first bytes {head[:12]!r}; RIFX and RF64 are not supported)")
    f.seek(0, os.SEEK_END)
    file_size = f.tell()
    f.seek(12)
    fmt = None
    while True:
        chunk = f.read(8)
        if len(chunk) < 8:
            what = "no 'fmt ' chunk" if fmt is None else "no 'data' chunk"
            raise ValueError(f"{name}: {what} before the end of the file")
        cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if cid == b"fmt ":
            body = f.read(size)
            if size < 16 or len(body) < size:
                raise ValueError(f"{name}: 'fmt ' chunk of {size} bytes is too short or truncated")
            fmt = _parse_fmt(body, name)
            f.seek(size & 1, os.SEEK_CUR)
        elif cid == b"data":
            if fmt is None:
                raise ValueError(f"{name}: 'data' chunk comes before the 'fmt ' chunk")
            rate, channels, bits, sample_format = fmt
            offset, block = f.tell(), channels * bits // 8
            if offset + size > file_size:
                raise ValueError(f"{name}: truncated: the 'data' chunk claims {size} bytes, the file holds "
                                 f"{file_size - offset} after the header")
            if size % block:
                raise ValueError(f"{name}: 'data' chunk of {size} bytes is not a whole number of "
                                 f"{block}-byte frames")
            return WavInfo(name, rate, channels, size // block, bits, sample_format, offset)
        else:
            f.seek(size + (size & 1), os.SEEK_CUR)  # chunks are word-aligned


def _parse_fmt(body: bytes, name: str) -> tuple[int, int, int, str]:
    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack("<HHIIHH", body[:16])
    if tag == _EXTENSIBLE:
        if len(body) < 40:
            raise ValueError(f"{name}: WAVE_FORMAT_EXTENSIBLE header of {len(body)} bytes (expected 40)")
        guid = body[24:40]
        if guid[2:] != _GUID_TAIL:
            raise ValueError(f"{name}: WAVE_FORMAT_EXTENSIBLE with unknown sub-format GUID {guid.hex()}")
        tag = struct.unpack("<H", guid[:2])[0]
    supported = (tag == _PCM and bits in _PCM_BITS) or (tag == _FLOAT and bits in _FLOAT_BITS)
    if not supported:
        kind = {_PCM: "PCM", _FLOAT: "IEEE float"}.get(tag) or _TAG_NAMES.get(tag, "unknown encoding")
        raise ValueError(f"{name}: unsupported WAV encoding: format tag 0x{tag:04x} ({kind}) with {bits} bits per "
                         f"sample; supported are PCM 8/16/24/32-bit and IEEE float 32/64-bit")
    if channels < 1 or rate < 1:
        raise ValueError(f"{name}: invalid header: {channels} channels at {rate} Hz")
    if block_align != channels * bits // 8:
        raise ValueError(f"{name}: invalid header: block_align {block_align} != {channels} channels x {bits // 8} bytes")
    return rate, channels, bits, "pcm" if tag == _PCM else "float"


def _from_little_endian(buf: bytearray, dtype: torch.dtype, width: int) -> torch.Tensor:
    if sys.byteorder == "little":
        return torch.frombuffer(buf, dtype=dtype)
    swapped = torch.frombuffer(buf, dtype=torch.uint8).reshape(-1, width).flip(-1).contiguous()
    return swapped.view(dtype).reshape(-1)


def _decode(buf: bytearray, info: WavInfo) -> torch.Tensor:
    """Interleaved samples as float32 in [-1, 1]."""
    if len(buf) == 0:
        return torch.zeros(0)
    bits = info.bits
    if info.sample_format == "float":
        dtype = torch.float32 if bits == 32 else torch.float64
        return _from_little_endian(buf, dtype, bits // 8).to(torch.float32)
    if bits == 8:  # unsigned, 128 = 0
        return (torch.frombuffer(buf, dtype=torch.uint8).to(torch.float32) - 128) / 128
    if bits == 16:
        return _from_little_endian(buf, torch.int16, 2).to(torch.float32) / 2**15
    if bits == 24:
        b = torch.frombuffer(buf, dtype=torch.uint8).reshape(-1, 3).to(torch.int32)  # (N, 3), low byte first
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = torch.where(v >= 2**23, v - 2**24, v)  # sign-extend
        return v.to(torch.float32) / 2**23
    return (_from_little_endian(buf, torch.int32, 4).to(torch.float64) / 2**31).to(torch.float32)
