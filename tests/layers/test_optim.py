"""Optimizer hints on SSM parameters become param groups, usable by any training loop."""

import pytest
import torch

import ssm
from ssm.optim import HINT, get_hint, param_groups, set_hint


_A = {"S5": ("core.Lambda_real", "core.Lambda_imag")}  # S5 holds Re/Im Lambda itself; the others Re A's raw parameter
_DT = {"S5": "core.log_dt"}  # S5: log dt; the S4 family: inv_dt = dt_transform^-1(dt)


@pytest.mark.parametrize("name", ["S4D", "S4", "S5", "S4PTD"])
def test_ssm_parameters_carry_hints_and_become_groups(name):
    layer = getattr(ssm, name)(8, 8)
    hinted = {n for n, p in layer.named_parameters() if hasattr(p, HINT)}
    assert {*_A.get(name, ("core.A_real_raw", "core.A_imag")), "core.B", _DT.get(name, "core.inv_dt")} <= hinted
    assert "core.C" not in hinted and "core.D" not in hinted
    groups = param_groups(layer, lr=1e-2, weight_decay=0.05)
    by_name = {n: g for g in groups for n in g["names"]}
    dt = _DT.get(name, "core.inv_dt")
    assert by_name[dt]["lr"] == 1e-3 and by_name[dt]["weight_decay"] == 0.0
    assert by_name["core.C"]["lr"] == 1e-2 and by_name["core.C"]["weight_decay"] == 0.05
    assert by_name["core.D"]["weight_decay"] == 0.0  # 1-D: no decay
    assert by_name["out.0.bias"]["weight_decay"] == 0.0
    assert by_name["out.0.weight"]["weight_decay"] == 0.05
    n_params = sum(len(g["params"]) for g in groups)
    assert n_params == len(list(layer.parameters()))
    opt = torch.optim.AdamW(groups)  # torch accepts the groups as they are
    y, _ = layer(torch.randn(2, 16, 8))
    y.sum().backward()
    opt.step()


def test_lr_none_means_no_hint_and_bad_hint_rejected():
    layer = ssm.S4D(4, 8, lr=None)
    assert all(get_hint(p) == {} for p in layer.parameters())
    with pytest.raises(ValueError, match="unknown optimizer settings"):
        set_hint(torch.nn.Parameter(torch.ones(1)), momentum=0.9)
