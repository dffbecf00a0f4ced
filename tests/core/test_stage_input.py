"""The per-stage ``input`` key: a stage starts from a named earlier artifact."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from compressor.errors import RecipeError
from compressor.pipeline import run
from compressor.recipe import load_recipe

RECIPE = """\
version: 1
name: branches
seed: 1
model: {{name: {model}, source: local}}
task:
  data: {{name: tiny-sentiment}}
evaluation:
  baseline: false
  latency: false
  memory: false
  flops: false
stages:
  - {{name: teacher, strategy: copy.model, config: {{note: t}}}}
  - {{name: child, strategy: copy.model, config: {{note: c}}}}
  - {{name: sibling, strategy: copy.model, input: {input}, config: {{note: s}}}}
"""


def _write(tmp_path: Path, model: Path, input_name: str) -> Path:
    p = tmp_path / "recipe.yaml"
    p.write_text(textwrap.dedent(RECIPE.format(model=model, input=input_name)))
    return p


def test_input_names_the_parent_and_keeps_fingerprints_apart(tmp_path, tiny_bert_dir, fake_plugins):
    result = run(_write(tmp_path, tiny_bert_dir, "teacher"), run_dir=tmp_path / "run", plugins=fake_plugins, progress=False)
    assert result.artifacts["child"].lineage.parent == "teacher"
    assert result.artifacts["sibling"].lineage.parent == "teacher"  # not "child"
    assert fake_plugins.fake.calls == ["teacher", "child", "sibling"]
    # changing the input changes the stage's fingerprint, so resume re-runs it
    import json

    stages = {s["name"]: s for s in json.loads((tmp_path / "run" / "manifest.json").read_text())["stages"]}
    recipe = _write(tmp_path, tiny_bert_dir, "baseline")
    result = run(recipe, run_dir=tmp_path / "run", plugins=fake_plugins, progress=False, resume=True)
    assert result.artifacts["sibling"].lineage.parent == "baseline"
    assert fake_plugins.fake.calls == ["teacher", "child", "sibling", "sibling"]
    again = {s["name"]: s for s in json.loads((tmp_path / "run" / "manifest.json").read_text())["stages"]}
    assert again["teacher"]["fingerprint"] == stages["teacher"]["fingerprint"]
    assert again["sibling"]["fingerprint"] != stages["sibling"]["fingerprint"]


@pytest.mark.parametrize("bad", ["sibling", "nope", "teachr"])
def test_input_must_name_an_earlier_artifact(tmp_path, tiny_bert_dir, fake_plugins, bad):
    with pytest.raises(RecipeError) as info:
        load_recipe(_write(tmp_path, tiny_bert_dir, bad), plugins=fake_plugins)
    msg = str(info.value)
    assert "stages[2].input" in msg and "recipe.yaml:15" in msg
    assert "['baseline', 'teacher', 'child']" in msg
    if bad == "teachr":
        assert "teacher" in msg.split("hint:")[1]
