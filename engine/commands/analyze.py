"""`python -m engine.analyze RUN_DIR [key=value ...]`: the paper's measurements of a run's evolved data.

Over the final round's kept rows: difficulty labels and 0-100 complexity by an LLM judge (`model=` picks the
judge), the reward of each evolution step (`analysis.reward.path=`), and diversity (minimum neighbour distance of
sentence embeddings within each evolver's rows). Writes RUN_DIR/analysis/rows/part-00000.parquet (one row per
analysed row), RUN_DIR/analysis/summary.json and, unless `analysis.report=false`, the HTML report.

The model stages run in Ray actor pools (engine.run.runner.analyse); the driver streams their output batches to
disk: embeddings go to one float32 file per evolver, searched block by block, so memory stays bounded."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine.config import Config, ConfigError, compose
from engine.measure.stats import quantiles
from engine.prompts.judges import DIFFICULTY_LABELS
from engine.recipes.resources import resources_for
from engine.recipes.spec import StageSpec
from engine.stages.analysis.reward import adjust
from engine.state.layout import RunLayout
from engine.state.storage import write_json

log = logging.getLogger("engine.commands.analyze")

ROW_COLUMNS = {  # column -> (arrow type, value for a row an analysis did not cover)
    "id": (pa.string(), ""), "seed_id": (pa.string(), ""), "round": (pa.int64(), 0), "evolver": (pa.string(), ""),
    "method": (pa.string(), ""), "instruction": (pa.string(), ""),
    "difficulty": (pa.string(), ""), "difficulty_raw": (pa.string(), ""),
    "complexity": (pa.float64(), np.nan), "complexity_raw": (pa.string(), ""),
    "reward": (pa.float64(), np.nan), "reward_tokens": (pa.int64(), 0),
}
INPUT_COLUMNS = ["id", "seed_id", "round", "evolver", "method", "instruction", "input", "parent_instruction",
                 "status"]


def final_round(layout: RunLayout) -> tuple[int, list[Path]]:
    """The last round's kept-row files (as the report finds them); a clear error when the directory is not a
    finished run."""
    number = layout.final_round()
    if not layout.summary.exists() or number is None:
        raise ConfigError(f"{layout.root} is not a finished run directory (no summary.json or data/round_*/): "
                          "pass the output_dir of a completed `python -m engine` run")
    return number, layout.data_files(number)


def analysis_stages(cfg: Config) -> list[StageSpec]:
    """The model stages the config switches on, in order (each its own actor pool)."""
    from engine.stages.analysis.judge import Judge, JudgeArgs

    a = cfg.analysis
    specs: list[StageSpec] = []
    if a.difficulty.enabled or a.complexity.enabled:
        judge = JudgeArgs(model=cfg.model, difficulty=a.difficulty, complexity=a.complexity, run_seed=cfg.run.seed)
        specs.append(StageSpec(Judge, judge, resources_for(cfg, "judge")))
    if a.reward.path:
        from engine.stages.analysis.reward import Reward, RewardArgs

        reward = RewardArgs(path=a.reward.path, max_length=a.reward.max_length, batch_size=a.reward.batch_size,
                            length_norm=a.reward.length_norm)
        specs.append(StageSpec(Reward, reward, resources_for(cfg, "reward")))
    if a.diversity.enabled:
        from engine.stages.analysis.diversity import Embed, EmbedArgs

        specs.append(StageSpec(Embed, EmbedArgs(embedder=a.embedder), resources_for(cfg, "embed")))
    return specs


class Collector:
    """The driver's sink for analysed batches: row columns to a Parquet file, embeddings appended to one raw
    float32 file per evolver (in row order), so nothing grows in memory with the run's size."""

    def __init__(self, work: Path):
        self.work = work
        self.writer = pq.ParquetWriter(work / "rows.parquet", pa.schema([(k, t) for k, (t, _) in ROW_COLUMNS.items()]))
        self.embedding_files: dict[str, object] = {}
        self.counts: Counter = Counter()
        self.dim = 0

    def __call__(self, batch: dict[str, np.ndarray]) -> None:
        n = len(batch["id"])
        columns = {}
        for name, (kind, default) in ROW_COLUMNS.items():
            values = batch.get(name)
            columns[name] = pa.array(np.full(n, default, dtype=object) if values is None else values.tolist(), kind)
        self.writer.write_table(pa.table(columns))
        if "embedding" in batch:
            vectors = np.asarray(batch["embedding"], dtype=np.float32)
            self.dim = vectors.shape[1]
            for evolver in np.unique(batch["evolver"].astype(str)):
                mask = batch["evolver"].astype(str) == evolver
                if evolver not in self.embedding_files:
                    self.embedding_files[evolver] = open(self.work / f"embeddings-{len(self.embedding_files)}.f32", "wb")
                self.embedding_files[evolver].write(np.ascontiguousarray(vectors[mask]).tobytes())
                self.counts[evolver] += int(mask.sum())

    def close(self) -> None:
        self.writer.close()
        for handle in self.embedding_files.values():
            handle.close()

    def embeddings(self, evolver: str) -> np.ndarray:
        """One evolver's embeddings as a read-only memory map [rows, dim]."""
        path = self.embedding_files[evolver].name
        return np.memmap(path, dtype=np.float32, mode="r", shape=(self.counts[evolver], self.dim))


def diversity(cfg: Config, collector: Collector) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict]:
    """Minimum neighbour distance and near-duplicate counts within each evolver's rows, with their summary."""
    from engine.stages.analysis.diversity import diversity_summary, min_neighbour_distances

    settings = cfg.analysis.diversity
    results, per_evolver = {}, {}
    for evolver in sorted(collector.embedding_files):
        mnd, dups = min_neighbour_distances(collector.embeddings(evolver), threshold=settings.threshold,
                                            block_rows=settings.block_rows)
        results[evolver] = (mnd, dups)
        per_evolver[evolver] = diversity_summary(mnd, dups)
    return results, per_evolver


def attach_diversity(work: Path, target: Path, results: dict) -> None:
    """Copy the collected rows into `target`, adding mnd and near_duplicates (rows are in embedding order per
    evolver, so a running position per evolver finds each row's values)."""
    position: Counter = Counter()
    reader = pq.ParquetFile(work / "rows.parquet")
    schema = reader.schema_arrow.append(pa.field("mnd", pa.float64())).append(pa.field("near_duplicates", pa.int64()))
    with pq.ParquetWriter(target, schema) as writer:
        for batch in reader.iter_batches(batch_size=8192):
            evolvers = batch.column("evolver").to_pylist()
            mnd = np.full(len(evolvers), np.nan)
            dups = np.zeros(len(evolvers), dtype=np.int64)
            for i, evolver in enumerate(evolvers):
                if evolver in results:
                    values, counts = results[evolver]
                    mnd[i], dups[i] = values[position[evolver]], counts[position[evolver]]
                    position[evolver] += 1
            table = pa.Table.from_batches([batch]).append_column("mnd", pa.array(mnd)).append_column(
                "near_duplicates", pa.array(dups))
            writer.write_table(table)


def analysis_summary(cfg: Config, rows_file: Path, run_dir: Path, diversity_summary: dict | None) -> dict:
    """analysis/summary.json from the analysed rows (read column by column)."""
    table = pq.read_table(rows_file, columns=["round", "evolver", "difficulty", "complexity", "reward",
                                              "reward_tokens"])
    evolvers = np.asarray(table["evolver"].to_pylist(), dtype=object)
    summary: dict = {"run_dir": str(run_dir), "rows": table.num_rows, "judge": cfg.model.name}
    a = cfg.analysis
    if a.difficulty.enabled:
        counts: dict = defaultdict(lambda: defaultdict(lambda: {label: 0 for label in (*DIFFICULTY_LABELS,
                                                                                         "unparsable")}))
        for evolver, round_num, label in zip(evolvers, table["round"].to_pylist(), table["difficulty"].to_pylist()):
            counts[evolver][str(round_num)][label or "unparsable"] += 1
        summary["difficulty"] = {"prompt": a.difficulty.prompt, "parse": a.difficulty.parse,
                                 "labels": list(DIFFICULTY_LABELS),
                                 "counts": json.loads(json.dumps(counts))}
    else:
        summary["difficulty"] = None
    complexity = np.asarray(table["complexity"].to_numpy(zero_copy_only=False), dtype=np.float64)
    if a.complexity.enabled:
        per = {}
        for evolver in sorted(set(evolvers)):
            values = complexity[evolvers == evolver]
            parsed = values[np.isfinite(values)]
            per[evolver] = {"n": int(len(values)), "unparsable": int(len(values) - len(parsed)),
                            "mean": float(parsed.mean()) if len(parsed) else None, "quantiles": quantiles(parsed)}
        summary["complexity"] = {"prompt": a.complexity.prompt, "parse": a.complexity.parse, "per_evolver": per}
    else:
        summary["complexity"] = None
    if a.reward.path:
        rewards = np.asarray(table["reward"].to_numpy(zero_copy_only=False), dtype=np.float64)
        tokens = np.asarray(table["reward_tokens"].to_numpy(zero_copy_only=False), dtype=np.float64)
        per = {}
        for evolver in sorted(set(evolvers)):
            mask = evolvers == evolver
            raw, adjusted = rewards[mask], adjust(rewards[mask], tokens[mask], a.reward.length_norm)
            per[evolver] = {"n": int(np.isfinite(raw).sum()),
                            "mean": float(np.nanmean(raw)) if np.isfinite(raw).any() else None,
                            "mean_adjusted": float(np.nanmean(adjusted)) if np.isfinite(adjusted).any() else None}
        summary["reward"] = {"model": a.reward.path, "length_norm": a.reward.length_norm, "per_evolver": per}
    else:
        summary["reward"] = None
    summary["diversity"] = None if diversity_summary is None else {
        "model": diversity_summary.pop("_model"), "metric": "squared_l2", "threshold": a.diversity.threshold,
        "search": "numpy", "per_evolver": diversity_summary}
    return summary


def analyse_run(cfg: Config, run_dir: Path) -> dict:
    """Analyse one finished run directory; returns analysis/summary.json's content."""
    from engine.run.runner import analyse

    layout = RunLayout(run_dir)
    round_num, files = final_round(layout)
    if not files:
        folder = layout.data(round_num).relative_to(layout.root)
        raise ConfigError(f"{run_dir}: round {round_num} kept no rows ({folder}/ is empty): nothing to analyse")
    out = layout.analysis
    work = out / "_work"
    shutil.rmtree(out, ignore_errors=True)
    work.mkdir(parents=True)
    collector = Collector(work)
    specs = analysis_stages(cfg)
    log.info("analysing round %d of %s: %s", round_num, run_dir, [s.name for s in specs])
    try:
        analyse(cfg, files, INPUT_COLUMNS, specs, collector)
    finally:
        collector.close()
    rows_dir = layout.analysis_rows
    rows_dir.mkdir()
    diversity_summary = None
    results: dict = {}
    if cfg.analysis.diversity.enabled:
        results, diversity_summary = diversity(cfg, collector)
        diversity_summary["_model"] = cfg.analysis.embedder.path or "all-MiniLM-L6-v2 (bundled)"
    attach_diversity(work, rows_dir / "part-00000.parquet", results)
    summary = analysis_summary(cfg, rows_dir / "part-00000.parquet", run_dir, diversity_summary)
    shutil.rmtree(work)
    write_json(layout.analysis_summary, summary)
    if cfg.analysis.report:
        from engine.report.build import build_report

        log.info("report: %s", build_report([run_dir]))
    return summary


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    run_dirs = [Path(a) for a in argv if "=" not in a]
    overrides = [a for a in argv if "=" in a]
    if not run_dirs or any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0 if run_dirs else 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from engine.backends.base import BackendUnavailable

    try:
        cfg = compose(overrides)
        for run_dir in run_dirs:
            summary = analyse_run(cfg, run_dir)
            print(json.dumps({"run_dir": str(run_dir), "rows": summary["rows"]}))
    except (ConfigError, BackendUnavailable) as err:
        log.error("%s", err)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
