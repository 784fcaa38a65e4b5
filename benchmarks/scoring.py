"""Scorer benchmark: the seed's way (one row at a time, three forward passes, HF `.loss`) against the engine's
two-pass, length-bucketed, chunked-logit scorer, and the engine's vLLM scorer (prompt logprobs), on the same rows,
model, dtype and threads, in one run.

Uses the real embedded SmolLM2-135M-Instruct on the demo seeds with their reference answers. Prints one JSON
line per dtype and saves all of them to benchmarks/results/scoring.json with the machine's facts. `--repeat N`
runs both HF scorers N times, interleaved, and gives min / median / max (engine.commands.bench.spread) of each and of
their ratio; the headline figures are the medians.
`roofline_fraction` is the engine's achieved FLOP rate over this machine's matmul rate for the dtype, measured in
the same run. The vLLM scorer runs where vLLM is installed (`.venv-vllm/bin/python benchmarks/scoring.py`):
`vllm.max_rel_diff_vs_hf` is its largest per-row relative difference from the HF scorer's scores.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import time
from importlib import resources
from pathlib import Path

import torch

from engine.commands.bench import spread
from engine.config import Config, ModelConfig
from engine.measure.machine import machine_facts
from engine.read.validate import records_from_rows
from engine.recipes import specs

SCORES = ("l_q", "l_a_given_q", "l_a", "ifd", "ic_ifd")


def demo_rows(n: int) -> list[dict]:
    path = resources.files("engine") / "data" / "demo_seeds.jsonl"
    rows = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
    return (rows * (n // len(rows) + 1))[:n]


def seed_style(model, spans) -> tuple[float, list[tuple[float, float, float]]]:
    """The research code's loop: batch 1, three passes, labels=-100 masking, HF .loss (eval_loss.py)."""
    scores = []
    started = time.perf_counter()
    with torch.no_grad():
        for span in spans:
            ids = torch.tensor([span.qa_ids])
            labels_aq = ids.clone()
            labels_aq[0, : span.q_len] = -100
            labels_q = ids.clone()
            labels_q[0, span.q_len:] = -100
            a_ids = torch.tensor([span.a_ids])
            l_aq = model(ids, labels=labels_aq).loss.item()
            l_q = model(ids, labels=labels_q).loss.item()
            l_a = model(a_ids, labels=a_ids).loss.item()
            scores.append((l_q, l_aq, l_a))
    return time.perf_counter() - started, scores


def matmul_rate(dtype: torch.dtype, hidden: int, intermediate: int) -> float:
    """Measured GEMM FLOP/s for `dtype` in the model's own shape (tokens x hidden @ hidden x intermediate,
    through F.linear as the model runs it): square torch.matmul takes other kernels, and on AVX2-only cores
    its bf16 path is far slower than the model's. Tokens grow until one product takes 0.25 s."""
    weight = torch.randn(intermediate, hidden).to(dtype)
    tokens = 64
    while True:
        x = torch.randn(tokens, hidden).to(dtype)
        torch.nn.functional.linear(x, weight)
        started = time.perf_counter()
        torch.nn.functional.linear(x, weight)
        elapsed = time.perf_counter() - started
        if elapsed > 0.25 or tokens >= 16384:
            return 2 * tokens * hidden * intermediate / elapsed
        tokens *= 2


def forward_flops(model, tokens: int) -> float:
    """2 x (non-embedding parameters + LM head) FLOPs per scored token (attention over short rows is small)."""
    cfg = model.config
    body = sum(p.numel() for name, p in model.named_parameters() if "embed_tokens" not in name)
    head = cfg.hidden_size * cfg.vocab_size  # tied: the head is computed even though it shares weights
    return 2.0 * (body + head) * tokens


def bench(dtype: str, rows: int, threads: int, repeat: int = 1) -> dict:
    torch.set_num_threads(threads)
    model_cfg = ModelConfig(dtype=dtype, max_batch_size=16)
    cfg = Config(scorer=model_cfg)
    scorer = specs.score(cfg, 1).build(torch_threads=threads)
    data = demo_rows(rows)
    batch = records_from_rows(data)
    spans = [scorer.spans(r["instruction"], r["input"], r["output"]) for r in data]
    tokens = sum(len(s.qa_ids) + len(s.a_ids) for s in spans)

    seed_times, engine_times = [], []
    for _ in range(repeat):  # interleaved, so a change in the machine's load hits both alike
        seconds, reference = seed_style(scorer.model.model, spans)
        seed_times.append(seconds)
        started = time.perf_counter()
        out = scorer(batch)
        engine_times.append(time.perf_counter() - started)
    seed_s, engine_s = statistics.median(seed_times), statistics.median(engine_times)

    diffs = []
    for i, (l_q, l_aq, l_a) in enumerate(reference):
        for ours, theirs in ((out["l_q"][i], l_q), (out["l_a_given_q"][i], l_aq), (out["l_a"][i], l_a),
                             (out["ic_ifd"][i], l_aq / (l_q * l_a))):
            diffs.append(abs(ours - theirs) / abs(theirs))
    arch = scorer.model.model.config
    rate = matmul_rate(scorer.model.dtype, arch.hidden_size, arch.intermediate_size)
    achieved = forward_flops(scorer.model.model, tokens) / engine_s
    vllm = bench_vllm(dtype, data, out, tokens, engine_s) if importlib.util.find_spec("vllm") else "not installed"
    return {
        "benchmark": "scoring",
        "model": "smollm2-135m",
        "dtype": dtype,
        "threads": threads,
        "rows": rows,
        "tokens": tokens,
        "seed_style_s": round(seed_s, 3),
        "engine_s": round(engine_s, 3),
        "speedup": round(seed_s / engine_s, 3),  # medians; the spreads below: min / median / max over repeats
        "repeat": repeat,
        "seed_style_s_spread": spread(seed_times),
        "engine_s_spread": spread(engine_times),
        "speedup_spread": spread([a / b for a, b in zip(seed_times, engine_times)]),
        "max_rel_diff": float(f"{max(diffs):.3g}"),
        "engine_gflops": round(achieved / 1e9, 1),
        "matmul_gflops": round(rate / 1e9, 1),
        "roofline_fraction": round(achieved / rate, 3),
        "engine_rows_per_s": round(rows / engine_s, 2),
        "engine_tokens_per_s": round(tokens / engine_s, 1),
        "vllm": vllm,
    }


def bench_vllm(dtype: str, data: list[dict], hf_out: dict, tokens: int, hf_s: float) -> dict:
    """The Score stage on vLLM (prompt logprobs) over the same rows: its speed and its distance from HF's scores."""
    cfg = Config(scorer=ModelConfig(dtype=dtype, max_batch_size=16, backend="vllm"))
    started = time.perf_counter()
    scorer = specs.score(cfg, 1).build()
    load_s = time.perf_counter() - started
    scorer(records_from_rows(data[:2]))  # warm-up
    started = time.perf_counter()
    out = scorer(records_from_rows(data))
    elapsed = time.perf_counter() - started
    scorer.model.close()
    diffs = [abs(float(out[name][i]) - float(hf_out[name][i])) / abs(float(hf_out[name][i]))
             for name in SCORES for i in range(len(data))]
    return {"load_s": round(load_s, 1), "seconds": round(elapsed, 3), "rows_per_s": round(len(data) / elapsed, 2),
            "tokens_per_s": round(tokens / elapsed, 1), "over_hf_engine": round(hf_s / elapsed, 3),
            "max_rel_diff_vs_hf": float(f"{max(diffs):.3g}")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeat", type=int, default=1, help="interleaved repeats of both scorers")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "scoring.json"))
    args = parser.parse_args()
    results = {"machine_at_start": machine_facts(), "by_dtype": []}
    for dtype in args.dtypes.split(","):
        result = bench(dtype, args.rows, args.threads, args.repeat)
        print(json.dumps(result), flush=True)
        results["by_dtype"].append(result)
    results["machine_at_end"] = machine_facts()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
