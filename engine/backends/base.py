"""The backend protocols: generation and per-token losses (every model engine), and reward scoring."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

log = logging.getLogger("engine.backends")


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


def new_token_budgets(encoded: list[list[int]], max_model_len: int,
                      max_new_tokens: int) -> tuple[list[Generation | None], list[int]]:
    """Every backend's rule for the room a prompt leaves, vLLM's own: each row may generate `max_new_tokens`, capped
    to what its context leaves (`max_model_len - prompt`, ending as `length`); a prompt that leaves no room at all
    gets an error Generation (rejected, never truncated). Returns the error results (None where the row will run)
    and every row's budget (0 for the errors)."""
    results: list[Generation | None] = [None] * len(encoded)
    budgets = []
    for i, ids in enumerate(encoded):
        room = max_model_len - len(ids)
        if room < 1:
            results[i] = Generation("", len(ids), 0, "error", error=f"prompt of {len(ids)} tokens leaves no room "
                                    f"for a new token in max_model_len={max_model_len}")
        budgets.append(max(0, min(max_new_tokens, room)))
    return results, budgets


def model_context(name: str, max_model_len: int, positions: int | None) -> int:
    """The context a backend works with: `max_model_len`, or the model's own position limit where the config asks
    for more (said once, at load: the config should match the model)."""
    if positions is None or max_model_len <= positions:
        return max_model_len
    log.warning("%s: max_model_len=%d exceeds the %d positions the model was built with; using %d (set "
                "max_model_len to at most %d in its config)", name, max_model_len, positions, positions, positions)
    return positions


def _span(low: int, high: int) -> str:
    return str(low) if low == high else f"{low}-{high}"


class RoomNotices:
    """Says once per engine, not once per row, that a stage's prompts do not leave room for its `max_new_tokens`:
    once per budget that had to be capped, and once when a prompt fills the whole context."""

    def __init__(self, name: str, max_model_len: int):
        self.name, self.max_model_len = name, max_model_len
        self.said: set[tuple[str, int]] = set()

    def check(self, encoded: list[list[int]], budgets: list[int], max_new_tokens: int) -> None:
        capped = [len(ids) for ids, budget in zip(encoded, budgets) if 0 < budget < max_new_tokens]
        if capped and ("capped", max_new_tokens) not in self.said:
            self.said.add(("capped", max_new_tokens))
            log.warning(
                "%s: prompt + max_new_tokens=%d exceed max_model_len=%d (prompts of %s tokens): such rows generate "
                "only up to the room left, %s new tokens, and end as `length`; raise max_model_len or lower the "
                "stage's max_new_tokens (said once per engine)", self.name, max_new_tokens, self.max_model_len,
                _span(min(capped), max(capped)),
                _span(self.max_model_len - max(capped), self.max_model_len - min(capped)))
        full = [len(ids) for ids, budget in zip(encoded, budgets) if budget == 0]
        if full and ("full", 0) not in self.said:
            self.said.add(("full", 0))
            log.warning("%s: a prompt of %d tokens leaves no room in max_model_len=%d: such rows are rejected as "
                        "generation_error (said once per engine)", self.name, min(full), self.max_model_len)


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
