"""``ssm.cli.args``, the one ``key=value`` parser of every ``ssm-*`` app: typed values, errors that
name the key and the expected type, close-match suggestions, required keys, ``--help``."""

import dataclasses

import pytest

from ssm.cli import args
from ssm.cli.args import UsageError, boolean, choice, choices, integer, integers, number, option, path


@dataclasses.dataclass
class Options:
    checkpoint: str | None = option(None, path, "PATH of a checkpoint", required=True)
    n_samples: int = option(4, integer(1), "how many")
    temperature: float = option(1.0, number(lambda v: v >= 0, "a number >= 0"), "softmax temperature")
    fast: bool = option(True, boolean, "the fast path")
    backend: str = option("auto", choice("auto", "cpp", "torch"), "kernels")
    threads: tuple[int, ...] | None = option(None, integers(1), "thread counts")
    ops: tuple[str, ...] = option(("cauchy",), choices("cauchy", "vandermonde"), "ops")


def parse(*argv):
    return args.parse(Options, list(argv), prog="ssm-test")


def test_values_are_typed_and_defaults_kept():
    got = parse("checkpoint=a.ckpt", "n_samples=7", "temperature=0.5", "fast=false", "threads=1,2",
                "--backend=torch", "ops=vandermonde,cauchy")
    assert got == Options(checkpoint="a.ckpt", n_samples=7, temperature=0.5, fast=False, backend="torch",
                          threads=(1, 2), ops=("vandermonde", "cauchy"))
    assert type(got.n_samples) is int and type(got.temperature) is float
    assert parse("checkpoint=a", "threads=none").threads is None  # key=none for a field that defaults to None
    assert parse("checkpoint=a") == Options(checkpoint="a")
    assert parse("checkpoint=a", "n-samples=2").n_samples == 2  # '-' in a key reads as '_'


@pytest.mark.parametrize(("argv", "message"), [
    (["n_samples=two"], "`n_samples` must be a positive integer, got 'two'"),
    (["n_samples=0"], "`n_samples` must be a positive integer, got 0"),
    (["temperature=hot"], "`temperature` must be a number >= 0, got 'hot'"),
    (["temperature=-1"], "`temperature` must be a number >= 0, got -1.0"),
    (["temperature=nan"], "`temperature` must be a number >= 0, got nan"),
    (["fast=maybe"], "`fast` must be true or false, got 'maybe'"),
    (["backend=fused"], "`backend` must be auto, cpp or torch, got 'fused'"),
    (["threads=1,,2"], "`threads` must be a comma list of positive integers, got '1,,2'"),
    (["threads=0"], "`threads` must be a comma list of positive integers, got '0'"),
    (["ops=cauchy,fft"], "`ops` must be a comma list from cauchy, vandermonde, got 'fft' in 'cauchy,fft'"),
])
def test_bad_type_names_the_key_and_the_expected_type(argv, message):
    with pytest.raises(UsageError) as err:
        parse("checkpoint=a", *argv)
    assert str(err.value) == message


def test_unknown_key_suggests_the_closest_known_one():
    with pytest.raises(UsageError, match=r"unknown argument `temprature`; did you mean `temperature`\?"):
        parse("checkpoint=a", "temprature=1")
    with pytest.raises(UsageError, match=r"unknown argument `zzz`; known: checkpoint, n_samples, temperature"):
        parse("checkpoint=a", "zzz=1")


def test_missing_required_key_and_malformed_arguments():
    with pytest.raises(UsageError, match=r"missing required argument `checkpoint` \(checkpoint=\.\.\.: PATH of a"):
        parse("n_samples=2")
    with pytest.raises(UsageError, match="missing required argument `checkpoint`"):
        parse("checkpoint=none")
    with pytest.raises(UsageError, match=r"argument 'oops' is not of the form key=value \(see ssm-test --help\)"):
        parse("checkpoint=a", "oops")
    # the old flag style gets the new spelling
    with pytest.raises(UsageError, match=r"'--threads' is not of the form key=value \(write threads=VALUE;"):
        parse("checkpoint=a", "--threads", "1,2")
    with pytest.raises(UsageError, match="argument `fast` given twice"):
        parse("checkpoint=a", "fast=true", "fast=false")


def test_help_lists_every_key_with_its_default_and_run_exits_cleanly(capsys):
    ran = []
    assert args.run(ran.append, Options, ["--help"], prog="ssm-test", synopsis="ssm-test checkpoint=PATH",
                    summary="What it does.") == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: ssm-test checkpoint=PATH\n\nWhat it does.\n") and not ran
    for line in ("checkpoint   PATH of a checkpoint [required]", "n_samples    how many [default 4]",
                 "fast         the fast path [default true]", "threads      thread counts [default none]",
                 "ops          ops [default cauchy]"):
        assert line in text, line
    assert args.run(ran.append, Options, ["checkpoint=a", "n_samples=x"], prog="ssm-test", synopsis="") == 2
    assert capsys.readouterr().err == "ssm-test: error: `n_samples` must be a positive integer, got 'x'\n" and not ran
    assert args.run(ran.append, Options, ["checkpoint=a"], prog="ssm-test", synopsis="") == 0
    assert ran == [Options(checkpoint="a")]


def test_every_app_uses_it(capsys):
    """ssm-bench (per benchmark), ssm-demo, ssm-generate and ssm-predict: the same errors and --help."""
    from ssm.cli import bench, demo
    from ssm.cli import generate as generate_app
    from ssm.cli import predict

    for main, argv, prog in ((bench.main, ["layers", "d_modle=8"], "ssm-bench layers"),
                             (demo.main, ["d_modle=8"], "ssm-demo"),
                             (generate_app.main, ["checkpoint=x", "d_modle=8"], "ssm-generate"),
                             (predict.main, ["checkpoint=x", "data=y", "output=z", "batch_sise=8"], "ssm-predict")):
        assert main(argv) == 2, prog
        assert f"{prog}: error: unknown argument" in capsys.readouterr().err, prog
        assert main([*argv[:1], "--help"] if prog == "ssm-bench layers" else ["--help"]) == 0
        assert "arguments (key=value):" in capsys.readouterr().out, prog
    assert bench.main(["kernls"]) == 2
    assert "unknown benchmark 'kernls'; did you mean `kernels`?" in capsys.readouterr().err
