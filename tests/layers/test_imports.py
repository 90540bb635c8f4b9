"""Layers and ops work without Lightning or Hydra ever being imported."""

import subprocess
import sys

CODE = """
import sys, torch, ssm
y, _ = ssm.S4D(8, 8)(torch.randn(2, 16, 8))
ssm.ops.cauchy(torch.randn(2, 3, dtype=torch.complex64), torch.randn(5, dtype=torch.complex64), torch.randn(2, 3, dtype=torch.complex64))
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("lightning", "pytorch_lightning", "hydra", "omegaconf"))
print("HEAVY", heavy)
"""


def test_layers_do_not_import_the_trainer_stack():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout, out.stdout
