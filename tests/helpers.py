"""Shared test helpers: one tolerance table, input generators, and the backends to test."""

from __future__ import annotations

import contextlib
import logging
import os

import pytest
import torch

# Every numerical comparison in tests/ takes its tolerance from this file: the dtype table RTOL (a
# `factor=` beside a call says why that comparison needs more headroom), or one of the named entries
# after it for tolerances that are not about the dtype under test. No test writes its own number.

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

# float64 against a closed form or an identity that holds exactly (HiPPO matrices and their
# diagonalisations, an annihilated polynomial, an adjoint pair): at most a few hundred roundings of
# eps = 2.2e-16 on O(1) values, measured <= 1e-13, so 1e-12 (absolute on O(1) values, or normwise)
# keeps headroom while an entry off in its 4th digit fails by eight orders of magnitude.
CLOSED_FORM = 1e-12

# torch.autograd.gradcheck in float64, tighter than its defaults (atol 1e-5, rtol 1e-3): central
# differences with step 1e-6 err by ~eps/step + step^2 |f'''| ~ 1e-10 on these smooth O(1) maps.
GRADCHECK = {"eps": 1e-6, "atol": 1e-6, "rtol": 1e-4}


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |a - e| / max |e| (normwise, in float64)."""
    a, e = actual.detach().to(torch.complex128), expected.detach().to(torch.complex128)
    if e.numel() == 0:  # nothing to differ (assert_close checks the shapes)
        return 0.0
    scale = e.abs().max().item()
    return (a - e).abs().max().item() / (scale if scale > 0 else 1.0)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, tol: torch.dtype | float, what: str = "",
                 factor: float = 1.0):
    """rel_err(actual, expected) <= factor * RTOL[tol] for a dtype ``tol``, or factor * tol for a named entry."""
    limit = (RTOL[tol] if isinstance(tol, torch.dtype) else tol) * factor
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert not torch.isnan(actual).any(), f"{what}: NaN in output"
    err = rel_err(actual, expected)
    assert err <= limit, f"{what}: relative error {err:.3e} > {limit:.1e} ({tol})"


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
