"""The HF backend on the tiny model: chat ids, batched generation, per-token losses against HF's own loss."""

import logging
from dataclasses import replace

import numpy as np
import pytest
import torch

from engine.backends import Sampling
from engine.backends.hf import HFBackend


@pytest.fixture(scope="module")
def tiny(tiny_model):
    return HFBackend(tiny_model, torch_threads=2)


def test_chat_template_applied_once_with_a_single_bos(tiny):
    ids = tiny.chat_ids("Name a colour.")
    assert ids[0] == tiny.bos_id
    assert ids.count(tiny.bos_id) == 2  # the user turn and the assistant turn each open with <|im_start|>
    assert ids[1] != tiny.bos_id


def test_generation_respects_max_new_tokens_and_reports_counts(tiny):
    out = tiny.generate(["Name a colour.", "Write a long story about the sea and the wind."], Sampling(max_new_tokens=7))
    assert len(out) == 2
    for generation in out:
        assert generation.generated_tokens <= 7
        assert generation.finish_reason in ("stop", "length")
        assert generation.prompt_tokens > 5


def test_sampling_follows_each_rows_seed_not_its_batch(tiny):
    sampling = Sampling(temperature=1.0, top_p=0.9, max_new_tokens=10)
    prompts = ["Name a colour.", "Name a river.", "Name a colour."]
    a = [g.text for g in tiny.generate(prompts, sampling, seeds=[1, 2, 3])]
    b = [g.text for g in tiny.generate(prompts, sampling, seeds=[1, 2, 3])]
    assert a == b
    assert a[0] != a[2]  # same prompt, other seed: another sample (the random tiny model is nearly uniform)
    alone = tiny.generate(["Name a river."], sampling, seeds=[2])[0].text
    assert alone == a[1]  # the same row seed gives the same text whatever shares the batch


def test_top_p_keeps_only_the_nucleus():
    from engine.backends.hf import RowSampler

    scores = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    drawn = set()
    for seed in range(200):
        out = RowSampler([seed], temperature=1.0, top_p=0.7, device=torch.device("cpu"))(None, scores.clone())
        drawn.add(int(out.argmax()))
    assert drawn == {0, 1}  # 0.5 + 0.3 reaches 0.7: tokens 2 and 3 are never drawn


def test_batched_greedy_equals_one_at_a_time(tiny):
    prompts = ["Name a colour.", "Write a long story about the sea, the wind and the stars at night."]
    greedy = Sampling(max_new_tokens=8)
    batched = [g.text for g in tiny.generate(prompts, greedy)]
    single = [tiny.generate([p], greedy)[0].text for p in prompts]
    assert batched == single  # left padding must not change the result


def test_too_long_prompt_is_an_error_not_a_crash(tiny):
    out = tiny.generate(["word " * 9000, "Name a colour."], Sampling(max_new_tokens=4))
    assert out[0].finish_reason == "error" and "max_model_len=8192" in out[0].error
    assert out[1].finish_reason in ("stop", "length")


def test_a_row_without_room_for_its_budget_generates_what_fits(tiny_model, tiny, caplog):
    """vLLM's rule on HF: a row gets the room its prompt leaves (as if it had asked for exactly that), a row with room
    in the same call is untouched, and the cap is said once, not per row or per call."""
    short = "Name a colour."
    longer = "Write a long story about the sea, the wind and the stars at night, and the ships."
    long = "Write a long story about the sea, the wind and the stars at night, and ships."
    max_model_len = len(tiny.chat_ids(longer)) + 3
    rooms = [max_model_len - len(tiny.chat_ids(p)) for p in (short, long, longer)]
    assert rooms[0] >= 8 and 3 == rooms[2] < rooms[1] < 8  # two capped rows of different lengths, one with room
    narrow = HFBackend(replace(tiny_model, max_model_len=max_model_len), torch_threads=2)
    caplog.set_level(logging.WARNING, logger="engine.backends")
    sampling = Sampling(max_new_tokens=8, output_stats=True)
    out = narrow.generate([short, long, longer], sampling)
    again = narrow.generate([short, long, longer], sampling)  # a second call: the same rows, and no second notice
    assert [g.text for g in again] == [g.text for g in out]
    for generation, room in zip(out[1:], rooms[1:]):
        assert (generation.generated_tokens, generation.finish_reason) == (room, "length")
        assert generation.prompt_tokens + generation.generated_tokens == max_model_len
        assert generation.stats.positions == room  # the output-space histograms stop with the row
    assert [g.text for g in out[1:]] == [tiny.generate([p], Sampling(max_new_tokens=r))[0].text
                                         for p, r in zip((long, longer), rooms[1:])]
    assert out[0].text == tiny.generate([short], Sampling(max_new_tokens=8))[0].text
    notices = [r.getMessage() for r in caplog.records]
    assert len(notices) == 1 and f"max_new_tokens=8 exceed max_model_len={max_model_len}" in notices[0]


def test_a_context_beyond_the_models_positions_uses_the_models(tiny_model):
    assert HFBackend(replace(tiny_model, max_model_len=100_000), torch_threads=2).max_model_len == 8192


def test_token_losses_match_hf_loss(tiny):
    texts = ["Name a colour.", "A much longer sentence about rivers, mountains and the sea at dawn.", "Hi"]
    sequences = [[tiny.bos_id] + tiny.tokenizer(t)["input_ids"] for t in texts]
    losses = tiny.token_losses(sequences)
    for seq, loss in zip(sequences, losses):
        assert loss.shape == (len(seq) - 1,)
        ids = torch.tensor([seq])
        with torch.no_grad():
            reference = tiny.model(ids, labels=ids).loss.item()
        assert np.isclose(loss.mean(), reference, rtol=1e-5)


def test_auto_dtype_probe_picks_the_same_dtype_in_fresh_processes():
    """dtype=auto is decided once per model load, in a new actor: the first probe in a process must already be
    stable (timing a single warm-up-less product picked float32 on an AMX machine in most fresh processes)."""
    import subprocess
    import sys

    code = "import torch; torch.set_num_threads(2); from engine.backends.hf import fastest_cpu_dtype as f; print(f())"
    picks = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
             for _ in range(3)}
    assert len(picks) == 1 and picks <= {"torch.float32", "torch.bfloat16"}
