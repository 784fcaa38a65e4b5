"""The reward stage on a locally built sequence-classification model (the tiny Llama with a one-label head)."""

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from engine.backends.embedded import resolve_model_path
from engine.config import ModelConfig
from engine.recipes.spec import StageSpec
from engine.run.chain import GuardedStage
from engine.stages.analysis.reward import Reward, RewardArgs, meta_prompt


@pytest.fixture(scope="module")
def reward_model(tmp_path_factory):
    tiny = resolve_model_path(ModelConfig(name="tiny", embedded="tiny"))
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny, num_labels=1)
    target = tmp_path_factory.mktemp("rm")
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(tiny).save_pretrained(target)
    return str(target)


def _rows():
    return {
        "id": np.array(["s1.r1", "s2.r1", "s3", "s4.r1"], dtype=object),
        "instruction": np.array(["List three fruits.", "Explain gravity to a child.", "Seed row", "x"], dtype=object),
        "parent_instruction": np.array(["Name fruits.", "Explain gravity.", "", "y"], dtype=object),
        "method": np.array(["constraints", "breadth", "", "deepen"], dtype=object),
        "status": np.array(["ok", "ok", "ok", "rejected"], dtype=object),
    }


def test_reward_scores_evolved_rows_only(reward_model):
    stage = Reward(RewardArgs(path=reward_model, batch_size=1), torch_threads=2)
    out = stage(_rows())
    assert np.isfinite(out["reward"][:2]).all()
    assert np.isnan(out["reward"][2:]).all()  # a seed row has no evolution step; a rejected row is skipped
    assert out["reward_tokens"][0] > 0 and out["reward_tokens"][2] == 0
    # Batching with padding gives the same scores as one row at a time.
    stage.batch_size = 4
    again = stage(_rows())
    assert np.allclose(again["reward"][:2], out["reward"][:2], atol=1e-4)
    # The score depends on the parent: the meta-prompt is rebuilt from it, not from the evolved text.
    changed = _rows()
    changed["parent_instruction"][0] = "Something else entirely."
    assert stage(changed)["reward"][0] != pytest.approx(out["reward"][0], abs=1e-6)


def test_reward_model_is_a_backend_the_chain_meters(reward_model):
    """The reward model comes from load_backend(kind="reward"), so the stage chain counts the tokens it reads."""
    guarded = GuardedStage(StageSpec(Reward, RewardArgs(path=reward_model, batch_size=2)), torch_threads=2)
    out = guarded(_rows())
    prompt_tokens, generated_tokens = guarded.tokens()
    scored = [i for i in range(len(out["id"])) if np.isfinite(out["reward"][i])]
    chats = [guarded.stage.model.chat_ids(meta_prompt(out["method"][i], out["parent_instruction"][i]),
                                          out["instruction"][i], 4096)[0] for i in scored]
    assert (prompt_tokens, generated_tokens) == (sum(len(ids) for ids in chats), 0) and prompt_tokens > 0
    assert guarded.tokens() == (0, 0)  # taken: the next batch counts from zero
