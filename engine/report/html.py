"""The report page: one self-contained HTML file (inline CSS, no script, PNGs referenced relatively).

Every value from a run directory is untrusted text (model names, evolver names, reasons): all of it goes
through `html.escape`."""

from __future__ import annotations

import html
import math

from engine.measure.stats import QUANTILES  # column heads (its keys), in the order the analysis writes them
from engine.report.throughput import MODEL_HEAD, STAGE_HEAD, model_rows, stage_rows

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem auto;max-width:72rem;
color:#222;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.85rem}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:right;vertical-align:top}
th:first-child,td:first-child{text-align:left}thead th{background:#f3f5f7}
td.text{text-align:left;white-space:nowrap}
img{max-width:100%;border:1px solid #eee}
.missing{color:#8a5a00;background:#fff8e6;border-left:3px solid #f0b400;padding:.4rem .8rem;list-style:none}
.note{color:#666;font-size:.85rem}
code{background:#f3f3f3;padding:0 .2rem}
"""


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def fmt(value) -> str:
    """A cell: numbers compactly, mappings as `key: value` lines, missing as a dash; always escaped."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "&ndash;"
    if isinstance(value, bool):
        return esc(value)
    if isinstance(value, int):
        return esc(f"{value:,}")
    if isinstance(value, float):
        return esc(f"{value:.4g}")
    if isinstance(value, dict):
        return "<br>".join(f"{esc(k)}: {fmt(v)}" for k, v in value.items()) or "&ndash;"
    if isinstance(value, (list, tuple)):
        return "<br>".join(fmt(v) for v in value) or "&ndash;"
    return esc(value)


def table(head: list[str], rows: list[list]) -> str:
    """A table; the first column holds labels (left-aligned), the others values."""
    out = ["<table><thead><tr>", *(f"<th>{esc(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td class=\"text\">{fmt(c)}</td>" if i == 0 else f"<td>{fmt(c)}</td>"
                                    for i, c in enumerate(row)) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def section(title: str, plot: str | None, body: str, missing: list[str], note: str = "") -> str:
    """A heading, the plot (when drawn), the note, the table and what is missing with the command to produce it."""
    parts = [f"<section><h2>{esc(title)}</h2>"]
    if plot:
        parts.append(f'<img src="{esc(plot)}" alt="{esc(title)}">')
    if note:
        parts.append(f'<p class="note">{esc(note)}</p>')
    parts.append(body)
    if missing:
        parts.append('<ul class="missing">' + "".join(f"<li>{_command(m)}</li>" for m in missing) + "</ul>")
    parts.append("</section>")
    return "".join(parts)


def _command(text: str) -> str:
    """Escape a note, then show its `backticked` commands as code."""
    pieces = esc(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(pieces))


def render(report: dict) -> str:
    """The whole page for `report` (the content of report.json)."""
    runs, s, plots = report["runs"], report["sections"], report["plots"]
    page_title = "Evolution Engine report: " + " vs ".join(r["label"] for r in runs)
    body = [f"<h1>{esc(page_title)}</h1>",
            "<ul>" + "".join(f"<li><b>{esc(r['label'])}</b>: <code>{esc(r['run_dir'])}</code></li>" for r in runs)
            + "</ul>"]

    fields = list(runs[0]["summary"]) if runs else []
    body.append(section("Run summary", None, table(["", *[r["label"] for r in runs]],
                                                   [[f, *[r["summary"][f] for r in runs]] for f in fields]), []))

    m = s["per_model"]
    body.append(section("Throughput, cost and quality per model", None, table(MODEL_HEAD, model_rows(m)), m["missing"],
                        "Tokens/s over the steady state (batches in flight; loads and Ray start left out). Cost needs "
                        "run.cost.gpu_hour_usd / cpu_hour_usd. The 1M-seed hours are an extrapolation of the measured "
                        "per-stage rates, not a measurement."))
    st = s["stages"]
    rows = stage_rows(st)
    body.append(section("Time per stage and round", plots.get("stages"), table(STAGE_HEAD, rows) if rows else "",
                        st["missing"], "Timed inside the stage actors: busy = their calls summed, span = first batch "
                        "start to last batch end, load = model load (apart), busy fraction = busy over the actors' "
                        "lifetime; tokens/s and rows/s per actor-second of busy time."))

    d = s["difficulty"]
    stack = [*d["labels"], "unparsable"]
    rows = [[x["label"], x["judge"], int(r), *[c.get(k, 0) for k in stack], sum(c.values())]
            for x in d["series"] for r, c in sorted(x["rounds"].items(), key=lambda rc: int(rc[0]))]
    body.append(section("Difficulty by round", plots.get("difficulty"),
                        table(["run / evolver", "judge", "round", *stack, "total"], rows) if rows else "", d["missing"],
                        "Counts of the judge's labels per round; shares are plotted (unparsable answers in grey)."))

    c = s["complexity"]
    rows = [[x["label"], x["judge"], x["prompt"], x["n"], x["unparsable"], x["mean"],
             *[x["quantiles"][q] for q in QUANTILES]] for x in c["series"]]
    body.append(section("Complexity", plots.get("complexity"),
                        table(["run / evolver", "judge", "prompt", "n", "unparsable", "mean", *QUANTILES], rows)
                        if rows else "", c["missing"]))

    for column, title in (("ifd", "IFD"), ("ic_ifd", "IC-IFD")):
        h = s[column]
        rows = [[x["label"], x["round"], x["n"], x["nan"], x["mean"], x["min"], x["max"], x["underflow"],
                 x["overflow"]] for x in h["series"]]
        lo, hi = h["range"]
        body.append(section(f"{title} (final round)", plots.get(column),
                            table(["run", "round", "scored rows", "NaN (not scored)", "mean", "min", "max",
                                   f"below {lo}", f"above {hi}"], rows) if rows else "", h["missing"],
                            f"{h['bins']} bins over [{lo}, {hi}]; rows outside the range are counted, not drawn."))

    v = s["diversity"]
    rows = [[x["label"], x["model"], x["n"], x["mean"], *[x["quantiles"][q] for q in QUANTILES], x["threshold"],
             x["near_duplicate_rows"]] for x in v["series"]]
    body.append(section("Diversity (minimum neighbour distance)", plots.get("diversity"),
                        table(["run / evolver", "embedder", "n", "mean", *QUANTILES, "threshold",
                               "near-duplicate rows"], rows) if rows else "", v["missing"],
                        "MND = squared L2 distance of unit embeddings to the nearest other row (2 - 2 cos); "
                        "near-duplicate rows have another row closer than the threshold."))

    for name, title, unit in (("top1_prob", "Top-1 token probability (output space)", "mean top-1"),
                              ("entropy", "Next-token entropy (output space)", "mean entropy (nats)")):
        o = s[name]
        rows = [[x["label"], x["positions"], x["mean"]] for x in o["series"]]
        body.append(section(title, plots.get(name), table(["run / evolver", "positions", unit], rows)
                            if rows else "", o["missing"],
                            "Densities from the histograms recorded over every generated position of evolution."))

    r = s["reward"]
    rows = [[x["label"], x["model"], x["length_norm"], x["n"], x["mean"], x["mean_adjusted"]] for x in r["series"]]
    body.append(section("Reward", None, table(["run / evolver", "reward model", "length norm", "n", "mean",
                                               "mean adjusted"], rows) if rows else "", r["missing"]))

    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(page_title)}</title><style>{CSS}</style></head>\n<body>\n" + "\n".join(body)
            + "\n<p class=\"note\">Numbers shown are also in report.json next to this page.</p>\n</body></html>\n")
