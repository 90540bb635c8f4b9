"""``ssm-demo``: a one-minute tour of the ops, end to end with autograd.

Fits a diagonal state-space convolution kernel (S4D parameterisation, ZOH, arXiv 2206.11893)
to the impulse response of a damped two-tone filter: the kernel comes from
``ssm.ops.vandermonde``, the filtering from ``ssm.ops.fftconv``, and Adam does the rest.
Prints which backends served, the loss going down, and the final relative error.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from . import ops


def target_filter(length: int) -> torch.Tensor:
    t = torch.arange(length, dtype=torch.float32)
    return torch.exp(-t / 300) * (torch.sin(2 * math.pi * t / 50) + 0.5 * torch.cos(2 * math.pi * t / 170)) / 10


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ssm-demo", description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=2048, help="sequence length L")
    parser.add_argument("--d-state", type=int, default=64, help="state size N (N/2 conjugate pairs)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)

    print("backends:")
    for name, status in ops.backends().items():
        print(f"  {name:6s} {status}")

    L, pairs = args.length, args.d_state // 2
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
    for step in range(args.steps + 1):
        loss = torch.mean((ops.fftconv(u, kernel()[None]) - y) ** 2) / torch.mean(y**2)
        if step % max(1, args.steps // 6) == 0:
            print(f"step {step:4d}  relative MSE {loss.item():.4f}")
        if step < args.steps:
            opt.zero_grad()
            loss.backward()
            opt.step()
    err = (kernel().detach() - k_true).norm() / k_true.norm()
    print(f"fitted a {args.d_state}-state diagonal SSM to a length-{L} filter in "
          f"{time.perf_counter() - start:.1f} s: kernel relative error {err:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
