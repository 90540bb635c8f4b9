"""Packaging hooks that pyproject.toml cannot express.

* The C++/CUDA sources in csrc/ and the Hydra configs in configs/ are copied into the package
  (ssm/csrc, ssm/configs) so that a wheel can build the ops on first use and run ssm-train.
* ``SSM_BUILD_EXTENSION=1 pip install --no-build-isolation .`` compiles them at install time
  instead (``ssm/_C*.so``; the CUDA library too when a toolkit is found and a GPU is present or
  ``TORCH_CUDA_ARCH_LIST`` is set). Flags and source lists come from ssm/ops/_extension.py, the
  one place that defines them.
"""

import importlib.util
import os
import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildPyWithSources(build_py):
    def run(self):
        super().run()
        target = Path(self.build_lib) / "ssm" / "csrc"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(ROOT / "csrc", target, ignore=shutil.ignore_patterns("*.md"))
        configs = Path(self.build_lib) / "ssm" / "configs"  # ssm-train's Hydra configs
        if configs.exists():
            shutil.rmtree(configs)
        shutil.copytree(ROOT / "configs", configs)


def compiled_extensions():
    if os.environ.get("SSM_BUILD_EXTENSION", "") in ("", "0"):
        return [], {}
    import torch
    from torch.utils import cpp_extension

    spec = importlib.util.spec_from_file_location("_ssm_extension", ROOT / "ssm" / "ops" / "_extension.py")
    ext = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = ext  # its dataclass looks itself up there
    spec.loader.exec_module(ext)
    csrc = ROOT / "csrc"
    rel = lambda names: [str((csrc / n).relative_to(ROOT)) for n in names]  # noqa: E731
    modules = [
        cpp_extension.CppExtension(
            "ssm._C", rel(ext.CPU_SOURCES), include_dirs=[str(csrc)], extra_compile_args={"cxx": ext.CPU_FLAGS}
        )
    ]
    wants_cuda = torch.cuda.is_available() or os.environ.get("TORCH_CUDA_ARCH_LIST")
    if cpp_extension.CUDA_HOME is not None and wants_cuda:
        modules.append(
            cpp_extension.CUDAExtension(
                "ssm._C_cuda",
                rel(ext.CUDA_SOURCES),
                include_dirs=[str(csrc)],
                extra_compile_args={"cxx": ext.CPU_FLAGS, "nvcc": ext.CUDA_FLAGS},
            )
        )
    return modules, {"build_ext": cpp_extension.BuildExtension}


ext_modules, ext_cmdclass = compiled_extensions()
setup(ext_modules=ext_modules, cmdclass={"build_py": BuildPyWithSources, **ext_cmdclass})
