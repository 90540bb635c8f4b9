"""Informer-protocol CSV loaders: borders, train-only scaling, window alignment, feature modes,
error messages; and the forecasting configs compose, instantiate and read a generated file."""

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import ROUNDOFF
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from ssm.data.timeseries import CsvSeries, InformerSeries, read_series_csv
from ssm.train.cli import build, config_dir

# elementwise: float32 values read from files against the test's own float64 arithmetic, rounded
CLOSE32 = {"rtol": ROUNDOFF[torch.float32], "atol": ROUNDOFF[torch.float32]}

ETT_COLUMNS = ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")
HOUR_ENDS = (8640, 11520, 14400)  # 12, 16, 20 months of 30 days x 24 h
MINUTE_ENDS = (34560, 46080, 57600)  # the same in 15-minute steps


def make_values(n_rows: int, n_cols: int, seed: int = 0) -> np.ndarray:
    """Trend + daily cycle + noise, on a 0.001 grid so that the CSV text is exact; the trend makes
    each split's statistics differ from the training part's."""
    rng = np.random.default_rng(seed)
    r = np.arange(n_rows)[:, None]
    j = np.arange(n_cols)[None, :]
    x = j + 2e-4 * r * (j + 1) + np.sin(2 * np.pi * r / 24 + j) + 0.3 * rng.standard_normal((n_rows, n_cols))
    return np.round(x * 1000) / 1000  # (n_rows, n_cols): k / 1000, the double nearest "%.3f" % value


def write_csv(path: Path, columns, values, *, date_column="date", step_minutes=60, start="2016-07-01T00:00:00",
              date_position=0) -> Path:
    dates = np.datetime64(start) + np.arange(len(values)) * np.timedelta64(step_minutes, "m")
    header = list(columns)
    header.insert(date_position, date_column)
    lines = [",".join(header)]
    for d, row in zip(dates, values, strict=True):
        cells = [f"{v:.3f}" for v in row]
        cells.insert(date_position, str(d).replace("T", " "))
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def ett_root(tmp_path_factory):
    """ETTh1.csv (20 months + 37 unused hourly rows) and ETTm1.csv (20 months of 15-minute rows)."""
    root = tmp_path_factory.mktemp("informer")
    hour = make_values(HOUR_ENDS[2] + 37, 7, seed=1)
    minute = make_values(MINUTE_ENDS[2], 7, seed=2)
    write_csv(root / "ETTh1.csv", ETT_COLUMNS, hour)
    write_csv(root / "ETTm1.csv", ETT_COLUMNS, minute, step_minutes=15)
    return root, {"ETTh1": hour, "ETTm1": minute}


def expected_rows(raw, train_end, rows, cols):
    mean, std = raw[:train_end, cols].mean(0), raw[:train_end, cols].std(0)
    return torch.from_numpy((raw[rows][:, cols] - mean) / std).float()


# ------------------------------------------------------------------------------------------------
# borders and windows


@pytest.mark.parametrize("name, ends", [("ETTh1", HOUR_ENDS), ("ETTm1", MINUTE_ENDS)])
def test_informer_month_borders(ett_root, name, ends):
    root, raw = ett_root
    lag, horizon = 96, 24
    bounds = {"train": (0, ends[0]), "val": (ends[0] - lag, ends[1]), "test": (ends[1] - lag, ends[2])}
    for split, (start, end) in bounds.items():
        ds = InformerSeries(split, root=root, name=name, lag=lag, horizon=horizon)
        assert (ds.start, ds.end) == (start, end)
        assert len(ds) == end - start - lag - horizon + 1
        # the first forecast of val/test begins exactly at the border; the last ends at the next one
        first_y_row = start + lag
        assert first_y_row == {"train": lag, "val": ends[0], "test": ends[1]}[split]
        _, y_last = ds[len(ds) - 1]
        expect = expected_rows(raw[name], ends[0], np.arange(end - horizon, end), [6])
        torch.testing.assert_close(y_last, expect, **CLOSE32)
    assert ds.end == ends[2] <= len(raw[name])  # ETTh1's 37 rows after 20 months are unused


def test_windows_align_with_raw_rows(ett_root):
    root, raw = ett_root
    lag, horizon = 48, 24
    ds = InformerSeries("val", root=root, name="ETTh1", features="M", lag=lag, horizon=horizon)
    cols = list(range(7))
    for i in (0, 1, 17, len(ds) - 1):
        x, y = ds[i]
        start = ds.start + i
        torch.testing.assert_close(x, expected_rows(raw["ETTh1"], HOUR_ENDS[0], np.arange(start, start + lag), cols), **CLOSE32)
        torch.testing.assert_close(
            y, expected_rows(raw["ETTh1"], HOUR_ENDS[0], np.arange(start + lag, start + lag + horizon), cols), **CLOSE32)
        # x then y is one contiguous stretch of the split
        torch.testing.assert_close(torch.cat([x, y]), ds.values[i : i + lag + horizon], **CLOSE32)
    assert ds.dates[lag] == np.datetime64("2016-07-01T00:00:00") + np.timedelta64(HOUR_ENDS[0], "h")
    with pytest.raises(IndexError):
        ds[len(ds)]


@pytest.mark.parametrize("features, d_in, d_out", [("S", 1, 1), ("M", 7, 7), ("MS", 7, 1)])
def test_feature_modes(ett_root, features, d_in, d_out):
    root, raw = ett_root
    ds = InformerSeries("test", root=root, name="ETTh1", features=features, lag=64, horizon=16)
    x, y = ds[3]
    assert x.dtype == y.dtype == torch.float32
    assert x.shape == (64, d_in) and y.shape == (16, d_out)
    assert (ds.d_input, ds.d_output) == (d_in, d_out)
    assert ds.output_columns[-1] == "OT" and ds.columns[-1] == "OT"
    # the target column of y is OT in every mode
    rows = np.arange(ds.start + 3 + 64, ds.start + 3 + 80)
    torch.testing.assert_close(y[:, -1:], expected_rows(raw["ETTh1"], HOUR_ENDS[0], rows, [6]), **CLOSE32)


def test_scaling_uses_training_statistics_only(ett_root):
    root, raw = ett_root
    splits = {s: InformerSeries(s, root=root, name="ETTh1", features="M", lag=24, horizon=24) for s in
              ("train", "val", "test")}
    train = splits["train"].values.double()
    # float32 values, their statistics in float64
    torch.testing.assert_close(train.mean(0), torch.zeros(7, dtype=torch.float64), atol=ROUNDOFF[torch.float32], rtol=0)
    torch.testing.assert_close(train.std(0, unbiased=False), torch.ones(7, dtype=torch.float64), atol=ROUNDOFF[torch.float32], rtol=0)
    np.testing.assert_allclose(splits["train"].mean, raw["ETTh1"][: HOUR_ENDS[0]].mean(0), rtol=ROUNDOFF[torch.float64])
    np.testing.assert_allclose(splits["train"].std, raw["ETTh1"][: HOUR_ENDS[0]].std(0), rtol=ROUNDOFF[torch.float64])
    for split in ("val", "test"):
        ds = splits[split]
        np.testing.assert_array_equal(ds.mean, splits["train"].mean)
        np.testing.assert_array_equal(ds.std, splits["train"].std)
        torch.testing.assert_close(ds.values, expected_rows(raw["ETTh1"], HOUR_ENDS[0], np.arange(ds.start, ds.end),
                                                            list(range(7))), **CLOSE32)
        # the trend moves the later splits away from 0: per-split statistics would have hidden it
        assert ds.values.double().mean(0).abs().min() > 0.5
    unscaled = InformerSeries("val", root=root, name="ETTh1", features="M", lag=24, horizon=24, scale=False)
    torch.testing.assert_close(unscaled.values, torch.from_numpy(raw["ETTh1"][unscaled.start : unscaled.end]).float(), **CLOSE32)


@pytest.mark.parametrize("features", ["S", "M", "MS"])
def test_inverse_transform_round_trip(ett_root, features):
    root, raw = ett_root
    ds = InformerSeries("test", root=root, name="ETTh1", features=features, lag=32, horizon=8)
    x, y = ds[5]
    rows = np.arange(ds.start + 5, ds.start + 5 + 40)
    cols = [6] if features == "S" else list(range(7))
    # x * std + mean in float32, of values up to ~30: a few roundings of each
    torch.testing.assert_close(ds.inverse_transform(x), torch.from_numpy(raw["ETTh1"][rows[:32]][:, cols]).float(),
                               **CLOSE32)
    truth = raw["ETTh1"][rows[32:]][:, [6] if features != "M" else cols]
    torch.testing.assert_close(ds.inverse_transform(y), torch.from_numpy(truth).float(), **CLOSE32)
    np.testing.assert_allclose(ds.inverse_transform(y.double().numpy()), truth, **CLOSE32)  # float32 data
    batch = torch.stack([y, y])  # (B, horizon, d_output)
    assert ds.inverse_transform(batch).shape == batch.shape
    if features == "MS":
        with pytest.raises(ValueError, match="last dimension 3, expected d_output=1 or d_input=7"):
            ds.inverse_transform(torch.zeros(2, 3))


def test_ratio_borders_and_target_moved_last(tmp_path):
    """WTH.csv with the target in the middle: 70/10/20 rows, target last in the variables."""
    columns = ("Visibility", "WetBulbCelsius", "DryBulbCelsius", "WindSpeed")
    raw = make_values(1003, 4, seed=3)
    write_csv(tmp_path / "WTH.csv", columns, raw)
    lag, horizon = 20, 10
    n_train, n_test = int(1003 * 0.7), int(1003 * 0.2)
    assert (n_train, n_test) == (702, 200)
    ends = (702, 803, 1003)
    for split, (start, end) in {"train": (0, 702), "val": (702 - lag, 803), "test": (803 - lag, 1003)}.items():
        ds = InformerSeries(split, root=tmp_path, name="Weather", features="M", lag=lag, horizon=horizon)
        assert (ds.start, ds.end) == (start, end)
        assert ds.columns == ("Visibility", "DryBulbCelsius", "WindSpeed", "WetBulbCelsius")
        x, _ = ds[0]
        torch.testing.assert_close(x, expected_rows(raw, ends[0], np.arange(start, start + lag), [0, 2, 3, 1]), **CLOSE32)
    s = InformerSeries("train", root=tmp_path, name="Weather", lag=lag, horizon=horizon)
    assert s.columns == ("WetBulbCelsius",)


def test_csv_series(tmp_path):
    columns = ("load", "temp", "price")
    raw = make_values(500, 3, seed=4)
    path = write_csv(tmp_path / "mine.csv", columns, raw, date_column="timestamp", date_position=2, step_minutes=30)
    text = path.read_text().splitlines()
    assert text[0] == "load,temp,timestamp,price" and text[1].split(",")[2] == "2016-07-01 00:00:00"
    ds = CsvSeries("test", path=path, target="temp", date_column="timestamp", features="MS", lag=12, horizon=6,
                   ratios=(0.6, 0.2, 0.2))
    assert (ds.start, ds.end) == (400 - 12, 500)
    assert ds.columns == ("load", "price", "temp") and ds.output_columns == ("temp",)
    x, y = ds[0]
    torch.testing.assert_close(x, expected_rows(raw, 300, np.arange(388, 400), [0, 2, 1]), **CLOSE32)
    torch.testing.assert_close(y, expected_rows(raw, 300, np.arange(400, 406), [1]), **CLOSE32)
    assert ds.dates[0] == np.datetime64("2016-07-01T00:00") + 388 * np.timedelta64(30, "m")

    # a strptime date format
    lines = ["when,v"] + [f"{d:02d}/07/2016 10:00,{d}.5" for d in range(1, 31)]
    (tmp_path / "fmt.csv").write_text("\n".join(lines) + "\n")
    ds = CsvSeries("train", path=tmp_path / "fmt.csv", target="v", date_column="when",
                   date_format="%d/%m/%Y %H:%M", lag=3, horizon=2, scale=False)
    assert ds.dates[1] == np.datetime64("2016-07-02T10:00")
    torch.testing.assert_close(ds[0][1], torch.tensor([[4.5], [5.5]]), **CLOSE32)


def test_default_root_env_and_ett_small_layout(tmp_path, monkeypatch):
    (tmp_path / "ETT-small").mkdir()
    write_csv(tmp_path / "ETT-small" / "ETTh1.csv", ETT_COLUMNS, make_values(HOUR_ENDS[2], 7))
    monkeypatch.setenv("SSM_DATA_ROOT", str(tmp_path))
    assert InformerSeries.locate("ETTh1") == tmp_path / "ETT-small" / "ETTh1.csv"
    ds = InformerSeries("test", name="ETTh1", lag=8, horizon=8)
    assert ds.path == tmp_path / "ETT-small" / "ETTh1.csv" and ds.end == HOUR_ENDS[2]


# ------------------------------------------------------------------------------------------------
# errors


def test_missing_file_names_paths_and_source(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        InformerSeries("train", root=tmp_path, name="ETTm2")
    message = str(err.value)
    for path in (tmp_path / "ETTm2.csv", tmp_path / "ETT-small" / "ETTm2.csv"):
        assert str(path.resolve()) in message
    assert "https://github.com/zhouhaoyi/ETDataset" in message and "SSM_DATA_ROOT" in message
    with pytest.raises(FileNotFoundError, match=r"WTH\.csv.*Informer2020"):
        InformerSeries("train", root=tmp_path, name="Weather")
    with pytest.raises(FileNotFoundError, match=r"ECL\.csv.*Informer2020"):
        InformerSeries("train", root=tmp_path, name="ECL")
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        CsvSeries("train", path=tmp_path / "nope.csv", target="v")


def _small_csv(tmp_path, body_lines, header="date,a,b"):
    path = tmp_path / "bad.csv"
    good = [f"2020-01-01 {h:02d}:00:00,{h}.0,{h}.5" for h in range(20)]
    lines = [header] + good
    for line_no, text in body_lines.items():  # line_no: 1-based line in the file
        lines[line_no - 1] = text
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("line, text, pattern", [
    (5, "2020-01-01 03:00:00,3.0", r"line 5: 2 fields, expected 3"),
    (6, "2020-01-01 04:00:00,4.0,abc", r"line 6, column 3 \('b'\): 'abc' is not a number"),
    (7, "2020-01-01 05:00:00,,5.5", r"line 7, column 2 \('a'\): missing value ''; set missing=interpolate, ffill or drop"),
    (8, "2020-01-01 06:00:00,inf,6.5", r"line 8, column 2 \('a'\): 'inf' is not a finite number"),
    (9, "01/01/2020 07:00,7.0,7.5", r"line 9, column 1 \('date'\): '01/01/2020 07:00' is not an ISO 8601 date"),
    (10, "2020-01-01 07:00:00,8.0,8.5", (r"line 10, column 1 \('date'\): date '2020-01-01 07:00:00' does not "
                                         r"come after the previous row's '2020-01-01 07:00:00'")),
    (11, "", r"line 11: 0 fields, expected 3"),
])
def test_malformed_csv_names_file_line_column(tmp_path, line, text, pattern):
    path = _small_csv(tmp_path, {line: text})
    with pytest.raises(ValueError, match=pattern) as err:
        CsvSeries("train", path=path, target="b", lag=2, horizon=1)
    assert str(path) in str(err.value)


def test_missing_value_policies(tmp_path):
    path = _small_csv(tmp_path, {4: "2020-01-01 02:00:00,,2.5", 7: "2020-01-01 05:00:00,NA,5.5"})
    from ssm.data.timeseries import read_series_csv

    a = read_series_csv(path, missing="interpolate").values[:, 0]
    # linear in time across the gaps
    np.testing.assert_allclose(a[:8], [0, 1, 2, 3, 4, 5, 6, 7], rtol=ROUNDOFF[torch.float64])
    f = read_series_csv(path, missing="ffill").values[:, 0]
    np.testing.assert_allclose(f[:8], [0, 1, 1, 3, 4, 4, 6, 7], rtol=ROUNDOFF[torch.float64])
    d = read_series_csv(path, missing="drop")
    assert len(d.values) == 18 and d.values[2, 0] == 3 and str(d.dates[2]) == "2020-01-01T03:00:00"
    data = CsvSeries("train", path=path, target="a", lag=2, horizon=1, missing="interpolate", scale=False)
    assert data.describe()["missing"] == "interpolate" and data.values[2, 0] == 2.0
    first = _small_csv(tmp_path, {2: "2020-01-01 00:00:00,,0.5"})
    with pytest.raises(ValueError, match=r"line 2, column 2 \('a'\): missing value in the first row"):
        read_series_csv(first, missing="ffill")
    with pytest.raises(ValueError, match="`missing` must be one of"):
        read_series_csv(first, missing="mean")


def test_header_errors(tmp_path):
    path = _small_csv(tmp_path, {})
    with pytest.raises(ValueError, match=r"bad\.csv, line 1: no target column 'OT' \(target\); the variables are "
                                         r"\['a', 'b'\]"):
        CsvSeries("train", path=path, target="OT", lag=2, horizon=1)
    with pytest.raises(ValueError, match=r"line 1: no 'time' column \(date_column\)"):
        CsvSeries("train", path=path, target="a", date_column="time", lag=2, horizon=1)
    dup = _small_csv(tmp_path, {}, header="date,a,a")
    with pytest.raises(ValueError, match=r"line 1, column 3: column name 'a' appears twice"):
        read_series_csv(dup)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match=r"empty\.csv, line 1: expected a header"):
        read_series_csv(tmp_path / "empty.csv")
    (tmp_path / "header.csv").write_text("date,a\n")
    with pytest.raises(ValueError, match="no data rows"):
        read_series_csv(tmp_path / "header.csv")


def test_too_short(tmp_path):
    write_csv(tmp_path / "ETTh2.csv", ETT_COLUMNS, make_values(HOUR_ENDS[2] - 1, 7))
    with pytest.raises(ValueError, match=r"ETTh2\.csv: 14399 data rows, but the InformerSeries\(name='ETTh2'\) "
                                         r"borders need at least 14400"):
        InformerSeries("train", root=tmp_path, name="ETTh2")
    path = _small_csv(tmp_path, {})  # 20 rows: 14 train, 2 val, 4 test
    with pytest.raises(ValueError, match=r"the val split has 5 rows \(with its lag context\), too few for lag=3 \+ "
                                         r"horizon=3"):
        CsvSeries("val", path=path, target="a", lag=3, horizon=3)
    with pytest.raises(ValueError, match=r"lag=15 is longer than the 14 training rows"):
        CsvSeries("train", path=path, target="a", lag=15, horizon=1)


def test_bad_arguments(tmp_path, ett_root):
    root, _ = ett_root
    with pytest.raises(ValueError, match=r"`features` must be one of 'S', 'M', 'MS'; got 'X'"):
        InformerSeries("train", root=root, name="ETTh1", features="X")
    with pytest.raises(ValueError, match=r"`split` must be one of 'train', 'val', 'test'; got 'dev'"):
        InformerSeries("dev", root=root, name="ETTh1")
    with pytest.raises(ValueError, match=r"`name` must be one of 'ETTh1', .*'Weather'; got 'ETTh3'"):
        InformerSeries("train", root=root, name="ETTh3")
    with pytest.raises(ValueError, match=r"horizon must be a positive integer, got 0"):
        InformerSeries("train", root=root, name="ETTh1", horizon=0)
    path = _small_csv(tmp_path, {})
    with pytest.raises(ValueError, match=r"ratios must be three positive fractions"):
        CsvSeries("train", path=path, target="a", ratios=(0.8, 0.1, 0.2))
    with pytest.raises(ValueError, match=r"target 'date' is the date column"):
        CsvSeries("train", path=path, target="date")


# ------------------------------------------------------------------------------------------------
# configs

FORECASTING = sorted(p.stem for p in (config_dir() / "experiment" / "forecasting").glob("*.yaml"))
BASELINES = [name for name in FORECASTING if not name.startswith("spacetime-")]  # SpaceTime: tests/models
DATA_CONFIGS = sorted(p.stem for p in (config_dir() / "data" / "ts").glob("*.yaml"))


def compose_cfg(tmp_path, overrides):
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            return compose("config", overrides=[f"output_dir={tmp_path / 'out'}", *overrides])
    finally:
        GlobalHydra.instance().clear()


def test_config_sets_exist():
    names = ("etth1", "etth2", "ettm1", "ettm2", "ecl", "weather")
    assert set(FORECASTING) == {f"{m}-{d}" for m in ("s4", "s4d", "spacetime") for d in names}
    assert set(DATA_CONFIGS) == {*names, "csv"}


HORIZON = {"etth1": 720, "etth2": 720, "ettm1": 672, "ettm2": 672, "ecl": 960, "weather": 720}
NAME = {"etth1": "ETTh1", "etth2": "ETTh2", "ettm1": "ETTm1", "ettm2": "ETTm2", "ecl": "ECL", "weather": "Weather"}


@pytest.mark.parametrize("experiment", BASELINES)
def test_forecasting_experiment_composes_and_instantiates(tmp_path, experiment):
    layer, dataset = experiment.split("-")
    cfg = compose_cfg(tmp_path, [f"experiment=forecasting/{experiment}", f"++data_root={tmp_path / 'none'}"])
    assert cfg.data.dataset.name == NAME[dataset]
    assert cfg.data.dataset.horizon == HORIZON[dataset] and cfg.data.dataset.lag == 720
    datamodule, module, _ = build(cfg)
    assert module.task.horizon == HORIZON[dataset]
    assert type(module.model.blocks[0].layer).__name__ == layer.upper()
    assert cfg.model.pool == "none" and cfg.task._target_ == "ssm.train.tasks.Forecasting"
    # the data instantiates lazily; reading it names the missing file
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "none")):
        datamodule.setup()


@pytest.mark.parametrize("experiment", ["s4-etth1", "s4d-ecl"])
def test_forecasting_model_output_matches_the_horizon(tmp_path, experiment):
    cfg = compose_cfg(tmp_path, [f"experiment=forecasting/{experiment}", f"++data_root={tmp_path}",
                                 "data.dataset.lag=40", "data.dataset.horizon=24"])
    _, module, _ = build(cfg)
    x, y = torch.randn(2, 40, 1), torch.randn(2, 24, 1)
    output = module(x)  # (B, lag + horizon, d_output): the task appends `horizon` zero steps
    assert output.shape == (2, 64, 1)
    assert torch.isfinite(module.task.loss(output, y))


@pytest.mark.parametrize("data", ["etth1"])  # ETTm borders: test_informer_month_borders
def test_data_config_reads_a_generated_file(tmp_path, ett_root, data):
    root, _ = ett_root
    cfg = compose_cfg(tmp_path, [f"data=ts/{data}", f"++data_root={root}", "data.dataset.lag=48",
                                 "data.dataset.horizon=24"])
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    x, y = next(iter(datamodule.val_dataloader()))
    assert x.shape == (50, 48, cfg.data.d_input) and y.shape == (50, 24, cfg.data.d_output)


def test_csv_data_config(tmp_path):
    path = write_csv(tmp_path / "mine.csv", ("a", "b", "c"), make_values(1000, 3))
    cfg = compose_cfg(tmp_path, ["data=ts/csv", f"data.dataset.path={path}", "data.dataset.target=b",
                                 "data.dataset.features=M", "data.d_input=3", "data.d_output=3",
                                 "data.dataset.lag=16", "data.dataset.horizon=8", "++data_root=unused"])
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    x, y = next(iter(datamodule.val_dataloader()))
    assert x.shape == (50, 16, 3) and y.shape == (50, 8, 3)
    assert instantiate(cfg.data.dataset)(split="val").columns == ("a", "c", "b")
