"""Round sinks: ledger shards split into data parts, joined alpaca and rejects files, counts added up."""

import json

import pyarrow as pa
import pyarrow.parquet as pq

from engine.run.counts import RoundCounts
from engine.write.sinks import split_round
from tests.conftest import seed_batch


def _ledger(path, texts, rejected=()):
    batch = seed_batch(texts)
    for i in rejected:
        batch["status"][i], batch["reason"][i], batch["rejected_at"][i] = "rejected", "empty", "eliminate"
    batch["method"] = batch["method"].copy()
    batch["method"][:] = "deepen"
    batch["evolver"][:] = "tiny"
    pq.write_table(pa.table({k: list(v) for k, v in batch.items()}), path)
    return path


def test_shards_split_and_join_in_order_with_counts_added(tmp_path):
    a = _ledger(tmp_path / "a.parquet", ["one", "two", "three"], rejected=[1])
    b = _ledger(tmp_path / "b.parquet", ["four", "five"], rejected=[0])
    counts = split_round([a, b], tmp_path / "out", 1)

    alpaca = [json.loads(line)["instruction"] for line in (tmp_path / "out" / "alpaca" / "round_1.jsonl").open()]
    rejects = [json.loads(line)["instruction"] for line in (tmp_path / "out" / "rejects" / "round_1.jsonl").open()]
    assert alpaca == ["one", "three", "five"] and rejects == ["two", "four"]
    assert pq.read_table(tmp_path / "out" / "data" / "round_1").num_rows == 3
    assert not list((tmp_path / "out" / "alpaca").glob(".*"))  # the parts are gone
    assert (counts.rows_in, counts.rows_out, counts.rows_rejected) == (5, 3, 2)
    assert counts.rejected_by_model == {"tiny": {"empty": 2}}
    assert counts.per_method["deepen"] == {"in": 5, "out": 3, "rejected": 2}
    again = RoundCounts.from_state(json.loads(json.dumps(counts.state())))
    assert again.as_dict() == counts.as_dict()
