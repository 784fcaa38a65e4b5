"""AutoIF verification: write `evaluate(response)` functions with test cases, then cross-validate them by running
them in the sandbox (never in this process). Spec: seed-reference 2.2, stages 2 and 3."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional

import numpy as np

from engine.backends import Sampling, load_backend
from engine.config import ModelConfig, SamplingConfig, SandboxConfig
from engine.prompts.autoif import verification_prompt, verification_structured
from engine.rows.records import default_columns, ok_mask, reject_with_reasons
from engine.rows.rng import row_seeds
from engine.sandbox import Limits, Sandbox
from engine.stages.autoif.rules import cross_validate, extract_verification, normalise_expected, unique_cases

# Pass-rate counters per instruction; the summary adds them up (parsed -> executable -> cases kept -> funcs kept).
CROSS_VALIDATE_COUNTS = {
    "cv_generations": 0,
    "cv_parsed": 0,
    "cv_funcs": 0,
    "cv_funcs_executable": 0,
    "cv_cases": 0,
    "cv_cases_kept": 0,
    "cv_funcs_kept": 0,
}


@dataclass(frozen=True)
class VerifyArgs:
    """What VerifyGen uses: the model, its sampling, generations per instruction, and the round."""

    model: ModelConfig
    sampling: SamplingConfig
    samples: int = 8
    run_seed: int = 0
    round_num: int = 2
    structured: bool = False  # constrain each answer to the verification JSON (prompts/autoif.py)


class VerifyGen:
    """For each ok instruction, `autoif.samples_per_instruction` generations of the verification prompt, stored
    as a JSON list in `verifications`; with `structured`, every generation is a fenced block of the verification
    JSON, sized so that the longest one fits `max_new_tokens`."""

    uses_model = True

    def __init__(self, args: VerifyArgs, torch_threads: int | None = None):
        self.round_num = args.round_num
        self.samples = args.samples
        self.settings = args.sampling
        self.run_seed = args.run_seed
        self.structured = verification_structured(args.sampling.max_new_tokens) if args.structured else None
        self.model = load_backend(args.model, torch_threads=torch_threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = np.flatnonzero(ok_mask(batch))
        prompts, ids = [], []
        for i in rows:
            prompt = verification_prompt(str(batch["instruction"][i]))
            for k in range(self.samples):
                prompts.append(prompt)
                ids.append(f"{batch['id'][i]}#v{k}")
        sampling = Sampling(self.settings.temperature, self.settings.top_p, self.settings.max_new_tokens)
        seeds = row_seeds(self.run_seed, "verify", self.round_num, ids)
        generations = self.model.generate(prompts, sampling, seeds, structured=self.structured) if prompts else []
        out = np.full(len(batch["id"]), "[]", dtype=object)
        for n, i in enumerate(rows):
            chunk = generations[n * self.samples:(n + 1) * self.samples]
            out[i] = json.dumps([g.text for g in chunk if not g.error], ensure_ascii=False)
        batch["verifications"] = out
        return batch


@dataclass(frozen=True)
class CrossValidateArgs:
    """What CrossValidate uses: how to parse the generations, the filters, and the sandbox's limits."""

    sandbox: SandboxConfig
    json_mode: str = "robust"
    normalise_expected: bool = True
    min_func_acc: float = 0.8
    min_funcs: Optional[int] = None
    min_cases: Optional[int] = None


class CrossValidate:
    """Parses each instruction's verification generations, runs every function on every case in the sandbox,
    keeps the cases some function passes and the functions with accuracy >= `autoif.min_func_acc` over them.

    A function counts as executable when at least one case ran without an error. Rows without a surviving
    function are rejected with the step that emptied them."""

    uses_model = False

    def __init__(self, args: CrossValidateArgs, torch_threads: int | None = None):
        self.args = args
        box = args.sandbox
        if box.require not in ("auto", "strict"):
            raise ValueError(f"autoif.sandbox.require must be auto or strict, not {box.require!r}")
        limits = Limits(wall_s=box.wall_s, cpu_s=box.cpu_s, memory_mb=box.memory_mb, workers=box.workers,
                        tmp_mb=box.tmp_mb, uid_first=box.uid_first, uid_count=box.uid_count)
        self.sandbox = Sandbox(limits, isolation=box.isolation, require_mounts=box.require == "strict")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["id"])
        added = default_columns(n, {**CROSS_VALIDATE_COUNTS, "eval_funcs": "[]", "cases": "[]", "func_accuracy": "[]",
                                    "sandbox_isolation": ""})
        # Which isolation the verifiers ran under (engine/sandbox/README.md): recorded on every row it judged.
        added["sandbox_isolation"][ok_mask(batch)] = self.sandbox.isolation
        reasons, details = [""] * n, [""] * n
        for i in np.flatnonzero(ok_mask(batch)):
            reasons[i], details[i] = self._row(json.loads(batch["verifications"][i]), added, i)
        batch.update(added)
        reject_with_reasons(batch, reasons, details, stage="cross_validate")
        return batch

    def _row(self, generations: list[str], added: dict, i: int) -> tuple[str, str]:
        settings = self.args
        added["cv_generations"][i] = len(generations)
        funcs, cases = [], []
        for text in generations:
            found, _ = extract_verification(text, settings.json_mode)
            if found is None:
                continue
            added["cv_parsed"][i] += 1
            if found.func not in funcs:
                funcs.append(found.func)
            cases.extend(found.cases)
        if settings.normalise_expected:
            cases = [(text, normalise_expected(expected)) for text, expected in cases]
        cases = unique_cases(cases)
        added["cv_funcs"][i], added["cv_cases"][i] = len(funcs), len(cases)
        if not funcs or not cases:
            return "no_verification", f"{added['cv_parsed'][i]} of {len(generations)} generations parsed; " \
                                      f"{len(funcs)} functions, {len(cases)} cases"
        if (settings.min_funcs and len(funcs) < settings.min_funcs) or (settings.min_cases and len(cases) < settings.min_cases):
            return "too_few_verifiers", f"{len(funcs)} functions, {len(cases)} cases (minimums " \
                                        f"{settings.min_funcs}, {settings.min_cases})"
        verdicts = self.sandbox.check_many([(func, cases) for func in funcs])
        executable = [f for f, row in enumerate(verdicts) if any(v.status != "error" for v in row)]
        added["cv_funcs_executable"][i] = len(executable)
        passed = [[v.status == "pass" for v in verdicts[f]] for f in executable]
        result = cross_validate(passed, settings.min_func_acc)
        added["cv_cases_kept"][i] = len(result.kept_cases)
        added["cv_funcs_kept"][i] = len(result.kept_funcs)
        added["eval_funcs"][i] = json.dumps([funcs[executable[f]] for f in result.kept_funcs])
        added["cases"][i] = json.dumps([list(cases[c]) for c in result.kept_cases])
        added["func_accuracy"][i] = json.dumps([round(result.accuracy[f], 4) for f in result.kept_funcs])
        if not executable:
            return "no_executable_function", f"all {len(funcs)} functions raised on every case"
        if not result.kept_cases:
            return "no_case_kept", f"no function returned the expected output of any of {len(cases)} cases"
        if not result.kept_funcs:
            return "no_function_kept", f"no function reached accuracy {settings.min_func_acc} on the kept cases"
        return "", ""
