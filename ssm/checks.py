"""Argument checks shared by every level of the package (a leaf: imports nothing from ``ssm``).

Each raises ``ValueError`` naming the owner, the argument and what was expected, so a bad value in
a config or a constructor call fails once, at the top, with the valid choices in the message.
"""

from __future__ import annotations

import math
from typing import get_args


def check_choice(owner: str, name: str, value, options) -> None:
    """``value`` must be one of ``options``: a ``Literal[...]`` type or a tuple/list of values."""
    choices = get_args(options) if not isinstance(options, (tuple, list)) else options
    if value not in choices:
        raise ValueError(f"{owner}: `{name}` must be one of {', '.join(map(repr, choices))}; got {value!r}")


def check_size(owner: str, name: str, value, *, even: bool = False, why: str = "") -> None:
    """A positive integer size argument (``d_model``, ``d_state``, ...), even when ``even``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}: `{name}` must be a positive integer, got {value!r}")
    if even and value % 2:
        raise ValueError(f"{owner}: `{name}` must be even{why}, got {value}")


def check_rate(owner: str, rate) -> float:
    """A sampling-rate factor: a finite number > 0 (dt is multiplied by it)."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate <= 0:
        raise ValueError(f"{owner}: `rate` must be a finite number > 0 (dt is scaled by it), got {rate!r}")
    return float(rate)
