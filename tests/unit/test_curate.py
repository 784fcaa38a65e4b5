"""recipe=curate without Ray: an existing data set answered where asked, scored and selected, every row kept or
rejected with a reason (the in-process executor of test_pipeline.py; echo models)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.config import ConfigError, compose
from engine.recipes import get_recipe
from engine.run import pipeline
from tests.unit.test_pipeline import InProcess

DEMO = Path(__file__).resolve().parents[2] / "engine" / "data" / "curate_demo.jsonl"


def _rows(folder: Path) -> list[dict]:
    return pa.concat_tables(pq.read_table(f) for f in sorted(folder.glob("*.parquet"))).to_pylist()


def _rejects(out: Path) -> list[dict]:
    return [json.loads(line) for f in sorted((out / "rejects").glob("*.jsonl")) for line in open(f)]


def _run(tmp_path, *overrides):
    cfg = compose(["experiment=curate", "model=echo", "scorer=echo", *overrides])
    cfg.run.output_dir, cfg.run.progress = str(tmp_path / "out"), "off"
    return cfg, pipeline.run(cfg, InProcess())


def _unanswered() -> set[str]:
    return {json.loads(line)["instruction"] for line in open(DEMO) if not json.loads(line)["output"]}


def test_missing_answers_only_the_rows_without_an_output(tmp_path):
    cfg, summary = _run(tmp_path, "select.fraction=null")
    out = Path(cfg.run.output_dir)
    rows = _rows(out / "data" / f"round_{summary['rounds_completed']}")
    assert summary["rows_conserved"] and summary["rows_in"] == 77 == len(rows) + len(_rejects(out))
    answered = {r["instruction"] for r in rows if r["responder"]}
    assert answered == _unanswered() and len(answered) == 8
    for r in rows:
        assert r["given_output"] == ("" if r["instruction"] in answered else r["output"])
        assert r["output"].strip() and r["ifd"] == r["ifd"]  # answered and scored (not NaN)


def test_never_scores_rows_as_they_are_and_rejects_rows_without_an_output(tmp_path):
    cfg, summary = _run(tmp_path, "curate.respond=never", "select.fraction=null")
    out = Path(cfg.run.output_dir)
    no_output = [r for r in _rejects(out) if r["reason"] == "no_output"]
    assert {r["instruction"] for r in no_output} == _unanswered()
    assert all("curate_demo.jsonl:" in r["detail"] and "curate.respond=missing" in r["detail"] for r in no_output)
    rows = _rows(out / "data" / f"round_{summary['rounds_completed']}")
    assert len(rows) == 77 - 8 - 8 and not any(r.get("responder") for r in rows)  # nothing answered


def test_always_answers_every_row_and_keeps_the_given_answer(tmp_path):
    cfg, summary = _run(tmp_path, "curate.respond=always", "select.fraction=null")
    rows = _rows(Path(cfg.run.output_dir) / "data" / f"round_{summary['rounds_completed']}")
    given = {json.loads(line)["instruction"]: json.loads(line)["output"] for line in open(DEMO)}
    assert rows and all(r["responder"] == "echo" for r in rows)
    assert all(r["given_output"] == given[r["instruction"]] for r in rows)


def test_selection_keeps_the_top_half_by_ic_ifd(tmp_path):
    cfg, summary = _run(tmp_path)
    out = Path(cfg.run.output_dir)
    kept = _rows(out / "data" / f"round_{summary['rounds_completed']}")
    cut = [r for r in _rejects(out) if r["reason"] == "not_selected"]
    assert summary["selection"]["kept"] == len(kept) and len(kept) + len(cut) == 77 - 8  # 8 duplicates
    assert min(r["ic_ifd"] for r in kept) >= max(r["ic_ifd"] for r in cut)


def test_an_unknown_respond_mode_stops_before_anything_runs():
    with pytest.raises(ConfigError, match="curate.respond='sometimes'"):
        get_recipe(compose(["recipe=curate", "curate.respond=sometimes"]))


def test_the_planted_duplicates_are_dropped_before_anything_answers_them(tmp_path):
    """The shipped rows' 5 exact and 3 near copies (Jaccard >= 0.8) go to rejects in the dedup phase, naming the
    first occurrence; the near copy at Jaccard 0.79 is kept."""
    cfg, summary = _run(tmp_path, "select.fraction=null")
    out = Path(cfg.run.output_dir)
    duplicates = [r for r in _rejects(out) if r["reason"] == "duplicate"]
    assert summary["curate"]["phases"] == ["dedup", "score"]
    assert sorted(r["source_line"] for r in duplicates) == [21, 34, 54, 72, 73, 74, 75, 76]
    assert all(r["round"] == 0 and not r.get("responder") for r in duplicates)  # never answered nor scored
    first = {r["id"]: r for r in _rows(out / "data" / "round_1")}
    for r in duplicates:
        kept = first[r["detail"].split()[2]]  # "duplicate of <id> (exact|near ...)"
        assert kept["source_line"] < r["source_line"]
    assert any(r["instruction"].startswith("Write a polite and friendly") for r in _rows(out / "data" / "round_2"))


def test_dedup_off_runs_one_phase(tmp_path):
    cfg, summary = _run(tmp_path, "dedup.enabled=false", "select.fraction=null")
    assert summary["curate"]["phases"] == ["score"] and summary["rows_out"] == 77


def test_deduplicate_only(tmp_path):
    cfg, summary = _run(tmp_path, "curate.respond=never", "scoring.enabled=false", "select.fraction=null")
    assert summary["curate"]["phases"] == ["dedup"]
    assert summary["rejected_by_reason"] == {"duplicate": 8, "no_output": 8}
