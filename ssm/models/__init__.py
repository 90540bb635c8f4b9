"""Backbones built from the layers: the residual SequenceModel (SaShiMi and SpaceTime to come)."""

from .sequence import ResidualBlock, SequenceModel

__all__ = ["ResidualBlock", "SequenceModel"]
