"""The backend protocols: generation and per-token losses (every model engine), and reward scoring."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class Sampling:
    """Decoding settings for one generate() call; temperature 0 is greedy."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    output_stats: bool = False  # also return OutputStats of every generated position (backends that can)

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


# Output-space histograms (paper Fig. 5): fixed bins, so per-row counts add up across actors and shards.
TOP1_EDGES = np.linspace(0.0, 1.0, 21)
ENTROPY_EDGES = np.linspace(0.0, 10.0, 21)  # nats; larger entropies count in the last bin


@dataclass(frozen=True)
class OutputStats:
    """The model's raw next-token distribution (temperature 1, before any sampling warper) at each generated
    position of one completion: histograms of its top-1 probability and entropy, with their sums."""

    top1_counts: np.ndarray  # int64 [len(TOP1_EDGES) - 1]
    entropy_counts: np.ndarray  # int64 [len(ENTROPY_EDGES) - 1]
    top1_sum: float
    entropy_sum: float
    positions: int


@dataclass(frozen=True)
class Generation:
    """One completion: its text, token counts and why it stopped; `error` set means no text was produced."""

    text: str
    prompt_tokens: int
    generated_tokens: int
    finish_reason: str  # stop | length | error
    error: str = ""
    stats: OutputStats | None = None  # when sampling.output_stats and the backend supports it


def reject_too_long(encoded: list[list[int]], max_model_len: int,
                    max_new_tokens: int) -> tuple[list[Generation | None], list[int]]:
    """Every backend's rule for prompts that leave no room for `max_new_tokens`: such a row gets an error
    Generation (it is rejected, not truncated). Returns the results so far and the positions that fit."""
    results: list[Generation | None] = [None] * len(encoded)
    fits = []
    for i, ids in enumerate(encoded):
        if len(ids) > max_model_len - max_new_tokens:
            results[i] = Generation("", len(ids), 0, "error", error=f"prompt of {len(ids)} tokens + {max_new_tokens} "
                                    f"new exceeds max_model_len={max_model_len}")
        else:
            fits.append(i)
    return results, fits


class Backend(Protocol):
    """A model engine: chat prompts in (one user turn each), completions or token losses out."""

    name: str
    tokenizer: Any  # a HF tokenizer: scoring builds its token spans with the backend's own tokenizer
    bos_id: int | None
    eos_id: int | None

    def generate(self, prompts: list[str], sampling: Sampling, seeds: list[int] | None = None) -> list[Generation]:
        """Complete each prompt; `seeds[i]` alone drives prompt i's sampling (ignored when greedy)."""
        ...

    def token_losses(self, sequences: list[list[int]]) -> list[np.ndarray]: ...

    def engine_stats(self) -> dict | None:
        """How full a continuously batching engine has been (vLLM: backends/feeder.py Occupancy); None for a
        backend that runs each call as one static batch (HF, echo)."""
        ...


class RewardBackend(Protocol):
    """A reward model (load_backend kind="reward"): a two-turn chat in, one scalar out."""

    name: str

    def chat_ids(self, prompt: str, response: str, max_length: int) -> tuple[list[int], int]:
        """Token ids of [user: prompt, assistant: response] (cut at `max_length`) and the response's own count."""
        ...

    def score(self, sequences: list[list[int]], batch_size: int) -> list[float]: ...

    def engine_stats(self) -> dict | None: ...


class BackendUnavailable(RuntimeError):
    """A backend or model cannot be used on this machine; the message says what to install or pass."""
