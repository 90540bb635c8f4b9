"""``ssm-demo``: a one-minute tour of the ops, end to end with autograd.

Fits a diagonal state-space convolution kernel (S4D parameterisation, ZOH, arXiv 2206.11893)
to the impulse response of a damped two-tone filter: the kernel comes from
``ssm.ops.vandermonde``, the filtering from ``ssm.ops.fftconv``, and Adam does the rest.
Prints which backends served, the loss going down, and the final relative error.

    ssm-demo [length=2048] [d_state=64] [steps=300] [seed=0]
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence

import torch

from .. import ops
from . import args
from .args import integer, option


def target_filter(length: int) -> torch.Tensor:
    t = torch.arange(length, dtype=torch.float32)
    return torch.exp(-t / 300) * (torch.sin(2 * math.pi * t / 50) + 0.5 * torch.cos(2 * math.pi * t / 170)) / 10


@dataclasses.dataclass
class Options:
    length: int = option(2048, integer(1), "sequence length L")
    d_state: int = option(64, integer(2), "state size N (N/2 conjugate pairs)")
    steps: int = option(300, integer(0), "Adam steps")
    seed: int = option(0, integer(0), "seed of the noise and the initialisation")


def demo(options: Options) -> float:
    """Fit the kernel; returns its final relative error."""
    torch.manual_seed(options.seed)

    print("backends:")
    for name, status in ops.backends().items():
        print(f"  {name:6s} {status}")

    L, pairs = options.length, options.d_state // 2
    k_true = target_filter(L)
    u = torch.randn(8, 1, L)  # (B, H, L) white noise
    y = ops.fftconv(u, k_true[None])  # (B, H, L) filtered noise

    # S4D-Lin initialisation: A_n = -1/2 + i pi n, log-uniform dt, complex normal C
    log_dt = torch.nn.Parameter(torch.tensor(math.log(1e-2)))
    a_real = torch.nn.Parameter(torch.full((pairs,), math.log(0.5)))
    a_imag = torch.nn.Parameter(math.pi * torch.arange(pairs, dtype=torch.float32))
    c = torch.nn.Parameter(torch.randn(pairs, dtype=torch.complex64) * 0.5**0.5)
    opt = torch.optim.Adam([log_dt, a_real, a_imag, c], lr=1e-2)

    def kernel() -> torch.Tensor:
        A = torch.complex(-torch.exp(a_real), a_imag)  # (N/2,)
        dtA = A * torch.exp(log_dt)
        return ops.vandermonde(c * (torch.exp(dtA) - 1) / A, dtA, L)  # (L,)

    start = time.perf_counter()
    for step in range(options.steps + 1):
        loss = torch.mean((ops.fftconv(u, kernel()[None]) - y) ** 2) / torch.mean(y**2)
        if step % max(1, options.steps // 6) == 0:
            print(f"step {step:4d}  relative MSE {loss.item():.4f}")
        if step < options.steps:
            opt.zero_grad()
            loss.backward()
            opt.step()
    err = (kernel().detach() - k_true).norm() / k_true.norm()
    print(f"fitted a {options.d_state}-state diagonal SSM to a length-{L} filter in "
          f"{time.perf_counter() - start:.1f} s: kernel relative error {err:.3f}")
    return float(err)


def main(argv: Sequence[str] | None = None) -> int:
    return args.run(demo, Options, argv, prog="ssm-demo", synopsis="ssm-demo [key=value ...]",
                    summary=__doc__.split("\n\n")[1])


if __name__ == "__main__":
    raise SystemExit(main())
