"""Model access: the backend protocols, the engines behind them and the embedded models (no hub downloads).

`load_backend(model, kind=...)` is the one way a stage gets a model: `kind="generator"` (the default) builds the
causal LM that generates and scores token losses on `model.backend` (hf, vllm or echo); `kind="reward"` builds a
sequence-classification reward model (HF). Two context managers change what it returns inside an actor:
`shared_backends()` (stages of one actor share a loaded model) and `metered_backends()` (every backend handed out
is wrapped in a TokenMeter, so the stage chain counts tokens by stage)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Literal, overload

from engine.backends.base import Backend, BackendUnavailable, Generation, RewardBackend, Sampling, Structured
from engine.backends.meter import TokenMeter
from engine.config import ModelConfig

Kind = Literal["generator", "reward"]
KINDS = ("generator", "reward")

_shared: dict | None = None  # (kind, model config, threads) -> backend, inside shared_backends() only
_metered: list[TokenMeter] | None = None  # meters handed out inside metered_backends() only


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


@contextmanager
def metered_backends() -> Iterator[list[TokenMeter]]:
    """Inside this block, every backend load_backend returns is wrapped in a TokenMeter of its own; the block
    yields the list of those meters (what the code inside loaded), filled as it loads."""
    global _metered
    outer = _metered
    _metered = []
    try:
        yield _metered
    finally:
        _metered = outer


@overload
def load_backend(model: ModelConfig, torch_threads: int | None = None,
                 kind: Literal["generator"] = "generator") -> Backend: ...
@overload
def load_backend(model: ModelConfig, torch_threads: int | None = None,
                 kind: Literal["reward"] = ...) -> RewardBackend: ...
def load_backend(model: ModelConfig, torch_threads: int | None = None, kind: Kind = "generator"):
    """Build the backend of `kind` a model config names; heavy, so stages call it once per actor."""
    if _shared is not None:
        key = (kind, repr(model), torch_threads)
        if key not in _shared:
            _shared[key] = _build_backend(model, torch_threads, kind)
        backend = _shared[key]
    else:
        backend = _build_backend(model, torch_threads, kind)
    if _metered is not None:
        backend = TokenMeter(backend)
        _metered.append(backend)
    return backend


def _build_backend(model: ModelConfig, torch_threads: int | None, kind: Kind):
    if kind == "reward":
        from engine.backends.reward import RewardModel

        return RewardModel(model, torch_threads=torch_threads)
    if kind != "generator":
        raise BackendUnavailable(f"unknown backend kind {kind!r}; choose one of: {', '.join(KINDS)}")
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


__all__ = ["Backend", "BackendUnavailable", "Generation", "RewardBackend", "Sampling", "Structured", "TokenMeter",
           "load_backend", "metered_backends", "shared_backends"]
