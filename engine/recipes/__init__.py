"""Recipes: each scenario of the paper declared as a Recipe (engine/recipes/base.py), read top to bottom."""

from __future__ import annotations

from engine.config import Config, ConfigError
from engine.recipes.base import Recipe
from engine.recipes.spec import StageSpec

__all__ = ["RECIPES", "Recipe", "StageSpec", "get_recipe"]

RECIPES = ("evol_instruct", "autoif", "auto_evol", "curate")


def get_recipe(cfg: Config) -> Recipe:
    """The recipe `recipe.name` names, built from the Config."""
    name = cfg.recipe.name
    if name == "evol_instruct":
        from engine.recipes.evol_instruct import EvolInstruct

        return EvolInstruct(cfg)
    if name == "autoif":
        from engine.recipes.autoif import AutoIF

        return AutoIF(cfg)
    if name == "auto_evol":
        from engine.recipes.auto_evol import AutoEvol

        return AutoEvol(cfg)
    if name == "curate":
        from engine.recipes.curate import Curate

        return Curate(cfg)
    raise ConfigError(f"recipe.name={name!r} is not a recipe; available: {', '.join(RECIPES)}")
