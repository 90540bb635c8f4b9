"""Predictions from a trained ``ssm-train`` checkpoint on new data (``ssm-predict``, whose
command line is ``ssm.cli.predict``): ``predict(checkpoint, data, output, ...)``.

    ssm-predict checkpoint=RUN/checkpoints/best.ckpt data=NEW.ts output=predictions.csv
    ssm-predict checkpoint=... data=NEW.csv output=forecast.csv last_only=true
    options: batch_size=64 device=auto|cpu|cuda format=ts|npz|csv|wav last_only=false trust_checkpoint=false
             (ssm-predict --help lists them)

- **Classification** (a ``data=classify`` checkpoint): the file is read with the training run's
  reader options, label vocabulary and standardisation (stored in the checkpoint as
  ``data_info``). The CSV has ``id``, ``predicted`` (the original label names), the file's own
  ``label`` when it has one, and ``p_<label>`` (class probabilities).
- **Forecasting** (``CsvSeries`` / ``InformerSeries`` checkpoints): a CSV with the same date and
  variable columns. Every lag window of the file is forecast (or only the last one with
  ``last_only=true``); rows ``window, origin, date, step, <variable>...`` in the data's own units
  (the training standardisation inverted), ``date`` the time each forecast is for (past the end of
  the file it continues at the data's time step), and ``actual_<variable>`` where the file has it.
- A classification checkpoint of a built-in data set (no label vocabulary): an ``.npz`` with ``x``,
  labelled by class index.
- **Other tasks** (regression, language models): an ``.npz`` with ``x``; the model outputs are
  written to ``output`` (``.npz``: array ``output``; ``.csv``: one row per example for pooled outputs).

Data whose channels or columns do not match the checkpoint is refused with what it expects. The
checkpoint is read safely (``ssm.train.loading.read_checkpoint``); ``trust_checkpoint=true`` loads
one that holds other pickled objects or config targets, for a file you know.
Batches run on ``device`` (``auto``: CUDA when available) with a progress bar (plain lines when
stdout is not a terminal).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from .loading import checkpoint_config, model_from_checkpoint, read_checkpoint
from .progress import track
from .tasks import run_model


class Predictor:
    """A checkpoint's model and task, ready to run batches: ``outputs(x, lengths)``."""

    def __init__(self, checkpoint: str | Path, *, device: str = "auto", trust: bool = False):
        from hydra.utils import instantiate
        from omegaconf import OmegaConf

        self.path = Path(checkpoint)
        ckpt = read_checkpoint(self.path, trust=trust, what="checkpoint")
        self.config = checkpoint_config(ckpt, self.path)
        self.info = ckpt.get("data_info") or {}
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"ssm-predict: device={device} but this machine has no CUDA device; use device=cpu or auto")
        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                                   "cpu" if device == "auto" else device)
        self.model = model_from_checkpoint(ckpt, self.path).to(self.device).eval()
        self.task = instantiate(OmegaConf.create(self.config)["task"])
        self.kind = self.info.get("kind") or self.config["task"]["_target_"].rsplit(".", 1)[-1].lower()

    @torch.no_grad()
    def outputs(self, x: torch.Tensor, lengths: torch.Tensor | None = None, *, batch_size: int = 64,
                description: str = "predict") -> torch.Tensor:
        """The model's outputs for ``x`` (N, L, ...) in batches, on CPU (float32)."""
        chunks = []
        starts = range(0, len(x), batch_size)
        for s in track(starts, total=len(starts), description=description):
            lb = None if lengths is None else lengths[s : s + batch_size].to(self.device)
            out = run_model(self.task, self.model, x[s : s + batch_size].to(self.device), lb)
            chunks.append(out.float().cpu())
        return torch.cat(chunks)


def predict(checkpoint: str | Path, data: str | Path, output: str | Path, *, batch_size: int = 64,
            device: str = "auto", last_only: bool = False, format: str | None = None,
            trust_checkpoint: bool = False) -> dict:
    """Run ``checkpoint`` on ``data`` and write ``output``; returns a short summary."""
    predictor = Predictor(checkpoint, device=device, trust=trust_checkpoint)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    if predictor.kind == "classification":
        rows = _classify(predictor, Path(data), output, batch_size=batch_size, format=format)
    elif predictor.kind == "forecasting":
        rows = _forecast(predictor, Path(data), output, batch_size=batch_size, last_only=last_only)
    else:
        rows = _raw_outputs(predictor, Path(data), output, batch_size=batch_size)
    summary = {"kind": predictor.kind, "rows": rows, "output": str(output), "device": str(predictor.device)}
    print(f"ssm-predict: wrote {rows} rows ({predictor.kind}) to {output}", flush=True)
    return summary


def _classify(p: Predictor, data: Path, output: Path, *, batch_size: int, format: str | None) -> int:
    from ..data.classify import encode, read_labelled

    info = p.info
    if "labels" not in info:  # a built-in data set: class indices, inputs as given (an .npz x)
        if data.suffix.lower() != ".npz":
            raise ValueError(f"ssm-predict: {p.path} was not trained with data=classify (no label vocabulary in the "
                             f"checkpoint); give its inputs as data=FILE.npz with an array x, got {data}")
        n_classes = p.config["task"].get("n_classes") or p.config["model"]["d_output"]
        d_input = p.config["model"].get("d_input") or 1
        info = {"labels": [str(k) for k in range(n_classes)], "d_input": d_input,
                "mean": [0.0] * d_input, "std": [1.0] * d_input, "options": {"format": "npz"}}
    options = dict(info.get("options", {}))
    if format is not None:
        options["format"] = format
    seqs = read_labelled(data, **options)
    if seqs.channels != info["d_input"]:
        raise ValueError(f"ssm-predict: {data} has {seqs.channels} channels per step, but the checkpoint {p.path} "
                         f"expects d_input={info['d_input']} (the training data's channels)")
    mean, std = np.asarray(info["mean"]), np.asarray(info["std"])
    x, lengths = encode(seqs.values, mean, std)
    padded = bool((lengths < x.shape[1]).any())
    probs = torch.softmax(p.outputs(x, lengths if padded else None, batch_size=batch_size), dim=-1)  # (N, classes)
    labels = info["labels"]
    if probs.shape[-1] != len(labels):
        raise ValueError(f"ssm-predict: the model gives {probs.shape[-1]} classes but the checkpoint has {len(labels)} labels")
    predicted = probs.argmax(-1).tolist()
    has_label = any(lab is not None for lab in seqs.labels)
    with output.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "predicted", *(["label"] if has_label else []), *(f"p_{lab}" for lab in labels)])
        for i, k in enumerate(predicted):
            writer.writerow([seqs.ids[i], labels[k], *([seqs.labels[i] or ""] if has_label else []),
                             *(f"{v:.6g}" for v in probs[i].tolist())])
    return len(predicted)


def _forecast(p: Predictor, data: Path, output: Path, *, batch_size: int, last_only: bool) -> int:
    from ..data.timeseries import read_series_csv

    info = p.info
    if "columns" not in info:
        raise ValueError(f"ssm-predict: {p.path} has no data description (data_info); retrain with this version")
    table = read_series_csv(data, date_column=info["date_column"], date_format=info["date_format"],
                            missing=info.get("missing", "error"))
    absent = [c for c in info["columns"] if c not in table.columns]
    if absent:
        raise ValueError(f"ssm-predict: {data} has no column(s) {absent}; the checkpoint {p.path} expects the "
                         f"columns {info['columns']} (and a {info['date_column']!r} date column)")
    lag, horizon = info["lag"], info["horizon"]
    n = len(table.values)
    if n < lag:
        raise ValueError(f"ssm-predict: {data} has {n} rows, fewer than the checkpoint's lag={lag}")
    columns, outs = info["columns"], info["output_columns"]
    values = table.values[:, [table.columns.index(c) for c in columns]]  # (n, C)
    mean, std = np.asarray(info["mean"]), np.asarray(info["std"])
    scaled = torch.from_numpy((values - mean) / std).float()
    starts = [n - lag] if last_only else list(range(n - lag + 1))
    x = torch.stack([scaled[s : s + lag] for s in starts])  # (W, lag, C)
    forecast = p.outputs(x, batch_size=batch_size, description="forecast")[:, -horizon:]  # (W, horizon, d_out)
    out_j = [columns.index(c) for c in outs]
    forecast = forecast.double().numpy() * std[out_j] + mean[out_j]  # data units
    step = np.timedelta64(int(info.get("step_seconds") or np.median(np.diff(table.dates).astype(np.int64))), "s")
    rows = 0
    with output.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["window", "origin", "date", "step", *outs, *(f"actual_{c}" for c in outs)])
        for w, s in enumerate(starts):
            origin = table.dates[s + lag - 1]
            for h in range(horizon):
                row = s + lag + h
                when = table.dates[row] if row < n else table.dates[-1] + (row - n + 1) * step
                actual = [f"{v:.6g}" for v in values[row, out_j]] if row < n else [""] * len(outs)
                writer.writerow([s, _iso(origin), _iso(when), h + 1, *(f"{v:.6g}" for v in forecast[w, h]), *actual])
                rows += 1
    return rows


def _iso(when: np.datetime64) -> str:
    return str(when).replace("T", " ")


def _raw_outputs(p: Predictor, data: Path, output: Path, *, batch_size: int) -> int:
    if data.suffix.lower() != ".npz":
        raise ValueError(f"ssm-predict: for a {p.kind} checkpoint give data=FILE.npz with an array x; got {data}")
    with np.load(data, allow_pickle=False) as z:
        if "x" not in z.files:
            raise ValueError(f"ssm-predict: {data} has no array 'x' (it has {z.files})")
        x = torch.from_numpy(z["x"])
    d_input = p.config["model"].get("d_input")
    if x.is_floating_point():
        x = x.float()
        if x.dim() == 2:
            x = x[..., None]
        if d_input and x.shape[-1] != d_input:
            raise ValueError(f"ssm-predict: {data} x has {x.shape[-1]} channels, the checkpoint expects d_input={d_input}")
    out = p.outputs(x, batch_size=batch_size)
    if output.suffix.lower() == ".npz":
        np.savez(output, output=out.numpy())
    elif out.dim() == 2:
        with output.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["id", *(f"output_{j}" for j in range(out.shape[1]))])
            for i, row in enumerate(out.tolist()):
                writer.writerow([i, *(f"{v:.6g}" for v in row)])
    else:
        raise ValueError(f"ssm-predict: per-step outputs {tuple(out.shape)} need output=FILE.npz")
    return len(out)
