"""The report builder on run directories built by hand: plots written and referenced, numbers equal to the
fixture's, missing measurements name their command, run text escaped, bad directories rejected clearly."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from engine.report.__main__ import main
from engine.report.build import ReportError, build_report

LABELS = ["very easy", "easy", "medium", "hard", "very hard"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_run(root, model, *, seed=0, analysis=True, output_space=True, rows=200):
    """A finished two-round run: the final round's scores have NaNs and out-of-range values on purpose."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    space = {}
    if output_space:
        space = {model: {"top1_edges": np.linspace(0, 1, 21).tolist(),
                         "top1_counts": rng.integers(0, 50, 20).tolist(),
                         "entropy_edges": np.linspace(0, 6, 21).tolist(),
                         "entropy_counts": rng.integers(0, 50, 20).tolist(),
                         "positions": 500, "mean_top1": 0.71, "mean_entropy": 1.3}}
    summary = {"recipe": "evol_instruct", "model": model, "config_hash": "abc123", "rounds_completed": 2,
               "rows_in": 300, "rows_out": rows, "rows_rejected": 300 - rows,
               "rejected_by_reason": {"template_leak": 60, "not_selected": 40},
               "tokens": {"evolve_tokens": 1234}, "scores": {"mean_ifd": 0.8}, "selection": None,
               "wall_time_s": 12.5, "output_space": space}
    (root / "summary.json").write_text(json.dumps(summary))
    for r, n in ((1, 50), (2, rows)):
        ifd = rng.uniform(0.2, 1.2, n)
        ifd[:7] = np.nan
        ifd[7:10] = [1.7, 2.5, 9.0]  # above the plotted range
        ic_ifd = rng.uniform(0.05, 0.6, n)
        ic_ifd[-5:] = np.nan
        (root / "data" / f"round_{r}").mkdir(parents=True)
        pq.write_table(pa.table({"id": [f"r{r}-{i}" for i in range(n)], "round": [r] * n, "evolver": [model] * n,
                                 "ifd": ifd, "ic_ifd": ic_ifd}), root / "data" / f"round_{r}" / "part-0.parquet")
    if analysis:
        mnd = rng.uniform(0.0, 0.9, rows)
        mnd[:4] = np.nan
        mnd[4] = 1.5  # above [0, 1]
        (root / "analysis" / "rows").mkdir(parents=True)
        pq.write_table(pa.table({"id": [f"r2-{i}" for i in range(rows)], "evolver": [model] * rows, "mnd": mnd}),
                       root / "analysis" / "rows" / "part-0.parquet")
        analysis_summary = {
            "run_dir": str(root), "rows": rows, "judge": "smollm2-135m",
            "difficulty": {"prompt": "code", "labels": LABELS, "counts": {model: {
                "1": {"very easy": 5, "easy": 10, "medium": 20, "hard": 10, "very hard": 3, "unparsable": 2},
                "2": {"very easy": 30, "easy": 50, "medium": 70, "hard": 30, "very hard": 15, "unparsable": 5}}}},
            "complexity": {"prompt": "paper", "per_evolver": {model: {
                "n": rows, "unparsable": 3, "mean": 5.2,
                "quantiles": {"p10": 2.0, "p25": 4.0, "p50": 5.0, "p75": 7.0, "p90": 8.0}}}},
            "diversity": {"model": "all-MiniLM-L6-v2", "metric": "squared_l2", "threshold": 0.05, "search": "numpy",
                          "per_evolver": {model: {"n": rows - 4, "mean": float(np.nanmean(mnd)),
                                                  "quantiles": {"p10": 0.1, "p25": 0.2, "p50": 0.45, "p75": 0.6,
                                                                "p90": 0.8},
                                                  "near_duplicate_rows": 6}}},
            "reward": None,
        }
        (root / "analysis" / "summary.json").write_text(json.dumps(analysis_summary))
    return root


def written_pngs(index):
    """The PNGs next to index.html, checked to be real images, and the ones the page references."""
    html = index.read_text(encoding="utf-8")
    referenced = set(re.findall(r'<img src="([^"]+)"', html))
    on_disk = {p.name for p in index.parent.glob("*.png")}
    for name in on_disk:
        data = (index.parent / name).read_bytes()
        assert data[:8] == PNG_SIGNATURE and len(data) > 5000, name
        with Image.open(index.parent / name) as image:
            assert image.format == "PNG" and image.size[0] >= 600 and image.size[1] >= 300, name
    return referenced, on_disk


def test_one_run_report_plots_and_numbers(tmp_path):
    run = make_run(tmp_path / "slm", "smollm2-135m")
    index = build_report([run])

    assert index == run / "report" / "index.html"
    referenced, on_disk = written_pngs(index)
    assert referenced == on_disk == {"difficulty_by_round.png", "complexity.png", "ifd.png", "ic_ifd.png",
                                     "diversity.png", "top1_prob.png", "entropy.png"}

    report = json.loads((index.parent / "report.json").read_text())
    final = pq.read_table(run / "data" / "round_2" / "part-0.parquet")
    ifd = final["ifd"].to_numpy(zero_copy_only=False)
    (h,) = report["sections"]["ifd"]["series"]
    assert h["round"] == 2
    assert (h["n"], h["nan"], h["overflow"], h["underflow"]) == (int(np.isfinite(ifd).sum()), 7, 3, 0)
    assert sum(h["counts"]) == h["n"] - h["overflow"] and len(h["counts"]) == 60
    assert h["mean"] == pytest.approx(np.nanmean(ifd))
    (ic,) = report["sections"]["ic_ifd"]["series"]
    assert (ic["n"], ic["nan"]) == (195, 5) and sum(ic["counts"]) == 195

    (d,) = report["sections"]["difficulty"]["series"]
    assert d["rounds"]["2"] == {"very easy": 30, "easy": 50, "medium": 70, "hard": 30, "very hard": 15,
                                "unparsable": 5}
    (v,) = report["sections"]["diversity"]["series"]
    assert (v["histogram"]["n"], v["histogram"]["nan"], v["histogram"]["overflow"]) == (196, 4, 1)
    assert len(v["histogram"]["counts"]) == 100 and v["near_duplicate_rows"] == 6
    (t,) = report["sections"]["top1_prob"]["series"]
    summary = json.loads((run / "summary.json").read_text())
    assert t["counts"] == summary["output_space"]["smollm2-135m"]["top1_counts"]
    assert report["runs"][0]["summary"]["rejected_by_reason"] == {"template_leak": 60, "not_selected": 40}

    html = index.read_text(encoding="utf-8")
    assert "template_leak" in html and "abc123" in html
    # Reward was switched off: the page says how to switch it on.
    assert "analysis.reward.path=" in html and report["sections"]["reward"]["series"] == []


def test_two_runs_side_by_side_and_missing_measurements_name_their_command(tmp_path):
    slm = make_run(tmp_path / "a" / "run", "same-model", seed=1)
    llm = make_run(tmp_path / "b" / "run", "same-model", seed=2, analysis=False, output_space=False, rows=120)
    index = build_report([slm, llm])

    assert index == slm / "report-compare" / "index.html"
    report = json.loads((index.parent / "report.json").read_text())
    labels = [r["label"] for r in report["runs"]]
    assert len(set(labels)) == 2  # same model, same directory name: still told apart
    assert [s["label"] for s in report["sections"]["ifd"]["series"]] == labels
    assert [s["n"] for s in report["sections"]["ifd"]["series"]] == [193, 113]  # rows - 7 NaN
    assert report["sections"]["ifd"]["series"][0]["edges"] == report["sections"]["ifd"]["series"][1]["edges"]
    referenced, on_disk = written_pngs(index)
    assert referenced == on_disk and "ifd.png" in on_disk

    html = index.read_text(encoding="utf-8")
    assert f"python -m engine.analyze {llm}" in html
    assert "recipe.output_space=true" in html
    assert [s["label"] for s in report["sections"]["difficulty"]["series"]] == labels[:1]


def test_run_text_is_escaped_in_the_page_and_inert_in_plots(tmp_path):
    model = '<script>alert("x")</script>$\\frac{'
    run = make_run(tmp_path / "evil", model, rows=60)
    index = build_report([run], tmp_path / "out")

    html = index.read_text(encoding="utf-8")
    assert "<script>" not in html and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    referenced, on_disk = written_pngs(index)
    assert referenced == on_disk and len(on_disk) == 7


def test_bad_run_directories_fail_with_one_clear_message(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "summary.json" in err and str(tmp_path / "empty") in err and "Traceback" not in err

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "summary.json").write_text('{"model": "x",\n  "rows_in": }')
    with pytest.raises(ReportError, match=r"broken/summary.json: not valid JSON \(line 2"):
        build_report([broken])


def test_module_entry_point_exit_code(tmp_path):
    result = subprocess.run([sys.executable, "-m", "engine.report", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "no summary.json" in result.stderr
