"""The run manifest: journaled shards and rounds survive a reopen, a torn line is dropped, mismatches refused."""

import pytest

from engine.state.manifest import MANIFEST, Manifest, ResumeRefused, input_fingerprint


def test_entries_survive_a_reopen_and_a_torn_last_line(tmp_path):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text('{"instruction": "a"}\n')
    inputs = input_fingerprint([seeds])
    m = Manifest.open(tmp_path, "abc", inputs, resume=True)
    m.record_shard(1, "part-1.parquet", rows=10, ok=8)
    m.record_shard(1, "part-1.parquet", rows=10, ok=8)  # a file journaled twice counts once
    m.record_shard(1, "part-2.parquet", rows=5, ok=5)
    with open(tmp_path / MANIFEST, "a") as handle:
        handle.write('{"kind": "shard", "round": 1, "fi')  # the driver died mid-write

    again = Manifest.open(tmp_path, "abc", inputs, resume=True)
    assert sorted(again.shards(1)) == ["part-1.parquet", "part-2.parquet"]
    assert sum(e["rows"] for e in again.shards(1).values()) == 15
    assert again.round_counts(1) is None
    again.record_round(1, {"rows_in": 15})
    assert Manifest.open(tmp_path, "abc", inputs, resume=True).round_counts(1) == {"rows_in": 15}


def test_a_changed_config_or_input_is_refused_unless_starting_over(tmp_path):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text('{"instruction": "a"}\n')
    Manifest.open(tmp_path, "abc", input_fingerprint([seeds]), resume=True).record_shard(1, "p", 1, 1)
    with pytest.raises(ResumeRefused, match="different configuration.*run.resume=false"):
        Manifest.open(tmp_path, "xyz", input_fingerprint([seeds]), resume=True)
    seeds.write_text('{"instruction": "a"}\n{"instruction": "b"}\n')
    with pytest.raises(ResumeRefused, match="seeds.jsonl changed"):
        Manifest.open(tmp_path, "abc", input_fingerprint([seeds]), resume=True)
    fresh = Manifest.open(tmp_path, "xyz", input_fingerprint([seeds]), resume=False)
    assert fresh.entries == [] and fresh.header["config_hash"] == "xyz"
