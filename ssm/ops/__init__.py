"""Stateless, differentiable numerical ops shared by every SSM layer.

Each op family has a plain-PyTorch ``*_ref`` beside it (obviously right, slow) and a dispatcher
that picks the best available backend (``backend="auto"|"cuda"|"cpp"|"keops"|"torch"``; the
environment variable ``SSM_BACKEND`` forces one everywhere). ``backends()`` reports what is
available here and why the rest is not.
"""

from . import _selftest  # registers the CUDA library's load-time self-test
from . import step  # the generation step's compiled ops (their fake kernels register at import)
from ._dispatch import backends
from .cauchy import cauchy, cauchy_ref
from .fftconv import fftconv, fftconv_ref
from .scan import scan, scan_ref
from .vandermonde import (
    vandermonde,
    vandermonde_ref,
    vandermonde_transpose,
    vandermonde_transpose_ref,
)

__all__ = [
    "backends",
    "cauchy",
    "cauchy_ref",
    "fftconv",
    "fftconv_ref",
    "scan",
    "scan_ref",
    "vandermonde",
    "vandermonde_ref",
    "vandermonde_transpose",
    "vandermonde_transpose_ref",
]
