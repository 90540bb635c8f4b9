"""``python -m ssm.data.audio generate --root DIR [...]``: write the generated audio set as WAV
files in the SC09 layout (``DIR/sc09/<digit>/*.wav`` plus split lists)."""

from __future__ import annotations

import argparse

from .datasets import write_generated_audio


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ssm.data.audio", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="write GeneratedAudio as WAV files in the SC09 layout")
    gen.add_argument("--root", required=True, help="the dataset goes to ROOT/sc09")
    gen.add_argument("--train-size", type=int, default=200)
    gen.add_argument("--val-size", type=int, default=25)
    gen.add_argument("--test-size", type=int, default=25)
    gen.add_argument("--rate", type=int, default=16000)
    gen.add_argument("--length", type=int, default=16000, help="samples per clip")
    gen.add_argument("--noise", type=float, default=0.005)
    gen.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    base = write_generated_audio(args.root, train_size=args.train_size, val_size=args.val_size,
                                 test_size=args.test_size, rate=args.rate, length=args.length, noise=args.noise,
                                 seed=args.seed)
    total = args.train_size + args.val_size + args.test_size
    print(f"wrote {total} clips ({args.train_size}/{args.val_size}/{args.test_size} train/val/test, "
          f"{args.length} samples at {args.rate} Hz) to {base}")


if __name__ == "__main__":
    main()
