"""Deduplication at scale: synthetic rows (100k and 1M by default) with a known share of planted exact and near
duplicates, deduplicated by the Deduplicate step (engine/recipes/steps.py) on a local Ray: the two group-bys on
Ray Data (RayExecutor.grouped), then the DropDuplicates stage over every row (RayExecutor.apply).

Rows are written as a round's ledger would hold them (Parquet shards of --shard-rows rows). Each original row is a
run of 100 to 160 words drawn from a Zipf law over a 20k-word vocabulary; a planted exact copy changes case,
punctuation and spacing only; a planted near copy changes 1 to 3 words (kept apart by at least 3 words) of an
instruction of at least 100 words, so its word 3-shingle Jaccard with its original stays above the default 0.8
threshold (each pair's true Jaccard is recorded). A planted decoy changes words of an original one at a time until the
pair's Jaccard falls just under the threshold: LSH proposes most decoys, the check on the real shingle sets must
turn them down. Copies and decoys sit at random positions, so either side may come first.

Per size, one process (the driver) starts Ray, plans and applies; this script samples its RSS and the Ray
processes' below it every 0.2 s (as benchmarks/scale.py does) and scores the drops against the planted pairs:
recall = planted pairs whose later row is dropped naming the earlier one / planted pairs; precision = drops that
are such a planted pair / drops, so a dropped decoy lowers it (goal >= 0.99 / >= 0.99 at the default threshold).
Prints one JSON line per size and saves everything with the machine's facts to benchmarks/results/dedup.json."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.scale import sample  # noqa: E402
from engine.config import DedupConfig  # noqa: E402
from engine.measure.machine import machine_facts  # noqa: E402
from engine.stages.curation import dedup  # noqa: E402

MiB = 1024 * 1024
VOCABULARY = 20_000
SYLLABLES = ["ba", "ce", "di", "fo", "gu", "ha", "ke", "li", "mo", "nu", "pa", "re", "si", "to", "vu", "wa", "xe",
             "yo", "za", "qu"]


def vocabulary() -> np.ndarray:
    """20k distinct pseudo-words of three syllables."""
    s = np.asarray(SYLLABLES)
    i = np.arange(VOCABULARY)
    return np.char.add(np.char.add(s[i % 20], s[(i // 20) % 20]), s[(i // 400) % 20])


def near_copy(words: list[str], rng: np.random.Generator, vocab: np.ndarray) -> list[str]:
    """1 to 3 words replaced, at positions at least 3 apart (each replacement changes its own 3 shingles)."""
    copy = list(words)
    changes = int(rng.integers(1, 4))
    positions: list[int] = []
    while len(positions) < changes:
        p = int(rng.integers(0, len(copy)))
        if all(abs(p - q) >= 3 for q in positions):
            positions.append(p)
    for p in positions:
        copy[p] = str(vocab[rng.integers(0, len(vocab))]) + "x"  # never an original word
    return copy


def decoy(words: list[str], rng: np.random.Generator, vocab: np.ndarray, threshold: float) -> list[str]:
    """Words replaced one at a time until the word 3-shingle Jaccard with the original is under `threshold`."""
    original = dedup.shingles(" ".join(words), "word", 3)
    copy = list(words)
    while True:
        copy[int(rng.integers(0, len(copy)))] = str(vocab[rng.integers(0, len(vocab))]) + "y"
        if dedup.jaccard(original, dedup.shingles(" ".join(copy), "word", 3)) < threshold:
            return copy


def exact_copy(text: str, rng: np.random.Generator) -> str:
    """The same text after normalisation: other case, punctuation and spacing."""
    words = text.split()
    cut = int(rng.integers(1, len(words)))
    return "  " + " ".join(words[:cut]).upper() + ",   " + " ".join(words[cut:]) + "?!"


def write_rows(rows: int, exact_share: float, near_share: float, folder: Path, shard_rows: int,
               decoy_share: float = 0.0, seed: int = 0) -> tuple[dict, dict]:
    """Write the synthetic round as ledger-like Parquet shards; returns the planted pairs {copy: original} (seed
    positions) with their kind and true Jaccard, and the decoys {decoy position: its Jaccard with its original}."""
    rng = np.random.default_rng(seed)
    vocab = vocabulary()
    zipf = 1.0 / np.arange(1, VOCABULARY + 1) ** 1.1
    zipf /= zipf.sum()
    n_exact, n_near, n_decoy = int(rows * exact_share), int(rows * near_share), int(rows * decoy_share)
    n_original = rows - n_exact - n_near - n_decoy
    lengths = rng.integers(100, 161, n_original)
    texts = [" ".join(vocab[rng.choice(VOCABULARY, size=int(k), p=zipf)]) for k in lengths]
    threshold = DedupConfig().threshold
    sources = rng.choice(n_original, size=n_exact + n_near + n_decoy, replace=False)  # each original used once
    kinds = ["exact"] * n_exact + ["near"] * n_near + ["decoy"] * n_decoy
    for source, kind in zip(sources, kinds):
        text = texts[source]
        if kind == "exact":
            texts.append(exact_copy(text, rng))
        else:
            change = near_copy if kind == "near" else partial(decoy, threshold=threshold)
            texts.append(" ".join(change(text.split(), rng, vocab)))
    order = rng.permutation(rows)  # order[k]: the text at seed position k
    position = np.empty(rows, dtype=np.int64)
    position[order] = np.arange(rows)
    planted, decoys = {}, {}
    for j, (source, kind) in enumerate(zip(sources, kinds)):
        a, b = int(position[source]), int(position[n_original + j])
        similarity = dedup.jaccard(*(dedup.shingles(dedup.normalised(texts[t], ""), "word", 3)
                                     for t in (source, n_original + j)))
        if kind == "decoy":
            decoys[max(a, b)] = similarity
        else:
            planted[max(a, b)] = {"kept": min(a, b), "kind": kind, "jaccard": similarity}
    folder.mkdir(parents=True, exist_ok=True)
    for shard, lo in enumerate(range(0, rows, shard_rows)):
        hi = min(rows, lo + shard_rows)
        n = hi - lo
        pq.write_table(pa.table({
            "status": ["ok"] * n, "reason": [""] * n, "detail": [""] * n, "rejected_at": [""] * n,
            "id": [f"s{k:08d}" for k in range(lo, hi)], "seed_index": np.arange(lo, hi, dtype=np.int64),
            "instruction": [texts[order[k]] for k in range(lo, hi)], "input": [""] * n,
        }), folder / f"shard-{shard:05d}.parquet")
    return planted, decoys


# The driver: start a local Ray, plan and apply the step over the shards, write what it did.
DRIVER = """
import json, sys, time
from pathlib import Path
from engine.config import compose
from engine.recipes.spec import Resources
from engine.recipes.steps import Deduplicate
from engine.run.runner import RayExecutor

shards, out = Path(sys.argv[1]), Path(sys.argv[2])
cfg = compose(["model=echo", "scorer=echo"])
cfg.run.output_dir = str(out)
cfg.run.progress = "off"
executor = RayExecutor(cfg)
executor.start()
try:
    files = sorted(shards.glob("*.parquet"))
    step = Deduplicate(cfg.dedup, Resources())
    started = time.perf_counter()
    plan = step.plan(files, executor.storage, executor)
    planned = time.perf_counter()
    applied = executor.apply(files, step.spec(plan), out / "applied")
    done = time.perf_counter()
finally:
    executor.stop()
(out / "drops.json").write_text(json.dumps({
    "record": plan.as_dict(), "plan_s": planned - started, "apply_s": done - planned, "files_out": len(applied),
    "drops": {k: [v[0], v[1]] for k, v in plan.drops.items()}}))
"""


def run_size(rows: int, args, tmp: Path) -> dict:
    shards, out = tmp / f"shards-{rows}", tmp / f"out-{rows}"
    began = time.perf_counter()
    planted, decoys = write_rows(rows, args.exact_share, args.near_share, shards, args.shard_rows, args.decoy_share)
    generated_s = time.perf_counter() - began
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    peaks = dict.fromkeys(("driver", "worker_max", "workers_total", "ray_system"), 0)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    with open(tmp / f"log-{rows}.txt", "w") as log:
        proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(shards), str(out)], cwd=REPO, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        driver = psutil.Process(proc.pid)
        while proc.poll() is None:
            sample(driver, peaks)
            time.sleep(0.2)
    wall = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(f"{rows} rows: the driver failed; see {tmp / f'log-{rows}.txt'}")
    result = json.loads((out / "drops.json").read_text())
    drops = {int(k[1:]): (int(v[0][1:]), v[1]) for k, v in result.pop("drops").items()}
    hits = [copy for copy, p in planted.items() if drops.get(copy, (None,))[0] == p["kept"]]
    by_kind = {kind: [c for c, p in planted.items() if p["kind"] == kind] for kind in ("exact", "near")}
    near_j = [p["jaccard"] for p in planted.values() if p["kind"] == "near"]
    hit = set(hits)
    return {
        "rows": rows, "planted_exact": len(by_kind["exact"]), "planted_near": len(by_kind["near"]),
        "near_jaccard_min": round(min(near_j), 4) if near_j else None,
        "near_jaccard_mean": round(float(np.mean(near_j)), 4) if near_j else None,
        "planted_decoys": len(decoys),
        "decoy_jaccard_min": round(min(decoys.values()), 4) if decoys else None,
        "decoy_jaccard_max": round(max(decoys.values()), 4) if decoys else None,
        "decoys_dropped": sum(1 for d in decoys if d in drops),
        "dropped": len(drops), "recall": round(len(hits) / len(planted), 5) if planted else None,
        "recall_exact": round(sum(c in hit for c in by_kind["exact"]) / max(1, len(by_kind["exact"])), 5),
        "recall_near": round(sum(c in hit for c in by_kind["near"]) / max(1, len(by_kind["near"])), 5),
        "precision": round(len(hits) / len(drops), 5) if drops else None,
        "wall_s": round(wall, 1), "rows_per_s": round(rows / wall, 1),
        "plan_s": round(result["plan_s"], 1), "apply_s": round(result["apply_s"], 1),
        "rows_per_s_plan_and_apply": round(rows / (result["plan_s"] + result["apply_s"]), 1),
        "driver_peak_rss_mib": round(peaks["driver"] / MiB, 1),
        "worker_peak_rss_mib": round(peaks["worker_max"] / MiB, 1),
        "workers_total_peak_rss_mib": round(peaks["workers_total"] / MiB, 1),
        "ray_system_peak_rss_mib": round(peaks["ray_system"] / MiB, 1),
        "record": result["record"], "generate_s": round(generated_s, 1), "load_avg_1m_before": round(load_before, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--exact-share", type=float, default=0.05, help="share of rows that are exact copies")
    parser.add_argument("--near-share", type=float, default=0.05, help="share of rows that are near copies")
    parser.add_argument("--decoy-share", type=float, default=0.05,
                        help="share of rows that are decoys (Jaccard under the threshold: must be kept)")
    parser.add_argument("--shard-rows", type=int, default=10_000)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "dedup.json"))
    args = parser.parse_args()
    machine = machine_facts()
    print(f"ISA: {machine['isa']} ({machine['cpu_model']}, {machine['cpus']} CPUs)", flush=True)
    defaults = DedupConfig()
    settings = {"threshold": defaults.threshold, "num_perm": defaults.num_perm, "shingle": defaults.shingle,
                "shingle_size": defaults.shingle_size, "recall_weight": defaults.recall_weight,
                "exact_share": args.exact_share, "near_share": args.near_share,
                "decoy_share": args.decoy_share, "shard_rows": args.shard_rows}
    results = []
    with tempfile.TemporaryDirectory(prefix="ee-dedup-") as tmp:
        for rows in args.sizes:
            result = run_size(rows, args, Path(tmp))
            print(json.dumps({k: v for k, v in result.items() if k != "record"}), flush=True)
            results.append(result)
            save(args.out, results, settings, machine)
    save(args.out, results, settings, machine, final=True)


def save(out: str, results: list[dict], settings: dict, machine: dict, final: bool = False) -> None:
    summary = {
        "goal": "recall >= 0.99 and precision >= 0.99 of the planted pairs at the default threshold",
        "goal_met": all(r["recall"] >= 0.99 and r["precision"] >= 0.99 for r in results),
        "driver_rss_ratio": round(results[-1]["driver_peak_rss_mib"] / results[0]["driver_peak_rss_mib"], 3),
        "ratio_of": f"{results[-1]['rows']} / {results[0]['rows']} rows",
        "complete": final,
    }
    if final:
        print(json.dumps(summary))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps({"settings": settings, "sizes": results, "summary": summary,
                                     "machine": machine}, indent=2) + "\n")


if __name__ == "__main__":
    main()
