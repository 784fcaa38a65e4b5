"""The model cache: where converted and built models live, and how one is built there exactly once.

The embedded models (tiny.py, smollm2.py) build into it; embedded.py picks which one a config names. Nothing here
imports either, so the three import in one direction only."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable


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
