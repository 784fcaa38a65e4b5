"""Ray pipeline vs the same stage objects called in-process, on the same rows: the cost of distribution.

Prints one JSON line and saves benchmarks/results/pipeline_overhead.json. Both sides include model loading
and run the full Evol-Instruct round (evolve -> eliminate -> respond); the Ray side excludes only starting
the local Ray itself (a cluster is started once per job, not per dataset).
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
from engine.config import Config, ModelConfig
from engine.io.readers import iter_records
from engine.recipes import get_recipe
from engine.runner import run, seed_source


def in_process(cfg: Config) -> tuple[float, int]:
    """The same stages, constructed once and called on the same batches, with no Ray."""
    started = time.perf_counter()
    stages = [spec.stage(cfg, torch_threads=os.cpu_count(), **spec.kwargs) for spec in get_recipe("evol_instruct").stages(cfg, 1)]
    kept = 0
    for records in iter_records(seed_source(cfg), 0, batch_rows=10_000):
        records = {k: v[: cfg.data.limit] for k, v in records.items()}
        for lo in range(0, len(records["id"]), cfg.cluster.batch_size):
            batch = {k: v[lo:lo + cfg.cluster.batch_size] for k, v in records.items()}
            for stage in stages:
                batch = stage(batch)
            kept += int((batch["status"] == "ok").sum())
    return time.perf_counter() - started, kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m", choices=["smollm2-135m", "tiny"])
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--evolve-tokens", type=int, default=48)
    parser.add_argument("--respond-tokens", type=int, default=48)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "pipeline_overhead.json"))
    args = parser.parse_args()

    cfg = Config(model=ModelConfig(name=args.model, embedded=args.model))
    cfg.data.limit = args.rows
    cfg.recipe.evolve.max_new_tokens = args.evolve_tokens
    cfg.recipe.respond.max_new_tokens = args.respond_tokens
    cfg.run.progress = False
    resolve_model_path(cfg.model)  # conversion is a one-time cost: keep it out of both timings

    inproc_s, inproc_kept = in_process(cfg)
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False)
    with tempfile.TemporaryDirectory() as tmp:
        cfg.run.output_dir = tmp
        started = time.perf_counter()
        summary = run(cfg)
        ray_s = time.perf_counter() - started
    ray.shutdown()
    result = {
        "benchmark": "pipeline_overhead",
        "model": args.model,
        "rows": args.rows,
        "cpus": os.cpu_count(),
        "in_process_s": round(inproc_s, 3),
        "ray_s": round(ray_s, 3),
        "ratio": round(ray_s / inproc_s, 3),
        "rows_kept_in_process": inproc_kept,
        "rows_kept_ray": summary["rows_out"],
        "generated_tokens_ray": summary["tokens"].get("evolve_tokens", 0) + summary["tokens"].get("response_tokens", 0),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
