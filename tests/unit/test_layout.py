from pathlib import Path

from engine.state.layout import RunLayout
from engine.write.exporters import dataset_info_entries


def test_run_folder_paths_are_the_documented_ones(tmp_path):
    layout = RunLayout(tmp_path)
    rel = lambda p: p.relative_to(tmp_path).as_posix()  # noqa: E731
    assert rel(layout.data(2)) == "data/round_2"
    assert rel(layout.export("sharegpt", 2)) == "sharegpt/round_2.jsonl"
    assert rel(layout.rejects(2)) == "rejects/round_2.jsonl" and rel(layout.rejects_folder) == "rejects"
    assert rel(layout.part("alpaca", 2, 7)) == "alpaca/.round_2.parts/00007.jsonl"
    assert rel(layout.ledger(2)) == "_ledger/round_2" and rel(layout.selected(2)) == "_ledger/round_2_selected"
    assert rel(layout.analysis_summary) == "analysis/summary.json" and rel(layout.analysis_rows) == "analysis/rows"
    assert rel(layout.side_by_side_file("jsonl")) == "side_by_side/side_by_side.jsonl"
    assert rel(layout.evolver("slm")) == "slm" and rel(layout.keywords) == "keywords.json"
    assert rel(layout.report) == "report" and rel(layout.compare_report) == "report-compare"


def test_rounds_and_final_round_read_only_round_folders(tmp_path):
    layout = RunLayout(tmp_path)
    assert layout.rounds() == [] and layout.final_round() is None
    for name in ("round_1", "round_10", "round_2", "round_x", "round_3.tmp"):
        (tmp_path / "data" / name).mkdir(parents=True)
    (tmp_path / "data" / "round_2" / "part-00000.parquet").write_bytes(b"")
    assert layout.rounds() == [1, 2, 10] and layout.final_round() == 10
    assert layout.data_files(2) == [layout.data(2) / "part-00000.parquet"] and layout.data_files(10) == []


def test_dataset_info_names_the_export_files_relative_to_the_run():
    entries = dataset_info_entries([1], "evol_tiny")
    assert entries["evol_tiny_round_1"]["file_name"] == RunLayout(Path()).export("alpaca", 1).as_posix()
    assert entries["evol_tiny_round_1_messages"]["file_name"] == "messages/round_1.jsonl"
