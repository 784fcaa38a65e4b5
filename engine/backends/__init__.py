"""Model access: the backend protocol, the HF backend and the embedded models (no hub downloads)."""

from __future__ import annotations

from contextlib import contextmanager

from engine.backends.base import Backend, BackendUnavailable, Generation, Sampling
from engine.config import ModelConfig


_shared: dict | None = None  # (model config, threads) -> backend, inside shared_backends() only


@contextmanager
def shared_backends():
    """Inside this block, stages that load the same model config get one loaded backend: an actor that runs
    several model stages (cluster.fuse_stages) loads each model once."""
    global _shared
    outer = _shared
    _shared = {} if outer is None else outer
    try:
        yield
    finally:
        _shared = outer


def load_backend(model: ModelConfig, torch_threads: int | None = None) -> Backend:
    """Build the backend a model config names; heavy, so stages call it once per actor."""
    if _shared is not None:
        key = (repr(model), torch_threads)
        if key not in _shared:
            _shared[key] = _build_backend(model, torch_threads)
        return _shared[key]
    return _build_backend(model, torch_threads)


def _build_backend(model: ModelConfig, torch_threads: int | None) -> Backend:
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


__all__ = ["Backend", "BackendUnavailable", "Generation", "Sampling", "load_backend", "shared_backends"]
