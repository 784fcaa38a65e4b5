"""Per-stage accounting on records built by hand: batch records fold into stage figures that add up (shard by
shard or all at once), the cost and 1M-seed extrapolation follow from them, the stage chain writes its records
into the first row only, and the report shows the stage table, the bar chart and one row per model."""

import json

import numpy as np
import pytest

from engine.backends import Sampling, load_backend
from engine.config import ModelConfig
from engine.recipes.spec import StageSpec
from engine.report.build import build_report
from engine.run.accounting import (
    STATS_COLUMN,
    add_column,
    batch_record,
    merge,
    progress_line,
    stage_figures,
    throughput,
)
from engine.run.chain import StageChain
from tests.conftest import seed_batch


def _column(records_per_row):
    return [json.dumps(r) if r else "" for r in records_per_row]


def _records():
    # Two actors of "Evolve" (started at 100 and 101, loads 4 s and 5 s) and one batch of "Respond".
    a = batch_record("Evolve", "a", True, 100.0, 4.0, 104.0, 106.0, 8, 8, 7, 80, 40)
    b = batch_record("Evolve", "b", True, 101.0, 5.0, 106.0, 110.0, 8, 8, 8, 90, 50)
    c = batch_record("Evolve", "a", True, 100.0, 4.0, 106.0, 107.0, 4, 4, 4, 40, 20)
    d = batch_record("Respond", "r", True, 100.0, 3.0, 107.0, 112.0, 20, 19, 18, 300, 100)
    return a, b, c, d


def test_records_fold_into_figures_that_add_up():
    a, b, c, d = _records()
    whole: dict = {}
    add_column(whole, _column([[a, d], None, [b], [c]]))
    first, second = {}, {}
    add_column(first, _column([[a, d], None]))
    add_column(second, _column([[b], [c]]))
    merge(first, second)
    assert stage_figures(1, first) == stage_figures(1, whole)
    evolve, respond = stage_figures(1, whole)
    assert evolve["stage"] == "Evolve" and respond["stage"] == "Respond"  # data-path order
    assert evolve["actors"] == 2 and evolve["batches"] == 3 and evolve["rows_in"] == 20
    assert evolve["rejected"] == 1 and evolve["generated_tokens"] == 110 and evolve["prompt_tokens"] == 210
    assert evolve["busy_s"] == pytest.approx(7.0) and evolve["span_s"] == pytest.approx(6.0)
    assert evolve["load_s"] == pytest.approx(9.0)
    # lifetimes: a 100 -> 107, b 101 -> 110: 16 s; busy 7 s
    assert evolve["lifetime_s"] == pytest.approx(16.0) and evolve["busy_fraction"] == pytest.approx(7 / 16, abs=1e-4)
    assert evolve["generated_tokens_per_s"] == pytest.approx(110 / 7, abs=1e-3)
    assert 0.0 <= respond["busy_fraction"] <= 1.0


def test_cost_and_extrapolation_follow_the_stage_rates():
    a, b, c, d = _records()
    stages: dict = {}
    add_column(stages, _column([[a, b, c, d]]))
    entries = stage_figures(1, stages)
    t = throughput(entries, seeds=20, rows_out=10, wall_s=36.0, gpus_per_actor=1.0, nodes=1,
                   cost={"gpu_hour_usd": 2.0, "cpu_hour_usd": None})
    assert t["bottleneck"]["stage"] == "Respond"  # 5 s on its one actor against Evolve's 7 s over two
    assert t["steady_state_s"] == pytest.approx(8.0)  # 104 -> 112
    lifetimes = 16.0 + 12.0  # Evolve's two actors, Respond's one
    assert t["accelerator_hours"] == pytest.approx(lifetimes / 3600, abs=1e-6)
    assert t["cost"]["total_usd"] == pytest.approx(2.0 * lifetimes / 3600, abs=1e-6)
    assert t["cost"]["per_1k_kept_rows_usd"] == pytest.approx(2.0 * lifetimes / 3600 * 100, abs=1e-5)
    one_m = t["extrapolation_1m_seeds"]
    assert one_m["hours"] == pytest.approx(5.0 * 1_000_000 / 20 / 3600, abs=1e-3)  # slowest stage, per seed
    assert one_m["rows_kept"] == 500_000 and "extrapolation" in one_m["label"]
    assert t["generated_tokens_per_s_per_accelerator"] == pytest.approx(210 / 8 / 3, abs=1e-3)
    unpriced = throughput(entries, 20, 10, 36.0, 0.0, 1, {"gpu_hour_usd": None, "cpu_hour_usd": None})
    assert unpriced["cost"]["total_usd"] is None and unpriced["accelerator_hours"] == 0.0


def test_progress_line_has_rows_rate_and_eta():
    assert progress_line(2, "Evolve", 50, 200, 10.0) == "round 2 Evolve: 50/200 rows (25%), 5.00 rows/s, ETA 30 s"
    assert "ETA unknown" in progress_line(1, "Evolve", 0, 200, 10.0)


ECHO = ModelConfig(name="echo", backend="echo", embedded="tiny")


class Shout:
    """A model stage in miniature: its backend (loaded as every stage loads one) answers every instruction."""

    uses_model = True

    def __init__(self, args=None, torch_threads=None):
        self.model = load_backend(ECHO, torch_threads=torch_threads)

    def __call__(self, batch):
        generations = self.model.generate(list(batch["instruction"]), Sampling(max_new_tokens=64))
        batch["evolved"] = np.asarray([g.text for g in generations], dtype=object)
        batch["expected_tokens"] = np.asarray([[g.prompt_tokens, g.generated_tokens] for g in generations])
        return batch


class Head:
    """A stage holding a model it did not get from load_backend: nothing to meter, nothing probed."""

    uses_model = False

    def __init__(self, args=None, torch_threads=None):
        self.model = lambda ids: ids * 2

    def __call__(self, batch):
        batch["doubled"] = self.model(np.arange(len(batch["id"])))
        return batch


def test_only_backends_from_load_backend_are_metered():
    out = StageChain([StageSpec(Head)])(seed_batch(["a b", "c d"]))
    assert list(out["doubled"]) == [0, 2]
    assert json.loads(out[STATS_COLUMN][0])[0]["generated_tokens"] == 0


def test_stage_chain_times_its_stages_and_puts_records_on_the_first_row_only():
    chain = StageChain([StageSpec(Shout)], pooled=True)
    out = chain(seed_batch(["Write a poem.", "List three rivers.", "Explain tides."]))
    again = chain(dict(out))  # a second chain in the same batch appends to the first row's records
    prompt_tokens, generated_tokens = out["expected_tokens"].sum(axis=0)
    column = again[STATS_COLUMN]
    assert column[1] == column[2] == ""
    first, second = json.loads(column[0])
    assert first["stage"] == second["stage"] == "Shout" and first["pooled"] and first["instance"] == chain.instance
    assert (first["rows"], first["ok_in"], first["ok_out"]) == (3, 3, 3)
    assert (first["prompt_tokens"], first["generated_tokens"]) == (prompt_tokens, generated_tokens) > (0, 0)
    assert (second["prompt_tokens"], second["generated_tokens"]) == (prompt_tokens, generated_tokens)
    assert first["started"] <= first["t0"] <= first["t1"] <= second["t0"] and first["load_s"] >= 0


def test_report_shows_stages_and_the_per_model_table(tmp_path):
    a, b, c, d = _records()
    stages: dict = {}
    add_column(stages, _column([[a, b, c, d]]))
    entries = stage_figures(1, stages)
    runs = []
    for name, kept in (("small", 10), ("large", 15)):
        run = tmp_path / name
        run.mkdir()
        t = throughput(entries, 20, kept, 36.0, 1.0, 1, {"gpu_hour_usd": 2.0, "cpu_hour_usd": None})
        (run / "summary.json").write_text(json.dumps({
            "model": name, "rows_in": 20, "rows_out": kept, "rows_rejected": 20 - kept, "scores": {"mean_ic_ifd": 0.4},
            "rejected_by_reason": {"too_short": 3, "template_leak": 1, "stage_error": 1, "copied": 2},
            "stages": entries, "throughput": t}))
        runs.append(run)
    index = build_report(runs, tmp_path / "report")
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["plots"]["stages"] == "stage_time.png"
    assert (tmp_path / "report" / "stage_time.png").read_bytes().startswith(b"\x89PNG")
    rows = {r["model"]: r for r in report["sections"]["per_model"]["rows"]}
    assert rows["large"]["kept_fraction"] == 0.75 and rows["small"]["mean_ic_ifd"] == 0.4
    assert rows["small"]["top_rejections"] == {"too_short": 3, "copied": 2, "stage_error": 1}
    assert rows["large"]["cost_per_1k_kept_usd"] < rows["small"]["cost_per_1k_kept_usd"]
    page = index.read_text()
    assert "Time per stage and round" in page and "Throughput, cost and quality per model" in page
    assert page.count("<td class=\"text\">small") >= 2  # a per-model row and its stage rows


def test_a_run_without_timings_is_named_missing(tmp_path):
    run = tmp_path / "old"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"model": "m", "rows_in": 2, "rows_out": 1}))
    build_report([run], tmp_path / "report")
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["sections"]["stages"]["missing"] and "stages" not in report["plots"]
    assert np.isclose(report["sections"]["per_model"]["rows"][0]["kept_fraction"], 0.5)


def test_stages_of_one_model_share_its_load_only_inside_a_chain(tiny_model):
    from engine.backends import load_backend, shared_backends

    with shared_backends():
        first = load_backend(tiny_model)
        assert load_backend(tiny_model) is first
    assert load_backend(tiny_model) is not first  # outside a chain every load is its own


def test_an_actor_running_two_stages_is_counted_once():
    evolve = batch_record("Evolve", "a", True, 100.0, 4.0, 104.0, 106.0, 8, 8, 8, 10, 10)
    eliminate = batch_record("Eliminate", "a", True, 100.0, 0.0, 106.0, 106.5, 8, 8, 6, 0, 0)
    stages: dict = {}
    add_column(stages, _column([[evolve, eliminate]]))
    t = throughput(stage_figures(1, stages), 8, 6, 10.0, 1.0, 1, {"gpu_hour_usd": 1.0, "cpu_hour_usd": None})
    assert t["accelerator_hours"] == pytest.approx(6.5 / 3600, abs=1e-6)  # 100 -> 106.5, once
    assert t["generated_tokens_per_s_per_accelerator"] == pytest.approx(10 / 2.5, abs=1e-3)  # one GPU, 104 -> 106.5


def test_segments_count_their_pools_apart_and_leave_the_reload_out_of_the_steady_state():
    # One actor per segment: segment 1 runs 100-110, segment 2's actor loads 110-130 and runs 130-140.
    first = batch_record("Evolve", "a", True, 98.0, 2.0, 100.0, 110.0, 10, 10, 10, 100, 50, execution="s1")
    second = batch_record("Evolve", "b", True, 110.0, 20.0, 130.0, 140.0, 10, 10, 10, 100, 50, execution="s2")
    stages: dict = {}
    add_column(stages, _column([[first], [second]]))
    (evolve,) = stage_figures(1, stages)
    assert (evolve["actors"], evolve["executions"], evolve["concurrent_actors"]) == (2, 2, 1)
    t = throughput([evolve], seeds=20, rows_out=20, wall_s=45.0, gpus_per_actor=1.0, nodes=1, cost={})
    assert t["steady_state_s"] == pytest.approx(20.0)  # 10 s + 10 s, not the 40 s from first batch to last
    assert t["bottleneck"]["busy_s_per_actor"] == pytest.approx(20.0)  # one actor at a time did all of it
    assert t["generated_tokens_per_s_per_accelerator"] == pytest.approx(100 / 20.0)  # one accelerator, not two
