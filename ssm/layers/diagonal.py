"""Diagonal SSM layers: S4D (arXiv 2206.11893) and S4-PTD (arXiv 2310.01698)."""

from __future__ import annotations

import torch

from .. import hippo
from ..kernels.diagonal import DiagonalSSM, Disc, DtTransform, Init, RealTransform
from ..checks import check_size
from .base import Activation, Final, SSMBlock


class S4D(SSMBlock):
    """S4D layer: diagonal SSM core (Vandermonde kernel, ZOH or bilinear) inside the S4 block.

    ``x: (B, L, d_model) -> (y, state)``. ``d_state`` counts real dimensions: the layer keeps
    d_state/2 complex modes (conjugate pairs). Defaults follow the S4D paper: S4D-LegS init,
    ZOH, exp real part, dt log-uniform in [1e-3, 1e-1] with dt = exp(inv_dt) (``dt_transform=
    "softplus"`` is the s4 reference config's choice), SSM lr 1e-3 with no weight decay, GELU then
    GLU. ``l_max`` never limits the input (the kernel is exact at every length).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        *,
        init: Init = "legs",
        disc: Disc = "zoh",
        real_transform: RealTransform = "exp",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dt_transform: DtTransform = "exp",
        lr: float | None = 1e-3,
        n_ssm: int = 1,
        bidirectional: bool = False,
        l_max: int | None = None,
        dropout: float = 0.0,
        activation: Activation = "gelu",
        final: Final = "glu",
        device=None,
        dtype=None,
    ):
        check_size(type(self).__name__, "d_model", d_model)
        check_size(type(self).__name__, "d_state", d_state, even=True, why=" (the layer keeps d_state/2 complex modes, one per conjugate pair)")
        core = DiagonalSSM(
            d_model, d_state, init=init, disc=disc, real_transform=real_transform, dt_min=dt_min,
            dt_max=dt_max, dt_transform=dt_transform, lr=lr, n_ssm=n_ssm, bidirectional=bidirectional, l_max=l_max, device=device, dtype=dtype,
        )
        super().__init__(core, activation=activation, final=final, dropout=dropout, device=device, dtype=dtype)


class S4PTD(SSMBlock):
    """S4-PTD layer: the S4D kernel with the perturb-then-diagonalise HiPPO-LegS initialisation.

    ``d_state`` full complex modes (no conjugate halving; the kernel keeps its 2 Re), with
    Lambda, V from ``ssm.hippo.ptd(d_state)``, B = V^-1 b (b_n = sqrt(2n+1)) folded into
    C = randn V (so B is the all-ones vector), as in the paper's S4-PTD.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        *,
        disc: Disc = "zoh",
        real_transform: RealTransform = "exp",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dt_transform: DtTransform = "exp",
        lr: float | None = 1e-3,
        n_ssm: int = 1,
        bidirectional: bool = False,
        l_max: int | None = None,
        dropout: float = 0.0,
        activation: Activation = "gelu",
        final: Final = "glu",
        device=None,
        dtype=None,
    ):
        check_size(type(self).__name__, "d_model", d_model)
        check_size(type(self).__name__, "d_state", d_state)
        Lambda, V, V_inv = hippo.ptd(d_state)  # (n,), (n, n), (n, n)
        b = torch.sqrt(2 * torch.arange(d_state, dtype=torch.float64) + 1).to(V.dtype)  # HiPPO-LegS B
        B_tilde = V_inv @ b  # (n,)
        core = DiagonalSSM(
            d_model, d_state, disc=disc, real_transform=real_transform, dt_min=dt_min, dt_max=dt_max,
            dt_transform=dt_transform, lr=lr, n_ssm=n_ssm, bidirectional=bidirectional, l_max=l_max,
            modes=(Lambda, torch.ones_like(B_tilde)), c_basis=V * B_tilde, device=device, dtype=dtype,
        )
        super().__init__(core, activation=activation, final=final, dropout=dropout, device=device, dtype=dtype)
