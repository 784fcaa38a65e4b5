"""Eliminate: the WizardLM-style elimination of failed evolutions, each with a reason."""

from __future__ import annotations

import re

import numpy as np

from engine.config import Config
from engine.prompts.evol import TEMPLATE_MARKERS
from engine.records import ok_mask, reject_with_reasons

# Refusal openings, checked on the first 160 characters only: a long instruction that merely mentions an
# apology is not a refusal.
REFUSAL = re.compile(
    r"^\W*(i'?m sorry|i am sorry|sorry,|i apologi[sz]e|i can(?:no|')t|i am unable|i'm unable|i won'?t|"
    r"as an ai\b|as a language model)",
    re.IGNORECASE,
)
_SPACE = re.compile(r"\s+")
_PUNCT = re.compile(r"[^\w\s]")


def normalise(text: str) -> str:
    """Lower-cased, punctuation-free, single-spaced text: what "the same instruction" means here."""
    return _SPACE.sub(" ", _PUNCT.sub(" ", text.lower())).strip()


def elimination_reason(evolved: str, parent: str) -> tuple[str, str]:
    """Why an evolved instruction failed (reason code, detail), or ("", "") when it is kept."""
    if not evolved.strip():
        return "empty", "the evolver returned an empty instruction"
    if normalise(evolved) == normalise(parent):
        return "copy_of_parent", "the evolved instruction repeats its parent"
    for marker in TEMPLATE_MARKERS:
        if marker.lower() in evolved.lower():
            return "template_leak", f"the evolved instruction contains the template marker {marker!r}"
    if REFUSAL.search(evolved[:160]):
        return "refusal", f"the evolver refused: {evolved[:80]!r}"
    return "", ""


class Eliminate:
    """Rejects evolutions that are empty, copy their parent, leak template markers, or refuse."""

    uses_model = False

    def __init__(self, cfg: Config, round_num: int, torch_threads: int | None = None):
        self.round_num = round_num

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ok = ok_mask(batch)
        n = len(ok)
        reasons, details = [""] * n, [""] * n
        for i in np.flatnonzero(ok):
            reasons[i], details[i] = elimination_reason(str(batch["instruction"][i]), str(batch["parent_instruction"][i]))
        reject_with_reasons(batch, reasons, details, stage="eliminate")
        return batch
