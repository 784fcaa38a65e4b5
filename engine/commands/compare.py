"""Evolver comparison (the paper's SLM vs LLM): evolve the same seeds with each evolver in `compare.evolvers`,
each a normal run under RUN_DIR/<name>/, then join their final rounds by seed id into RUN_DIR/side_by_side/.

Lineage ids derive from seed ids (`evolved_row_id`), so the same seed carries the same id under every evolver.
Every seed of either run appears in the join: a row one evolver lost keeps its reason and round, never vanishes.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from omegaconf import OmegaConf

from engine.config import Config, ConfigError, ModelConfig
from engine.recipes import get_recipe
from engine.rows.records import STATUS_OK, STATUS_REJECTED, evolved_row_id
from engine.state.layout import RunLayout
from engine.state.storage import write_json

log = logging.getLogger("engine.commands.compare")

SIDE_BY_SIDE = RunLayout(Path()).side_by_side.name  # a comparison's own folder: no evolver may take its name
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Per-seed fields of one evolver's outcome; `<field>_<evolver>` in the joined table.
SIDE_FIELDS = {
    "status": pa.string(),  # ok | rejected | absent (the seed is not in this evolver's outputs at all)
    "reason": pa.string(),
    "round": pa.int64(),  # the round the row reached (ok) or was rejected in
    "instruction": pa.string(),
    "output": pa.string(),
    "method": pa.string(),
    "ic_ifd": pa.float64(),
    "ifd": pa.float64(),
}
ABSENT = "absent"


def check_comparison(cfg: Config) -> None:
    """A comparison needs two or more evolvers with usable names and a recipe whose rows stay one per seed."""
    names = list(cfg.compare.evolvers)
    if len(names) < 2:
        raise ConfigError(f"compare.evolvers names {len(names)} evolver(s) ({names}); a comparison needs two or more")
    for name in names:
        if not NAME.match(name) or name == SIDE_BY_SIDE:
            raise ConfigError(f"compare.evolvers.{name}: the name is a directory and a column suffix: use letters, "
                              f"digits, '_', '-', '.', and not {SIDE_BY_SIDE!r}")
    if not get_recipe(cfg).chained:
        raise ConfigError(f"recipe={cfg.recipe.name} builds rows per phase, not one lineage per seed: compare.evolvers "
                          "supports the chained recipes (evol_instruct, auto_evol)")


def evolver_config(cfg: Config, name: str, model: ModelConfig) -> Config:
    """The run of one evolver: the comparison's config with `model` set and its own output directory."""
    sub = copy.deepcopy(cfg)
    sub.model = copy.deepcopy(model)
    sub.compare.evolvers = {}
    sub.run.output_dir = str(RunLayout(cfg.run.output_dir).evolver(name))
    return sub


def run_comparison(cfg: Config, config_text: str | None = None) -> dict:
    """Run every evolver (one after the other, in one Ray session), join them and write RUN_DIR/summary.json.

    Each evolver directory has its own manifest, so a rerun resumes each one; the join is rebuilt from outputs."""
    check_comparison(cfg)
    from engine.run.runner import ray_session, run  # imports ray

    started = time.perf_counter()
    layout = RunLayout(cfg.run.output_dir)
    layout.root.mkdir(parents=True, exist_ok=True)
    if config_text is not None:
        layout.config.write_text(config_text)
    summaries: dict[str, dict] = {}
    with ray_session(cfg):
        for name, model in cfg.compare.evolvers.items():
            log.info("evolver %s (%s) -> %s", name, model.name, layout.evolver(name))
            sub = evolver_config(cfg, name, model)
            summaries[name] = run(sub, config_text=OmegaConf.to_yaml(OmegaConf.structured(sub)))
    sides = {name: load_side(layout.evolver(name), summary) for name, summary in summaries.items()}
    joined = join_sides(sides, cfg.rounds)
    counts = join_counts(joined, list(sides))
    write_side_by_side(joined, layout)
    summary = {
        "compare": {name: cfg.compare.evolvers[name].name for name in summaries},
        "recipe": cfg.recipe.name,
        "rounds_requested": cfg.rounds,
        "join": counts,
        "evolvers": summaries,
        "wall_time_s": round(time.perf_counter() - started, 3),
        "outputs": {"side_by_side": [str(layout.side_by_side_file(kind).relative_to(layout.root))
                                     for kind in ("parquet", "jsonl")],
                    **{name: name for name in summaries}},
    }
    write_json(layout.summary, summary)
    return summary


def _side_table(rows: list[dict]) -> pa.Table:
    fields = {"seed_id": pa.string(), "id": pa.string(), "seed_instruction": pa.string(), "input": pa.string(),
              **SIDE_FIELDS}
    return pa.table({name: pa.array([row.get(name) for row in rows], kind) for name, kind in fields.items()})


def load_side(run_dir: Path, summary: dict) -> pa.Table:
    """One evolver's outcome per seed, read from its outputs: the final round's kept rows plus every round's
    rejects (a chained recipe rejects a seed's lineage at most once). Raises if a seed appears twice or the
    seeds found differ in number from the run's rows_in."""
    rounds = [entry["round"] for entry in summary["per_round"]]
    layout = RunLayout(run_dir)
    found: dict[str, dict] = {}
    seed_text: dict[str, str] = {}

    def add(row: dict, status: str, where: str) -> None:
        seed_id = row["seed_id"]
        if seed_id in found:
            raise ValueError(f"{run_dir}: seed {seed_id} appears twice ({found[seed_id]['where']} and {where})")
        scores = {name: _optional_float(row.get(name)) if status == STATUS_OK else None for name in ("ic_ifd", "ifd")}
        kept = status == STATUS_OK
        found[seed_id] = {
            "seed_id": seed_id, "id": row["id"], "input": row.get("input") or "", "status": status,
            "reason": "" if kept else row.get("reason") or "", "round": int(row.get("round") or 0),
            "instruction": (row.get("instruction") or "") if kept else "",
            "output": (row.get("output") or "") if kept else "", "method": row.get("method") or "", **scores,
            "where": where,
        }
        note_seed_text(row)

    def note_seed_text(row: dict) -> None:
        # Round 1 rows carry the seed as their parent; rows rejected while reading (round 0) are the seed.
        if row.get("round") == 1 and row.get("parent_instruction") is not None:
            seed_text.setdefault(row["seed_id"], row["parent_instruction"])
        elif row.get("round") == 0:
            seed_text.setdefault(row["seed_id"], row.get("instruction") or "")

    for round_num in rounds:
        path = layout.rejects(round_num)
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    add(json.loads(line), STATUS_REJECTED, f"{path}:{number}")
    if rounds:
        final = rounds[-1]
        for row in _read_rows(layout.data_files(final)):
            add(row, STATUS_OK, str(layout.data(final).relative_to(layout.root)))
        if final != 1:
            for row in _read_rows(layout.data_files(1), ["seed_id", "round", "parent_instruction"]):
                note_seed_text(row)
    if len(found) != summary["rows_in"]:
        raise ValueError(f"{run_dir}: {summary['rows_in']} seed rows went in but its outputs account for "
                         f"{len(found)} seeds")
    for seed_id, entry in found.items():
        entry["seed_instruction"] = seed_text.get(seed_id, "")
    return _side_table(sorted(found.values(), key=lambda e: e["seed_id"]))


def _read_rows(files: list[Path], columns: list[str] | None = None) -> list[dict]:
    if not files:
        return []
    return pa.concat_tables([pq.read_table(f, columns=columns) for f in files], promote_options="default").to_pylist()


def _optional_float(value) -> float | None:
    """A score column's value as a float; None where the row has none (Parquet null)."""
    return None if value is None else float(value)


def lineage_id(seed_id: str, rounds: int) -> str:
    """The id the seed's row has after `rounds` rounds of a chained recipe, under any evolver."""
    row_id = seed_id
    for round_num in range(1, rounds + 1):
        row_id = evolved_row_id(row_id, round_num)
    return row_id


def join_sides(sides: dict[str, pa.Table], rounds: int) -> pa.Table:
    """One row per seed of any side: seed_id, id (the final lineage id), the seed's instruction and input, then
    `<field>_<name>` for every side. A side without the seed gets status `absent`; a kept row whose id is not
    the lineage id is an error (the runs did not evolve the same seeds the same way)."""
    by_side = {name: {row["seed_id"]: row for row in table.to_pylist()} for name, table in sides.items()}
    seed_ids = sorted(set().union(*(rows.keys() for rows in by_side.values())))
    columns: dict[str, list] = {"seed_id": seed_ids, "id": [], "seed_instruction": [], "input": []}
    for name in sides:
        for field in SIDE_FIELDS:
            columns[f"{field}_{name}"] = []
    for seed_id in seed_ids:
        expected = lineage_id(seed_id, rounds)
        present = [rows[seed_id] for rows in by_side.values() if seed_id in rows]
        columns["id"].append(expected)
        columns["seed_instruction"].append(next((r["seed_instruction"] for r in present if r["seed_instruction"]), ""))
        columns["input"].append(next((r["input"] for r in present if r["input"]), ""))
        for name, rows in by_side.items():
            row = rows.get(seed_id)
            if row is None:
                row = {"status": ABSENT, "reason": f"seed not in {name}'s outputs", "round": None,
                       "instruction": "", "output": "", "method": "", "ic_ifd": None, "ifd": None}
            elif row["status"] == STATUS_OK and row["id"] != expected:
                raise ValueError(f"evolver {name}: seed {seed_id} ends as row {row['id']}, not {expected} "
                                 f"(rounds={rounds}): the runs' lineages differ")
            for field in SIDE_FIELDS:
                columns[f"{field}_{name}"].append(row[field])
    types = {"seed_id": pa.string(), "id": pa.string(), "seed_instruction": pa.string(), "input": pa.string(),
             **{f"{field}_{name}": kind for name in sides for field, kind in SIDE_FIELDS.items()}}
    return pa.table({key: pa.array(values, types[key]) for key, values in columns.items()})


def join_counts(joined: pa.Table, names: list[str]) -> dict:
    """Seeds in the join, kept by every evolver, by none, by exactly one, and each side's status counts."""
    statuses = {name: joined[f"status_{name}"].to_pylist() for name in names}
    kept = [[statuses[name][i] == STATUS_OK for name in names] for i in range(joined.num_rows)]
    per_side = {name: {status: values.count(status) for status in (STATUS_OK, STATUS_REJECTED, ABSENT)}
                for name, values in statuses.items()}
    return {
        "seeds": joined.num_rows,
        "kept_by_all": sum(all(k) for k in kept),
        "kept_by_none": sum(not any(k) for k in kept),
        "kept_only_by": {name: sum(k[j] and sum(k) == 1 for k in kept) for j, name in enumerate(names)},
        "per_evolver": per_side,
    }


def write_side_by_side(joined: pa.Table, layout: RunLayout) -> None:
    """The join as Parquet and JSON lines (one object per seed), each written atomically."""
    layout.side_by_side.mkdir(parents=True, exist_ok=True)
    target = layout.side_by_side_file("parquet")
    tmp = target.with_name(target.name + ".tmp")
    pq.write_table(joined, tmp)
    tmp.replace(target)
    lines = layout.side_by_side_file("jsonl")
    tmp = lines.with_name(lines.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        for row in joined.to_pylist():
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(lines)
