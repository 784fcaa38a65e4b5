"""Ray pipeline vs the same stage objects called in-process, on the same rows: the cost of distribution.

Prints one JSON line and saves benchmarks/results/pipeline_overhead.json. Both sides run the full Evol-Instruct
round (evolve -> eliminate -> respond -> score) on the same seeds, side by side, `--repeat` times interleaved.
Two ratios, min / median / max over the repeats:
- whole run: the runner's wall time (actor start, model loads, commit and outputs included; starting the local
  Ray itself is timed apart, as `ray_init_s`: a cluster is started once per job) over the in-process total
  (model loads included);
- steady state: the Ray run's window in which batches were in flight, from the stage actors' own timings
  (summary.json["throughput"]["steady_state_s"]), over the in-process time spent inside the stage calls.
The Ray side runs twice per repeat: a pool per model stage (the default) and `cluster.fuse_stages=true` (one
pool runs every stage: each model is imported and loaded once per actor, not once per pool).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import ray

from engine.backends.embedded import resolve_model_path
from engine.bench import spread
from engine.config import Config, ModelConfig
from engine.io.readers import iter_records
from engine.machine import machine_facts
from engine.recipes import get_recipe
from engine.io.seeds import seed_source
from engine.runner import run


def in_process(cfg: Config) -> dict:
    """The same stages, constructed once and called on the same batches, with no Ray: total, load and
    in-stage seconds and the rows kept."""
    started = time.perf_counter()
    stages = [spec.build(torch_threads=os.cpu_count()) for spec in get_recipe(cfg).stages(1, {})]
    load_s, steady_s, kept = time.perf_counter() - started, 0.0, 0
    for records in iter_records(seed_source(cfg), 0, batch_rows=10_000):
        records = {k: v[: cfg.data.limit] for k, v in records.items()}
        for lo in range(0, len(records["id"]), cfg.cluster.batch_size):
            batch = {k: v[lo:lo + cfg.cluster.batch_size] for k, v in records.items()}
            began = time.perf_counter()
            for stage in stages:
                batch = stage(batch)
            steady_s += time.perf_counter() - began
            kept += int((batch["status"] == "ok").sum())
    return {"total_s": time.perf_counter() - started, "load_s": load_s, "steady_s": steady_s, "kept": kept}


def through_ray(cfg: Config, fuse: bool) -> dict:
    """The runner on the same rows: wall, steady-state and stage load seconds, rows kept, tokens, stages."""
    cfg.cluster.fuse_stages = fuse
    with tempfile.TemporaryDirectory() as tmp:
        cfg.run.output_dir = tmp
        started = time.perf_counter()
        summary = run(cfg)
        wall = time.perf_counter() - started
    t = summary["throughput"]
    return {"total_s": wall, "steady_s": t["steady_state_s"], "load_s": t["load_s"], "kept": summary["rows_out"],
            "generated_tokens": t["generated_tokens"], "stages": summary["stages"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m", choices=["smollm2-135m", "tiny"])
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--evolve-tokens", type=int, default=48)
    parser.add_argument("--respond-tokens", type=int, default=48)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "pipeline_overhead.json"))
    args = parser.parse_args()

    model = ModelConfig(name=args.model, embedded=args.model)
    cfg = Config(model=model, scorer=ModelConfig(name=args.model, embedded=args.model, dtype="auto",
                                                  max_batch_size=16))
    cfg.data.limit = args.rows
    cfg.recipe.evolve.max_new_tokens = args.evolve_tokens
    cfg.recipe.respond.max_new_tokens = args.respond_tokens
    cfg.run.progress = "off"
    resolve_model_path(cfg.model)  # conversion is a one-time cost: keep it out of both timings
    before = machine_facts()
    began = time.perf_counter()
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False)
    ray_init_s = time.perf_counter() - began
    triples = []
    try:
        for _ in range(args.repeat):  # interleaved: load changes on the machine hit every side alike
            triples.append((in_process(cfg), through_ray(cfg, fuse=False), through_ray(cfg, fuse=True)))
    finally:
        ray.shutdown()
    pairs = [(p, r) for p, r, _ in triples]
    fused = [(p, f) for p, _, f in triples]
    inproc, ray_runs = [p for p, _ in pairs], [r for _, r in pairs]
    result = {
        "benchmark": "pipeline_overhead",
        "model": args.model,
        "rows": args.rows,
        "repeat": args.repeat,
        "machine": before,
        "ray_init_s": round(ray_init_s, 3),
        "in_process_s": spread([p["total_s"] for p in inproc]),
        "ray_s": spread([r["total_s"] for r in ray_runs]),
        "ratio": spread([r["total_s"] / p["total_s"] for p, r in pairs]),
        "in_process_steady_s": spread([p["steady_s"] for p in inproc]),
        "ray_steady_s": spread([r["steady_s"] for r in ray_runs]),
        "steady_ratio": spread([r["steady_s"] / p["steady_s"] for p, r in pairs]),
        "in_process_load_s": spread([p["load_s"] for p in inproc]),
        "ray_stage_load_s": spread([r["load_s"] for r in ray_runs]),  # summed over the stage actors
        "ray_fixed_s": spread([r["total_s"] - r["steady_s"] for r in ray_runs]),  # outside the steady window
        "ray_fused_s": spread([f["total_s"] for _, f in fused]),
        "ratio_fused": spread([f["total_s"] / p["total_s"] for p, f in fused]),
        "ray_fused_steady_s": spread([f["steady_s"] for _, f in fused]),
        "steady_ratio_fused": spread([f["steady_s"] / p["steady_s"] for p, f in fused]),
        "ray_fused_stage_load_s": spread([f["load_s"] for _, f in fused]),
        "rows_kept_ray_fused": fused[-1][1]["kept"],
        "rows_kept_in_process": inproc[-1]["kept"],
        "rows_kept_ray": ray_runs[-1]["kept"],
        "generated_tokens_ray": ray_runs[-1]["generated_tokens"],
        "ray_stages": ray_runs[-1]["stages"],
        "ray_fused_stages": fused[-1][1]["stages"],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("machine", "ray_stages", "ray_fused_stages")}))


if __name__ == "__main__":
    main()
