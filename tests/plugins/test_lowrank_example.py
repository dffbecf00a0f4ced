"""The example third-party plugin (docs/examples/compressor-lowrank), installed as CI installs
it, runs from a recipe: a tiny BERT is fine-tuned, factored by truncated SVD, evaluated."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from compressor import testing
from compressor.plugins import get_plugins

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "compressor-lowrank"

pytestmark = pytest.mark.skipif(
    "lowrank.svd" not in get_plugins().strategies,
    reason=f"the example plugin is not installed: pip install -e {EXAMPLE} (.ci/run does)",
)


def test_recipe_with_the_example_plugin_runs_from_the_command_line(tmp_path: Path) -> None:
    model = testing.tiny_model("bert", tmp_path / "tiny-bert")
    files = testing.write_tiny_task_files(tmp_path, n_train=96)
    recipe = tmp_path / "lowrank.yaml"
    recipe.write_text(textwrap.dedent(f"""\
        version: 1
        name: lowrank-tiny
        model: {{name: {model}, source: local}}
        task:
          data: {{files: {json.dumps(files)}}}
        evaluation: {{baseline: false, batch_sizes: [1], sequence_length: 16, threads: 1,
                      warmup: 1, min_runs: 3, max_runs: 3, min_time_s: 0}}
        stages:
          - {{name: teacher, strategy: finetune,
              config: {{epochs: 1, learning_rate: 0.002, batch_size: 16, max_length: 32}}}}
          - {{name: lowrank, strategy: lowrank.svd, config: {{energy: 0.5}}}}
        """))
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "compressor", "run", str(recipe), "--run-dir", str(run_dir), "--no-progress"],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = {r["model"]: r for r in json.loads((run_dir / "results.json").read_text())}
    teacher, lowrank = results["teacher"], results["lowrank"]
    assert lowrank["strategy"] == "lowrank.svd" and lowrank["backend"] == "onnxruntime"
    extra = json.loads((run_dir / "artifacts" / "02-lowrank" / "lineage.json").read_text())["lineage"]["extra"]
    assert extra["factored_layers"] + extra["dense_layers"] == 12  # 6 Linear x 2 layers
    assert extra["linear_params_after"] <= extra["linear_params_before"]
    assert 0 <= extra["mean_relative_error"] < 1
    assert lowrank["accuracy"]["n"] == teacher["accuracy"]["n"] > 0
    assert "lowrank" in (run_dir / "report.md").read_text()


def test_plugins_command_lists_the_example_with_its_package_and_version() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "compressor", "plugins", "--verbose"], capture_output=True, text=True, check=False
    )
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("lowrank "))
    assert "compressor-lowrank" in line and "0.1.0" in line and "lowrank.svd" in line
    assert "register_strategies" in line and line.rstrip().endswith("ok")
