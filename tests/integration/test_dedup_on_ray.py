"""Deduplication grouped on Ray Data (RayExecutor.grouped: hash-partitioned shuffles) drops exactly the rows the
in-process grouping drops, over several shards, and the stage rejects them on Ray."""

import pyarrow as pa
import pyarrow.parquet as pq

from engine.config import compose
from engine.recipes.spec import Resources
from engine.recipes.steps import Deduplicate
from engine.run.runner import RayExecutor
from engine.stages.curation import dedup
from tests.unit.test_dedup import planted_rows, plan_in_process


def test_ray_grouping_drops_what_the_in_process_grouping_drops(local_ray, tmp_path, monkeypatch):
    rows, expected = planted_rows()
    n = len(rows)
    table = pa.table({"status": ["ok"] * n, "reason": [""] * n, "detail": [""] * n, "rejected_at": [""] * n,
                      "id": [f"s{i:07d}" for i in range(n)], "seed_index": list(range(n)),
                      "instruction": [r["instruction"] for r in rows], "input": [r["input"] for r in rows]})
    cfg = compose(["model=echo", "scorer=echo"])
    cfg.run.output_dir = str(tmp_path / "out")
    monkeypatch.setattr(dedup, "GROUP_ROWS", 16)  # several hash partitions in both passes
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    files = []
    for i, lo in enumerate(range(0, n, 5)):  # shards of 5 rows, as a round's ledger
        files.append(ledger / f"shard-{i}.parquet")
        pq.write_table(table.slice(lo, 5), files[-1])
    executor = RayExecutor(cfg)
    step = Deduplicate(cfg.dedup, Resources())
    on_ray = step.plan(files, executor.storage, executor)
    in_process = plan_in_process(table, cfg.dedup, tmp_path)
    assert on_ray.drops == in_process.drops
    assert {int(k[1:]): int(v[0][1:]) for k, v in on_ray.drops.items()} == expected
    assert on_ray.candidate_pairs >= len(expected)

    out = executor.apply(files, step.spec(on_ray), tmp_path / "applied")
    applied = pa.concat_tables(pq.read_table(f) for f in out)
    assert applied.num_rows == n
    rejected = {r["id"]: r["detail"] for r in applied.to_pylist() if r["status"] == "rejected"}
    assert {k: v.split(" ")[2] for k, v in rejected.items()} == {k: v[0] for k, v in on_ray.drops.items()}
    assert all(r["reason"] == "duplicate" for r in applied.to_pylist() if r["status"] == "rejected")
