"""Scale: 10k, 100k and 1M rows through the Evol-Instruct recipe (evolve -> eliminate -> respond -> score) on
the `echo` plumbing backend, which measures the pipeline around the model (Ray Data, stages, commits, sinks) and
is never a model. Each size runs as its own `python -m engine` process with its own local Ray.

Prints one JSON line per size (rows/s, peak RSS of the driver and of the Ray workers, sampled every 0.2 s) and a
summary line with RSS(largest) / RSS(smallest) for the driver (goal <= 1.2: nothing is collected on the
driver); saves everything to benchmarks/results/scale.json."""

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


def run_size(rows: int, batch_size: int, shard_rows: int, tmp: Path) -> dict:
    seeds, out = tmp / f"seeds-{rows}.jsonl", tmp / f"out-{rows}"
    write_seeds(seeds, rows)
    command = [sys.executable, "-m", "engine", "model=echo", "scorer=echo", "data=file", f"data.path={seeds}",
               f"run.output_dir={out}", "run.progress=false", f"cluster.batch_size={batch_size}",
               f"run.shard_rows={shard_rows}"]
    env = {**os.environ}
    env.pop("RAY_ADDRESS", None)
    peaks = dict.fromkeys(("driver", "worker_max", "workers_total", "ray_system"), 0)
    started = time.perf_counter()
    with open(tmp / f"log-{rows}.txt", "w") as log:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        driver = psutil.Process(proc.pid)
        while proc.poll() is None:
            sample(driver, peaks)
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
        "driver_peak_rss_mib": round(peaks["driver"] / MiB, 1),
        "worker_peak_rss_mib": round(peaks["worker_max"] / MiB, 1),
        "workers_total_peak_rss_mib": round(peaks["workers_total"] / MiB, 1),
        "ray_system_peak_rss_mib": round(peaks["ray_system"] / MiB, 1),
        "batch_size": batch_size,
        "shard_rows": shard_rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--batch-size", type=int, default=1000, help="rows per stage batch (cluster.batch_size)")
    parser.add_argument("--shard-rows", type=int, default=10_000, help="rows per committed shard (run.shard_rows)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "scale.json"))
    args = parser.parse_args()

    results = []
    with tempfile.TemporaryDirectory(prefix="ee-scale-") as tmp:
        for rows in args.sizes:
            result = run_size(rows, args.batch_size, args.shard_rows, Path(tmp))
            print(json.dumps(result), flush=True)
            results.append(result)
    smallest, largest = results[0], results[-1]
    ratio = largest["driver_peak_rss_mib"] / smallest["driver_peak_rss_mib"]
    summary = {
        "driver_rss_ratio": round(ratio, 3),
        "ratio_of": f"{largest['rows']} / {smallest['rows']} rows",
        "goal": "driver_rss_ratio <= 1.2",
        "goal_met": ratio <= 1.2,
        "cpu": os.cpu_count(),
        "backend": "echo (plumbing aid, not a model)",
    }
    print(json.dumps(summary))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"sizes": results, "summary": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
