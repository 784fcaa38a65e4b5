"""`python -m engine.bench`: a fixed, seeded workload through the full pipeline (evolve, eliminate, respond, score),
for one model or several side by side, repeated; prints a compact table and writes JSON with the machine's facts.

The seeds are built from a seeded vocabulary (`--rows` instructions of `--prompt-words` words), so the same
command measures the same work anywhere. Models are the names of conf/model (a sweep is several `--model`);
the repeats interleave the models, so a change in machine load hits every model alike. Figures per model are
min / median / max over the repeats of the run's wall time and of its steady state (batches in flight: Ray
start, actor start and model loads left out), with the per-stage accounting of summary.json["stages"]."""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_dir

from engine.config import CONF_DIR, Config, register, to_config
from engine.measure.machine import machine_facts

VOCABULARY = ("explain describe compare list summarise rewrite design plan evaluate outline the a of for with "
              "river budget network garden theorem market algorithm history orbit circuit recipe poem archive "
              "sensor canal glacier lantern harvest violin ledger signal proof mountain tide").split()
TABLE = ("model", "backend", "rows", "kept", "wall s", "steady s", "load s", "gen tok/s", "kept rows/h",
         "bottleneck")


def spread(values: list[float]) -> dict:
    """min / median / max of repeated measurements (and how many)."""
    return {"min": round(min(values), 4), "median": round(statistics.median(values), 4),
            "max": round(max(values), 4), "n": len(values)} if values else {"n": 0}


def write_seeds(path: Path, rows: int, prompt_words: int, seed: int) -> Path:
    """`rows` instructions of `prompt_words` words each, drawn from VOCABULARY by a seeded RNG."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(rows):
            words = " ".join(rng.choice(VOCABULARY) for _ in range(max(1, prompt_words - 1)))
            handle.write(json.dumps({"instruction": f"{words.capitalize()} {i}.", "input": ""}) + "\n")
    return path


def bench_config(model: str, backend: str, args: argparse.Namespace, seeds: Path, out: Path) -> Config:
    """The run config of one benchmark run, composed from conf/ as `python -m engine` would."""
    scorer = args.scorer or (model if (Path(CONF_DIR) / "scorer" / f"{model}.yaml").exists() else "tiny")
    overrides = [f"model={model}", f"scorer={scorer}", f"model.backend={backend}", f"scorer.backend={backend}",
                 f"data.path={seeds}", f"run.output_dir={out}", "run.resume=false", f"run.seed={args.seed}",
                 f"rounds={args.rounds}", f"recipe.evolve.max_new_tokens={args.answer_tokens}",
                 f"recipe.respond.max_new_tokens={args.answer_tokens}", f"run.progress={args.progress}",
                 f"cluster.batch_size={args.batch_size}", f"scoring.enabled={str(not args.no_scoring).lower()}",
                 "analysis.report=false", *args.override]
    register()  # conf/config.yaml extends the schema
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return to_config(compose(config_name="config", overrides=overrides))


def measure(summary: dict) -> dict:
    """One run's figures: wall and steady-state seconds, model loads, generated tokens per actor-second of the
    stages that generate, kept rows per hour of steady state, and the bottleneck stage."""
    stages, t = summary["stages"], summary["throughput"]
    generating = [s for s in stages if s["generated_tokens"]]
    busy = sum(s["busy_s"] for s in generating)
    steady = t["steady_state_s"]
    return {"wall_s": summary["wall_time_s"], "steady_s": steady, "load_s": t["load_s"],
            "rows_in": summary["rows_in"], "rows_out": summary["rows_out"],
            "generated_tokens": sum(s["generated_tokens"] for s in generating),
            "generated_tokens_per_s": sum(s["generated_tokens"] for s in generating) / busy if busy else 0.0,
            "kept_rows_per_hour": summary["rows_out"] * 3600 / steady if steady else 0.0,
            "bottleneck": (t["bottleneck"] or {}).get("stage"), "stages": stages, "throughput": t,
            "stage_pools": summary.get("stage_pools")}


def bench(args: argparse.Namespace) -> dict:
    """Every model, `args.repeat` times, interleaved; the result JSON (without writing it)."""
    from engine.run.runner import ray_session, run  # imports ray

    before = machine_facts()
    results: dict[str, list[dict]] = {model: [] for model in args.model}
    with tempfile.TemporaryDirectory(prefix="engine-bench-") as tmp:
        seeds = write_seeds(Path(tmp) / "seeds.jsonl", args.rows, args.prompt_words, args.seed)
        configs = {m: bench_config(m, args.backend, args, seeds, Path(tmp) / m) for m in args.model}
        with ray_session(configs[args.model[0]]):
            for _ in range(args.repeat):
                for model in args.model:
                    results[model].append(measure(run(configs[model])))
    models = {}
    for model, runs in results.items():
        keys = ("wall_s", "steady_s", "load_s", "generated_tokens_per_s", "kept_rows_per_hour")
        models[model] = {**{key: spread([r[key] for r in runs]) for key in keys},
                         "rows_in": runs[0]["rows_in"], "rows_out": [r["rows_out"] for r in runs],
                         "bottleneck": [r["bottleneck"] for r in runs], "repeats": runs}
    return {"benchmark": "engine.commands.bench", "backend": args.backend, "rows": args.rows,
            "prompt_words": args.prompt_words, "answer_tokens": args.answer_tokens, "rounds": args.rounds,
            "repeat": args.repeat, "seed": args.seed, "batch_size": args.batch_size, "overrides": args.override,
            "machine": before, "machine_end": machine_facts(), "models": models}


def table(result: dict) -> str:
    """The compact table: medians, with min-max for the wall time."""
    rows = [TABLE]
    for model, m in result["models"].items():
        wall = m["wall_s"]
        rows.append((model, result["backend"], str(m["rows_in"]), str(m["rows_out"][-1]),
                     f"{wall['median']:.2f} ({wall['min']:.2f}-{wall['max']:.2f})", f"{m['steady_s']['median']:.2f}",
                     f"{m['load_s']['median']:.2f}", f"{m['generated_tokens_per_s']['median']:.1f}",
                     f"{m['kept_rows_per_hour']['median']:.0f}", str(m["bottleneck"][-1])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(TABLE))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m engine.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="a conf/model name; repeat for a sweep (default: tiny)")
    parser.add_argument("--backend", default="hf", choices=["hf", "vllm", "echo"])
    parser.add_argument("--scorer", default=None, help="conf/scorer name (default: the model's, else tiny)")
    parser.add_argument("--no-scoring", action="store_true", help="leave IFD / IC-IFD scoring out")
    parser.add_argument("--rows", type=int, default=64, help="seed rows")
    parser.add_argument("--prompt-words", type=int, default=24, help="words per seed instruction")
    parser.add_argument("--answer-tokens", type=int, default=48, help="max new tokens of evolve and respond")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--progress", default="off", choices=["off", "line", "verbose"])
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="any other config override, e.g. cluster.pool_size=2 (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bench.json"))
    args = parser.parse_args(argv)
    args.model = args.model or ["tiny"]
    if args.repeat < 1 or args.rows < 1:
        parser.error("--repeat and --rows must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = bench(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
