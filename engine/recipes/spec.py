"""What a recipe hands the executor for one stage: the stage class, its own typed settings and its resources.

A stage is built as `stage(args, torch_threads=...)`, where `args` is the frozen settings dataclass defined
beside the stage (EvolveArgs, ScoreArgs, ...): exactly what it uses, never the whole Config. `resources` is
where and how wide it runs: its actor pool, batch and reservations, so a 72B TP=4 evolver and a 1B scorer are
two specs with different resources in one run. Nothing here imports ray; engine/run/runner.py turns specs into
map_batches calls."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, Optional, Protocol, TypeVar

ArgsT = TypeVar("ArgsT")
ArgsT_contra = TypeVar("ArgsT_contra", contravariant=True)


class StageClass(Protocol[ArgsT_contra]):
    """A stage class as a spec names it: built from its own args type, once per actor (a batch stage, or the
    set-up step's optimizer, whose methods the executor calls). `uses_model` says it loads a model (it gets its
    own pool, or leads a fused one)."""

    uses_model: bool

    def __call__(self, args: ArgsT_contra, /, torch_threads: Optional[int] = None) -> Any: ...


@dataclass(frozen=True)
class Resources:
    """How one stage runs on the cluster (Hydra: cluster.* as defaults, stages.<key>.* per stage)."""

    pool_size: int = 1  # actors in the stage's pool (model stages)
    batch_size: int = 16  # rows per call
    num_cpus: float = 0.25  # CPUs each actor or task reserves
    num_gpus: float = 0.0  # GPUs each actor reserves
    memory_gb: Optional[float] = None  # heap memory each actor reserves, so Ray does not overpack a node
    resources: tuple[tuple[str, float], ...] = ()  # custom Ray resources each actor needs (placement)
    torch_threads: Optional[int] = None  # torch threads per actor (None: all cores of the node)

    def ray_options(self) -> dict:
        """The map_batches / actor keywords of these resources (named parameters only)."""
        options: dict[str, Any] = {"num_cpus": self.num_cpus}
        if self.num_gpus:
            options["num_gpus"] = self.num_gpus
        if self.memory_gb:
            options["memory"] = int(self.memory_gb * 1024**3)
        if self.resources:
            options["resources"] = dict(self.resources)
        return options


@dataclass(frozen=True)
class StageSpec(Generic[ArgsT]):
    """One step of a recipe: the stage class, its settings and its resources. Generic over the args type, so a
    type checker holds `StageSpec(Evolve, ScoreArgs(...))` wrong: a stage gets the args it was written for."""

    stage: StageClass[ArgsT]
    args: ArgsT = None  # type: ignore[assignment]  # the stage's own frozen settings (None: a stage that takes none)
    resources: Resources = field(default_factory=Resources)

    @property
    def name(self) -> str:
        return self.stage.__name__  # type: ignore[attr-defined]  # a class: every class has one

    @property
    def uses_model(self) -> bool:
        return self.stage.uses_model

    def build(self, torch_threads: Optional[int] = None) -> Any:
        """The stage object (in the process or actor that runs it)."""
        return self.stage(self.args, torch_threads=torch_threads)
