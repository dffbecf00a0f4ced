import json

import pytest

from compressor.errors import CompressorError
from compressor.report import load_results, render_table, write_report


def test_write_report_and_round_trip(tmp_path, results):
    manifest = {"hardware": {"cpu_model": "Intel Xeon Test", "cpus_available": 2},
                "git_sha": "deadbeef", "seed": 0, "data": {"fingerprint": "f" * 64},
                "versions": {"torch": "2.13.0"}}
    path = write_report(tmp_path / "run", results, title="MiniLM on mr-snippets",
                        manifest=manifest)
    assert path == tmp_path / "run" / "report.md"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# MiniLM on mr-snippets\n")
    assert "Intel Xeon Test" in text and "**threads**: 2" in text and "128 tokens" in text
    assert "the same texts for every model" in text and "deadbeef" in text
    assert "seed `0`" in text and "data fingerprint `ffffffffffff`" in text  # shortened
    assert render_table(results) in text
    assert "Load average (1 min) while timing**: 0.50-0.50" in text and "busy" not in text
    assert "## Notes" in text
    assert load_results(tmp_path / "run") == results
    assert json.loads((tmp_path / "run" / "results.json").read_text()) == results
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]


def test_header_from_results_without_manifest(tmp_path, results):
    results[1]["latency_inputs"]["sha256"] = "other"
    results[2]["machine"]["load_avg_1m"] = 3.5
    text = write_report(tmp_path, results, title="t").read_text()
    assert "Test CPU" in text and "**different texts**" in text
    assert "0.50-3.50; **the machine was busy**" in text
    results[2]["machine"]["load_avg_1m"] = 2.3  # 2 CPUs, 2 timing threads: its own load
    assert "busy" not in write_report(tmp_path, results, title="t").read_text()


def test_load_results_errors(tmp_path):
    with pytest.raises(CompressorError, match="no results"):
        load_results(tmp_path)
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(CompressorError, match="cannot read"):
        load_results(tmp_path)
    (tmp_path / "results.json").write_text('{"a": 1}')
    with pytest.raises(CompressorError, match="JSON list"):
        load_results(tmp_path)


def test_empty_results(tmp_path):
    text = write_report(tmp_path, [], title="nothing").read_text()
    assert "No model was evaluated" in text
    assert load_results(tmp_path) == []
