"""Structured-output benchmark (#25): AutoIF's verification and Auto Evol-Instruct's 4-step evolution with the
option off and on, over the same seeds, row seeds and sampling, stage by stage in one process (no Ray).

Per model (tiny, smollm2-135m by default), backend (hf; vllm too where vLLM is installed:
`.venv-vllm/bin/python benchmarks/structured.py --backends hf,vllm`) and recipe, each side records the parse rate,
the rows surviving each filter, generated tokens, generated tokens per kept row and tokens/s of the generating
stage. AutoIF: verification answers parsed -> functions executable (in the sandbox) -> constraints with a
kept case -> verified constraints. Auto Evol-Instruct: answers -> parsed (not `unparsable`) -> past the
elimination filter. Off and on alternate per repeat on the same loaded model, after one untimed warm-up row of each
(model start, grammar compilation: both backends cache the compiled grammar); saves
benchmarks/results/structured.json with the machine's facts.
"""

from __future__ import annotations

import argparse
import json
import time
from importlib import resources
from pathlib import Path

import numpy as np

from engine.backends import metered_backends, shared_backends
from engine.backends.vllm_config import vllm_installed
from engine.config import Config, ModelConfig
from engine.measure.machine import machine_facts
from engine.read.validate import records_from_rows
from engine.recipes import specs
from engine.stages.autoif.augment import seed_constraints
from engine.stages.generation.eliminate import Eliminate

# vLLM on CPU runs tiny_wide, not tiny: its CPU attention has no kernel for tiny's head size 16.
MODELS = {"tiny": {"embedded": "tiny"}, "tiny_wide": {"embedded": "tiny_wide"}, "smollm2-135m": {}}


def batch_of(texts: list[str]) -> dict:
    return records_from_rows([{"instruction": t, "input": ""} for t in texts], "bench.jsonl")


def demo_instructions(n: int) -> list[str]:
    path = resources.files("engine") / "data" / "demo_seeds.jsonl"
    return [json.loads(line)["instruction"] for line in path.read_text("utf-8").splitlines() if line.strip()][:n]


def timed(stage, batch: dict) -> tuple[dict, float, int]:
    """The stage's output, its seconds and the tokens its model generated."""
    meter = stage.model
    meter.take()
    started = time.perf_counter()
    out = stage(batch)
    seconds = time.perf_counter() - started
    return out, seconds, meter.take()[1]


def autoif_side(cfg: Config, constraints: list[str]) -> dict:
    with metered_backends():
        verify = specs.verify(cfg, 2).build()
    out, seconds, generated = timed(verify, batch_of(constraints))
    checked = specs.cross_validate(cfg).build()(out)
    generations = int(checked["cv_generations"].sum())
    verified = int((checked["status"] == "ok").sum())
    return {
        "structured": cfg.autoif.structured, "constraints": len(constraints), "answers": generations,
        "parsed": int(checked["cv_parsed"].sum()),
        "parse_rate": round(int(checked["cv_parsed"].sum()) / generations, 4) if generations else None,
        "constraints_with_a_parsed_answer": int((checked["cv_parsed"] > 0).sum()),
        "constraints_with_an_executable_function": int((checked["cv_funcs_executable"] > 0).sum()),
        "constraints_with_a_kept_case": int((checked["cv_cases_kept"] > 0).sum()),
        "constraints_verified": verified,
        "rejected_by_reason": dict(zip(*np.unique(checked["reason"][checked["status"] != "ok"], return_counts=True)))
        if verified < len(constraints) else {},
        "generated_tokens": generated, "seconds": round(seconds, 2),
        "tokens_per_s": round(generated / seconds, 1) if seconds else None,
        "generated_tokens_per_kept_row": round(generated / verified, 1) if verified else None,
    }, verify


def auto_evol_side(cfg: Config, instructions: list[str]) -> dict:
    with metered_backends():
        evolve = specs.auto_evolve(cfg, 1).build()
    out, seconds, generated = timed(evolve, batch_of(instructions))
    unparsable = int((out["reason"] == "unparsable").sum())
    answers = len(instructions) - int((out["reason"] == "generation_error").sum())
    parsed = answers - unparsable
    kept = int((Eliminate()(out)["status"] == "ok").sum())
    return {
        "structured": cfg.auto_evol.structured, "answers": answers, "unparsable": unparsable,
        "unparsable_share": round(unparsable / answers, 4) if answers else None, "parsed": parsed,
        "past_elimination": kept, "generated_tokens": generated, "seconds": round(seconds, 2),
        "tokens_per_s": round(generated / seconds, 1) if seconds else None,
        "generated_tokens_per_kept_row": round(generated / kept, 1) if kept else None,
    }, evolve


def jsonable(value):
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    return value


def run_model(name: str, backend: str, args) -> dict:
    model = ModelConfig(name=name, backend=backend, dtype="float32", max_model_len=args.max_model_len,
                        **MODELS[name])
    cfg = Config(model=model)
    cfg.run.output_dir = "unused"
    cfg.autoif.samples_per_instruction = args.samples
    cfg.autoif.generate.max_new_tokens = args.verify_tokens
    cfg.recipe.evolve.max_new_tokens = args.evolve_tokens
    constraints = seed_constraints(cfg.autoif)[: args.constraints]
    instructions = demo_instructions(args.instructions)
    sides: dict = {"autoif": {"off": [], "on": []}, "auto_evol": {"off": [], "on": []}}
    loaded = []
    with shared_backends():  # off and on share one loaded model (one vLLM engine)
        for structured in (False, True):  # warm-up, untimed: model start-up, grammar compilation (cached after)
            cfg.autoif.structured = cfg.auto_evol.structured = structured
            autoif_side(cfg, constraints[:1])
            auto_evol_side(cfg, instructions[:1])
        for _ in range(args.repeat):
            for structured in (False, True):
                key = "on" if structured else "off"
                cfg.autoif.structured = cfg.auto_evol.structured = structured
                result, stage = autoif_side(cfg, constraints)
                sides["autoif"][key].append(result)
                result, stage = auto_evol_side(cfg, instructions)
                sides["auto_evol"][key].append(result)
                loaded.append(stage.model)
                print(json.dumps(jsonable({"model": name, "backend": backend, "structured": structured,
                                           "autoif": sides["autoif"][key][-1],
                                           "auto_evol": sides["auto_evol"][key][-1]})), flush=True)
    if backend == "vllm" and loaded:
        loaded[0].close()
    for recipe in sides.values():
        off = [r["tokens_per_s"] for r in recipe["off"] if r["tokens_per_s"]]
        on = [r["tokens_per_s"] for r in recipe["on"] if r["tokens_per_s"]]
        recipe["tokens_per_s_on_over_off"] = round(float(np.median(on)) / float(np.median(off)), 3) \
            if off and on else None
    return {"model": name, "backend": backend, **jsonable(sides)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="tiny,smollm2-135m")
    parser.add_argument("--backends", default="hf", help="hf,vllm (vllm needs .venv-vllm)")
    parser.add_argument("--constraints", type=int, default=4, help="seed constraints verified")
    parser.add_argument("--samples", type=int, default=2, help="verification answers per constraint")
    parser.add_argument("--instructions", type=int, default=8, help="demo instructions auto-evolved")
    parser.add_argument("--verify-tokens", type=int, default=384)
    parser.add_argument("--evolve-tokens", type=int, default=256)
    parser.add_argument("--max-model-len", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "structured.json"))
    args = parser.parse_args()
    backends = args.backends.split(",")
    if "vllm" in backends and not vllm_installed():
        raise SystemExit("--backends vllm needs vLLM: run it with .venv-vllm/bin/python")
    results = [run_model(name, backend, args) for backend in backends for name in args.models.split(",")]
    report = {"settings": vars(args), "sampling": "T=0.7, top_p=0.95, per-row seeds (the seed's for both steps)",
              "results": results, "machine": machine_facts()}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
