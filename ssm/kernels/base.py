"""What every SSM core provides (the contract ``ssm.layers.SSMBlock`` wraps), its step cache, and
the one validator for ``Literal`` choices. Lives below the layers so cores never import them."""

from __future__ import annotations

from typing import get_args

import torch
from torch import nn


def check_choice(owner: str, name: str, value, options) -> None:
    """Validate a Literal[...] argument once, with the valid choices in the message."""
    choices = get_args(options) if not isinstance(options, (tuple, list)) else options
    if value not in choices:
        raise ValueError(f"{owner}: `{name}` must be one of {', '.join(map(repr, choices))}; got {value!r}")


def check_size(owner: str, name: str, value, *, even: bool = False, why: str = "") -> None:
    """A positive integer size argument (``d_model``, ``d_state``, ...), even when ``even``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}: `{name}` must be a positive integer, got {value!r}")
    if even and value % 2:
        raise ValueError(f"{owner}: `{name}` must be even{why}, got {value}")


def working_dtype(module: nn.Module) -> torch.dtype:
    """The real dtype SSM math runs in for ``module``'s parameters: float64 for float64 parameters
    (``dtype=torch.float64``, ``.double()``), else float32 (never half precision, also for
    half/bf16 parameters)."""
    p = next(module.parameters(), None)
    return torch.float64 if p is not None and p.dtype == torch.float64 else torch.float32


def place(module: nn.Module, device, dtype) -> None:
    """Move/cast freshly built parameters as the constructors' ``device=``/``dtype=`` ask."""
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"{type(module).__name__}: `dtype` must be a floating-point torch dtype, got {dtype!r}")
    if device is not None or dtype is not None:
        module.to(device=device, dtype=dtype)


class SSMCore(nn.Module):
    """What a core provides; see ``SSMBlock``. Shapes use (B, H, L) inside the core."""

    d_model: int
    causal: bool = True
    max_length: int | None = None  # longest input the core can serve, None = any

    def forward(self, u: torch.Tensor, state=None):  # (B, H, L) -> (B, H, L), next state
        raise NotImplementedError

    def default_state(self, batch: int, *, device=None):
        raise NotImplementedError

    def setup_step(self) -> None:
        raise NotImplementedError

    def step(self, u: torch.Tensor, state):  # (B, H) -> (B, H), next state
        raise NotImplementedError

    # -- working precision ----------------------------------------------------------------------
    @property
    def real_dtype(self) -> torch.dtype:
        return working_dtype(self)

    @property
    def complex_dtype(self) -> torch.dtype:
        return torch.complex128 if self.real_dtype == torch.float64 else torch.complex64

    def _place(self, device, dtype) -> None:
        place(self, device, dtype)

    # -- the step cache shared by the cores ------------------------------------------------------
    _step_cache: tuple | None = None

    def parameters_version(self) -> tuple:
        """Changes whenever a parameter is modified in place or replaced (training, loading)."""
        return tuple((p._version, p.data_ptr()) for p in self.parameters())

    def _cache_step(self, *matrices) -> None:
        self._step_cache = (self.parameters_version(), *matrices)

    def _step_matrices(self) -> tuple:
        """What ``setup_step`` computed, recomputed first if the parameters changed since."""
        if self._step_cache is None or self._step_cache[0] != self.parameters_version():
            self.setup_step()
        return self._step_cache[1:]
