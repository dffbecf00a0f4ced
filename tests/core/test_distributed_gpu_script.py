"""benchmarks/gpu_check.sh on a machine without CUDA (this suite's): a clear refusal, the facts
written, no run started; its recipe validates."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_refuses_without_cuda_and_says_why(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the script would run the quick start")
    out = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "OUT": ""})
    assert out.returncode == 3, out.stdout + out.stderr
    facts = json.loads((tmp_path / "out" / "gpu.json").read_text())
    assert facts["cuda_available"] is False and "no CUDA device" in facts["reason"]
    assert facts["torch"] == torch.__version__
    assert not (tmp_path / "out" / "run").exists()  # nothing ran


def test_the_gpu_recipe_is_the_quick_start_with_throughput_options():
    from compressor.recipe import load_recipe

    gpu = load_recipe(ROOT / "recipes" / "quickstart-gpu.yaml").recipe
    cpu = load_recipe(ROOT / "recipes" / "quickstart.yaml").recipe
    assert (gpu.model.name, gpu.task.data.name) == (cpu.model.name, cpu.task.data.name)
    assert [s.strategy for s in gpu.stages] == [s.strategy for s in cpu.stages]
    for stage in gpu.stages[:2]:
        assert stage.config["bf16"] == "auto" and stage.config["group_by_length"] is True
