"""``ssm-predict``: the command line of ``ssm.train.predict.predict``.

    ssm-predict checkpoint=RUN/checkpoints/best.ckpt data=NEW.ts output=predictions.csv
    ssm-predict checkpoint=... data=NEW.csv output=forecast.csv last_only=true
    options: batch_size=64 device=auto|cpu|cuda format=ts|npz|csv|wav last_only=false trust_checkpoint=false
             (ssm-predict --help lists them)
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence

from ..data.classify import FORMATS
from ..train import predict as _predict
from ..train.predict import predict
from . import args
from .args import UsageError, boolean, choice, integer, option, path


@dataclasses.dataclass
class Options:
    """The settings of one ``ssm-predict`` run (``ssm.cli.args`` parses them: key=value)."""

    checkpoint: str | None = option(None, path, "PATH of a checkpoint written by ssm-train", required=True)
    data: str | None = option(None, path, "PATH of the data to predict (.ts, .npz, .csv, a WAV class folder)",
                              required=True)
    output: str | None = option(None, path, "FILE to write (.csv, or .npz for raw outputs)", required=True)
    batch_size: int = option(64, integer(1), "examples per batch")
    device: str = option("auto", args.device(auto=True), "auto (CUDA when available), cpu, cuda or cuda:N")
    last_only: bool = option(False, boolean, "forecasting: only the last lag window of the file")
    format: str | None = option(None, choice(*FORMATS), "the data's format (none: from the extension)")
    trust_checkpoint: bool = option(False, boolean, "load a checkpoint you know without the safety checks")


def parse_args(argv: Sequence[str]) -> Options:
    """``key=value`` arguments -> ``Options``; raises ``UsageError`` (a ValueError) naming the argument."""
    return args.parse(Options, argv, prog="ssm-predict")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if args.wants_help(argv):
        print(args.usage(Options, synopsis="ssm-predict checkpoint=PATH data=PATH output=FILE [key=value ...]",
                         summary=_predict.__doc__.split("\n\n", 2)[2]))
        return 0
    try:
        options = dataclasses.asdict(parse_args(argv))
        predict(options.pop("checkpoint"), options.pop("data"), options.pop("output"), **options)
    except UsageError as err:
        print(f"ssm-predict: error: {err}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as err:  # CheckpointError is a ValueError
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
