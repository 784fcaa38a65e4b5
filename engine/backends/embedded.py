"""Embedded models: resolve a model config to a local HF directory, building the embedded ones once (in the
model cache, engine/backends/cache.py)."""

from __future__ import annotations

from pathlib import Path

from engine.backends.base import BackendUnavailable
from engine.config import ModelConfig


def resolve_model_path(model: ModelConfig) -> Path:
    """The local directory holding `model`'s weights and tokenizer, built on first use for embedded models."""
    if model.path:
        path = Path(model.path).expanduser()
        if not (path / "config.json").exists():
            raise BackendUnavailable(
                f"model.path={model.path!r} is not a local HF model directory (no config.json there); "
                "models are never downloaded at run time: pass a directory that holds the weights."
            )
        return path
    if model.embedded == "smollm2-135m":
        from engine.backends.smollm2 import ensure_smollm2

        return ensure_smollm2()
    if model.embedded in ("tiny", "tiny_wide"):
        from engine.backends.tiny import ensure_tiny

        return ensure_tiny(seed=model.seed, variant=model.embedded)
    raise BackendUnavailable(
        f"model {model.name!r} has no path and embedded={model.embedded!r} is not an embedded model; "
        "set model.path=/local/model/dir or use model=smollm2-135m, model=tiny or model=tiny_wide."
    )
