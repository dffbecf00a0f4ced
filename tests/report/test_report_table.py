"""The comparison table, from the real evaluator's records: every cell is the formatted value
of one record field (or a ratio of two), so a renamed field fails here."""

import pytest

from compressor.errors import CompressorError
from compressor.evaluate.records import EvaluationRecord
from compressor.report import render_table
from compressor.report.tables import table_rows


def parse_github(table: str) -> tuple[list[str], list[dict[str, str]]]:
    lines = [l for l in table.splitlines() if l.startswith("|")]
    split = lambda l: [c.strip() for c in l.strip("|").split("|")]
    headers = split(lines[0])
    return headers, [dict(zip(headers, split(l))) for l in lines[2:]]


def named(results: list[EvaluationRecord]) -> dict[str, EvaluationRecord]:
    return {r.model: r for r in results}


def p50(r: EvaluationRecord, bs: int) -> float:
    cell = r.latency_cell(bs)
    assert cell is not None and cell.p50_ms is not None and cell.sequence_length == 16
    return cell.p50_ms


def test_every_model_in_order_with_absolute_columns(results):
    headers, rows = parse_github(render_table(results))
    assert [r["model"] for r in rows] == ["baseline", "student", "orphan"]
    assert headers[:5] == ["model", "strategy", "accuracy (%)", "acc ±95% (pts)", "F1 (%)"]
    for h in ("params (M)", "disk (MB)", "p50 bs1 (ms)", "p50 bs4 (ms)", "p90 bs1 (ms)",
              "p99 bs1 (ms)", "throughput bs4 (seq/s)", "vs", "acc Δ (pts)", "speedup bs1 (x)",
              "size ratio"):
        assert h in headers
    base, row = results[0], rows[0]
    assert row["strategy"] == "-"
    assert row["accuracy (%)"] == f"{100 * base.accuracy.accuracy:.2f}"
    assert row["F1 (%)"] == f"{100 * base.accuracy.f1:.2f}"
    low, high = base.accuracy.ci.accuracy
    assert row["acc ±95% (pts)"] == f"{50 * (high - low):.2f}"  # the bootstrap interval's half
    assert row["params (M)"] == f"{base.size.params / 1e6:.2f}"
    assert row["disk (MB)"] == f"{base.size.disk_bytes / 1e6:.1f}"
    assert row["p50 bs1 (ms)"] == f"{p50(base, 1):.2f}"  # the primary (first) length
    assert row["p50 bs4 (ms)"] == f"{p50(base, 4):.2f}"
    assert row["p90 bs1 (ms)"] == f"{base.latency_cell(1).p90_ms:.2f}"
    assert row["p99 bs1 (ms)"] == f"{base.latency_cell(1).p99_ms:.2f}"
    assert row["throughput bs4 (seq/s)"] == f"{base.latency_cell(4).throughput_seq_per_s:,.1f}"


def test_relative_columns(results):
    _, rows = parse_github(render_table(results))
    base_row, student_row, orphan_row = rows
    base, student = named(results)["baseline"], named(results)["student"]
    relative = ("vs", "acc Δ (pts)", "speedup bs1 (x)", "size ratio")
    assert all(base_row[h] == "-" for h in relative)
    assert student_row["vs"] == "baseline"
    assert student_row["acc Δ (pts)"] == f"{100 * (student.accuracy.accuracy - base.accuracy.accuracy):+.2f}"
    assert student_row["speedup bs1 (x)"] == f"{p50(base, 1) / p50(student, 1):.2f}"
    assert student_row["size ratio"] == f"{student.size.disk_bytes / base.size.disk_bytes:.2f}"
    assert float(student_row["size ratio"]) < 1  # 1 layer of width 16 against 2 of 32
    assert orphan_row["vs"] == "-" and orphan_row["speedup bs1 (x)"] == "-"  # reference not evaluated


def test_raw_values(results):
    headers, rows = table_rows(results)
    student = dict(zip(headers, rows[1]))
    base, stu = results[0], results[1]
    assert student["acc Δ (pts)"] == pytest.approx(100 * (stu.accuracy.accuracy - base.accuracy.accuracy))
    assert student["speedup bs1 (x)"] == pytest.approx(p50(base, 1) / p50(stu, 1))
    assert student["size ratio"] == pytest.approx(stu.size.disk_bytes / base.size.disk_bytes)


def test_raw_records_of_results_json_give_the_same_table(results):
    assert render_table([r.to_json() for r in results]) == render_table(results)


def test_no_reference_in_results_means_no_relative_columns(results):
    lonely = [results[0], results[1].model_copy(update={"reference": "zzz"})]
    headers, _ = parse_github(render_table(lonely))
    assert "vs" not in headers and "speedup bs1 (x)" not in headers


def test_without_latency_or_accuracy(results):
    r = results[0]
    r.latency, r.accuracy = [], None
    headers, rows = parse_github(render_table([r]))
    assert headers == ["model", "strategy", "params (M)", "disk (MB)"]
    assert rows[0]["model"] == "baseline"


def test_macro_f1_header_and_mixed_metrics(results):
    three = results[0]
    three.accuracy.task_metric, three.accuracy.macro_f1, three.accuracy.f1 = "macro_f1", 0.5, None
    headers, _ = parse_github(render_table([three]))
    assert "macro-F1 (%)" in headers
    headers, rows = parse_github(render_table([three, results[1]]))
    assert "task metric (%)" in headers and rows[0]["task metric (%)"] == "50.00"
    assert rows[1]["task metric (%)"] == f"{100 * results[1].accuracy.f1:.2f}"


def test_other_formats_and_unknown_format(results):
    assert "<table>" in render_table(results, fmt="html")
    with pytest.raises(CompressorError, match="unknown table format"):
        render_table(results, fmt="nope")


def test_collapsed_model_gets_the_accuracy_check_flag(results):
    ok, collapsed = results[0], results[1]
    ok.accuracy.predicted_classes = 2
    collapsed.accuracy.predicted_classes = 1
    headers, rows = parse_github(render_table([ok, collapsed]))
    assert rows[1]["accuracy check"] == f"one class for all {collapsed.accuracy.n} examples"
    assert rows[0]["accuracy check"] == "-"
    headers, _ = parse_github(render_table([ok]))  # no collapsed model: no column
    assert "accuracy check" not in headers
