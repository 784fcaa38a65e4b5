"""Token metering of a backend, for the run's per-stage accounting (engine/run/accounting.py): load_backend wraps
what it builds inside metered_backends(), so the stage chain counts every model's tokens without looking inside
a stage."""

from __future__ import annotations


class TokenMeter:
    """A backend with its token counts tallied: prompt and generated tokens of every generate() call, and the
    tokens of every sequence token_losses() or a reward model's score() reads (prefill, counted as prompt tokens).
    Every generator (HF, vLLM, echo) returns the same Generation objects, so the count is the same everywhere."""

    def __init__(self, backend):
        self._backend = backend
        self.prompt_tokens = self.generated_tokens = 0

    def __getattr__(self, name):
        if name == "_backend":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self._backend, name)

    def generate(self, prompts, sampling, *args, **kwargs):
        generations = self._backend.generate(prompts, sampling, *args, **kwargs)
        self.prompt_tokens += sum(int(g.prompt_tokens) for g in generations)
        self.generated_tokens += sum(int(g.generated_tokens) for g in generations)
        return generations

    def token_losses(self, sequences):
        self.prompt_tokens += sum(len(s) for s in sequences)
        return self._backend.token_losses(sequences)

    def score(self, sequences, *args, **kwargs):
        self.prompt_tokens += sum(len(s) for s in sequences)
        return self._backend.score(sequences, *args, **kwargs)

    def take(self) -> tuple[int, int]:
        """(prompt, generated) tokens since the last take."""
        counts = self.prompt_tokens, self.generated_tokens
        self.prompt_tokens = self.generated_tokens = 0
        return counts
