"""The stage guard: a row that makes a stage raise is rejected with the error, the rest of the batch goes on."""

import numpy as np
import pytest

from engine.recipes.spec import StageSpec
from engine.run.chain import GuardedStage, RowsLost
from tests.conftest import seed_batch


class Shout:
    """A stage that upper-cases ok rows and raises on any row holding "POISON" (or on everything, if told)."""

    uses_model = False
    calls = 0

    def __init__(self, broken=False, torch_threads=None):
        self.broken = bool(broken)

    def __call__(self, batch):
        Shout.calls += 1
        ok = batch["status"] == "ok"
        if self.broken and ok.any():
            raise RuntimeError("the stage is broken")
        if any("POISON" in text for text in batch["instruction"][ok]):
            raise ValueError("cannot shout at poison")
        batch["instruction"] = np.array([t.upper() if k else t for t, k in zip(batch["instruction"], ok)], dtype=object)
        batch["shouted"] = ok.astype(np.int64)
        return batch


def test_poison_rows_are_rejected_and_the_rest_of_the_batch_goes_on():
    texts = [f"row {i}" for i in range(9)]
    texts[2], texts[7] = "POISON a", "POISON b"
    out = GuardedStage(StageSpec(Shout))(seed_batch(texts))
    assert list(out["status"]) == ["rejected" if i in (2, 7) else "ok" for i in range(9)]
    assert out["reason"][2] == "stage_error" and out["rejected_at"][7] == "shout"
    assert out["detail"][2] == "seeds.jsonl:3: Shout raised ValueError: cannot shout at poison"
    assert out["instruction"][0] == "ROW 0" and out["instruction"][2] == "POISON a"
    assert list(out["shouted"]) == [0 if i in (2, 7) else 1 for i in range(9)]  # added columns on every row
    assert list(out["id"]) == list(seed_batch(texts)["id"])  # order kept


def test_a_stage_that_fails_on_every_row_raises_instead_of_rejecting_them():
    with pytest.raises(RuntimeError, match="broken"):
        GuardedStage(StageSpec(Shout, True))(seed_batch(["a", "b", "c"]))


def test_a_lost_row_is_caught():
    class Drop:
        uses_model = False

        def __init__(self, args=None, torch_threads=None):
            pass

        def __call__(self, batch):
            return {name: values[1:] for name, values in batch.items()}

    with pytest.raises(RowsLost, match="Drop"):
        GuardedStage(StageSpec(Drop))(seed_batch(["a", "b"]))
