"""S4 layer (arXiv 2111.00396): DPLR core with the Cauchy kernel, in the Hurwitz form (Q = P)."""

from __future__ import annotations

from ..kernels.diagonal import DtTransform
from ..kernels.dplr import DPLRSSM
from ..checks import check_size
from .base import Activation, Final, SSMBlock


class S4(SSMBlock):
    """S4 layer: HiPPO-LegS DPLR core (bilinear, Cauchy + Woodbury kernel) inside the common block.

    ``l_max`` sets the kernel length the C~ parameter is prepared for; a longer input doubles it
    (C~_2L = C~_L (I + dA^L)) instead of failing. Defaults follow the s4 repository's layer
    config: d_state 64, rank 1, dt log-uniform in [1e-3, 1e-1], SSM lr 1e-3 with no weight decay,
    GELU then GLU; dt = exp(inv_dt) by default, where that config uses ``dt_transform="softplus"``.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        *,
        l_max: int | None = None,
        rank: int = 1,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dt_transform: DtTransform = "exp",
        lr: float | None = 1e-3,
        n_ssm: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        activation: Activation = "gelu",
        final: Final = "glu",
        device=None,
        dtype=None,
    ):
        check_size(type(self).__name__, "d_model", d_model)
        check_size(type(self).__name__, "d_state", d_state, even=True, why=" (the layer keeps d_state/2 complex modes, one per conjugate pair)")
        core = DPLRSSM(
            d_model, d_state, rank=rank, dt_min=dt_min, dt_max=dt_max, dt_transform=dt_transform, lr=lr, n_ssm=n_ssm,
            bidirectional=bidirectional, l_max=l_max, device=device, dtype=dtype,
        )
        super().__init__(core, activation=activation, final=final, dropout=dropout, device=device, dtype=dtype)
