"""Selection: a global, deterministic cut whatever the sharding, and the paper's baselines."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.config import ConfigError, SelectConfig
from engine.recipes.spec import Resources, StageSpec
from engine.recipes.steps import SelectTop, embedding_matrix
from engine.stages.analysis.diversity import Embed
from engine.stages.scoring.select import Select, check_select, diverse_walk, keep_mask, plan_cut
from engine.state.storage import Storage


def test_cut_over_four_shards_equals_exact_top_fraction_of_the_union():
    rng = np.random.default_rng(0)
    shards = [rng.uniform(lo, hi, size=n) for lo, hi, n in ((0, 1, 50), (0.5, 3, 70), (2, 5, 30), (-1, 0.2, 90))]
    ids = [np.array([f"s{k}-{j:04d}" for j in range(len(s))], dtype=object) for k, s in enumerate(shards)]
    scores, all_ids = np.concatenate(shards), np.concatenate(ids)
    ifd = np.full(len(scores), 0.5)
    cut = plan_cut(scores, all_ids, ifd, SelectConfig(by="ic_ifd", fraction=0.25))
    kept = set()
    for shard_scores, shard_ids in zip(shards, ids):  # phase 2, shard by shard
        mask = keep_mask(shard_scores, shard_ids, np.full(len(shard_scores), 0.5), cut)
        kept |= set(shard_ids[mask])
    expected = set(all_ids[np.argsort(-scores)[: int(np.ceil(0.25 * len(scores)))]])
    assert kept == expected and cut.kept == len(expected) == 60


def test_ties_are_broken_by_id_deterministically():
    scores = np.array([1.0, 2.0, 2.0, 2.0, 0.5])
    ids = np.array(["e", "d", "b", "c", "a"], dtype=object)
    cut = plan_cut(scores, ids, np.zeros(5), SelectConfig(top_k=2))
    mask = keep_mask(scores, ids, np.zeros(5), cut)
    assert set(ids[mask]) == {"b", "c"} and cut.value == 2.0


def test_baselines_keep_the_lowest_and_filters_apply():
    scores = np.array([30.0, 10.0, 20.0, np.nan])
    ids = np.array(["a", "b", "c", "d"], dtype=object)
    cut = plan_cut(scores, ids, np.zeros(4), SelectConfig(by="instruction_length", top_k=2))
    assert set(ids[keep_mask(scores, ids, np.zeros(4), cut)]) == {"b", "c"}

    ifd = np.array([0.9, 1.2, 0.8, 0.7])
    cut = plan_cut(scores, ids, ifd, SelectConfig(by="ic_ifd", ifd_below_one=True))
    assert set(ids[keep_mask(scores, ids, ifd, cut)]) == {"a", "c"}  # b has IFD >= 1, d has no score

    cut = plan_cut(scores, ids, np.zeros(4), SelectConfig(threshold=15.0))
    assert set(ids[keep_mask(scores, ids, np.zeros(4), cut)]) == {"a", "c"}


def test_impossible_selections_are_refused_before_running():
    with pytest.raises(ConfigError, match="select.by"):
        check_select(SelectConfig(by="longest"), scoring_enabled=True)
    with pytest.raises(ConfigError, match="scoring.enabled"):
        check_select(SelectConfig(fraction=0.5), scoring_enabled=False)
    with pytest.raises(ConfigError, match="fraction"):
        check_select(SelectConfig(fraction=1.5), scoring_enabled=True)
    check_select(SelectConfig(), scoring_enabled=False)  # no cut asked for: scoring may be off
    for bad in (-0.1, 2.0, float("nan")):
        with pytest.raises(ConfigError, match="select.min_distance"):
            check_select(SelectConfig(min_distance=bad), scoring_enabled=True)
    with pytest.raises(ConfigError, match="scoring.enabled"):
        check_select(SelectConfig(min_distance=0.1), scoring_enabled=False)  # on its own, it is a selection
    check_select(SelectConfig(min_distance=0.0), scoring_enabled=True)


def unit(vectors) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def planted_rows(rng, topics: int = 12, dim: int = 16):
    """`topics` orthogonal directions; the four best-scoring topics each have a near-identical twin (cosine
    distance ~1e-3) that scores just below them, so a plain top-k would spend four places on twins."""
    base = np.eye(dim, dtype=np.float32)[:topics]
    scores = np.linspace(10.0, 1.0, topics)
    ids = [f"t{k:02d}" for k in range(topics)]
    vectors = list(base)
    for k in range(4):
        twin = base[k] + 0.045 * base[(k + 5) % dim]  # cos 0.999: near-identical
        vectors.append(twin)
        scores = np.append(scores, scores[k] - 0.01)
        ids.append(f"t{k:02d}-twin")
    order = rng.permutation(len(ids))  # the order rows arrive in must not matter
    return scores[order], np.array(ids, dtype=object)[order], unit(np.array(vectors))[order]


def test_min_distance_keeps_one_of_each_planted_twin_and_fills_the_quota_with_distinct_rows():
    scores, ids, vectors = planted_rows(np.random.default_rng(1))
    cfg = SelectConfig(top_k=8, min_distance=0.05)
    cut = plan_cut(scores, ids, np.zeros(len(ids)), cfg, vectors)
    kept = set(ids[keep_mask(scores, ids, np.zeros(len(ids)), cut)])
    assert kept == {f"t{k:02d}" for k in range(8)}  # each twin's better-scored original, then t04..t07
    assert cut.kept == 8 and cut.too_similar.keys() == {f"t{k:02d}-twin" for k in range(4)}
    for twin, (nearest, distance) in cut.too_similar.items():
        assert nearest == twin[:3] and 0 < distance < 0.05  # named by its original, at their true distance
    assert cut.as_dict()["too_similar"] == 4 and cut.as_dict()["min_distance"] == 0.05
    rows_below = set(ids) - kept - set(cut.too_similar)
    assert rows_below == {f"t{k:02d}" for k in range(8, 12)}  # not walked: stay not_selected

    plain = plan_cut(scores, ids, np.zeros(len(ids)), SelectConfig(top_k=8))
    assert len({i for i in ids[keep_mask(scores, ids, np.zeros(len(ids)), plain)] if i.endswith("twin")}) == 4


def test_min_distance_counts_fraction_of_the_candidates_and_threshold_as_a_floor():
    scores, ids, vectors = planted_rows(np.random.default_rng(2))  # 16 candidates
    cut = plan_cut(scores, ids, np.zeros(16), SelectConfig(fraction=0.5, min_distance=0.05), vectors)
    assert cut.kept == 8 and len(cut.too_similar) == 4  # ceil(0.5 x 16 candidates), filled by distinct rows
    cut = plan_cut(scores, ids, np.zeros(16), SelectConfig(threshold=7.54, min_distance=0.05), vectors)
    kept = set(ids[keep_mask(scores, ids, np.zeros(16), cut)])
    assert all(s >= 7.54 for s, i in zip(scores, ids) if i in kept) and len(kept) == 4  # t00..t03 (t03: 7.545)
    assert cut.too_similar.keys() == {f"t{k:02d}-twin" for k in range(3)}  # t03-twin (7.535) is below the floor


def test_the_walk_is_the_sequential_rule_for_any_block_size():
    rng = np.random.default_rng(3)
    vectors = unit(rng.normal(size=(300, 8)) + np.repeat(rng.normal(size=(30, 8)) * 3, 10, axis=0))
    ids = np.array([f"r{j:03d}" for j in range(300)], dtype=object)
    expected_kept, expected = [], {}
    for j, vector in enumerate(vectors):  # the rule written out one row at a time
        if expected_kept:
            dots = vectors[expected_kept] @ vector
            t = int(dots.argmax())
            if 1.0 - dots[t] <= 0.3:
                expected[j] = expected_kept[t]
                continue
        expected_kept.append(j)
        if len(expected_kept) == 40:
            break
    for block_rows in (1, 7, 64, 1024):
        walked, skipped = diverse_walk(vectors, ids, 40, 0.3, block_rows=block_rows)
        assert walked == j + 1 and {p: q for p, (q, _) in skipped.items()} == expected


def test_exact_duplicates_are_too_similar_even_at_zero_and_bad_vectors_are_refused():
    vectors = unit([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    ids = np.array(["a", "b", "c"], dtype=object)
    cut = plan_cut(np.array([3.0, 2.0, 1.0]), ids, np.zeros(3), SelectConfig(min_distance=0.0), vectors)
    assert cut.too_similar == {"b": ("a", 0.0)} and cut.kept == 2
    vectors[2] = np.nan
    with pytest.raises(ValueError, match="'c'"):
        plan_cut(np.array([3.0, 2.0, 1.0]), ids, np.zeros(3), SelectConfig(min_distance=0.0), vectors)


def test_select_rejects_too_similar_rows_with_their_nearest_kept_id_and_drops_the_embeddings():
    scores, ids, vectors = planted_rows(np.random.default_rng(4))
    cut = plan_cut(scores, ids, np.zeros(16), SelectConfig(top_k=6, min_distance=0.05), vectors)
    batch = {"id": ids, "ic_ifd": scores, "ifd": np.zeros(16), "status": np.full(16, "ok", dtype=object),
             "reason": np.full(16, "", dtype=object), "detail": np.full(16, "", dtype=object),
             "rejected_at": np.full(16, "", dtype=object), "embedding": vectors}
    out = Select(cut)(batch)
    assert "embedding" not in out
    reasons = dict(zip(out["id"], out["reason"]))
    assert sorted(i for i, r in reasons.items() if r == "") == [f"t{k:02d}" for k in range(6)]
    assert sorted(i for i, r in reasons.items() if r == "too_similar") == [f"t{k:02d}-twin" for k in range(4)]
    assert sum(r == "not_selected" for r in reasons.values()) == 6
    for row_id, detail in zip(out["id"], out["detail"]):
        if reasons[row_id] == "too_similar":
            assert detail.endswith(f"to kept row {row_id[:3]}")


def test_plan_over_shards_reads_the_same_cut_whatever_the_sharding(tmp_path):
    scores, ids, vectors = planted_rows(np.random.default_rng(5))
    status = np.array(["ok"] * 15 + ["rejected"], dtype=object)  # a rejected row never counts
    step = SelectTop(SelectConfig(fraction=0.5, min_distance=0.05), Resources(), embed=StageSpec(Embed))
    cuts = []
    for split in ([16], [3, 5, 8], [1] * 16):
        folder = tmp_path / f"split-{len(split)}"
        folder.mkdir()
        files, lo = [], 0
        for n, size in enumerate(split):
            rows = slice(lo, lo + size)
            lo += size
            flat = pa.array(vectors[rows].ravel())
            table = pa.table({"id": ids[rows], "status": status[rows], "ifd": np.zeros(size), "ic_ifd": scores[rows],
                              "embedding": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])})
            pq.write_table(table, folder / f"part-{n:02d}.parquet")
            files.append(folder / f"part-{n:02d}.parquet")
        cuts.append(step.plan(files[::-1], Storage.resolve(str(folder)), executor=None))
    assert cuts[0] == cuts[1] == cuts[2] and cuts[0].candidates == 15 and cuts[0].kept == 8



def test_embedding_columns_read_back_as_a_matrix_in_any_list_layout():
    vectors = unit(np.random.default_rng(6).normal(size=(5, 4)))
    fixed = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), 4)
    large = pa.array(list(vectors), type=pa.large_list(pa.float32()))  # Ray's tensor storage without its type
    assert np.array_equal(embedding_matrix(pa.chunked_array([fixed.slice(0, 2), fixed.slice(2)])), vectors)
    assert np.array_equal(embedding_matrix(pa.chunked_array([large.slice(1, 3)])), vectors[1:4])
    with pytest.raises(ValueError, match="different sizes"):
        embedding_matrix(pa.chunked_array([pa.array([[1.0, 0.0], [1.0]])]))
    with pytest.raises(ValueError, match="not one vector per row"):
        embedding_matrix(pa.chunked_array([pa.array([1.0, 2.0])]))
