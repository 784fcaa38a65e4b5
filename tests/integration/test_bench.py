"""`python -m engine.bench` at a tiny size on the echo backend: the table, the JSON with machine facts, and
min <= median <= max over the repeats."""

import json

from engine.commands.bench import main, write_seeds


def test_bench_runs_a_tiny_workload_twice(local_ray, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["--model", "tiny", "--backend", "echo", "--rows", "6", "--prompt-words", "8",
                 "--answer-tokens", "8", "--repeat", "2", "--batch-size", "4", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["machine"]["isa"] and "cpus" in result["machine"] and "versions" in result["machine"]
    tiny = result["models"]["tiny"]
    assert tiny["rows_in"] == 6 and len(tiny["repeats"]) == 2
    for key in ("wall_s", "steady_s", "generated_tokens_per_s"):
        assert tiny[key]["n"] == 2 and tiny[key]["min"] <= tiny[key]["median"] <= tiny[key]["max"]
    assert 0 < tiny["steady_s"]["max"] < tiny["wall_s"]["max"]
    assert tiny["generated_tokens_per_s"]["min"] > 0
    assert {s["stage"] for s in tiny["repeats"][0]["stages"]} >= {"Evolve", "Respond", "Score"}
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].split()[:2] == ["model", "backend"] and "tiny" in printed


def test_seeds_are_fixed_by_the_seed(tmp_path):
    a = write_seeds(tmp_path / "a.jsonl", 5, 10, seed=3).read_text()
    assert a == write_seeds(tmp_path / "b.jsonl", 5, 10, seed=3).read_text()
    assert a != write_seeds(tmp_path / "c.jsonl", 5, 10, seed=4).read_text()
    assert all(len(json.loads(line)["instruction"].split()) == 10 for line in a.splitlines())
