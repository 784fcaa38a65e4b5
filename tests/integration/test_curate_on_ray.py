"""recipe=curate through a local Ray: an existing Alpaca-shaped file scored as it is, each row written once, and
per-row IFD / IC-IFD equal to the in-process scorer's on the same rows."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine.config import compose
from engine.recipes import specs
from engine.run.runner import run

TOPICS = ["rivers", "volcanoes", "bread", "chess", "owls", "trains", "glaciers", "violins", "tomatoes", "comets"]


def _alpaca_rows(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        rows.append({"instruction": f"Write fact {i} about {topic} in one sentence.",
                     "input": "" if i % 3 else f"Context {i}: a note about {topic}.",
                     "output": f"Fact {i}: {topic} are interesting for reason {i * 7 % 13}."})
    return rows


def _table(folder: Path) -> pa.Table:
    return pa.concat_tables(pq.read_table(f) for f in sorted(folder.glob("*.parquet")))


def test_a_thousand_rows_are_scored_once_each_like_the_in_process_scorer(local_ray, tiny_cfg, tmp_path):
    seeds = tmp_path / "alpaca.json"
    seeds.write_text(json.dumps(_alpaca_rows(1000)))
    tiny_cfg.recipe.name = "curate"
    tiny_cfg.curate.respond = "never"
    tiny_cfg.data.path, tiny_cfg.data.format = str(seeds), "auto"
    tiny_cfg.cluster.batch_size = 64
    tiny_cfg.run.shard_rows = 300
    summary = run(tiny_cfg)
    out = Path(tiny_cfg.run.output_dir)

    table = _table(out / "data" / f"round_{summary['rounds_completed']}")
    rejects = [json.loads(line) for f in (out / "rejects").glob("*.jsonl") for line in open(f)]
    ids = table["id"].to_pylist() + [r["id"] for r in rejects]
    assert summary["rows_in"] == 1000 and summary["rows_conserved"]
    assert len(ids) == len(set(ids)) == 1000  # every row once, kept or rejected
    assert all(r["reason"] for r in rejects)

    # the same rows through the Score stage in this process
    batch = {name: table[name].to_numpy(zero_copy_only=False) for name in table.column_names}
    expected = specs.score(tiny_cfg, summary["rounds_completed"]).build()(dict(batch))
    for name in ("ifd", "ic_ifd"):
        got, want = np.asarray(batch[name], dtype=float), np.asarray(expected[name], dtype=float)
        assert np.isfinite(got).all()
        assert all(math.isclose(g, w, rel_tol=1e-6) for g, w in zip(got, want)), name


README = Path(__file__).resolve().parents[2] / "README.md"
DEMO = Path(__file__).resolve().parents[2] / "engine" / "data" / "curate_demo.jsonl"


def readme_commands() -> list[list[str]]:
    """The override lists of the README's curate commands (its section's code block), `make demo-curate` included."""
    text = README.read_text()
    block = text[text.index("### Curating an existing data set"):].split("```bash", 1)[1].split("```", 1)[0]
    commands = []
    for line in block.splitlines():
        if line.startswith("make demo-curate"):
            commands.append(["experiment=curate"])
        elif line.startswith(".venv/bin/python -m engine "):
            commands.append(line.split()[3:])
    return commands


def test_the_readme_lists_each_curate_use():
    commands = [" ".join(c) for c in readme_commands()]
    assert len(commands) == 5 and commands[0] == "experiment=curate"
    assert any("curate.respond=never" in c and "select.fraction" in c for c in commands)  # score and select
    assert any("model.path" in c and "curate.respond" not in c for c in commands)  # answer what is missing
    assert any("scoring.enabled=false" in c for c in commands)  # deduplicate only
    assert any("select.min_distance" in c for c in commands)  # diversity-aware selection


def test_every_readme_curate_command_runs_on_the_shipped_rows(local_ray, tmp_path):
    """Each README command as written, on the shipped curate demo rows and the tiny model (paths and models of
    the reader's machine swapped for those)."""
    for n, command in enumerate(readme_commands()):
        overrides = [o for o in command if not o.startswith(("model=", "model.path=", "data.path=", "data="))]
        overrides += ["model=tiny", "scorer=tiny", "data=file", f"data.path={DEMO}", "recipe.respond.max_new_tokens=8",
                      "run.progress=off"]
        cfg = compose(overrides)
        cfg.run.output_dir = str(tmp_path / str(n))
        summary = run(cfg)
        assert summary["rows_in"] == 77 and summary["rows_conserved"], command
        assert summary["rows_out"] > 0, command
