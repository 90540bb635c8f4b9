"""Backbones built from the layers: the residual SequenceModel, SaShiMi (arXiv 2202.09729),
SpaceTime (arXiv 2303.09489) and the LRA retrieval dual encoder; plus autoregressive sampling."""

from .generation import FastStepper, sample, sample_token
from .retrieval import RetrievalClassifier
from .sashimi import SaShiMi, SaShiMiState
from .sequence import ResidualBlock, SequenceModel
from .spacetime import SpaceTime

__all__ = [
    "FastStepper", "ResidualBlock", "RetrievalClassifier", "SaShiMi", "SaShiMiState", "SequenceModel", "SpaceTime",
    "sample", "sample_token",
]
