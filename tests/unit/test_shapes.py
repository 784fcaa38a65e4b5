"""Seed shapes: presets, field mappings with nested paths, `auto` on the common shapes, content-part lists, chat
columns holding text, CSV/TSV, an HF dataset from an offline cache, and the fail-fast schema check's message."""

import json
import logging

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.config import DataConfig, FieldsConfig
from engine.read.inputs import check_schema, hf_cache_files, resolve_shape
from engine.read.readers import InputError, ReadPolicy, count_rows, iter_records
from engine.read.shapes import MISSING, guess_shape, lookup, make_shape, overrides_for
from engine.read.validate import records_from_rows
from engine.state.manifest import Manifest, ResumeRefused


def read(rows, shape):
    records = records_from_rows(rows, "seeds.jsonl", policy=ReadPolicy(shape=shape))
    return [dict(zip(records, values)) for values in zip(*records.values())]


def texts(row):
    return row["instruction"], row["input"], row["output"], row["system"]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def read_file(path, shape):
    batches = list(iter_records(path, 0, policy=ReadPolicy(shape=shape)))
    return [dict(zip(b, values)) for b in batches for values in zip(*b.values())]


def test_lookup_follows_keys_and_list_indexes():
    row = {"instances": [{"input": "a", "output": "b"}], "meta.id": 7, "deep": {"x": [None, {"y": "z"}]}}
    assert lookup(row, "instances.0.input") == "a"
    assert lookup(row, "deep.x.1.y") == "z" and lookup(row, "deep.x.0") is None
    assert lookup(row, "meta.id") == 7  # a key holding dots is found as it is
    for path in ("instances.1.input", "instances.x", "deep.x.1.y.z", "nowhere", "instances.-1.input"):
        assert lookup(row, path) is MISSING


PRESET_ROWS = {
    "alpaca": ({"instruction": "Sum.", "input": "2 3", "output": "5", "system": "Be brief."},
               ("Sum.", "2 3", "5", "Be brief.")),
    "dolly": ({"instruction": "Sum.", "context": "2 3", "response": "5", "category": "math"}, ("Sum.", "2 3", "5", "")),
    "sharegpt": ({"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Sum 2 3."},
                                    {"from": "gpt", "value": "5"}, {"from": "human", "value": "And 4?"}]},
                 ("Sum 2 3.", "", "5", "Be brief.")),
    "messages": ({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Sum 2 3."},
                               {"role": "assistant", "content": "5"}]}, ("Sum 2 3.", "", "5", "Be brief.")),
}


@pytest.mark.parametrize("fmt", list(PRESET_ROWS))
def test_each_preset_fills_the_record_fields(fmt):
    row, expected = PRESET_ROWS[fmt]
    (record,) = read([row], make_shape(fmt, {}))
    assert record["status"] == "ok" and texts(record) == expected


def test_conversation_problems_are_row_level_rejects_naming_the_field():
    shape = make_shape("sharegpt", {})
    rows = read([
        {"conversations": [{"from": "gpt", "value": "Hello!"}, {"from": "human", "value": "Hi."},
                           {"from": "gpt", "value": "How can I help?"}]},
        {"conversations": [{"from": "gpt", "value": "Only me."}]},
        {"conversations": "not a list"},
        {"conversations": ["a string turn"]},
        {"conversations": [{"from": "human", "value": 5}]},
        {"conversations": [{"from": "human", "value": "Hi."}], "system": "From the column."},
        {"other": 1},
    ], shape)
    assert texts(rows[0]) == ("Hi.", "", "How can I help?", "")  # the greeting before the user is no answer
    assert [r["reason"] for r in rows] == ["", "missing_field", "bad_conversation", "bad_conversation",
                                          "not_a_string", "", "missing_field"]
    assert rows[1]["detail"] == "seeds.jsonl:2: field 'conversations' has no human/user turn (roles found: gpt)"
    assert rows[2]["detail"] == "seeds.jsonl:3: field 'conversations' is a string, expected a list of turns"
    assert rows[3]["detail"] == "seeds.jsonl:4: turn 1 of 'conversations' is a string, expected an object"
    assert "'value' of the first human turn in 'conversations' is an int" in rows[4]["detail"]
    assert rows[5]["system"] == "From the column." and rows[5]["output"] == ""
    assert rows[6]["detail"] == "seeds.jsonl:7: field 'conversations' is missing"


def test_field_mapping_reads_nested_paths_and_leaves_missing_optional_fields_empty():
    shape = make_shape("alpaca", {"instruction": "task.text", "input": "instances.0.input",
                                  "output": "instances.0.output", "id": "meta.uid"})
    rows = read([
        {"task": {"text": "Reverse it."}, "instances": [{"input": "abc", "output": "cba"}], "meta": {"uid": "r1"}},
        {"task": {"text": "No instances."}},
        {"task": {"text": "Empty list."}, "instances": []},
        {"task": {}, "instances": [{"input": "x"}]},
    ], shape)
    assert texts(rows[0]) == ("Reverse it.", "abc", "cba", "") and rows[0]["id"] == "r1"
    assert [r["status"] for r in rows] == ["ok", "ok", "ok", "rejected"]
    assert texts(rows[1])[:3] == ("No instances.", "", "") and texts(rows[2])[:3] == ("Empty list.", "", "")
    assert rows[3]["detail"] == "seeds.jsonl:4: field 'task.text' is missing"


def test_mapping_errors_name_the_option():
    with pytest.raises(ValueError, match="data.format must be one of"):
        make_shape("csv", {})
    with pytest.raises(ValueError, match="data.fields has no prompt"):
        make_shape("alpaca", {"prompt": "x"})
    with pytest.raises(ValueError, match="data.fields.conversation needs data.format=sharegpt or messages"):
        make_shape("alpaca", {"conversation": "turns"})


AUTO_SHAPES = [
    # (name, first row, what auto must read from it: instruction, input, output, system)
    ("capitalised", {"Instruction": "Name it.", "Input": "a cat", "Output": "Tom"}, ("Name it.", "a cat", "Tom", "")),
    ("prompt_response", {"prompt": "Say hi.", "response": "Hi."}, ("Say hi.", "", "Hi.", "")),
    ("question_answer", {"question": "2+2?", "answer": "4", "id": 9}, ("2+2?", "", "4", "")),
    ("query_response", {"query": "Capital of France?", "response": "Paris"}, ("Capital of France?", "", "Paris", "")),
    ("text_only", {"text": "Write a haiku."}, ("Write a haiku.", "", "", "")),
    ("prompt_completion", {"PROMPT": "Count.", "Completion": "1 2 3"}, ("Count.", "", "1 2 3", "")),
    ("dolly", {"instruction": "Sum.", "context": "2 3", "response": "5", "category": "qa"}, ("Sum.", "2 3", "5", "")),
    ("alpaca", {"instruction": "Sum.", "input": "2 3", "output": "5"}, ("Sum.", "2 3", "5", "")),
    ("input_output", {"input": "Translate: chat", "output": "cat"}, ("Translate: chat", "", "cat", "")),
    ("instances", {"instruction": "Reverse.", "instances": [{"input": "ab", "output": "ba"}]},
     ("Reverse.", "ab", "ba", "")),
    ("sharegpt", PRESET_ROWS["sharegpt"][0], PRESET_ROWS["sharegpt"][1]),
    ("messages", PRESET_ROWS["messages"][0], PRESET_ROWS["messages"][1]),
    ("renamed_conversation", {"dialog": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Yo"}]},
     ("Hi?", "", "Yo", "")),
    ("content_parts", {"messages": [{"role": "user", "content": [{"type": "text", "text": "Sum 2 3."}]},
                                    {"role": "assistant", "content": [{"type": "text", "text": "5"}]}]},
     ("Sum 2 3.", "", "5", "")),
    ("string_conversations", {"conversations": "Write a limerick.", "source": "lima"},
     ("Write a limerick.", "", "", "")),
    ("string_messages", {"Messages": "Write a limerick.", "id": "m1"}, ("Write a limerick.", "", "", "")),
    ("listed_conversations", {"conversations": ["Write a limerick.", "There once was…", "Again?"], "source": "x"},
     ("Write a limerick.", "", "There once was…", "")),
]


@pytest.mark.parametrize("name, row, expected", AUTO_SHAPES, ids=[case[0] for case in AUTO_SHAPES])
def test_auto_reads_each_common_shape(name, row, expected):
    shape = guess_shape([row])
    (record,) = read([row], shape)
    assert record["status"] == "ok", record["detail"]
    assert texts(record) == expected
    again = make_shape(*_parse_overrides(overrides_for(shape)))  # the override auto would print selects it too
    assert again == shape


def _parse_overrides(text):
    pairs = dict(item.split("=", 1) for item in text.split())
    return pairs.pop("data.format"), {key.removeprefix("data.fields."): value for key, value in pairs.items()}


def test_auto_names_presets_and_keeps_optional_alpaca_fields():
    assert guess_shape([{"instruction": "a", "context": "b", "response": "c"}]) == make_shape("dolly", {})
    assert guess_shape([{"id": "x", "instruction": "a"}]) == make_shape("alpaca", {})  # input/output still read
    assert guess_shape([{"messages": [{"role": "user", "content": "a"}]}]).format == "messages"
    assert guess_shape([{"foo": 1}, "not a row"]) is None
    # both columns and a conversation: the columns win
    assert guess_shape([{"prompt": "a", "response": "b", "messages": [{"role": "user", "content": "a"}]}]).format \
        == "alpaca"


def test_resolve_shape_logs_the_auto_mapping_and_applies_overrides(tmp_path, caplog):
    path = write_jsonl(tmp_path / "s.jsonl", [{"Instruction": "Do.", "Output": "Done.", "extra": "x"}])
    with caplog.at_level(logging.INFO, logger="engine.read"):
        shape = resolve_shape(DataConfig(path=str(path), format="auto"), [path])
    assert shape.path("instruction") == "Instruction" and shape.path("output") == "Output"
    assert "instruction <- Instruction" in caplog.text and "output <- Output" in caplog.text
    mapped = resolve_shape(DataConfig(path=str(path), format="auto", fields=FieldsConfig(input="extra")), [path])
    assert mapped.path("input") == "extra" and mapped.path("instruction") == "Instruction"
    plain = resolve_shape(DataConfig(path=str(path), format="dolly"), [path])
    assert plain == make_shape("dolly", {})


def test_fail_fast_names_the_columns_the_option_and_the_override_that_works(tmp_path):
    path = write_jsonl(tmp_path / "public.jsonl", [{"Instruction": f"Task {i}.", "Input": "", "Output": "o"}
                                                   for i in range(218)])
    data = DataConfig(path=str(path), format="alpaca")
    with pytest.raises(InputError) as err:
        check_schema([path], resolve_shape(data, [path]), data, 100)
    message = str(err.value)
    assert "first 100 rows were all rejected" in message and "field 'instruction' is missing" in message
    assert "Columns found: Instruction, Input, Output." in message
    fix = "data.format=alpaca data.fields.input=Input data.fields.instruction=Instruction data.fields.output=Output"
    assert fix in message and "data.format=auto finds the same" in message
    fixed = make_shape(*_parse_overrides(fix))
    check_schema([path], fixed, data, 100)  # the printed override reads the file
    assert {r["status"] for r in read_file(path, fixed)} == {"ok"}


def test_fail_fast_without_a_guess_names_the_override_for_the_column_holding_text(tmp_path):
    path = write_jsonl(tmp_path / "odd.jsonl", [{"body": "x", "tags": [{"k": 1}]}, {"body": "y"}])
    data = DataConfig(path=str(path), format="auto")
    with pytest.raises(InputError) as err:
        check_schema([path], resolve_shape(data, [path]), data, 100)
    message = str(err.value)
    assert "first 2 rows were all rejected" in message and "Columns found: body, tags[{k}]." in message
    assert message.endswith("each checked against the first rows: data.format=alpaca data.fields.instruction=body "
                            "(reads 2 of 2).")


def test_fail_fast_with_no_text_anywhere_names_the_option(tmp_path):
    path = write_jsonl(tmp_path / "numbers.jsonl", [{"a": 1, "tags": [{"k": 2}]}, {"a": 3, "blank": "  "}])
    data = DataConfig(path=str(path), format="auto")
    with pytest.raises(InputError) as err:
        check_schema([path], resolve_shape(data, [path]), data, 100)
    message = str(err.value)
    assert "Columns found: a, tags[{k}], blank." in message  # 'blank' holds text, but only whitespace: no override
    assert "data.fields.instruction=<column>" in message and "checked against the first rows" not in message


def test_when_auto_cannot_decide_each_candidate_override_is_exact_and_checked_against_the_rows(tmp_path, caplog):
    rows = [{"body": f"Explain tides, part {i}.", "title": f"Tides {i}", "Output": "The moon.", "score": 3,
             "meta": {"note": "n"}, "blank": " ", "rare": "Only here." if i == 0 else None} for i in range(5)]
    path = write_jsonl(tmp_path / "undecided.jsonl", rows)
    data = DataConfig(path=str(path), format="auto")
    shape = resolve_shape(data, [path])
    with pytest.raises(InputError) as err, caplog.at_level(logging.INFO, logger="engine.read"):
        check_schema([path], shape, data, 100)
    message = str(err.value)
    assert "data.format=auto cannot tell which column holds the instruction" in message
    assert "undecided.jsonl:1: field 'instruction' is missing" in caplog.text  # the run's shape: its rejects logged
    assert "field 'blank' is empty" not in caplog.text  # a shape only tried for the message: not logged
    fixes = message.split("each checked against the first rows: ")[1].rstrip(".").split("; ")
    assert fixes == [
        "data.format=alpaca data.fields.instruction=body data.fields.output=Output (reads 5 of 5)",
        "data.format=alpaca data.fields.instruction=title data.fields.output=Output (reads 5 of 5)",
        "data.format=alpaca data.fields.instruction=meta.note data.fields.output=Output (reads 5 of 5)",
        "data.format=alpaca data.fields.instruction=rare data.fields.output=Output (reads 1 of 5)",
    ]  # not score (an int), blank (whitespace), nor Output (auto knows it as the output)
    for fix in fixes:
        fixed = make_shape(*_parse_overrides(fix.split(" (reads")[0]))
        reads = int(fix.split("(reads ")[1].split()[0])
        assert sum(r["status"] == "ok" for r in read_file(path, fixed)) == reads
    body = make_shape(*_parse_overrides(fixes[0].split(" (reads")[0]))
    check_schema([path], body, data, 100)  # the printed override gets past the check
    assert texts(read_file(path, body)[0]) == ("Explain tides, part 0.", "", "The moon.", "")


def test_a_string_conversations_file_read_as_a_conversation_gets_the_exact_override(tmp_path):
    path = write_jsonl(tmp_path / "lima_test.jsonl", [{"conversations": f"Question {i}?", "source": "lima"}
                                                      for i in range(4)])
    data = DataConfig(path=str(path), format="sharegpt")
    with pytest.raises(InputError) as err:
        check_schema([path], resolve_shape(data, [path]), data, 100)
    message = str(err.value)
    assert "field 'conversations' is a string, expected a list of turns" in message
    assert message.endswith("this reads them: data.format=alpaca data.fields.instruction=conversations "
                            "(data.format=auto finds the same)")


def test_fail_fast_leaves_row_level_bad_input_alone(tmp_path):
    mixed = write_jsonl(tmp_path / "mixed.jsonl", [{"instruction": "Good."}] + [{"input": "bad"}] * 150)
    data = DataConfig(path=str(mixed))
    check_schema([mixed], make_shape("alpaca", {}), data, 100)  # one good row among the first 100: no stop
    two_reasons = tmp_path / "two.jsonl"
    two_reasons.write_text('{"input": "x"}\n{not json\n')
    check_schema([two_reasons], make_shape("alpaca", {}), data, 100)
    empty = write_jsonl(tmp_path / "empty.jsonl", [{"instruction": " "}] * 3)  # a row problem, not a schema one
    check_schema([empty], make_shape("alpaca", {}), data, 100)
    late = write_jsonl(tmp_path / "late.jsonl", [{"input": "bad"}] * 5 + [{"instruction": "Good."}])
    check_schema([late], make_shape("alpaca", {}), data, 100)
    with pytest.raises(InputError):
        check_schema([late], make_shape("alpaca", {}), data, 5)  # data.schema_check_rows=5 sees only bad rows
    check_schema([late], make_shape("alpaca", {}), data, 0)  # 0 turns the check off


def test_content_part_lists_are_read_as_their_text_parts_joined_by_a_newline():
    rows = read([
        {"messages": [{"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
                      {"role": "user", "content": [{"type": "text", "text": "Look at this:"},
                                                   {"type": "text", "value": "2 + 3"}, "What is it?"]},
                      {"role": "assistant", "content": [{"type": "output_text", "text": "5"}]}]},
        {"messages": [{"role": "user", "content": [{"text": "No type, still text."}]},
                      {"role": "assistant", "content": "Plain string."}]},
        {"messages": [{"role": "user", "content": []}]},
    ], make_shape("messages", {}))
    assert texts(rows[0]) == ("Look at this:\n2 + 3\nWhat is it?", "", "5", "Be brief.")
    assert texts(rows[1]) == ("No type, still text.", "", "Plain string.", "")
    assert [r["reason"] for r in rows] == ["", "", "empty_instruction"]
    (sharegpt,) = read([{"conversations": [{"from": "human", "value": [{"type": "text", "value": "Hi."}]},
                                           {"from": "gpt", "value": [{"type": "text", "text": "Hello."}]}]}],
                       make_shape("sharegpt", {}))
    assert texts(sharegpt) == ("Hi.", "", "Hello.", "")


def test_a_non_text_part_rejects_its_row_with_the_reason_and_keeps_the_text():
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    rows = read([
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, image]},
                      {"role": "assistant", "content": "A cat."}]},
        {"messages": [{"role": "system", "content": [{"type": "input_audio", "input_audio": {"data": "…"}}]},
                      {"role": "user", "content": "Transcribe it."}]},
        {"messages": [{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello."},
                      {"role": "user", "content": [image]}]},  # a turn the record does not read
        {"messages": [{"role": "user", "content": [7]}]},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": None}]}]},
        {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
    ], make_shape("messages", {}))
    assert [r["reason"] for r in rows] == ["non_text_content", "non_text_content", "", "bad_conversation",
                                           "not_a_string", "bad_conversation"]
    assert rows[0]["detail"] == ("seeds.jsonl:1: part 2 of 'content' of turn 1 in 'messages' is of type 'image_url'; "
                                 "only text parts (text, input_text, output_text) are read")
    assert rows[0]["instruction"] == "What is this?" and rows[0]["output"] == "A cat."  # in the rejects file
    assert rows[1]["instruction"] == "Transcribe it." and "turn 1 in 'messages' is of type 'input_audio'" \
        in rows[1]["detail"]
    assert texts(rows[2]) == ("Hi.", "", "Hello.", "")
    assert rows[3]["detail"] == ("seeds.jsonl:4: part 1 of 'content' of turn 1 in 'messages' is an int, expected an "
                                 "object")
    assert rows[4]["detail"] == ("seeds.jsonl:5: 'text' of part 1 of 'content' of turn 1 in 'messages' is null, "
                                 "expected a string")
    assert rows[5]["detail"] == "seeds.jsonl:6: part 1 of 'content' of turn 1 in 'messages' has no 'text' (keys: type)"


def test_a_file_of_image_rows_is_rejected_row_by_row_not_stopped(tmp_path):
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    path = write_jsonl(tmp_path / "vision.jsonl", [{"messages": [
        {"role": "user", "content": [{"type": "text", "text": f"Describe picture {i}."}, image]}]} for i in range(5)])
    data = DataConfig(path=str(path), format="auto")
    shape = resolve_shape(data, [path])
    check_schema([path], shape, data, 100)  # a row problem, not a schema one: the run goes on, rows to rejects
    assert [r["reason"] for r in read_file(path, shape)] == ["non_text_content"] * 5


def test_auto_logs_why_it_takes_a_chat_column_holding_text_as_the_instruction(tmp_path, caplog):
    path = write_jsonl(tmp_path / "lima_test.jsonl", [{"conversations": f"Question {i}?", "source": "lima"}
                                                      for i in range(3)])
    data = DataConfig(path=str(path), format="auto")
    with caplog.at_level(logging.INFO, logger="engine.read"):
        shape = resolve_shape(data, [path])
    assert shape.path("instruction") == "conversations" and shape.format == "alpaca"
    assert "'conversations' holds a string, not a list of turns: it is the instruction" in caplog.text
    check_schema([path], shape, data, 100)
    assert [texts(r)[0] for r in read_file(path, shape)] == ["Question 0?", "Question 1?", "Question 2?"]
    assert guess_shape([{"conversations": "a"}, {"conversations": ["b"]}]) is None  # mixed: auto does not guess


def test_lima_shaped_parquet_with_a_list_of_strings_is_read_by_auto(tmp_path):
    path = tmp_path / "lima.parquet"
    pq.write_table(pa.Table.from_pylist([{"conversations": ["Why is the sky blue?", "Rayleigh scattering."],
                                          "source": "stackexchange"},
                                         {"conversations": ["Write a haiku."], "source": "lima"}]), path)
    data = DataConfig(path=str(path), format="auto")
    shape = resolve_shape(data, [path])
    assert dict(shape.fields)["instruction"] == "conversations.0" and dict(shape.fields)["output"] == "conversations.1"
    check_schema([path], shape, data, 100)
    assert [texts(r)[:3] for r in read_file(path, shape)] == [("Why is the sky blue?", "", "Rayleigh scattering."),
                                                              ("Write a haiku.", "", "")]


def test_csv_and_tsv_rows_are_read_by_pyarrow_and_bad_lines_rejected(tmp_path):
    csv = tmp_path / "seeds.csv"
    csv.write_bytes(b'\xef\xbb\xbfPrompt,Context,Response\n"Hello, world",,"Hi"\n"Two\nlines",ctx,1.50\n'
                    b'too,many,columns,here\ncaf\xe9,x,y\n , ,\n')
    shape = guess_shape([{"Prompt": "", "Context": "", "Response": ""}])
    rows = read_file(csv, shape)
    assert count_rows(csv) == len(rows) == 5
    assert [texts(r)[:3] for r in rows[:2]] == [("Hello, world", "", "Hi"), ("Two\nlines", "ctx", "1.50")]
    assert [r["reason"] for r in rows] == ["", "", "invalid_utf8", "empty_instruction", "malformed_csv"]
    assert rows[2]["detail"] == "seeds.csv:5: field 'Prompt' is not valid UTF-8" and rows[2]["instruction"] == "caf\ufffd"
    assert rows[4]["detail"] == "seeds.csv:4: malformed CSV line: expected 3 columns, got 4"
    assert [r["source_line"] for r in rows] == [2, 3, 5, 6, 4]  # lines as pyarrow counts them (header = 1)
    tsv = tmp_path / "seeds.tsv"
    tsv.write_text("instruction\tinput\toutput\nSay, hi\t\tHi, there\n")
    (row,) = read_file(tsv, make_shape("alpaca", {}))
    assert texts(row) == ("Say, hi", "", "Hi, there", "")


def test_parquet_nested_columns_are_mapped(tmp_path):
    path = tmp_path / "nested.parquet"
    pq.write_table(pa.Table.from_pylist([{"task": "Reverse.", "instances": [{"input": "ab", "output": "ba"}]},
                                         {"task": "Again.", "instances": []}]), path)
    shape = guess_shape([{"instruction": "", "instances": [{"input": "", "output": ""}]}])
    shape = make_shape("alpaca", {**dict(shape.fields), "instruction": "task"})
    rows = read_file(path, shape)
    assert [texts(r)[:3] for r in rows] == [("Reverse.", "ab", "ba"), ("Again.", "", "")]


def test_conversations_in_parquet_and_a_missing_column_message(tmp_path):
    path = tmp_path / "chats.parquet"
    pq.write_table(pa.Table.from_pylist([PRESET_ROWS["messages"][0]]), path)
    (row,) = read_file(path, make_shape("messages", {}))
    assert texts(row) == PRESET_ROWS["messages"][1]
    (row,) = read_file(path, make_shape("sharegpt", {}))
    assert row["detail"] == "chats.parquet:1: field 'conversations' is missing: no 'conversations' column (messages)"


def build_cached_hf_dataset(cache, repo_id, rows):
    """Write `rows` into an HF datasets cache at `cache` with datasets' own builder machinery, in the layout a
    Hub dataset `repo_id` leaves after load_dataset (namespace___name/default/0.0.0/<hash>/)."""
    datasets = pytest.importorskip("datasets")

    class Tiny(datasets.ArrowBasedBuilder):
        def _info(self):
            return datasets.DatasetInfo()

        def _split_generators(self, dl_manager):
            return [datasets.SplitGenerator(name="train")]

        def _generate_tables(self):
            yield 0, pa.Table.from_pylist(rows)

    Tiny(cache_dir=str(cache), dataset_name=repo_id.split("/")[-1], repo_id=repo_id, hash="0123abcd") \
        .download_and_prepare()


def test_hf_dataset_is_read_from_the_local_cache_offline(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    cache = tmp_path / "hf-cache"
    rows = [{"Instruction": f"Explain item {i}.", "Output": f"Item {i}."} for i in range(5)] + [{"Instruction": None,
                                                                                                 "Output": "x"}]
    build_cached_hf_dataset(cache, "someone/tiny_instruct", rows)
    data = DataConfig(name="someone/tiny_instruct", source="hf", split="train", cache_dir=str(cache), format="auto")
    files = hf_cache_files(data)
    assert [f.name for f in files] == ["tiny_instruct-train.arrow"]
    shape = resolve_shape(data, files)
    check_schema(files, shape, data, 100)
    records = read_file(files[0], shape)
    assert count_rows(files[0]) == 6
    assert [texts(r)[:3] for r in records[:2]] == [("Explain item 0.", "", "Item 0."), ("Explain item 1.", "", "Item 1.")]
    assert records[5]["detail"] == "tiny_instruct-train.arrow:6: field 'Instruction' is null"

    for missing in (DataConfig(name="someone/absent", source="hf", cache_dir=str(cache)),
                    DataConfig(name="someone/tiny_instruct", source="hf", split="test", cache_dir=str(cache))):
        with pytest.raises(InputError, match="is not in the local HF cache .* never downloads"):
            hf_cache_files(missing)


def test_a_resume_with_another_mapping_is_refused(tmp_path):
    first = make_shape("alpaca", {"instruction": "prompt"}).as_dict()
    Manifest.open(tmp_path, "h1", [], resume=True, data_shape=first)
    assert Manifest.open(tmp_path, "h1", [], resume=True, data_shape=first).header["data_shape"] == first
    with pytest.raises(ResumeRefused, match="different field mapping"):
        Manifest.open(tmp_path, "h2", [], resume=True, data_shape=make_shape("dolly", {}).as_dict())


def test_records_carry_the_system_prompt_as_a_column():
    records = records_from_rows([{"instruction": "a", "system": "Be terse."}, {"instruction": "b"}])
    assert list(records["system"]) == ["Be terse.", ""] and records["system"].dtype == np.dtype(object)
