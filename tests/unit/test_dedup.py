"""Deduplication (dedup.*): exact and near duplicates of a round found by two group-bys (here the in-process
executor's), the first occurrence kept, every dropped row in rejects as `duplicate` naming the row it duplicates."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.config import ConfigError, DedupConfig, compose
from engine.recipes import get_recipe, specs
from engine.recipes.base import Recipe
from engine.recipes.steps import Deduplicate, SelectTop, grouped_in_process
from engine.recipes.spec import Resources
from engine.run import pipeline
from engine.stages.curation import dedup
from engine.state.storage import Storage
from tests.unit.test_pipeline import InProcess

VOCAB = [f"{a}{b}" for a in ("ka", "lo", "mi", "nu", "pe", "ri", "so", "tu", "va", "ze") for b in
         ("bar", "cen", "dol", "fim", "gur", "hal", "jot", "kes", "lum", "mor", "nix", "pov", "quo", "rat", "sil")]


def sentence(rng: np.random.Generator, words: int = 40) -> list[str]:
    return list(rng.choice(VOCAB, words))


def planted_rows() -> tuple[list[dict], dict[int, int]]:
    """Seed rows with planted duplicates; returns the rows and {position of a copy: position of the row it
    duplicates (the earlier one, which must be kept)}."""
    rng = np.random.default_rng(7)
    texts = [sentence(rng) for _ in range(14)]
    rows = [{"instruction": " ".join(t), "input": "", "output": ""} for t in texts]
    expected = {}
    # an exact duplicate in another case, punctuation and spacing
    rows.append({"instruction": "  " + " ".join(texts[2]).upper().replace(" ", ",  ", 3) + "!", "input": "",
                 "output": ""})
    expected[len(rows) - 1] = 2
    # the same instruction with another input (as long) is not a duplicate
    rows.append({"instruction": " ".join(texts[3]), "input": " ".join(sentence(rng)), "output": ""})
    # a near duplicate: one word changed in 40 (word 3-shingles: Jaccard 35/41)
    near = list(texts[5])
    near[20] = "zzzword"
    rows.append({"instruction": " ".join(near), "input": "", "output": ""})
    expected[len(rows) - 1] = 5
    # a row that shares most words but not enough shingles: six words changed (Jaccard well under 0.8)
    far = list(texts[6])
    for i in (4, 10, 16, 22, 28, 34):
        far[i] = "yyyword"
    rows.append({"instruction": " ".join(far), "input": "", "output": ""})
    # a near duplicate placed before its original: the earlier one (position 0 here) is kept
    late = sentence(rng)
    early = list(late)
    early[10] = "xxxword"
    rows.insert(0, {"instruction": " ".join(early), "input": "", "output": ""})
    expected = {copy + 1: kept + 1 for copy, kept in expected.items()}  # everything moved one place down
    rows.append({"instruction": " ".join(late), "input": "", "output": ""})
    expected[len(rows) - 1] = 0
    # three exact copies of one row: both later copies name the first
    rows.append(dict(rows[9]))
    expected[len(rows) - 1] = 9
    rows.append(dict(rows[9]))
    expected[len(rows) - 1] = 9
    return rows, expected


class ScoreSeeds(Recipe):
    """The seeds answered and scored, without evolving them: the final round's rows keep the seeds' text."""

    name = "evol_instruct"

    def num_rounds(self) -> int:
        return 1

    def stages(self, round_num, decisions):
        return [specs.respond(self.cfg, round_num), specs.score(self.cfg, round_num)]


@pytest.fixture()
def dedup_cfg(tmp_path, monkeypatch):
    rows, _ = planted_rows()
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = compose(["model=echo", "scorer=echo", "data=file", f"data.path={seeds}", "dedup.enabled=true"])
    cfg.run.output_dir = str(tmp_path / "out")
    cfg.run.progress = "off"
    monkeypatch.setattr(pipeline, "get_recipe", lambda c: ScoreSeeds(c))
    return cfg


def outcome(out: Path) -> tuple[dict, dict[int, tuple[int, str]]]:
    """(seed position -> id of every row, {dropped position: (kept position, detail)}) of a finished run."""
    kept = pq.read_table(out / "data" / "round_1").to_pylist()
    rejects = [json.loads(line) for line in open(out / "rejects" / "round_1.jsonl")]
    ids = {r["seed_index"]: r["id"] for r in kept + rejects}
    position = {v: k for k, v in ids.items()}
    dropped = {}
    for r in rejects:
        assert r["reason"] == "duplicate" and r["rejected_at"] == "dedup"
        kept_id = r["detail"].split("duplicate of ")[1].split(" ")[0]
        dropped[r["seed_index"]] = (position[kept_id], r["detail"])
    assert {r["id"] for r in kept}.isdisjoint(r["id"] for r in rejects)
    assert all(k not in dropped for k in (position[r["id"]] for r in kept))
    return ids, dropped


def test_planted_duplicates_go_to_rejects_naming_the_first_occurrence(dedup_cfg):
    rows, expected = planted_rows()
    summary = pipeline.run(dedup_cfg, InProcess())
    assert summary["rows_conserved"] and summary["rows_in"] == len(rows)
    ids, dropped = outcome(Path(dedup_cfg.run.output_dir))
    assert {copy: kept for copy, (kept, _) in dropped.items()} == expected  # distinct rows all kept
    assert summary["rows_out"] == len(rows) - len(expected)
    assert all(kept not in dropped for kept, _ in dropped.values())  # every drop names a kept row
    assert "(exact)" in dropped[15][1] and "(near, Jaccard 0.854)" in dropped[17][1]
    assert summary["dedup"]["exact"] == 3 and summary["dedup"]["near"] == 2 and summary["dedup"]["threshold"] == 0.8
    assert summary["per_round"][0]["steps"]["dedup"] == summary["dedup"]
    assert summary["rejected_by_reason"] == {"duplicate": 5}
    data_columns = pq.read_table(Path(dedup_cfg.run.output_dir) / "data" / "round_1").column_names
    assert not [c for c in data_columns if c.startswith("dedup")]


def test_the_drops_are_the_same_for_any_sharding(dedup_cfg, tmp_path):
    results = []
    for shard_rows in (3, 1000):
        dedup_cfg.run.shard_rows = shard_rows
        dedup_cfg.run.output_dir = str(tmp_path / f"out-{shard_rows}")
        pipeline.run(dedup_cfg, InProcess())
        results.append(outcome(Path(dedup_cfg.run.output_dir))[1])
    assert results[0] == results[1] and len(results[0]) == 5


def test_exact_only_keeps_near_duplicates_and_dedup_runs_before_the_cut(dedup_cfg):
    dedup_cfg.dedup.near = False
    dedup_cfg.select.fraction = 0.5
    summary = pipeline.run(dedup_cfg, InProcess())
    _, dropped = outcome_of_duplicates(Path(dedup_cfg.run.output_dir))
    assert sorted(dropped) == [15, 20, 21]  # the exact copies only
    assert summary["dedup"]["near"] == 0 and summary["dedup"]["bands"] == 0
    assert summary["selection"]["candidates"] == len(planted_rows()[0]) - 3  # the cut saw the deduplicated rows


def outcome_of_duplicates(out: Path) -> tuple[None, dict[int, str]]:
    rejects = [json.loads(line) for line in open(out / "rejects" / "round_1.jsonl")]
    return None, {r["seed_index"]: r["detail"] for r in rejects if r["reason"] == "duplicate"}


def test_the_recipes_run_dedup_before_the_cut_only_when_asked(tmp_path):
    cfg = compose(["model=echo", "scorer=echo", "select.fraction=0.5"])
    recipe = get_recipe(cfg)
    assert [type(s) for s in recipe.after_round(1, final=True)] == [SelectTop]  # the paper's recipes: off
    cfg.dedup.enabled = True
    assert [type(s) for s in recipe.after_round(1, final=True)] == [Deduplicate, SelectTop]
    assert recipe.after_round(1, final=False) == []
    cfg.dedup.enabled = None
    recipe.dedup_default = True  # a recipe that deduplicates by default (recipe=curate)
    assert [type(s) for s in recipe.after_round(1, final=True)] == [Deduplicate, SelectTop]
    cfg.dedup.enabled = False
    assert [type(s) for s in recipe.after_round(1, final=True)] == [SelectTop]
    assert dedup.dedup_active(DedupConfig(), True) and not dedup.dedup_active(DedupConfig(), False)


@pytest.mark.parametrize("override, message", [
    ({"threshold": 0.0}, "dedup.threshold"), ({"shingle": "token"}, "dedup.shingle"),
    ({"exact": False, "near": False}, "both false"), ({"num_perm": 1}, "dedup.num_perm"),
    ({"shingle_size": 0}, "dedup.shingle_size"),
])
def test_settings_that_cannot_run_stop_before_any_model(override, message, dedup_cfg):
    for key, value in override.items():
        setattr(dedup_cfg.dedup, key, value)
    with pytest.raises(ConfigError, match=message):
        pipeline.run(dedup_cfg, InProcess())


def test_lsh_bands_are_datasketchs_choice_for_the_threshold():
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=0.8, num_perm=128, weights=(0.02, 0.98))
    assert dedup.lsh_shape(0.8, 128, 0.98) == (lsh.b, lsh.r) == (17, 7)


def test_shingles_and_their_jaccard():
    text = dedup.normalised("One two, THREE four five!", "")
    assert text == dedup.normalised("one two three   four five", "")
    assert dedup.shingles(text, "word", 3) == {b"one two three", b"two three four", b"three four five"}
    assert dedup.shingles(dedup.normalised("Hi", ""), "word", 3) == {b"hi"}  # shorter than one shingle
    assert dedup.shingles(dedup.normalised("", ""), "word", 3) == set()
    assert dedup.shingles(dedup.normalised("abcd", ""), "char", 3) == {b"abc", b"bcd"}
    assert dedup.jaccard({1, 2, 3}, {2, 3, 4}) == 0.5
    assert dedup.normalised("a", "b") != dedup.normalised("a b", "")  # the input stays apart


def table_of(texts: list[str], positions: list[int] | None = None) -> pa.Table:
    n = len(texts)
    return pa.table({"status": ["ok"] * n, "id": [f"row{i:03d}" for i in range(n)],
                     "seed_index": positions if positions is not None else list(range(n)),
                     "instruction": texts, "input": [""] * n})


def plan_in_process(table: pa.Table, cfg: DedupConfig, tmp_path: Path):
    """The Deduplicate step's plan over one Parquet file, grouped in process."""
    path = tmp_path / "rows.parquet"
    pq.write_table(table, path)

    class Files:
        def grouped(self, files, columns, explode, key, reduce):
            return grouped_in_process(pq.read_table(files[0], columns=columns), explode, key, reduce)

    return Deduplicate(cfg, Resources()).plan([path], Storage.resolve(tmp_path), Files())


def test_a_big_bucket_of_exact_copies_names_the_first_copy(tmp_path):
    rng = np.random.default_rng(3)
    base = " ".join(sentence(rng))
    others = [" ".join(sentence(rng)) for _ in range(5)]
    texts = others[:2] + [base] * 12 + others[2:]
    plan = plan_in_process(table_of(texts), DedupConfig(), tmp_path)
    assert dedup.ALL_PAIRS_MAX < 12
    assert {k: v[:2] for k, v in plan.drops.items()} == {f"row{i:03d}": ("row002", "exact") for i in range(3, 14)}


def test_ties_on_seed_position_fall_to_the_id_and_rejected_rows_take_no_part(tmp_path):
    rng = np.random.default_rng(4)
    text = " ".join(sentence(rng))
    table = table_of([text, text, text], positions=[5, 5, 1])
    table = table.set_column(0, "status", pa.array(["ok", "ok", "rejected"]))
    plan = plan_in_process(table, DedupConfig(), tmp_path)
    assert {k: v[0] for k, v in plan.drops.items()} == {"row001": "row000"}


def test_a_row_like_a_dropped_row_but_not_the_kept_one_is_kept():
    confirmed = pa.table({"first": ["a", "b"], "first_pos": [0, 1], "other": ["b", "c"], "other_pos": [1, 2],
                          "kind": ["near", "near"], "jaccard": [0.85, 0.85]})
    assert dedup.plan_drops(confirmed) == {"b": ("a", "near", 0.85)}


def test_the_stage_rejects_only_ok_rows_of_the_plan():
    plan = dedup.DedupPlan({"r1": ("r0", "exact", 1.0), "r2": ("r0", "near", 0.9)})
    batch = {"id": np.array(["r0", "r1", "r2"], dtype=object), "status": np.array(["ok", "ok", "rejected"], dtype=object),
             "reason": np.array(["", "", "too_long"], dtype=object), "detail": np.array(["", "", "x"], dtype=object),
             "rejected_at": np.array(["", "", "read"], dtype=object)}
    out = dedup.DropDuplicates(plan)(batch)
    assert list(out["status"]) == ["ok", "rejected", "rejected"]
    assert list(out["reason"]) == ["", "duplicate", "too_long"] and out["detail"][1] == "duplicate of r0 (exact)"
