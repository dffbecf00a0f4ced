"""End to end on the packaged real model and real data.

The default suite runs a small capped version (256 training and 64 test sentences, 32 tokens)
of the quick-start recipe: real MiniLM-L6 weights, real Rotten Tomatoes sentences, both
strategies, the evaluator and the report. The 1,024-sentence capped run, which also checks that
the teacher learns (79 s of the clean-clone CI run on 2 cores), and the full quick-start run
(about 10 minutes) are marked ``slow``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compressor.pipeline import run

ROOT = Path(__file__).resolve().parents[2]

CAPPED = """\
version: 1
name: capped-quickstart
seed: 0
model: {name: all-minilm-l6-v2}
task:
  data: {name: mr-snippets, max_train_samples: 1024, max_eval_samples: 256}
evaluation:
  baseline: false
  batch_sizes: [1]
  sequence_length: 64
  warmup: 2
  min_runs: 10
  max_runs: 20
  min_time_s: 0.0
stages:
  - name: teacher
    strategy: finetune
    config: {epochs: 1, learning_rate: 1.0e-4, batch_size: 32, max_length: 64}
  - name: student
    strategy: distill.distilbert
    config: {student_layers: 3, epochs: 1, learning_rate: 1.0e-4, batch_size: 32, max_length: 64}
"""


#: the default suite's run: a quarter of the data, half the tokens, fewer timing runs
SMALL = (
    CAPPED.replace("max_train_samples: 1024, max_eval_samples: 256", "max_train_samples: 256, max_eval_samples: 64")
    .replace("sequence_length: 64", "sequence_length: 32")
    .replace("min_runs: 10\n  max_runs: 20", "min_runs: 3\n  max_runs: 5")
    .replace("max_length: 64", "max_length: 32")
)


def _run_capped(text: str, tmp_path: Path, *, n_test: int) -> dict:
    """Run the recipe ``text``; check what any capped quick start must show, return the teacher's record."""
    recipe = tmp_path / "capped.yaml"
    recipe.write_text(text)
    result = run(recipe, run_dir=tmp_path / "run", progress=False)
    teacher, student = result.results
    assert (teacher["model"], student["model"]) == ("teacher", "student")
    assert teacher["size"]["params"] == 22_713_986  # MiniLM-L6 encoder + 2-label head
    assert student["size"]["params"] < 0.8 * teacher["size"]["params"]
    lineage = json.loads((tmp_path / "run" / "artifacts" / "02-student" / "lineage.json").read_text())
    assert lineage["lineage"]["extra"]["copied_layers"] == [0, 2, 4]
    assert teacher["accuracy"]["n"] == student["accuracy"]["n"] == n_test
    assert all(r["latency"][0]["p50_ms"] > 0 for r in (teacher, student))
    assert (tmp_path / "run" / "report.md").exists()
    return teacher


def test_small_capped_quickstart_on_the_packaged_model(tmp_path):
    assert "max_train_samples: 256" in SMALL and "max_length: 64" not in SMALL
    _run_capped(SMALL, tmp_path, n_test=64)


@pytest.mark.slow
def test_capped_quickstart_on_the_packaged_model(tmp_path):
    teacher = _run_capped(CAPPED, tmp_path, n_test=256)
    # 1,024 training sentences already lift the teacher clearly above chance on held-out data
    assert teacher["accuracy"]["accuracy"] > 0.6


@pytest.mark.slow
def test_full_quickstart(tmp_path):
    """The README's main job: teacher >= 85%, student >= 97% of it, p50 (bs 1) <= 0.6x."""
    result = run(ROOT / "recipes" / "quickstart.yaml", run_dir=tmp_path / "run", progress=False)
    by_name = {r["model"]: r for r in result.results}
    teacher, student = by_name["teacher"], by_name["student"]
    t_acc, s_acc = teacher["accuracy"]["accuracy"], student["accuracy"]["accuracy"]
    assert t_acc >= 0.85
    assert s_acc >= 0.97 * t_acc
    p50 = {r["model"]: next(x["p50_ms"] for x in r["latency"] if x["batch_size"] == 1) for r in result.results}
    assert p50["student"] <= 0.6 * p50["teacher"]
