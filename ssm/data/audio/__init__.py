"""Audio data for autoregressive waveform models (SaShiMi, arXiv 2202.09729).

- ``wav``: read/write WAV without extra dependencies (PCM 8/16/24/32-bit, float 32/64-bit).
- ``resample``: band-limited polyphase resampling, with ``resample_ref`` beside it.
- ``quantize``: mu-law / linear ``bits``-bit codes and per-example scaling.
- ``datasets``: ``SC09``, ``LongRecordings`` (YouTubeMix, Beethoven), ``GeneratedAudio``.

``python -m ssm.data.audio generate --root DIR`` writes the generated set as WAV files in the
SC09 layout.
"""

from .datasets import (
    DIGITS,
    SC09,
    GeneratedAudio,
    LongRecordings,
    generate_notes,
    speech_commands_split,
    write_generated_audio,
)
from .quantize import (
    dequantize,
    linear_decode,
    linear_encode,
    normalize,
    quantize,
    silence_code,
)
from .resample import output_length, resample, resample_ref, source_span
from .wav import WavInfo, read_wav, wav_info, write_wav

__all__ = [
    "DIGITS",
    "SC09",
    "GeneratedAudio",
    "LongRecordings",
    "WavInfo",
    "dequantize",
    "generate_notes",
    "linear_decode",
    "linear_encode",
    "normalize",
    "output_length",
    "quantize",
    "read_wav",
    "resample",
    "resample_ref",
    "silence_code",
    "source_span",
    "speech_commands_split",
    "wav_info",
    "write_generated_audio",
    "write_wav",
]
