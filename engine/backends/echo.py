"""The `echo` backend: a plumbing aid that measures the pipeline (Ray Data, stages, sinks) without a model.

It is never offered as a model: its "generations" are a dozen words picked by a digest of the prompt (and the
row's seed), and its token losses a fixed function of the token ids. Benchmarks use it to find what the
engine costs around the model, and fault tests use `fail_on` to make one row raise inside a stage.

It cannot honour a structured-output constraint (it has no model to mask): a structured call gets an error
Generation for every row (rejected as a generation error, never a fake instance), so a plumbing run with
`autoif.structured` or `auto_evol.structured` on shows the rows reaching the model and leaving by that reason."""

from __future__ import annotations

import hashlib

import numpy as np
from transformers import AutoTokenizer

from engine.backends.base import Generation, Sampling, Structured
from engine.backends.embedded import resolve_model_path
from engine.config import ModelConfig

WORDS = (
    "explain compare river mountain budget design proof garden signal network poem ledger orbit recipe "
    "history sensor theorem canal market glacier lantern algorithm harvest circuit violin archive tide"
).split()
ANSWER_WORDS = 12


class PoisonRow(RuntimeError):
    """Raised by the echo backend on a prompt that contains its `fail_on` text."""


class EchoBackend:
    """Backend protocol without a model; the tokenizer is the tiny model's (scoring needs real token ids)."""

    def __init__(self, model: ModelConfig, torch_threads: int | None = None):
        self.name = model.name
        self.fail_on = model.fail_on
        self.tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(model))
        self.eos_id = self.tokenizer.eos_token_id
        self.bos_id = self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.eos_id

    def generate(self, prompts: list[str], sampling: Sampling, seeds: list[int] | None = None,
                 structured: Structured | None = None) -> list[Generation]:
        if structured is not None:
            return [Generation("", len(p.split()), 0, "error", error="the echo backend cannot produce structured "
                               "output (it has no model): use model.backend=hf or vllm") for p in prompts]
        seeds = [0] * len(prompts) if seeds is None or sampling.greedy else list(seeds)
        out = []
        for prompt, seed in zip(prompts, seeds):
            if self.fail_on and self.fail_on in prompt:
                raise PoisonRow(f"echo backend: prompt contains fail_on={self.fail_on!r}")
            digest = hashlib.blake2b(f"{seed}\x1f{prompt}".encode("utf-8", "surrogatepass"), digest_size=16).digest()
            words = [WORDS[b % len(WORDS)] for b in digest[:ANSWER_WORDS]]
            text = " ".join(words).capitalize() + f" ({digest.hex()[:8]})."
            count = min(len(words) + 2, sampling.max_new_tokens)
            out.append(Generation(text, len(prompt.split()), count, "stop"))
        return out

    def token_losses(self, sequences: list[list[int]]) -> list[np.ndarray]:
        return [((np.asarray(seq[1:], dtype=np.int64) * 2654435761) % 997) / 250.0 + 0.05 for seq in sequences]

    def engine_stats(self) -> None:
        """Static batches: no engine occupancy to report."""
        return None
