import os
import shutil

import pytest
import torch


def has_compiler() -> bool:
    """A C++ compiler torch's extension builder would call ($CXX, else c++)."""
    return shutil.which(os.environ.get("CXX", "c++")) is not None


def pytest_collection_modifyitems(config, items):
    skips = {}
    if not torch.cuda.is_available():
        skips["cuda"] = pytest.mark.skip(reason="needs a CUDA device")
    if not has_compiler():  # the README's promise: no compiler, the torch backend serves, nothing fails
        skips["compiled"] = pytest.mark.skip(reason="needs a C++ compiler (none found: $CXX / c++)")
    for item in items:
        for marker, skip in skips.items():
            if marker in item.keywords:
                item.add_marker(skip)


def pytest_report_header(config):
    import ssm.ops

    lines = [f"torch {torch.__version__}, threads {torch.get_num_threads()}"]
    lines += [f"ssm backend {k}: {v}" for k, v in ssm.ops.backends().items()]
    return lines
