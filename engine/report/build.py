"""The report of one or several finished runs: PNG plots, report.json (the numbers shown) and index.html.

Sources, all read from the run directories (nothing is recomputed with a model):
- summary.json: the run summary table and the output-space densities (`output_space`, recorded while evolving);
- data/round_R/*.parquet of the final round (largest R): IFD and IC-IFD histograms, streamed batch by batch
  over the two columns only, on fixed bins (IFD [0, 1.5] in 60 bins, IC-IFD [0, 1] in 50 bins); NaN (not
  scored) rows are counted apart, values outside the range are counted as underflow/overflow and named in the
  legend rather than stretching the axis for a few outliers;
- analysis/summary.json and analysis/rows/*.parquet (`python -m engine.analyze RUN_DIR`): difficulty,
  complexity, diversity (minimum neighbour distance histogram, 100 bins over [0, 1] as the paper) and reward.
A measurement a run lacks is skipped and the page says which command produces it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from engine.measure.stats import QUANTILES
from engine.report.html import render
from engine.report.plots import draw_report
from engine.report.throughput import per_model_section, stages_section
from engine.state.layout import RunLayout
from engine.state.storage import write_json

ANALYZE = "python -m engine.analyze {run_dir}"
OUTPUT_SPACE_FLAG = "recipe.output_space=true"
SCORING_FLAG = "scoring.enabled=true"
# Keys that switch an analysis on when it was off (null in analysis/summary.json).
ANALYSIS_SWITCH = {"difficulty": "analysis.difficulty.enabled=true", "complexity": "analysis.complexity.enabled=true",
                   "diversity": "analysis.diversity.enabled=true", "reward": "analysis.reward.path=REWARD_MODEL_DIR"}
SCORE_BINS = {"ifd": (0.0, 1.5, 60), "ic_ifd": (0.0, 1.0, 50)}
MND_BINS = (0.0, 1.0, 100)
READ_ROWS = 65536
SUMMARY_FIELDS = ("recipe", "model", "rounds_completed", "rows_in", "rows_out", "rows_rejected",
                  "rejected_by_reason", "tokens", "scores", "dedup", "selection", "wall_time_s", "config_hash")


class ReportError(ValueError):
    """A run directory the report cannot read; the message names the file (and field)."""


class Histogram:
    """A histogram on fixed bins, filled batch by batch, so a run of any size is read in bounded memory."""

    def __init__(self, lo: float, hi: float, bins: int):
        self.edges = np.linspace(lo, hi, bins + 1)
        self.counts = np.zeros(bins, dtype=np.int64)
        self.n = self.nan = self.underflow = self.overflow = 0
        self.total = 0.0
        self.min, self.max = math.inf, -math.inf

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64)
        finite = values[np.isfinite(values)]
        self.nan += int(values.size - finite.size)
        if not finite.size:
            return
        lo, hi = self.edges[0], self.edges[-1]
        self.underflow += int((finite < lo).sum())
        self.overflow += int((finite > hi).sum())
        self.counts += np.histogram(finite, bins=self.edges)[0]
        self.n += int(finite.size)
        self.total += float(finite.sum())
        self.min, self.max = min(self.min, float(finite.min())), max(self.max, float(finite.max()))

    def as_dict(self) -> dict:
        return {"n": self.n, "nan": self.nan, "underflow": self.underflow, "overflow": self.overflow,
                "mean": self.total / self.n if self.n else None, "min": self.min if self.n else None,
                "max": self.max if self.n else None, "edges": [round(float(e), 6) for e in self.edges],
                "counts": self.counts.tolist()}


def read_json(path: Path) -> dict:
    """A JSON object from a run directory, or an error naming the file and the line that does not parse."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ReportError(f"{path}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def _mapping(value, path: Path, field: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ReportError(f"{path}: field {field!r} should be an object, found {type(value).__name__}")
    return value


def _json_number(value, path: Path, field: str) -> float | None:
    """A number field of a run's JSON file (None stays None), or a ReportError naming the file and the field."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ReportError(f"{path}: field {field!r} should be a number, found {value!r}")
    return float(value)


class Run:
    """One run directory: its summary, its analysis summary (when analysed) and its label in plots."""

    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir)
        self.layout = RunLayout(self.dir)
        summary_path = self.layout.summary
        if not summary_path.is_file():
            raise ReportError(f"{self.dir}: no summary.json, so this is not a run directory "
                              "(runs are written by `python -m engine ...`)")
        self.summary = read_json(summary_path)
        self.model = str(self.summary.get("model", "") or "unknown model")
        analysis_path = self.layout.analysis_summary
        self.analysis = read_json(analysis_path) if analysis_path.is_file() else None
        self.analysis_path = analysis_path
        self.label = ""

    def series_label(self, evolver: str, evolvers: int) -> str:
        """The run's label, plus the evolver when the run holds rows of several evolvers."""
        return self.label if evolvers == 1 else f"{self.label} / {evolver}"

    def analyze_hint(self) -> str:
        return f"{self.label}: no analysis/summary.json; run `{ANALYZE.format(run_dir=self.dir)}`"


def label_runs(runs: list[Run]) -> None:
    """`model (dir)` per run, taking more parent directories (then a number) until the labels differ."""
    depth = 1
    while True:
        labels = [f"{r.model} ({'/'.join(r.dir.resolve().parts[-depth:])})" for r in runs]
        if len(set(labels)) == len(labels) or depth >= max(len(r.dir.resolve().parts) for r in runs):
            break
        depth += 1
    seen: dict[str, int] = {}
    for run, label in zip(runs, labels):
        seen[label] = seen.get(label, 0) + 1
        run.label = label if labels.count(label) == 1 else f"{label} #{seen[label]}"


def final_round_files(layout: RunLayout) -> tuple[int | None, list[Path]]:
    """The run's final round R (the largest data/round_R/) and its Parquet files (none when no row was kept);
    (None, []) when the run has no round directory."""
    last = layout.final_round()
    return (None, []) if last is None else (last, layout.data_files(last))


def score_histograms(files: list[Path]) -> dict[str, Histogram | None]:
    """IFD and IC-IFD histograms of the given parquet files (None for a column no file has)."""
    hists: dict[str, Histogram | None] = {c: None for c in SCORE_BINS}
    for path in files:
        pf = pq.ParquetFile(path)
        columns = [c for c in SCORE_BINS if c in pf.schema_arrow.names]
        if not columns:
            continue
        for batch in pf.iter_batches(batch_size=READ_ROWS, columns=columns):
            for column in columns:
                if hists[column] is None:
                    hists[column] = Histogram(*SCORE_BINS[column])
                hists[column].add(batch.column(column).to_numpy(zero_copy_only=False))
    return hists


def mnd_histograms(layout: RunLayout) -> dict[str, Histogram]:
    """Minimum-neighbour-distance histograms per evolver from analysis/rows/*.parquet."""
    hists: dict[str, Histogram] = {}
    for path in sorted(layout.analysis_rows.glob("*.parquet")):
        pf = pq.ParquetFile(path)
        if not {"mnd", "evolver"} <= set(pf.schema_arrow.names):
            raise ReportError(f"{path}: analysis rows need the columns 'mnd' and 'evolver'")
        for batch in pf.iter_batches(batch_size=READ_ROWS, columns=["mnd", "evolver"]):
            mnd = batch.column("mnd").to_numpy(zero_copy_only=False)
            evolvers = np.asarray(batch.column("evolver").to_pylist(), dtype=object)
            for evolver in dict.fromkeys(evolvers.tolist()):
                hist = hists.setdefault(str(evolver), Histogram(*MND_BINS))
                hist.add(mnd[evolvers == evolver])
    return hists


def _analysis_section(runs: list[Run], name: str) -> tuple[list[tuple[Run, str, dict]], list[str]]:
    """(run, evolver, entry) for every evolver of analysis/summary.json[name], and the notes for runs without it."""
    found, missing = [], []
    for run in runs:
        if run.analysis is None:
            missing.append(run.analyze_hint())
            continue
        section = _mapping(run.analysis.get(name), run.analysis_path, name)
        if not section:
            missing.append(f"{run.label}: {name} was switched off when analysed; rerun "
                           f"`{ANALYZE.format(run_dir=run.dir)} {ANALYSIS_SWITCH[name]}`")
            continue
        key = "counts" if name == "difficulty" else "per_evolver"
        entries = _mapping(section.get(key), run.analysis_path, f"{name}.{key}")
        for evolver, entry in entries.items():
            found.append((run, str(evolver), _mapping(entry, run.analysis_path, f"{name}.{key}.{evolver}")))
    return found, missing


def _labelled(found: list[tuple[Run, str, dict]]) -> list[tuple[str, Run, str, dict]]:
    per_run = {id(r): sum(1 for q, _, _ in found if q is r) for r, _, _ in found}
    return [(run.series_label(evolver, per_run[id(run)]), run, evolver, entry) for run, evolver, entry in found]


def _round(key, path: Path, evolver: str) -> str:
    if not str(key).isdigit():
        raise ReportError(f"{path}: difficulty.counts.{evolver}: round keys are round numbers, found {key!r}")
    return str(int(key))


def _quantiles(entry: dict, path: Path, field: str) -> dict:
    q = _mapping(entry.get("quantiles"), path, f"{field}.quantiles")
    return {k: _json_number(q.get(k), path, f"{field}.quantiles.{k}") for k in QUANTILES}


def _difficulty(runs: list[Run]) -> dict:
    found, missing = _analysis_section(runs, "difficulty")
    series = []
    for label, run, evolver, entry in _labelled(found):
        field = f"difficulty.counts.{evolver}"
        rounds = {}
        for r, counts in entry.items():
            counts = _mapping(counts, run.analysis_path, f"{field}.{r}")
            rounds[_round(r, run.analysis_path, evolver)] = {
                str(k): int(_json_number(v, run.analysis_path, f"{field}.{r}.{k}") or 0) for k, v in counts.items()}
        series.append({"label": label, "evolver": evolver, "judge": run.analysis.get("judge"),
                       "prompt": run.analysis["difficulty"].get("prompt"), "rounds": rounds})
    labels = next((list(r.analysis["difficulty"].get("labels") or []) for r in runs
                   if r.analysis and r.analysis.get("difficulty")), [])
    return {"labels": labels, "series": series, "missing": missing}


def _complexity(runs: list[Run]) -> dict:
    found, missing = _analysis_section(runs, "complexity")
    series = [{"label": label, "evolver": evolver, "judge": run.analysis.get("judge"),
               "prompt": run.analysis["complexity"].get("prompt"),
               "n": entry.get("n"), "unparsable": entry.get("unparsable"),
               "mean": _json_number(entry.get("mean"), run.analysis_path, f"complexity.per_evolver.{evolver}.mean"),
               "quantiles": _quantiles(entry, run.analysis_path, f"complexity.per_evolver.{evolver}")}
              for label, run, evolver, entry in _labelled(found)]
    return {"series": series, "missing": missing}


def _scores(runs: list[Run]) -> dict[str, dict]:
    """The "ifd" and "ic_ifd" sections, both from one pass over each run's final round."""
    scored = {}
    for run in runs:
        last, files = final_round_files(run.layout)
        scored[id(run)] = last, score_histograms(files)
    sections = {}
    for column, (lo, hi, bins) in SCORE_BINS.items():
        series, missing = [], []
        for run in runs:
            last, hists = scored[id(run)]
            hist = hists[column]
            if last is None:
                missing.append(f"{run.label}: no data/round_*/ parquet files in {run.dir}")
            elif hist is None or not hist.n:
                missing.append(f"{run.label}: round {last} has no {column} values; "
                               f"run with `python -m engine ... {SCORING_FLAG}`")
            else:
                series.append({"label": run.label, "round": last, **hist.as_dict()})
        sections[column] = {"range": [lo, hi], "bins": bins, "series": series, "missing": missing}
    return sections


def _diversity(runs: list[Run]) -> dict:
    found, missing = _analysis_section(runs, "diversity")
    mnd = {id(run): mnd_histograms(run.layout) for run in runs if run.analysis and run.analysis.get("diversity")}
    series = []
    for label, run, evolver, entry in _labelled(found):
        hist = mnd[id(run)].get(evolver)
        if hist is None:
            missing.append(f"{label}: no rows in {run.layout.analysis_rows}; "
                           f"run `{ANALYZE.format(run_dir=run.dir)}`")
        field = f"diversity.per_evolver.{evolver}"
        series.append({"label": label, "evolver": evolver, "model": run.analysis["diversity"].get("model"),
                       "threshold": run.analysis["diversity"].get("threshold"), "n": entry.get("n"),
                       "mean": _json_number(entry.get("mean"), run.analysis_path, f"{field}.mean"),
                       "quantiles": _quantiles(entry, run.analysis_path, field),
                       "near_duplicate_rows": entry.get("near_duplicate_rows"),
                       "histogram": hist.as_dict() if hist is not None else None})
    return {"range": list(MND_BINS[:2]), "bins": MND_BINS[2], "series": series, "missing": missing}


def _reward(runs: list[Run]) -> dict:
    found, missing = _analysis_section(runs, "reward")
    series = [{"label": label, "evolver": evolver, "model": run.analysis["reward"].get("model"),
               "length_norm": run.analysis["reward"].get("length_norm"), "n": entry.get("n"),
               "mean": entry.get("mean"), "mean_adjusted": entry.get("mean_adjusted")}
              for label, run, evolver, entry in _labelled(found)]
    return {"series": series, "missing": missing}


def _output_space(runs: list[Run], key: str) -> dict:
    """Top-1 probability (key "top1") or entropy (key "entropy") histograms from summary.json["output_space"]."""
    found, missing = [], []
    for run in runs:
        path = run.layout.summary
        space = _mapping(run.summary.get("output_space"), path, "output_space")
        if not space:
            missing.append(f"{run.label}: no output_space in summary.json; rerun the evolution with "
                           f"`python -m engine ... {OUTPUT_SPACE_FLAG}`")
        for evolver, entry in space.items():
            found.append((run, str(evolver), _mapping(entry, path, f"output_space.{evolver}")))
    series = []
    for label, run, evolver, entry in _labelled(found):
        path, field = run.layout.summary, f"output_space.{evolver}"
        edges = [_json_number(e, path, f"{field}.{key}_edges") for e in entry.get(f"{key}_edges") or []]
        counts = [_json_number(c, path, f"{field}.{key}_counts") for c in entry.get(f"{key}_counts") or []]
        if len(edges) != len(counts) + 1:
            raise ReportError(f"{path}: {field}: {key}_edges needs one more value than {key}_counts "
                              f"({len(edges)} edges, {len(counts)} counts)")
        series.append({"label": label, "evolver": evolver, "positions": entry.get("positions"),
                       "mean": entry.get(f"mean_{key}"), "edges": edges, "counts": [int(c) for c in counts]})
    return {"series": series, "missing": missing}


def collect(runs: list[Run]) -> dict:
    """Every number the report shows, per section, as plain JSON (report.json); the plots are drawn from it."""
    sections = {"difficulty": _difficulty(runs), "complexity": _complexity(runs), **_scores(runs),
                "diversity": _diversity(runs), "top1_prob": _output_space(runs, "top1"),
                "entropy": _output_space(runs, "entropy"), "reward": _reward(runs),
                "stages": stages_section(runs), "per_model": per_model_section(runs)}
    return {"runs": [{"label": run.label, "run_dir": str(run.dir),
                      "summary": {k: run.summary.get(k) for k in SUMMARY_FIELDS}} for run in runs],
            "sections": sections}


def default_out(run_dirs: list[Path]) -> Path:
    """RUN_DIR/report for one run, <first RUN_DIR>/report-compare for several."""
    first = RunLayout(run_dirs[0])
    return first.report if len(run_dirs) == 1 else first.compare_report


def build_report(run_dirs: list[Path], out: Path | None = None) -> Path:
    """Write OUT/index.html, OUT/report.json and the PNGs for the given runs; returns the index.html path."""
    if not run_dirs:
        raise ReportError("no run directory given")
    runs = [Run(Path(d)) for d in run_dirs]
    label_runs(runs)
    out = Path(out) if out is not None else default_out([Path(d) for d in run_dirs])
    out.mkdir(parents=True, exist_ok=True)
    report = collect(runs)
    report["plots"] = draw_report(report, out)
    write_json(out / "report.json", _finite(report))
    index = out / "index.html"
    tmp = index.with_name(index.name + ".tmp")
    tmp.write_text(render(report), encoding="utf-8")
    tmp.replace(index)
    return index


def _finite(value):
    """NaN/inf as null, so report.json is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
