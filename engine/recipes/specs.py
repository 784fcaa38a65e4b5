"""Every stage's spec, built from the Config: the one place where a stage's settings and resources are read out
of it (stages never see the Config). Recipes list these; tests and benchmarks build single stages with them
(`specs.evolve(cfg, 1).build()`)."""

from __future__ import annotations

from typing import Optional

from engine.config import Config
from engine.recipes.resources import resources_for
from engine.recipes.spec import StageSpec
from engine.stages.analysis.diversity import Embed, EmbedArgs
from engine.stages.analysis.keywords import KeywordsArgs, TrajectoryKeywords
from engine.stages.autoif.augment import AugmentArgs, AugmentGen, seed_constraints
from engine.stages.autoif.verify import CrossValidate, CrossValidateArgs, VerifyArgs, VerifyGen
from engine.stages.curation.given import GivenArgs, GivenOutputs
from engine.stages.generation.auto_evolve import AutoEvolve, AutoEvolveArgs
from engine.stages.generation.eliminate import Eliminate
from engine.stages.generation.evolve import Evolve, EvolveArgs
from engine.stages.generation.optimize import MethodOptimizer, OptimizerArgs
from engine.stages.generation.respond import Respond, RespondArgs
from engine.stages.scoring.score import Score, ScoreArgs


def evolve(cfg: Config, round_num: int) -> StageSpec:
    """Evol-Instruct's rewrite with methods[(i + r) % K]."""
    args = EvolveArgs(model=cfg.model, round_num=round_num, sampling=cfg.recipe.evolve, breadth=cfg.recipe.breadth,
                      stray_quote=cfg.recipe.fidelity.breadth_stray_quote, run_seed=cfg.run.seed,
                      output_space=cfg.recipe.output_space)
    return StageSpec(Evolve, args, resources_for(cfg, "evolve"))


def auto_evolve(cfg: Config, round_num: int, method: Optional[str] = None) -> StageSpec:
    """Auto Evol-Instruct's 4-step rewrite; `method` is the optimizer's choice (None: auto_evol.method, else
    the paper's universal prompt)."""
    args = AutoEvolveArgs(model=cfg.model, round_num=round_num, sampling=cfg.recipe.evolve,
                          parse_mode=cfg.recipe.fidelity.auto_evol_parse, method=method or cfg.auto_evol.method,
                          run_seed=cfg.run.seed, output_space=cfg.recipe.output_space,
                          structured=cfg.auto_evol.structured)
    return StageSpec(AutoEvolve, args, resources_for(cfg, "evolve"))


def keywords(cfg: Config) -> StageSpec:
    args = KeywordsArgs(model=cfg.model, max_new_tokens=cfg.auto_evol.keyword_tokens)
    return StageSpec(TrajectoryKeywords, args, resources_for(cfg, "keywords"))


def optimizer(cfg: Config) -> StageSpec:
    """The Auto Evol-Instruct optimizer loop (run once, in one actor)."""
    opt = cfg.auto_evol
    args = OptimizerArgs(model=cfg.model, evolve=cfg.recipe.evolve, optimizer=opt.optimizer,
                         optimizer_model=opt.optimizer_model, steps=opt.steps, candidates=opt.candidates,
                         parse_mode=cfg.recipe.fidelity.auto_evol_parse, run_seed=cfg.run.seed)
    return StageSpec(MethodOptimizer, args, resources_for(cfg, "optimize"))


def eliminate(cfg: Config, key: str = "evolve") -> StageSpec:
    """The elimination filter; it runs in the actors of the stage before it (`key`'s resources)."""
    return StageSpec(Eliminate, None, resources_for(cfg, key))


def respond(cfg: Config, round_num: int, prompt: str = "alpaca", only_missing: bool = False) -> StageSpec:
    """Responses by the evolver's model; `prompt` alpaca (the seed's response prompt) or autoif (a query
    answered under a constraint); `only_missing`: rows with an output keep it (recipe=curate)."""
    args = RespondArgs(model=cfg.model, round_num=round_num, sampling=cfg.recipe.respond, prompt=prompt,
                       run_seed=cfg.run.seed, only_missing=only_missing)
    return StageSpec(Respond, args, resources_for(cfg, "respond"))


def score(cfg: Config, round_num: int) -> Optional[StageSpec]:
    """IFD / IC-IFD by the scorer model, or None when scoring is off."""
    if not cfg.scoring.enabled:
        return None
    return StageSpec(Score, ScoreArgs(model=cfg.scorer, round_num=round_num, scoring=cfg.scoring),
                     resources_for(cfg, "score"))


def given_outputs(cfg: Config) -> StageSpec:
    """recipe=curate's first stage: the given answers kept aside (and required when curate.respond=never); cheap,
    it runs in the actors of the stage after it."""
    return StageSpec(GivenOutputs, GivenArgs(respond=cfg.curate.respond), resources_for(cfg, "respond"))


def embed(cfg: Config) -> StageSpec:
    """Sentence embeddings of ok rows by analysis.embedder (select.min_distance's prepare step)."""
    return StageSpec(Embed, EmbedArgs(embedder=cfg.analysis.embedder), resources_for(cfg, "embed"))


def augment(cfg: Config, round_num: int = 1) -> StageSpec:
    """AutoIF phase 1: the augmentation prompt listing every seed constraint."""
    auto = cfg.autoif
    args = AugmentArgs(model=cfg.model, sampling=auto.generate, constraints=tuple(seed_constraints(auto)),
                       run_seed=cfg.run.seed, round_num=round_num)
    return StageSpec(AugmentGen, args, resources_for(cfg, "augment"))


def verify(cfg: Config, round_num: int = 2) -> StageSpec:
    """AutoIF phase 2: verification functions and cases, several generations per constraint."""
    auto = cfg.autoif
    args = VerifyArgs(model=cfg.model, sampling=auto.generate, samples=auto.samples_per_instruction,
                      run_seed=cfg.run.seed, round_num=round_num, structured=auto.structured)
    return StageSpec(VerifyGen, args, resources_for(cfg, "verify"))


def cross_validate(cfg: Config) -> StageSpec:
    """AutoIF phase 2: run the functions on the cases in the sandbox; keep what survives."""
    auto = cfg.autoif
    args = CrossValidateArgs(sandbox=auto.sandbox, json_mode=auto.json_mode, normalise_expected=auto.normalise_expected,
                             min_func_acc=auto.min_func_acc, min_funcs=auto.min_funcs, min_cases=auto.min_cases)
    return StageSpec(CrossValidate, args, resources_for(cfg, "verify"))
