"""Per-stage accounting: the timings each stage actor records about its own batches, added up per round into
summary.json["stages"], with the run's cost and a labelled extrapolation to a million seeds.

Records travel with the rows: the actor that ran a batch puts a JSON list of its stage records into the
STATS_COLUMN of the batch's first row (the column is empty on every other row), so they survive Ray Data's
re-blocking, retries (a retried batch's output replaces the failed one's) and resume (committed ledger shards
keep them). The sinks fold the records into the round's counts and drop the column before any output is
written: outputs never carry it."""

from __future__ import annotations

import json
import math
from collections import Counter

STATS_COLUMN = "_stage_stats"
MILLION = 1_000_000


def batch_record(stage: str, instance: str, pooled: bool, started: float, load_s: float, t0: float, t1: float,
                 rows: int, ok_in: int, ok_out: int, prompt_tokens: int, generated_tokens: int,
                 execution: str = "", busy_s: float | None = None, engine: dict | None = None) -> dict:
    """What one stage did with one batch, timed inside its actor (wall clock, seconds since the epoch).
    `execution` names the Ray Data execution (a round, or one segment of it, in one run of the driver) whose
    actor pool the instance belongs to: each execution starts its pools anew. `busy_s` is the batch's share of
    the actor's busy time (t1 - t0 unless batches overlapped in the actor); `engine`, a vLLM engine's occupancy
    so far (backends/feeder.py Occupancy)."""
    record = {"stage": stage, "instance": instance, "pooled": pooled, "started": started, "load_s": load_s,
              "t0": t0, "t1": t1, "rows": rows, "ok_in": ok_in, "ok_out": ok_out, "prompt_tokens": prompt_tokens,
              "generated_tokens": generated_tokens, "execution": execution,
              "busy_s": t1 - t0 if busy_s is None else busy_s}
    if engine is not None:
        record["engine"] = engine
    return record


def empty_stage() -> dict:
    return {"batches": 0, "rows": 0, "ok_in": 0, "ok_out": 0, "prompt_tokens": 0, "generated_tokens": 0,
            "busy_s": 0.0, "first_t0": None, "last_t1": None, "pooled": False, "instances": {}, "windows": {}}


def add_record(stages: dict, record: dict) -> None:
    """Fold one batch record into `stages` (stage name -> running totals; the per-instance entries keep what
    the busy fraction needs: when the actor started, its model load and its last batch's end)."""
    entry = stages.setdefault(record["stage"], empty_stage())
    entry["batches"] += 1
    for key in ("rows", "ok_in", "ok_out", "prompt_tokens", "generated_tokens"):
        entry[key] += int(record[key])
    entry["busy_s"] += record.get("busy_s", record["t1"] - record["t0"])
    entry["first_t0"] = record["t0"] if entry["first_t0"] is None else min(entry["first_t0"], record["t0"])
    entry["last_t1"] = record["t1"] if entry["last_t1"] is None else max(entry["last_t1"], record["t1"])
    entry["pooled"] = entry["pooled"] or bool(record["pooled"])
    inst = entry["instances"].setdefault(record["instance"], {"started": record["started"],
                                                              "load_s": record["load_s"], "last_t1": record["t1"],
                                                              "execution": record.get("execution", "")})
    inst["started"] = min(inst["started"], record["started"])
    if "engine" in record and record["t1"] >= inst.get("engine_at", float("-inf")):
        inst["engine"], inst["engine_at"] = record["engine"], record["t1"]  # cumulative: the latest says it all
    inst["last_t1"] = max(inst["last_t1"], record["t1"])
    _widen(entry.setdefault("windows", {}), record.get("execution", ""), record["t0"], record["t1"])


def _widen(windows: dict, execution: str, t0: float, t1: float) -> None:
    """Stretch an execution's [first batch start, last batch end] window over [t0, t1]."""
    lo, hi = windows.get(execution, (t0, t1))
    windows[execution] = [min(lo, t0), max(hi, t1)]


def add_column(stages: dict, values) -> None:
    """Fold every record held in a batch's STATS_COLUMN values (JSON lists, or empty) into `stages`."""
    for value in values:
        if value:
            for record in json.loads(value):
                add_record(stages, record)


def merge(mine: dict, other: dict) -> None:
    """Add another shard's stage totals of the same round to `mine`."""
    for name, theirs in other.items():
        entry = mine.setdefault(name, empty_stage())
        for key in ("batches", "rows", "ok_in", "ok_out", "prompt_tokens", "generated_tokens", "busy_s"):
            entry[key] += theirs[key]
        for key, pick in (("first_t0", min), ("last_t1", max)):
            values = [v for v in (entry[key], theirs[key]) if v is not None]
            entry[key] = pick(values) if values else None
        entry["pooled"] = entry["pooled"] or theirs["pooled"]
        for execution, (lo, hi) in theirs.get("windows", {}).items():
            _widen(entry.setdefault("windows", {}), execution, lo, hi)
        for key, inst in theirs["instances"].items():
            held = entry["instances"].setdefault(key, dict(inst))
            held["started"] = min(held["started"], inst["started"])
            held["last_t1"] = max(held["last_t1"], inst["last_t1"])
            if "engine" in inst and inst["engine_at"] >= held.get("engine_at", float("-inf")):
                held["engine"], held["engine_at"] = inst["engine"], inst["engine_at"]


def _rate(amount: float, seconds: float) -> float | None:
    return round(amount / seconds, 3) if seconds > 0 else None


def stage_figures(round_num: int, stages: dict) -> list[dict]:
    """One entry per stage of a round, in data-path order, with the figures summary.json["stages"] shows.

    busy_s: wall time inside the stage's own calls, summed over its actors; span_s: first batch start to last
    batch end; load_s: the stage's constructor (model load) summed over its actors, apart from busy_s;
    busy_fraction: busy_s over the actors' lifetime (constructor start to last batch end, load included)."""
    out = []
    # Data-path order: a stage's first batch starts after the first batch of the stage before it.
    for name, e in sorted(stages.items(), key=lambda item: (item[1]["first_t0"] or 0.0, item[0])):
        instances = e["instances"].values()
        lifetime = sum(max(0.0, i["last_t1"] - i["started"]) for i in instances)
        span = max(0.0, e["last_t1"] - e["first_t0"]) if e["batches"] else 0.0
        load = sum(i["load_s"] for i in instances)
        per_execution = Counter(i.get("execution", "") for i in instances)
        out.append({
            "round": round_num, "stage": name, "kind": "actor_pool" if e["pooled"] else "tasks",
            "actors": len(e["instances"]) if e["pooled"] else 0, "tasks": 0 if e["pooled"] else len(e["instances"]),
            # a round of several segments runs one execution (fresh actor pools) per segment: the actors that ran
            # side by side are those of one execution
            "executions": len(e.get("windows") or {}) or 1,
            "concurrent_actors": max(per_execution.values(), default=0) if e["pooled"] else 0,
            "actors_by_execution": dict(sorted(per_execution.items())) if e["pooled"] else {},
            "execution_windows": {k: [lo, hi] for k, (lo, hi) in sorted((e.get("windows") or {}).items())},
            "batches": e["batches"], "rows_in": e["rows"], "rows_out": e["rows"], "ok_in": e["ok_in"],
            "ok_out": e["ok_out"], "rejected": e["ok_in"] - e["ok_out"],
            "prompt_tokens": e["prompt_tokens"], "generated_tokens": e["generated_tokens"],
            "busy_s": round(e["busy_s"], 4), "span_s": round(span, 4), "load_s": round(load, 4),
            "first_batch_at": e["first_t0"], "last_batch_at": e["last_t1"],  # epoch seconds
            "load_max_s": round(max((i["load_s"] for i in instances), default=0.0), 4),
            # tasks: a worker process runs other work between them, so no lifetime or busy fraction
            "lifetime_s": round(lifetime, 4) if e["pooled"] else None,
            # actor -> its lifetime as far as this stage saw it (the stages of one chain share an actor)
            "actor_lifetimes": {k: round(max(0.0, i["last_t1"] - i["started"]), 4) for k, i in
                                sorted(e["instances"].items())} if e["pooled"] else {},
            "busy_fraction": round(min(1.0, e["busy_s"] / lifetime), 4) if e["pooled"] and lifetime > 0 else None,
            # per actor-second of stage work (one actor per accelerator: tokens/s per accelerator)
            "generated_tokens_per_s": _rate(e["generated_tokens"], e["busy_s"]),
            "prompt_tokens_per_s": _rate(e["prompt_tokens"], e["busy_s"]),
            "rows_per_s": _rate(e["rows"], e["busy_s"]),
            # the whole pool, over the stage's span
            "rows_per_s_span": _rate(e["rows"], span),
        })
        engines = [i["engine"] for i in instances if i.get("engine")]
        if engines:
            out[-1]["engine"] = engine_figures(engines)
    return out


def engine_figures(snapshots: list[dict]) -> dict:
    """How full a stage's vLLM engines were, from each engine's latest occupancy snapshot: the mean number of
    requests in an engine while it ran, against the target (max_in_flight), and the share of its running time
    below half the target; `*_before_drain` leaves out each engine's final drain (after its last admission, when
    nothing was left to admit)."""
    total = lambda key: sum(s[key] for s in snapshots)  # noqa: E731
    target = max(s["target"] for s in snapshots)
    busy, busy_before = total("busy_s"), total("busy_before_drain_s")
    mean = total("running_s") / busy if busy > 0 else None
    mean_before = total("running_before_drain_s") / busy_before if busy_before > 0 else None
    return {
        "engines": len(snapshots), "target": target, "busy_s": round(busy, 3),
        "mean_running": _round_or_none(mean, 2), "occupancy": _round_or_none(mean / target if mean else None, 4),
        "below_half_fraction": _round_or_none(total("below_half_s") / busy if busy > 0 else None, 4),
        "mean_running_before_drain": _round_or_none(mean_before, 2),
        "occupancy_before_drain": _round_or_none(mean_before / target if mean_before else None, 4),
        "below_half_fraction_before_drain": _round_or_none(total("below_half_before_drain_s") / busy_before
                                                           if busy_before > 0 else None, 4),
        "drain_s": round(busy - busy_before, 3),
    }


def throughput(entries: list[dict], seeds: int, rows_out: int, wall_s: float, gpus_per_actor: float,
               nodes: int, cost: dict) -> dict:
    """The run's bottleneck, accelerator- and node-hours, cost per 1k kept rows and the 1M-seed extrapolation.

    Accelerator-hours are the stage actors' lifetimes times the GPUs each reserves; node-hours are the run's
    wall time times the nodes. The extrapolation scales each stage's measured busy time per seed linearly to
    1M seeds over the same actors, takes the slowest stage of each round (stages stream concurrently) and adds
    the rounds; model loads, Ray start and actor start are not in it."""
    bottleneck = max(entries, key=lambda e: e["busy_s"] / max(_side_by_side(e) or e["tasks"] or 1, 1), default=None)
    lifetimes: dict[tuple, float] = {}  # (round, actor) -> lifetime, each actor once however many stages it ran
    for e in entries:
        for actor, seconds in (e.get("actor_lifetimes") or {}).items():
            lifetimes[(e["round"], actor)] = max(lifetimes.get((e["round"], actor), 0.0), seconds)
    accel_h = sum(lifetimes.values()) * gpus_per_actor / 3600
    node_h = wall_s * nodes / 3600
    gpu_price, cpu_price = cost.get("gpu_hour_usd"), cost.get("cpu_hour_usd")
    priced = gpu_price is not None or cpu_price is not None
    cost_usd = (accel_h * (gpu_price or 0.0) + (node_h * cpu_price if cpu_price is not None else 0.0)) if priced \
        else None
    per_round: dict[int, float] = {}
    for e in entries:
        parallel = max(_side_by_side(e) or 1, 1)
        seconds = e["busy_s"] / parallel * MILLION / seeds if seeds else 0.0
        per_round[e["round"]] = max(per_round.get(e["round"], 0.0), seconds)
    hours_1m = sum(per_round.values()) / 3600
    per_round_actors: dict[int, int] = {}
    for r, _ in lifetimes:
        per_round_actors[r] = per_round_actors.get(r, 0) + 1
    executions = {}  # a round of several segments started its pools once per segment
    for e in entries:
        executions[e["round"]] = max(executions.get(e["round"], 1), e.get("executions") or 1)
    # the pools' actors that ran side by side, each counted once
    actors = max((math.ceil(n / executions.get(r, 1)) for r, n in per_round_actors.items()), default=0)
    accel_1m = hours_1m * actors * gpus_per_actor
    cost_1m = None
    if priced:
        cost_1m = accel_1m * (gpu_price or 0.0) + (hours_1m * nodes * cpu_price if cpu_price is not None else 0.0)
    kept_1m = rows_out * MILLION / seeds if seeds else 0.0
    steady = steady_state_s(entries)
    generated = sum(e["generated_tokens"] for e in entries)
    accelerators = actors * gpus_per_actor
    return {
        "steady_state_s": round(steady, 3),
        "generated_tokens": generated,
        # over the steady state: per accelerator on GPUs (None on CPU), per node everywhere
        "generated_tokens_per_s_per_accelerator": _rate(generated, steady * accelerators) if accelerators else None,
        "generated_tokens_per_s_per_node": _rate(generated, steady * nodes),
        "kept_rows_per_hour": _rate(rows_out * 3600, steady),
        "bottleneck": ({"round": bottleneck["round"], "stage": bottleneck["stage"],
                        "busy_s_per_actor": round(bottleneck["busy_s"] / max(_side_by_side(bottleneck) or 1, 1), 3)}
                       if bottleneck else None),
        "load_s": round(sum(e["load_s"] for e in entries), 3),
        "busy_s": round(sum(e["busy_s"] for e in entries), 3),
        "accelerator_hours": round(accel_h, 6),
        "node_hours": round(node_h, 6),
        "nodes": nodes,
        "cost": {"gpu_hour_usd": gpu_price, "cpu_hour_usd": cpu_price,
                 "total_usd": _round_or_none(cost_usd),
                 "per_1k_kept_rows_usd": _round_or_none(cost_usd * 1000 / rows_out if cost_usd is not None
                                                        and rows_out else None)},
        "extrapolation_1m_seeds": {
            "label": "extrapolation: measured per-stage busy time per seed scaled linearly to 1M seeds over the "
                     "same actors; slowest stage per round, rounds added; excludes model loads and Ray start",
            "hours": round(hours_1m, 4), "accelerator_hours": round(accel_1m, 4),
            # the same seeds at this run's steady-state pace (per-batch overheads of the pipeline included)
            "hours_at_steady_rate": round(steady * MILLION / seeds / 3600, 4) if seeds else None,
            "rows_kept": round(kept_1m), "cost_usd": _round_or_none(cost_1m),
        },
    }


def steady_state_s(entries: list[dict]) -> float:
    """Seconds in which batches were being processed: per round and execution (a segment's), first batch start to
    last batch end over all its stages, added up (Ray start, actor start and the model loads before the first
    batch left out, also those of each later segment)."""
    windows: dict[tuple, tuple[float, float]] = {}
    for e in entries:
        spans = e.get("execution_windows") or ({"": (e["first_batch_at"], e["last_batch_at"])} if e["batches"]
                                               else {})
        for execution, (first, last) in spans.items():
            lo, hi = windows.get((e["round"], execution), (first, last))
            windows[(e["round"], execution)] = min(lo, first), max(hi, last)
    return sum(hi - lo for lo, hi in windows.values())


def _side_by_side(entry: dict) -> int:
    """A stage's actors that worked at the same time: one execution's (older summaries: all of them)."""
    return entry.get("concurrent_actors", entry["actors"]) or 0


def _round_or_none(value: float | None, digits: int = 6) -> float | None:
    return round(value, digits) if value is not None and math.isfinite(value) else None


def progress_line(round_num: int, stage: str, done: int, expected: int, elapsed_s: float,
                  engines: list[dict] | None = None) -> str:
    """One live progress line: rows done of the round's, rows/s since the round began, and the ETA at that
    rate (retried batches count again, so done is capped at the expected rows); for a vLLM stage, how full its
    engines have been so far (`engines`: their latest occupancy snapshots)."""
    done = min(done, expected) if expected else done
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    share = f" ({100 * done / expected:.0f}%)" if expected else ""
    eta = f"ETA {(expected - done) / rate:.0f} s" if rate > 0 and expected else "ETA unknown"
    line = f"round {round_num} {stage}: {done}/{expected} rows{share}, {rate:.2f} rows/s, {eta}"
    if engines:
        figures = engine_figures(engines)
        if figures["mean_running"] is not None:
            line += f", engine {figures['mean_running']:.1f}/{figures['target']} requests in flight"
    return line
