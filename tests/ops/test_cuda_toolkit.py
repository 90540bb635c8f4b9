"""Finding a CUDA toolkit to build the CUDA library with: a system one, PyPI's (``ssm[cuda]``), none."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ssm.ops import _extension

ROOT = Path(__file__).resolve().parents[2]


def _toolkit(root: Path, *, headers: bool) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "nvcc").write_text("#!/bin/sh\n")
    (root / "lib").mkdir()
    (root / "lib" / "libcudart.so.13").write_text("")
    if headers:
        (root / "include").mkdir()
        (root / "include" / "cuda_runtime.h").write_text("")
    return root


@pytest.fixture
def no_system_toolkit(monkeypatch, tmp_path):
    """Nothing on PATH, no $CUDA_HOME, no /usr/local/cuda, an empty site-packages/nvidia."""
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(_extension, "SYSTEM_CUDA", tmp_path / "no-system-cuda")
    nvidia = tmp_path / "site-packages" / "nvidia"
    (nvidia / "cu13" / "include").mkdir(parents=True)
    (nvidia / "cu13" / "include" / "cuda_runtime.h").write_text("")  # torch's wheel ships the headers
    monkeypatch.setattr(_extension, "_nvidia_dir", lambda: nvidia)
    monkeypatch.setattr(_extension, "_cuda_include_paths", lambda: [str(nvidia / "cu13" / "include")])
    return nvidia


def test_no_toolkit_names_the_extra(no_system_toolkit):
    assert _extension.find_cuda_home() is None
    with pytest.raises(RuntimeError, match=r'no CUDA toolkit \(nvcc\).*pip install "ssm\[cuda\]"'):
        _extension._ensure_cuda_home()


def test_finds_pypi_nvcc_beside_torch_headers(no_system_toolkit, monkeypatch):
    """cuda-toolkit[nvcc] installs bin/nvcc into site-packages/nvidia/cu13, next to torch's headers."""
    home = no_system_toolkit / "cu13"
    (home / "bin").mkdir()
    (home / "bin" / "nvcc").write_text("#!/bin/sh\n")
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    assert _extension.find_cuda_home() == home
    monkeypatch.setenv("CUDA_HOME", "")  # restored by monkeypatch after _ensure_cuda_home sets it
    assert _extension._ensure_cuda_home() == home and os.environ["CUDA_HOME"] == str(home)


def test_search_order_path_then_pypi_then_usr_local(no_system_toolkit, monkeypatch, tmp_path):
    """nvcc on PATH first (as torch itself does), then PyPI's (matched to torch), then /usr/local/cuda."""
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    system = _toolkit(tmp_path / "cuda", headers=True)
    monkeypatch.setattr(_extension, "SYSTEM_CUDA", system)
    assert _extension.find_cuda_home() == system
    (no_system_toolkit / "cu13" / "bin").mkdir()
    (no_system_toolkit / "cu13" / "bin" / "nvcc").write_text("")
    assert _extension.find_cuda_home() == no_system_toolkit / "cu13"
    on_path = _toolkit(tmp_path / "cuda-13.0", headers=True)
    monkeypatch.setattr(shutil, "which", lambda name: str(on_path / "bin" / "nvcc") if name == "nvcc" else None)
    assert _extension.find_cuda_home() == on_path
    monkeypatch.setenv("CUDA_HOME", str(tmp_path / "explicit"))
    assert _extension.find_cuda_home() == tmp_path / "explicit"


def test_pypi_nvcc_of_another_cuda_major_is_not_used(no_system_toolkit, monkeypatch):
    (no_system_toolkit / "cu13" / "bin").mkdir()
    (no_system_toolkit / "cu13" / "bin" / "nvcc").write_text("")
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    assert _extension.find_cuda_home() is None
    with pytest.raises(RuntimeError, match=r"PyPI's nvcc for cu13 is installed, but this torch uses CUDA 12.8.*ssm\[cuda\]"):
        _extension._ensure_cuda_home()


def test_nvcc_without_any_runtime_headers_is_not_a_toolkit(no_system_toolkit, monkeypatch, tmp_path):
    bare = tmp_path / "bare"
    (bare / "bin").mkdir(parents=True)
    (bare / "bin" / "nvcc").write_text("")
    monkeypatch.setattr(shutil, "which", lambda name: str(bare / "bin" / "nvcc") if name == "nvcc" else None)
    monkeypatch.setattr(_extension, "_cuda_include_paths", lambda: [])  # no torch wheel headers either
    assert _extension.find_cuda_home() is None


def test_cudart_link_dir_when_only_the_versioned_library_exists(tmp_path):
    home = _toolkit(tmp_path / "cu13", headers=False)
    flags = _extension._cudart_ldflags(home, tmp_path / "build")
    link = tmp_path / "build" / "cudart-link" / "libcudart.so"
    assert flags == [f"-L{link.parent}"] and link.resolve() == (home / "lib" / "libcudart.so.13").resolve()
    (home / "lib" / "libcudart.so").write_text("")
    assert _extension._cudart_ldflags(home, tmp_path / "build2") == []  # a full toolkit needs none


@pytest.mark.slow
def test_pypi_toolchain_compiles_and_links_in_a_fresh_venv(tmp_path):
    """`pip install "ssm[cuda]"` in a fresh venv with no nvcc on PATH, then `python -m ssm.ops.build
    --cuda`: every .cu file compiles and links with NVIDIA's PyPI toolchain (no GPU needed).
    Installs torch and the toolkit into the venv: several GB and minutes."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    path = f"{venv / 'bin'}:/usr/bin:/bin"
    assert not any(Path(d, "nvcc").exists() for d in path.split(":")), "the test PATH must hold no nvcc"
    env = {"HOME": os.environ.get("HOME", str(tmp_path)), "PATH": path, "SSM_CACHE_DIR": str(tmp_path / "cache"),
           "TORCH_CUDA_ARCH_LIST": "9.0"}
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "-e", f"{ROOT}[cuda]"], env=env, capture_output=True, text=True, check=False)
    assert pip.returncode == 0, pip.stderr[-3000:]
    build = subprocess.run([str(venv / "bin" / "python"), "-m", "ssm.ops.build", "--cuda", "--verbose"], env=env, capture_output=True, text=True, timeout=1800, check=False)
    assert build.returncode == 0, f"{build.stdout[-3000:]}\n{build.stderr[-3000:]}"
    assert "cuda library (compiled and linked, not loaded)" in build.stdout
    # the nvcc that compiled is PyPI's, inside the venv
    assert f"{venv}/lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages/nvidia/cu" in build.stdout + build.stderr
