"""Eliminate: the WizardLM-style elimination of failed evolutions, each with a reason."""

from __future__ import annotations

import re
import zlib

import numpy as np

from engine.prompts.evol import TEMPLATE_MARKERS
from engine.rows.records import ok_mask, reject_with_reasons

# Refusal openings, checked on the first 160 characters only: a long instruction that merely mentions an
# apology is not a refusal.
REFUSAL = re.compile(
    r"^\W*(i'?m sorry|i am sorry|sorry,|i apologi[sz]e|i can(?:no|')t|i am unable|i'm unable|i won'?t|"
    r"as an ai\b|as a language model)",
    re.IGNORECASE,
)
# Opening sentences of the meta-prompts: an evolution that repeats them echoed its prompt.
PROMPT_ECHOES = ("I want you to act as a Prompt Rewriter", "I want you to act as a Prompt Creator",
                 "please provide a comprehensive and accurate response")
# Runaway repetition: text long enough to judge that zlib squeezes below this ratio (English prose stays
# above ~0.35 at these lengths; a phrase looped to the token limit falls far below).
REPETITION_MIN_CHARS = 160
REPETITION_RATIO = 0.2
_SPACE = re.compile(r"\s+")
_PUNCT = re.compile(r"[^\w\s]")


def normalise(text: str) -> str:
    """Lower-cased, punctuation-free, single-spaced text: what "the same instruction" means here."""
    return _SPACE.sub(" ", _PUNCT.sub(" ", text.lower())).strip()


def is_runaway_repetition(text: str) -> bool:
    """Whether `text` loops: long, and compressing to under REPETITION_RATIO of its size."""
    data = text.encode("utf-8", "surrogatepass")
    return len(data) >= REPETITION_MIN_CHARS and len(zlib.compress(data, 9)) / len(data) < REPETITION_RATIO


def echoed_prompt(text: str) -> str:
    """The meta-prompt sentence `text` repeats, or ""."""
    lowered = text.lower()
    return next((echo for echo in PROMPT_ECHOES if echo.lower() in lowered), "")


def elimination_reason(evolved: str, parent: str) -> tuple[str, str]:
    """Why an evolved instruction failed (reason code, detail), or ("", "") when it is kept."""
    if not evolved.strip():
        return "empty", "the evolver returned an empty instruction"
    if normalise(evolved) == normalise(parent):
        return "copy_of_parent", "the evolved instruction repeats its parent"
    for marker in TEMPLATE_MARKERS:
        if marker.lower() in evolved.lower():
            return "template_leak", f"the evolved instruction contains the template marker {marker!r}"
    if echo := echoed_prompt(evolved):
        return "prompt_echo", f"the evolved instruction repeats the evolution prompt ({echo!r})"
    if REFUSAL.search(evolved[:160]):
        return "refusal", f"the evolver refused: {evolved[:80]!r}"
    if is_runaway_repetition(evolved):
        return "repetition", f"the evolved instruction loops: {evolved[:80]!r}..."
    return "", ""


def response_reason(response: str, instruction: str) -> tuple[str, str]:
    """Why a response is degenerate (reason code, detail), or ("", "") when it is kept. Refusals are kept: a
    response may rightly decline, and the evolution filter already drops instructions that only invite one."""
    if not response.strip():
        return "empty_response", "the responder returned an empty answer"
    if normalise(response) == normalise(instruction) or echoed_prompt(response):
        return "response_echo", "the response repeats the instruction or the response prompt"
    if is_runaway_repetition(response):
        return "response_repetition", f"the response loops: {response[:80]!r}..."
    return "", ""


class Eliminate:
    """Rejects evolutions that are empty, copy their parent, leak template markers, echo the prompt, refuse, or loop."""

    uses_model = False

    def __init__(self, args=None, torch_threads: int | None = None):
        pass  # rule-based: no settings

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ok = ok_mask(batch)
        n = len(ok)
        reasons, details = [""] * n, [""] * n
        for i in np.flatnonzero(ok):
            reasons[i], details[i] = elimination_reason(str(batch["instruction"][i]), str(batch["parent_instruction"][i]))
        reject_with_reasons(batch, reasons, details, stage="eliminate")
        return batch
