import pytest

from compressor.errors import CompressorError
from compressor.report import render_table
from compressor.report.tables import table_rows


def parse_github(table: str) -> tuple[list[str], list[dict[str, str]]]:
    lines = [l for l in table.splitlines() if l.startswith("|")]
    split = lambda l: [c.strip() for c in l.strip("|").split("|")]
    headers = split(lines[0])
    return headers, [dict(zip(headers, split(l))) for l in lines[2:]]


def test_every_model_in_order_with_absolute_columns(results):
    headers, rows = parse_github(render_table(results))
    assert [r["model"] for r in rows] == ["baseline", "student", "int8", "orphan"]
    assert headers[:7] == ["model", "strategy", "accuracy (%)", "acc ±95% (pts)", "F1 (%)",
                           "params (M)", "disk (MB)"]
    for h in ("p50 bs1 (ms)", "p50 bs32 (ms)", "p90 bs1 (ms)", "p99 bs1 (ms)",
              "throughput bs32 (seq/s)", "vs", "acc Δ (pts)", "speedup bs1 (x)", "size ratio"):
        assert h in headers
    base = rows[0]
    assert base["strategy"] == "-" and base["accuracy (%)"] == "90.00" and base["F1 (%)"] == "88.00"
    assert base["params (M)"] == "20.00" and base["disk (MB)"] == "80.0"
    assert base["p50 bs1 (ms)"] == "10.00" and base["p50 bs32 (ms)"] == "200.00"
    assert base["p90 bs1 (ms)"] == "11.00" and base["p99 bs1 (ms)"] == "12.00"
    assert base["throughput bs32 (seq/s)"] == "160.0"
    assert base["acc ±95% (pts)"] == f"{196 * (0.9 * 0.1 / 1000) ** 0.5:.2f}"


def test_relative_columns(results):
    _, rows = parse_github(render_table(results))
    base, student, int8, orphan = rows
    relative = ("vs", "acc Δ (pts)", "speedup bs1 (x)", "size ratio")
    assert all(base[h] == "-" for h in relative)
    assert student["vs"] == "baseline"
    assert student["acc Δ (pts)"] == "-3.00"
    assert student["speedup bs1 (x)"] == "2.00"   # 10 ms / 5 ms
    assert student["size ratio"] == "0.55"        # 44 MB / 80 MB
    assert int8["vs"] == "student"                # compared with its own reference
    assert int8["acc Δ (pts)"] == "+0.25"
    assert int8["speedup bs1 (x)"] == "2.00"      # 5 ms / 2.5 ms
    assert int8["size ratio"] == "0.45"           # 20 MB / 44 MB
    assert orphan["vs"] == "-" and orphan["speedup bs1 (x)"] == "-"  # reference not in results


def test_raw_values(results):
    headers, rows = table_rows(results)
    student = dict(zip(headers, rows[1]))
    assert student["acc Δ (pts)"] == pytest.approx(-3.0)
    assert student["speedup bs1 (x)"] == pytest.approx(2.0)
    assert student["size ratio"] == pytest.approx(0.55)


def test_no_reference_in_results_means_no_relative_columns(make_result):
    headers, _ = parse_github(render_table([make_result("a"), make_result("b", reference="zzz")]))
    assert "vs" not in headers and "speedup bs1 (x)" not in headers


def test_without_latency_or_accuracy(make_result):
    r = make_result("a")
    r["latency"], r["accuracy"] = [], None
    headers, rows = parse_github(render_table([r]))
    assert headers == ["model", "strategy", "params (M)", "disk (MB)"]
    assert rows[0]["model"] == "a"


def test_macro_f1_header_and_mixed_metrics(make_result):
    headers, _ = parse_github(render_table([make_result("a", task_metric="macro_f1")]))
    assert "macro-F1 (%)" in headers
    mixed = [make_result("a", task_metric="macro_f1"), make_result("b")]
    headers, rows = parse_github(render_table(mixed))
    assert "task metric (%)" in headers and rows[0]["task metric (%)"] == "88.00"


def test_other_formats_and_unknown_format(results):
    assert "<table>" in render_table(results, fmt="html")
    with pytest.raises(CompressorError, match="unknown table format"):
        render_table(results, fmt="nope")


def test_collapsed_model_gets_the_accuracy_check_flag(make_result):
    ok, collapsed = make_result("a"), make_result("b")
    ok["accuracy"]["predicted_classes"] = 2
    collapsed["accuracy"]["predicted_classes"] = 1
    headers, rows = parse_github(render_table([ok, collapsed]))
    n = collapsed["accuracy"]["n"]
    assert rows[1]["accuracy check"] == f"one class for all {n} examples"
    assert rows[0]["accuracy check"] == "-"
    headers, _ = parse_github(render_table([ok]))  # no collapsed model: no column
    assert "accuracy check" not in headers
