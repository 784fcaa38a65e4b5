"""GPU tests: run only where CUDA and vLLM (`pip install -e '.[gpu]'`) are both present, skipped cleanly elsewhere."""

import importlib.util

import pytest


def gpu_skip_reason() -> str | None:
    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed (pip install -e '.[gpu]')"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA device"
    return None


def pytest_collection_modifyitems(config, items):
    reason = gpu_skip_reason()
    if reason is None:
        return
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))
