"""Issue #25: recipe=autoif runs on the embedded models, composed from their shipped configs (conf/model/*.yaml),
through a local Ray. Before, every augmentation call was rejected as `generation_error` ("prompt of 1213 tokens
+ 2048 new exceeds max_model_len=2048") and the run exited 3. A few calls, short budgets: the default budgets'
fit is checked without a model in tests/unit/test_model_context.py."""

import pytest
from transformers import AutoTokenizer

from engine.backends.chat import chat_prompt_ids
from engine.backends.embedded import resolve_model_path
from engine.config import compose
from engine.prompts.autoif import augment_prompt
from engine.run.runner import run
from engine.stages.autoif.augment import seed_constraints

CALLS = 2


def autoif_config(name: str, tmp_path, *overrides: str):
    """recipe=autoif on the embedded model `name` as the CLI composes it: three seed constraints, two augmentation
    calls, one verification per constraint and one query per verified constraint."""
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("\n".join(seed_constraints(compose([]).autoif)[:3]) + "\n")
    cfg = compose(["recipe=autoif", f"model={name}", f"scorer={name}", f"autoif.augment_calls={CALLS}",
                   f"autoif.seeds_path={seeds}", "autoif.samples_per_instruction=1", "autoif.queries_per_instruction=1",
                   "autoif.sandbox.wall_s=2.0", "recipe.respond.max_new_tokens=32", "run.progress=off", *overrides])
    cfg.run.output_dir = str(tmp_path / "out")
    return cfg


def augment_stage(summary: dict) -> dict:
    (stage,) = [s for s in summary["stages"] if s["stage"] == "AugmentGen"]
    return stage


def assert_augmentation_made_rows(summary: dict) -> None:
    phase1 = summary["per_round"][0]
    assert (phase1["rows_in"], phase1["rows_out"], phase1["rows_rejected"]) == (CALLS, CALLS, 0)
    assert "generation_error" not in summary["rejected_by_reason"]
    assert augment_stage(summary)["generated_tokens"] > 0
    assert summary["autoif"]["augment_lines"] > 0  # the generations were split into constraint lines for phase 2
    assert summary["per_round"][1]["rows_in"] == 3 + summary["autoif"]["augment_lines"]
    assert summary["rows_conserved"]


@pytest.mark.slow
@pytest.mark.parametrize("name, max_new_tokens", [("tiny", 48), ("smollm2-135m", 40)])
def test_autoif_runs_on_the_embedded_models(local_ray, tmp_path, name, max_new_tokens):
    cfg = autoif_config(name, tmp_path, f"autoif.generate.max_new_tokens={max_new_tokens}")
    assert cfg.model.max_model_len == 8192  # the model's own positions, not 2048
    summary = run(cfg)
    assert_augmentation_made_rows(summary)
    assert summary["per_round"][1]["counts"]["cv_generations"] == summary["autoif"]["instructions_in"]


@pytest.mark.slow
def test_a_budget_beyond_the_context_is_capped_to_the_room_not_rejected(local_ray, tmp_path):
    """The default 2048 new tokens on a context that leaves 40 after the augmentation prompt: each call generates
    at most those 40 (vLLM's rule, on HF too), where each was rejected before."""
    probe = autoif_config("tiny", tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(probe.model))
    prompt = len(chat_prompt_ids(tokenizer, augment_prompt(seed_constraints(probe.autoif)), False))
    cfg = autoif_config("tiny", tmp_path, f"model.max_model_len={prompt + 40}")
    assert cfg.autoif.generate.max_new_tokens == 2048
    summary = run(cfg)
    assert_augmentation_made_rows(summary)
    assert 0 < augment_stage(summary)["generated_tokens"] <= CALLS * 40


@pytest.mark.slow
def test_structured_verification_parses_every_answer_through_the_pipeline(local_ray, tmp_path):
    """autoif.structured=true end to end on Ray with the random tiny model: every verification answer parses (the
    grammar's work; free text from random weights never does), and the funnel says so."""
    cfg = autoif_config("tiny", tmp_path, "autoif.generate.max_new_tokens=160", "autoif.structured=true")
    summary = run(cfg)
    assert_augmentation_made_rows(summary)
    generations = summary["per_round"][1]["counts"]["cv_generations"]
    assert summary["autoif"]["structured"] is True
    assert generations == summary["autoif"]["instructions_in"] > 0
    assert summary["autoif"]["generations_parsed"] == generations
