"""A stage's resources from the Config: stages.<key>.* where set, else the cluster.* defaults."""

from __future__ import annotations

import math

from engine.backends.vllm_config import default_max_in_flight, installed_platform
from engine.config import Config, ConfigError, StageResourcesConfig
from engine.recipes.spec import Resources, StageSpec

BACKLOG = 2  # rows a vLLM stage actor holds, in units of its engine's max_in_flight (concurrent_calls)
FUSE_SETTINGS = {"true": True, "on": True, "false": False, "off": False, "auto": None}


def resources_for(cfg: Config, key: str | None) -> Resources:
    """The Resources of the stage role `key` (a field of StagesConfig: evolve, respond, score, ...); None: the
    cluster.* defaults (a cheap step of its own, such as the selection cut)."""
    own = StageResourcesConfig() if key is None else getattr(cfg.stages, key, None)
    if own is None:
        raise ConfigError(f"stages.{key}: no such stage key; see StagesConfig in engine/config/schema.py")
    cluster = cfg.cluster
    pick = lambda mine, default: default if mine is None else mine  # noqa: E731
    custom = own.resources or cluster.actor_resources or {}
    return Resources(
        pool_size=int(pick(own.pool_size, cluster.pool_size)),
        batch_size=int(pick(own.batch_size, cluster.batch_size)),
        num_cpus=float(pick(own.num_cpus, cluster.actor_num_cpus)),
        num_gpus=float(pick(own.num_gpus, cluster.actor_num_gpus)),
        memory_gb=pick(own.memory_gb, cluster.actor_memory_gb),
        resources=tuple(sorted((str(k), float(v)) for k, v in dict(custom).items())),
        torch_threads=pick(own.torch_threads, cluster.torch_threads),
    )


def fuses(setting, specs: list[StageSpec]) -> bool:
    """Whether one actor pool runs every stage of `specs` (cluster.fuse_stages): true, false, or auto (the
    default): fused when no model stage reserves a GPU or runs on vLLM and every model stage asks for the same
    resources. On CPUs the pools would share the node's cores anyway: fused, one actor runs each batch through
    every stage with all the cores and loads each model once, where a pool per stage has three models' threads
    competing for the cores (benchmarks/pipeline_overhead.py). On GPUs each model stage keeps its own pool and
    devices; a vLLM stage keeps its own engine in its own actor."""
    key = str(setting).strip().lower()
    if key not in FUSE_SETTINGS:
        raise ConfigError(f"cluster.fuse_stages={setting!r}: use auto, true or false")
    if FUSE_SETTINGS[key] is not None:
        return FUSE_SETTINGS[key]
    models = [spec for spec in specs if spec.uses_model]
    if not models or any(backend_of(spec) == "vllm" for spec in models):
        return False  # a vLLM engine per stage actor: two engines in one process are not a tested setup
    first = models[0].resources
    return all(spec.resources.num_gpus == 0 and spec.resources == first for spec in models)


def backend_of(spec: StageSpec) -> str | None:
    """The backend (hf, vllm, echo) of a model stage's model, when its settings name one."""
    model = getattr(spec.args, "model", None)
    return getattr(model, "backend", None)


def concurrent_calls(group: list[StageSpec]) -> int:
    """Batches one actor of `group` runs at once: 1, unless every model stage in it runs on vLLM; then enough
    batches to hold twice max_in_flight requests, plus one (backends/feeder.py admits max_in_flight of them into
    the engine). Twice, because a batch returns only when its longest row ends: with long generations a few
    batches wait on a straggler each, and the rows behind them keep the engine full (measured: 76% full before
    the final drain with exactly max_in_flight rows behind the engine at 256 new tokens)."""
    models = [spec for spec in group if spec.uses_model]
    if not models or any(backend_of(spec) != "vllm" for spec in models):
        return 1
    platform = installed_platform()
    batch = max(1, group_resources(group).batch_size)
    return max(math.ceil(BACKLOG * default_max_in_flight(spec.args.model, platform) / batch) + 1 for spec in models)


def group_stages(specs: list[StageSpec], fuse: bool = False) -> list[list[StageSpec]]:
    """Each model stage with the cheap stages that follow it (they run in its actors, with its resources);
    leading cheap stages alone. `fuse` (cluster.fuse_stages): every stage in one group, so one actor pool runs
    them all and loads each model once per actor instead of once per pool."""
    if fuse and any(spec.uses_model for spec in specs):
        return [list(specs)]
    groups: list[list[StageSpec]] = []
    for spec in specs:
        if spec.uses_model or not groups:
            groups.append([spec])
        else:
            groups[-1].append(spec)
    return groups


def group_resources(group: list[StageSpec]) -> Resources:
    """A group runs with its model stage's resources (the first that loads a model; else the first stage's).
    Fused, the widest reservation of its model stages, so every model fits in each actor."""
    models = [spec.resources for spec in group if spec.uses_model] or [group[0].resources]
    first = models[0]
    return Resources(pool_size=first.pool_size, batch_size=first.batch_size,
                     num_cpus=max(r.num_cpus for r in models), num_gpus=max(r.num_gpus for r in models),
                     memory_gb=max((r.memory_gb or 0 for r in models), default=0) or None,
                     resources=first.resources, torch_threads=first.torch_threads)
