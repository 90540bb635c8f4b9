"""Write the generated trend + season series used to show ``task.instance_norm=revin``.

Hourly, 2000 rows: ``0.02 t + 3 sin(2 pi t / 24) + N(0, 0.3^2)`` (seed 0). The trend puts the
test range (the last 20%) above everything the training range (the first 70%) holds, which is
where a globally standardised input breaks an S4-family forecaster.

    python experiments/forecasting/trend_csv.py trend.csv
"""

import sys

import numpy as np


def main(path: str) -> None:
    n = 2000
    t = np.arange(n)
    value = 0.02 * t + 3 * np.sin(2 * np.pi * t / 24) + 0.3 * np.random.default_rng(0).normal(size=n)
    dates = np.datetime64("2021-01-01T00:00") + t * np.timedelta64(1, "h")
    with open(path, "w") as f:
        f.write("date,y\n" + "".join(f"{str(d).replace('T', ' ')},{v:.4f}\n" for d, v in zip(dates, value)))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "trend.csv")
