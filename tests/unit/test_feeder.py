"""The engine feeder on a scripted engine (vLLM's LLMEngine methods, no vLLM): many callers' rows share one engine
up to max_in_flight, each caller gets its own outputs in order, occupancy is measured, a dead engine is one error.
The same feeder drives real vLLM in tests/vllm_tier."""

import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest
import ray.exceptions

from engine.backends.feeder import EngineFailure, EngineFeeder, Occupancy, logged_root_cause, root_cause
from engine.cli import engine_failure
from engine.recipes.resources import concurrent_calls
from engine.recipes.spec import Resources, StageSpec
from engine.run.accounting import add_record, batch_record, engine_figures, progress_line, stage_figures
from engine.run.chain import BusyShares


@dataclass
class Output:
    request_id: str
    prompt: dict
    finished: bool = True


class ScriptedEngine:
    """Finishes each request `prompt["steps"]` steps after it was added; records how many were in it per step."""

    def __init__(self, fail_at_step: int | None = None):
        self.live: dict[str, list] = {}
        self.per_step: list[int] = []
        self.fail_at_step = fail_at_step

    def add_request(self, request_id, prompt, params):
        self.live[request_id] = [prompt, prompt["steps"]]

    def step(self):
        if self.fail_at_step is not None and len(self.per_step) == self.fail_at_step:
            try:
                raise RuntimeError("CPU Generator does not use offset")
            except RuntimeError as cause:
                raise ValueError("EngineCore encountered an issue.") from cause
        self.per_step.append(len(self.live))
        time.sleep(0.001)
        done = []
        for request_id, entry in list(self.live.items()):
            entry[1] -= 1
            if entry[1] <= 0:
                done.append(Output(request_id, entry[0]))
                del self.live[request_id]
        return done


def test_callers_share_the_engine_up_to_max_in_flight_and_get_their_own_rows_in_order():
    engine = ScriptedEngine()
    feeder = EngineFeeder(engine, max_in_flight=8)
    results = {}

    def call(k):
        rows = [{"caller": k, "row": i, "steps": 1 + (i * 7 + k) % 5} for i in range(6)]
        results[k] = [out.prompt for out in feeder.run([(row, None) for row in rows])]

    threads = [threading.Thread(target=call, args=(k,)) for k in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    feeder.close()
    for k in range(4):
        assert [(r["caller"], r["row"]) for r in results[k]] == [(k, i) for i in range(6)]
    assert max(engine.per_step) == 8  # admitted across callers, never beyond the cap
    stats = feeder.snapshot()
    assert stats["target"] == 8 and stats["busy_s"] > 0 and stats["in_engine"] == stats["waiting"] == 0
    assert 0 < stats["running_s"] / stats["busy_s"] <= 8


def test_a_dead_engine_fails_every_waiting_caller_with_its_root_cause():
    feeder = EngineFeeder(ScriptedEngine(fail_at_step=2), max_in_flight=4, name="smollm2-135m")
    with pytest.raises(EngineFailure, match="smollm2-135m: the vLLM engine stopped: RuntimeError: CPU Generator"):
        feeder.run([({"steps": 5}, None)] * 3)
    with pytest.raises(EngineFailure):  # and every later call, at once
        feeder.run([({"steps": 1}, None)])


def test_occupancy_leaves_the_final_drain_apart():
    occupancy = Occupancy(target=4)
    occupancy.add(4, 2.0)
    occupancy.admitted()  # the last admission: what follows is the drain
    occupancy.add(1, 1.0)
    snap = occupancy.snapshot()
    assert (snap["busy_s"], snap["running_s"], snap["below_half_s"]) == (3.0, 9.0, 1.0)
    assert (snap["busy_before_drain_s"], snap["running_before_drain_s"], snap["below_half_before_drain_s"]) == (
        2.0, 8.0, 0.0)
    figures = engine_figures([snap, snap])
    assert figures["mean_running"] == 3.0 and figures["occupancy"] == 0.75
    assert figures["occupancy_before_drain"] == 1.0 and figures["below_half_fraction_before_drain"] == 0.0
    assert figures["drain_s"] == 2.0 and figures["engines"] == 2
    assert progress_line(1, "Evolve", 8, 16, 4.0, [snap]).endswith("engine 3.0/4 requests in flight")


def test_stage_figures_take_each_engine_latest_snapshot_and_busy_shares():
    stages = {}
    early = {**Occupancy(target=4).snapshot(), "busy_s": 1.0, "running_s": 4.0}
    late = {**Occupancy(target=4).snapshot(), "busy_s": 2.0, "running_s": 6.0}
    for t1, snap in ((5.0, late), (3.0, early)):  # records may arrive out of order: the latest wins
        add_record(stages, batch_record("Evolve", "a1", True, 0.0, 1.0, t1 - 2.0, t1, 4, 4, 4, 10, 5,
                                        busy_s=1.0, engine=snap))
    (entry,) = stage_figures(1, stages)
    assert entry["busy_s"] == 2.0  # the shares, not the overlapping calls' 4 s of wall time
    assert entry["engine"]["busy_s"] == 2.0 and entry["engine"]["mean_running"] == 3.0


def test_busy_shares_add_up_to_the_time_the_stage_was_busy():
    now = [0.0]
    shares = BusyShares(clock=lambda: now[0])
    a = shares.start()
    now[0] = 1.0
    b = shares.start()
    now[0] = 3.0
    share_a = shares.stop(a)
    now[0] = 4.0
    share_b = shares.stop(b)
    assert (share_a, share_b) == (2.0, 2.0) and share_a + share_b == 4.0  # busy from 0 to 4


class VLLMStage:
    uses_model = True


@dataclass(frozen=True)
class Args:
    model: object


@dataclass(frozen=True)
class Model:
    backend: str
    max_in_flight: int | None = None
    max_num_seqs: int | None = None


def test_a_vllm_stage_actor_takes_enough_batches_to_hold_max_in_flight():
    vllm = StageSpec(VLLMStage, Args(Model("vllm", max_in_flight=64)), Resources(batch_size=16))
    hf = StageSpec(VLLMStage, Args(Model("hf")), Resources(batch_size=16))
    assert concurrent_calls([vllm]) == 2 * 64 // 16 + 1  # twice max_in_flight behind the engine, plus one
    assert concurrent_calls([hf]) == 1 and concurrent_calls([vllm, hf]) == 1


def test_the_cli_finds_an_engine_failure_inside_rays_wrapping():
    failure = EngineFailure("stage Evolve: smollm2-135m: the vLLM engine stopped: RuntimeError: boom")
    wrapped = ray.exceptions.RayTaskError("MapWorker.submit", "Traceback ...", failure).as_instanceof_cause()
    try:
        raise RuntimeError("the dataset failed") from wrapped
    except RuntimeError as err:
        assert engine_failure(err) == str(failure)
    assert engine_failure(ValueError("x")) is None
    assert root_cause(np.linalg.LinAlgError("singular")) == "LinAlgError: singular"


VLLM_LOG = """(EngineCore pid=20616) INFO 12-06 11:23:18 [core.py:368] init engine took 3.80 s
(EngineCore pid=20616) ERROR 12-06 11:25:01 [core.py:1376] EngineCore encountered a fatal error.
(EngineCore pid=20616) ERROR 12-06 11:25:01 [core.py:1376] Traceback (most recent call last):
(EngineCore pid=20616) ERROR 12-06 11:25:01 [core.py:1376]   File "vllm/v1/engine/core.py", line 1367, in run_engine_core
(EngineCore pid=20616) ERROR 12-06 11:25:01 [core.py:1376]     engine_core.run_busy_loop()
(EngineCore pid=20616) ERROR 12-06 11:25:01 [core.py:1376]   File "vllm/v1/worker/gpu_model_runner.py", line 3786, in _bookkeeping_sync
(EngineCore pid=20616) ERROR 12-06 11:25:01 [core.py:1376]     gen.set_offset(gen.get_offset() - 4)
(EngineCore pid=20616) ERROR 12-06 11:25:01 [core.py:1376] RuntimeError: CPU Generator does not use offset
(EngineCore pid=20616) INFO 12-06 11:25:01 [core.py:1350] [shutdown] EngineCore: exiting
ValueError: an unrelated error logged later
"""


def test_the_engine_cores_logged_error_is_the_root_cause():
    assert logged_root_cause(VLLM_LOG) == "RuntimeError: CPU Generator does not use offset"
    assert logged_root_cause("INFO all fine\n") is None
