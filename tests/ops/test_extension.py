"""The compiled library: custom-op registration (opcheck), backend forcing, build fallback, CUDA build."""

import importlib
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from helpers import ROUNDOFF, RTOL, rel_err

import ssm.ops
from ssm.ops import _extension, cauchy, vandermonde, vandermonde_transpose


@pytest.fixture(scope="module")
def cpu_ops():
    status = _extension.load("cpu")
    assert status.loaded, f"the compiled CPU ops must build on the test machine: {status.detail}"
    return torch.ops.ssm


def _c(*shape, dtype=torch.complex128):
    return torch.randn(*shape, dtype=dtype)


@pytest.mark.compiled
@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_opcheck_all_ops(cpu_ops, dtype):
    real = torch.float32 if dtype == torch.complex64 else torch.float64
    v, w = _c(3, 5, dtype=dtype).requires_grad_(), _c(3, 5, dtype=dtype).requires_grad_()
    z = _c(7, dtype=dtype)
    x = (-torch.rand(3, 5) + 1j * torch.randn(3, 5)).to(dtype).requires_grad_()
    u = torch.randn(3, 9, dtype=real).requires_grad_()
    grad = _c(3, 7, dtype=dtype)
    torch.library.opcheck(cpu_ops.cauchy, (v, z, w))
    torch.library.opcheck(cpu_ops.cauchy_backward, (grad, v.detach(), z, w.detach()))
    torch.library.opcheck(cpu_ops.vandermonde, (v, x, 11))
    torch.library.opcheck(cpu_ops.vandermonde_sums, (u, x, False))
    torch.library.opcheck(cpu_ops.vandermonde_sums, (u.detach(), x.detach(), True))


@pytest.mark.compiled
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck_generation_ops(cpu_ops, dtype):
    """The SaShiMi generation ops (schemas, mutation annotations, fake kernels) on a tiny stepper's
    own buffers: an S5 tier for the chain (its input slots are separate tensors), an S4D bank."""
    import functools

    from ssm.models.generation import FastStepper
    from ssm.models.sashimi import SaShiMi

    torch.manual_seed(0)
    s5 = SaShiMi(8, 1, layer=functools.partial(ssm.S5, d_state=4)).eval()
    tier = FastStepper(s5, 2, dtype=dtype, backend="cpp").tiers[0].up
    params, kinds, eps, act, final = tier.fused
    ys, us = tier.bank.slot_lists[0]
    x = torch.randn(2, 8, dtype=dtype)
    torch.library.opcheck(cpu_ops.residual_chain, (x, params, ys, [u.clone() for u in us], kinds, eps, act, final, [], []))
    s4d = SaShiMi(8, 1, layer=functools.partial(ssm.S4D, d_state=4)).eval()
    bank = FastStepper(s4d, 2, dtype=dtype, backend="cpp").tiers[0].up.bank
    X, Acc = torch.randn_like(bank.Xr), torch.randn_like(bank.Acc)
    torch.library.opcheck(cpu_ops.siso_bank_begin, (bank.FTr, X, Acc.clone()))
    for j in (2, bank.T - 1):  # a push, the chunk end
        torch.library.opcheck(cpu_ops.siso_bank_end, (X.clone(), Acc.clone(), bank.Kd, bank.Ur, bank.ETr, bank.ETi, j))


@pytest.mark.compiled
def test_torch_compile_traces_the_custom_ops(cpu_ops):
    v, w, z = _c(4, 6), _c(4, 6), _c(9)
    x = (-torch.rand(4, 6) + 1j * torch.randn(4, 6)).to(torch.complex128)
    u = torch.randn(4, 9, dtype=torch.float64)

    def f(v, z, w, x, u):
        return cauchy(v, z, w, backend="cpp").abs().sum() + vandermonde(v, x, 9, backend="cpp").sum() + vandermonde_transpose(u, v, x, backend="cpp").abs().sum()

    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    assert rel_err(compiled(v, z, w, x, u), f(v, z, w, x, u)) <= ROUNDOFF[torch.float64]  # the same complex128 sums, traced


@pytest.mark.compiled
def test_backends_reports_every_backend():
    report = ssm.ops.backends()
    assert set(report) == {"torch", "cpp", "cuda", "keops"}
    assert report["cpp"].startswith("available")
    if not torch.cuda.is_available():
        assert report["cuda"] == "unavailable: no CUDA device"


def test_forcing_backends(monkeypatch):
    v, w, z = _c(2, 3), _c(2, 3), _c(5)
    with pytest.raises(ValueError, match="backend must be one of"):
        cauchy(v, z, w, backend="fast")
    with pytest.raises(RuntimeError, match="backend='cuda' cannot run this call: inputs are not all on cuda"):
        cauchy(v, z, w, backend="cuda")
    monkeypatch.setenv("SSM_BACKEND", "cuda")
    with pytest.raises(RuntimeError, match="SSM_BACKEND='cuda' cannot run this call"):
        cauchy(v, z, w)
    monkeypatch.setenv("SSM_BACKEND", "turbo")
    with pytest.raises(ValueError, match="SSM_BACKEND must be one of"):
        cauchy(v, z, w)
    # SSM_BACKEND does not apply to ops without that backend
    monkeypatch.setenv("SSM_BACKEND", "cpp")
    u = torch.randn(1, 2, 4)
    assert ssm.ops.fftconv(u, torch.randn(2, 4)).shape == (1, 2, 4)


@pytest.mark.compiled
def test_env_backend_selects_the_backend(monkeypatch):
    from ssm.ops import _dispatch

    cauchy_module = importlib.import_module("ssm.ops.cauchy")  # the attribute is the function

    v, w, z = _c(2, 3), _c(2, 3), _c(5)
    monkeypatch.delenv("SSM_BACKEND", raising=False)
    assert _dispatch.choose("cauchy", "auto", cauchy_module.PREDICATES, v, z, w) == "cpp"
    monkeypatch.setenv("SSM_BACKEND", "torch")
    assert _dispatch.choose("cauchy", "auto", cauchy_module.PREDICATES, v, z, w) == "torch"
    # an explicit backend= wins over the environment
    assert _dispatch.choose("cauchy", "cpp", cauchy_module.PREDICATES, v, z, w) == "cpp"


FAILING_BUILD = textwrap.dedent(
    """
    import sys, warnings, torch
    warnings.simplefilter("always")
    with warnings.catch_warnings(record=True) as caught:
        from ssm.ops import cauchy, cauchy_ref
        v, w, z = (torch.randn(2, 3, dtype=torch.complex64) for _ in range(2)), None, None
    import ssm.ops
    torch.manual_seed(0)  # a fixed draw
    v = torch.randn(2, 3, dtype=torch.complex64); w = torch.randn(2, 3, dtype=torch.complex64)
    z = torch.randn(5, dtype=torch.complex64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = cauchy(v, z, w)
        b = cauchy(v, z, w)
    ours = [w for w in caught if "ssm" in str(w.message)]
    print("N_WARNINGS", len(ours))
    print("MESSAGE", str(ours[0].message).replace(chr(10), " | ") if ours else "")
    print("CORRECT", bool(torch.allclose(a, cauchy_ref(v, z, w), rtol=float(sys.argv[1]), atol=0)))  # RTOL[complex64]
    print("BACKENDS", ssm.ops.backends()["cpp"])
    """
)


def test_failed_build_falls_back_with_one_warning_carrying_the_compiler_error(tmp_path):
    fake_cxx = tmp_path / "broken-c++"
    fake_cxx.write_text("#!/bin/sh\necho 'registration.cpp:1:1: error: simulated compiler failure' >&2\nexit 1\n")
    fake_cxx.chmod(0o755)
    env = dict(os.environ, CXX=str(fake_cxx), SSM_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("SSM_BACKEND", None)
    proc = subprocess.run([sys.executable, "-c", FAILING_BUILD, repr(RTOL[torch.complex64])], env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    out = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)
    assert out["N_WARNINGS"] == "1"
    assert "simulated compiler failure" in out["MESSAGE"]
    assert "python -m ssm.ops.build" in out["MESSAGE"]
    assert out["CORRECT"] == "True"
    assert out["BACKENDS"].startswith("unavailable: build failed")


def test_no_build_switch(tmp_path):
    env = dict(os.environ, SSM_NO_BUILD="1", SSM_CACHE_DIR=str(tmp_path / "empty"))
    code = "import ssm.ops; print(ssm.ops.backends()['cpp'])"
    proc = subprocess.run([sys.executable, "-W", "error", "-c", code], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "SSM_NO_BUILD is set" in proc.stdout


def _nvcc_available() -> bool:
    return shutil.which("nvcc") is not None or os.path.isfile("/usr/local/cuda/bin/nvcc")


@pytest.mark.compiled
def test_cuda_sources_compile_and_link(tmp_path):
    """Every .cu file compiles and links against torch (run on CI, which has nvcc but no GPU)."""
    if not _nvcc_available():
        if os.environ.get("CI"):
            pytest.fail("CI must compile the CUDA sources, but nvcc was not found")
        pytest.skip("nvcc not found")
    env = dict(os.environ, SSM_CACHE_DIR=str(tmp_path))  # a fresh cache: really compile, every run
    env.setdefault("TORCH_CUDA_ARCH_LIST", "9.0")
    code = "from ssm.ops import _extension as e; print(e.jit_build('cuda', load=False))"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=1800, check=False)
    assert proc.returncode == 0, f"CUDA build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    assert os.path.isfile(proc.stdout.strip().splitlines()[-1])


@pytest.mark.compiled
def test_no_build_switch_still_uses_a_library_already_built():
    assert _extension.load("cpu").loaded  # the cache now holds this machine's library
    env = dict(os.environ, SSM_NO_BUILD="1")
    env.pop("SSM_BACKEND", None)
    code = "import ssm.ops; print(ssm.ops.backends()['cpp'])"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith("available (jit:"), proc.stdout  # keops may print first


def test_native_code_only_for_a_cpu_with_a_fingerprint(monkeypatch):
    if not _extension.NATIVE:
        pytest.skip("no native flag on this architecture")
    assert "-march=native" in _extension.jit_cpu_flags("flags : avx2 fma")
    assert "-march=native" not in _extension.jit_cpu_flags(None)
    native = _extension._plan("cpu")
    monkeypatch.setattr(_extension, "_cpu_signature", lambda: None)
    portable = _extension._plan("cpu")
    assert "-march=native" not in portable.cflags and portable.build_dir != native.build_dir


def test_the_compiler_is_part_of_the_cache_key(monkeypatch, tmp_path):
    before = _extension._plan("cpu").build_dir
    other = tmp_path / "other-c++"
    other.write_text("#!/bin/sh\necho 'other-c++ (Fancy) 99.1'\n")
    other.chmod(0o755)
    monkeypatch.setenv("CXX", str(other))
    assert "other-c++ (Fancy) 99.1" in _extension._compiler_identity()
    assert _extension._plan("cpu").build_dir != before


def test_compile_only_passes_only_the_arguments_this_torch_accepts(monkeypatch):
    from torch.utils import cpp_extension

    seen = {}

    def older_torch_build(name, sources, extra_cflags, extra_cuda_cflags, extra_ldflags, extra_include_paths,
                          build_directory, verbose, with_cuda):  # no sycl arguments, as before torch 2.7
        seen.update(name=name, with_cuda=with_cuda, ldflags=extra_ldflags)

    monkeypatch.setattr(cpp_extension, "_write_ninja_file_and_build_library", older_torch_build)
    _extension._compile_only(name="x", sources=["a.cpp"], extra_cflags=[], extra_include_paths=[], build_directory="d",
                             verbose=False, with_cuda=True, extra_ldflags=["-Lz"])
    assert seen == {"name": "x", "with_cuda": True, "ldflags": ["-Lz"]}
