"""AutoIF's augmentation and query steps (seed-reference 2.2, stages 1 and 4); verification is stages/verify.py.

Augmentation is small by construction (`autoif.augment_calls` generations of ~50 lines each), so the lines are
split and deduplicated on the driver between phases; the query expansion (one verified constraint -> 16 rows)
runs as a Ray Data step."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from engine.backends import Sampling, load_backend
from engine.config import AutoIFConfig, ModelConfig, SamplingConfig
from engine.prompts.autoif import augment_prompt
from engine.read.validate import records_from_rows
from engine.rows.records import ok_mask, reject, reject_with_reasons
from engine.rows.rng import row_seed, row_seeds
from engine.stages.autoif.rules import augment_lines, dedup_counts, line_verdicts


def seed_constraints(cfg: AutoIFConfig) -> list[str]:
    """The seed constraints, one per non-empty line."""
    path = Path(cfg.seeds_path) if cfg.seeds_path else resources.files("engine") / "data" / "autoif_seed_constraints.txt"
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_queries(cfg: AutoIFConfig) -> list[str]:
    """User queries kept when `query_min_chars < len < query_max_chars` (the seed's ShareGPT filter), in file order."""
    path = Path(cfg.queries_path) if cfg.queries_path else resources.files("engine") / "data" / "autoif_queries.jsonl"
    queries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            query = json.loads(line).get("query", "")
            if isinstance(query, str) and cfg.query_min_chars < len(query) < cfg.query_max_chars:
                queries.append(query)
    return queries


def augment_call_rows(calls: int) -> dict[str, np.ndarray]:
    """Phase 1's input: one row per augmentation call (the prompt is the same for all; the row seeds differ)."""
    rows = [{"id": f"augment-{k:04d}", "instruction": f"augmentation call {k}"} for k in range(calls)]
    return records_from_rows(rows, "autoif-augment")


@dataclass(frozen=True)
class AugmentArgs:
    """What AugmentGen uses: the model, its sampling, the seed constraints the prompt lists, and the round."""

    model: ModelConfig
    sampling: SamplingConfig
    constraints: tuple[str, ...]
    run_seed: int = 0
    round_num: int = 1


class AugmentGen:
    """Sends the augmentation prompt (with every seed constraint) once per ok row; the text goes to `output`."""

    uses_model = True

    def __init__(self, args: AugmentArgs, torch_threads: int | None = None):
        self.prompt = augment_prompt(list(args.constraints))
        self.settings = args.sampling
        self.run_seed, self.round_num = args.run_seed, args.round_num
        self.model = load_backend(args.model, torch_threads=torch_threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = np.flatnonzero(ok_mask(batch))
        sampling = Sampling(self.settings.temperature, self.settings.top_p, self.settings.max_new_tokens)
        seeds = row_seeds(self.run_seed, "augment", self.round_num, [batch["id"][i] for i in rows])
        generations = self.model.generate([self.prompt] * len(rows), sampling, seeds) if len(rows) else []
        output = np.asarray(batch["output"], dtype=object).copy()
        failed, errors = np.zeros(len(output), dtype=bool), [""] * len(output)
        for i, generation in zip(rows, generations):
            output[i] = generation.text
            if generation.error:
                failed[i], errors[i] = True, generation.error
        batch["output"] = output
        reject(batch, failed, "generation_error", errors, stage="augment")
        return batch


def instruction_rows(seeds: list[str], calls: list[tuple[str, str]]) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Phase 2's input from phase 1's (call id, generation) pairs: the seed constraints, then every new line
    (seed rule, then exact + normalised dedup). Empty and repeated lines come along as rejected rows, so every
    generated line is accounted for. Returns the batch and the dedup counts."""
    lines = [(f"{call_id}.l{j}", text) for call_id, generation in calls
             for j, text in enumerate(augment_lines(generation))]
    line_checks = line_verdicts(seeds, [text for _, text in lines])
    verdicts = [""] * len(seeds) + line_checks
    rows = [{"id": f"seed-{i:03d}", "instruction": s} for i, s in enumerate(seeds)]
    rows += [{"id": line_id, "instruction": text or "(empty line)"} for line_id, text in lines]
    batch = records_from_rows(rows, "autoif-augment")
    # Lines the record checks refuse (e.g. a NUL character) were rejected at "read": they are augmentation output.
    batch["rejected_at"] = np.where(batch["rejected_at"] == "read", "augment", batch["rejected_at"]).astype(object)
    reasons = [{"": "", "empty": "empty_line"}.get(v, "duplicate_instruction") for v in verdicts]
    details = [{"": "", "empty": "the line is empty"}.get(
        v, "the line repeats a seed or an earlier line (exactly or once normalised)") for v in verdicts]
    reject_with_reasons(batch, reasons, details, stage="augment")
    return batch, dedup_counts(line_checks)


def expand_queries(batch: dict[str, np.ndarray], queries: list[str], per_instruction: int, run_seed: int,
                   round_num: int) -> dict[str, np.ndarray]:
    """Each ok verified constraint becomes up to `per_instruction` rows, one per query sampled with a seed from
    the run seed and the constraint's id (so any batching samples the same queries): instruction = the
    constraint, input = the query. Rejected rows pass through as they are."""
    picks: list[tuple[int, str, str]] = []  # (parent row, child id, query)
    ok = ok_mask(batch)
    for i in range(len(batch["id"])):
        if not ok[i]:
            picks.append((i, str(batch["id"][i]), None))
            continue
        rng = random.Random(row_seed(run_seed, "queries", round_num, str(batch["id"][i])))
        for j, query in enumerate(rng.sample(queries, min(per_instruction, len(queries)))):
            picks.append((i, f"{batch['id'][i]}.q{j}", query))
    parents = np.array([p for p, _, _ in picks], dtype=np.int64)
    out = {name: np.asarray(values)[parents] if len(parents) else np.asarray(values)[:0] for name, values in batch.items()}
    for name in ("id", "parent_id", "input", "output", "parent_instruction", "method"):
        out[name] = np.asarray(out[name], dtype=object).copy()
    for row, (parent, child_id, query) in enumerate(picks):
        if query is None:
            continue
        out["parent_id"][row] = batch["id"][parent]
        out["id"][row] = child_id
        out["input"][row] = query
        out["output"][row] = ""
        out["parent_instruction"][row] = batch["instruction"][parent]
        out["method"][row] = "autoif"
    out["round"] = np.where([q is not None for _, _, q in picks], round_num, out["round"]).astype(np.int64)
    return out
