"""The elimination filter: each failure kind rejected with its reason, good evolutions kept."""

import numpy as np
import pytest

from engine.config import Config
from engine.stages.eliminate import Eliminate, elimination_reason


@pytest.mark.parametrize(
    "evolved, parent, reason",
    [
        ("", "Name a fruit.", "empty"),
        ("   \n", "Name a fruit.", "empty"),
        ("name a fruit", "Name a fruit.", "copy_of_parent"),
        ("#Rewritten Prompt#: Name a tropical fruit.", "Name a fruit.", "template_leak"),
        ("Here is the rewritten prompt. #The Given Prompt# asks for a fruit.", "Name a fruit.", "template_leak"),
        ("I'm sorry, but I can't help with that.", "Name a fruit.", "refusal"),
        ("As an AI language model, I cannot rewrite prompts.", "Name a fruit.", "refusal"),
        ("Name a tropical fruit that grows in Brazil and describe its taste.", "Name a fruit.", ""),
        ("Write a polite email saying sorry for a late delivery.", "Write an email.", ""),
    ],
)
def test_elimination_reasons(evolved, parent, reason):
    assert elimination_reason(evolved, parent)[0] == reason


def test_stage_rejects_in_place_and_keeps_rows():
    batch = {
        "id": np.array(["a", "b", "c"], dtype=object),
        "instruction": np.array(["", "Name a fruit grown in Peru.", "x"], dtype=object),
        "parent_instruction": np.array(["Name a fruit.", "Name a fruit.", "y"], dtype=object),
        "status": np.array(["ok", "ok", "rejected"], dtype=object),
        "reason": np.array(["", "", "missing_field"], dtype=object),
        "detail": np.array(["", "", "f.jsonl:3: missing field 'instruction'"], dtype=object),
        "rejected_at": np.array(["", "", "read"], dtype=object),
    }
    out = Eliminate(Config(), round_num=1)(batch)
    assert list(out["status"]) == ["rejected", "ok", "rejected"]
    assert list(out["reason"]) == ["empty", "", "missing_field"]
    assert list(out["rejected_at"]) == ["eliminate", "", "read"]
