"""HTML in a real headless browser, the same content in Markdown and HTML, CSV/JSON round
trip, Pareto plot, model cards, compare; from the real evaluator's records."""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from compressor.errors import CompressorError
from compressor.evaluate.records import Difference, EvaluationRecord
from compressor.report import compare_runs, read_csv, write_model_cards, write_report
from compressor.report.content import plain, report_content
from compressor.report.figures import pareto_points
from compressor.report.flat import flatten


def with_known_differences(results: list[EvaluationRecord]) -> list[EvaluationRecord]:
    """The student's paired difference a clear loss, the orphan's within noise (its own
    reference is not evaluated, so the evaluator gave it none)."""
    student, orphan = results[1], results[2]
    student.accuracy.vs_reference.accuracy = Difference(value=-0.03, low=-0.045, high=-0.012)
    orphan.accuracy.vs_reference = student.accuracy.vs_reference.model_copy(deep=True)
    orphan.accuracy.vs_reference.accuracy = Difference(value=0.0025, low=-0.004, high=0.008)
    return results


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def test_markdown_sections_and_pareto_plot(tmp_path, results):
    results = with_known_differences(results)
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
    # every latency cell of every model has its row
    assert text.count("| max_runs") + text.count("| stable") + text.count("| max_time") == 3 * 4
    # the Pareto front: a point is optimal iff no other is at least as accurate and as fast,
    # and strictly better in one
    points = pareto_points(results)
    assert {p["model"] for p in points} == {"baseline", "student", "orphan"}
    for p in points:
        dominated = any(q["accuracy"] >= p["accuracy"] and q["p50_ms"] <= p["p50_ms"]
                        and (q["accuracy"] > p["accuracy"] or q["p50_ms"] < p["p50_ms"])
                        for q in points if q is not p)
        assert p["optimal"] is not dominated, p


def test_csv_and_json_round_trip(tmp_path, results):
    write_report(tmp_path, results, title="run")
    assert json.loads((tmp_path / "results.json").read_text()) == [r.to_json() for r in results]
    rows = read_csv(tmp_path / "results.csv")
    assert rows == flatten(results)
    assert len(rows) == sum(len(r.latency) for r in results) == 3 * 4
    student = results[1]
    cell = student.latency_cell(4, 32)
    row = next(r for r in rows if r["model"] == "student" and r["batch_size"] == 4
               and r["sequence_length"] == 32)
    assert row["p50_ms"] == cell.p50_ms and row["p50_ci_low_ms"] == cell.p50_ci_ms[0]
    assert row["acc_diff_low"] == student.accuracy.vs_reference.accuracy.low
    assert row["flops_per_sequence"] == student.compute.flops_per_sequence["32"] > 0
    assert row["instruction_sets"] == " ".join(student.machine.instruction_sets) or None


class _Tables(HTMLParser):
    """Text of every table cell of an HTML page, table by table (header row first)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def test_html_and_markdown_show_the_same_content(tmp_path, results):
    results = with_known_differences(results)
    write_report(tmp_path, results, title="A <b>&amp; title")
    source = (tmp_path / "report.html").read_text()
    parser = _Tables()
    parser.feed(source)
    content = report_content(results, title="t")
    tables = [s.table for s in content.sections if s.table is not None]
    assert [[t.headers, *t.rows] for t in tables] == parser.tables
    # every header fact and note, in both files, marked up each its own way
    md = (tmp_path / "report.md").read_text().replace("**", "").replace("`", "")
    page = html.unescape(re.sub(r"<[^>]+>", "", source))
    lines = [*content.header, *content.sections[-1].bullets]
    assert content.sections[-1].heading == "Notes" and len(lines) > 15
    for fact in lines:
        assert plain(fact) in md and plain(fact) in page, plain(fact)
    assert "<title>A &lt;b&gt;&amp;amp; title</title>" in source and "<b>" not in source


def test_html_renders_in_a_headless_browser(tmp_path, results):
    results = with_known_differences(results)
    write_report(tmp_path, results, title="MiniLM <compressed>")
    html_path = tmp_path / "report.html"
    source = html_path.read_text()
    assert "http://" not in source and "https://" not in source and "<script" not in source
    data = re.search(r'src="data:image/png;base64,([^"]+)"', source).group(1)
    assert base64.b64decode(data) == (tmp_path / "pareto-cpu.png").read_bytes()
    assert "<strong>CPU instruction sets</strong>" in source
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


def test_model_cards(results, artifacts):
    results = with_known_differences(results)
    original = Path(artifacts["baseline"].path) / "README.md"
    original.write_text("# all-MiniLM-L6-v2\nthe source's own card\n")
    recipe = "version: 1\nname: run\n"
    cards = write_model_cards(results, artifacts, recipe_text=recipe, run_name="run")
    assert len(cards) == 3
    student = results[1]
    text = (Path(artifacts["student"].path) / "README.md").read_text()
    front = yaml.safe_load(text.split("---")[1])
    assert front["library_name"] == "transformers" and "distill.distilbert" in front["tags"]
    metrics = {m["type"]: m["value"] for m in front["model-index"][0]["results"][0]["metrics"]}
    assert metrics == {"accuracy": round(student.accuracy.accuracy, 6),
                       "f1": round(student.accuracy.f1, 6)}
    assert front["model-index"][0]["results"][0]["dataset"]["split"] == "test"
    lineage = text.split("## Lineage")[1].split("##")[0]
    assert lineage.index("`baseline`") < lineage.index("`student`")
    assert "-3.00 [-4.50, -1.20] vs baseline" in text
    assert "**CPU instruction sets**" in text and "**Kernels**" in text
    assert "## Recipe" in text and "name: run" in text
    # the baseline's own card is kept and linked; writing again keeps it
    assert (Path(artifacts["baseline"].path) / "README.original.md").read_text().startswith("# all-MiniLM")
    write_model_cards(results, artifacts, recipe_text=recipe)
    assert "README.original.md" in original.read_text()
    assert "source's own card" in (Path(artifacts["baseline"].path) / "README.original.md").read_text()


def make_run(path: Path, results: list[EvaluationRecord], name: str) -> Path:
    path.mkdir(parents=True)
    (path / "results.json").write_text(json.dumps([r.to_json() for r in results]))
    (path / "manifest.json").write_text(json.dumps({"run": name}))
    return path


def test_compare_merges_runs_and_refuses_mixed_conditions(tmp_path, results):
    a = make_run(tmp_path / "a", results[:2], "quickstart")
    b = make_run(tmp_path / "b", results[2:], "prune")
    cmp = compare_runs([a, b], output=tmp_path / "out")
    assert [r.model for r in cmp.results] == ["quickstart/baseline", "quickstart/student", "prune/orphan"]
    assert cmp.results[1].reference == "quickstart/baseline"
    assert cmp.results[1].accuracy.vs_reference.reference == "quickstart/baseline"
    md = (tmp_path / "out" / "compare.md").read_text()
    assert "prune/orphan" in md and "(pareto-cpu.png)" in md
    assert "**CPU instruction sets**" in md and "**quickstart**: `" in md
    html = (tmp_path / "out" / "compare.html").read_text()
    assert "prune/orphan" in html and 'id="pareto-cpu"' in html
    rows = read_csv(tmp_path / "out" / "compare.csv")
    assert {r["run"] for r in rows} == {"quickstart", "prune"}
    assert [r["run"] for r in json.loads((tmp_path / "out" / "compare.json").read_text())] == [
        "quickstart", "quickstart", "prune"]
    # different thread counts: refused, unless asked
    eight = results[0].model_copy(deep=True)
    eight.threads = 8
    c = make_run(tmp_path / "c", [eight], "eight-threads")
    with pytest.raises(CompressorError, match="different conditions") as info:
        compare_runs([a, c])
    assert "--allow-mixed" in info.value.hint
    mixed = compare_runs([a, c], allow_mixed=True, output=tmp_path / "mixed")
    assert len(mixed.groups) == 2
    assert "Warning" in (tmp_path / "mixed" / "compare.md").read_text()
    assert 'id="pareto-2-cpu"' in (tmp_path / "mixed" / "compare.html").read_text()


def test_compare_cli(tmp_path, results):
    from compressor.cli import main

    a = make_run(tmp_path / "a", results[:2], "one")
    b = make_run(tmp_path / "b", results[2:3], "two")
    assert main(["compare", str(a), str(b), "--output", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "compare.md").exists()
    assert main(["compare", str(tmp_path / "missing")]) == 2


def test_header_states_every_length_and_how_latency_inputs_were_made(tmp_path, results):
    text = write_report(tmp_path, results, title="run").read_text()
    assert "- **Latency inputs**: 16, 32 tokens per sequence (consecutive texts packed, " \
           "truncated; every position a real token)" in text
    results[1].latency_inputs.mode = "padded"
    results[1].latency_inputs.real_token_fraction = {"16": 0.234, "32": 0.5}
    text = write_report(tmp_path, results, title="run").read_text()
    assert "one text each, padded; real tokens: at least 23% of positions" in text


def _imported_after(code: str) -> list[str]:
    probe = (
        f"import sys\n{code}\n"
        "mods = ['jinja2', 'compressor.report.html', 'compressor.report.markdown', "
        "'compressor.evaluate.records', 'tabulate', 'matplotlib']\n"
        "print(' '.join(m for m in mods if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return out.stdout.split()


def _report_imports(module: str) -> set[str]:
    """Modules of compressor.report that ``module`` imports anywhere (functions included)."""
    import ast

    import compressor.report

    tree = ast.parse((Path(compressor.report.__file__).parent / f"{module}.py").read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            out.add(node.module or "")
            out.update(a.name for a in node.names if node.module is None)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("compressor.report."):
            out.add(node.module.rsplit(".", 1)[1])
    return out


def test_markdown_and_html_renderers_do_not_import_each_other():
    assert "html" not in _report_imports("markdown")
    assert "markdown" not in _report_imports("html")
    # both render the one content model
    assert "content" in _report_imports("markdown") and "content" in _report_imports("html")
    # importing the package stays cheap: jinja2, tabulate, matplotlib when rendering
    loaded = _imported_after("import compressor.report")
    assert not {"jinja2", "tabulate", "matplotlib"} & set(loaded), loaded


def test_cli_help_imports_neither_records_nor_jinja2():
    code = (
        "import contextlib, io\nfrom compressor.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n        main(['--help'])\n    except SystemExit:\n        pass"
    )
    loaded = _imported_after(code)
    assert "jinja2" not in loaded and "compressor.evaluate.records" not in loaded, loaded


def test_model_card_says_what_the_stage_chose(results, artifacts):
    """Lineage facts a strategy summarised (int8 settings, accuracy control) appear on the card."""
    from compressor.report import render_model_card

    student = artifacts["student"]
    student.lineage.extra = {
        "int8_settings": {"reduce_range": True, "summary": "s8 weights per channel, reduce_range (AVX2 saturates)"},
        "accuracy_control": {"summary": "1 node group(s) kept in float (layer.1.ffn_out)"},
        "heads_after": [3, 2],  # no summary: not listed
    }
    record = next(r for r in results if r.model == "student")
    card = render_model_card(student, [record], artifacts=artifacts)
    assert "What the stage did:" in card
    assert "- int8 settings: s8 weights per channel, reduce_range (AVX2 saturates)" in card
    assert "- accuracy control: 1 node group(s) kept in float (layer.1.ffn_out)" in card
    assert "heads after" not in card


def test_report_notes_say_what_each_stage_chose(results, tmp_path):
    """A record's summaries (from its artifact's lineage) are listed under the report's notes."""
    student = next(r for r in results if r.model == "student")
    student.summaries = {"accuracy_control": "1 node group(s) kept in float (layer.1.ffn_out)"}
    md = write_report(tmp_path / "run", results, title="t").read_text()
    assert "`student` accuracy control: 1 node group(s) kept in float (layer.1.ffn_out)" in md
