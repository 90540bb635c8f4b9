"""S5 and S5-PTD layers (arXiv 2208.04933, 2310.01698)."""

from __future__ import annotations

from ..kernels.s5 import S5SSM, CInit, S5Init
from ..checks import check_size
from .base import Activation, Final, SSMBlock


class S5(SSMBlock):
    """S5 layer: MIMO diagonal SSM with block-diagonal HiPPO-N init, per-state timesteps, conjugate
    symmetry, computed by a parallel scan, inside the common block.

    ``d_state`` is P before conjugate halving; ``blocks`` is J (P/J per HiPPO block).
    ``init="ptd"`` gives S5-PTD (full complex modes: needs ``conj_sym=False``).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        *,
        blocks: int = 1,
        init: S5Init = "hippo",
        conj_sym: bool = True,
        C_init: CInit = "trunc_standard_normal",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        clip_eigs: bool = False,
        lr: float | None = 1e-3,
        bidirectional: bool = False,
        dropout: float = 0.0,
        activation: Activation = "gelu",
        final: Final = "glu",
        device=None,
        dtype=None,
    ):
        name = type(self).__name__
        check_size(name, "d_model", d_model)
        check_size(name, "d_state", d_state)
        check_size(name, "blocks", blocks)
        if d_state % blocks:
            raise ValueError(f"{name}: `d_state` ({d_state}) must be divisible by `blocks` ({blocks})")
        if init == "hippo" and (d_state // blocks) % 2:
            raise ValueError(f"{name}: `d_state` / `blocks` must be even for init='hippo' (each HiPPO-LegS block "
                             f"pairs its modes in conjugates), got {d_state} / {blocks} = {d_state // blocks}")
        core = S5SSM(
            d_model, d_state, blocks=blocks, init=init, conj_sym=conj_sym, C_init=C_init, dt_min=dt_min,
            dt_max=dt_max, clip_eigs=clip_eigs, lr=lr, bidirectional=bidirectional, device=device, dtype=dtype,
        )
        super().__init__(core, activation=activation, final=final, dropout=dropout, device=device, dtype=dtype)


class S5PTD(S5):
    """S5 with the perturb-then-diagonalise initialisation per block (full modes, so ``conj_sym``
    defaults to False; True is refused by the core)."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        *,
        blocks: int = 1,
        conj_sym: bool = False,
        C_init: CInit = "trunc_standard_normal",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        clip_eigs: bool = False,
        lr: float | None = 1e-3,
        bidirectional: bool = False,
        dropout: float = 0.0,
        activation: Activation = "gelu",
        final: Final = "glu",
        device=None,
        dtype=None,
    ):
        super().__init__(
            d_model, d_state, blocks=blocks, init="ptd", conj_sym=conj_sym, C_init=C_init, dt_min=dt_min,
            dt_max=dt_max, clip_eigs=clip_eigs, lr=lr, bidirectional=bidirectional, dropout=dropout,
            activation=activation, final=final, device=device, dtype=dtype,
        )
