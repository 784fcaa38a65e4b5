"""Token metering of a backend, for the run's per-stage accounting (engine/run/accounting.py): load_backend wraps
what it builds inside metered_backends(), so the stage chain counts every model's tokens without looking inside
a stage."""

from __future__ import annotations

import threading


class TokenMeter:
    """A backend with its token counts tallied: prompt and generated tokens of every generate() call, and the
    tokens of every sequence token_losses() or a reward model's score() reads (prefill, counted as prompt tokens).
    Every generator (HF, vLLM, echo) returns the same Generation objects, so the count is the same everywhere.
    Counts are kept per calling thread, so concurrent stage calls in one actor each count their own batch."""

    def __init__(self, backend):
        self._backend = backend
        self._counts = threading.local()  # per calling thread: a vLLM stage actor runs several batches at once

    def __getattr__(self, name):
        if name in ("_backend", "_counts"):  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self._backend, name)

    def _add(self, prompt: int, generated: int = 0) -> None:
        self._counts.prompt = getattr(self._counts, "prompt", 0) + prompt
        self._counts.generated = getattr(self._counts, "generated", 0) + generated

    def generate(self, prompts, sampling, *args, **kwargs):
        generations = self._backend.generate(prompts, sampling, *args, **kwargs)
        self._add(sum(int(g.prompt_tokens) for g in generations), sum(int(g.generated_tokens) for g in generations))
        return generations

    def token_losses(self, sequences):
        self._add(sum(len(s) for s in sequences))
        return self._backend.token_losses(sequences)

    def score(self, sequences, *args, **kwargs):
        self._add(sum(len(s) for s in sequences))
        return self._backend.score(sequences, *args, **kwargs)

    def take(self) -> tuple[int, int]:
        """(prompt, generated) tokens this thread's calls handled since its last take."""
        counts = getattr(self._counts, "prompt", 0), getattr(self._counts, "generated", 0)
        self._counts.prompt = self._counts.generated = 0
        return counts
