"""Ray pipeline vs the same stage objects called in-process, on the same rows: the cost of distribution.

Prints one JSON line and saves benchmarks/results/pipeline_overhead.json. Both sides run the full Evol-Instruct
round (evolve -> eliminate -> respond -> score) on the same seeds, side by side, `--repeat` times interleaved.
Two ratios, min / median / max over the repeats:
- whole run: the runner's wall time (actor start, model loads, commit and outputs included; starting the local
  Ray itself is timed apart, as `ray_init_s`: a cluster is started once per job) over the in-process total
  (model loads included);
- steady state: the Ray run's window in which batches were in flight, from the stage actors' own timings
  (summary.json["throughput"]["steady_state_s"]), over the in-process time spent inside the stage calls.
The Ray side runs twice per repeat: `split`, a pool per model stage (`cluster.fuse_stages=false`), and
`default` (`auto`, which on CPUs fuses: one pool runs every stage, each model imported and loaded once per actor).
Both sides run the same StageChain, so each stage's busy seconds compare one to one (`busy_ratio_by_stage`), and
the CPU seconds every other process used during the Ray run (`other_cpu_s`: the driver, Ray's services and
actors, read and commit tasks) say how much of the machine the stages did not have.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import psutil
import ray

from engine.backends.embedded import resolve_model_path
from engine.commands.bench import spread
from engine.config import Config, ModelConfig
from engine.measure.machine import machine_facts
from engine.read.readers import iter_records
from engine.read.seeds import seed_source
from engine.recipes import get_recipe
from engine.run import accounting
from engine.run.chain import StageChain
from engine.run.runner import run


def in_process(cfg: Config) -> dict:
    """The same stages in the same StageChain the actors run, built once and called on the same batches, with no
    Ray: total, load and in-stage seconds, per-stage busy seconds and the rows kept."""
    started = time.perf_counter()
    chain = StageChain(get_recipe(cfg).stages(1, {}), torch_threads=os.cpu_count(), pooled=True)
    load_s, steady_s, kept, stages = time.perf_counter() - started, 0.0, 0, {}
    for records in iter_records(seed_source(cfg), 0, batch_rows=10_000):
        records = {k: v[: cfg.data.limit] for k, v in records.items()}
        for lo in range(0, len(records["id"]), cfg.cluster.batch_size):
            batch = {k: v[lo:lo + cfg.cluster.batch_size] for k, v in records.items()}
            began = time.perf_counter()
            batch = chain(batch)
            steady_s += time.perf_counter() - began
            accounting.add_column(stages, batch.pop(accounting.STATS_COLUMN))
            kept += int((batch["status"] == "ok").sum())
    return {"total_s": time.perf_counter() - started, "load_s": load_s, "steady_s": steady_s, "kept": kept,
            "busy_s": {name: e["busy_s"] for name, e in stages.items()},
            "generated_tokens": sum(e["generated_tokens"] for e in stages.values())}


def cpu_seconds() -> dict[int, tuple[str, float]]:
    """Every process's CPU seconds so far (user + system), by pid, with its name."""
    found = {}
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            times = proc.cpu_times()
            found[proc.pid] = (" ".join(proc.info["cmdline"] or [proc.info["name"] or "?"])[:60],
                               times.user + times.system)
        except psutil.Error:
            continue
    return found


def through_ray(cfg: Config, fuse: str) -> dict:
    """The runner on the same rows: wall, steady-state and stage load seconds, rows kept, tokens, stages, and the
    CPU seconds of the processes other than the stage actors meanwhile (the driver, Ray's own services and
    actors, read and commit tasks): what takes cores from the stages."""
    cfg.cluster.fuse_stages = fuse
    with tempfile.TemporaryDirectory() as tmp:
        cfg.run.output_dir = tmp
        before = cpu_seconds()
        started = time.perf_counter()
        summary = run(cfg)
        wall = time.perf_counter() - started
        after = cpu_seconds()
    used = {pid: (name, t - before.get(pid, (name, 0.0))[1]) for pid, (name, t) in after.items()}
    stage_cpu = sum(t for name, t in used.values() if "MapWorker" in name)
    other = sorted(((round(t, 2), name.strip()) for name, t in used.values() if "MapWorker" not in name and t >= 0.1),
                   reverse=True)
    t = summary["throughput"]
    return {"total_s": wall, "steady_s": t["steady_state_s"], "load_s": t["load_s"], "kept": summary["rows_out"],
            "generated_tokens": t["generated_tokens"], "stages": summary["stages"],
            "pools": summary["stage_pools"]["1"], "stage_actor_cpu_s": round(stage_cpu, 2),
            "other_cpu_s": round(sum(t for t, _ in other), 2), "other_cpu_top": other[:8],
            "busy_s": {s["stage"]: s["busy_s"] for s in summary["stages"]}}


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
            triples.append((in_process(cfg), through_ray(cfg, fuse="false"), through_ray(cfg, fuse="auto")))
    finally:
        ray.shutdown()
    inproc = [p for p, _, _ in triples]
    sides = {"split": [r for _, r, _ in triples], "default": [d for _, _, d in triples]}
    result = {
        "benchmark": "pipeline_overhead",
        "model": args.model,
        "rows": args.rows,
        "repeat": args.repeat,
        "machine": before,
        "ray_init_s": round(ray_init_s, 3),
        "in_process_s": spread([p["total_s"] for p in inproc]),
        "in_process_steady_s": spread([p["steady_s"] for p in inproc]),
        "in_process_load_s": spread([p["load_s"] for p in inproc]),
        "in_process_busy_s": inproc[-1]["busy_s"],
        "rows_kept_in_process": inproc[-1]["kept"],
        "generated_tokens_in_process": inproc[-1]["generated_tokens"],
    }
    for side, runs in sides.items():  # split: cluster.fuse_stages=false; default: auto (fused on CPUs)
        result[side] = {
            "pools": runs[-1]["pools"],
            "ray_s": spread([r["total_s"] for r in runs]),
            "ratio": spread([r["total_s"] / p["total_s"] for p, r in zip(inproc, runs)]),
            "steady_s": spread([r["steady_s"] for r in runs]),
            "steady_ratio": spread([r["steady_s"] / p["steady_s"] for p, r in zip(inproc, runs)]),
            "stage_load_s": spread([r["load_s"] for r in runs]),  # summed over the stage actors
            "fixed_s": spread([r["total_s"] - r["steady_s"] for r in runs]),  # outside the steady window
            # each stage's busy seconds in its actors over the same stage's in the in-process chain
            "busy_ratio_by_stage": {name: spread([r["busy_s"][name] / p["busy_s"][name] for p, r in zip(inproc, runs)
                                                  if p["busy_s"].get(name)]) for name in runs[-1]["busy_s"]
                                    if inproc[-1]["busy_s"].get(name, 0) > 0.01},
            # CPU seconds of everything but the stage actors during the run (driver, Ray services, tasks)
            "other_cpu_s": spread([r["other_cpu_s"] for r in runs]),
            "stage_actor_cpu_s": spread([r["stage_actor_cpu_s"] for r in runs]),
            "other_cpu_top": runs[-1]["other_cpu_top"],
            "rows_kept": runs[-1]["kept"],
            "generated_tokens": runs[-1]["generated_tokens"],
            "stages": runs[-1]["stages"],
        }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    brief = {k: v for k, v in result.items() if k != "machine"}
    for side in sides:
        brief[side] = {k: v for k, v in result[side].items() if k not in ("stages", "other_cpu_top")}
    print(json.dumps(brief))


if __name__ == "__main__":
    main()
