"""Model access: the backend protocol, the HF backend and the embedded models (no hub downloads)."""

from __future__ import annotations

from engine.backends.base import Backend, BackendUnavailable, Generation, Sampling
from engine.config import ModelConfig


def load_backend(model: ModelConfig, torch_threads: int | None = None) -> Backend:
    """Build the backend a model config names; heavy, so stages call it once per actor."""
    if model.backend == "hf":
        from engine.backends.hf import HFBackend

        return HFBackend(model, torch_threads=torch_threads)
    if model.backend == "echo":
        from engine.backends.echo import EchoBackend

        return EchoBackend(model, torch_threads=torch_threads)
    if model.backend == "vllm":
        from engine.backends.vllm_config import require_vllm

        require_vllm()  # the driver checked at start-up (check_backend_available); a node may still lack it
        from engine.backends.vllm import VLLMBackend

        return VLLMBackend(model, torch_threads=torch_threads)
    raise BackendUnavailable(f"unknown model.backend={model.backend!r}; choose one of: hf, vllm, echo")


__all__ = ["Backend", "BackendUnavailable", "Generation", "Sampling", "load_backend"]
