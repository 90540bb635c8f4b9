"""Long inputs: S4D and S4 at d_model=256, d_state=64 run forward+backward at L=16384, batch 2,
on CPU within 8 GB. Each run is a fresh subprocess so its peak RSS is its own."""

import json
import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent(
    """
    import json, resource, sys, time, torch
    import ssm
    name = sys.argv[1]
    torch.manual_seed(0)
    layer = getattr(ssm, name)(256, 64)
    x = torch.randn(2, 16384, 256, requires_grad=True)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    y, _ = layer(x)
    y.square().mean().backward()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    finite = all(torch.isfinite(p.grad).all().item() for p in layer.parameters())
    print(json.dumps(dict(peak_bytes=peak, seconds=seconds, finite=finite, shape=list(y.shape))))
    """
)


@pytest.mark.parametrize("name", ["S4D", "S4"])
def test_forward_backward_at_16k_within_8gb(name):
    proc = subprocess.run([sys.executable, "-c", PROBE, name], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["shape"] == [2, 16384, 256]
    assert out["finite"], "non-finite gradients"
    assert out["peak_bytes"] < 8 * 2**30, f"peak RSS {out['peak_bytes'] / 2**30:.2f} GB"
    print(f"{name}: peak RSS {out['peak_bytes'] / 2**30:.2f} GB, fwd+bwd {out['seconds']:.1f} s")
