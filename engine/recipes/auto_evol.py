"""Auto Evol-Instruct (paper Sec. 2.3), top to bottom: an optional set-up step (`auto_evol.optimize=true`: the
optimizer loop of Zeng et al. 2024 chooses the evolving method once, in an actor), then each round
auto-evolves with the universal 4-step prompt (or the chosen method) -> trajectory keywords (optional) ->
eliminate -> respond -> score; rounds chain; the selection cut after the final round, as Evol-Instruct."""

from __future__ import annotations

import json

from engine.config import ConfigError
from engine.prompts.auto_evol import four_step_budget
from engine.recipes import specs
from engine.recipes.base import Recipe, SetupTools
from engine.recipes.spec import StageSpec

METHOD = "auto_evol_method"  # the decision the set-up step hands the stages


class AutoEvol(Recipe):
    name = "auto_evol"

    def __init__(self, cfg):
        super().__init__(cfg)
        if cfg.auto_evol.structured:
            try:
                four_step_budget(cfg.recipe.evolve.max_new_tokens)
            except ValueError as err:
                raise ConfigError(f"auto_evol.structured: {err}; raise recipe.evolve.max_new_tokens") from None

    def setup(self, tools: SetupTools) -> dict:
        """With `auto_evol.optimize`, run the optimizer loop on the first seed rows and evolve with the method it
        chose; its log and choice are saved under optimizer/. Without it: the configured method (or the paper's)."""
        opt = self.cfg.auto_evol
        if not opt.optimize:
            return {}
        storage = tools.layout.store
        chosen = tools.layout.optimizer / "chosen_method.txt"
        if storage.exists(chosen):  # a run directory from before the choice was journaled in the manifest
            return {METHOD: storage.read_text(chosen)}
        rows = tools.first_instructions(opt.train_rows + opt.dev_rows)
        if len(rows) < opt.train_rows + opt.dev_rows:
            raise ConfigError(f"auto_evol.optimize needs {opt.train_rows + opt.dev_rows} seed rows "
                              f"(train_rows + dev_rows); the seeds hold {len(rows)} valid ones")
        train, dev = rows[: opt.train_rows], rows[opt.train_rows:]
        method, steps = tools.call_in_actor(specs.optimizer(self.cfg), "run", train, dev)
        steps_text = "".join(json.dumps(step, ensure_ascii=False) + "\n" for step in steps)
        storage.write_text(tools.layout.optimizer / "steps.jsonl", steps_text)
        storage.write_text(chosen, method)
        return {METHOD: method}

    def summary_section(self, per_round: list[dict]) -> dict:
        return {"structured": self.cfg.auto_evol.structured, "rounds": [parse_share(r) for r in per_round]}

    def stages(self, round_num: int, decisions: dict) -> list[StageSpec]:
        steps = [specs.auto_evolve(self.cfg, round_num, decisions.get(METHOD))]
        if self.cfg.auto_evol.keywords:
            steps.append(specs.keywords(self.cfg))
        steps += [specs.eliminate(self.cfg), specs.respond(self.cfg, round_num), specs.score(self.cfg, round_num)]
        return [step for step in steps if step is not None]


def parse_share(counts: dict) -> dict:
    """One round's 4-step answers and the share that had no final instruction (`unparsable`, rejected): answers
    are the rows the evolver answered (not rejected at read, no generation error)."""
    stages = counts["rejected_by_stage"]
    answers = counts["rows_in"] - stages.get("read", 0) - stages.get("evolve", 0)
    unparsable = counts["rejected_by_reason"].get("unparsable", 0)
    return {"round": counts["round"], "answers": answers, "unparsable": unparsable,
            "unparsable_share": round(unparsable / answers, 4) if answers else None}
