"""AutoIF's pure rules, shared by its stages: augmentation line parsing and dedup, verification JSON
extraction, expected-output normalisation, and the cross-validation arithmetic (spec: seed-reference 2.2)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from engine.stages.generation.eliminate import normalise

_FENCED_JSON = re.compile(r"```json(.*?)```", re.DOTALL)  # the seed's pattern: first ```json block only
_FENCED_ANY = re.compile(r"```[a-zA-Z0-9_-]*\s*\n?(.*?)```", re.DOTALL)
# Lines of a verifier the seed drops before running it (it audits downloads and HTTP clients).
_BANNED_LINE = ("download", "requests")


def augment_lines(text: str) -> list[str]:
    """The seed's rule for one augmentation output: every line, `.strip('- ').strip()` (which strips any run of
    leading/trailing '-' and ' ' characters, as the seed does)."""
    return [line.strip("- ").strip() for line in text.split("\n")]


def line_verdicts(seeds: list[str], generated: list[str]) -> list[str]:
    """Per generated line: "" for a new instruction, else "empty", "exact_duplicate" or "normalised_duplicate"
    (of a seed or an earlier line)."""
    seen_exact, seen_norm, verdicts = set(seeds), {normalise(s) for s in seeds}, []
    for line in generated:
        if not line:
            verdicts.append("empty")
        elif line in seen_exact:
            verdicts.append("exact_duplicate")
        elif (norm := normalise(line)) in seen_norm:
            verdicts.append("normalised_duplicate")
        else:
            verdicts.append("")
            seen_exact.add(line)
            seen_norm.add(norm)
    return verdicts


def dedup_instructions(seeds: list[str], generated: list[str]) -> tuple[list[str], dict[str, int]]:
    """Seeds first (always kept), then new non-empty lines that are neither an exact nor a normalised repeat.

    Returns the instructions and counts: lines, empty, exact duplicates, normalised duplicates, kept new."""
    verdicts = line_verdicts(seeds, generated)
    return list(seeds) + [line for line, verdict in zip(generated, verdicts) if not verdict], dedup_counts(verdicts)


def dedup_counts(verdicts: list[str]) -> dict[str, int]:
    """Lines in all, and how many of them were empty, exact duplicates, normalised duplicates or new."""
    counts = {"lines": len(verdicts), "empty": 0, "exact_duplicate": 0, "normalised_duplicate": 0, "new": 0}
    for verdict in verdicts:
        counts[verdict or "new"] += 1
    return counts


@dataclass(frozen=True)
class Verification:
    """One parsed verification answer: the function source and its (input, expected) cases."""

    func: str
    cases: list[tuple[str, object]] = field(default_factory=list)


def extract_verification(text: str, mode: str = "robust") -> tuple[Verification | None, str]:
    """Parse one verification generation into (Verification, "") or (None, reason).

    mode "seed": the first ```json fenced block only (unfenced JSON dropped), as the research code does.
    mode "robust": every fenced block in order, then bare JSON objects in the text; the first that parses to an
    object with a string `func` wins."""
    if mode == "seed":
        match = _FENCED_JSON.search(text)
        candidates = [match.group(1)] if match else []
    elif mode == "robust":
        candidates = [m.group(1) for m in _FENCED_ANY.finditer(text)] + list(_bare_objects(text))
    else:
        raise ValueError(f"autoif.json_mode must be seed or robust, not {mode!r}")
    if not candidates:
        return None, "no_json"
    for candidate in candidates:
        value = _loads(candidate)
        if isinstance(value, dict) and isinstance(value.get("func"), str):
            return _verification(value), ""
    return None, "bad_json"


def _loads(text: str):
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return None


def _bare_objects(text: str):
    """JSON objects embedded in free text, in order of their opening brace."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except (json.JSONDecodeError, RecursionError):
            continue
        yield json.dumps(value)


def _verification(value: dict) -> Verification:
    func = "\n".join(line for line in value["func"].strip().split("\n")
                     if not any(word in line for word in _BANNED_LINE))
    cases = []
    for case in value.get("cases") or []:
        if isinstance(case, dict) and "input" in case and "output" in case and isinstance(case["input"], str):
            cases.append((case["input"], case["output"]))
    return Verification(func, cases)


def normalise_expected(value):
    """Expected outputs as booleans when they spell one ("true", "False", ...); other values unchanged.
    The seed compares raw values, so a string "true" never equals the function's True (fidelity mode)."""
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return value


def unique_cases(cases: list[tuple[str, object]]) -> list[tuple[str, object]]:
    """Cases deduplicated by their JSON form, first occurrence kept (the seed uses set(json.dumps))."""
    seen, out = set(), []
    for case in cases:
        key = json.dumps(case, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            out.append(case)
    return out


@dataclass(frozen=True)
class CrossValidation:
    """Which cases and functions survived, with each function's accuracy on the kept cases."""

    kept_cases: list[int]
    accuracy: list[float]  # per function, over the kept cases (0.0 when no case was kept)
    kept_funcs: list[int]


def cross_validate(passed: list[list[bool]], min_func_acc: float = 0.8) -> CrossValidation:
    """passed[f][c]: whether function f returned case c's expected output. A case is kept if any function
    passes it; a function is kept if its accuracy over the kept cases is at least `min_func_acc`."""
    n_cases = len(passed[0]) if passed else 0
    kept_cases = [c for c in range(n_cases) if any(row[c] for row in passed)]
    accuracy = [sum(row[c] for c in kept_cases) / len(kept_cases) if kept_cases else 0.0 for row in passed]
    kept_funcs = [f for f, acc in enumerate(accuracy) if kept_cases and acc >= min_func_acc]
    return CrossValidation(kept_cases, accuracy, kept_funcs)
