"""A stage's resources from the Config: stages.<key>.* where set, else the cluster.* defaults."""

from __future__ import annotations

from engine.config import Config, ConfigError, StageResourcesConfig
from engine.stages.spec import Resources


def resources_for(cfg: Config, key: str | None) -> Resources:
    """The Resources of the stage role `key` (a field of StagesConfig: evolve, respond, score, ...); None: the
    cluster.* defaults (a cheap step of its own, such as the selection cut)."""
    own = StageResourcesConfig() if key is None else getattr(cfg.stages, key, None)
    if own is None:
        raise ConfigError(f"stages.{key}: no such stage key; see StagesConfig in engine/config.py")
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
