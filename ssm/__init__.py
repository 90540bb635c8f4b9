"""ssm: structured state-space sequence models (S4, S4D, S4-PTD, S5, SpaceTime, SaShiMi) in PyTorch.

Layers take and return ``(batch, length, channels)`` tensors; the numerical kernels they share
live in :mod:`ssm.ops`.
"""

import logging as _logging

from . import models, ops, optim
from .layers import (
    S4,
    S4D,
    S4PTD,
    S5,
    S5PTD,
    ClosedLoopCompanionSSM,
    CompanionSSM,
    ShiftSSM,
)
from .models import SaShiMi, SequenceModel, SpaceTime

__version__ = "0.1.0"


def load(checkpoint_path, *, map_location="cpu", trust=False):
    """Rebuild the model of an ``ssm-train`` checkpoint from the config stored inside it. The file
    is read safely (tensors and allowlisted types only, config targets checked); ``trust=True``
    skips those checks for a file you know."""
    from .train.loading import load as _load  # Hydra only when asked for; never Lightning

    return _load(checkpoint_path, map_location=map_location, trust=trust)

_log = _logging.getLogger("ssm")
if not _log.handlers:  # one readable line for build messages unless the user configures logging
    _handler = _logging.StreamHandler()
    _handler.setFormatter(_logging.Formatter("%(message)s"))
    _log.addHandler(_handler)
    _log.propagate = False

__all__ = [
    "S4",
    "S4D",
    "S4PTD",
    "S5",
    "S5PTD",
    "ClosedLoopCompanionSSM",
    "CompanionSSM",
    "SaShiMi",
    "SequenceModel",
    "ShiftSSM",
    "SpaceTime",
    "__version__",
    "load",
    "models",
    "ops",
    "optim",
]
