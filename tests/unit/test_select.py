"""Selection: a global, deterministic cut whatever the sharding, and the paper's baselines."""

import numpy as np
import pytest

from engine.config import ConfigError, SelectConfig
from engine.stages.scoring.select import check_select, keep_mask, plan_cut


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
