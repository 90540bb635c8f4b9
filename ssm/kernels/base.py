"""What every SSM core provides (the contract ``ssm.layers.SSMBlock`` wraps), its step cache and
its step form. Lives below the layers so cores never import them."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..checks import check_rate


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


@dataclasses.dataclass(frozen=True)
class StepForm:
    """One discrete step of a linear SSM core, the single place its recurrence is written down:

        x' = dA * x + sum_r Re(F_r . x) G_r + dB u,     y = scale * Re(C . x') + D u

    ``a . b`` sums over the state index. Per-channel cores (S4, S4D, S4-PTD; ``mimo=False``): dA,
    dB, C are (H, n) and each channel has its own n-dimensional state (B, H, n); F, G (r, H, n) hold
    a rank-r real-linear correction (S4's DPLR step after its Woodbury solve; None for diagonal
    cores). The MIMO core (S5; ``mimo=True``): dA (n,), dB (n, H), C (H, n) and one state (B, n)
    shared by the channels. ``scale`` is 2 where the state keeps one member of each conjugate pair
    (y sums the pair), else 1. The core's ``step``, ``ssm.models.generation``'s batched banks and
    anything else that steps derive what they need from this form."""

    dA: torch.Tensor
    dB: torch.Tensor
    C: torch.Tensor
    D: torch.Tensor
    scale: float
    mimo: bool = False
    F: torch.Tensor | None = None
    G: torch.Tensor | None = None

    def to(self, complex_dtype: torch.dtype) -> "StepForm":
        """The same form with complex tensors in ``complex_dtype`` and D in its real dtype."""
        real = torch.float64 if complex_dtype == torch.complex128 else torch.float32
        conv = lambda t: None if t is None else t.detach().to(complex_dtype).contiguous()
        return dataclasses.replace(self, dA=conv(self.dA), dB=conv(self.dB), C=conv(self.C),
                                   D=self.D.detach().to(real).clone(), F=conv(self.F), G=conv(self.G))

    def advance(self, u: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """u (B, H), x (B, H, n) or (B, n) for MIMO -> (y (B, H), x')."""
        uc = u.to(self.dB.dtype)
        if self.mimo:
            x = self.dA * x + uc @ self.dB.transpose(0, 1)  # (B, n)
            y = (x @ self.C.transpose(0, 1)).real  # (B, H)
        else:
            x_new = self.dA * x + self.dB * uc.unsqueeze(-1)  # (B, H, n)
            if self.F is not None:
                psi = torch.einsum("rhn,bhn->brh", self.F, x).real  # (B, r, H)
                x_new = x_new + torch.einsum("brh,rhn->bhn", psi.to(x.dtype), self.G)
            x = x_new
            y = torch.einsum("hn,bhn->bh", self.C, x).real  # (B, H)
        return self.scale * y + self.D * u.to(self.D.dtype), x


class SSMCore(nn.Module):
    """What a core provides; see ``SSMBlock``. Shapes use (B, H, L) inside the core."""

    d_model: int
    causal: bool = True
    # What ``step_form`` returns: "channel" (per-channel StepForm), "dense" (MIMO StepForm), or
    # None (the core steps by its own means and has no StepForm).
    form_kind: str | None = None
    # Parameters renamed since an earlier release, old name -> new name: checkpoints saved under
    # the old names still load (``_load_from_state_dict`` maps them).
    renamed_parameters: dict[str, str] = {}

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for old, new in self.renamed_parameters.items():
            if prefix + old in state_dict and prefix + new not in state_dict:
                state_dict[prefix + new] = state_dict.pop(prefix + old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, u: torch.Tensor, state=None, rate: float = 1.0):  # (B, H, L) -> (B, H, L), next state
        """``rate``: the continuous-time system sampled ``rate`` times more coarsely (dt * rate);
        discrete-time cores accept only 1."""
        raise NotImplementedError

    def default_state(self, batch: int, *, device=None):
        raise NotImplementedError

    def step_form(self, rate: float = 1.0) -> StepForm:
        """The discrete step in complex128 (no autograd); linear cores implement this."""
        raise NotImplementedError

    def _check_steppable(self) -> None:
        if not self.causal:
            raise ValueError(f"{type(self).__name__}: a bidirectional layer cannot be stepped")

    def setup_step(self, rate: float = 1.0) -> None:
        """Cache ``step_form(rate)`` in the working precision for ``step`` (the rate sticks until
        the next ``setup_step``, also when a parameter change makes ``step`` refresh the cache)."""
        self._step_rate = check_rate(type(self).__name__, rate)  # step_form refuses a bidirectional core
        with torch.no_grad():
            self._cache_step(self.step_form(rate).to(self.complex_dtype))

    def step(self, u: torch.Tensor, state):
        """One time step: u (B, H), state as ``default_state`` -> y (B, H), next state."""
        (form,) = self._step_matrices()
        y, state = form.advance(u, state)
        return y.to(u.dtype), state

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
    _step_rate: float = 1.0

    def parameters_version(self) -> tuple:
        """Changes whenever a parameter is modified in place or replaced (training, loading)."""
        return tuple((p._version, p.data_ptr()) for p in self.parameters())

    def _cache_step(self, *matrices) -> None:
        self._step_cache = (self.parameters_version(), *matrices)

    def _step_matrices(self) -> tuple:
        """What ``setup_step`` computed, recomputed first if the parameters changed since."""
        if self._step_cache is None or self._step_cache[0] != self.parameters_version():
            self.setup_step(self._step_rate)
        return self._step_cache[1:]
