"""Public SSM layers: (B, L, H) in, (B, L, H) out, with the stepping contract of ``base``."""

from .base import SSMBlock, SSMCore
from .companion import ClosedLoopCompanionSSM, CompanionSSM, ShiftSSM
from .diagonal import S4D, S4PTD
from .s4 import S4
from .s5 import S5, S5PTD

__all__ = [
    "S4",
    "S4D",
    "S4PTD",
    "S5",
    "S5PTD",
    "ClosedLoopCompanionSSM",
    "CompanionSSM",
    "SSMBlock",
    "SSMCore",
    "ShiftSSM",
]
