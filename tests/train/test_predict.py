"""Your own data end to end: ``ssm-train data=classify`` on a generated ``.ts`` file and
``experiment=forecast-csv-s4`` on a generated CSV (one run each per module), then ``ssm-predict``,
checked against the model's own forward and the inverse standardisation."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import ssm
from ssm.data.classify import ClassificationFiles, read_labelled
from ssm.cli.predict import main as predict_main
from ssm.cli.predict import parse_args

from helpers import ROUNDOFF, RTOL, SIX_DIGITS

REPO = Path(__file__).resolve().parents[2]
TINY = ["model.d_model=16", "model.n_layers=1", "model.layer.d_state=8", "trainer.max_epochs=2"]


def ssm_train(args, run_dir, log):
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    with open(log, "w") as out:
        done = subprocess.run([sys.executable, "-m", "ssm.train.cli", *args, f"hydra.run.dir={run_dir}"],
                              stdout=out, stderr=subprocess.STDOUT, env=env, cwd=run_dir.parent, timeout=600)
    assert done.returncode == 0, Path(log).read_text()[-3000:]


def write_ts(path, n, rng, *, dims=1):
    lines = ["@problemName shapes", "@univariate " + ("true" if dims == 1 else "false"),
             *([f"@dimensions {dims}"] if dims > 1 else []), "@equalLength false", "@classLabel true sine square ramp", "@data"]
    raw = []
    for i in range(n):
        label = ("sine", "square", "ramp")[i % 3]
        t = np.arange(int(rng.integers(24, 33)))
        wave = np.sin(t / 3 + rng.uniform(0, 6))
        wave = np.sign(wave) if label == "square" else (t / len(t) * 2 - 1) if label == "ramp" else wave
        case = [wave + 0.1 * rng.normal(size=len(t)) for _ in range(dims)]
        raw.append(np.stack(case, 1))
        lines.append(":".join(",".join(f"{v:.5f}" for v in c) for c in case) + f":{label}")
    path.write_text("\n".join(lines) + "\n")
    return raw


@pytest.fixture(scope="module")
def classify_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("classify")
    rng = np.random.default_rng(0)
    write_ts(root / "train.ts", 60, rng)
    write_ts(root / "test.ts", 15, rng)
    run = root / "run"
    ssm_train(["data=classify", f"data.train={root / 'train.ts'}", f"data.test={root / 'test.ts'}", *TINY],
              run, root / "train.log")
    return root, run


def test_classification_predictions_are_the_models_argmax(classify_run):
    root, run = classify_run
    ckpt = run / "checkpoints" / "best.ckpt"
    out = root / "pred.csv"
    assert predict_main([f"checkpoint={ckpt}", f"data={root / 'test.ts'}", f"output={out}", "batch_size=4"]) == 0
    rows = list(csv.DictReader(out.open()))
    test = read_labelled(root / "test.ts")
    assert len(rows) == len(test.values) == 15
    assert list(rows[0]) == ["id", "predicted", "label", "p_sine", "p_square", "p_ramp"]  # the declared order
    # the model's own forward on the test inputs, standardised with train-split statistics computed here
    train = ClassificationFiles("train", train=root / "train.ts", test=root / "test.ts", seed=0)
    lengths = torch.tensor([len(v) for v in test.values])
    x = torch.zeros(len(test.values), int(lengths.max()), 1)
    for i, v in enumerate(test.values):
        x[i, : len(v)] = torch.from_numpy((v - train.mean) / train.std).float()
    model = ssm.load(ckpt).eval()
    with torch.no_grad():
        probs = torch.softmax(model(x, lengths=lengths), -1)
    labels = ["sine", "square", "ramp"]
    assert [r["predicted"] for r in rows] == [labels[k] for k in probs.argmax(-1).tolist()]
    got = torch.tensor([[float(r[f"p_{lab}"]) for lab in labels] for r in rows])
    torch.testing.assert_close(got, probs, rtol=SIX_DIGITS, atol=ROUNDOFF[torch.float32])  # printed, and computed in other batches
    assert [r["label"] for r in rows] == test.labels


def test_label_mapping_round_trips_through_the_checkpoint_as_plain_types(classify_run):
    _, run = classify_run
    info = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["data_info"]
    assert info["labels"] == ["sine", "square", "ramp"] and info["d_input"] == 1 and info["d_output"] == 3

    def plain(v):
        return isinstance(v, (str, int, float, bool, type(None))) or (
            isinstance(v, (list, tuple)) and all(map(plain, v))) or (
            isinstance(v, dict) and all(isinstance(k, str) and plain(x) for k, x in v.items()))

    assert plain(info), info
    config = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["hyper_parameters"]["config"]
    assert config["data"]["d_output"] == 3 and config["task"]["n_classes"] == 3  # inferred, not hand-set


def test_predict_refuses_data_with_other_channels(classify_run, tmp_path, capsys):
    root, run = classify_run
    write_ts(tmp_path / "two.ts", 6, np.random.default_rng(1), dims=2)
    code = predict_main([f"checkpoint={run / 'checkpoints' / 'best.ckpt'}", f"data={tmp_path / 'two.ts'}",
                         f"output={tmp_path / 'p.csv'}"])
    err = capsys.readouterr().err
    assert code == 2 and "has 2 channels per step, but the checkpoint" in err and "expects d_input=1" in err
    assert not (tmp_path / "p.csv").exists()


def test_parse_args_names_bad_arguments():
    with pytest.raises(ValueError, match="missing required argument `checkpoint`"):
        parse_args(["data=x", "output=y"])
    with pytest.raises(ValueError, match="unknown argument `ckpt`"):
        parse_args(["ckpt=x"])
    with pytest.raises(ValueError, match="`batch_size` must be a positive integer"):
        parse_args(["checkpoint=a", "data=b", "output=c", "batch_size=0"])


def write_series(path, n, *, trend=0.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    value = 10 + 3 * np.sin(2 * np.pi * t / 24) + trend * t + 0.2 * rng.normal(size=n)
    dates = np.datetime64("2021-03-01T00:00") + t * np.timedelta64(1, "h")
    path.write_text("date,load\n" + "".join(f"{str(d).replace('T', ' ')},{v:.5f}\n" for d, v in zip(dates, value)))
    return dates, value


@pytest.fixture(scope="module")
def forecast_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("forecast")
    dates, value = write_series(root / "series.csv", 400)
    run = root / "run"
    ssm_train(["experiment=forecast-csv-s4", f"data.dataset.path={root / 'series.csv'}", "data.dataset.target=load",
               "data.dataset.lag=48", "data.dataset.horizon=12", "data.batch_size=16", *TINY], run, root / "train.log")
    return root, run, dates, value


def test_forecast_predictions_in_data_units_with_timestamps(forecast_run):
    root, run, dates, value = forecast_run
    ckpt = run / "checkpoints" / "best.ckpt"
    out = root / "forecast.csv"
    assert predict_main([f"checkpoint={ckpt}", f"data={root / 'series.csv'}", f"output={out}"]) == 0
    rows = list(csv.DictReader(out.open()))
    lag, horizon, n = 48, 12, len(value)
    assert len(rows) == (n - lag + 1) * horizon
    # the model's output on standardised windows (train statistics: the first 70% of rows), inverted here
    train = value[: int(0.7 * n)]
    mean, std = train.mean(), train.std()
    starts = [0, 100, n - lag]
    x = torch.tensor(np.stack([(value[s : s + lag] - mean) / std for s in starts]), dtype=torch.float32)[..., None]
    model = ssm.load(ckpt).eval()
    with torch.no_grad():
        out_std = model(torch.cat([x, torch.zeros(len(starts), horizon, 1)], 1))[:, -horizon:, 0]  # pad_horizon
    expect = out_std.double().numpy() * std + mean
    by_window = {}
    for r in rows:
        by_window.setdefault(int(r["window"]), []).append(r)
    for k, s in enumerate(starts):
        got = by_window[s]
        np.testing.assert_allclose([float(r["load"]) for r in got], expect[k], rtol=SIX_DIGITS, atol=0)
        assert got[0]["origin"] == str(dates[s + lag - 1]).replace("T", " ") + ":00"
        assert [int(r["step"]) for r in got] == list(range(1, horizon + 1))
    first = by_window[0]
    assert first[0]["date"] == str(dates[lag]).replace("T", " ") + ":00"
    # the series' value as written with 5 decimals (5e-7 of it) and printed again
    np.testing.assert_allclose(float(first[0]["actual_load"]), value[lag], rtol=SIX_DIGITS, atol=0)
    last = by_window[n - lag]  # past the end of the file: hourly steps continue
    assert last[-1]["date"] == str(dates[-1] + horizon * np.timedelta64(1, "h")).replace("T", " ") + ":00"
    assert last[-1]["actual_load"] == ""
    # last_only: that window alone
    assert predict_main([f"checkpoint={ckpt}", f"data={root / 'series.csv'}", f"output={root / 'last.csv'}",
                         "last_only=true"]) == 0
    last_rows = list(csv.DictReader((root / "last.csv").open()))
    assert [r["load"] for r in last_rows] == [r["load"] for r in last]


def test_forecast_predict_refuses_a_csv_without_the_columns(forecast_run, tmp_path, capsys):
    root, run, _, _ = forecast_run
    (tmp_path / "other.csv").write_text("date,temp\n2021-01-01 00:00:00,1\n")
    code = predict_main([f"checkpoint={run / 'checkpoints' / 'best.ckpt'}", f"data={tmp_path / 'other.csv'}",
                         f"output={tmp_path / 'f.csv'}"])
    assert code == 2 and "expects the columns ['load']" in capsys.readouterr().err


def _is_png(path):
    from PIL import Image

    with Image.open(path) as image:
        image.verify()
        return image.format == "PNG" and image.size[0] > 200 and image.size[1] > 200


def test_classification_run_writes_confusion_matrix_and_test_summary(classify_run):
    import json

    _, run = classify_run
    summary = json.loads((run / "summary.json").read_text())["test"]
    rows = list(csv.reader((run / "confusion_matrix.csv").open()))
    assert rows[0] == ["true \\ predicted", "sine", "square", "ramp"] and [r[0] for r in rows[1:]] == ["sine", "square", "ramp"]
    matrix = np.array([[int(v) for v in r[1:]] for r in rows[1:]])
    assert matrix.sum() == 15 and matrix.sum(1).tolist() == [5, 5, 5]  # one row per true class of test.ts
    assert np.trace(matrix) / matrix.sum() == pytest.approx(summary["test/accuracy"], rel=0, abs=ROUNDOFF[torch.float32])
    assert 0 <= summary["test/macro_f1"] <= 1 and summary["confusion_matrix"] == matrix.tolist()
    assert _is_png(run / "confusion_matrix.png")


def test_forecast_run_reports_both_units_against_naive_baselines(forecast_run):
    import json

    _, run, _, value = forecast_run
    summary = json.loads((run / "summary.json").read_text())
    report = summary["forecast_test"]
    assert report["model/mse_std"] == pytest.approx(summary["test"]["test/mse"], rel=ROUNDOFF[torch.float32])  # summed in another order
    # last value and seasonal naive (hourly data: a 24-step season) on the test windows, computed here
    n, lag, horizon = len(value), 48, 12
    start = n - int(0.2 * n) - lag  # the test split's first row (its lag context before the border)
    windows = [value[s : s + lag + horizon] for s in range(start, n - lag - horizon + 1)]
    truth = np.stack([w[lag:] for w in windows])
    last = np.stack([np.full(horizon, w[lag - 1]) for w in windows])
    seasonal = np.stack([w[lag - 24 + np.arange(horizon) % 24] for w in windows])
    # the report works on float32 data, read from the CSV's 5 decimals; these errors are float64
    tol = RTOL[torch.float32]
    assert report["season"] == 24
    assert report["last_value/mse_data"] == pytest.approx(((truth - last) ** 2).mean(), rel=tol)
    assert report["last_value/mae_data"] == pytest.approx(np.abs(truth - last).mean(), rel=tol)
    assert report["seasonal_naive/mse_data"] == pytest.approx(((truth - seasonal) ** 2).mean(), rel=tol)
    std = value[: int(0.7 * n)].std()
    assert report["last_value/mse_std"] == pytest.approx(((truth - last) ** 2).mean() / std**2, rel=tol)
    assert report["model/mse_data"] == pytest.approx(report["model/mse_std"] * std**2, rel=tol)
    assert _is_png(run / "forecast.png")


def test_season_length_and_naive_forecasts():
    from ssm.train.metrics import naive_forecasts, season_length

    assert [season_length(s) for s in (3600, 900, 86400, 7 * 86400, 30 * 86400, 7, None)] == [24, 96, 7, 52, 12, None, None]
    x = torch.arange(10.0).reshape(1, 10, 1)
    last, seasonal = naive_forecasts(x, 5, 1, 4)
    assert last[0, :, 0].tolist() == [9.0] * 5 and seasonal[0, :, 0].tolist() == [6.0, 7.0, 8.0, 9.0, 6.0]
    assert naive_forecasts(x, 5, 1, 12)[1] is None  # a season longer than the lag


def _checkpoint_of(compose_cfg, tmp_path, overrides):
    """A checkpoint file of a freshly built (untrained) module, in ssm-train's layout."""
    from omegaconf import OmegaConf

    from ssm.train.cli import build

    cfg = compose_cfg(["callbacks.progress=null", *overrides])
    _, module, _ = build(cfg)
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": module.state_dict(),
                "hyper_parameters": {"config": OmegaConf.to_container(cfg, resolve=True)}}, path)
    return path, module


def test_predict_builtin_classification_and_lm_checkpoints_on_npz(compose_cfg, tmp_path):
    torch.manual_seed(0)
    path, module = _checkpoint_of(compose_cfg, tmp_path, ["model.d_model=8", "model.n_layers=1", "model.layer.d_state=4"])
    x = torch.randn(5, 64, 1)
    np.savez(tmp_path / "x.npz", x=x.numpy())
    assert predict_main([f"checkpoint={path}", f"data={tmp_path / 'x.npz'}", f"output={tmp_path / 'p.csv'}"]) == 0
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    with torch.no_grad():
        expect = module.model.eval()(x).argmax(-1).tolist()
    assert [int(r["predicted"]) for r in rows] == expect and len(rows[0]) == 2 + 10  # id, predicted, p_0..p_9
    lm, lm_module = _checkpoint_of(compose_cfg, tmp_path, ["experiment=sine-lm", "model.d_model=8", "model.n_layers=1",
                                                           "model.layer.d_state=4"])
    tokens = torch.randint(0, 256, (3, 32))
    np.savez(tmp_path / "t.npz", x=tokens.numpy())
    assert predict_main([f"checkpoint={lm}", f"data={tmp_path / 't.npz'}", f"output={tmp_path / 'o.npz'}"]) == 0
    with torch.no_grad():
        logits = lm_module.model.eval()(tokens)
    np.testing.assert_allclose(np.load(tmp_path / "o.npz")["output"], logits.numpy(), rtol=ROUNDOFF[torch.float32], atol=ROUNDOFF[torch.float32])


def _write_format(kind, path_dir, rng, n):
    """(train/test path, channels, labels) of a small labelled set in format ``kind``."""
    labels = ["neg", "pos"]
    if kind == "npz":
        x = rng.normal(size=(n, 20, 3))
        y = np.array([labels[i % 2] for i in range(n)])
        x[y == "pos"] += 1.0
        np.savez(path_dir / "d.npz", x=x, y=y)
        return path_dir / "d.npz", 3, labels, []
    if kind == "csv-wide":
        rows = ["label," + ",".join(f"t{j}" for j in range(16))]
        for i in range(n):
            lab = labels[i % 2]
            rows.append(lab + "," + ",".join(f"{v + (lab == 'pos'):.3f}" for v in rng.normal(size=16)))
        (path_dir / "d.csv").write_text("\n".join(rows) + "\n")
        return path_dir / "d.csv", 1, labels, []
    if kind == "csv-long":
        rows = ["id,time,a,b,label"]
        for i in range(n):
            lab = labels[i % 2]
            rows += [f"c{i},{t},{rng.normal() + (lab == 'pos'):.3f},{rng.normal():.3f},{lab}" for t in range(12)]
        (path_dir / "d.csv").write_text("\n".join(rows) + "\n")
        return path_dir / "d.csv", 2, labels, ["data.id_column=id"]
    root = path_dir / "wavs"  # WAV class folders
    from ssm.data.audio import write_wav

    for i in range(n):
        lab = labels[i % 2]
        (root / lab).mkdir(parents=True, exist_ok=True)
        t = torch.arange(400) / 8000
        write_wav(root / lab / f"{i}.wav", 0.5 * torch.sin(2 * torch.pi * (300.0 if lab == "neg" else 1200.0) * t)[None], 8000)
    return root, 1, labels, ["data.rate=8000"]


@pytest.mark.parametrize("kind", ["npz", "csv-wide", "csv-long", "wav"])
def test_classify_infers_sizes_and_stores_labels_for_each_format(compose_cfg, tmp_path, kind):
    from ssm.train.cli import train

    path, channels, labels, extra = _write_format(kind, tmp_path, np.random.default_rng(0), 20)
    cfg = compose_cfg(["data=classify", f"data.train={path}", f"data.test={path}", "data.val_fraction=0.2",
                       *extra, *TINY[:3], "trainer.max_epochs=1", "callbacks.progress=null"])
    train(cfg)
    assert (cfg.data.d_input, cfg.data.d_output, cfg.task.n_classes) == (channels, 2, 2)
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    info = torch.load(ckpt, weights_only=False)["data_info"]
    assert info["labels"] == labels and info["d_input"] == channels
    out = tmp_path / "p.csv"
    assert predict_main([f"checkpoint={ckpt}", f"data={path}", f"output={out}"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 20 and {r["predicted"] for r in rows} <= set(labels) and [r["label"] for r in rows].count("pos") == 10
