"""Seed readers: every row slot becomes a valid or a rejected record, with file:line:field in the detail."""

import json
import logging

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.read.readers import REJECT_LOG_LIMIT, InputError, count_rows, iter_records, list_input_files
from engine.read.validate import records_from_rows
from engine.rows.records import ALPACA_FIELDS, LINEAGE_FIELDS, STATUS_FIELDS, TEXT_FIELDS, seed_row_id

ROWS = [
    {"instruction": "Name a colour.", "input": "", "output": "Blue."},
    {"instruction": "Translate to French.", "input": "cat", "output": "chat"},
    {"instruction": "Add the numbers.", "input": "2 3", "output": ""},
]


def read_all(path, offset=0, batch_rows=1000):
    """All batches of one file joined into one column dict, checking each batch's schema on the way."""
    batches = list(iter_records(path, offset, batch_rows))
    for batch in batches:
        assert tuple(batch) == TEXT_FIELDS + LINEAGE_FIELDS + STATUS_FIELDS
        assert len({len(values) for values in batch.values()}) == 1
        for name in ("seed_index", "round", "source_line"):
            assert batch[name].dtype == np.int64
        for name in ("instruction", "id", "status", "detail"):
            assert batch[name].dtype == object
    if not batches:
        return {}
    return {name: np.concatenate([b[name] for b in batches]) for name in batches[0]}


def rows_of(records):
    return [dict(zip(records, values)) for values in zip(*records.values())] if records else []


def alpaca(records):
    return [{k: r[k] for k in ALPACA_FIELDS} for r in rows_of(records) if r["status"] == "ok"]


def write_jsonl(path, lines):
    path.write_bytes(b"".join((line if isinstance(line, bytes) else line.encode()) + b"\n" for line in lines))
    return path


def test_valid_jsonl_rows_have_lineage_and_positions(tmp_path):
    path = write_jsonl(tmp_path / "seeds.jsonl", [json.dumps(ROWS[0]), "", json.dumps({"instruction": "Only this."})])
    rows = rows_of(read_all(path, offset=5))
    assert count_rows(path) == 2 == len(rows)
    first, second = rows
    assert first["instruction"] == "Name a colour." and first["output"] == "Blue."
    assert first["id"] == first["seed_id"] == seed_row_id("Name a colour.", "", 5)
    assert (first["seed_index"], first["source_line"], first["round"]) == (5, 1, 0)
    assert first["source_file"] == str(path)
    for name in ("parent_id", "method", "evolver", "parent_instruction", "reason", "detail", "rejected_at"):
        assert first[name] == ""
    assert first["status"] == "ok"
    # the blank line is not a slot: the next row keeps position 6 but reports its physical line 3
    assert (second["seed_index"], second["source_line"]) == (6, 3)
    assert second["input"] == "" and second["output"] == ""  # missing optional fields become ""


BAD_LINES = [
    # (line content, reason, words the detail must name)
    (b'{"instruction": "Broken", "input": "x" "output": ""}', "malformed_json", ["malformed JSON", "column"]),
    (b'{"input": "no instruction"}', "missing_field", ["'instruction'"]),
    (b'{"instruction": 42}', "not_a_string", ["'instruction'", "an int"]),
    (b'{"instruction": ""}', "empty_instruction", ["'instruction'"]),
    (b'{"instruction": "   \\t "}', "empty_instruction", ["'instruction'"]),
    (b'{"instruction": "caf\xe9 latte"}', "invalid_utf8", ["invalid UTF-8", "byte 21"]),
    (b'{"instruction": "a\\u0000b"}', "nul_character", ["'instruction'", "NUL"]),
    (b'{"instruction": "Say hi.", "input": ["a", "b"]}', "not_a_string", ["'input'", "a list"]),
    (b'{"instruction": "Say hi.", "output": 3.5}', "not_a_string", ["'output'", "a float"]),
    (b'["a", "list"]', "not_an_object", ["a list"]),
    (b'{"instruction": "\\ud800 lone"}', "invalid_utf8", ["'instruction'", "surrogate"]),
    (b'{"instruction": "Fine.", "input": "x\\udc80"}', "invalid_utf8", ["'input'", "surrogate"]),
]


@pytest.mark.parametrize("bad, reason, words", BAD_LINES, ids=[case[1] for case in BAD_LINES])
def test_bad_jsonl_line_is_rejected_and_neighbours_survive(tmp_path, bad, reason, words):
    good = [json.dumps(row).encode() for row in ROWS]
    path = write_jsonl(tmp_path / "seeds.jsonl", [good[0], good[1], bad, good[2]])
    rows = rows_of(read_all(path))
    assert len(rows) == count_rows(path) == 4
    assert [r["status"] for r in rows] == ["ok", "ok", "rejected", "ok"]
    assert alpaca({k: np.array([r[k] for r in rows], dtype=object) for k in rows[0]}) == ROWS
    rejected = rows[2]
    assert rejected["reason"] == reason and rejected["rejected_at"] == "read"
    assert rejected["detail"].startswith("seeds.jsonl:3: ")
    for word in words:
        assert word in rejected["detail"]
    assert (rejected["seed_index"], rejected["source_line"]) == (2, 3)
    assert rejected["id"] == seed_row_id(rejected["instruction"], rejected["input"], 2)
    for name in ALPACA_FIELDS:  # recovered text must stay writable as UTF-8
        rejected[name].encode("utf-8")


def test_rejected_row_keeps_recoverable_text(tmp_path):
    path = write_jsonl(tmp_path / "seeds.jsonl", [json.dumps({"instruction": "Keep me.", "input": 7, "output": "o"})])
    (row,) = rows_of(read_all(path))
    assert (row["reason"], row["instruction"], row["input"], row["output"]) == ("not_a_string", "Keep me.", "", "o")
    assert row["detail"] == "seeds.jsonl:1: field 'input' is an int, expected a string"


def test_null_optional_fields_become_empty_and_extra_keys_are_ignored(tmp_path):
    line = json.dumps({"instruction": "Do it.", "input": None, "output": None, "history": [], "id": 5})
    (row,) = rows_of(read_all(write_jsonl(tmp_path / "s.jsonl", [line])))
    assert (row["status"], row["input"], row["output"]) == ("ok", "", "")


def test_rows_are_conserved_across_small_batches(tmp_path):
    lines = [json.dumps({"instruction": f"Task {i}."}) if i % 3 else "{oops" for i in range(25)]
    path = write_jsonl(tmp_path / "seeds.jsonl", lines)
    batches = list(iter_records(path, 0, batch_rows=4))
    assert [len(b["id"]) for b in batches] == [4] * 6 + [1]
    records = read_all(path, batch_rows=4)
    ok = int((records["status"] == "ok").sum())
    rejected = int((records["status"] == "rejected").sum())
    assert (ok, rejected) == (16, 9)
    assert ok + rejected == count_rows(path) == 25
    assert list(records["seed_index"]) == list(range(25))
    assert len(set(records["id"])) == 25


def test_json_parquet_and_hf_read_the_same_rows_as_jsonl(tmp_path):
    datasets = pytest.importorskip("datasets")
    jsonl = write_jsonl(tmp_path / "seeds.jsonl", [json.dumps(row) for row in ROWS])
    as_json = tmp_path / "seeds.json"
    as_json.write_text(json.dumps(ROWS, indent=2))
    as_parquet = tmp_path / "seeds.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), as_parquet)
    as_hf = tmp_path / "seeds_hf"
    datasets.Dataset.from_list(ROWS).save_to_disk(str(as_hf))

    expected = read_all(jsonl)
    for path in (as_json, as_parquet, as_hf):
        got = read_all(path)
        assert count_rows(path) == 3
        assert alpaca(got) == ROWS
        assert list(got["id"]) == list(expected["id"])
        assert set(got["status"]) == {"ok"}
    assert list(read_all(as_parquet)["source_line"]) == [1, 2, 3]
    assert list(read_all(as_hf)["source_line"]) == [1, 2, 3]
    # json items report the line each item starts on
    assert list(read_all(as_json)["source_line"]) == [2, 7, 12]
    assert list_input_files(as_hf) == ([as_hf], [])


def test_json_list_with_bad_items(tmp_path):
    path = tmp_path / "seeds.json"
    path.write_text('[\n  {"instruction": "Fine."},\n  "just a string",\n  {"instruction": 1},\n  {"output": "x"}\n]\n')
    rows = rows_of(read_all(path))
    assert count_rows(path) == 4 == len(rows)
    assert [r["reason"] for r in rows] == ["", "not_an_object", "not_a_string", "missing_field"]
    assert rows[1]["detail"] == "seeds.json:3: the value is a string, expected a JSON object"
    assert rows[2]["detail"].startswith("seeds.json:4: field 'instruction'")


def test_malformed_or_non_list_json_file_is_one_rejected_row(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('[\n  {"instruction": "a"},\n  {"instruction": "b",}\n]\n')
    (row,) = rows_of(read_all(broken))
    assert count_rows(broken) == 1
    assert row["reason"] == "malformed_json" and row["detail"].startswith("broken.json:3: malformed JSON (")
    assert row["source_line"] == 3

    single = tmp_path / "single.json"
    single.write_text('\n{"instruction": "Alone."}')
    (row,) = rows_of(read_all(single))
    assert count_rows(single) == 1
    assert (row["reason"], row["source_line"], row["instruction"]) == ("not_an_object", 2, "Alone.")
    assert row["detail"] == "single.json:2: the file holds an object, expected a JSON list of objects"

    latin = tmp_path / "latin.json"
    latin.write_bytes(b'[\n{"instruction": "caf\xe9"}]')
    (row,) = rows_of(read_all(latin))
    assert (row["reason"], row["source_line"]) == ("invalid_utf8", 2)
    assert row["detail"] == "latin.json:2: invalid UTF-8 at byte 21 of the line"


def test_table_without_instruction_column_rejects_every_row(tmp_path):
    path = tmp_path / "seeds.parquet"
    pq.write_table(pa.table({"prompt": ["a", "b"], "input": ["x", None]}), path)
    rows = rows_of(read_all(path))
    assert count_rows(path) == 2 == len(rows)
    assert {r["reason"] for r in rows} == {"missing_field"}
    expected = "seeds.parquet:2: field 'instruction' is missing: no 'instruction' column (prompt, input)"
    assert rows[1]["detail"] == expected
    assert [r["input"] for r in rows] == ["x", ""]


def test_parquet_per_row_checks(tmp_path):
    path = tmp_path / "seeds.parquet"
    pq.write_table(pa.table({"instruction": ["Good.", None, " ", "a\x00b"], "output": ["o", "o", "o", "o"]}), path)
    rows = rows_of(read_all(path, batch_rows=2))
    assert [r["reason"] for r in rows] == ["", "missing_field", "empty_instruction", "nul_character"]
    assert rows[1]["detail"] == "seeds.parquet:2: field 'instruction' is null"
    assert [r["source_line"] for r in rows] == [1, 2, 3, 4]

    ints = tmp_path / "ints.parquet"
    pq.write_table(pa.table({"instruction": [1, 2]}), ints)
    assert [r["detail"] for r in rows_of(read_all(ints))] == [
        "ints.parquet:1: field 'instruction' is an int, expected a string",
        "ints.parquet:2: field 'instruction' is an int, expected a string",
    ]


@pytest.mark.parametrize("name", ["empty.jsonl", "empty.json", "empty.parquet", "blank.jsonl"])
def test_empty_file_has_no_rows(tmp_path, name):
    path = tmp_path / name
    path.write_text("\n  \n" if name.startswith("blank") else "")
    assert count_rows(path) == 0
    assert list(iter_records(path, 0)) == []


def test_empty_json_list_has_no_rows(tmp_path):
    path = tmp_path / "seeds.json"
    path.write_text(" [ ] \n")
    assert count_rows(path) == 0 and list(iter_records(path, 0)) == []


def test_utf8_bom_is_accepted(tmp_path):
    path = write_jsonl(tmp_path / "bom.jsonl", [b"\xef\xbb\xbf" + json.dumps(ROWS[0]).encode()])
    assert alpaca(read_all(path)) == ROWS[:1]


def test_unsupported_or_missing_path_raises_input_error(tmp_path):
    xlsx = tmp_path / "seeds.xlsx"
    xlsx.write_text("instruction\nhi\n")
    with pytest.raises(InputError, match=r"seeds\.xlsx.*\.jsonl, \.json, \.parquet, \.csv, \.tsv"):
        list_input_files(xlsx)
    with pytest.raises(InputError, match="nowhere"):
        list_input_files(tmp_path / "nowhere")
    with pytest.raises(InputError, match="seeds.xlsx"):
        list(iter_records(xlsx, 0))
    only_bad = tmp_path / "only_bad"
    only_bad.mkdir()
    (only_bad / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="only_bad"):
        list_input_files(only_bad)


def test_directory_lists_supported_files_recursively(tmp_path):
    datasets = pytest.importorskip("datasets")
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    write_jsonl(root / "b.jsonl", [json.dumps(ROWS[0])])
    (root / "a.json").write_text(json.dumps(ROWS[:2]))
    pq.write_table(pa.Table.from_pylist(ROWS), root / "sub" / "c.parquet")
    datasets.Dataset.from_list(ROWS).save_to_disk(str(root / "sub" / "hf"))
    (root / "README.md").write_text("notes")
    (root / "sub" / "seeds.xlsx").write_text("x")
    (root / ".hidden.jsonl").write_text("{}")

    inputs, skipped = list_input_files(root)
    assert inputs == [root / "a.json", root / "b.jsonl", root / "sub" / "c.parquet", root / "sub" / "hf"]
    assert skipped == [root / "README.md", root / "sub" / "seeds.xlsx"]


def test_positions_continue_across_files(tmp_path):
    first = write_jsonl(tmp_path / "a.jsonl", [json.dumps(ROWS[0]), "{bad", json.dumps(ROWS[1])])
    second = tmp_path / "b.json"
    second.write_text(json.dumps(ROWS))
    offset, seen = 0, []
    for path in (first, second):
        seen += list(read_all(path, offset)["seed_index"])
        offset += count_rows(path)
    assert seen == list(range(6)) and offset == 6


def test_reject_logging_is_capped(tmp_path, caplog):
    path = write_jsonl(tmp_path / "bad.jsonl", ["{nope"] * (REJECT_LOG_LIMIT + 5))
    with caplog.at_level(logging.WARNING, logger="engine.read"):
        assert len(read_all(path)["id"]) == REJECT_LOG_LIMIT + 5
    messages = [r.getMessage() for r in caplog.records if r.name == "engine.read"]
    assert len(messages) == REJECT_LOG_LIMIT + 1
    assert messages[0].startswith("bad.jsonl:1: malformed JSON")
    assert messages[-1] == f"5 more rejected rows in {path} (see rejects)"


def test_records_from_rows_checks_in_memory_rows_like_a_file():
    records = records_from_rows([ROWS[0], {"instruction": 5}], "mem.jsonl", position_offset=10)
    rows = rows_of(records)
    assert tuple(records) == TEXT_FIELDS + LINEAGE_FIELDS + STATUS_FIELDS
    assert rows[0]["id"] == seed_row_id(ROWS[0]["instruction"], "", 10) and rows[0]["status"] == "ok"
    assert rows[1]["detail"] == "mem.jsonl:2: field 'instruction' is an int, expected a string"
    assert {name: len(values) for name, values in records_from_rows([]).items()} == dict.fromkeys(records, 0)


def test_user_ids_are_kept_and_a_repeated_id_is_rejected_naming_the_first(tmp_path):
    from engine.read.readers import ReadPolicy, find_duplicate_ids

    a = write_jsonl(tmp_path / "a.jsonl", [json.dumps({"id": "q1", "instruction": "One."}),
                                           json.dumps({"id": 7, "instruction": "Two."}),
                                           json.dumps({"instruction": "No id."})])
    b = write_jsonl(tmp_path / "b.jsonl", [json.dumps({"id": "q1", "instruction": "Again."}),
                                           json.dumps({"id": [1], "instruction": "Odd id."})])
    duplicates = find_duplicate_ids([(a, 0), (b, 3)])
    assert duplicates == {3: "a.jsonl:1"}
    policy = ReadPolicy(duplicates=duplicates)
    first = rows_of(np_join(iter_records(a, 0, policy=policy)))
    second = rows_of(np_join(iter_records(b, 3, policy=policy)))
    assert [r["id"] for r in first[:2]] == ["q1", "7"] and first[2]["id"].startswith("s0000002-")
    assert second[0]["reason"] == "duplicate_id" and second[0]["id"] == "q1#dup3"
    assert second[0]["detail"] == "b.jsonl:1: field 'id' 'q1' repeats a.jsonl:1"
    assert second[1]["reason"] == "not_a_string" and "field 'id' is a list" in second[1]["detail"]


def test_long_rows_are_rejected_or_truncated_by_policy(tmp_path):
    from engine.read.readers import ReadPolicy

    path = write_jsonl(tmp_path / "long.jsonl", [json.dumps({"instruction": "x" * 1_000_000}),
                                                 json.dumps({"instruction": "short"})])
    rejected = rows_of(np_join(iter_records(path, 0, policy=ReadPolicy(max_chars=1000))))
    assert rejected[0]["reason"] == "too_long" and "1000000 characters" in rejected[0]["detail"]
    assert rejected[0]["detail"].startswith("long.jsonl:1: ") and rejected[1]["status"] == "ok"
    cut = rows_of(np_join(iter_records(path, 0, policy=ReadPolicy(max_chars=1000, long_rows="truncate"))))
    assert cut[0]["status"] == "ok" and len(cut[0]["instruction"]) == 1000
    assert "truncated" in cut[0]["detail"]
    with pytest.raises(ValueError, match="long_rows"):
        ReadPolicy(long_rows="ignore")


def np_join(batches):
    batches = list(batches)
    return {name: np.concatenate([b[name] for b in batches]) for name in batches[0]}


def test_seeds_on_an_object_store_uri_are_refused_in_one_sentence():
    from engine.config import Config
    from engine.read.seeds import seed_source

    cfg = Config()
    cfg.data.path = "s3://bucket/seeds.jsonl"
    with pytest.raises(InputError, match=r"data.path=s3://bucket/seeds.jsonl: .*local or mounted path"):
        seed_source(cfg)
