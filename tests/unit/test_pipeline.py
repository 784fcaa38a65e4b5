"""The Ray-free half of a run: recipes declare typed stage specs with their own resources, and the pipeline runs
them through any executor. Here an in-process executor stands in for Ray, so the round loop, row accounting,
selection and resume are tested without a cluster."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.backends.base import BackendUnavailable
from engine.config import Config, ConfigError, compose
from engine.read.seeds import read_files
from engine.recipes import RECIPES, get_recipe, specs
from engine.recipes.base import Recipe
from engine.recipes.spec import Resources
from engine.recipes.steps import grouped_in_process
from engine.run import pipeline
from engine.run.chain import StageChain
from engine.state.layout import RunLayout
from engine.state.ledger import commit_shard, done_keys, without_done
from engine.state.segments import in_segment, plan_segments
from engine.write.sinks import split_round


class InProcess:
    """The pipeline's executor contract, run in this process over pyarrow tables (no Ray)."""

    def __init__(self):
        self.calls: list[str] = []
        self.streamed: list[tuple[int, list[int], int]] = []  # (round, seed positions, rows expected) per stream

    def start(self) -> int:
        return 1

    def stop(self) -> None:
        pass

    def seeds(self, plan):
        blocks = [pa.table(r) for item in plan.items for r in read_files({"path": [item["path"]],
                                                                          "offset": [item["offset"]]}, plan)]
        return pa.concat_tables(blocks)

    def rows(self, batch):
        return pa.table(batch)

    def read(self, files):
        return pa.concat_tables([pq.read_table(f) for f in files])

    def segment(self, ds, lo, hi):
        return in_segment(ds, lo, hi)

    def drop_done(self, ds, files, round_num):
        return without_done(ds, done_keys(files, round_num))

    def expand(self, ds, expansion):
        return pa.table(expansion.fn({k: ds[k].to_numpy(zero_copy_only=False) for k in ds.column_names},
                                     **expansion.kwargs))

    def stream(self, ds, stage_specs, round_num, expected, ledger, shard_rows):
        self.calls.append(f"round {round_num}: " + " ".join(s.name for s in stage_specs))
        self.streamed.append((round_num, sorted(ds["seed_index"].to_pylist()), expected))
        chain = StageChain(stage_specs, pooled=True, execution=f"execution-{len(self.streamed)}")
        for lo in range(0, ds.num_rows, shard_rows):
            part = ds.slice(lo, shard_rows)
            out = chain({k: part[k].to_numpy(zero_copy_only=False) for k in part.column_names})
            written = commit_shard(pa.table(out), str(ledger)).to_pylist()
            yield from ((w["file"], w["rows"], w["ok"]) for w in written)

    def apply(self, files, spec, folder):
        self.calls.append(f"whole round: {spec.name}")
        table = self.read(files)
        out = StageChain([spec])({k: table[k].to_numpy(zero_copy_only=False) for k in table.column_names})
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(arrow_table(out), folder / "part-0.parquet")
        return [folder / "part-0.parquet"]

    def grouped(self, files, columns, explode, key, reduce):
        return grouped_in_process(self.read(files).select(columns), explode, key, reduce)

    def split(self, files, layout, round_num):
        return split_round(files, layout.root, round_num)

    def call(self, spec, method, *args):
        return getattr(spec.build(), method)(*args)


def arrow_table(batch: dict) -> pa.Table:
    """A stage batch as Arrow: a [rows, dim] column (embeddings) becomes one fixed-size list per row, as Ray Data
    writes a tensor column."""
    return pa.table({name: pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), values.shape[1])
                     if getattr(values, "ndim", 1) == 2 else values for name, values in batch.items()})


@pytest.fixture()
def echo_cfg(tmp_path) -> Config:
    cfg = compose(["model=echo", "scorer=echo"])
    cfg.run.output_dir = str(tmp_path / "out")
    cfg.run.progress = "off"
    cfg.data.limit = 12
    cfg.rounds = 2
    cfg.select.fraction = 0.5
    return cfg


def test_a_run_through_the_pipeline_conserves_rows_and_selects_once(echo_cfg):
    executor = InProcess()
    summary = pipeline.run(echo_cfg, executor)
    assert executor.calls == ["round 1: Evolve Eliminate Respond Score", "round 2: Evolve Eliminate Respond Score",
                              "whole round: Select"]  # the cut is declared for the final round only
    assert summary["rows_conserved"] and summary["rows_in"] == 12
    assert summary["selection"]["by"] == "ic_ifd"
    assert summary["rows_out"] == summary["selection"]["kept"]
    out = Path(echo_cfg.run.output_dir)
    rejected = sum(1 for _ in open(out / "rejects" / "round_2.jsonl"))
    assert rejected + summary["rows_out"] == summary["per_round"][1]["rows_in"]


def test_a_rerun_reuses_the_finished_rounds(echo_cfg):
    first = pipeline.run(echo_cfg, InProcess())
    executor = InProcess()
    again = pipeline.run(echo_cfg, executor)
    assert executor.calls == []  # both rounds are complete in the manifest
    assert again["rows_out"] == first["rows_out"] and again["per_round"] == first["per_round"]


def test_the_optimizers_choice_reaches_the_stages_and_the_manifest_not_the_config(echo_cfg, monkeypatch):
    echo_cfg.recipe.name = "auto_evol"
    echo_cfg.auto_evol.optimize = True
    echo_cfg.rounds, echo_cfg.select.fraction = 1, None
    chosen = "Rewrite the instruction so that it needs two steps of reasoning.\n"
    monkeypatch.setattr("engine.stages.generation.optimize.MethodOptimizer.run", lambda self, train, dev: (chosen, []))
    seen = []
    original = get_recipe(echo_cfg).__class__.stages

    def spy(self, round_num, decisions):
        found = original(self, round_num, decisions)
        seen.append(found[0].args.method)
        return found

    monkeypatch.setattr("engine.recipes.auto_evol.AutoEvol.stages", spy)
    summary = pipeline.run(echo_cfg, InProcess())
    assert seen[0] == chosen and echo_cfg.auto_evol.method is None  # the hashed config is never mutated
    manifest = [json.loads(line) for line in open(Path(echo_cfg.run.output_dir) / "manifest.jsonl")]
    assert [e["decisions"] for e in manifest if e["kind"] == "setup"] == [{"auto_evol_method": chosen}]
    assert summary["setup"] == {"auto_evol_method": chosen}


def test_the_scorer_is_sized_on_its_own():
    cfg = Config()
    cfg.cluster.pool_size, cfg.cluster.batch_size = 2, 16
    cfg.stages.score.pool_size, cfg.stages.score.batch_size, cfg.stages.score.num_gpus = 4, 64, 1.0
    cfg.stages.evolve.num_gpus, cfg.stages.evolve.memory_gb = 4.0, 40.0
    by_name = {spec.name: spec.resources for spec in get_recipe(cfg).stages(1, {})}
    assert (by_name["Score"].pool_size, by_name["Score"].batch_size, by_name["Score"].num_gpus) == (4, 64, 1.0)
    assert (by_name["Respond"].pool_size, by_name["Respond"].batch_size, by_name["Respond"].num_gpus) == (2, 16, 0.0)
    assert by_name["Evolve"].ray_options() == {"num_cpus": 0.25, "num_gpus": 4.0, "memory": 40 * 1024**3}


def test_per_stage_keys_compose_from_the_command_line():
    cfg = compose(["stages.score.pool_size=3", "stages.evolve.num_gpus=2", "+stages.respond.resources.node_b=1"])
    assert cfg.stages.score.pool_size == 3 and cfg.stages.evolve.num_gpus == 2
    assert Resources().resources == () and dict(specs.respond(cfg, 1).resources.resources) == {"node_b": 1.0}


@pytest.mark.parametrize("name", RECIPES)
def test_recipes_declare_typed_stages_that_never_see_the_config(name):
    cfg = Config()
    cfg.recipe.name = name
    recipe = get_recipe(cfg)
    assert isinstance(recipe, Recipe)
    for round_num in range(1, recipe.num_rounds() + 1):
        for spec in recipe.stages(round_num, {}):
            assert not isinstance(spec.args, Config)
            params = list(inspect.signature(spec.stage.__init__).parameters.values())[1:]
            assert all(p.annotation not in (Config, "Config") for p in params), spec.name


def test_autoif_refuses_a_selection_it_has_no_scores_for():
    cfg = Config()
    cfg.recipe.name, cfg.select.fraction = "autoif", 0.5
    with pytest.raises(ConfigError, match="select"):
        get_recipe(cfg)


def test_the_gpu_cluster_sizes_the_scorer_apart_from_the_generators():
    cfg = compose(["cluster=gpu", "cluster.pool_size=4"])
    by_name = {spec.name: spec.resources for spec in get_recipe(cfg).stages(1, {})}
    assert by_name["Evolve"].pool_size == by_name["Respond"].pool_size == 4  # the cluster default, overridden
    assert (by_name["Score"].pool_size, by_name["Score"].batch_size) == (2, 256)


class Recorded:
    """A stand-in for a Ray dataset that records the map_batches calls the executor makes."""

    def __init__(self):
        self.calls: list[dict] = []

    def map_batches(self, fn, **kwargs):
        self.calls.append({"fn": fn, **kwargs})
        return self


def test_each_model_stage_gets_a_pool_batch_and_reservation_of_its_own():
    from engine.run.runner import RayExecutor

    cfg = Config()
    cfg.cluster.pool_size, cfg.cluster.batch_size = 1, 16
    cfg.stages.score.pool_size, cfg.stages.score.batch_size, cfg.stages.score.num_gpus = 3, 64, 1.0
    cfg.stages.evolve.memory_gb = 2.0
    ds = Recorded()
    RayExecutor(cfg).apply_stages(ds, get_recipe(cfg).stages(1, {}))
    evolve, respond, score = ds.calls  # Eliminate runs in the evolver's actors
    assert [s.name for s in evolve["fn_constructor_kwargs"]["specs"]] == ["Evolve", "Eliminate"]
    assert (evolve["compute"].min_size, evolve["batch_size"], evolve["memory"]) == (1, 16, 2 * 1024**3)
    assert (respond["compute"].max_size, respond["batch_size"], "num_gpus" in respond) == (1, 16, False)
    assert (score["compute"].min_size, score["compute"].max_size, score["batch_size"], score["num_gpus"]) == \
        (3, 3, 64, 1.0)
    # every pool calls its chain on the thread that built it (runner.stage_pool; integration: test_stage_threads.py)
    assert all(call["compute"].enable_true_multi_threading for call in ds.calls)


def test_retry_bounds_reach_ray_only_when_set():
    from engine.run.runner import RayExecutor

    cfg = Config()
    ds = Recorded()
    RayExecutor(cfg).apply_stages(ds, get_recipe(cfg).stages(1, {}))
    assert not any({"max_restarts", "max_task_retries", "max_retries"} & call.keys() for call in ds.calls)
    cfg.cluster.actor_max_restarts, cfg.cluster.actor_max_task_retries = 2, 3
    ds = Recorded()
    RayExecutor(cfg).apply_stages(ds, get_recipe(cfg).stages(1, {}))
    assert all((call["max_restarts"], call["max_task_retries"]) == (2, 3) for call in ds.calls)


def test_the_summary_counts_replaced_actors_and_repeated_commits():
    from engine.run.summary import retried
    from engine.state.manifest import Manifest

    stages = [{"round": 1, "stage": "Evolve", "kind": "actor_pool", "actors": 3},
              {"round": 1, "stage": "Respond", "kind": "actor_pool", "actors": 1},
              {"round": 1, "stage": "Select", "kind": "tasks", "actors": 0}]
    assert retried(stages, {(1, "Evolve"): 1, (1, "Respond"): 1}, 0) == \
        {"stage_actors_replaced": {"round 1 Evolve": 2}, "shards_committed_again": 0}
    # two segments, each with a pool of its own: a replaced actor is one beyond the pool within one execution
    segmented = [{"round": 2, "stage": "Score", "kind": "actor_pool", "actors": 3,
                  "actors_by_execution": {"seg-a": 1, "seg-b": 2}},
                 {"round": 2, "stage": "Respond", "kind": "actor_pool", "actors": 2,
                  "actors_by_execution": {"seg-a": 1, "seg-b": 1}}]
    assert retried(segmented, {(2, "Score"): 1, (2, "Respond"): 1}, 0)["stage_actors_replaced"] == \
        {"round 2 Score": 1}
    manifest = Manifest(Path("unused"), {}, [])
    manifest.entries += [{"kind": "shard", "round": 1, "file": "a"}, {"kind": "shard", "round": 1, "file": "a"},
                         {"kind": "reset", "round": 1}, {"kind": "shard", "round": 1, "file": "a"},
                         {"kind": "shard", "round": 2, "file": "a"}]
    assert manifest.recommitted() == 1  # after a reset, or in another round, the same name is new


def test_an_undisturbed_run_reports_nothing_retried(echo_cfg):
    summary = pipeline.run(echo_cfg, InProcess())
    assert summary["retried"] == {"stage_actors_replaced": {}, "shards_committed_again": 0}


def data_rows(output_dir: str, round_num: int = 2) -> list[dict]:
    """The rows a run kept in a round, by id."""
    folder = RunLayout.at(output_dir).data(round_num)
    rows = [row for path in sorted(folder.rglob("*.parquet")) for row in pq.read_table(path).to_pylist()]
    return sorted(rows, key=lambda row: row["id"])


def test_a_big_round_runs_in_segments_and_writes_the_same_rows(echo_cfg, tmp_path):
    whole = InProcess()
    echo_cfg.run.segment_rows = None
    reference, reference_dir = pipeline.run(echo_cfg, whole), echo_cfg.run.output_dir
    assert len(whole.streamed) == 2  # one execution per round

    echo_cfg.run.output_dir = str(tmp_path / "segmented")
    echo_cfg.run.segment_rows = 5
    executor = InProcess()
    summary = pipeline.run(echo_cfg, executor)
    round_1 = [positions for r, positions, _ in executor.streamed if r == 1]
    assert round_1 == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11]]  # seed positions, in ranges of 5 rows
    assert [expected for r, _, expected in executor.streamed if r == 1] == [5, 5, 2]
    round_2 = [positions for r, positions, _ in executor.streamed if r == 2]
    assert sum(len(p) for p in round_2) == summary["per_round"][0]["rows_out"] and all(len(p) <= 5 for p in round_2)
    assert summary["rows_conserved"]
    for mine, theirs in zip(summary["per_round"], reference["per_round"], strict=True):
        assert mine["scores"] == pytest.approx(theirs["scores"])  # means summed in another order
        assert {**mine, "scores": None} == {**theirs, "scores": None}
    kept = data_rows(echo_cfg.run.output_dir)
    assert len(kept) == summary["rows_out"] > 0 and kept == data_rows(reference_dir)
    assert summary["retried"]["stage_actors_replaced"] == {}  # a pool per segment is not a replaced actor
    evolve = next(e for e in summary["stages"] if e["round"] == 1 and e["stage"] == "Evolve")
    assert evolve["executions"] == 3 and evolve["actors"] == 3 and evolve["concurrent_actors"] == 1


class DiesInSegment(InProcess):
    """An executor whose driver dies when round 1's second segment starts (after the first one committed)."""

    def stream(self, ds, stage_specs, round_num, expected, ledger, shard_rows):
        if round_num == 1 and len(self.streamed) == 1:
            raise KeyboardInterrupt("driver killed")
        yield from super().stream(ds, stage_specs, round_num, expected, ledger, shard_rows)


def test_a_rerun_skips_the_segments_already_committed(echo_cfg):
    echo_cfg.run.segment_rows = 5
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(echo_cfg, DiesInSegment())
    executor = InProcess()
    summary = pipeline.run(echo_cfg, executor)
    assert [positions for r, positions, _ in executor.streamed if r == 1] == [[5, 6, 7, 8, 9], [10, 11]]
    assert summary["resumed"]["rows_reused"] == 5 and summary["rows_conserved"]
    ids = [row["id"] for row in data_rows(echo_cfg.run.output_dir)]
    assert len(ids) == len(set(ids)) == summary["rows_out"]


def test_segments_never_split_a_seed_position_and_count_what_is_done():
    positions = [3, 0, 1, 1, 1, 2, 7, 8, 9]
    segments = plan_segments(positions, 2, done=[0, 1, 1])
    assert [(s.lo, s.hi, s.rows, s.done) for s in segments] == [(0, 2, 4, 3), (2, 7, 2, 0), (7, 9, 2, 0), (9, 10, 1, 0)]
    assert sum(s.rows for s in segments) == len(positions)
    assert [s.remaining for s in segments] == [1, 2, 2, 1]
    with pytest.raises(ValueError, match="segment_rows"):
        plan_segments(positions, 0)


def test_stages_share_one_pool_on_cpus_and_keep_their_own_on_gpus():
    from engine.recipes.resources import fuses
    from engine.run.runner import RayExecutor

    cpu = Config()
    ds = Recorded()
    RayExecutor(cpu).apply_stages(ds, get_recipe(cpu).stages(1, {}))
    (fused,) = ds.calls  # auto on CPUs: one actor runs every stage with all the cores
    assert [s.name for s in fused["fn_constructor_kwargs"]["specs"]] == ["Evolve", "Eliminate", "Respond", "Score"]
    gpu = compose(["cluster=gpu"])
    assert not fuses(gpu.cluster.fuse_stages, get_recipe(gpu).stages(1, {}))  # each model keeps its devices
    cpu.stages.respond.batch_size = 4  # a stage sized apart keeps its own pool
    assert not fuses("auto", get_recipe(cpu).stages(1, {}))
    vllm = compose(["model.backend=vllm"])
    assert not fuses("auto", get_recipe(vllm).stages(1, {}))  # one vLLM engine per actor, as tested
    assert fuses(True, get_recipe(cpu).stages(1, {})) and not fuses("false", get_recipe(Config()).stages(1, {}))
    with pytest.raises(ConfigError, match="fuse_stages"):
        fuses("sometimes", [])


class ScoreAndSelect(Recipe):
    """The seeds scored as they are and then selected, without evolution (the shape of a curation run)."""

    name = "score_and_select"

    def stages(self, round_num, decisions):
        return [specs.score(self.cfg, round_num)]


GROUPS = {  # paraphrases (all-MiniLM-L6-v2 cosine distance 0.02-0.12 within a group, >= 0.68 across groups)
    "sea": ["Write a short poem about the sea.", "Write a short poem about the ocean.",
            "Write a brief poem about the sea.", "Write a short poem about the sea."],  # the last: an exact copy
    "photosynthesis": ["Explain how photosynthesis works in plants.", "Explain how plants carry out photosynthesis."],
    "paperclip": ["List three uses of a paperclip.", "List three ways to use a paperclip."],
    "french": ["Translate 'good morning' into French."], "war": ["Summarise the causes of the First World War."],
    "pancakes": ["Give me a recipe for pancakes."], "capital": ["What is the capital of Australia?"],
    "chess": ["Describe the rules of chess."], "derivative": ["Compute the derivative of x squared."],
    "goldfish": ["Suggest a name for a pet goldfish."],
}


def test_min_distance_selects_distinct_rows_with_the_shipped_embedder(echo_cfg, monkeypatch, tmp_path):
    seeds = tmp_path / "seeds.jsonl"
    texts = [(group, text) for group, members in GROUPS.items() for text in members]
    seeds.write_text("".join(json.dumps({"instruction": text, "input": "", "output": f"An answer to: {text}"}) + "\n"
                             for _, text in texts))
    echo_cfg.data.path, echo_cfg.data.limit, echo_cfg.rounds = str(seeds), None, 1
    echo_cfg.select.fraction, echo_cfg.select.top_k, echo_cfg.select.min_distance = None, 7, 0.3
    echo_cfg.analysis.embedder.device = "cpu"
    monkeypatch.setattr(pipeline, "get_recipe", ScoreAndSelect)
    executor = InProcess()
    summary = pipeline.run(echo_cfg, executor)
    assert executor.calls == ["round 1: Score", "whole round: Embed", "whole round: Select"]

    out = Path(echo_cfg.run.output_dir)
    kept = pq.read_table(out / "data" / "round_1")
    rejects = [json.loads(line) for line in open(out / "rejects" / "round_1.jsonl")]
    assert summary["rows_conserved"] and kept.num_rows + len(rejects) == len(texts) == 15
    assert "embedding" not in kept.column_names and all("embedding" not in r for r in rejects)
    exported = [json.loads(line) for line in open(next((out / "alpaca").glob("round_1*")))]
    assert len(exported) == 7 and all(set(row) <= {"instruction", "input", "output", "system"} for row in exported)

    group_of = dict((text, group) for group, text in texts)
    kept_groups = [group_of[text] for text in kept["instruction"].to_pylist()]
    assert len(kept_groups) == 7 == len(set(kept_groups))  # one row per group at most, and the quota filled
    kept_ids = dict(zip(kept["id"].to_pylist(), kept["instruction"].to_pylist()))
    similar = [r for r in rejects if r["reason"] == "too_similar"]
    assert similar and summary["selection"]["too_similar"] == len(similar)
    assert summary["selection"]["min_distance"] == 0.3 and summary["selection"]["kept"] == 7
    for row in similar:  # each names a kept row of its own group, closer than min_distance
        nearest = row["detail"].rsplit("to kept row ", 1)[1]
        assert group_of[kept_ids[nearest]] == group_of[row["instruction"]]
        assert float(row["detail"].split()[2]) <= 0.3
    assert {r["reason"] for r in rejects} == {"too_similar", "not_selected"}


def test_a_missing_selection_embedder_stops_the_run_before_any_stage(echo_cfg, tmp_path):
    echo_cfg.select.min_distance = 0.1
    echo_cfg.analysis.embedder.path = str(tmp_path / "no-model-here")
    executor = InProcess()
    with pytest.raises(BackendUnavailable, match="analysis.embedder.path"):
        pipeline.run(echo_cfg, executor)
    assert executor.calls == []
