"""select.min_distance on Ray: the Embed stage prepares the plan in its own actor pool, Ray Data's tensor column
travels through Parquet to the driver's plan, and the embeddings never reach the outputs."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine.config import compose
from engine.recipes.steps import embedding_matrix
from engine.run.runner import run

INSTRUCTIONS = ["Describe a river delta.", "Name three prime numbers.", "Explain what a budget is.",
                "Write a haiku about snow.", "Give two tips for learning chess."]


def test_min_distance_on_ray_keeps_one_of_each_duplicate_and_writes_no_embeddings(local_ray, tmp_path):
    seeds = tmp_path / "seeds.jsonl"
    # Each instruction twice, five positions apart: the same evolution method (methods[(i + r) % 5]) and greedy
    # echo generations make the two rows of a pair identical after the round.
    seeds.write_text("".join(json.dumps({"instruction": t, "input": "", "output": ""}) + "\n"
                             for t in INSTRUCTIONS + INSTRUCTIONS))
    cfg = compose(["model=echo", "scorer=echo", "cluster.batch_size=4", "select.min_distance=0.05",
                   "recipe.evolve.temperature=0", "analysis.embedder.device=cpu", f"data.path={seeds}",
                   "run.progress=off"])
    cfg.run.output_dir = str(tmp_path / "out")  # compose() leaves a placeholder
    summary = run(cfg)
    out = tmp_path / "out"
    kept = pq.read_table(out / "data" / "round_1")
    rejects = [json.loads(line) for line in open(out / "rejects" / "round_1.jsonl")]
    assert summary["rows_conserved"] and kept.num_rows + len(rejects) == 10
    assert "embedding" not in kept.column_names and all("embedding" not in row for row in rejects)
    pairs = {row_id: row["seed_index"] % 5 for row_id, row in zip(kept["id"].to_pylist(), kept.to_pylist())}
    assert len(set(pairs.values())) == len(pairs)  # at most one row of each identical pair kept
    similar = [row for row in rejects if row["reason"] == "too_similar"]
    assert len(similar) == summary["selection"]["too_similar"]
    named = {row["detail"].rsplit("to kept row ", 1)[1] for row in similar}
    assert kept.num_rows and named == set(pairs)  # every kept row's identical twin was skipped for it
    assert summary["selection"]["min_distance"] == 0.05


def test_ray_tensor_columns_read_back_as_a_matrix(local_ray, tmp_path):
    import ray

    vectors = np.random.default_rng(6).normal(size=(5, 4)).astype(np.float32)
    ray.data.from_items([{"embedding": v} for v in vectors]).write_parquet(str(tmp_path / "t"))
    table = pa.concat_tables(pq.read_table(f) for f in sorted((tmp_path / "t").glob("*.parquet")))
    assert np.array_equal(embedding_matrix(table["embedding"]), vectors)
    assert np.array_equal(embedding_matrix(pa.chunked_array([table["embedding"].combine_chunks().storage.slice(2)])),
                          vectors[2:])
