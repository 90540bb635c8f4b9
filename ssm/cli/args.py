"""One argument style for every ``ssm-*`` command: ``key=value``, as Hydra overrides on ``ssm-train``.

An app declares its settings as a dataclass whose fields are made with ``option`` (default, a
parser for the text, a help line); ``parse`` turns ``key=value`` arguments into an instance,
``usage`` writes the ``--help`` text from the same fields and ``run`` is the whole console entry
(``--help``, parse, run, ``PROG: error: ...`` and exit status 2 on bad input).

    @dataclasses.dataclass
    class Options:
        checkpoint: str | None = option(None, path, "PATH of an ssm-train checkpoint", required=True)
        n_samples: int = option(4, integer(1), "waveforms to generate")

Every parser takes ``(key, text)`` and raises ``UsageError`` naming the key and the expected type;
unknown keys get the closest known key as a suggestion. ``--key=value`` is accepted as well and
``-`` in a key reads as ``_`` (``--d-model=8`` is ``d_model=8``). Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
Parser = Callable[[str, str], Any]  # (key, text) -> value, or UsageError naming the key

HELP_FLAGS = ("-h", "--help")
NULLS = ("none", "null")


class UsageError(ValueError):
    """Bad command-line input; the message names the argument and what was expected."""


def option(default: Any, parse: Parser, help: str, *, required: bool = False, nullable: bool = False) -> Any:
    """A dataclass field for a command-line setting. ``nullable``: ``key=none`` gives None."""
    return dataclasses.field(default=default, metadata={"parse": parse, "help": help, "required": required,
                                                        "nullable": nullable or default is None})


def did_you_mean(key: str, known: Sequence[str]) -> str:
    """``; did you mean `x`?`` for the closest known key, else the list of known keys."""
    close = difflib.get_close_matches(key, list(known), n=1)
    return f"; did you mean `{close[0]}`?" if close else f"; known: {', '.join(known)}"


# ---- parsers -------------------------------------------------------------------------------------


def boolean(key: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise UsageError(f"`{key}` must be true or false, got {text!r}")


def _integer_kind(low: int | None) -> str:
    return {None: "an integer", 0: "a non-negative integer", 1: "a positive integer"}.get(low, f"an integer >= {low}")


def integer(low: int | None = None) -> Parser:
    """An integer, at least ``low`` when given."""
    kind = _integer_kind(low)

    def parse(key: str, text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise UsageError(f"`{key}` must be {kind}, got {text!r}") from None
        if low is not None and value < low:
            raise UsageError(f"`{key}` must be {kind}, got {value}")
        return value
    return parse


def number(check: Callable[[float], bool] = lambda v: True, expected: str = "a number") -> Parser:
    """A finite float for which ``check`` holds; ``expected`` says which in the error."""
    def parse(key: str, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise UsageError(f"`{key}` must be {expected}, got {text!r}") from None
        if not (math.isfinite(value) and check(value)):
            raise UsageError(f"`{key}` must be {expected}, got {value}")
        return value
    return parse


def _one_of(values: Sequence[str]) -> str:
    return values[0] if len(values) == 1 else f"{', '.join(values[:-1])} or {values[-1]}"


def choice(*values: str) -> Parser:
    def parse(key: str, text: str) -> str:
        if text not in values:
            raise UsageError(f"`{key}` must be {_one_of(values)}, got {text!r}")
        return text
    return parse


def path(key: str, text: str) -> str:
    if not text:
        raise UsageError(f"`{key}` must be a path, got an empty value")
    return text


def integers(low: int | None = None) -> Parser:
    """A comma list of integers (at least ``low``) -> a tuple: ``threads=1,2``."""
    kind = _integer_kind(low).removeprefix("an ").removeprefix("a ").replace("integer", "integers")

    def parse(key: str, text: str) -> tuple[int, ...]:
        try:
            values = tuple(int(t) for t in text.split(","))
        except ValueError:
            values = ()
        if not values or (low is not None and any(v < low for v in values)):
            raise UsageError(f"`{key}` must be a comma list of {kind}, got {text!r}")
        return values
    return parse


def choices(*values: str) -> Parser:
    """A comma list of some of ``values`` -> a tuple: ``backends=torch,cpp``."""
    def parse(key: str, text: str) -> tuple[str, ...]:
        picked = tuple(text.split(","))
        bad = [p for p in picked if p not in values]
        if bad:
            raise UsageError(f"`{key}` must be a comma list from {', '.join(values)}, got {bad[0]!r} in {text!r}")
        return picked
    return parse


def device(*, auto: bool = False) -> Parser:
    """``cpu``, ``cuda`` or ``cuda:N`` (and ``auto`` when allowed)."""
    expected = ("auto, " if auto else "") + "cpu, cuda or cuda:N"

    def parse(key: str, text: str) -> str:
        t = text.strip().lower()
        if t in ("cpu", "cuda") or (auto and t == "auto") or (t.startswith("cuda:") and t[5:].isdigit()):
            return t
        raise UsageError(f"`{key}` must be {expected}, got {text!r}")
    return parse


# ---- parsing and help ----------------------------------------------------------------------------


def parse(options: type[T], argv: Sequence[str], *, prog: str) -> T:
    """``key=value`` arguments -> an ``options`` dataclass instance. Raises ``UsageError`` naming the
    argument on anything it cannot use: not key=value, unknown key (with the closest known one),
    a key given twice, a value of the wrong type, a missing required key."""
    fields = {f.name: f for f in dataclasses.fields(options)}
    values: dict[str, Any] = {}
    for arg in argv:
        key, sep, text = arg.removeprefix("--").partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            hint = f"write {key}=VALUE; " if key in fields else ""
            raise UsageError(f"argument {arg!r} is not of the form key=value ({hint}see {prog} --help)")
        if key not in fields:
            raise UsageError(f"unknown argument `{key}`{did_you_mean(key, list(fields))}")
        if key in values:
            raise UsageError(f"argument `{key}` given twice")
        meta = fields[key].metadata
        values[key] = None if meta["nullable"] and text.strip().lower() in NULLS else meta["parse"](key, text)
    for key, f in fields.items():
        if f.metadata.get("required") and values.get(key) is None:
            raise UsageError(f"missing required argument `{key}` ({key}=...: {f.metadata['help']})")
    return options(**values)


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def usage(options: type, *, synopsis: str, summary: str = "") -> str:
    """The ``--help`` text: the synopsis, a summary, then every field with its help and default."""
    fields = dataclasses.fields(options)
    width = max(len(f.name) for f in fields)
    lines = [f"usage: {synopsis}", ""] + ([summary.strip(), ""] if summary.strip() else [])
    lines.append("arguments (key=value):")
    for f in fields:
        shown = "required" if f.metadata.get("required") else f"default {_shown(f.default)}"
        lines.append(f"  {f.name:<{width}}  {f.metadata['help']} [{shown}]")
    return "\n".join(lines)


def wants_help(argv: Sequence[str]) -> bool:
    return any(a in HELP_FLAGS for a in argv)


def run(body: Callable[[T], object], options: type[T], argv: Sequence[str] | None, *, prog: str, synopsis: str,
        summary: str = "") -> int:
    """A console entry: ``--help`` prints ``usage`` (0); otherwise ``body(parse(...))`` (0), and a
    ``UsageError`` from either prints ``PROG: error: ...`` on stderr (2)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if wants_help(args):
        print(usage(options, synopsis=synopsis, summary=summary))
        return 0
    try:
        body(parse(options, args, prog=prog))
    except UsageError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    return 0
