"""Build and load the compiled ops in ``csrc/`` (implementations of ``torch.ops.ssm.*``).

The op schemas, fake kernels and autograd formulas are Python's (``_schemas`` and the wrapper
modules, registered at import); the two shared libraries only implement them:

* ``cpu``: the fused C++ CPU kernels (and the library's own diagnostics, ``csrc/registration.cpp``).
* ``cuda``: CUDA kernels for the same schemas; built only where a CUDA device is present
  (or when forced, which the test suite does to check that every ``.cu`` file compiles).

Where a library comes from, in order:

1. built at install time (``SSM_BUILD_EXTENSION=1 pip install --no-build-isolation .``) and
   shipped as ``ssm/_C*.so``;
2. built just in time on first use with ``torch.utils.cpp_extension`` into a cache directory
   (``$SSM_CACHE_DIR``, default ``~/.cache/ssm``). The directory name hashes the sources,
   compiler flags, the compiler's identity, torch/CUDA versions and the CPU's instruction-set
   flags (native code only where they can be read), so an edit, an upgrade or a different
   machine sharing a home directory gets a fresh build; the build itself prints one log line.

The CUDA toolkit: ``$CUDA_HOME``, else nvcc on PATH, else NVIDIA's PyPI packages next to torch
(``pip install "ssm[cuda]"``, site-packages/nvidia/cu<major>), else /usr/local/cuda; the headers
torch's wheel ships are always on the include path. The first time the CUDA library loads in a
process it runs a known-answer self-test (``_selftest``); a mismatch disables it for the process.

A failed build never raises from an op call: the dispatcher falls back to the PyTorch backend
and emits ONE warning per library per process carrying the real compiler error and the command
that retries (``python -m ssm.ops.build``). ``SSM_NO_BUILD=1`` disables just-in-time builds (a
library already built in the cache for these sources and this machine is still used).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import platform
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

log = logging.getLogger("ssm")

Library = Literal["cpu", "cuda"]

CPU_SOURCES = ["registration.cpp", "cpu/cauchy_cpu.cpp", "cpu/vandermonde_cpu.cpp", "cpu/residual_chain_cpu.cpp",
               "cpu/siso_bank_cpu.cpp"]
CUDA_SOURCES = ["cuda/cauchy_cuda.cu", "cuda/vandermonde_cuda.cu"]

# -O3 without -ffast-math: fast-math would let the compiler assume no NaN/Inf, and NaN in must
# give NaN out. -fopenmp-simd lets `#pragma omp simd reduction` vectorise the reductions.
# -fopenmp makes at::parallel_for fork (it is an inline template that runs serially in code
# compiled without OpenMP, see csrc/parallel.h). Only the compile step gets it: the library links
# no OpenMP runtime of its own, its GOMP_* calls bind to the one torch loaded (libtorch_cpu's
# libgomp), so the process keeps one thread pool sized by torch.set_num_threads.
OPENMP = sys.platform.startswith("linux")
CPU_FLAGS = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd"] + (["-fopenmp"] if OPENMP else [])
# The just-in-time build targets the machine it runs on (its cache key includes the CPU's
# instruction-set flags), but only where those flags could be read: without them two different
# x86 hosts sharing a cache would share one native build. The install-time build stays portable.
NATIVE = ["-march=native"] if platform.machine() in ("x86_64", "AMD64") else []
CUDA_FLAGS = ["-O3", "-lineinfo"]

RETRY_HINT = "python -m ssm.ops.build"


@dataclass(frozen=True)
class LibraryStatus:
    """Whether a compiled library is loaded, where from, or why not."""

    name: Library
    loaded: bool
    origin: str  # "install", "jit", or "" when not loaded
    detail: str  # path of the loaded library, or the reason it is not available


def source_dir() -> Path:
    """The ``csrc/`` directory: inside the installed package, or at the repository root."""
    here = Path(__file__).resolve().parent.parent  # ssm/
    for candidate in (here / "csrc", here.parent / "csrc"):
        if (candidate / "registration.cpp").is_file():
            return candidate
    raise FileNotFoundError(
        f"ssm: the C++ sources (csrc/) were not found next to {here}; reinstall the package"
    )


def cache_root() -> Path:
    return Path(os.environ.get("SSM_CACHE_DIR", Path.home() / ".cache" / "ssm"))


def _cpu_signature() -> str | None:
    """Instruction-set flags of this CPU (so a -march=native build is never reused elsewhere), or
    None where they cannot be read."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return None


def jit_cpu_flags(signature: str | None) -> list[str]:
    """Flags of the just-in-time CPU build: native code only for a CPU we can fingerprint."""
    return CPU_FLAGS + (NATIVE if signature else [])


def _compiler_identity() -> str:
    """The C++ compiler torch will call ($CXX, else c++) and its version banner, for the cache key:
    a compiler upgrade or a different $CXX gets a fresh build."""
    cxx = os.environ.get("CXX", "c++")
    try:
        banner = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.SubprocessError) as err:
        banner = f"unavailable: {err}"
    return f"{cxx}: {banner.strip().splitlines()[0] if banner.strip() else '?'}"


def _cuda_include_paths() -> list[str]:
    """Headers that CUDA builds of torch ship under site-packages/nvidia/*/include."""
    nvidia = Path(torch.__file__).resolve().parent.parent / "nvidia"
    return sorted(str(p) for p in nvidia.glob("*/include") if p.is_dir())


def _build_key(sources: list[Path], flags: list[str], extra: str) -> str:
    """Hash of everything the built library depends on: sources and headers, flags, torch, CUDA,
    Python, the compiler, and ``extra`` (CPU fingerprint or CUDA targets)."""
    h = hashlib.sha256()
    for src in sources:
        h.update(src.name.encode())
        h.update(src.read_bytes())
    headers = [*source_dir().rglob("*.h"), *source_dir().rglob("*.cuh")]
    for header in sorted(headers):
        h.update(header.read_bytes())
    h.update(" ".join(flags).encode())
    h.update(f"{torch.__version__}|{torch.version.cuda}|{sys.version_info[:2]}|{_compiler_identity()}|{extra}".encode())
    return h.hexdigest()[:16]


def _installed_library(name: Library) -> str | None:
    spec = importlib.util.find_spec("ssm._C" if name == "cpu" else "ssm._C_cuda")
    return spec.origin if spec is not None and spec.origin else None


@dataclass(frozen=True)
class _Plan:
    """What a just-in-time build of one library compiles, and where its result lives."""

    sources: list[Path]
    cflags: list[str]
    cuda_flags: list[str]
    build_dir: Path
    lib_name: str

    @property
    def built(self) -> Path:
        return self.build_dir / f"{self.lib_name}.so"

    @property
    def done(self) -> Path:  # written only after a build finished (torch's lock file persists)
        return self.build_dir / "BUILT"

    def cached(self) -> bool:
        """Same sources, flags, torch, compiler and machine: the cached library is the one we would build."""
        return self.built.exists() and self.done.exists()


def _plan(name: Library) -> _Plan:
    root = source_dir()
    if name == "cpu":
        sources = [root / s for s in CPU_SOURCES]
        signature = _cpu_signature()
        cflags, cuda_flags, extra = jit_cpu_flags(signature), [], signature or f"portable {platform.machine()}"
    else:
        sources = [root / s for s in CUDA_SOURCES]
        cflags, cuda_flags = CPU_FLAGS, CUDA_FLAGS
        extra = os.environ.get("TORCH_CUDA_ARCH_LIST", "") or _local_cuda_arch()
    key = _build_key(sources, cflags + cuda_flags, extra)
    lib_name = f"ssm_{name}_ops"
    return _Plan(sources, cflags, cuda_flags, cache_root() / f"{lib_name}-{key}", lib_name)


def jit_build(name: Library, *, load: bool = True, verbose: bool = False) -> str:
    """Compile one library into the cache (if not already there) and optionally load it.

    Returns the path of the shared library. Raises the build's error unchanged.
    """
    plan = _plan(name)
    plan.build_dir.mkdir(parents=True, exist_ok=True)
    if plan.cached():
        if load:
            torch.ops.load_library(str(plan.built))
        return str(plan.built)
    log.warning("ssm: building the compiled %s ops into %s (first use only)", name, plan.build_dir)
    cuda_home = _ensure_cuda_home() if name == "cuda" else None
    from torch.utils import cpp_extension

    kwargs = dict(
        name=plan.lib_name,
        sources=[str(s) for s in plan.sources],
        extra_cflags=plan.cflags,
        extra_include_paths=[str(source_dir())] + (_cuda_include_paths() if name == "cuda" else []),
        build_directory=str(plan.build_dir),
        verbose=verbose,
        is_python_module=False,
        is_standalone=False,
    )
    if name == "cuda":
        kwargs["extra_cuda_cflags"] = plan.cuda_flags
        kwargs["with_cuda"] = True
        kwargs["extra_ldflags"] = _cudart_ldflags(cuda_home, plan.build_dir)
    if load:
        cpp_extension.load(**kwargs)
    else:
        # Compile and link without loading: checks the CUDA sources on machines with no GPU.
        _compile_only(**kwargs)
    plan.done.write_text(f"{plan.built}\n")
    return str(plan.built)


def _compile_only(**kwargs) -> None:
    """Run the same ninja build as ``cpp_extension.load`` but stop before loading the library.

    torch has no public call for that, so this uses the private step ``load`` runs first. Its
    keyword arguments changed across releases (``extra_sycl_cflags``/``with_sycl`` arrived in
    2.7), so only those this torch's version accepts are passed.
    """
    import inspect

    from torch.utils import cpp_extension

    build = cpp_extension._write_ninja_file_and_build_library
    wanted = dict(
        name=kwargs["name"],
        sources=kwargs["sources"],
        extra_cflags=kwargs["extra_cflags"],
        extra_cuda_cflags=kwargs.get("extra_cuda_cflags"),
        extra_sycl_cflags=None,
        extra_ldflags=kwargs.get("extra_ldflags", []),
        extra_include_paths=kwargs["extra_include_paths"],
        build_directory=kwargs["build_directory"],
        verbose=kwargs["verbose"],
        with_cuda=kwargs.get("with_cuda", False),
        with_sycl=False,
    )
    accepted = inspect.signature(build).parameters
    build(**{k: v for k, v in wanted.items() if k in accepted})


CUDA_EXTRA_HINT = 'pip install "ssm[cuda]"'
SYSTEM_CUDA = Path("/usr/local/cuda")


def _nvidia_dir() -> Path:
    """site-packages/nvidia: where torch's CUDA wheels (and PyPI's CUDA toolkit) install."""
    return Path(torch.__file__).resolve().parent.parent / "nvidia"


def _pip_cuda_homes(*, matching: bool = True) -> list[Path]:
    """CUDA toolkits installed from PyPI next to torch: ``ssm[cuda]`` (cuda-toolkit[nvcc]) puts nvcc
    in site-packages/nvidia/cu<major>/bin, beside the runtime headers torch's wheel brought.

    Only the one of torch's CUDA major unless ``matching=False``: an nvcc of another major would
    build against a CUDA runtime torch does not use.
    """
    homes = sorted(p.parent.parent for p in _nvidia_dir().glob("cu*/bin/nvcc") if p.is_file())
    major = (torch.version.cuda or "").split(".")[0]
    return [h for h in homes if h.name == f"cu{major}"] if matching else homes


def find_cuda_home() -> Path | None:
    """The CUDA toolkit to build with: $CUDA_HOME / $CUDA_PATH, else the first toolkit (nvcc and
    the CUDA runtime headers) among nvcc on PATH, PyPI's under site-packages/nvidia, /usr/local/cuda."""
    env = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if env:
        return Path(env)
    candidates = []
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(Path(nvcc).resolve().parent.parent)
    candidates += [*_pip_cuda_homes(), SYSTEM_CUDA]
    # torch's wheel ships the runtime headers under site-packages/nvidia/*/include (added to the
    # include path of the build), so a toolkit from PyPI need not bring its own.
    wheel_headers = any(Path(d, "cuda_runtime.h").is_file() for d in _cuda_include_paths())
    # A complete toolkit first; then one with nvcc only (PyPI's), when torch's wheel has the headers.
    for complete in (True, False):
        for home in candidates:
            headers = (home / "include" / "cuda_runtime.h").is_file() or (wheel_headers and not complete)
            if (home / "bin" / "nvcc").is_file() and headers:
                return home
    return None


def _ensure_cuda_home() -> Path:
    """Point torch at the CUDA toolkit (see find_cuda_home); raise naming the fix when none exists."""
    home = find_cuda_home()
    if home is None:
        other = [h.name for h in _pip_cuda_homes(matching=False)]
        found = f" (PyPI's nvcc for {', '.join(other)} is installed, but this torch uses CUDA {torch.version.cuda})" if other else ""
        raise RuntimeError(
            f"ssm: no CUDA toolkit (nvcc) was found to build the CUDA ops: not $CUDA_HOME, not on PATH, "
            f"not under {_nvidia_dir()}/cu*/bin (PyPI){found}, not {SYSTEM_CUDA}. Install the toolkit "
            f"matched to this torch (CUDA {torch.version.cuda}) with `{CUDA_EXTRA_HINT}`, or set CUDA_HOME."
        )
    os.environ["CUDA_HOME"] = str(home)
    if "torch.utils.cpp_extension" in sys.modules:  # already resolved at its import
        sys.modules["torch.utils.cpp_extension"].CUDA_HOME = str(home)
    return home


def _cudart_ldflags(home: Path, build_dir: Path) -> list[str]:
    """A -L flag under which the linker finds libcudart.so, when the toolkit has none.

    torch links CUDA extensions with ``-lcudart``; PyPI's runtime wheel ships only the versioned
    libcudart.so.<major> (no development symlink), so link through a symlink in the build
    directory. The library then loads the libcudart.so.<major> that torch itself has loaded.
    """
    if any((home / lib / "libcudart.so").exists() for lib in ("lib64", "lib")):
        return []
    found = [*sorted((home / "lib").glob("libcudart.so.*")), *sorted(_nvidia_dir().glob("*/lib/libcudart.so.*"))]
    if not found:
        return []  # the link then fails with the linker's own message
    link_dir = build_dir / "cudart-link"
    link_dir.mkdir(parents=True, exist_ok=True)
    link = link_dir / "libcudart.so"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(found[0])
    return [f"-L{link_dir}"]


def _local_cuda_arch() -> str:
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        return f"{major}.{minor}"
    return ""


def _short_error(err: BaseException) -> str:
    text = str(err)
    if isinstance(err, subprocess.CalledProcessError) and err.output:
        text = err.output.decode(errors="replace") if isinstance(err.output, bytes) else err.output
    lines = [ln for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    keep = (errors[:15] or lines[-15:])
    return "\n".join(keep)


_STATUS: dict[str, LibraryStatus] = {}
_UNTESTED: dict[str, LibraryStatus] = {}  # loaded, self-test pending (first load was in a graph capture)
# library -> (can the check run now?, the check): run once when the library first loads. The CUDA
# self-test registers itself here (ssm.ops._selftest, imported by ssm.ops), so that this module
# imports none of the ops it builds: ssm/ops stays free of import cycles.
GUARDS: dict[str, tuple[Callable[[], bool], Callable[[LibraryStatus], LibraryStatus]]] = {}


def load(name: Library) -> LibraryStatus:
    """Load a compiled library once per process; never raises.

    The result is kept in a plain dict so that ``torch.compile`` can read it while tracing;
    a build is never started from inside a traced region.
    """
    status = _STATUS.get(name)
    if status is not None:
        return status
    if torch.compiler.is_compiling():
        return LibraryStatus(name, False, "", "not loaded before torch.compile traced this call")
    status = _UNTESTED.pop(name, None) or _load(name)
    guard = GUARDS.get(name)
    if guard is not None and status.loaded:
        # Once per process: a known-answer check (the CUDA self-test); a mismatch disables the backend.
        can_run_now, check = guard
        if not can_run_now():  # e.g. inside a CUDA graph capture: test at the next call
            _UNTESTED[name] = status
            return status
        status = check(status)
    _STATUS[name] = status
    return status


def _load(name: Library) -> LibraryStatus:
    if name == "cuda":
        if not torch.cuda.is_available():
            return LibraryStatus(name, False, "", "no CUDA device")
        cpu = load("cpu")
        if not cpu.loaded:
            return LibraryStatus(name, False, "", f"needs the CPU library first ({cpu.detail})")
    installed = _installed_library(name)
    if installed is not None:
        try:
            torch.ops.load_library(installed)
            return LibraryStatus(name, True, "install", installed)
        except OSError as err:  # e.g. built against another torch: fall through to the JIT build
            log.warning("ssm: the installed %s ops at %s failed to load (%s); rebuilding", name,
                        installed, err)
    if os.environ.get("SSM_NO_BUILD", "") not in ("", "0"):
        plan = _plan(name)  # a library already built for these sources and this machine still serves
        if not plan.cached():
            return LibraryStatus(name, False, "", "SSM_NO_BUILD is set and no library is built in the cache")
        torch.ops.load_library(str(plan.built))
        return LibraryStatus(name, True, "jit", str(plan.built))
    try:
        path = jit_build(name)
    except (RuntimeError, OSError, subprocess.CalledProcessError, ImportError) as err:
        warnings.warn(
            f"ssm: could not build the compiled {name} ops; the pure-PyTorch backend serves "
            f"instead (slower, more memory). The build said:\n{_short_error(err)}\n"
            f"Fix the cause, then retry with `{RETRY_HINT}` (or set SSM_NO_BUILD=1 to silence).",
            RuntimeWarning,
            stacklevel=3,
        )
        return LibraryStatus(name, False, "", f"build failed: {_short_error(err).splitlines()[0]}")
    return LibraryStatus(name, True, "jit", path)
