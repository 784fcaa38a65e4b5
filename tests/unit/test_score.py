"""IFD / IC-IFD: the engine's two-pass batched scorer against a deliberately simple three-pass reference."""

import math

import numpy as np
import pytest
import torch

from engine.config import Config
from engine.recipes import specs
from engine.stages.scoring.score import build_spans, ifd_scores, span_losses
from tests.conftest import seed_batch

ROWS = [
    ("Name a primary colour.", "", "Red is a primary colour."),
    ("Summarise the text.", "The cat sat on the mat all day long.", "A cat rested on a mat."),
    ("Sort the numbers.", "5, 3, 9, 1", "1, 3, 5, 9"),
    ("Write a haiku about rain.", "", "Soft rain on the roof\nwhispers to the sleeping town\npuddles hold the sky"),
    ("Explain photosynthesis.", "", "Plants turn light, water and carbon dioxide into sugar and oxygen. " * 12),
    ("Translate to French: good morning", "", "Bonjour"),
    ("What is 12 times 7?", "", "84"),
    ("List three rivers.", "", "The Nile, the Amazon and the Danube."),
    ("Fix the bug.", "def add(a, b):\n    return a - b", "def add(a, b):\n    return a + b"),
    ("Give a synonym for happy.", "", "Joyful."),
    ("Describe the ocean in one sentence.", "", "The ocean is a vast, restless body of salt water."),
    ("Compute the area of a 3 by 4 rectangle.", "", "The area is 12 square units."),
    ("Who wrote Hamlet?", "", "William Shakespeare wrote Hamlet."),
    ("Classify the sentiment.", "I loved this film!", "Positive."),
    ("Rewrite formally.", "gonna be late, sorry", "I apologise; I will be late."),
    ("Suggest a name for a bakery.", "", "The Golden Crust."),
    ("Convert 5 km to miles.", "", "5 km is about 3.11 miles."),
    ("Name a prime number above 50.", "", "53"),
    ("Explain recursion briefly.", "", "A function that calls itself on a smaller input until a base case."),
    ("Count the vowels.", "banana", "3"),
    ("Write a long story about a lighthouse keeper and a storm at sea.", "",
     "The keeper climbed the stairs as the storm rose. " * 40),
]


@pytest.fixture(scope="module")
def scorer(tiny_model):
    cfg = Config(scorer=tiny_model)
    cfg.scoring.max_length = 160  # small enough that the long rows are truncated
    return specs.score(cfg, 1).build(torch_threads=2)


def reference_losses(model, ids: list[int], q_len: int, a_ids: list[int]) -> tuple[float, float, float]:
    """The seed's way: batch 1, three forward passes, HF .loss with labels=-100 masking."""
    full = torch.tensor([ids])
    labels_aq = full.clone()
    labels_aq[0, :q_len] = -100
    labels_q = full.clone()
    labels_q[0, q_len:] = -100
    a = torch.tensor([a_ids])
    with torch.no_grad():
        l_aq = model(full, labels=labels_aq).loss.item()
        l_q = model(full, labels=labels_q).loss.item()
        l_a = model(a, labels=a).loss.item()
    return l_q, l_aq, l_a


def test_scores_match_the_three_pass_reference_in_float32(scorer):
    batch = seed_batch([r[0] for r in ROWS], [r[1] for r in ROWS])
    batch["output"] = np.array([r[2] for r in ROWS], dtype=object)
    out = scorer(batch)
    assert out["score_truncated"].sum() >= 1  # the long rows were cut to max_length
    for i, (instruction, input_text, answer) in enumerate(ROWS):
        spans = scorer.spans(instruction, input_text, answer)
        l_q, l_aq, l_a = reference_losses(scorer.model.model, spans.qa_ids, spans.q_len, spans.a_ids)
        assert out["l_q"][i] == pytest.approx(l_q, rel=1e-5)
        assert out["l_a_given_q"][i] == pytest.approx(l_aq, rel=1e-5)
        assert out["l_a"][i] == pytest.approx(l_a, rel=1e-5)
        assert out["ifd"][i] == pytest.approx(l_aq / l_a, rel=1e-5)
        assert out["ic_ifd"][i] == pytest.approx(l_aq / (l_q * l_a), rel=1e-5)
        assert out["status"][i] == "ok"


def test_spans_put_the_boundary_where_the_segments_meet(scorer):
    tok = scorer.model.tokenizer
    spans = build_spans(tok, scorer.bos_id, "Sort the numbers.", "5, 3", "3, 5", fmt="raw")
    q = [scorer.bos_id] + tok("Sort the numbers.\n5, 3", add_special_tokens=False)["input_ids"]
    assert spans.qa_ids[: spans.q_len] == q
    assert spans.a_ids == [scorer.bos_id] + tok("3, 5", add_special_tokens=False)["input_ids"]
    assert spans.qa_ids[spans.q_len:] == tok("\n", add_special_tokens=False)["input_ids"] + spans.a_ids[1:]
    chat = build_spans(tok, scorer.bos_id, "Sort the numbers.", "", "3, 5", fmt="chat")
    assert chat.qa_ids[-1] == tok.eos_token_id and chat.qa_ids[0] == scorer.bos_id
    assert chat.qa_ids.count(scorer.bos_id) == 2  # one template applied once: user and assistant turns


def test_truncation_keeps_the_question_and_flags_the_row(scorer):
    spans = build_spans(scorer.model.tokenizer, scorer.bos_id, "Tell a story.", "", "word " * 500, max_length=64)
    assert spans.truncated and len(spans.qa_ids) == 64 and len(spans.a_ids) <= 64
    assert spans.a_ids[1:] == spans.qa_ids[spans.q_len + 1:]  # the same answer tokens in both passes


def test_degenerate_rows_are_rejected_not_crashing(scorer):
    batch = seed_batch(["Name a colour.", "Name a river."])
    batch["output"] = np.array(["", "The Nile."], dtype=object)
    out = scorer(batch)
    assert list(out["status"]) == ["rejected", "ok"]
    assert out["reason"][0] == "score_empty_answer" and math.isnan(out["ic_ifd"][0])


def test_span_and_ratio_arithmetic():
    qa = np.array([1.0, 3.0, 2.0, 4.0, 6.0])  # q_len=3: Q targets are the first 2 values
    l_q, l_aq, l_a = span_losses(qa, 3, np.array([2.0, 4.0]))
    assert (l_q, l_aq, l_a) == (2.0, 4.0, 3.0)
    ifd, ic_ifd, problem = ifd_scores(l_q, l_aq, l_a)
    assert ifd == pytest.approx(4 / 3) and ic_ifd == pytest.approx(4 / 6) and problem == ""
    assert ifd_scores(0.0, 1.0, 1.0)[2] == "score_zero_question_loss"
    assert ifd_scores(1.0, math.nan, 1.0)[2] == "score_not_finite"
