"""Scale: 10k, 100k and 1M rows through the Evol-Instruct recipe (evolve -> eliminate -> respond -> score) on
the `echo` plumbing backend, which measures the pipeline around the model (Ray Data, stages, commits, sinks) and
is never a model. Each size runs as its own `python -m engine` process with its own local Ray.

Prints one JSON line per size (rows/s, peak RSS of the driver and of the Ray workers, sampled every 0.2 s) and a
summary line with RSS(largest) / RSS(smallest) for the driver (goal <= 1.2: nothing is collected on the
driver), for the whole command and for the run alone (until summary.json appears, before the HTML report);
saves everything to benchmarks/results/scale.json.

The driver runs under a small wrapper (DRIVER) that first applies the Ray Data limits given with
--data-context (DataContext fields, e.g. `execution_options.resource_limits.object_store_memory=2e8`) and
records the DataContext values that bound memory, so each result says which limits it ran under. With
--census the driver also counts its live Python objects by type every --census-every seconds (gc.get_objects:
containers only) and names the types that grew most since its first count, so what grows with the rows shows by
name; the census costs the driver a transient list of its objects, about the same at every size."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from engine.config import RunConfig

REPO = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024


def write_seeds(path: Path, rows: int) -> None:
    """`rows` distinct alpaca rows, a quarter with an input; streamed to disk."""
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(rows):
            row = {"instruction": f"Explain idea {i} about rivers, trade and weather in three sentences.",
                   "input": f"context {i}" if i % 4 == 0 else ""}
            handle.write(json.dumps(row) + "\n")


def sample(driver: psutil.Process, peaks: dict) -> None:
    """Update the peaks from one look at the driver and every process below it (the local Ray's)."""
    try:
        procs = [driver] + driver.children(recursive=True)
    except psutil.NoSuchProcess:
        return
    workers_total = system_total = 0
    for proc in procs:
        try:
            rss = proc.memory_info().rss
            name = " ".join(proc.cmdline()[:1])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if proc.pid == driver.pid:
            peaks["driver"] = max(peaks["driver"], rss)
        elif name.startswith("ray::"):  # task and actor workers name themselves ray::<what they run>
            peaks["worker_max"] = max(peaks["worker_max"], rss)
            workers_total += rss
        else:
            system_total += rss
    peaks["workers_total"] = max(peaks["workers_total"], workers_total)
    peaks["ray_system"] = max(peaks["ray_system"], system_total)


# DataContext fields that bound memory (the driver's or the object store's), recorded with every result.
MEMORY_FIELDS = ("execution_options.resource_limits", "target_max_block_size",
                 "override_object_store_memory_limit_fraction",
                 "op_resource_reservation_enabled", "op_resource_reservation_ratio", "max_errored_blocks",
                 "enable_auto_log_stats", "enable_get_object_locations_for_metrics", "memory_usage_poll_interval_s")

# `python -c DRIVER <engine overrides>`: the engine's CLI in a process whose DataContext is set first (the engine
# only changes its progress and error fields). EE_SCALE_* environment variables carry the settings.
DRIVER = """
import collections, gc, json, os, threading, time
import psutil
from ray.data import DataContext

context = DataContext.get_current()
for key, value in json.loads(os.environ["EE_SCALE_DATA_CONTEXT"]).items():
    *path, name = key.split(".")
    owner = context
    for part in path[:-1]:
        owner = getattr(owner, part)
    target = getattr(owner, path[-1]) if path else context
    if path[-1:] == ["resource_limits"]:  # ExecutionResources is immutable: a copy with the one limit changed
        setattr(owner, "resource_limits", target.copy(**{name: value}))
    else:
        setattr(target, name, value)

def resolve(key):
    value = context
    for part in key.split("."):
        value = getattr(value, part)
    return repr(value)

with open(os.environ["EE_SCALE_CONTEXT_OUT"], "w") as handle:
    json.dump({key: resolve(key) for key in json.loads(os.environ["EE_SCALE_FIELDS"])}, handle)

def census(path, every):
    me, started, first = psutil.Process(), time.monotonic(), None
    while True:
        time.sleep(every)
        counts = collections.Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects())
        first = first or counts
        with open(path, "a") as handle:
            handle.write(json.dumps({"s": round(time.monotonic() - started), "rss_mib": round(me.memory_info().rss / 2**20, 1),
                                     "objects": sum(counts.values()), "top": counts.most_common(12),
                                     "grew_since_first": (counts - first).most_common(12)}) + "\\n")

if os.environ.get("EE_SCALE_CENSUS"):
    every = float(os.environ["EE_SCALE_CENSUS_EVERY"])
    threading.Thread(target=census, args=(os.environ["EE_SCALE_CENSUS"], every), daemon=True).start()

from engine.cli import main
main()
"""


def run_size(rows: int, batch_size: int, shard_rows: int, tmp: Path, data_context: dict,
             census_every: float | None, segment_rows: str | None = None) -> dict:
    seeds, out = tmp / f"seeds-{rows}.jsonl", tmp / f"out-{rows}"
    write_seeds(seeds, rows)
    command = [sys.executable, "-c", DRIVER, "model=echo", "scorer=echo", "data=file", f"data.path={seeds}",
               f"run.output_dir={out}", "run.progress=false", f"cluster.batch_size={batch_size}",
               f"run.shard_rows={shard_rows}"] + ([f"run.segment_rows={segment_rows}"] if segment_rows else [])
    env = {**os.environ, "EE_SCALE_DATA_CONTEXT": json.dumps(data_context),
           "EE_SCALE_FIELDS": json.dumps(MEMORY_FIELDS), "EE_SCALE_CONTEXT_OUT": str(tmp / f"context-{rows}.json")}
    census_path = tmp / f"census-{rows}.jsonl"
    if census_every:
        env.update(EE_SCALE_CENSUS=str(census_path), EE_SCALE_CENSUS_EVERY=str(census_every))
    env.pop("RAY_ADDRESS", None)
    peaks = dict.fromkeys(("driver", "worker_max", "workers_total", "ray_system"), 0)
    load_before = os.getloadavg()[0]  # other work on the machine slows the run (RSS much less)
    timeline = []  # (seconds, driver RSS MiB) every 5 s: when the driver grows, not only how much
    started = time.perf_counter()
    with open(tmp / f"log-{rows}.txt", "w") as log:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        driver = psutil.Process(proc.pid)
        pipeline_peak = 0  # the driver's peak until summary.json exists: the run itself, before the report
        while proc.poll() is None:
            sample(driver, peaks)
            if not (out / "summary.json").exists():
                pipeline_peak = peaks["driver"]
            elapsed = time.perf_counter() - started
            if elapsed >= 5 * len(timeline):
                try:
                    timeline.append([round(elapsed), round(driver.memory_info().rss / MiB, 1)])
                except psutil.NoSuchProcess:
                    pass
            time.sleep(0.2)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{rows} rows: the run failed; see {tmp / f'log-{rows}.txt'}")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows_in"] == rows and summary["rows_conserved"], summary
    return {
        "rows": rows,
        "rows_out": summary["rows_out"],
        "run_s": summary["wall_time_s"],  # inside the engine: Ray start, pipeline, commits and sinks
        "process_s": round(wall, 2),  # the whole command, Python start included
        "rows_per_s": round(rows / summary["wall_time_s"], 1),
        "driver_peak_rss_mib": round(peaks["driver"] / MiB, 1),  # the whole command, the HTML report included
        "driver_peak_rss_run_mib": round(pipeline_peak / MiB, 1),  # until summary.json: Ray Data and the sinks
        "worker_peak_rss_mib": round(peaks["worker_max"] / MiB, 1),
        "workers_total_peak_rss_mib": round(peaks["workers_total"] / MiB, 1),
        "ray_system_peak_rss_mib": round(peaks["ray_system"] / MiB, 1),
        "batch_size": batch_size,
        "shard_rows": shard_rows,
        "segment_rows": segment_rows or RunConfig.segment_rows,
        # Ray Data executions the round ran as (one per segment): each holds its own per-block bookkeeping
        "executions": max((e.get("executions", 1) for e in summary["stages"]), default=1),
        "load_average_1min": [round(load_before, 1), round(os.getloadavg()[0], 1)],  # at start and end
        "data_context": json.loads((tmp / f"context-{rows}.json").read_text()),
        "driver_rss_timeline_s_mib": timeline,
        "census": [json.loads(line) for line in census_path.open()] if census_path.exists() else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--batch-size", type=int, default=1000, help="rows per stage batch (cluster.batch_size)")
    parser.add_argument("--shard-rows", type=int, default=10_000, help="rows per committed shard (run.shard_rows)")
    parser.add_argument("--data-context", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="Ray Data limits to apply, e.g. execution_options.resource_limits.object_store_memory=2e8")
    parser.add_argument("--segment-rows", default=None,
                        help="run.segment_rows (default: the engine's; null: one Ray Data execution per round)")
    parser.add_argument("--census", action="store_true", help="count the driver's live objects by type")
    parser.add_argument("--census-every", type=float, default=30.0, help="seconds between censuses")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "scale.json"))
    args = parser.parse_args()
    data_context = {key: json.loads(value) for key, value in (item.split("=", 1) for item in args.data_context)}

    results = []
    with tempfile.TemporaryDirectory(prefix="ee-scale-") as tmp:
        for rows in args.sizes:
            result = run_size(rows, args.batch_size, args.shard_rows, Path(tmp), data_context,
                              args.census_every if args.census else None, args.segment_rows)
            compact = {k: v for k, v in result.items() if k not in ("census", "driver_rss_timeline_s_mib")}
            print(json.dumps(compact), flush=True)
            results.append(result)
            # Saved after every size: the largest takes minutes, and a stopped run keeps what it measured.
            save(args.out, results, data_context)
    save(args.out, results, data_context, final=True)


def save(out: str, results: list[dict], data_context: dict, final: bool = False) -> None:
    """The results so far, with the driver RSS ratio of the largest size to the smallest."""
    smallest, largest = results[0], results[-1]
    ratio = largest["driver_peak_rss_mib"] / smallest["driver_peak_rss_mib"]
    run_ratio = largest["driver_peak_rss_run_mib"] / smallest["driver_peak_rss_run_mib"]
    summary = {
        "driver_rss_ratio": round(ratio, 3),  # whole command: the report's fixed ~50 MiB after the run dilutes it
        "driver_rss_ratio_run": round(run_ratio, 3),  # the run alone: what the goal is about
        "ratio_of": f"{largest['rows']} / {smallest['rows']} rows",
        "goal": "driver_rss_ratio_run <= 1.2 (the run alone, before the HTML report)",
        "goal_met": run_ratio <= 1.2,
        "data_context_applied": data_context or "none (Ray Data's defaults; values in each size's data_context)",
        "complete": final,
        "cpu": os.cpu_count(),
        "backend": "echo (plumbing aid, not a model)",
    }
    if final:
        print(json.dumps(summary))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps({"sizes": results, "summary": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
