"""The Recipe protocol: what a recipe declares, and what the pipeline (engine/run/pipeline.py) asks it for.

A recipe never runs anything. It says how many rounds it has, where each round's rows come from, the stages
of each round in order (StageSpecs: stage, typed args, resources), the whole-round steps after it (by default
the selection cut of engine/recipes/steps.py), and an optional set-up step before round 1 (the Auto
Evol-Instruct optimizer). Every method has one caller,
the pipeline, and a default here, so the pipeline never probes a recipe for what it has."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from engine.config import Config
from engine.recipes import specs
from engine.recipes.resources import resources_for
from engine.recipes.spec import StageSpec
from engine.recipes.steps import Deduplicate, SelectTop, WholeRoundStep
from engine.stages.curation.dedup import dedup_active
from engine.stages.scoring.select import selection_active
from engine.state.layout import RunLayout


@dataclass(frozen=True)
class RoundInput:
    """Rows a recipe builds on the driver for a round (small by construction), and counts for the summary."""

    batch: dict[str, np.ndarray]
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Expansion:
    """A one-to-many step run before a round's stages: `fn(batch, **kwargs)` returns more rows than it got.
    Such a round cannot be resumed shard by shard (outputs do not map back to inputs): it restarts."""

    fn: Callable[..., dict]
    kwargs: dict[str, Any]


@dataclass(frozen=True)
class SetupTools:
    """What a set-up step may use: the first valid seed instructions, a way to run one stage method in an
    actor (with that stage's resources), and the run folder."""

    first_instructions: Callable[[int], list[str]]
    call_in_actor: Callable[..., Any]  # (spec: StageSpec, method: str, *args) -> result
    layout: RunLayout


def select_step(cfg: Config) -> SelectTop:
    """The selection cut (select.*), embedding the rows first when select.min_distance is set."""
    embed = specs.embed(cfg) if cfg.select.min_distance is not None else None
    return SelectTop(cfg.select, resources_for(cfg, None), embed)


def dedup_step(cfg: Config) -> Deduplicate:
    """Deduplication over every row of a round (dedup.*)."""
    return Deduplicate(cfg.dedup, resources_for(cfg, None))


class Recipe(ABC):
    """One scenario of the paper, declared. Subclasses set `name` and implement `stages`."""

    name: str = ""
    # True: each round's kept rows are the next round's input (Evol-Instruct), so rows are conserved over the
    # whole run; False: each phase builds its own input (AutoIF), so rows are conserved phase by phase.
    chained: bool = True
    # Whether dedup.* runs when dedup.enabled is unset (null): off for the paper's recipes, whose rows are new.
    dedup_default: bool = False

    def __init__(self, cfg: Config):
        self.cfg = cfg

    def num_rounds(self) -> int:
        """How many rounds (or phases) the recipe runs."""
        return self.cfg.rounds

    def setup(self, tools: SetupTools) -> dict:
        """One-off work before round 1; returns decisions that the pipeline journals in the manifest and hands to
        `stages` (a resumed run gets the journaled ones back without calling this). Default: none."""
        return {}

    def round_input(self, round_num: int, layout: RunLayout) -> Optional[RoundInput]:
        """Rows the driver builds for the round, or None: round 1 reads the seeds, later rounds the previous
        round's kept rows."""
        return None

    def expansion(self, round_num: int) -> Optional[Expansion]:
        """A one-to-many step before the round's stages, or None."""
        return None

    @abstractmethod
    def stages(self, round_num: int, decisions: dict) -> list[StageSpec]:
        """The round's stages, in order; `decisions` are the set-up step's."""

    def after_round(self, round_num: int, final: bool) -> list[WholeRoundStep]:
        """Whole-round steps after the round's stages. Default: after the final round, deduplication when dedup.*
        (or the recipe's default) asks for it, then the selection cut when select.* asks for one (a recipe whose
        rows carry no scores refuses select.* when it is built), embedding the rows first when select.min_distance
        is set."""
        steps: list[WholeRoundStep] = []
        if final and dedup_active(self.cfg.dedup, self.dedup_default):
            steps.append(dedup_step(self.cfg))
        if final and selection_active(self.cfg.select):
            steps.append(select_step(self.cfg))
        return steps

    def summary_section(self, per_round: list[dict]) -> Optional[dict]:
        """The recipe's own section of summary.json (under its name), or None."""
        return None
