"""Embedded models: resolve a model config to a local HF directory, building the embedded ones once."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from engine.backends.base import BackendUnavailable
from engine.config import ModelConfig

log = logging.getLogger("engine.backends")


def cache_root() -> Path:
    """Where converted and built models live: $EVOLUTION_ENGINE_CACHE or ~/.cache/evolution-engine."""
    root = os.environ.get("EVOLUTION_ENGINE_CACHE") or Path.home() / ".cache" / "evolution-engine"
    return Path(root)


def build_once(target: Path, build: Callable[[Path], None]) -> Path:
    """Build a model directory atomically: into a temp dir, then rename; a concurrent builder's result wins."""
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        build(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            # Another process finished first (target now exists and is not empty): keep theirs.
            if not (target / "config.json").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


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
