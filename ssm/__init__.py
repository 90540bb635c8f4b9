"""ssm: structured state-space sequence models (S4, S4D, S4-PTD, S5, SpaceTime, SaShiMi) in PyTorch.

Layers take and return ``(batch, length, channels)`` tensors; the numerical kernels they share
live in :mod:`ssm.ops`.
"""

import logging as _logging

from . import ops

__version__ = "0.1.0"

_log = _logging.getLogger("ssm")
if not _log.handlers:  # one readable line for build messages unless the user configures logging
    _handler = _logging.StreamHandler()
    _handler.setFormatter(_logging.Formatter("%(message)s"))
    _log.addHandler(_handler)
    _log.propagate = False

__all__ = ["ops", "__version__"]
