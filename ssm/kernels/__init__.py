"""SSM cores: turn parameters into a convolution kernel and a recurrence, on (B, H, L) tensors."""

from .diagonal import DiagonalSSM

__all__ = ["DiagonalSSM"]
