"""The CUDA library's load-time self-test (ssm.ops._selftest), exercised on CPU.

Without a GPU the self-test runs against the C++ CPU ops (the same mathematics as the CUDA
kernels), and the CUDA library's loading is replaced by a fake one, so that the pass path, the
failure path (a deliberately wrong kernel), the one-warning rule, the once-per-process rule and
the environment switch are all checked here.
"""

import warnings

import pytest
import torch

import ssm.ops
from ssm.ops import _extension, _selftest

pytestmark = pytest.mark.compiled  # checks the compiled CPU ops as a stand-in for the CUDA ones


@pytest.fixture(scope="module")
def cpu_ops():
    status = _extension.load("cpu")
    assert status.loaded, f"the compiled CPU ops must build on the test machine: {status.detail}"
    return torch.ops.ssm


class WrongCauchy:
    """The compiled ops, with the Cauchy forward off by 1% (a subtly broken kernel)."""

    def __getattr__(self, name):
        op = getattr(torch.ops.ssm, name)
        return (lambda *a: op(*a) * 1.01) if name == "cauchy" else op


def test_selftest_passes_on_correct_kernels(cpu_ops):
    errs = _selftest.errors("cpu")
    assert len(errs) == 8  # 4 ops x 2 dtypes
    for key, err in errs.items():
        assert err < _selftest.TOLERANCE[torch.complex64 if "complex64" in key else torch.complex128] / 10, key
    assert _selftest.mismatch("cpu") is None


def test_selftest_works_when_the_first_call_is_under_no_grad_or_inference_mode(cpu_ops):
    """The first op call of a process (which loads the library) may come from inference code."""
    with torch.no_grad():
        assert _selftest.mismatch("cpu") is None
    with torch.inference_mode():
        assert _selftest.mismatch("cpu") is None


def test_selftest_detects_a_wrong_kernel(cpu_ops):
    problem = _selftest.mismatch("cpu", WrongCauchy())
    assert problem is not None
    assert problem.startswith("cauchy/") and "1.0e-02" in problem and "2 of 8 checks failed" in problem


@pytest.fixture
def fake_cuda_library(monkeypatch, cpu_ops):
    """load('cuda') finds a 'loaded' CUDA library; its self-test runs the real comparison on CPU
    against whatever `ops` the test installs; returns the list of self-test calls."""
    real_load, real_mismatch = _extension._load, _selftest.mismatch
    calls = []
    state = {"ops": None}

    def fake_load(name):
        return _extension.LibraryStatus("cuda", True, "jit", "/fake/ssm_cuda_ops.so") if name == "cuda" else real_load(name)

    def mismatch_on_cpu(device, ops=None):
        calls.append(device)
        return real_mismatch("cpu", state["ops"])

    monkeypatch.setattr(_extension, "_load", fake_load)
    monkeypatch.setattr(_extension, "_STATUS", {"cpu": _extension.load("cpu")})
    monkeypatch.setattr(_extension, "_UNTESTED", {})
    monkeypatch.setattr(_selftest, "mismatch", mismatch_on_cpu)
    monkeypatch.setattr(_selftest, "_device_name", lambda: "FakeGPU 80GB")
    monkeypatch.delenv(_selftest.ENV, raising=False)
    return calls, state


def test_failed_selftest_disables_cuda_with_one_warning(fake_cuda_library):
    calls, state = fake_cuda_library
    state["ops"] = WrongCauchy()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        statuses = [_extension.load("cuda") for _ in range(3)]
        report = ssm.ops.backends()
    ours = [w for w in caught if "self-test" in str(w.message)]
    assert len(ours) == 1
    message = str(ours[0].message)
    assert "FakeGPU 80GB" in message and "1.0e-02" in message  # the GPU and the error size
    assert "python -m ssm.ops.gpucheck" in message and "SSM_CUDA_SELFTEST=0" in message  # how to report, how to skip
    assert calls == ["cuda"]
    assert not any(s.loaded for s in statuses)
    assert report["cuda"].startswith("unavailable: disabled by the self-test on FakeGPU 80GB: cauchy/")
    # the dispatcher's cuda predicate now refuses, with the reason
    reason = ssm.ops._dispatch.compiled("cuda", "cpu", [torch.zeros(1, dtype=torch.complex64)])
    assert "disabled by the self-test" in reason


def test_good_library_pays_one_selftest(fake_cuda_library):
    calls, state = fake_cuda_library
    state["ops"] = torch.ops.ssm
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a passing self-test warns about nothing
        for _ in range(5):
            assert _extension.load("cuda").loaded
        report = ssm.ops.backends()
    assert calls == ["cuda"]  # once per process, not per call
    assert report["cuda"] == "available (jit: /fake/ssm_cuda_ops.so)"


def test_selftest_can_be_skipped(fake_cuda_library, monkeypatch):
    calls, state = fake_cuda_library
    state["ops"] = WrongCauchy()
    monkeypatch.setenv(_selftest.ENV, "0")
    assert _extension.load("cuda").loaded
    assert calls == []


def test_selftest_waits_until_no_cuda_graph_is_being_captured(fake_cuda_library, monkeypatch):
    """A first load inside a CUDA graph capture defers the test (its reads would break the
    capture) to the next load outside it; the library is loaded only once."""
    calls, state = fake_cuda_library
    state["ops"] = torch.ops.ssm
    loads = []
    inner = _extension._load
    monkeypatch.setattr(_extension, "_load", lambda name: loads.append(name) or inner(name))
    capturing = [True]
    monkeypatch.setattr(_selftest, "can_run_now", lambda: not capturing[0])
    assert _extension.load("cuda").loaded and calls == []
    assert _extension.load("cuda").loaded and calls == []
    capturing[0] = False
    assert _extension.load("cuda").loaded and calls == ["cuda"]
    assert _extension.load("cuda").loaded and calls == ["cuda"]
    assert loads == ["cuda"]
