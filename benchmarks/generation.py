"""Generation benchmark: the Evolve stage's rows/s and generated tokens/s on any backend, and batching measured
side by side in one run on the same prompts.

- engine: `engine.stages.evolve.Evolve` in-process on N demo seeds (the recipe's sampling, T=0.7 / top_p=0.95).
- CPU (hf backend): greedy HF generation of the same evolution prompts at each batch size against one prompt at
  a time, same max_new_tokens. Sequences stop at EOS at different lengths, so the ratio compares tokens/s.
- CUDA with vLLM installed: bare `vllm.LLM.generate` on the same prompt token ids, greedy, against the engine's
  Evolve stage with model.backend=vllm, also in tokens/s.

Prints the result as JSON and saves it (default benchmarks/results/generation.json).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import time
from dataclasses import replace
from importlib import resources
from pathlib import Path

import torch

from engine.backends import Sampling, load_backend
from engine.config import Config, ModelConfig
from engine.io.readers import records_from_rows
from engine.prompts.evol import evolution_prompt, method_order, pick_method
from engine.stages.evolve import Evolve

MODELS = {
    "tiny": ModelConfig(name="tiny", embedded="tiny"),
    "tiny_wide": ModelConfig(name="tiny_wide", embedded="tiny_wide"),
    "smollm2-135m": ModelConfig(name="smollm2-135m", embedded="smollm2-135m"),
}


def demo_rows(n: int) -> list[dict]:
    path = resources.files("engine") / "data" / "demo_seeds.jsonl"
    rows = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
    return (rows * (n // len(rows) + 1))[:n]


def evolution_prompts(rows: list[dict]) -> list[str]:
    """The prompts the Evolve stage sends for these seeds in round 1 (method rotation included)."""
    methods = method_order(True)
    return [evolution_prompt(pick_method(methods, i, 1), row["instruction"], False) for i, row in enumerate(rows)]


def bench_stage(cfg: Config, rows: list[dict], threads: int) -> dict:
    """The Evolve stage on one batch of N seed rows, as an actor runs it (model load not timed)."""
    stage = Evolve(cfg, round_num=1, torch_threads=threads)
    stage(records_from_rows(rows[:2]))  # warm-up
    batch = records_from_rows(rows)
    started = time.perf_counter()
    out = stage(batch)
    elapsed = time.perf_counter() - started
    tokens = int(sum(out["evolve_tokens"]))
    return {
        "backend": cfg.model.backend,
        "sampling": {"temperature": cfg.recipe.evolve.temperature, "top_p": cfg.recipe.evolve.top_p,
                     "max_new_tokens": cfg.recipe.evolve.max_new_tokens},
        "max_batch_size": cfg.model.max_batch_size,
        "rows": len(rows),
        "seconds": round(elapsed, 3),
        "generated_tokens": tokens,
        "prompt_tokens": int(sum(out["evolve_prompt_tokens"])),
        "rows_per_s": round(len(rows) / elapsed, 3),
        "tokens_per_s": round(tokens / elapsed, 2),
        "rows_ok": int(sum(s == "ok" for s in out["status"])),
    }


def timed_generate(backend, prompts: list[str], sampling: Sampling, batch_size: int) -> dict:
    backend.config = replace(backend.config, max_batch_size=batch_size)
    started = time.perf_counter()
    generations = backend.generate(prompts, sampling)
    elapsed = time.perf_counter() - started
    tokens = sum(g.generated_tokens for g in generations)
    return {"batch_size": batch_size, "seconds": round(elapsed, 3), "generated_tokens": tokens,
            "tokens_per_s": round(tokens / elapsed, 2), "rows_per_s": round(len(prompts) / elapsed, 3),
            "texts": [g.text for g in generations]}


def bench_hf_batching(model: ModelConfig, prompts: list[str], batch_sizes: list[int], max_new_tokens: int,
                      threads: int) -> dict:
    """Greedy HF generation of the same prompts batched and one at a time (batch 1 first, then each size)."""
    backend = load_backend(model, torch_threads=threads)
    sampling = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=max_new_tokens)
    timed_generate(backend, prompts[:2], sampling, 2)  # warm-up
    single = timed_generate(backend, prompts, sampling, 1)
    results = {"one_at_a_time": {k: v for k, v in single.items() if k != "texts"}, "batched": []}
    for size in batch_sizes:
        run = timed_generate(backend, prompts, sampling, size)
        same = sum(a == b for a, b in zip(run.pop("texts"), single["texts"]))
        run["tokens_per_s_ratio"] = round(run["tokens_per_s"] / single["tokens_per_s"], 2)
        run["rows_per_s_ratio"] = round(run["rows_per_s"] / single["rows_per_s"], 2)
        # Left padding changes float rounding, so a greedy text can differ from the unbatched one.
        run["texts_identical_to_one_at_a_time"] = f"{same}/{len(prompts)}"
        results["batched"].append(run)
    return results


def bench_vllm(model: ModelConfig, cfg: Config, rows: list[dict], prompts: list[str], max_new_tokens: int) -> dict:
    """Bare vllm.LLM.generate on the prompts' chat token ids (greedy) against the engine's Evolve stage on vLLM."""
    if not torch.cuda.is_available():
        return {"ran": False, "why": "no CUDA device on this machine: the bare vLLM comparison needs a GPU"}
    if importlib.util.find_spec("vllm") is None:
        return {"ran": False, "why": "vllm is not installed"}
    from transformers import AutoTokenizer
    from vllm import LLM, SamplingParams, TokensPrompt

    from engine.backends.embedded import resolve_model_path

    path = str(resolve_model_path(model))
    tokenizer = AutoTokenizer.from_pretrained(path)
    ids = [tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=True)
           for p in prompts]
    ids = [list(i["input_ids"]) if isinstance(i, dict) else list(i) for i in ids]
    llm = LLM(model=path, dtype="bfloat16", max_model_len=model.max_model_len, seed=0)
    params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens)
    llm.generate([TokensPrompt(prompt_token_ids=ids[0])], params)  # warm-up
    started = time.perf_counter()
    outputs = llm.generate([TokensPrompt(prompt_token_ids=i) for i in ids], params)
    elapsed = time.perf_counter() - started
    tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
    bare = {"seconds": round(elapsed, 3), "generated_tokens": tokens, "tokens_per_s": round(tokens / elapsed, 2)}
    del llm
    torch.cuda.empty_cache()
    greedy = replace(cfg, model=replace(model, backend="vllm"))
    greedy.recipe = replace(cfg.recipe, evolve=replace(cfg.recipe.evolve, temperature=0.0, top_p=1.0))
    engine = bench_stage(greedy, rows, threads=None)
    return {"ran": True, "bare_vllm": bare, "engine_stage": engine,
            "engine_over_bare_tokens_per_s": round(engine["tokens_per_s"] / bare["tokens_per_s"], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m", choices=sorted(MODELS))
    parser.add_argument("--backend", default="hf", help="backend of the Evolve stage run: hf | vllm | echo")
    parser.add_argument("--dtype", default="float32", help="float32 | bfloat16 | auto (see hf.fastest_cpu_dtype)")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--batch-sizes", default="32,8", help="batched HF generation against batch 1, on CPU")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--notes", default="", help="free text saved with the result (e.g. machine load)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "generation.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    model = replace(MODELS[args.model], backend=args.backend, dtype=args.dtype, max_batch_size=max(batch_sizes))
    cfg = Config(model=model)
    cfg.recipe.evolve.max_new_tokens = args.max_new_tokens
    rows = demo_rows(args.rows)
    prompts = evolution_prompts(rows)
    result = {
        "benchmark": "generation",
        "model": args.model,
        "dtype": args.dtype,
        "threads": args.threads,
        "cpu": platform.processor() or platform.machine(),
        "cuda": torch.cuda.is_available(),
        "rows": args.rows,
        "max_new_tokens": args.max_new_tokens,
        "evolve_stage": bench_stage(cfg, rows, args.threads),
    }
    print(json.dumps(result["evolve_stage"]), flush=True)
    if not torch.cuda.is_available() and args.backend == "hf":
        result["hf_batching"] = bench_hf_batching(model, prompts, batch_sizes, args.max_new_tokens, args.threads)
        print(json.dumps(result["hf_batching"]), flush=True)
    result["vllm"] = bench_vllm(replace(model, backend="hf"), cfg, rows, prompts, args.max_new_tokens)
    result["notes"] = args.notes
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("evolve_stage", "hf_batching")}), flush=True)


if __name__ == "__main__":
    main()
