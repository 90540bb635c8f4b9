"""Shared test helpers: one tolerance table, input generators, and the backends to test."""

from __future__ import annotations

import contextlib
import logging
import os

import pytest
import torch

# Every numerical comparison in tests/ takes its tolerance from this file: RTOL by the dtype under
# test (a factor beside a comparison says why it needs other headroom), ROUNDOFF by dtype for results
# that are equal up to rounding, or one of the named entries after them for tolerances that are not
# about a dtype. No test writes its own number.

# Normwise relative error allowed against a float64 reference, by the dtype under test.
# float32 math over sums of up to ~1e3-1e4 terms lands near 1e-6; the table leaves headroom for
# ill-conditioned random draws without letting a wrong formula (error ~1) through.
RTOL = {
    torch.float32: 2e-5,
    torch.complex64: 2e-5,
    torch.float64: 1e-11,
    torch.complex128: 1e-11,
    torch.bfloat16: 2e-2,
}

# Results that are equal in exact arithmetic and differ only by a few roundings: an identity or a
# closed form (HiPPO matrices and their diagonalisations, an annihilated polynomial, an adjoint
# pair), the same sums in another order or FFT length, padding that is masked away. Normwise, or
# absolute on values of order 1. float32: ~8 eps (eps = 1.2e-7), measured <= 3e-7 (an FFT of 80-128
# points reaches 6e-7 and gets 10 x); float64: measured <= 1.1e-13 after up to a few hundred roundings
# of eps = 2.2e-16. Tighter than RTOL, which is for one algorithm against another; an entry off in its
# 4th digit still fails by orders of magnitude.
ROUNDOFF = {
    torch.float32: 1e-6,
    torch.complex64: 1e-6,
    torch.float64: 1e-12,
    torch.complex128: 1e-12,
}

# torch.autograd.gradcheck in float64, tighter than its defaults (atol 1e-5, rtol 1e-3): central
# differences with step 1e-6 err by ~eps/step + step^2 |f'''| ~ 1e-10 on these smooth O(1) maps.
GRADCHECK = {"eps": 1e-6, "atol": 1e-6, "rtol": 1e-4}

# The least change a perturbation of order-1 inputs must make to the outputs that depend on it, for
# a test that the change arrives (causality, bidirectionality): three orders above float32 round-off
# (ROUNDOFF), one to three below the 0.01-1 responses these small layers give.
SIGNAL = 1e-3

# A frequency estimated from n >= 28000 independent draws (sampled tokens, a random mask): its
# standard error sqrt(p (1 - p) / n) is <= 0.003, so 0.01 is >= 3.5 of them. Each test's seed is
# fixed; the margin is for a change of seed or of the sampler's draw order.
SAMPLING = 0.01

# How far an estimate may fall from its expectation, in its standard errors: a normal one passes
# with chance 1 - 6e-7 on any seed, while a wrong scale (a factor 2 in a variance) is tens of them off.
SIGMAS = 5

# A statistic estimated from a few hundred draws: the mean of 100 Adding targets (standard error
# 0.04), a mean squared error over the ~750 windows of a test split (relative standard error
# sqrt(2 / 750) = 0.05). 0.2 is about four standard errors or more.
ESTIMATE = 0.2

# One correctly rounded conversion to float32 of a value in [-1, 1] (a 32-bit PCM sample, a scaled
# integer): at most half a unit in the last place of 1, 2^-24; relative, of any value.
HALF_ULP32 = torch.finfo(torch.float32).eps / 2

# One step of 16-bit PCM: a sample written to a 16-bit WAV and read back is off by half of it at most
# (round to nearest; measured: exactly half on a ramp).
PCM16_STEP = 2.0**-15

# A value ssm-predict writes with 6 significant digits (f"{v:.6g}") and a test reads back: half a unit
# in its 6th digit is <= 5e-6 of it, 6e-6 adds the float32 round-off (ROUNDOFF) of what was written.
SIX_DIGITS = 6e-6

# The resampler's error on a sine: its Kaiser window (beta 6, about 63 dB) ripples by ~7e-4 in the
# pass band and leaks as much in the stop band; 2e-3 (54 dB) leaves three times that.
RESAMPLING = 2e-3

# 8-bit mu-law on a signal of amplitude <= 0.5: code steps there up to 0.022 wide (the expansion's
# slope), a uniform error over them RMS <= 0.0065; 0.01 bounds that and the fitted amplitude's error.
MU_LAW_8BIT = 0.01

# The fidelity issue's bound for the S4D layer with bilinear discretisation in float32 against float64 at
# L=16384 (slowly decaying modes, log dA = 2 atanh(dtA/2)); measured 6e-5 on the output, 6e-6 on the kernel.
BILINEAR_16K = 1e-4

# A layer run with rate=r on a signal sampled r times more coarsely against the fine run's output at
# those samples (the S4 paper's zero-shot resolution change): they differ by the discretisation's
# error, measured 0.005-0.008 (S4, S4D, S5, r=2, sines of 2-7 periods in 2048 steps) against 0.27-0.47
# with the rate ignored; 0.03 leaves 3.5 x.
ZERO_SHOT_RATE = 0.03

# The optimum a seeded non-convex optimisation (PTD's perturbation, hippo.ptd_perturbation) reaches
# when run again: bit for bit on one LAPACK build, elsewhere on the landscape on another, so only its
# quality (kappa) is compared, within a quarter.
RERUN_OPTIMUM = 0.25


def quoted(figure: str):
    """A figure printed in a paper or a reference document, as ``pytest.approx``: equal up to half a
    unit in its last printed digit, ``quoted("1283.43")`` is 1283.43 +- 0.005."""
    decimals = len(figure.partition(".")[2])
    return pytest.approx(float(figure), rel=0, abs=0.5 * 10.0**-decimals)


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |a - e| / max |e| (normwise, in float64)."""
    a, e = actual.detach().to(torch.complex128), expected.detach().to(torch.complex128)
    if e.numel() == 0:  # nothing to differ (assert_close checks the shapes)
        return 0.0
    scale = e.abs().max().item()
    return (a - e).abs().max().item() / (scale if scale > 0 else 1.0)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, what: str = "", factor: float = 1.0):
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert not torch.isnan(actual).any(), f"{what}: NaN in output"
    err = rel_err(actual, expected)
    assert err <= RTOL[dtype] * factor, f"{what}: relative error {err:.3e} > {RTOL[dtype] * factor:.1e} ({dtype})"


def has_cuda() -> bool:
    return torch.cuda.is_available()


# Backends exercised on CPU tensors (the compiled ones marked: skipped on a machine with no C++
# compiler), and the CUDA one (marked, skipped without a GPU).
CPU_BACKENDS = ["torch", "cpp", "keops"]
CPU_BACKEND_PARAMS = [pytest.param(b, id=b, marks=() if b == "torch" else pytest.mark.compiled) for b in CPU_BACKENDS]
BACKEND_PARAMS = CPU_BACKEND_PARAMS + [pytest.param("cuda", id="cuda", marks=pytest.mark.cuda)]


def device_of(backend: str) -> str:
    return "cuda" if backend == "cuda" else "cpu"


def wide() -> bool:
    """SSM_TEST_WIDE=1 widens the shape grids."""
    return os.environ.get("SSM_TEST_WIDE", "") not in ("", "0")


def stable_poles(*shape, dtype=torch.complex128, generator=None) -> torch.Tensor:
    """Poles with negative real part, like a discretised SSM's."""
    re = -torch.rand(*shape, dtype=torch.float64, generator=generator) * 0.5 - 1e-3
    im = torch.randn(*shape, dtype=torch.float64, generator=generator)
    return torch.complex(re, im).to(dtype)


def crandn(*shape, dtype=torch.complex128, generator=None) -> torch.Tensor:
    return torch.randn(*shape, dtype=dtype, generator=generator)


class LogRecords(logging.Handler):
    """Every record one logger handles, with caplog's ``records`` and ``text``."""

    def __init__(self):
        super().__init__(logging.NOTSET)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def text(self) -> str:
        return "\n".join(f"{r.levelname} {r.name}: {r.getMessage()}" for r in self.records)


@contextlib.contextmanager
def capture_log(name: str, level: int = logging.INFO):
    """Catch the records of logger ``name`` (an ``ssm.*`` one) at ``level`` and above with a handler of
    its own. The package's ``ssm`` logger does not propagate to the root, and whether pytest's caplog
    reaches such a logger differs between pytest versions (9.2 attaches to it, 9.0 does not), so
    adding ``caplog.handler`` counts records once or twice depending on the version."""
    logger, handler = logging.getLogger(name), LogRecords()
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


def compose_config(overrides: list[str]):
    """The trainer's Hydra config with ``overrides``, outside any test fixture (global state cleared)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from ssm.train.cli import config_dir

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            return compose("config", overrides=overrides)
    finally:
        GlobalHydra.instance().clear()
