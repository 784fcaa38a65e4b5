"""Diversity: the blocked exact MND search against a full distance matrix, and the Embed stage on real MiniLM."""

import numpy as np
import pytest

from engine.config import EmbedderConfig
from engine.stages.analysis.diversity import (
    Embed,
    EmbedArgs,
    diversity_summary,
    dot_cutoff,
    embedding_text,
    grouped_min_neighbour_distances,
    min_neighbour_distances,
)
from tests.conftest import seed_batch


def unit_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(x: np.ndarray, threshold: float, same=None) -> tuple[np.ndarray, np.ndarray]:
    """Full float64 distance matrix; `same[i, j]` marks pairs that are not neighbours (self by default)."""
    x = x.astype(np.float64)
    dist = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    same = np.eye(len(x), dtype=bool) if same is None else same
    dist[same] = np.inf
    # No pair may sit on the threshold within float32 error, or the comparison would be ambiguous.
    assert not (np.abs(dist - threshold) < 1e-5).any()
    mnd = dist.min(axis=1)
    return np.where(np.isinf(mnd), np.nan, mnd), (dist < threshold).sum(axis=1)


@pytest.fixture(scope="module")
def vectors_with_duplicates() -> np.ndarray:
    x = unit_vectors(300, 6)
    x[17] = x[4]  # exact duplicates: distance 0 to each other
    x[250] = x[4]
    x[99] = x[98] + 0.01 * unit_vectors(1, 6, seed=1)[0]  # a near duplicate
    x[99] /= np.linalg.norm(x[99])
    return x


@pytest.mark.parametrize("block_rows,db_block_rows", [(4096, None), (64, None), (37, 101), (300, 7), (1, 1)])
def test_blocked_search_equals_brute_force(vectors_with_duplicates, block_rows, db_block_rows):
    x = vectors_with_duplicates
    threshold = 0.3  # low dimension: many rows have several neighbours below it
    want_mnd, want_near = brute_force(x, threshold)
    mnd, near = min_neighbour_distances(x, threshold=threshold, block_rows=block_rows, db_block_rows=db_block_rows)
    assert mnd.dtype == np.float64 and near.dtype == np.int64
    np.testing.assert_allclose(mnd, want_mnd, atol=2e-6)
    np.testing.assert_array_equal(near, want_near)
    assert near.max() >= 3 and (near == 0).any()  # the threshold separates rows
    # Duplicates under other ids are each other's neighbours at distance 0 (float32 rounding), not themselves.
    assert max(mnd[4], mnd[17], mnd[250]) < 1e-6 and near[4] >= 2
    assert 0 < mnd[99] < 1e-3


def test_memmap_input_matches_in_memory(tmp_path, vectors_with_duplicates):
    path = tmp_path / "embeddings.npy"
    np.save(path, vectors_with_duplicates)
    mapped = np.load(path, mmap_mode="r")
    assert isinstance(mapped, np.memmap)
    got = min_neighbour_distances(mapped, threshold=0.05, block_rows=50, db_block_rows=64)
    want = min_neighbour_distances(vectors_with_duplicates, threshold=0.05)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_query_slice_computes_those_rows_against_all(vectors_with_duplicates):
    full_mnd, full_near = min_neighbour_distances(vectors_with_duplicates, threshold=0.3)
    mnd, near = min_neighbour_distances(vectors_with_duplicates, threshold=0.3, block_rows=16,
                                        queries=slice(10, 60))
    np.testing.assert_array_equal(mnd, full_mnd[10:60])
    np.testing.assert_array_equal(near, full_near[10:60])


def test_rows_sharing_an_id_are_not_neighbours(vectors_with_duplicates):
    x = vectors_with_duplicates
    ids = np.array([f"r{i}" for i in range(len(x))], dtype=object)
    ids[17] = ids[4]  # the same record read twice; row 250 is the same text under another id
    ids[120] = ids[3]
    same = ids[:, None] == ids[None, :]
    want_mnd, want_near = brute_force(x, 0.3, same=same)
    mnd, near = min_neighbour_distances(x, ids=ids, threshold=0.3, block_rows=33, db_block_rows=70)
    np.testing.assert_allclose(mnd, want_mnd, atol=2e-6)
    np.testing.assert_array_equal(near, want_near)
    no_ids = min_neighbour_distances(x, threshold=0.3)[1]
    assert near[4] == no_ids[4] - 1 and mnd[4] < 1e-6  # row 250 still counts


def test_threshold_counts_agree_with_the_reported_distance():
    rng = np.random.default_rng(3)
    base = unit_vectors(1, 16)[0]
    # Rows at controlled distances from `base`: d = 2 - 2cos, cos chosen on a grid around the threshold.
    rows = [base]
    other = unit_vectors(1, 16, seed=5)[0]
    other -= other.dot(base) * base
    other /= np.linalg.norm(other)
    for d in (0.01, 0.049, 0.051, 0.2):
        cos = 1 - d / 2
        rows.append(cos * base + np.sqrt(1 - cos**2) * other)
    x = np.asarray(rows, dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    mnd, near = min_neighbour_distances(x, threshold=0.05)
    assert near[0] == 2  # the rows at 0.01 and 0.049, not 0.051 or 0.2
    np.testing.assert_allclose(mnd[0], 0.01, atol=1e-5)
    assert ((near > 0) == (mnd < 0.05)).all()
    # Anywhere near the threshold, "v > cutoff" is exactly "max(0, 2 - 2v) < threshold".
    for threshold in (0.05, 1e-7, 0.3, 3.9):
        cut = dot_cutoff(threshold)
        values = np.concatenate([rng.uniform(-1, 1, 1000), [cut]]).astype(np.float32)
        for _ in range(50):
            values = np.append(values, np.nextafter(values[-1], np.float32(2)))
        counted = values > cut
        np.testing.assert_array_equal(counted, np.maximum(0.0, 2.0 - 2.0 * values.astype(np.float64)) < threshold)
    assert dot_cutoff(0.0) == np.inf  # nothing is closer than 0


def test_grouped_search_stays_within_each_group(vectors_with_duplicates):
    x = vectors_with_duplicates
    groups = np.where(np.arange(len(x)) % 3 == 0, "slm", "llm")  # interleaved: gathered blocks
    groups[250] = "solo"  # a group of one has no neighbour
    mnd, near = grouped_min_neighbour_distances(x, groups, threshold=0.3, block_rows=40)
    for label in ("slm", "llm"):
        rows = np.flatnonzero(groups == label)
        want_mnd, want_near = brute_force(x[rows], 0.3)
        np.testing.assert_allclose(mnd[rows], want_mnd, atol=2e-6)
        np.testing.assert_array_equal(near[rows], want_near)
    assert np.isnan(mnd[250]) and near[250] == 0
    # Rows 4 and 17 (both "llm") stay duplicates; their copy 250 went to another group and is not counted.
    assert max(mnd[4], mnd[17]) < 1e-6 and near[4] == near[17]


def test_rejected_rows_are_refused_with_their_position_and_id():
    x = unit_vectors(20, 4)
    x[7] = np.nan
    with pytest.raises(ValueError, match=r"row 7 \(id 'r7'\).*NaN"):
        min_neighbour_distances(x, ids=[f"r{i}" for i in range(20)], block_rows=5)
    with pytest.raises(ValueError, match="squared norm 4"):
        min_neighbour_distances(unit_vectors(5, 4) * 2)


def test_summary_quantiles_and_near_duplicate_rows():
    mnd = np.array([0.0, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, np.nan])
    near = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    summary = diversity_summary(mnd, near)
    assert summary["n"] == 10 and summary["near_duplicate_rows"] == 2
    assert summary["mean"] == pytest.approx(0.36)
    assert summary["quantiles"] == pytest.approx(
        {"p10": 0.0, "p25": 0.125, "p50": 0.35, "p75": 0.575, "p90": 0.71})
    empty = diversity_summary(np.array([np.nan]), np.array([0]))
    assert empty["n"] == 0 and empty["mean"] is None and empty["quantiles"]["p50"] is None


@pytest.fixture(scope="module")
def embed() -> Embed:
    return Embed(EmbedArgs(embedder=EmbedderConfig(device="cpu")), torch_threads=2)


def test_embed_stage_with_bundled_minilm(embed):
    batch = seed_batch(
        ["How do I bake a loaf of bread at home?", "How can I bake bread at home?",
         "Explain how a transistor amplifies a signal.", "Rejected row."],
    )
    batch["status"][3] = "rejected"
    out = embed(batch)
    vectors = out["embedding"]
    assert embed.model_name == "all-MiniLM-L6-v2"
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors[:3], axis=1), 1.0, atol=1e-5)
    assert np.isnan(vectors[3]).all()
    mnd, _ = min_neighbour_distances(vectors[:3])
    paraphrase = float(((vectors[0] - vectors[1]) ** 2).sum())
    unrelated = float(((vectors[0] - vectors[2]) ** 2).sum())
    assert paraphrase < 0.3 and unrelated > 1.4  # measured: 0.10 and 1.61
    assert mnd[0] == pytest.approx(paraphrase, abs=1e-5) and mnd[2] > 1.4
    # The embedded text is the seed's instruction + "\n" + input.
    again = embed.embedder.encode([embedding_text("How do I bake a loaf of bread at home?", "")])
    np.testing.assert_allclose(again[0], vectors[0], atol=1e-5)
