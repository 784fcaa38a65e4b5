"""The backend protocols: generation and per-token losses (every model engine), and reward scoring."""

from __future__ import annotations

import json
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


_REGEX_SPECIAL = set("\\^$.|?*+()[]{}")


@dataclass(frozen=True)
class Structured:
    """A constraint on what one generate() call may produce: a JSON schema (its JSON text) or a regex, never both.

    Every backend enforces it with a maintained grammar library, the same grammar on each: HF compiles it with
    xgrammar (a logits processor per batch), vLLM hands it to its structured outputs (xgrammar backend); JSON is
    compact (no free whitespace) on both. Frozen and hashable: backends cache the compiled grammar by it."""

    json_schema: str | None = None
    regex: str | None = None

    def __post_init__(self):
        if (self.json_schema is None) == (self.regex is None):
            raise ValueError("Structured takes exactly one of json_schema or regex")
        if self.json_schema is not None:
            json.loads(self.json_schema)  # fail here, not inside an engine

    @staticmethod
    def literal(text: str) -> str:
        """`text` as a regex matching itself, in the subset of regex syntax xgrammar and Python's re read alike
        (re.escape writes `\\#`, `\\ ` and a backslash before a real newline, which xgrammar need not accept)."""
        out = []
        for char in text:
            if char in _REGEX_SPECIAL:
                out.append("\\" + char)
            elif char == "\n":
                out.append("\\n")
            else:
                out.append(char)
        return "".join(out)

    @classmethod
    def schema(cls, schema: dict) -> "Structured":
        """A JSON-schema constraint from its dict (stored as sorted JSON text, so equal schemas hash equal)."""
        return cls(json_schema=json.dumps(schema, sort_keys=True))


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

    def generate(self, prompts: list[str], sampling: Sampling, seeds: list[int] | None = None,
                 structured: Structured | None = None) -> list[Generation]:
        """Complete each prompt; `seeds[i]` alone drives prompt i's sampling (ignored when greedy); `structured`
        constrains every completion of the call to a JSON schema or a regex."""
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
