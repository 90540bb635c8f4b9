"""``trainer.precision=bf16-mixed``: the run works, and the SSM kernel math stays in float32
under autocast (only the pointwise linears run in bfloat16)."""

import pytest
import torch
from helpers import ROUNDOFF, RTOL, assert_close, rel_err

import ssm
from ssm.train.cli import train

LAYERS = {
    "S4": lambda: ssm.S4(16, d_state=8),
    "S4D": lambda: ssm.S4D(16, d_state=8),
    "S5": lambda: ssm.S5(16, d_state=8),
    "Companion": lambda: ssm.CompanionSSM(16, d_state=8),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_core_runs_in_float32_under_bf16_autocast(name):
    torch.manual_seed(0)
    layer = LAYERS[name]()
    seen = {}
    layer.core.register_forward_hook(lambda mod, args, out: seen.update(dtype=(out[0] if isinstance(out, tuple) else out).dtype))
    u = torch.randn(2, 16, 64)  # (B, H, L), what the block hands its core
    reference = layer.core(u)
    reference = reference[0] if isinstance(reference, tuple) else reference
    x = torch.randn(2, 64, 16)
    y_float32, _ = layer(x, state=layer.default_state(2))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = layer.core(u)
        inside = inside[0] if isinstance(inside, tuple) else inside
        y, _ = layer(x, state=layer.default_state(2))
    assert seen["dtype"] == torch.float32 and inside.dtype == torch.float32
    assert rel_err(inside, reference) <= ROUNDOFF[torch.float32]  # no bfloat16 rounding inside
    # the whole layer: only the bfloat16 linears' rounding away from the float32 run
    assert_close(y.float(), y_float32, torch.bfloat16, f"{name} under bf16 autocast vs float32")


def test_bf16_mixed_run_matches_the_float32_run(compose_cfg, tmp_path):
    """One training step and the evaluation in bf16-mixed give the float32 run's metrics, up to
    bfloat16 rounding."""
    common = ["debug=fast", "model.d_model=16", "model.n_layers=2", "model.layer.d_state=16"]
    mixed = train(compose_cfg([*common, "trainer.precision=bf16-mixed", f"output_dir={tmp_path / 'bf16'}"]))
    full = train(compose_cfg([*common, f"output_dir={tmp_path / 'fp32'}"]))
    losses = sorted(k for k in full if k.endswith("loss"))
    assert losses and set(mixed) == set(full)
    for key in losses:
        assert mixed[key] == pytest.approx(full[key], rel=RTOL[torch.bfloat16]), key
