"""Forecasting on your own CSV: the generic experiments compose and run, and reversible instance
normalisation (task.instance_norm=revin) undoes itself and makes the forecast follow a level shift."""

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import ROUNDOFF, RTOL, SIGNAL, rel_err

from ssm.train.cli import train
from ssm.train.tasks import Forecasting, run_model

REPO = Path(__file__).resolve().parents[2]


class _Copy(torch.nn.Module):  # per-step outputs = inputs: the forecast is whatever prepare made of x
    def forward(self, x):
        return x


def test_revin_restores_and_is_shift_and_scale_equivariant():
    torch.manual_seed(0)
    x = torch.randn(3, 20, 2)
    task = Forecasting(horizon=4, pad_horizon=False, instance_norm="revin")
    assert rel_err(run_model(task, _Copy(), x), x) <= ROUNDOFF[torch.float32]  # restore inverts prepare
    model = torch.nn.Sequential(torch.nn.Flatten(1), torch.nn.Linear(40, 8), torch.nn.Unflatten(1, (4, 2)))
    out = run_model(task, model, x)
    shifted = run_model(task, model, 5.0 * x + 100.0)  # a level and scale the model never saw
    assert rel_err(shifted, 5.0 * out + 100.0) <= RTOL[torch.float32]  # normalising values near 100 cancels digits
    plain = Forecasting(horizon=4, pad_horizon=False)
    assert (run_model(plain, model, 5.0 * x + 100.0) - (5.0 * run_model(plain, model, x) + 100.0)).abs().max() > SIGNAL
    with pytest.raises(ValueError, match="instance_norm"):
        Forecasting(horizon=4, instance_norm="batch")


def _series(path, n=300):
    t = np.arange(n)
    value = 0.01 * t + np.sin(2 * np.pi * t / 24)
    dates = np.datetime64("2022-01-01T00:00") + t * np.timedelta64(1, "h")
    path.write_text("date,y\n" + "".join(f"{str(d).replace('T', ' ')},{v:.5f}\n" for d, v in zip(dates, value, strict=True)))


@pytest.mark.parametrize("experiment, extra", [
    ("forecast-csv", ["model.d_model=8", "model.d_state=8", "model.n_kernels=2"]),
    ("forecast-csv-s4", ["model.d_model=8", "model.n_layers=1", "model.layer.d_state=8", "task.instance_norm=revin"]),
])
def test_forecast_csv_experiments_run(compose_cfg, tmp_path, experiment, extra):
    _series(tmp_path / "s.csv")
    results = train(compose_cfg([f"experiment={experiment}", f"data.dataset.path={tmp_path / 's.csv'}",
                                 "data.dataset.target=y", "data.dataset.lag=48", "data.dataset.horizon=12",
                                 "debug=fast", *extra]))
    assert results and all(np.isfinite(v) for v in results.values())
    assert (tmp_path / "forecast.png").stat().st_size > 5000


@pytest.mark.slow
def test_revin_rescues_s4d_on_a_trend(compose_cfg, tmp_path):
    """The generated trend + season series of experiments/forecasting/trend_csv.py: its test range
    lies above the training range. Without instance normalisation S4D's test MSE is worse than
    repeating the last value; with it, better than seasonal naive (README numbers: 15.08 vs 0.110)."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("trend_csv", REPO / "experiments/forecasting/trend_csv.py")
    trend_csv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(trend_csv)
    trend_csv.main(str(tmp_path / "trend.csv"))
    reports = {}
    for norm in ("none", "revin"):
        out = tmp_path / norm
        cfg = compose_cfg(["experiment=forecast-csv-s4", f"data.dataset.path={tmp_path / 'trend.csv'}",
                           "data.dataset.target=y", "data.dataset.lag=96", "data.dataset.horizon=24",
                           "model.d_model=32", "trainer.max_epochs=5", f"task.instance_norm={norm}",
                           "callbacks.progress=null", f"output_dir={out}"])
        train(cfg)
        reports[norm] = json.loads((out / "summary.json").read_text())["forecast_test"]
    none, revin = reports["none"], reports["revin"]
    assert none["model/mse_data"] > none["last_value/mse_data"]
    assert revin["model/mse_data"] < revin["seasonal_naive/mse_data"] < revin["last_value/mse_data"]
    assert revin["model/mse_data"] < 0.1 * none["model/mse_data"]
