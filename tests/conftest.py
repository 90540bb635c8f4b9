import pytest
import torch


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def pytest_report_header(config):
    import ssm.ops

    lines = [f"torch {torch.__version__}, threads {torch.get_num_threads()}"]
    lines += [f"ssm backend {k}: {v}" for k, v in ssm.ops.backends().items()]
    return lines
