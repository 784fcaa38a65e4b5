"""Diversity benchmark: rows/s of the exact minimum-neighbour-distance search (the engine's blocked numpy search
against faiss exact flat search, same vectors, same run) and, measured separately, MiniLM embedding rows/s.

Search: `--rows` random unit vectors of dim 384 (1% of rows copied from others, so near duplicates exist and the
two searches can be checked against each other). faiss needs two calls for the same outputs: `search(k=2)` for
the nearest other row (k=2 always holds one hit that is not the row itself) and `range_search` for the
near-duplicate counts. faiss is optional and not a dependency of the engine; it is used only when importable.

`--rows 1000000 --search-only` checks the 1M-row path: vectors in an .npy memmap, `--query-rows` queries timed
against all rows, full time extrapolated (exact search is O(n^2): ~1M x 1M x 384 x 2 FLOP), and the extra memory
of the search (numpy allocations, traced) reported beside the process RSS.

Prints one JSON line per measurement and merges them into benchmarks/results/diversity.json."""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
import tracemalloc
from importlib import resources
from pathlib import Path

import numpy as np

from engine.config import EmbedderConfig
from engine.stages.analysis.diversity import dot_cutoff, embedding_text, min_neighbour_distances

MiB = 1024 * 1024
DIM = 384


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def anon_rss_mib() -> float:
    """Resident anonymous memory now (excludes file-backed memmap pages, which the kernel can drop)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def fill_unit_vectors(target: np.ndarray, seed: int = 0, chunk: int = 65536) -> None:
    """Random unit vectors, 1% of rows replaced by copies of other rows; written chunk by chunk."""
    rng = np.random.default_rng(seed)
    n = target.shape[0]
    for lo in range(0, n, chunk):
        block = rng.standard_normal((min(chunk, n - lo), target.shape[1])).astype(np.float32)
        target[lo: lo + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    copies = rng.choice(n, size=max(1, n // 100), replace=False)
    target[copies] = target[rng.integers(0, n, size=len(copies))]


def time_numpy(x: np.ndarray, threshold: float, block_rows: int, queries: slice | None = None) -> dict:
    tracemalloc.start()
    started = time.perf_counter()
    mnd, near = min_neighbour_distances(x, threshold=threshold, block_rows=block_rows, queries=queries)
    seconds = time.perf_counter() - started
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"seconds": seconds, "mnd": mnd, "near": near, "search_extra_mib": round(traced_peak / MiB, 1)}


def time_faiss(faiss, x: np.ndarray, threshold: float) -> dict:
    started = time.perf_counter()
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(np.ascontiguousarray(x))
    dots, hits = index.search(x, 2)
    knn_s = time.perf_counter() - started
    own = hits[:, 0] == np.arange(len(x))
    best = np.where(own, dots[:, 1], dots[:, 0])  # the best hit that is not the row itself
    mnd = np.maximum(0.0, 2.0 - 2.0 * best.astype(np.float64))
    started = time.perf_counter()
    limits, _, found = index.range_search(x, float(dot_cutoff(threshold)))  # inner product > cutoff
    range_s = time.perf_counter() - started
    counts = np.diff(limits).astype(np.int64)
    rows_of_hits = np.repeat(np.arange(len(x)), counts)
    near = counts - np.bincount(rows_of_hits[found == rows_of_hits], minlength=len(x))
    return {"seconds": knn_s + range_s, "knn_s": knn_s, "range_s": range_s, "mnd": mnd, "near": near}


def bench_search(args, faiss) -> list[dict]:
    x = np.empty((args.rows, DIM), dtype=np.float32)
    fill_unit_vectors(x)
    rss_before = peak_rss_mib()
    got = time_numpy(x, args.threshold, args.block_rows)
    record = {
        "benchmark": "diversity", "mode": "search", "rows": args.rows, "dim": DIM, "threshold": args.threshold,
        "block_rows": args.block_rows, "threads": os.cpu_count(), "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
        "numpy_s": round(got["seconds"], 2), "numpy_rows_per_s": round(args.rows / got["seconds"], 1),
        "numpy_gflops": round(2 * args.rows**2 * DIM / got["seconds"] / 1e9, 1),
        "numpy_search_extra_mib": got["search_extra_mib"],
        "vectors_mib": round(x.nbytes / MiB, 1),
        "peak_rss_mib_after_numpy": round(max(peak_rss_mib(), rss_before), 1),
        "near_duplicate_rows": int(np.count_nonzero(got["near"])),
    }
    if faiss is not None:
        ref = time_faiss(faiss, x, args.threshold)
        record.update({
            "faiss_version": faiss.__version__, "faiss_threads": faiss.omp_get_max_threads(),
            "faiss_s": round(ref["seconds"], 2), "faiss_knn_s": round(ref["knn_s"], 2),
            "faiss_range_s": round(ref["range_s"], 2), "faiss_rows_per_s": round(args.rows / ref["seconds"], 1),
            "numpy_over_faiss_speed": round(ref["seconds"] / got["seconds"], 2),
            "numpy_over_faiss_knn_only_speed": round(ref["knn_s"] / got["seconds"], 2),
            "max_abs_mnd_diff": float(np.abs(ref["mnd"] - got["mnd"]).max()),
            "near_count_mismatches": int(np.count_nonzero(ref["near"] != got["near"])),
            "peak_rss_mib_after_faiss": round(peak_rss_mib(), 1),
        })
    return [record]


def bench_memmap(args) -> list[dict]:
    with tempfile.TemporaryDirectory(dir=args.tmp_dir) as tmp:
        path = Path(tmp) / "embeddings.npy"
        target = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(args.rows, DIM))
        fill_unit_vectors(target)
        target.flush()
        del target
        x = np.load(path, mmap_mode="r")
        queries = args.query_rows or args.rows
        anon_before = anon_rss_mib()
        got = time_numpy(x, args.threshold, args.block_rows, queries=slice(0, queries))
        estimate = got["seconds"] * args.rows / queries
        return [{
            "benchmark": "diversity", "mode": "search_memmap", "rows": args.rows, "query_rows": queries, "dim": DIM,
            "block_rows": args.block_rows, "threads": os.cpu_count(),
            "load_avg_1m_at_end": round(os.getloadavg()[0], 2), "measured_s": round(got["seconds"], 2),
            "rows_per_s": round(queries / got["seconds"], 1),
            "estimated_full_s": round(estimate, 0), "estimated_full_h": round(estimate / 3600, 2),
            "file_mib": round(path.stat().st_size / MiB, 1), "search_extra_mib": got["search_extra_mib"],
            "anon_rss_mib_before": round(anon_before, 1), "anon_rss_mib_after": round(anon_rss_mib(), 1),
            "peak_rss_mib_incl_mapped_file": round(peak_rss_mib(), 1),
        }]


def realish_texts(n: int) -> list[str]:
    """Demo seed rows and AutoIF queries, cycled to `n` texts as the analysis embeds them."""
    data = resources.files("engine") / "data"
    rows = [json.loads(line) for line in (data / "demo_seeds.jsonl").read_text("utf-8").splitlines() if line.strip()]
    rows += [json.loads(line) for line in (data / "autoif_queries.jsonl").read_text("utf-8").splitlines()
             if line.strip()]
    texts = [embedding_text(str(r.get("instruction", r.get("query", ""))), str(r.get("input", ""))) for r in rows]
    return (texts * (n // len(texts) + 1))[:n]


def bench_embed(args) -> list[dict]:
    from engine.backends.embedder import load_embedder

    started = time.perf_counter()
    embedder = load_embedder(EmbedderConfig(device="cpu", batch_size=args.embed_batch), torch_threads=os.cpu_count())
    load_s = time.perf_counter() - started
    texts = realish_texts(args.embed_rows)
    embedder.encode(texts[:32])  # warm-up
    started = time.perf_counter()
    vectors = embedder.encode(texts)
    seconds = time.perf_counter() - started
    return [{
        "benchmark": "diversity", "mode": "embed", "rows": len(texts), "model": embedder.name, "device": "cpu",
        "threads": os.cpu_count(), "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
        "batch_size": args.embed_batch, "load_s": round(load_s, 2),
        "mean_chars": round(float(np.mean([len(t) for t in texts])), 1), "seconds": round(seconds, 2),
        "rows_per_s": round(len(texts) / seconds, 1), "dim": int(vectors.shape[1]),
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }]


def merge(path: Path, records: list[dict]) -> list[dict]:
    """Keep earlier records of other modes/sizes; replace those this run measured again."""
    old = json.loads(path.read_text()) if path.exists() else []
    key = lambda r: (r.get("mode"), r.get("rows"))  # noqa: E731
    fresh = {key(r) for r in records}
    return [r for r in old if key(r) not in fresh] + records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--threshold", type=float, default=0.05)
    parser.add_argument("--block-rows", type=int, default=4096)
    parser.add_argument("--search-only", action="store_true", help="skip the embedding measurement")
    parser.add_argument("--no-faiss", action="store_true")
    parser.add_argument("--memmap", action="store_true", help="vectors in an .npy memmap (default above 200k rows)")
    parser.add_argument("--query-rows", type=int, default=None,
                        help="memmap mode: time this many queries against all rows and extrapolate (default 4096)")
    parser.add_argument("--tmp-dir", default=None)
    parser.add_argument("--embed-rows", type=int, default=2000)
    parser.add_argument("--embed-batch", type=int, default=EmbedderConfig.batch_size)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "diversity.json"))
    args = parser.parse_args()
    records = []
    if args.memmap or args.rows > 200_000:
        args.query_rows = args.query_rows or min(args.rows, 4096)
        records += bench_memmap(args)
    else:
        faiss = None
        if not args.no_faiss:
            try:
                import faiss
            except ImportError:
                print("faiss not importable: numpy search only")
        records += bench_search(args, faiss)
    if not args.search_only:
        records += bench_embed(args)
    for record in records:
        print(json.dumps(record), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(merge(out, records), indent=2) + "\n")


if __name__ == "__main__":
    main()
