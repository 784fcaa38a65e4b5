"""Sweep summary: a Hydra callback that, after a multirun (`python -m engine -m model=a,b`), writes one record per
job to `<hydra.sweep.dir>/sweep_summary.json` and `.csv`, read from each job's summary.json, and the jobs' runs
side by side in `<hydra.sweep.dir>/report/index.html`.

Each job notes where its outputs went in `<sweep dir>/.jobs/<job number>.json` as it ends, so the summary also
finds jobs a launcher ran in other processes (on a shared filesystem). Register it under `hydra.callbacks` (see
conf/experiment/size_sweep.yaml)."""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from engine.state.storage import write_json

log = logging.getLogger("engine.commands.sweep")

JOBS = ".jobs"
# Columns of the CSV (the JSON keeps the nested breakdowns too).
CSV_COLUMNS = ("job", "overrides", "model", "status", "output_dir", "rows_in", "rows_out", "rows_rejected",
               "rows_conserved", "mean_ic_ifd", "mean_ifd", "evolve_tokens", "response_tokens", "wall_time_s",
               "steady_state_s", "tokens_per_s_per_accelerator", "tokens_per_s_per_node", "kept_rows_per_hour",
               "cost_per_1k_kept_usd", "bottleneck", "rejected_by_reason", "error")


class SweepSummary(Callback):
    """Writes the sweep summary when a multirun ends; a job that failed is listed with its error."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Job notes of an earlier sweep into the same directory must not be counted again.
        shutil.rmtree(Path(str(config.hydra.sweep.dir)) / JOBS, ignore_errors=True)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        failed = job_return.status != JobStatus.COMPLETED
        note = {
            "job": int(config.hydra.job.num),
            "overrides": list(job_return.overrides or []),
            "model": str(config.model.name),
            "output_dir": str(Path(str(config.run.output_dir)).resolve()),
            "status": "failed" if failed else "completed",
            # The exception itself (the `return_value` property would re-raise it).
            "error": repr(job_return._return_value) if failed else "",
        }
        notes = Path(str(config.hydra.sweep.dir)) / JOBS
        notes.mkdir(parents=True, exist_ok=True)
        write_json(notes / f"{note['job']}.json", note)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        records = sweep_records(sweep_dir)
        write_sweep_summary(sweep_dir, records)
        log.info("sweep summary of %d jobs: %s", len(records), sweep_dir / "sweep_summary.json")
        if config.get("analysis", {}).get("report", True):
            write_sweep_report(sweep_dir, records)


def write_sweep_report(sweep_dir: Path, records: list[dict]) -> None:
    """The finished jobs' runs side by side in one HTML report, `<sweep dir>/report/` (several evolver sizes on
    the same bins); a report that cannot be drawn is logged, the sweep's outputs stand."""
    from engine.report.build import ReportError, build_report

    done = [Path(r["output_dir"]) for r in records if r["status"] == "completed"]
    if len(done) < 2:
        return
    try:
        log.info("sweep report: %s", build_report(done, sweep_dir / "report"))
    except ReportError as err:
        log.warning("no sweep report written: %s", err)


def sweep_records(sweep_dir: Path) -> list[dict]:
    """One record per job note under `sweep_dir`, in job order, with the numbers of its run summary."""
    notes = [json.loads(path.read_text()) for path in (sweep_dir / JOBS).glob("*.json")]
    return [job_record(note) for note in sorted(notes, key=lambda n: n["job"])]


def job_record(note: dict) -> dict:
    """A job's note plus what its summary.json says (rows, rejections, mean scores, tokens, wall time)."""
    record = dict(note)
    path = Path(note["output_dir"]) / "summary.json"
    if not path.exists():
        if note["status"] == "completed":
            record.update(status="no_summary", error=f"{path} is missing")
        return record
    summary = json.loads(path.read_text())
    record.update({key: summary[key] for key in ("rows_in", "rows_out", "rows_rejected", "rows_conserved",
                                                 "rejected_by_reason", "scores", "tokens", "wall_time_s")})
    record["throughput"] = summary.get("throughput")  # absent in summaries written before per-stage accounting
    return record


def write_sweep_summary(sweep_dir: Path, records: list[dict]) -> None:
    """sweep_summary.json (every record in full) and sweep_summary.csv (one flat row per job)."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    write_json(sweep_dir / "sweep_summary.json", {"sweep_dir": str(sweep_dir.resolve()), "jobs": records})
    with open(sweep_dir / "sweep_summary.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for record in records:
            writer.writerow(csv_row(record))


def csv_row(record: dict) -> dict:
    scores, tokens = record.get("scores") or {}, record.get("tokens") or {}
    speed = record.get("throughput") or {}
    return {
        **{key: record.get(key, "") for key in CSV_COLUMNS},
        "overrides": " ".join(record.get("overrides", [])),
        "mean_ic_ifd": scores.get("mean_ic_ifd", ""),
        "mean_ifd": scores.get("mean_ifd", ""),
        "evolve_tokens": tokens.get("evolve_tokens", ""),
        "response_tokens": tokens.get("response_tokens", ""),
        "steady_state_s": speed.get("steady_state_s", ""),
        "tokens_per_s_per_accelerator": speed.get("generated_tokens_per_s_per_accelerator", ""),
        "tokens_per_s_per_node": speed.get("generated_tokens_per_s_per_node", ""),
        "kept_rows_per_hour": speed.get("kept_rows_per_hour", ""),
        "cost_per_1k_kept_usd": (speed.get("cost") or {}).get("per_1k_kept_rows_usd", ""),
        "bottleneck": (speed.get("bottleneck") or {}).get("stage", ""),
        "rejected_by_reason": json.dumps(record.get("rejected_by_reason", {}), sort_keys=True),
    }
