"""Pruning stages in a recipe: branches from the baseline, evaluation records, report."""

from __future__ import annotations

import json
from pathlib import Path

RECIPE = """\
version: 1
name: prune
seed: 0
model: {{name: {model}, source: local}}
task:
  data: {{name: tiny-sentiment}}
evaluation:
  batch_sizes: [1]
  sequence_length: 16
  warmup: 1
  min_runs: 3
  max_runs: 5
  min_time_s: 0.0
  memory: false
  flops: false
stages:
  - name: sparse
    strategy: prune.magnitude
    config: {{sparsity: 0.8}}
  - name: heads
    strategy: prune.heads
    input: baseline
    config: {{heads_per_layer: 1, importance_samples: 32, max_length: 16}}
  - name: ffn
    strategy: prune.ffn
    config: {{fraction: 0.5, scope: global, importance_samples: 32, max_length: 16}}
"""


def test_pruning_recipe_records_structure_and_sparsity(tmp_path: Path, tiny_bert_dir: Path) -> None:
    import importlib.util

    from compressor.pipeline import run
    from compressor.plugins import Plugins

    spec = importlib.util.spec_from_file_location("root_conftest", Path(__file__).parents[1] / "conftest.py")
    root_conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(root_conftest)  # the fake plugin registers the tiny-sentiment data
    plugins = Plugins().load(extra=[("fake", root_conftest.fake_plugin_module())])
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.format(model=tiny_bert_dir))
    result = run(recipe, run_dir=tmp_path / "run", plugins=plugins, progress=False)
    by_name = {r["model"]: r for r in result.results}
    assert set(by_name) == {"baseline", "sparse", "heads", "ffn"}
    assert by_name["baseline"]["size"]["sparsity"] == 0.0
    assert abs(by_name["sparse"]["size"]["sparsity"] - 0.8) < 1e-3
    assert by_name["heads"]["size"]["structure"]["heads"] == [1, 1, 1, 1]  # 2 heads per layer before
    ffn = by_name["ffn"]["size"]["structure"]
    assert ffn["heads"] == [1, 1, 1, 1] and sum(ffn["ffn_widths"]) == 128  # the heads branch, then FFN
    assert result.artifacts["heads"].lineage.parent == "baseline"
    assert result.artifacts["ffn"].lineage.parent == "heads"
    assert by_name["ffn"]["size"]["params"] < by_name["heads"]["size"]["params"]
    report = result.report.read_text()
    assert "sparsity (%)" in report and "80.0" in report
    saved = json.loads((result.artifacts["sparse"].path / "lineage.json").read_text())
    assert saved["lineage"]["extra"]["sparse_bytes"] < saved["lineage"]["extra"]["dense_bytes"]
