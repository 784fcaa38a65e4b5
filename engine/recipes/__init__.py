"""Recipes: ordered stage lists, read top to bottom."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StageSpec:
    """One step of a recipe: the stage class and the extra constructor arguments it takes."""

    stage: type
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.stage.__name__

    @property
    def uses_model(self) -> bool:
        return bool(getattr(self.stage, "uses_model", False))


def get_recipe(name: str):
    """The recipe module for `recipe.name`."""
    if name == "evol_instruct":
        from engine.recipes import evol_instruct

        return evol_instruct
    if name == "autoif":
        from engine.recipes import autoif

        return autoif
    if name == "auto_evol":
        from engine.recipes import auto_evol

        return auto_evol
    from engine.config import ConfigError

    raise ConfigError(f"recipe.name={name!r} is not a recipe; available: evol_instruct, autoif, auto_evol")
