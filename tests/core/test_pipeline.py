"""The orchestrator on a tiny real model: stages, manifest, failure, resume, evaluation."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from compressor.errors import CompressorError, StageError
from compressor.pipeline import run

RECIPE = """\
version: 1
name: pipe
seed: 1
model:
  name: {model}
  source: local
task:
  data:
    name: tiny-sentiment
evaluation:
  baseline: true
  batch_sizes: [1, 4]
  sequence_length: 16
  warmup: 1
  min_runs: 3
  max_runs: 5
  min_time_s: 0.0
stages:
  - name: first
    strategy: copy.model
    config: {{note: one}}
  - name: second
    strategy: copy.model
    config: {{note: two, fail_marker: {marker}}}
    evaluate: false
"""


def write_recipe(tmp_path: Path, model: Path, marker: Path, **subs) -> Path:
    text = RECIPE.format(model=model, marker=marker)
    for old, new in subs.items():
        text = text.replace(old, new)
    p = tmp_path / "recipe.yaml"
    p.write_text(textwrap.dedent(text))
    return p


def test_run_produces_artifacts_manifest_results_and_report(tmp_path, tiny_bert_dir, fake_plugins, capfd):
    marker = tmp_path / "ok"
    marker.touch()
    recipe = write_recipe(tmp_path, tiny_bert_dir, marker)
    run_dir = tmp_path / "run"
    result = run(recipe, run_dir=run_dir, plugins=fake_plugins, progress=False)

    assert list(result.artifacts) == ["baseline", "first", "second"]
    first = result.artifacts["first"]
    assert first.path == run_dir / "artifacts" / "01-first"
    assert first.lineage.parent == "baseline" and first.lineage.extra == {"note": "one"}
    assert (first.path / "model.safetensors").read_bytes() == (tiny_bert_dir / "model.safetensors").read_bytes()

    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "done"
    assert manifest["seed"] == 1
    assert [s["status"] for s in manifest["stages"]] == ["done", "done", "done"]
    assert manifest["data"]["fingerprint"] and sum(manifest["data"]["splits"].values()) == 200
    assert manifest["versions"]["torch"] and manifest["hardware"]["cpu_model"]
    assert "torch_threads" in manifest["hardware"]
    assert (run_dir / "recipe.yaml").read_text() == recipe.read_text()

    # baseline and 'first' evaluated, 'second' has evaluate: false
    assert [r["model"] for r in result.results] == ["baseline", "first"]
    saved = json.loads((run_dir / "results.json").read_text())
    assert [r["model"] for r in saved] == ["baseline", "first"]
    # same weights, same inputs: identical accuracy
    assert saved[0]["accuracy"]["accuracy"] == saved[1]["accuracy"]["accuracy"]
    report = (run_dir / "report.md").read_text()
    assert "baseline" in report and "first" in report
    # progress=False silences transformers' own bars too, and only for the run
    assert "Loading weights" not in capfd.readouterr().err
    from transformers.utils.logging import is_progress_bar_enabled

    assert is_progress_bar_enabled()


def test_failed_stage_keeps_earlier_artifacts_and_resume_finishes(tmp_path, tiny_bert_dir, fake_plugins):
    marker = tmp_path / "marker"
    recipe = write_recipe(tmp_path, tiny_bert_dir, marker)
    run_dir = tmp_path / "run"
    with pytest.raises(StageError, match="marker"):
        run(recipe, run_dir=run_dir, plugins=fake_plugins, progress=False)

    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    assert manifest["failed_stage"] == "second"
    stages = {s["name"]: s for s in manifest["stages"]}
    assert stages["first"]["status"] == "done"
    assert stages["second"]["status"] == "failed" and "marker" in stages["second"]["error"]
    assert Path(stages["second"]["traceback"]).exists()
    assert (run_dir / "artifacts" / "01-first" / "model.safetensors").exists()
    assert not (run_dir / "artifacts" / "02-second").exists()
    assert not (run_dir / "artifacts" / ".02-second.partial").exists()
    assert fake_plugins.fake.calls == ["first", "second"]

    # without --resume an existing run directory is refused
    with pytest.raises(CompressorError, match="--resume"):
        run(recipe, run_dir=run_dir, plugins=fake_plugins, progress=False)

    marker.touch()
    first_mtime = (run_dir / "artifacts" / "01-first" / "lineage.json").stat().st_mtime_ns
    result = run(recipe, run_dir=run_dir, plugins=fake_plugins, progress=False, resume=True)
    assert fake_plugins.fake.calls == ["first", "second", "second"]  # 'first' not redone
    assert (run_dir / "artifacts" / "01-first" / "lineage.json").stat().st_mtime_ns == first_mtime
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "done" and "failed_stage" not in manifest
    assert [s["status"] for s in manifest["stages"]] == ["done", "done", "done"]
    assert manifest["stages"][1]["reused"] is True
    assert set(result.artifacts) == {"baseline", "first", "second"}
    assert (run_dir / "report.md").exists()

    # resuming a finished run redoes nothing, evaluation included
    lines = (run_dir / "results.jsonl").read_text().splitlines()
    run(recipe, run_dir=run_dir, plugins=fake_plugins, progress=False, resume=True)
    assert fake_plugins.fake.calls == ["first", "second", "second"]
    assert (run_dir / "results.jsonl").read_text().splitlines() == lines


def test_resume_reruns_a_stage_whose_config_changed(tmp_path, tiny_bert_dir, fake_plugins):
    marker = tmp_path / "m"
    marker.touch()
    recipe = write_recipe(tmp_path, tiny_bert_dir, marker)
    run_dir = tmp_path / "run"
    run(recipe, run_dir=run_dir, plugins=fake_plugins, progress=False)
    recipe = write_recipe(tmp_path, tiny_bert_dir, marker, **{"note: two": "note: changed"})
    run(recipe, run_dir=run_dir, plugins=fake_plugins, progress=False, resume=True)
    assert fake_plugins.fake.calls == ["first", "second", "second"]
    lineage = json.loads((run_dir / "artifacts" / "02-second" / "lineage.json").read_text())
    assert lineage["lineage"]["extra"] == {"note": "changed"}
