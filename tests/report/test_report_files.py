"""report.md / results.json written from the evaluator's records and read back typed."""

import json
import os
import stat

import pytest

from compressor.errors import CompressorError
from compressor.evaluate.records import SCHEMA_VERSION
from compressor.report import load_results, render_table, write_report


def test_write_report_and_round_trip(tmp_path, results):
    manifest = {"hardware": {"cpu_model": "Intel Xeon Test", "cpus_available": 2},
                "git_sha": "deadbeef", "seed": 0, "data": {"fingerprint": "f" * 64},
                "versions": {"torch": "2.13.0"}}
    for r in results:
        r.machine.cpus_available, r.machine.load_avg_1m = 2, 0.5
    path = write_report(tmp_path / "run", results, title="MiniLM on mr-snippets",
                        manifest=manifest)
    assert path == tmp_path / "run" / "report.md"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# MiniLM on mr-snippets\n")
    assert "Intel Xeon Test" in text and "**threads**: 1" in text and "16, 32 tokens" in text
    assert "the same texts for every model" in text and "deadbeef" in text
    assert "seed `0`" in text and "data fingerprint `ffffffffffff`" in text  # shortened
    assert render_table(results) in text
    assert "Load average (1 min) while timing**: 0.50-0.50" in text and "busy" not in text
    assert "## Notes" in text
    assert load_results(tmp_path / "run") == results  # typed, equal field by field
    written = json.loads((tmp_path / "run" / "results.json").read_text())
    assert written == [r.to_json() for r in results]
    assert all(list(r)[0] == "schema_version" and r["schema_version"] == SCHEMA_VERSION for r in written)
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]


def test_report_files_are_readable_like_any_new_file(tmp_path, results):
    write_report(tmp_path, results, title="t")
    umask = os.umask(0)
    os.umask(umask)
    for name in ("report.md", "report.html", "results.json", "results.csv", "pareto-cpu.png"):
        mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
        assert mode == 0o666 & ~umask, name  # not mkstemp's 0o600


def test_header_from_results_without_manifest(tmp_path, results):
    for r in results:
        r.machine.cpus_available, r.machine.load_avg_1m = 2, 0.5
    results[1].latency_inputs.sha256 = "other"
    results[2].machine.load_avg_1m = 3.5
    text = write_report(tmp_path, results, title="t").read_text()
    assert results[0].machine.cpu_model in text and "**different texts**" in text
    assert "0.50-3.50; **the machine was busy**" in text
    results[2].machine.load_avg_1m = 2.3  # 2 CPUs, 2 timing threads: its own load
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
    (tmp_path / "results.json").write_text('[{"model": "m", "acuracy": null}]')
    with pytest.raises(CompressorError, match=r"record 1 \(model 'm'\).*acuracy"):
        load_results(tmp_path)


def test_empty_results(tmp_path):
    text = write_report(tmp_path, [], title="nothing").read_text()
    assert "No model was evaluated" in text
    assert load_results(tmp_path) == []
    assert "No model was evaluated" in (tmp_path / "report.html").read_text()
