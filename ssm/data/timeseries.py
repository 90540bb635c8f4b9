"""Lag/horizon forecasting windows from CSV time series, under the Informer protocol.

The long-horizon benchmarks of Informer (Zhou et al., arXiv 2012.07436) -- ETTh1/2, ETTm1/2,
ECL (electricity) and Weather -- as used by S4 (arXiv 2111.00396, App. D.3.5) and SpaceTime
(arXiv 2303.09489). The protocol, as in Informer's and S4's loaders:

- **Splits.** ETTh: the first 12 months (30-day months, 24 steps a day) train, the next 4
  validate, the next 4 test; rows after 20 months are unused. ETTm: the same months in 15-minute
  steps (96 a day). ECL, Weather and any other CSV: the first ``int(0.7 n)`` rows train, the last
  ``int(0.2 n)`` test, the rest validate.
- **Context across borders.** The val and test windows start ``lag`` rows before their border,
  so their first forecast begins exactly at the border.
- **Scaling.** Per-variable mean and standard deviation (``ddof=0``) of the training rows only,
  applied to every split; ``inverse_transform`` maps outputs back to data units.
- **Features.** ``"S"``: the target in, the target out. ``"M"``: every variable in and out.
  ``"MS"``: every variable in, the target out. Variables keep the file's order with the target
  moved last.

Item ``i`` is ``(x, y)``: ``x`` float32 ``(lag, d_input)`` are rows ``i .. i+lag-1`` of the split
and ``y`` float32 ``(horizon, d_output)`` the ``horizon`` rows right after them (the item format of
``ssm.data.synthetic.SeasonalSeries``). Files are read with the standard ``csv`` module; every
malformed cell is an error naming the file, line and column.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from ..checks import check_choice
from .synthetic import SPLITS

Features = Literal["S", "M", "MS"]
InformerName = Literal["ETTh1", "ETTh2", "ETTm1", "ETTm2", "ECL", "Weather"]

_ETT_SOURCE = "the ETDataset repository, https://github.com/zhouhaoyi/ETDataset (folder ETT-small)"
_INFORMER_SOURCE = ("the ECL/Weather data linked from the Informer repository's README, "
                    "https://github.com/zhouhaoyi/Informer2020 (section Data)")


@dataclass(frozen=True)
class _Spec:
    file: str
    target: str
    steps_per_day: int | None  # month borders (ETT); None: ratio borders
    source: str
    subdirs: tuple[str, ...] = ()  # other layouts looked in, under root


INFORMER_DATASETS: dict[str, _Spec] = {
    **{name: _Spec(f"{name}.csv", "OT", 24, _ETT_SOURCE, ("ETT-small", "ETT")) for name in ("ETTh1", "ETTh2")},
    **{name: _Spec(f"{name}.csv", "OT", 96, _ETT_SOURCE, ("ETT-small", "ETT")) for name in ("ETTm1", "ETTm2")},
    "ECL": _Spec("ECL.csv", "MT_320", None, _INFORMER_SOURCE),
    "Weather": _Spec("WTH.csv", "WetBulbCelsius", None, _INFORMER_SOURCE),
}


def data_root(root: str | os.PathLike | None = None) -> Path:
    """``root``, else ``$SSM_DATA_ROOT``, else ``./data``."""
    if root is None or str(root) == "":
        root = os.environ.get("SSM_DATA_ROOT") or "./data"
    return Path(root)


# ---------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class SeriesTable:
    """A parsed CSV: ``columns`` are the variables (every column but the date), ``values`` is
    float64 ``(n_rows, len(columns))`` and ``dates`` is datetime64[s] ``(n_rows,)``."""

    path: Path
    columns: tuple[str, ...]
    dates: np.ndarray
    values: np.ndarray


def _parse_date(text: str, date_format: str | None) -> np.datetime64:
    when = datetime.strptime(text, date_format) if date_format else datetime.fromisoformat(text)
    if when.tzinfo is not None:  # an explicit offset: compare instants in UTC
        when = when.astimezone(timezone.utc).replace(tzinfo=None)
    return np.datetime64(when, "s")


Missing = Literal["error", "interpolate", "ffill", "drop"]
MISSING_CELLS = ("", "nan", "NaN", "NA", "N/A", "null", "?")  # what counts as a missing value


def read_series_csv(path: str | os.PathLike, *, date_column: str = "date", date_format: str | None = None,
                    missing: Missing = "error") -> SeriesTable:
    """Parse ``path``: a header line naming the columns, one of them ``date_column``, then one row
    per time step. Dates are ISO 8601 (``2016-07-01 00:00:00``) unless ``date_format`` (a
    ``strptime`` format) is given, and must strictly increase. Every other cell must be a finite
    number, or a missing value (empty, ``nan``, ``NA``, ``?``...) handled by ``missing``:
    ``error`` (the file, line and column are named), ``interpolate`` (linear in time; the nearest
    value before the first or after the last), ``ffill`` (the previous row's value; a gap in the
    first row is an error) or ``drop`` (rows with a missing value are left out). Raises
    FileNotFoundError, or ValueError naming the file, line and column."""
    check_choice("read_series_csv", "missing", missing, Missing)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no CSV file at {path}")
    with path.open(newline="", encoding="utf-8-sig") as f:  # -sig: tolerate a byte-order mark
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            raise ValueError(f"{path}, line 1: expected a header line naming the columns, found an empty file or line")
        header = [name.strip() for name in header]
        seen: set[str] = set()
        for j, name in enumerate(header):
            if name in seen:
                raise ValueError(f"{path}, line 1, column {j + 1}: column name {name!r} appears twice")
            seen.add(name)
        if date_column not in seen:
            raise ValueError(f"{path}, line 1: no {date_column!r} column (date_column); the header has {_preview(header)}")
        date_j = header.index(date_column)
        value_j = [j for j in range(len(header)) if j != date_j]
        if not value_j:
            raise ValueError(f"{path}, line 1: only a {date_column!r} column; expected at least one variable")
        lines, date_text, cells = [], [], []
        for row in reader:
            if len(row) != len(header):
                raise ValueError(f"{path}, line {reader.line_num}: {len(row)} fields, expected {len(header)} "
                                 f"as in the header")
            lines.append(reader.line_num)
            date_text.append(row[date_j])
            cells.append([row[j] for j in value_j])
    if not cells:
        raise ValueError(f"{path}: a header but no data rows")
    columns = tuple(header[j] for j in value_j)

    def where(i: int, k: int) -> str:
        return f"{path}, line {lines[i]}, column {value_j[k] + 1} ({columns[k]!r})"

    gaps = np.array([[text.strip() in MISSING_CELLS for text in row] for row in cells], dtype=bool)
    if gaps.any() and missing == "error":
        i, k = np.argwhere(gaps)[0]
        raise ValueError(f"{where(i, k)}: missing value {cells[i][k]!r}; set missing=interpolate, ffill or drop "
                         "(data.dataset.missing=...) to handle missing values")
    try:
        values = np.array([[np.nan if gap else text for text, gap in zip(row, g)] for row, g in zip(cells, gaps)],
                          dtype=np.float64)  # (n_rows, n_vars)
    except ValueError:  # find the first bad cell, for the message
        for i, row in enumerate(cells):
            for k, text in enumerate(row):
                if gaps[i, k]:
                    continue
                try:
                    float(text)
                except ValueError:
                    raise ValueError(f"{where(i, k)}: {text!r} is not a number") from None
        raise
    bad = ~np.isfinite(values) & ~gaps
    if bad.any():
        i, k = np.argwhere(bad)[0]
        raise ValueError(f"{where(i, k)}: {cells[i][k]!r} is not a finite number")

    dates = np.empty(len(cells), dtype="datetime64[s]")
    for i, text in enumerate(date_text):
        try:
            dates[i] = _parse_date(text.strip(), date_format)
        except ValueError:
            expected = f"the format {date_format!r}" if date_format else "an ISO 8601 date like '2016-07-01 00:00:00'"
            raise ValueError(f"{path}, line {lines[i]}, column {date_j + 1} ({date_column!r}): "
                             f"{text!r} is not {expected}") from None
    steps = np.diff(dates)
    if (steps <= np.timedelta64(0, "s")).any():
        i = int(np.argmax(steps <= np.timedelta64(0, "s"))) + 1
        raise ValueError(f"{path}, line {lines[i]}, column {date_j + 1} ({date_column!r}): date {date_text[i]!r} "
                         f"does not come after the previous row's {date_text[i - 1]!r}; rows must be in time order")
    if gaps.any():
        values, dates = _fill_gaps(values, dates, gaps, missing, lambda i, k: where(i, k))
    return SeriesTable(path, columns, dates, values)


def _fill_gaps(values: np.ndarray, dates: np.ndarray, gaps: np.ndarray, missing: str, where):
    """Apply the ``missing`` policy to the NaN cells ``gaps`` of ``values`` (n_rows, n_vars)."""
    if missing == "drop":
        keep = ~gaps.any(1)
        if not keep.any():
            raise ValueError(f"{where(0, 0).split(', line')[0]}: every row has a missing value (missing=drop)")
        return values[keep], dates[keep]
    values = values.copy()
    t = (dates - dates[0]).astype(np.int64).astype(np.float64)  # seconds since the first row
    for k in range(values.shape[1]):
        bad = gaps[:, k]
        if not bad.any():
            continue
        if bad.all():
            raise ValueError(f"{where(0, k)}: the column has no values (missing={missing})")
        if missing == "interpolate":
            values[bad, k] = np.interp(t[bad], t[~bad], values[~bad, k])
        else:  # ffill
            if bad[0]:
                raise ValueError(f"{where(0, k)}: missing value in the first row, nothing to carry forward "
                                 "(missing=ffill); use missing=interpolate or drop")
            last = np.maximum.accumulate(np.where(bad, 0, np.arange(len(bad))))  # index of the last valid row
            values[:, k] = values[last, k]
    return values, dates


def _preview(names: Sequence[str], n: int = 8) -> str:
    shown = ", ".join(repr(x) for x in names[:n])
    return f"[{shown}{', ...' if len(names) > n else ''}] ({len(names)} columns)"


# ---------------------------------------------------------------------------------------------
# Borders


def month_ends(steps_per_day: int) -> tuple[int, int, int]:
    """Informer's ETT borders: train/val/test end after 12, 16 and 20 months of 30 days."""
    month = 30 * steps_per_day
    return 12 * month, 16 * month, 20 * month


def ratio_ends(n_rows: int, ratios: Sequence[float] = (0.7, 0.1, 0.2)) -> tuple[int, int, int]:
    """Informer's custom-data borders: ``int(n r_train)`` train rows, ``int(n r_test)`` test rows
    at the end, the rest validation."""
    n_train, n_test = int(n_rows * ratios[0]), int(n_rows * ratios[2])
    return n_train, n_rows - n_test, n_rows


def split_rows(ends: tuple[int, int, int], split: str, lag: int) -> tuple[int, int]:
    """[start, end) rows of ``split``: val and test start ``lag`` rows before their border."""
    train_end, val_end, test_end = ends
    return {"train": (0, train_end), "val": (train_end - lag, val_end), "test": (val_end - lag, test_end)}[split]


# ---------------------------------------------------------------------------------------------
# Datasets


class _ForecastWindows(Dataset):
    """Windows of one split of a table; the shared body of ``InformerSeries`` and ``CsvSeries``."""

    def _build(self, table: SeriesTable, split: str, *, target: str, features: str, lag: int, horizon: int,
               ends: tuple[int, int, int], scale: bool, what: str):
        check_choice(type(self).__name__, "split", split, SPLITS)
        check_choice(type(self).__name__, "features", features, Features)
        for name, value in (("lag", lag), ("horizon", horizon)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{what}: {name} must be a positive integer, got {value!r}")
        if target not in table.columns:
            raise ValueError(f"{table.path}, line 1: no target column {target!r} (target); "
                             f"the variables are {_preview(table.columns)}")
        n_rows = len(table.values)
        if ends[2] > n_rows:
            raise ValueError(f"{table.path}: {n_rows} data rows, but the {what} borders need at least {ends[2]} "
                             f"(train/val/test end at rows {ends})")
        if min(ends[0], ends[1] - ends[0], ends[2] - ends[1]) < 1:
            raise ValueError(f"{table.path}: {n_rows} data rows give an empty split (train/val/test end at rows {ends})")
        if ends[0] < lag:
            raise ValueError(f"{what}: lag={lag} is longer than the {ends[0]} training rows of {table.path}; "
                             "the val split's context would start before the file")

        # variables in file order with the target last (Informer's order)
        columns = [c for c in table.columns if c != target] + [target]
        used = [target] if features == "S" else columns
        values = table.values[:, [table.columns.index(c) for c in used]]  # (n_rows, V) float64
        if scale:
            train = values[: ends[0]]
            mean, std = train.mean(0), train.std(0)
            std = np.where(std > 0, std, 1.0)  # a constant training column is only centred
        else:
            mean, std = np.zeros(len(used)), np.ones(len(used))

        start, end = split_rows(ends, split, lag)
        n_windows = end - start - lag - horizon + 1
        if n_windows < 1:
            raise ValueError(f"{table.path}: the {split} split has {end - start} rows (with its lag context), "
                             f"too few for lag={lag} + horizon={horizon}")
        part = torch.from_numpy((values[start:end] - mean) / std).float()  # (end - start, V)
        out = slice(len(used) - 1, len(used)) if features == "MS" else slice(None)

        self.path, self.split, self.features, self.target = table.path, split, features, target
        steps = np.diff(table.dates).astype(np.int64)
        self.step_seconds = int(np.median(steps)) if len(steps) else 0  # the data's time step
        self.lag, self.horizon = lag, horizon
        self.columns = tuple(used)  # the variables of x, in order
        self.output_columns = self.columns[out]  # the variables of y
        self.mean, self.std = mean, std  # over `columns`, float64
        self.start, self.end = start, end  # data rows [start, end) of the file in this split
        self.dates = table.dates[start:end]  # datetime64[s] (end - start,)
        self.values = part  # float32 (end - start, d_input): this split's rows, standardised
        self.d_input, self.d_output = len(self.columns), len(self.output_columns)
        self._y = part[:, out]  # (end - start, d_output)
        self._n = n_windows
        self._out = out

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int):
        if not -self._n <= i < self._n:
            raise IndexError(f"window {i} out of range for {self._n} windows")
        i = i % self._n
        return self.values[i : i + self.lag], self._y[i + self.lag : i + self.lag + self.horizon]

    def describe(self) -> dict:
        """What ``ssm-predict`` needs to window a new CSV like this one (plain Python types)."""
        return {
            "kind": "forecasting",
            "columns": list(self.columns),
            "output_columns": list(self.output_columns),
            "target": self.target,
            "features": self.features,
            "lag": int(self.lag),
            "horizon": int(self.horizon),
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "date_column": getattr(self, "date_column", "date"),
            "date_format": getattr(self, "date_format", None),
            "missing": getattr(self, "missing", "error"),
            "step_seconds": self.step_seconds,
            "d_input": int(self.d_input),
            "d_output": int(self.d_output),
        }

    def inverse_transform(self, values):
        """Standardised values -> data units. The last dimension is either ``d_output`` (forecasts:
        the output variables' statistics) or ``d_input`` (inputs); a tensor or an array."""
        d = values.shape[-1]
        if d == self.d_output:
            mean, std = self.mean[self._out], self.std[self._out]
        elif d == self.d_input:
            mean, std = self.mean, self.std
        else:
            raise ValueError(f"inverse_transform: last dimension {d}, expected d_output={self.d_output} "
                             f"or d_input={self.d_input}")
        if torch.is_tensor(values):
            mean = torch.as_tensor(mean, dtype=values.dtype, device=values.device)
            std = torch.as_tensor(std, dtype=values.dtype, device=values.device)
        return values * std + mean


class InformerSeries(_ForecastWindows):
    """One split of an Informer benchmark, windowed for forecasting ``horizon`` steps from ``lag``.

    The file ``<name's file>`` (ETTh1.csv, ..., ECL.csv, WTH.csv) is looked for in ``root``
    (default ``$SSM_DATA_ROOT``, else ``./data``) and, for ETT, also in ``root/ETT-small/``
    (ETDataset's layout) and ``root/ETT/`` (Informer's). ``target`` defaults to the protocol's
    (OT for ETT, MT_320 for ECL, WetBulbCelsius for Weather).
    """

    def __init__(self, split: str = "train", *, root: str | os.PathLike | None = None, name: InformerName = "ETTh1",
                 features: Features = "S", lag: int = 336, horizon: int = 720, target: str | None = None,
                 scale: bool = True):
        check_choice(type(self).__name__, "name", name, tuple(INFORMER_DATASETS))
        spec = INFORMER_DATASETS[name]
        self.name = name
        path = self.locate(name, root)
        table = read_series_csv(path)
        ends = month_ends(spec.steps_per_day) if spec.steps_per_day else ratio_ends(len(table.values))
        self._build(table, split, target=target or spec.target, features=features, lag=lag, horizon=horizon,
                    ends=ends, scale=scale, what=f"InformerSeries(name={name!r})")

    @staticmethod
    def candidates(name: InformerName, root: str | os.PathLike | None = None) -> list[Path]:
        """The paths looked at for ``name``, in order."""
        check_choice("InformerSeries", "name", name, tuple(INFORMER_DATASETS))
        spec, base = INFORMER_DATASETS[name], data_root(root)
        return [base / spec.file] + [base / sub / spec.file for sub in spec.subdirs]

    @classmethod
    def locate(cls, name: InformerName, root: str | os.PathLike | None = None) -> Path:
        """The first existing candidate path; FileNotFoundError naming all of them otherwise."""
        paths = cls.candidates(name, root)
        for path in paths:
            if path.is_file():
                return path
        spec = INFORMER_DATASETS[name]
        looked = " or ".join(str(p.resolve()) for p in paths)
        raise FileNotFoundError(
            f"InformerSeries(name={name!r}): no {spec.file} at {looked}. Get {spec.file} from {spec.source} "
            f"and put it in {data_root(root).resolve()} (set root=, data_root= on the ssm-train command line, "
            "or the SSM_DATA_ROOT environment variable)."
        )


class CsvSeries(_ForecastWindows):
    """One split of any CSV with a date column, split chronologically by ``ratios``
    (train, val, test; Informer's custom-data rule, see ``ratio_ends``) and windowed like
    ``InformerSeries``. ``missing`` is the missing-value policy of ``read_series_csv``."""

    def __init__(self, split: str = "train", *, path: str | os.PathLike, target: str, date_column: str = "date",
                 date_format: str | None = None, features: Features = "S", lag: int = 336, horizon: int = 720,
                 ratios: Sequence[float] = (0.7, 0.1, 0.2), scale: bool = True, missing: Missing = "error"):
        ratios = tuple(float(r) for r in ratios)
        if len(ratios) != 3 or min(ratios) <= 0 or abs(sum(ratios) - 1) > 1e-6:
            raise ValueError(f"CsvSeries: ratios must be three positive fractions (train, val, test) summing to 1, "
                             f"got {ratios}")
        if target == date_column:
            raise ValueError(f"CsvSeries: target {target!r} is the date column")
        table = read_series_csv(path, date_column=date_column, date_format=date_format, missing=missing)
        self.date_column, self.date_format, self.missing = date_column, date_format, missing
        self._build(table, split, target=target, features=features, lag=lag, horizon=horizon,
                    ends=ratio_ends(len(table.values), ratios), scale=scale, what=f"CsvSeries(path={str(path)!r})")
