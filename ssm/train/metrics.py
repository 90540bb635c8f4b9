"""Test-time reports users read: written to the run directory when ``ssm-train`` tests a model.

- ``TestSummary``: the test metrics into ``summary.json`` (beside what ``RunSummary`` wrote).
- ``ClassificationReport``: ``confusion_matrix.csv`` and ``confusion_matrix.png`` with the label
  names (torchmetrics' ConfusionMatrix over the test split).
- ``ForecastReport``: MSE and MAE of the model on the test windows in standardised units and in the
  data's units, next to two baselines on the same windows: last value (the last lag step repeated)
  and seasonal naive (the last season of the lag window repeated; the season from ``task.season``
  or the data's time step, see ``season_length``), so a user sees at once whether the model beats
  naive; and ``forecast.png``: test windows spread over the test range, in data units, dates on the
  x-axis where the data has dates.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import lightning as L
import torch
import torchmetrics


def update_summary(output_dir: str | Path, key: str, values: dict) -> None:
    """Merge ``values`` under ``key`` into ``output_dir/summary.json`` (created if absent)."""
    path = Path(output_dir) / "summary.json"
    summary = json.loads(path.read_text()) if path.is_file() else {}
    summary.setdefault(key, {}).update(values)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=1))
    tmp.replace(path)


def _test_split(trainer):
    datamodule = trainer.datamodule
    splits = getattr(datamodule, "splits", {}) if datamodule is not None else {}
    return splits.get("test")


class TestSummary(L.Callback):
    """``summary.json["test"]``: the logged test metrics of the tested checkpoint."""

    def __init__(self, output_dir: str):
        self.output_dir = Path(output_dir)

    def on_test_end(self, trainer, pl_module):
        if trainer.global_rank != 0:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()
                   if k.startswith("test/") and getattr(v, "numel", lambda: 1)() == 1}
        update_summary(self.output_dir, "test", metrics)


def _batch(batch):
    x, y, lengths = (*batch, None) if len(batch) == 2 else batch
    return x, y, lengths


class ClassificationReport(L.Callback):
    """Confusion matrix of the test split (rows: true class, columns: predicted) as CSV and PNG."""

    def __init__(self, output_dir: str, n_classes: int):
        self.output_dir, self.n_classes = Path(output_dir), n_classes
        self._matrix: torchmetrics.ConfusionMatrix | None = None

    def on_test_epoch_start(self, trainer, pl_module):
        self._matrix = torchmetrics.ConfusionMatrix(task="multiclass", num_classes=self.n_classes).to(pl_module.device)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        x, y, lengths = _batch(batch)
        with torch.no_grad():
            logits = pl_module(x, lengths)
        self._matrix.update(logits.argmax(-1), y)

    def on_test_end(self, trainer, pl_module):
        if self._matrix is None:
            return
        matrix = self._matrix.compute().cpu().long()  # (C, C), summed over processes: every rank takes part
        if trainer.global_rank != 0:
            return
        test = _test_split(trainer)
        labels = list(getattr(test, "labels", None) or range(self.n_classes))
        labels = [str(v) for v in labels]
        self.output_dir.mkdir(parents=True, exist_ok=True)
        with (self.output_dir / "confusion_matrix.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["true \\ predicted", *labels])
            for name, row in zip(labels, matrix.tolist()):
                writer.writerow([name, *row])
        plot_confusion(matrix, labels, self.output_dir / "confusion_matrix.png")
        update_summary(self.output_dir, "test", {"confusion_matrix": matrix.tolist(), "labels": labels})


def plot_confusion(matrix: torch.Tensor, labels: list[str], out_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    C = len(labels)
    size = min(max(3.5, 0.45 * C + 2), 14)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(matrix.numpy(), cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(C), labels, rotation=45 if C > 4 else 0, ha="right" if C > 4 else "center")
    ax.set_yticks(range(C), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = matrix.diag().sum().item() / max(matrix.sum().item(), 1)
    ax.set_title(f"test confusion matrix\n{matrix.sum().item()} cases, accuracy {accuracy:.3f}")
    if C <= 30:
        peak = matrix.max().item()
        for i in range(C):
            for j in range(C):
                ax.text(j, i, str(matrix[i, j].item()), ha="center", va="center", fontsize=8,
                        color="white" if matrix[i, j] > peak / 2 else "black")
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)


def season_length(step_seconds: int | None) -> int | None:
    """The usual season of data sampled every ``step_seconds``: a day for sub-daily steps (hourly:
    24, 15 minutes: 96), a week for daily data (7), a year for weekly (52) and monthly (12) data;
    None when the step is unknown or none of these."""
    if not step_seconds or step_seconds <= 0:
        return None
    day = 86400
    if step_seconds < day and day % step_seconds == 0:
        return day // step_seconds
    if step_seconds == day:
        return 7
    if step_seconds == 7 * day:
        return 52
    if 28 * day <= step_seconds <= 31 * day:
        return 12
    return None


def naive_forecasts(x: torch.Tensor, horizon: int, d_output: int, season: int | None):
    """Last-value and seasonal-naive forecasts (B, horizon, d_output) from lag windows ``x``
    (B, lag, C) whose last ``d_output`` channels are the forecast variables (seasonal: None when
    the season is unknown or longer than the lag)."""
    target = x[..., -d_output:]  # (B, lag, d_output)
    last = target[:, -1:].expand(-1, horizon, -1)
    if season is None or season > x.shape[1]:
        return last, None
    idx = x.shape[1] - season + torch.arange(horizon, device=x.device) % season  # (horizon,)
    return last, target[:, idx]


class ForecastReport(L.Callback):
    """Test-split errors of the model and the naive baselines in both units, and ``forecast.png``."""

    def __init__(self, output_dir: str, horizon: int, season: int | None = None, n_windows: int = 4):
        self.output_dir, self.horizon, self.season, self.n_windows = Path(output_dir), horizon, season, n_windows
        self._sums: dict | None = None

    def _season(self, dataset) -> int | None:
        if self.season is not None:
            return self.season
        return getattr(dataset, "period", None) or season_length(getattr(dataset, "step_seconds", None))

    def on_test_epoch_start(self, trainer, pl_module):
        self._sums = {}
        self._count = 0

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        x, y, _ = _batch(batch)
        dataset = _test_split(trainer)
        with torch.no_grad():
            forecast = pl_module(x)[:, -self.horizon :].float()  # (B, H, D)
        last, seasonal = naive_forecasts(x.float(), self.horizon, y.shape[-1], self._season(dataset))
        inverse = getattr(dataset, "inverse_transform", None)
        for name, guess in (("model", forecast), ("last_value", last), ("seasonal_naive", seasonal)):
            if guess is None:
                continue
            pairs = [("std", guess, y)] + ([("data", inverse(guess), inverse(y))] if callable(inverse) else [])
            for unit, a, b in pairs:
                err = (a - b).double()
                sums = self._sums.setdefault(f"{name}/{unit}", [0.0, 0.0])
                sums[0] += err.pow(2).sum().item()
                sums[1] += err.abs().sum().item()
        self._count += y.numel()

    def on_test_end(self, trainer, pl_module):
        if not self._sums:
            return
        keys = sorted(self._sums)
        totals = torch.tensor([v for k in keys for v in self._sums[k]] + [self._count], dtype=torch.float64,
                              device=pl_module.device)
        totals = trainer.strategy.reduce(totals, reduce_op="sum").cpu().tolist()  # every rank takes part
        if trainer.global_rank != 0:
            return
        count, results = totals[-1], {}
        for i, key in enumerate(keys):
            name, unit = key.split("/")
            results[f"{name}/mse_{unit}"] = totals[2 * i] / count
            results[f"{name}/mae_{unit}"] = totals[2 * i + 1] / count
        dataset = _test_split(trainer)
        results["season"] = self._season(dataset)
        update_summary(self.output_dir, "forecast_test", results)
        print(format_forecast_table(results), flush=True)
        self.plot(trainer, pl_module)

    def on_fit_end(self, trainer, pl_module):
        if trainer.global_rank == 0:  # a run that is not tested still gets its picture
            self.plot(trainer, pl_module)

    def plot(self, trainer, pl_module):
        datamodule = trainer.datamodule
        if datamodule is None:
            return
        dataset = _test_split(trainer)
        if dataset is None:
            try:
                dataset = datamodule.splits["test"] = datamodule.dataset_factory(split="test")
            except Exception:  # no test split: the plot is skipped, nothing else depends on it
                return
        n = len(dataset)
        picks = sorted({round(k * (n - 1) / max(self.n_windows - 1, 1)) for k in range(self.n_windows)})
        items = [dataset[i] for i in picks]
        x = torch.stack([it[0] for it in items]).to(pl_module.device)
        y = torch.stack([it[1] for it in items])
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            forecast = pl_module(x)[:, -self.horizon :].float().cpu()
        pl_module.train(was_training)
        plot_forecast_windows(dataset, picks, x.cpu(), y, forecast, self.output_dir / "forecast.png")


def format_forecast_table(results: dict) -> str:
    lines = ["test forecasts (same windows):", f"  {'':16s} {'MSE std':>10s} {'MAE std':>10s} {'MSE data':>12s} {'MAE data':>12s}"]
    for name in ("model", "last_value", "seasonal_naive"):
        if f"{name}/mse_std" not in results:
            continue
        cells = [results.get(f"{name}/{m}") for m in ("mse_std", "mae_std", "mse_data", "mae_data")]
        shown = [f"{v:10.4g}" if v is not None else f"{'-':>10s}" for v in cells[:2]]
        shown += [f"{v:12.4g}" if v is not None else f"{'-':>12s}" for v in cells[2:]]
        lines.append(f"  {name:16s} " + " ".join(shown))
    if results.get("season") is None:
        lines.append("  (seasonal naive: no season; set task.season)")
    return "\n".join(lines)


def plot_forecast_windows(dataset, picks: list[int], x: torch.Tensor, y: torch.Tensor, forecast: torch.Tensor,
                          out_png: Path) -> None:
    """Top: the test range of the forecast variable (last channel) with the picked windows'
    forecasts on it; below, one panel per window (lag tail, truth, forecast). Data units and
    dates when ``dataset`` has ``inverse_transform`` and ``dates``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    inverse = getattr(dataset, "inverse_transform", None)
    if callable(inverse):
        x, y, forecast = inverse(x.double()), inverse(y.double()), inverse(forecast.double())
    lag, H = x.shape[1], y.shape[1]
    dates = getattr(dataset, "dates", None)
    has_dates = dates is not None and len(dates) >= picks[-1] + lag + H
    axis = (lambda i, a, b: dates[i + a : i + b].astype("datetime64[s]").astype(object)) if has_dates else \
        (lambda i, a, b: np.arange(i + a, i + b))
    n = len(picks)
    fig = plt.figure(figsize=(11, 2.6 + 2.0 * ((n + 1) // 2)))
    grid = fig.add_gridspec(1 + (n + 1) // 2, 2)
    top = fig.add_subplot(grid[0, :])
    values = getattr(dataset, "values", None)
    if values is not None and has_dates:
        series = values[:, -1].double().numpy()  # the target is the last variable
        if hasattr(dataset, "mean") and callable(inverse):
            series = series * dataset.std[-1] + dataset.mean[-1]
        top.plot(axis(0, 0, len(series)), series, color="0.6", lw=0.8, label="test range (truth)")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, i in enumerate(picks):
        top.plot(axis(i, lag, lag + H), forecast[k, :, -1].numpy(), color=colors[(k + 1) % len(colors)], lw=1.5,
                 label=f"forecast from window {i}")
    top.set_title(f"test split: {len(dataset)} windows, {n} forecasts shown (lag {lag}, horizon {H})")
    top.legend(fontsize=7, loc="upper left", ncol=2)
    for k, i in enumerate(picks):
        ax = fig.add_subplot(grid[1 + k // 2, k % 2])
        tail = min(lag, 3 * H)
        ax.plot(axis(i, lag - tail, lag), x[k, -tail:, -1].numpy(), color="0.4", label="lag window")
        ax.plot(axis(i, lag, lag + H), y[k, :, -1].numpy(), color="tab:green", label="truth")
        ax.plot(axis(i, lag, lag + H), forecast[k, :, -1].numpy(), color="tab:red", label="forecast")
        ax.set_title(f"window {i}", fontsize=9)
        ax.tick_params(labelsize=7)
        if k == 0:
            ax.legend(fontsize=7, loc="upper left")
    if has_dates:  # compact date labels on every panel (autofmt_xdate would hide the top panel's)
        import matplotlib.dates as mdates

        for ax in fig.axes:
            locator = mdates.AutoDateLocator()
            ax.xaxis.set_major_locator(locator)
            ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
