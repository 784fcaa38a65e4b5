"""Output-space analysis: per-position top-1 probability and entropy of the raw distribution while generating,
streamed into fixed-bin histograms, and added up per evolver for the round summary."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import torch

from engine.backends import Sampling, load_backend
from engine.backends.base import ENTROPY_EDGES, TOP1_EDGES
from engine.config import ModelConfig
from engine.measure import output_space
from engine.run.counts import RoundCounts, count_table


@pytest.fixture(scope="module")
def tiny():
    return load_backend(ModelConfig(name="tiny", embedded="tiny", max_batch_size=4))


def test_every_generated_position_is_counted_and_sampling_unchanged(tiny):
    prompts = ["hello there", "write a poem about cats and dogs", "x"]
    with_stats = tiny.generate(prompts, Sampling(0.7, 0.95, 12, output_stats=True), [1, 2, 3])
    plain = tiny.generate(prompts, Sampling(0.7, 0.95, 12), [1, 2, 3])
    for g, p in zip(with_stats, plain):
        assert g.text == p.text and p.stats is None
        assert g.stats.positions == g.generated_tokens  # all positions, not only the first five
        assert g.stats.top1_counts.sum() == g.stats.entropy_counts.sum() == g.stats.positions
        assert 0 < g.stats.top1_sum / g.stats.positions <= 1


def test_first_position_matches_a_direct_forward_pass(tiny):
    prompt = "write a poem about cats"
    g = tiny.generate([prompt], Sampling(max_new_tokens=1, output_stats=True))[0]
    ids = torch.tensor([tiny.chat_ids(prompt)])
    with torch.inference_mode():
        logits = tiny.model(input_ids=ids).logits[0, -1].float()
    probs = torch.softmax(logits, -1)
    top1, entropy = probs.max().item(), -(probs * torch.log(probs)).sum().item()
    assert g.stats.positions == 1
    assert g.stats.top1_sum == pytest.approx(top1, rel=1e-4)
    assert g.stats.entropy_sum == pytest.approx(entropy, rel=1e-4)
    assert g.stats.top1_counts[np.searchsorted(TOP1_EDGES[1:-1], top1, side="right")] == 1
    assert g.stats.entropy_counts[np.searchsorted(ENTROPY_EDGES[1:-1], entropy, side="right")] == 1


def test_round_counts_add_rows_per_evolver_and_survive_the_manifest_state():
    def row(top1_bin, positions):
        counts = [0] * 20
        counts[top1_bin] = positions
        return json.dumps({"top1": counts, "entropy": counts, "top1_sum": 0.5 * positions,
                           "entropy_sum": 2.0 * positions, "positions": positions})

    table = pa.table({
        "status": ["ok", "rejected", "ok"], "reason": ["", "repetition", ""], "rejected_at": ["", "eliminate", ""],
        "method": ["deepen", "deepen", "breadth"], "evolver": ["small", "small", "large"],
        "output_space": [row(3, 4), row(5, 6), ""],
    })
    counts = RoundCounts(round=1)
    count_table(counts, table, pc.equal(table["status"], "ok"))
    again = RoundCounts.from_state(json.loads(json.dumps(counts.state())))
    again.merge(counts)
    summary = output_space.histogram_summary(again.output_space)
    assert list(summary) == ["small"]  # rejected rows count too: their tokens were generated
    small = summary["small"]
    assert small["positions"] == 20 and small["top1_counts"][3] == 8 and small["top1_counts"][5] == 12
    assert small["mean_top1"] == pytest.approx(0.5) and small["mean_entropy"] == pytest.approx(2.0)
    assert len(small["top1_edges"]) == len(small["top1_counts"]) + 1
