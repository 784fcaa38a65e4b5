"""Our own Ray calls raise no Ray deprecation warning: Ray 2.60 deprecates `map_batches(**ray_remote_args)` (gone
in 2.64) and `concurrency=`, and warns with the caller's file and line, so each warning names the engine line
that makes it. A small run on the echo backend goes through every Ray Data call of a round: the seed read, the
stage pools, the commit tasks, the whole-round selection step and the output split."""

import json
import warnings
from pathlib import Path

from ray.util.annotations import RayDeprecationWarning

from engine.config import Config, ModelConfig
from tests.integration.conftest import REPO

ENGINE = REPO / "engine"


def test_a_round_makes_no_ray_deprecation_warning_from_engine_code(local_ray, tmp_path):
    from engine.run.runner import run

    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps({"instruction": f"List {i} uses of clay.", "input": ""}) + "\n"
                             for i in range(24)))
    echo = ModelConfig(name="echo", backend="echo", embedded="tiny", dtype="float32")
    cfg = Config(model=echo, scorer=echo)
    cfg.data.path = str(seeds)
    cfg.run.output_dir = str(tmp_path / "out")
    cfg.run.progress = "off"
    cfg.run.shard_rows = 8
    cfg.cluster.batch_size = 4
    cfg.select.fraction = 0.5  # the whole-round step runs too

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RayDeprecationWarning)
        summary = run(cfg)

    ours = [f"{Path(w.filename).relative_to(REPO)}:{w.lineno}: {w.message}" for w in caught
            if issubclass(w.category, RayDeprecationWarning) and Path(w.filename).is_relative_to(ENGINE)]
    assert ours == [], "\n".join(ours)
    assert summary["rows_in"] == 24 and summary["rows_conserved"]  # the run did go through every call
