"""HTML in a real headless browser, CSV/JSON round trip, Pareto plot, model cards, compare."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from compressor.artifact import Artifact, Lineage
from compressor.errors import CompressorError
from compressor.report import compare_runs, read_csv, write_model_cards, write_report
from compressor.report.figures import pareto_points
from compressor.report.flat import flatten


def enrich(results):
    """Add what the evaluator records beyond the basic fixture: intervals, paired diffs,
    memory, compute, and a second sequence length."""
    for r in results:
        acc = r["accuracy"]
        acc["ci"] = {"accuracy": [acc["accuracy"] - 0.02, acc["accuracy"] + 0.015],
                     acc["task_metric"]: [acc[acc["task_metric"]] - 0.03, acc[acc["task_metric"]] + 0.02],
                     "confidence": 0.95, "resamples": 1000, "method": "percentile bootstrap"}
        acc["vs_reference"] = None
        r["memory"] = {"device": "cpu", "load_rss_mb": r["size"]["disk_bytes"] / 1e6,
                       "inference_peak_mb": 12.5, "peak_rss_mb": r["size"]["disk_bytes"] / 1e6 + 12.5,
                       "method": "VmHWM after clear_refs"}
        r["compute"] = {"flops_per_sequence": {"128": 2_900_000_000}, "peak_gflops": 80.0,
                        "peak": None, "error": None}
        r["precision"] = "fp32"
        for e in r["latency"]:
            e.update(p50_ci_ms=[e["p50_ms"] * 0.98, e["p50_ms"] * 1.03], mean_ci_ms=[1.0, 2.0],
                     stop_reason="stable", timer="perf_counter_ns", gflops=12.3, peak_fraction=0.15)
    results[1]["accuracy"]["vs_reference"] = {
        "reference": "baseline", "accuracy": {"value": -0.03, "low": -0.045, "high": -0.012},
        "f1": {"value": -0.03, "low": -0.05, "high": -0.01}}
    results[2]["accuracy"]["vs_reference"] = {
        "reference": "student", "accuracy": {"value": 0.0025, "low": -0.004, "high": 0.008},
        "f1": {"value": 0.01, "low": -0.01, "high": 0.02}}
    return results


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def test_markdown_sections_and_pareto_plot(tmp_path, results):
    results = enrich(results)
    path = write_report(tmp_path, results, title="run")
    text = path.read_text()
    assert "![Pareto plot (cpu)" in text and "(pareto-cpu.png)" in text
    png = (tmp_path / "pareto-cpu.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert "## Accuracy with 95% bootstrap intervals and paired differences" in text
    assert "## Latency: every batch size x sequence length" in text
    assert "## Memory, load time and compute" in text
    assert "| verdict" in text and "within noise" in text and "| loss" in text
    assert "[-4.50, -1.20]" in text  # the student's paired interval, in points
    # Pareto front: baseline (most accurate), int8 (fastest) and the student is dominated by
    # int8 (more accurate and faster); orphan is slower and less accurate than int8
    points = {p["model"]: p["optimal"] for p in pareto_points(results)}
    assert points == {"baseline": True, "student": False, "int8": True, "orphan": False}


def test_csv_and_json_round_trip(tmp_path, results):
    results = enrich(results)
    write_report(tmp_path, results, title="run")
    assert json.loads((tmp_path / "results.json").read_text()) == results
    rows = read_csv(tmp_path / "results.csv")
    assert rows == flatten(results)
    assert len(rows) == sum(len(r["latency"]) for r in results)
    student_bs32 = next(r for r in rows if r["model"] == "student" and r["batch_size"] == 32)
    assert student_bs32["p50_ms"] == 100.0 and student_bs32["acc_diff_low"] == -0.045
    assert student_bs32["p50_ci_low_ms"] == pytest.approx(98.0)
    assert student_bs32["flops_per_sequence"] == 2_900_000_000


def test_html_renders_in_a_headless_browser(tmp_path, results):
    results = enrich(results)
    write_report(tmp_path, results, title="MiniLM <compressed>")
    html_path = tmp_path / "report.html"
    source = html_path.read_text()
    assert "http://" not in source and "https://" not in source and "<script" not in source
    data = re.search(r'src="data:image/png;base64,([^"]+)"', source).group(1)
    assert base64.b64decode(data) == (tmp_path / "pareto-cpu.png").read_bytes()
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no chromium binary on this machine (CI installs Debian's chromium in .ci/run)")
    proc = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--virtual-time-budget=5000", "--dump-dom", html_path.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    dom = proc.stdout
    assert "<table" in dom, proc.stderr[-2000:]
    assert dom.count("<table") == 4  # results + accuracy + resources + latency
    assert "MiniLM &lt;compressed&gt;" in dom  # the title is escaped, not markup
    assert re.search(r"<th[^>]*>\s*p50 bs1 \(ms\)\s*</th>", dom)
    assert re.search(r"<td[^>]*>\s*within noise\s*</td>", dom)
    assert 'id="pareto-cpu"' in dom and "data:image/png;base64," in dom


@pytest.fixture
def run_with_artifacts(tmp_path, results):
    results = enrich(results)[:3]
    artifacts = {}
    for r in results:
        folder = tmp_path / "artifacts" / r["model"]
        folder.mkdir(parents=True)
        art = Artifact(name=r["model"], path=folder, lineage=Lineage(
            stage=r["model"], strategy=r["strategy"], parent=r["reference"],
            reference=r["reference"], config={"epochs": 1} if r["strategy"] else {}))
        art.save()
        artifacts[r["model"]] = art
    return results, artifacts


def test_model_cards(run_with_artifacts):
    results, artifacts = run_with_artifacts
    original = Path(artifacts["baseline"].path) / "README.md"
    original.write_text("# all-MiniLM-L6-v2\nthe source's own card\n")
    recipe = "version: 1\nname: run\n"
    cards = write_model_cards(results, artifacts, recipe_text=recipe, run_name="run")
    assert len(cards) == 3
    text = (Path(artifacts["int8"].path) / "README.md").read_text()
    front = yaml.safe_load(text.split("---")[1])
    assert front["library_name"] == "transformers" and "quantize.dynamic-int8" in front["tags"]
    metrics = {m["type"]: m["value"] for m in front["model-index"][0]["results"][0]["metrics"]}
    assert metrics == {"accuracy": 0.8725, "f1": 0.86}
    assert front["model-index"][0]["results"][0]["dataset"]["split"] == "test"
    lineage = text.split("## Lineage")[1].split("##")[0]
    assert lineage.index("`baseline`") < lineage.index("`student`") < lineage.index("`int8`")
    assert "+0.25 [-0.40, +0.80] vs student" in text
    assert "## Recipe" in text and "name: run" in text
    # the baseline's own card is kept and linked; writing again keeps it
    assert (Path(artifacts["baseline"].path) / "README.original.md").read_text().startswith("# all-MiniLM")
    write_model_cards(results, artifacts, recipe_text=recipe)
    assert "README.original.md" in original.read_text()
    assert "source's own card" in (Path(artifacts["baseline"].path) / "README.original.md").read_text()


def make_run(path, results, name):
    path.mkdir(parents=True)
    (path / "results.json").write_text(json.dumps(results))
    (path / "manifest.json").write_text(json.dumps({"run": name}))
    return path


def test_compare_merges_runs_and_refuses_mixed_conditions(tmp_path, results, make_result):
    a = make_run(tmp_path / "a", enrich(results)[:2], "quickstart")
    b_results = [make_result("int8", strategy="quantize.ort-dynamic", p50=(3.0, 50.0), acc=0.88)]
    b = make_run(tmp_path / "b", b_results, "quant")
    cmp = compare_runs([a, b], output=tmp_path / "out")
    names = [r["model"] for r in cmp.results]
    assert names == ["quickstart/baseline", "quickstart/student", "quant/int8"]
    assert cmp.results[1]["reference"] == "quickstart/baseline"
    md = (tmp_path / "out" / "compare.md").read_text()
    assert "quant/int8" in md and "(pareto-cpu.png)" in md
    assert (tmp_path / "out" / "compare.html").exists()
    rows = read_csv(tmp_path / "out" / "compare.csv")
    assert {r["run"] for r in rows} == {"quickstart", "quant"}
    # different thread counts: refused, unless asked
    c_results = [make_result("fast")]
    c_results[0]["threads"] = 8
    c = make_run(tmp_path / "c", c_results, "eight-threads")
    with pytest.raises(CompressorError, match="different conditions") as info:
        compare_runs([a, c])
    assert "--allow-mixed" in info.value.hint
    mixed = compare_runs([a, c], allow_mixed=True, output=tmp_path / "mixed")
    assert len(mixed.groups) == 2
    assert "Warning" in (tmp_path / "mixed" / "compare.md").read_text()


def test_compare_cli(tmp_path, results):
    from compressor.cli import main

    a = make_run(tmp_path / "a", results[:2], "one")
    b = make_run(tmp_path / "b", results[2:3], "two")
    assert main(["compare", str(a), str(b), "--output", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "compare.md").exists()
    assert main(["compare", str(tmp_path / "missing")]) == 2


def test_header_states_every_length_and_how_latency_inputs_were_made(tmp_path, results):
    results[0]["latency"].append({**results[0]["latency"][0], "sequence_length": 64})
    for r in results:
        r["latency_inputs"].update(mode="packed", real_token_fraction={"128": 1.0})
    text = write_report(tmp_path, enrich(results), title="run").read_text()
    assert "- **Latency inputs**: 64, 128 tokens per sequence (consecutive texts packed, " \
           "truncated; every position a real token)" in text
    results[1]["latency_inputs"].update(mode="padded", real_token_fraction={"128": 0.234})
    text = write_report(tmp_path, enrich(results), title="run").read_text()
    assert "one text each, padded; real tokens: at least 23% of positions" in text
