"""summary.json of a run: rows conserved overall and per round, the recipe's own figures, and the per-stage
accounting (engine/run/accounting.py). Ray-free: built from the rounds' counts."""

from __future__ import annotations

from pathlib import Path

from engine.config import Config
from engine.measure import output_space
from engine.recipes.base import Recipe
from engine.recipes.resources import fuses, group_resources, group_stages
from engine.run import accounting
from engine.run.counts import RoundCounts
from engine.state.layout import RunLayout


def build_summary(cfg: Config, recipe: Recipe, rounds: list[RoundCounts], files: list[Path], skipped: list[Path],
                  wall: float, config_digest: str, nodes: int = 1, decisions: dict | None = None,
                  recommitted: int = 0) -> dict:
    """The run summary. `config_digest` is the manifest's hash of the config as given; `decisions` are what the
    recipe's set-up step chose (the optimized Auto Evol-Instruct method), recorded beside it, never hashed."""
    rows_in = rounds[0].rows_in if rounds else 0
    rows_out = rounds[-1].rows_out if rounds else 0
    rejected = sum(r.rows_rejected for r in rounds)
    total = RoundCounts(round=0)
    for r in rounds:
        total.merge(r)
    totals = total.as_dict()
    summary = {
        "recipe": cfg.recipe.name,
        "model": cfg.model.name,
        "config_hash": config_digest,
        "rounds_requested": recipe.num_rounds(),
        "rounds_completed": len(rounds),
        "rows_in": rows_in,
        "rows_out": rows_out,
        "rows_rejected": rejected,
        # Chained recipes (Evol-Instruct) pass rows round to round; phased ones (AutoIF) build each phase's input.
        "rows_conserved": rows_in == rows_out + rejected if recipe.chained
        else all(r.rows_in == r.rows_out + r.rows_rejected for r in rounds),
        **{key: totals[key] for key in ("rejected_by_reason", "rejected_by_method", "rejected_by_model",
                                        "per_method")},
        "per_round": [r.as_dict() for r in rounds],
        "tokens": totals["tokens"],
        "counts": totals["counts"],
        "resumed": {"shards_reused": sum(r.reused_shards for r in rounds),
                    "rows_reused": sum(r.reused_rows for r in rounds)},
        "scores": rounds[-1].score_means() if rounds else {},
        "output_space": output_space.histogram_summary(total.output_space),
        "selection": rounds[-1].selection if rounds else None,
        "dedup": rounds[-1].steps.get("dedup") if rounds else None,  # what deduplication dropped (None: off)
        "wall_time_s": round(wall, 3),
        "input_files": [str(f) for f in files],
        "skipped_files": [str(f) for f in skipped],
        "outputs": RunLayout(Path(cfg.run.output_dir)).summary_outputs([r.round for r in rounds]),
    }
    if decisions:
        summary["setup"] = decisions
    own = recipe.summary_section([r.as_dict() for r in rounds])
    if own is not None:
        summary[cfg.recipe.name] = own
    # Per-stage accounting from the actors' own timings, and what the run (and a million seeds) costs.
    summary["stages"] = [entry for r in rounds for entry in accounting.stage_figures(r.round, r.stages)]
    # each round's stages grouped into actor pools as the executor groups them (cluster.fuse_stages, auto: fused
    # on CPUs), each stage with its group's pool size
    pools, summary["stage_pools"] = {}, {}
    for r in rounds:
        specs = recipe.stages(r.round, decisions or {})
        fused = fuses(cfg.cluster.fuse_stages, specs)
        summary["stage_pools"][str(r.round)] = "fused" if fused else "per model stage"
        for group in group_stages(specs, fused):
            pools.update({(r.round, spec.name): group_resources(group).pool_size for spec in group})
    summary["retried"] = retried(summary["stages"], pools, recommitted)
    cost = {"gpu_hour_usd": cfg.run.cost.gpu_hour_usd, "cpu_hour_usd": cfg.run.cost.cpu_hour_usd}
    # GPUs each stage actor reserves: the widest model stage's (the summary's accelerator-hours use one figure)
    gpus = max((spec.resources.num_gpus for spec in recipe.stages(1, decisions or {})), default=0.0)
    summary["throughput"] = accounting.throughput(summary["stages"], rows_in, rows_out, wall, gpus, nodes, cost)
    return summary


def retried(stages: list[dict], pools: dict[tuple[int, str], int], recommitted: int) -> dict:
    """What Ray redid inside the run (a rerun's reuse is summary["resumed"]): stage actors beyond each pool's size
    that ran batches in one execution (restarted after a crash or a lost node, each with a new instance), and
    shard commits journaled twice. An actor replaced before it ran a batch leaves no trace: lower bounds."""
    replaced = {}
    for e in stages:
        pool = pools.get((e["round"], e["stage"]))
        if e["kind"] != "actor_pool" or not pool:
            continue
        # each execution (a segment, or a rerun's) starts a pool of its own: count the extra ones per execution
        extra = sum(max(0, n - pool) for n in (e.get("actors_by_execution") or {"": e["actors"]}).values())
        if extra:
            replaced[f"round {e['round']} {e['stage']}"] = extra
    return {"stage_actors_replaced": replaced, "shards_committed_again": recommitted}
