"""Known-answer self-test of the CUDA library, run once per process when it loads.

The CUDA kernels are checked in CI only through the CPU emulation (``ssm.ops.emulate``), never on
the user's GPU, compiler and driver. So the first time the CUDA library loads in a process, each
of its ops runs once on tiny random inputs (a few kernel launches, well under 100 ms) and is
compared with the plain-PyTorch reference (the ``*_ref`` functions) on the same device. On a mismatch the ``cuda``
backend is disabled for the process (``backend="auto"`` then takes ``torch`` for CUDA tensors),
ONE warning gives the error size, the GPU and how to report it, and ``ssm.ops.backends()`` says
why. ``SSM_CUDA_SELFTEST=0`` skips the test.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import replace

import torch

from . import _extension
from .cauchy import cauchy_ref
from .vandermonde import vandermonde_ref, vandermonde_transpose_ref

ENV = "SSM_CUDA_SELFTEST"
# Normwise relative error allowed against the reference. Loose on purpose: the test is for wrong
# results (a broken build, a miscompiled kernel: errors of order 1), not for rounding.
TOLERANCE = {torch.complex64: 1e-3, torch.complex128: 1e-9}
REPORT_HINT = (
    "please report it to the ssm maintainers (an issue on the project's repository) with the "
    "output of `python -m ssm.ops.gpucheck --out DIR`"
)


def _rel(actual: torch.Tensor, expected: torch.Tensor) -> float:
    a, e = actual.detach().to(torch.complex128), expected.detach().to(torch.complex128)
    scale = e.abs().max().item()
    err = (a - e).abs().max().item() / (scale if scale > 0 else 1.0)
    return err if err == err else float("inf")  # NaN counts as a mismatch


def errors(device: str | torch.device, ops=None) -> dict[str, float]:
    """Relative error of each compiled op on ``device`` against the PyTorch reference.

    ``ops`` defaults to ``torch.ops.ssm`` (the library under test: the CUDA one on a CUDA device).
    Sizes: 3 rows, 5 poles, 37 values of l; z on an arc of radius 1.5, poles in the left
    half-plane; each dtype against the reference evaluated in that dtype.
    """
    # The first op call of a process may come under no_grad or inference_mode; the reference
    # backward needs autograd.
    with torch.inference_mode(False), torch.enable_grad():
        return _errors(device, torch.ops.ssm if ops is None else ops)


def _errors(device, ops) -> dict[str, float]:
    gen = torch.Generator().manual_seed(1234)
    R, N, L = 3, 5, 37
    out: dict[str, float] = {}
    for dtype in (torch.complex64, torch.complex128):
        real = torch.float32 if dtype == torch.complex64 else torch.float64
        c = lambda *s: torch.randn(*s, dtype=torch.complex128, generator=gen)  # noqa: E731
        poles = lambda: torch.complex(-torch.rand(R, N, dtype=torch.float64, generator=gen) - 0.1, 3 * torch.randn(R, N, dtype=torch.float64, generator=gen))  # noqa: E731
        v, w, x = c(R, N), poles(), poles() * 0.05
        z = 1.5 * torch.exp(1j * torch.linspace(0.1, 3.0, L, dtype=torch.float64))
        grad, u = c(R, L), torch.randn(R, L, dtype=torch.float64, generator=gen)
        v, w, x, z, grad = (t.to(device=device, dtype=dtype) for t in (v, w, x, z, grad))
        u = u.to(device=device, dtype=real)
        name = str(dtype).removeprefix("torch.")

        out[f"cauchy/{name}"] = _rel(ops.cauchy(v, z, w), cauchy_ref(v, z, w))
        vr, wr = v.clone().requires_grad_(), w.clone().requires_grad_()
        want = torch.autograd.grad(cauchy_ref(vr, z, wr), (vr, wr), grad)
        got = ops.cauchy_backward(grad, v, z, w)
        out[f"cauchy_backward/{name}"] = max(_rel(g, e) for g, e in zip(got, want))
        out[f"vandermonde/{name}"] = _rel(ops.vandermonde(v, x, L), vandermonde_ref(v, x, L))
        S, T = ops.vandermonde_sums(u, x, True)
        ones = torch.ones_like(x)
        ell = torch.arange(L, device=device, dtype=real)
        out[f"vandermonde_sums/{name}"] = max(
            _rel(S, vandermonde_transpose_ref(u.to(dtype), ones, x)),
            _rel(T, vandermonde_transpose_ref((u * ell).to(dtype), ones, x)),
        )
    return out


def mismatch(device, ops=None) -> str | None:
    """None when every op agrees with the reference, else a one-line description of the worst."""
    try:
        errs = errors(device, ops)
    except RuntimeError as err:  # a kernel that fails to launch fails the test too
        return f"an op raised: {str(err).splitlines()[0]}"
    bad = {k: e for k, e in errs.items() if e > TOLERANCE[torch.complex64 if k.endswith("complex64") else torch.complex128]}
    if not bad:
        return None
    worst = max(bad, key=bad.get)
    return f"{worst} max relative error {bad[worst]:.1e} vs the PyTorch reference ({len(bad)} of {len(errs)} checks failed)"


def _device_name() -> str:
    try:
        return torch.cuda.get_device_name()
    except (RuntimeError, AssertionError):
        return "unknown GPU"


def can_run_now() -> bool:
    """False while a CUDA graph is being captured: the test's synchronising reads would break it."""
    return not (torch.cuda.is_available() and torch.cuda.is_current_stream_capturing())


def guard(status):
    """Self-test a just-loaded CUDA library; return ``status`` itself, or a disabled one."""
    if os.environ.get(ENV, "1").strip() == "0":
        return status
    problem = mismatch("cuda")
    if problem is None:
        return status
    gpu = _device_name()
    warnings.warn(
        f"ssm: the compiled CUDA kernels failed their self-test on this GPU ({gpu}): {problem}. "
        f"The cuda backend is disabled for this process; the PyTorch backend serves CUDA tensors "
        f"instead (correct, slower). This is a bug: {REPORT_HINT}. "
        f"{ENV}=0 skips the self-test.",
        RuntimeWarning,
        stacklevel=4,
    )
    return replace(status, loaded=False, detail=f"disabled by the self-test on {gpu}: {problem}")


# looked up at each load (not bound now), so that a patched can_run_now / guard is the one used
_extension.GUARDS["cuda"] = (lambda: can_run_now(), lambda status: guard(status))
