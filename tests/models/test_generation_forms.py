"""The banks' reordered step (``ssm.models.generation.forms``) equals the cores' own ``StepForm``."""

from __future__ import annotations

import pytest
import torch

from ssm.kernels.diagonal import DiagonalSSM
from ssm.kernels.dplr import DPLRSSM
from ssm.kernels.s5 import S5SSM
from ssm.models.generation.forms import ChannelForm, DenseForm

from helpers import ROUNDOFF, rel_err


def _cores():
    torch.manual_seed(0)
    return {
        "s4d": DiagonalSSM(6, 8).double(),
        "s4": DPLRSSM(6, 8, l_max=32).double(),
        "s4-rank2": DPLRSSM(6, 8, rank=2).double(),
        "s5": S5SSM(6, 8).double(),
    }


@pytest.mark.parametrize("name", ["s4d", "s4", "s4-rank2", "s5"])
def test_bank_form_matches_step_form(name):
    core = _cores()[name]
    form = core.step_form()
    g = torch.Generator().manual_seed(1)
    u = torch.randn(3, 6, dtype=torch.float64, generator=g)
    x = torch.randn(core.default_state(3).shape, dtype=torch.complex128, generator=g)
    y_ref, x_ref = form.advance(u, x)
    if core.form_kind == "channel":
        cf = ChannelForm.of(form)
        psi = torch.einsum("hmn,bhn->bhm", cf.F, x).real  # (B, H, m)
        y = psi[..., -1] + cf.deff * u
        x_new = cf.E * x + torch.einsum("bhm,hmn->bhn", psi[..., :-1].to(x.dtype), cf.U[:, :-1]) + cf.U[:, -1] * u[..., None]
    else:
        df = DenseForm.of(form)
        y = (x @ df.Cy).real + u @ df.Deff
        x_new = df.dA * x + u.to(x.dtype) @ df.dB_t
    # the same products summed in another order
    assert y.shape == y_ref.shape and rel_err(y, y_ref) <= ROUNDOFF[torch.float64], f"{name} output"
    assert x_new.shape == x_ref.shape and rel_err(x_new, x_ref) <= ROUNDOFF[torch.complex128], f"{name} state"


@pytest.mark.parametrize("name", ["s4d", "s4", "s5"])
def test_core_step_is_its_step_form(name):
    """``step`` runs the cached ``step_form()`` in the working precision (float64 here: exact)."""
    core = _cores()[name]
    x = core.default_state(2) + 0.1
    u = torch.randn(2, 6, dtype=torch.float64)
    y, x1 = core.step(u, x)
    y_ref, x1_ref = core.step_form().advance(u, x)
    tol = ROUNDOFF[torch.float64]
    assert torch.allclose(y, y_ref, rtol=tol, atol=0) and torch.allclose(x1, x1_ref, rtol=tol, atol=0)


def test_forms_refuse_the_other_kind():
    cores = _cores()
    with pytest.raises(ValueError, match="DenseForm"):
        ChannelForm.of(cores["s5"].step_form())
    with pytest.raises(ValueError, match="ChannelForm"):
        DenseForm.of(cores["s4d"].step_form())
