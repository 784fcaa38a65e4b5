"""The report's PNG figures, drawn with matplotlib's object API on the Agg canvas (no display, no pyplot state).

Every function takes plain data (series of {"label", "colour", ...}) and a path; several runs are overlaid on
the same bins with a legend, or put side by side as grouped bars."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
           "#bcbd22")
# Difficulty labels from light to dark, unparsable answers in grey.
LABEL_COLOURS = {"very easy": "#c6dbef", "easy": "#6baed6", "medium": "#2171b5", "hard": "#08519c",
                 "very hard": "#08306b", "unparsable": "#bdbdbd"}
SIZE = (9.0, 4.8)
DPI = 110


def plot_text(text: str, limit: int = 48) -> str:
    """Run-supplied text made inert for matplotlib: `$` would start mathtext, a leading `_` hides a legend entry."""
    text = str(text).replace("\n", " ")
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    text = text.replace("$", r"\$")
    return "\u200b" + text if text.startswith("_") else text


def _save(fig: Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, format="png")


def difficulty_bars(series: list[dict], labels: list[str], path: Path) -> None:
    """Stacked label shares per round; within a round one bar per series, side by side.

    series: {"label", "rounds": {round: {label: n, ..., "unparsable": n}}}."""
    stack = [*labels, "unparsable"]
    rounds = sorted({int(r) for s in series for r in s["rounds"]})
    width = 0.8 / max(len(series), 1)
    fig = Figure(figsize=(max(SIZE[0], 1.6 * len(rounds) * len(series)), SIZE[1] + 0.6))
    ax = fig.add_subplot()
    ticks, names = [], []
    for i, s in enumerate(series):
        for j, r in enumerate(rounds):
            counts = s["rounds"].get(str(r)) or s["rounds"].get(r) or {}
            total = sum(float(counts.get(k, 0)) for k in stack)
            x = j + (i - (len(series) - 1) / 2) * width
            bottom = 0.0
            for k in stack:
                share = float(counts.get(k, 0)) / total if total else 0.0
                ax.bar(x, share, width * 0.92, bottom=bottom, color=LABEL_COLOURS.get(k, "#999999"),
                       edgecolor=s["colour"], linewidth=1.2, label=k if (i, j) == (0, 0) else None)
                bottom += share
            ticks.append(x)
            names.append(f"R{r}\n{plot_text(s['label'], 22)}")
    ax.set_xticks(ticks, names, fontsize=8)
    ax.set_ylabel("share of rows")
    ax.set_ylim(0, 1)
    ax.set_title("Difficulty labels by round (LLM judge)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    _save(fig, path)


def complexity_boxes(series: list[dict], path: Path) -> None:
    """One box per series from its stored quantiles: box p25-p75, median line, whiskers p10 and p90, mean dot.

    series: {"label", "colour", "mean", "quantiles": {"p10", "p25", "p50", "p75", "p90"}}."""
    stats = [{"label": plot_text(s["label"], 28), "whislo": s["quantiles"]["p10"], "q1": s["quantiles"]["p25"],
              "med": s["quantiles"]["p50"], "q3": s["quantiles"]["p75"], "whishi": s["quantiles"]["p90"],
              "mean": s["mean"], "fliers": []} for s in series]
    fig = Figure(figsize=(max(7.5, 1.8 * len(series) + 2), SIZE[1]))
    ax = fig.add_subplot()
    boxes = ax.bxp(stats, showmeans=True, patch_artist=True, widths=0.5)
    for patch, s in zip(boxes["boxes"], series):
        patch.set_facecolor(s["colour"])
        patch.set_alpha(0.45)
    ax.set_ylabel("complexity score")
    ax.set_title("Instruction complexity (LLM judge)")
    ax.set_xlabel("box p25-p75, line median, whiskers p10 and p90, triangle mean")
    _save(fig, path)


def overlay(series: list[dict], path: Path, *, title: str, xlabel: str, density: bool) -> None:
    """Histograms of several series on the same bins, drawn as outlined steps so overlaps stay readable.

    series: {"label", "colour", "edges", "counts", "lines": {name: x} (optional vertical lines),
    "note": str (optional legend suffix)}. density=False plots each series' share of rows per bin (runs of
    different sizes stay comparable); density=True plots a probability density (area 1)."""
    fig = Figure(figsize=SIZE)
    ax = fig.add_subplot()
    styles = {"p10": ":", "p50": "--", "p90": ":", "mean": "-."}
    for s in series:
        edges = np.asarray(s["edges"], dtype=np.float64)
        counts = np.asarray(s["counts"], dtype=np.float64)
        total = counts.sum()
        heights = counts / total if total else counts
        if density and total:
            heights = heights / np.diff(edges)
        label = plot_text(s["label"]) + (f" {s['note']}" if s.get("note") else "")
        ax.stairs(heights, edges, color=s["colour"], linewidth=1.6, label=label)
        ax.stairs(heights, edges, color=s["colour"], alpha=0.12, fill=True)
        for name, x in (s.get("lines") or {}).items():
            if x is not None and np.isfinite(x):
                ax.axvline(x, color=s["colour"], linestyle=styles.get(name, "--"), linewidth=1.0)
    if any(s.get("lines") for s in series):
        names = sorted({n for s in series for n in (s.get("lines") or {})})
        xlabel += "   (vertical lines: " + ", ".join(f"{n} {styles.get(n, '--')}" for n in names) + ")"
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density" if density else "share of rows per bin")
    ax.set_title(title)
    ax.legend(fontsize=8)
    _save(fig, path)


def stage_bars(series: list[dict], path: Path) -> None:
    """Time per stage and round: for each (round, stage) one bar per series, its busy time per actor (solid)
    with the model load per actor stacked on top (hatched).

    series: {"label", "colour", "entries": [summary.json["stages"] entries]}."""
    keys = list(dict.fromkeys((e["round"], e["stage"]) for s in series for e in s["entries"]))
    width = 0.8 / max(len(series), 1)
    fig = Figure(figsize=(max(SIZE[0], 1.1 * len(keys) * max(len(series), 1)), SIZE[1]))
    ax = fig.add_subplot()
    for i, s in enumerate(series):
        found = {(e["round"], e["stage"]): e for e in s["entries"]}
        for j, key in enumerate(keys):
            e = found.get(key)
            if e is None:
                continue
            parallel = max(e.get("actors") or e.get("tasks") or 1, 1)
            busy, load = (e.get("busy_s") or 0.0) / parallel, (e.get("load_s") or 0.0) / parallel
            x = j + (i - (len(series) - 1) / 2) * width
            ax.bar(x, busy, width * 0.92, color=s["colour"], label=plot_text(s["label"]) if j == 0 else None)
            ax.bar(x, load, width * 0.92, bottom=busy, color="white", edgecolor=s["colour"], hatch="//",
                   label="model load" if (i, j) == (0, 0) else None)
    ax.set_xticks(range(len(keys)), [f"R{r}\n{plot_text(stage, 16)}" for r, stage in keys], fontsize=8)
    ax.set_ylabel("seconds per actor")
    ax.set_title("Time per stage and round (busy, model load hatched)")
    ax.legend(fontsize=8)
    _save(fig, path)


def draw_report(report: dict, out: Path) -> dict[str, str]:
    """Draw every section of a report (see engine.report.build.collect) that has data; {section: PNG name}.
    A series keeps its colour across all plots."""
    colours: dict[str, str] = {}

    def coloured(series: list[dict], **extra) -> list[dict]:
        return [{**x, **extra, "colour": colours.setdefault(x["label"], PALETTE[len(colours) % len(PALETTE)])}
                for x in series]

    s = report["sections"]
    drawn = {}
    if s["stages"]["series"]:
        drawn["stages"] = "stage_time.png"
        stage_bars(coloured(s["stages"]["series"]), out / drawn["stages"])
    if s["difficulty"]["series"]:
        drawn["difficulty"] = "difficulty_by_round.png"
        difficulty_bars(coloured(s["difficulty"]["series"]), s["difficulty"]["labels"], out / drawn["difficulty"])
    boxes = [x for x in s["complexity"]["series"] if all(v is not None for v in x["quantiles"].values())]
    if boxes:
        drawn["complexity"] = "complexity.png"
        complexity_boxes(coloured(boxes), out / drawn["complexity"])
    for column, name in (("ifd", "IFD"), ("ic_ifd", "IC-IFD")):
        section = s[column]
        if section["series"]:
            drawn[column] = f"{column}.png"
            overlay([{**x, "lines": {"mean": x["mean"]}, "note": _outside(x, section["range"])}
                     for x in coloured(section["series"])], out / drawn[column],
                    title=f"{name} of the final round's kept rows",
                    xlabel=f"{name} ({section['bins']} bins over {section['range']})", density=False)
    mnd = [x for x in s["diversity"]["series"] if x["histogram"] and x["histogram"]["n"]]
    if mnd:
        drawn["diversity"] = "diversity.png"
        overlay([{"label": x["label"], "colour": x["colour"], "edges": x["histogram"]["edges"],
                  "counts": x["histogram"]["counts"], "note": _outside(x["histogram"], s["diversity"]["range"]),
                  "lines": {k: x["quantiles"][k] for k in ("p10", "p50", "p90")}} for x in coloured(mnd)],
                out / drawn["diversity"], title="Diversity: minimum neighbour distance (higher = more diverse)",
                xlabel="MND, squared L2 of unit embeddings (100 bins over [0, 1])", density=False)
    for name, title, xlabel in (("top1_prob", "Top-1 token probability while evolving", "top-1 probability"),
                                ("entropy", "Next-token entropy while evolving", "entropy (nats)")):
        if s[name]["series"]:
            drawn[name] = f"{name}.png"
            overlay([{**x, "lines": {"mean": x["mean"]}} for x in coloured(s[name]["series"])], out / drawn[name],
                    title=title, xlabel=xlabel, density=True)
    return drawn


def _outside(hist: dict, bounds: list[float]) -> str:
    """Legend suffix for values outside the plotted range (counted, not drawn)."""
    parts = [f"{hist['underflow']} < {bounds[0]}" if hist.get("underflow") else "",
             f"{hist['overflow']} > {bounds[1]}" if hist.get("overflow") else ""]
    parts = [p for p in parts if p]
    return f"({', '.join(parts)} not shown)" if parts else ""
