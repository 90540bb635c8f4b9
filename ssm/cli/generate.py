"""``ssm-generate``: sample audio autoregressively from an ``ssm-train`` checkpoint (SaShiMi, arXiv 2202.09729).

    ssm-generate checkpoint=PATH [n_samples=4] [length=16000 | length=1.5s] [temperature=1.0]
                 [top_p=1.0] [seed=0] [prompt=WAV] [device=cpu] [output_dir=generated] ...

Loads any checkpoint ``ssm-train`` wrote (the resolved config inside it rebuilds the model, see
``ssm.load``), refuses models that cannot be stepped causally, samples a batch of token
sequences with ``ssm.models.generation.sample`` (temperature, nucleus/top-p, optional prompt),
decodes them with the checkpoint's quantisation (mu-law or linear, from its data config) and
writes 16-bit WAV files ``sample_000.wav``, ... at the checkpoint's sample rate.

Every sample is scored by its exact log-likelihood under the model (untempered, untruncated
softmax of the sampled part). ``samples.json`` lists each sample's NLL in bits per sample and its
rank (0 = most likely). SaShiMi's README ranks samples this way and keeps the middle of the
ranking, dropping the least likely 40% and the most likely 5% (the latter tend to be silence or
repetition); ``drop_worst=0.4 drop_best=0.05`` does that here (off by default): dropped samples
are listed in ``samples.json`` but no WAV is written for them.

A prompt WAV is downmixed to mono and resampled to the model's rate (each with a log line),
normalised as the training data was, quantised, and continued; every output file starts with
the prompt itself. Sequences are fed to the model behind the dataset's start token (the code of
0.0), exactly as in training (``ssm.data.audio`` item convention).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from . import args
from .args import UsageError, boolean, choice, integer, number, option, path

log = logging.getLogger(__name__)


# ---- arguments ---------------------------------------------------------------------------------------


def _duration(key: str, text: str) -> float:
    """``16000`` (samples, int) or ``1.5s`` (seconds, float; converted once the rate is known)."""
    t = text.strip().lower()
    try:
        value: float = float(t[:-1]) if t.endswith("s") else int(t)
    except ValueError:
        raise UsageError(f"`{key}` must be a number of samples (e.g. 16000) or seconds (e.g. 1.5s), got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise UsageError(f"`{key}` must be positive, got {text!r}")
    return value


_FRACTION = number(lambda v: 0 <= v < 1, "a fraction in [0, 1)")


@dataclasses.dataclass
class Options:
    """The settings of one ``ssm-generate`` run (field order = ``--help`` order)."""

    checkpoint: str | None = option(None, path, "PATH of a checkpoint written by ssm-train", required=True)
    n_samples: int = option(4, integer(1), "waveforms to generate, in one batch")
    length: float | None = option(None, _duration, "samples per output file, prompt included: 16000 or 1.5s "
                                  "(none: the training length)")
    temperature: float = option(1.0, number(lambda v: v >= 0, "a number >= 0 (0 = greedy)"),
                                "softmax temperature of the draws")
    top_p: float = option(1.0, number(lambda v: 0 < v <= 1, "a number in (0, 1]"), "nucleus sampling mass (1 = off)")
    seed: int = option(0, integer(0), "seed of the sampling generator")
    prompt: str | None = option(None, path, "WAV file to continue (downmixed and resampled to the model's rate)")
    prompt_length: float | None = option(None, _duration, "use only the first N samples (or 0.5s) of the prompt")
    device: str = option("cpu", args.device(), "cpu, cuda or cuda:N")
    threads: int = option(1, integer(1), "CPU threads for torch during sampling (one step is many tiny ops: "
                          "1 is fastest here)")
    fast: bool = option(True, boolean, "step with FastStepper (SaShiMi) instead of the reference model.step loop")
    cuda_graph: bool = option(False, boolean, "replay the fast step as CUDA graphs (device=cuda only)")
    compile: bool = option(False, boolean, "torch.compile the fast step (slow to build)")
    backend: str = option("auto", choice("auto", "cpp", "torch"),
                          "fast step's kernels: auto, cpp (the compiled CPU ops) or torch (PyTorch ops)")
    output_dir: str = option("generated", path, "where sample_000.wav ... and samples.json go")
    drop_worst: float = option(0.0, _FRACTION, "fraction of least likely samples to drop (SaShiMi README: 0.4)")
    drop_best: float = option(0.0, _FRACTION, "fraction of most likely samples to drop (SaShiMi README: 0.05)")
    spectrogram: bool = option(False, boolean, "also write sample_000.png, an STFT magnitude plot per sample")
    progress: bool = option(True, boolean, "show a progress bar")
    rate: int | None = option(None, integer(1), "sample rate in Hz, only for checkpoints whose data config has none")
    quantization: str | None = option(None, choice("mu-law", "linear"),
                                      "mu-law or linear, only for checkpoints whose data config has none")
    trust_checkpoint: bool = option(False, boolean, "load a checkpoint you know without the safety checks "
                                    "(pickled objects, config targets)")

    def __post_init__(self):
        if self.drop_worst + self.drop_best >= 1:
            raise UsageError(f"`drop_worst` + `drop_best` must be < 1 (something must be kept), got "
                             f"{self.drop_worst} + {self.drop_best}")
        if self.cuda_graph and not self.device.startswith("cuda"):
            raise UsageError(f"`cuda_graph`=true needs device=cuda, got device={self.device}")
        if self.cuda_graph and not self.fast:
            raise UsageError("`cuda_graph`=true needs fast=true (graphs capture the fast step)")


SYNOPSIS = "ssm-generate checkpoint=PATH [key=value ...]"
SUMMARY = __doc__.split("\n\n")[2]  # the module docstring's paragraph after the synopsis


def parse_args(argv: Sequence[str]) -> Options:
    """``key=value`` (or ``--key=value``) arguments -> ``Options``. Raises ``UsageError`` naming the
    argument on anything it cannot use."""
    return args.parse(Options, argv, prog="ssm-generate")


# ---- the checkpoint ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AudioFormat:
    """How the checkpoint's training data turned waveforms into tokens."""

    rate: int
    quantization: str
    bits: int
    normalize: str
    length: int | None  # training example length in samples, if the data config says

    @property
    def start_token(self) -> int:
        return 2 ** (self.bits - 1)  # the code of 0.0 for both quantisations (ssm.data.audio.silence_code)


def read(path: Path, *, trust: bool = False) -> tuple[dict, dict]:
    """(checkpoint dict, its resolved config), the file read once through the safe reader."""
    from ssm.train.loading import CheckpointError, read_checkpoint

    if not path.is_file():
        raise UsageError(f"`checkpoint`: no such file {path}")
    try:
        ckpt = read_checkpoint(path, trust=trust, mmap=True, what="checkpoint")
    except CheckpointError as err:  # damaged, or refused as unsafe; the message names the file
        raise UsageError(str(err)) from None
    config = (ckpt.get("hyper_parameters") or {}).get("config")
    if not config or "model" not in config:
        raise UsageError(f"`checkpoint`: {path} holds no model config under hyper_parameters['config'] "
                         f"(was it written by ssm-train?)")
    return ckpt, config


def audio_format(config: dict, *, rate: int | None = None, quantization: str | None = None) -> AudioFormat:
    """The sample rate and quantisation from a checkpoint's resolved config (its ``data.dataset``);
    ``rate``/``quantization`` fill in for configs that do not say, and must agree with those that do."""
    data = config.get("data") or {}
    dataset = data.get("dataset") or {}
    target = dataset.get("_target_", "unknown dataset")
    found = {"rate": dataset.get("rate"), "quantization": dataset.get("quantization")}
    given = {"rate": rate, "quantization": quantization}
    for key, value in found.items():
        if value is not None and given[key] is not None and value != given[key]:
            raise UsageError(f"`{key}`={given[key]} contradicts the checkpoint's data config ({target}: "
                             f"{key}={value}); leave `{key}` out")
        if value is None and given[key] is None:
            raise UsageError(f"the checkpoint's data config ({target}) does not say the audio `{key}`, so its "
                             f"tokens cannot be turned into a waveform; pass `{key}`=... if you know it")
    bits = dataset.get("bits", 8)
    vocab = data.get("vocab_size")
    if vocab is not None and vocab != 2**bits:
        raise UsageError(f"the checkpoint's data config has vocab_size={vocab}, not 2^bits={2**bits} "
                         f"(bits={bits}); its tokens are not audio codes")
    return AudioFormat(rate=int(found["rate"] or given["rate"]), quantization=found["quantization"] or given["quantization"],
                       bits=int(bits), normalize=dataset.get("normalize", "none"), length=dataset.get("length"))


def _why_not(model: nn.Module, path: Path, err: Exception) -> UsageError:
    """``sample``'s refusal of ``model``, said in terms of the checkpoint and how to train one that works."""
    name = type(model).__name__
    if not getattr(model, "causal", False):
        reason = (f"is not causal (causal={getattr(model, 'causal', 'missing')}: bidirectional layers"
                  f"{', no UpPool shift' if name == 'SaShiMi' else ''}), so its output at time t depends on later "
                  f"samples and it cannot generate audio one sample at a time; train it with model.causal=true")
    elif not isinstance(getattr(model, "encoder", None), nn.Embedding):
        reason = ("takes real-valued inputs, not audio tokens (no embedding encoder); autoregressive sampling "
                  "needs a token model (vocab_size=...)")
    else:
        reason = "cannot generate autoregressively"
    return UsageError(f"`checkpoint` {path}: the {name} in it {reason} ({err})")


# ---- prompt --------------------------------------------------------------------------------------------


def _samples(value: float | None, rate: int) -> int | None:
    if value is None:
        return None
    return value if isinstance(value, int) else max(1, round(value * rate))


def prompt_tokens(path: str | os.PathLike, fmt: AudioFormat, *, max_length: int | None = None) -> torch.Tensor:
    """A WAV file -> (P,) int64 tokens as the model's training data was made: downmix to mono,
    resample to ``fmt.rate`` (each logged), keep the first ``max_length`` samples, normalise, quantise."""
    from ssm.data.audio import normalize, quantize, read_wav, resample

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"`prompt`: no such file {path}")
    try:
        waveform, rate = read_wav(path)  # (C, T)
    except ValueError as err:
        raise UsageError(f"`prompt`: {err}") from err
    if waveform.shape[0] > 1:
        log.info("prompt %s: %d channels downmixed to mono", path, waveform.shape[0])
    wave = waveform.mean(0)  # (T,)
    if rate != fmt.rate:
        log.info("prompt %s: resampled from %d Hz to %d Hz (the model's rate)", path, rate, fmt.rate)
        wave = resample(wave, rate, fmt.rate)
    if max_length is not None:
        wave = wave[:max_length]
    if wave.numel() == 0:
        raise UsageError(f"`prompt`: {path} has no samples")
    return quantize(normalize(wave, fmt.normalize), fmt.quantization, fmt.bits)


# ---- outputs -------------------------------------------------------------------------------------------


def rank_samples(nll: Sequence[float], *, drop_worst: float = 0.0, drop_best: float = 0.0) -> tuple[list[int], list[bool]]:
    """(rank per sample, 0 = lowest NLL; kept per sample). Drops ``floor(drop_worst * n)`` of the
    highest-NLL and ``floor(drop_best * n)`` of the lowest-NLL samples (SaShiMi: 0.4 and 0.05)."""
    n = len(nll)
    order = sorted(range(n), key=lambda i: (nll[i], i))
    rank = [0] * n
    for r, i in enumerate(order):
        rank[i] = r
    n_best, n_worst = math.floor(drop_best * n), math.floor(drop_worst * n)
    kept = [n_best <= rank[i] < n - n_worst for i in range(n)]
    return rank, kept


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_spectrogram(path: Path, wave: torch.Tensor, rate: int, title: str) -> None:
    """STFT magnitude (dB) of a (T,) waveform as a PNG, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_fft = min(512, 2 ** int(math.log2(max(wave.numel(), 2))))
    hop = max(1, n_fft // 4)
    spec = torch.stft(wave.float(), n_fft, hop_length=hop, window=torch.hann_window(n_fft), return_complex=True)
    db = 20 * torch.log10(spec.abs().clamp(min=1e-5))  # (F, frames)
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.imshow(db.numpy(), origin="lower", aspect="auto", cmap="magma", vmin=-100, vmax=float(db.max()),
              extent=(0, wave.numel() / rate, 0, rate / 2000))
    ax.set(xlabel="time (s)", ylabel="frequency (kHz)", title=title)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fig.savefig(tmp, format="png", dpi=100)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)


class _Bar:
    """A rich progress bar fed by ``sample``'s ``progress(t, length)`` callback (updated every 1/200th).
    It appears at the first position sampled, so a model ``sample`` refuses leaves no empty bar."""

    def __init__(self, enabled: bool, first: int, total: int, description: str):
        self.first, self.total, self.every = first, total, max(1, (total - first) // 200)
        self.enabled, self.description = enabled, description
        self.progress = None
        self.started = False  # set at the first sampled position: from then on errors are not sample's refusals

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.stop()

    def _start(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeRemainingColumn(), transient=False)
        self.task = self.progress.add_task(self.description, total=self.total - self.first)
        self.progress.start()

    def __call__(self, t: int, total: int) -> None:
        if not self.started:
            self.started = True
            if self.enabled:
                self._start()
        if self.progress is not None and ((t - self.first) % self.every == 0 or t == total):
            self.progress.update(self.task, completed=t - self.first)


# ---- the run -------------------------------------------------------------------------------------------


def generate(options: Options) -> dict:
    """Run ``ssm-generate`` with parsed ``options``; returns what ``samples.json`` holds."""
    from ssm.data.audio import dequantize, write_wav
    from ssm.models.generation import sample
    from ssm.models.sashimi import SaShiMi
    from ssm.train.loading import model_from_checkpoint

    path = Path(options.checkpoint)
    ckpt, config = read(path, trust=options.trust_checkpoint)
    fmt = audio_format(config, rate=options.rate, quantization=options.quantization)
    device = torch.device(options.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"`device`={options.device}, but CUDA is not available here (use device=cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"`device`={options.device}: only {torch.cuda.device_count()} CUDA device(s)")

    model = model_from_checkpoint(ckpt, path)
    del ckpt  # the weights are in the model now (and the file's mapping is released)
    encoder = getattr(model, "encoder", None)  # a model without a token encoder is refused by sample below
    if isinstance(encoder, nn.Embedding) and encoder.num_embeddings != 2**fmt.bits:
        raise UsageError(f"`checkpoint` {path}: the model's vocabulary ({encoder.num_embeddings}) is not "
                         f"2^bits = {2**fmt.bits} audio codes")
    fast = options.fast
    if fast and not isinstance(model, SaShiMi):
        log.warning("fast=true steps SaShiMi models only; stepping this %s with its own step() (fast=false)",
                    type(model).__name__)
        fast = False
    model = model.to(device)

    length = _samples(options.length, fmt.rate)
    if length is None:
        if fmt.length is None:
            raise UsageError("`length` is required: the checkpoint's data config has no example length")
        length = int(fmt.length)
    prompt = None
    if options.prompt is not None:
        prompt = prompt_tokens(options.prompt, fmt, max_length=_samples(options.prompt_length, fmt.rate))
        if prompt.numel() >= length:
            raise UsageError(f"`length`={length} samples leaves nothing to generate after the {prompt.numel()}-sample "
                             f"prompt; give a longer `length` or a shorter `prompt_length`")
    elif options.prompt_length is not None:
        raise UsageError("`prompt_length` needs a `prompt`")
    P = 0 if prompt is None else prompt.numel()
    # The model sees [start token, audio...] as in training, so one more token than the output.
    context = torch.full((1, 1 + P), fmt.start_token, dtype=torch.long)
    if prompt is not None:
        context[0, 1:] = prompt

    generator = torch.Generator(device=device).manual_seed(options.seed)
    n, n_new = options.n_samples, length - P
    what = f"{n} x {n_new} samples" + (f" after a {P}-sample prompt" if P else "")
    # One step is a few hundred tiny ops; with several intra-op threads their fork/join costs far more
    # than the arithmetic (measured 0.27 ms vs 19-130 ms per step on a shared 2-core machine).
    threads = torch.get_num_threads()
    torch.set_num_threads(options.threads)
    try:
        with _Bar(options.progress, 1 + P, length + 1, f"sampling {what}") as bar:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            try:
                tokens, ll = sample(model, n, length + 1, temperature=options.temperature, top_p=options.top_p,
                                    prompt=context, generator=generator, fast=fast, compile=options.compile,
                                    cuda_graph=options.cuda_graph, backend=options.backend, progress=bar)
            except (ValueError, TypeError) as err:
                if bar.started:  # not a refusal of the model: a failure while sampling
                    raise
                raise _why_not(model, path, err) from err
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            elapsed = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    rate_achieved = n * n_new / elapsed
    print(f"generated {what} in {elapsed:.2f} s: {rate_achieved:.0f} samples/s "
          f"({'fast stepper' if fast else 'reference step loop'}, {device})", flush=True)

    tokens = tokens[:, 1:].cpu()  # (n, length): drop the start token
    waves = dequantize(tokens, fmt.quantization, fmt.bits)  # (n, length) in [-1, 1]
    nll = (-ll.cpu() / (n_new * math.log(2))).tolist()  # bits per generated sample
    rank, kept = rank_samples(nll, drop_worst=options.drop_worst, drop_best=options.drop_best)

    out = Path(options.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    width = max(3, len(str(n - 1)))
    records = []
    for i in range(n):
        name = f"sample_{i:0{width}d}"
        record = {"index": i, "file": None, "nll_bits_per_sample": nll[i], "log_likelihood_nats": float(ll[i]),
                  "rank": rank[i], "kept": kept[i]}
        if kept[i]:
            write_wav(out / f"{name}.wav", waves[i], fmt.rate, bits=16)
            record["file"] = f"{name}.wav"
            if options.spectrogram:
                write_spectrogram(out / f"{name}.png", waves[i], fmt.rate,
                                  f"{name}: {nll[i]:.3f} bits/sample, rank {rank[i]}")
                record["spectrogram"] = f"{name}.png"
        records.append(record)
    written = {r["file"] for r in records if r["file"]}
    stale = sorted(p.name for p in out.glob("sample_*.wav") if p.name not in written)
    if stale:
        log.warning("%s also holds %d sample WAV file(s) from an earlier run (e.g. %s); samples.json describes "
                    "this run only", out, len(stale), stale[0])
    summary = {
        "checkpoint": str(path), "model": type(model).__name__, "rate": fmt.rate, "quantization": fmt.quantization,
        "bits": fmt.bits, "n_samples": n, "length": length, "prompt": options.prompt, "prompt_samples": P,
        "temperature": options.temperature, "top_p": options.top_p, "seed": options.seed, "fast": fast,
        "cuda_graph": options.cuda_graph, "backend": options.backend, "device": str(device), "threads": options.threads, "drop_worst": options.drop_worst,
        "drop_best": options.drop_best, "seconds": elapsed, "samples_per_second": rate_achieved,
        "samples": records,
    }
    _atomic_write_text(out / "samples.json", json.dumps(summary, indent=2) + "\n")
    best = min(range(n), key=lambda i: rank[i])
    print(f"wrote {len(written)} of {n} samples to {out} (NLL {min(nll):.3f}..{max(nll):.3f} bits/sample, "
          f"most likely: sample {best}); ranking in {out / 'samples.json'}", flush=True)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """The console entry: 0 on success, 2 (with ``ssm-generate: error: ...`` on stderr) on bad input."""
    if log.level == logging.NOTSET:  # conversions of the prompt are worth seeing by default
        log.setLevel(logging.INFO)
    return args.run(generate, Options, argv, prog="ssm-generate", synopsis=SYNOPSIS, summary=SUMMARY)


if __name__ == "__main__":
    raise SystemExit(main())
