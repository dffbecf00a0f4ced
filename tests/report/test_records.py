"""Typed evaluation records: the evaluator sets every field, results.json round-trips, older
results.json files (no schema_version: version 0) are still read, the published JSON Schema
and docs/results-reference.md match the models."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from compressor.cli import main
from compressor.errors import CompressorError
from compressor.evaluate.records import (
    SCHEMA_ID,
    SCHEMA_VERSION,
    EvaluationRecord,
    load_record,
    load_records,
    results_schema,
    upgrade_record,
)
from compressor.report import compare_runs, load_results, render_table, write_report
from compressor.schema import results_reference

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data"
REFERENCE = ROOT / "docs" / "results-reference.md"

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is in the [test] extra")

#: Fields the run or compare add to the evaluator's records.
ADDED_LATER = {"schema_version", "fingerprint", "settings_key", "run"}


def test_the_evaluator_sets_every_field(evaluated):
    for record in evaluated.records:
        assert record.model_fields_set == set(EvaluationRecord.model_fields) - ADDED_LATER
        assert record.schema_version == SCHEMA_VERSION
        machine = record.machine
        assert machine.instruction_sets is not None and machine.cpu_flags_source
        assert machine.kernels.torch_cpu_capability  # "AVX2", "AVX512", "DEFAULT"...
        assert record.memory.device == "cpu" and record.compute.peak.gflops > 0
        assert [(c.batch_size, c.sequence_length) for c in record.latency] == [
            (1, 16), (1, 32), (4, 16), (4, 32)]
        assert all(c.gflops and c.peak_fraction for c in record.latency)


def test_records_round_trip_through_json_and_validate_against_the_schema(evaluated):
    validator = jsonschema.Draft202012Validator(results_schema())
    data = json.loads(json.dumps([r.to_json() for r in evaluated.records]))
    assert not list(validator.iter_errors(data))
    assert load_records(data) == evaluated.records
    assert [list(r)[0] for r in data] == ["schema_version"] * 3


def test_evaluate_artifacts_returns_the_records_as_results_json_holds_them(evaluated, monkeypatch):
    """evaluate_artifacts (dicts, as the run, its results.jsonl and the hooks use them) is
    evaluate_records' to_json; checked on the session's records without a second evaluation."""
    from compressor.evaluate import evaluator

    monkeypatch.setattr(evaluator, "evaluate_records", lambda *a, **k: evaluated.records)
    dicts = evaluator.evaluate_artifacts([], None, None)  # type: ignore[arg-type]
    assert dicts == [r.to_json() for r in evaluated.records]
    assert dicts[0]["accuracy"]["ci"]["accuracy"] == list(evaluated.records[0].accuracy.ci.accuracy)
    assert json.loads(json.dumps(dicts)) == dicts  # plain JSON types


def test_a_misspelled_or_unknown_field_is_an_error():
    with pytest.raises(ValidationError, match="acuracy"):
        EvaluationRecord(model="m", acuracy=None)
    record = EvaluationRecord(model="m")
    with pytest.raises(ValidationError):
        record.latncy = []  # noqa: B018 - assignment to an unknown field
    with pytest.raises(CompressorError, match=r"latency\.0\.p50ms"):
        load_record({"model": "m", "latency": [{"batch_size": 1, "p50ms": 3.0}]})
    with pytest.raises(AttributeError, match="p5O_ms"):
        EvaluationRecord.model_validate(
            {"model": "m", "latency": [{"batch_size": 1, "p50_ms": 3.0}]}
        ).latency[0].value("p5O_ms")


def test_version_0_results_json_is_read(tmp_path):
    """A results.json written by a run before the records were typed (fingerprint and
    settings_key added by the run), read, reported and compared."""
    raw = json.loads((DATA / "results-v0.json").read_text())
    assert "schema_version" not in raw[0]
    run = tmp_path / "old"
    run.mkdir()
    shutil.copy(DATA / "results-v0.json", run / "results.json")
    (record,) = load_results(run)
    assert record.schema_version == SCHEMA_VERSION
    assert record.precision == "bf16" and record.fingerprint == raw[0]["fingerprint"]
    assert record.accuracy.ci.accuracy == tuple(raw[0]["accuracy"]["ci"]["accuracy"])
    assert record.machine.instruction_sets is None  # not recorded then
    # written back: the same keys and values, plus the version and what version 2 makes
    # explicit (a classification record whose headline metric is accuracy)
    expected = {"schema_version": SCHEMA_VERSION, **raw[0], "task_type": "text-classification"}
    expected["accuracy"] = {**raw[0]["accuracy"], "primary": "accuracy"}
    assert record.to_json() == expected
    text = write_report(tmp_path / "again", [record], title="old").read_text()
    assert "under-test" in text and "**CPU instruction sets**: not recorded" in text
    assert render_table([record]) in text


def test_the_first_evaluators_results_json_is_read(tmp_path):
    """The oldest layout: no memory, compute, intervals, precision or latency settings."""
    raw = json.loads((DATA / "results-v0-first.json").read_text())
    (record,) = load_records(raw)
    assert record.memory is None and record.compute is None and record.accuracy.ci is None
    assert record.machine.gpu is None and record.latency[0].p50_ci_ms is None
    run = tmp_path / "first"
    run.mkdir()
    (run / "results.json").write_text(json.dumps(raw))
    text = write_report(tmp_path / "report", load_results(run), title="first").read_text()
    assert "| baseline" in text and "86.28" in text and "18.18" in text


def test_old_and_new_runs_of_one_cpu_compare_and_take_its_instruction_sets(tmp_path, results):
    old_raw = json.loads((DATA / "results-v0-first.json").read_text())
    old_raw[0]["threads"] = results[0].threads
    old_raw[0]["machine"]["cpu_model"] = results[0].machine.cpu_model
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir(), new.mkdir()
    (old / "results.json").write_text(json.dumps(old_raw))
    (new / "results.json").write_text(json.dumps([r.to_json() for r in results]))
    comparison = compare_runs([old, new])
    assert len(comparison.groups) == 1  # same CPU model: its instruction sets are the new run's


def test_newer_and_invalid_versions_are_refused():
    with pytest.raises(CompressorError, match="schema_version 99") as info:
        load_record({"schema_version": 99, "model": "m"})
    assert "upgrade compressor" in info.value.hint
    with pytest.raises(CompressorError, match="not a version number"):
        upgrade_record({"schema_version": "1", "model": "m"})
    with pytest.raises(CompressorError, match="must be a JSON object"):
        load_records([["m"]])
    assert upgrade_record({"model": "m"}) == {"model": "m", "schema_version": SCHEMA_VERSION}


def test_results_reference_is_generated_from_the_models():
    assert REFERENCE.read_text(encoding="utf-8") == results_reference(), (
        "docs/results-reference.md is out of date: regenerate it with\n"
        "    python -m compressor.schema --results --markdown > docs/results-reference.md"
    )
    text = REFERENCE.read_text(encoding="utf-8")
    for name in EvaluationRecord.model_fields:
        assert f"| `{name}` |" in text, name


def test_schema_command_prints_the_results_schema(capsys):
    assert main(["schema", "--results"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == results_schema() and printed["$id"] == SCHEMA_ID
    assert printed["$defs"]["EvaluationRecord"]["required"][0] == "schema_version"
    assert main(["schema", "--results", "finetune"]) == 2
    assert "takes no strategy" in capsys.readouterr().err
    assert main(["schema", "--results", "--markdown"]) == 0
    assert capsys.readouterr().out == results_reference()


def test_module_entry_point_prints_the_results_reference():
    proc = subprocess.run(
        [sys.executable, "-m", "compressor.schema", "--results", "--markdown"],
        capture_output=True, text=True, check=False, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == REFERENCE.read_text(encoding="utf-8")
