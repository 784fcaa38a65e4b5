"""The report's throughput sections, from summary.json["stages"] and ["throughput"]: time per stage and round,
and one row per run (per model in a sweep) with its speed, cost and data quality side by side."""

from __future__ import annotations

TOP_REASONS = 3
RERUN = "{label}: summary.json has no per-stage timings (written by runs since issue #16); rerun it"
STAGE_HEAD = ["run", "round", "stage", "actors / tasks", "rows", "rejected", "busy s", "span s", "load s",
              "busy fraction", "prompt tok", "gen tok", "gen tok/s", "rows/s"]
MODEL_HEAD = ["run", "model", "gen tok/s per accelerator", "gen tok/s per node", "kept rows/h", "cost / 1k kept (USD)",
              "mean IC-IFD", "kept fraction", "top rejection reasons", "bottleneck", "1M seeds (h, extrapolated)"]


def stages_section(runs: list) -> dict:
    """Per run, its per-stage entries (round, stage and figures); runs without them are listed as missing."""
    series, missing = [], []
    for run in runs:
        entries = run.summary.get("stages")
        if not isinstance(entries, list) or not entries:
            missing.append(RERUN.format(label=run.label))
            continue
        series.append({"label": run.label, "entries": [e for e in entries if isinstance(e, dict)]})
    return {"series": series, "missing": missing}


def per_model_section(runs: list) -> dict:
    """One row per run: throughput per accelerator / node, kept rows per hour, cost per 1k kept rows, mean
    IC-IFD, kept fraction and the most frequent rejection reasons."""
    rows, missing = [], []
    for run in runs:
        s, t = run.summary, run.summary.get("throughput")
        if not isinstance(t, dict):
            missing.append(RERUN.format(label=run.label))
            t = {}
        reasons = sorted((s.get("rejected_by_reason") or {}).items(), key=lambda item: (-item[1], item[0]))
        rows_in, rows_out = s.get("rows_in") or 0, s.get("rows_out") or 0
        extrapolation = t.get("extrapolation_1m_seeds") or {}
        rows.append({"label": run.label, "model": run.model,
                     "tokens_per_s_per_accelerator": t.get("generated_tokens_per_s_per_accelerator"),
                     "tokens_per_s_per_node": t.get("generated_tokens_per_s_per_node"),
                     "kept_rows_per_hour": t.get("kept_rows_per_hour"),
                     "cost_per_1k_kept_usd": (t.get("cost") or {}).get("per_1k_kept_rows_usd"),
                     "mean_ic_ifd": (s.get("scores") or {}).get("mean_ic_ifd"),
                     "kept_fraction": rows_out / rows_in if rows_in else None,
                     "top_rejections": dict(reasons[:TOP_REASONS]),
                     "bottleneck": (t.get("bottleneck") or {}).get("stage"),
                     "hours_1m_seeds": extrapolation.get("hours")})
    return {"rows": rows, "missing": missing}


def stage_rows(section: dict) -> list[list]:
    """The per-stage table's rows."""
    return [[x["label"], e.get("round"), e.get("stage"), e.get("actors") or e.get("tasks"), e.get("rows_in"),
             e.get("rejected"), e.get("busy_s"), e.get("span_s"), e.get("load_s"), e.get("busy_fraction"),
             e.get("prompt_tokens"), e.get("generated_tokens"), e.get("generated_tokens_per_s"), e.get("rows_per_s")]
            for x in section["series"] for e in x["entries"]]


def model_rows(section: dict) -> list[list]:
    """The per-model table's rows."""
    return [[r["label"], r["model"], r["tokens_per_s_per_accelerator"], r["tokens_per_s_per_node"],
             r["kept_rows_per_hour"], r["cost_per_1k_kept_usd"], r["mean_ic_ifd"], r["kept_fraction"],
             r["top_rejections"], r["bottleneck"], r["hours_1m_seeds"]] for r in section["rows"]]
