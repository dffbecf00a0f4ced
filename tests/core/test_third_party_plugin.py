"""A plugin package built and installed from a temporary folder shows up and runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "compressor-noise-plugin"
version = "0.3.1"
dependencies = []

[project.entry-points.compressor]
noise = "compressor_noise.plugin"
"""

PLUGIN = '''\
"""Adds Gaussian noise to every weight: a real, if useless, transformation."""
from pydantic import Field

from compressor import Strategy, StrategyConfig, hookimpl


class NoiseConfig(StrategyConfig):
    std: float = Field(0.01, ge=0, description="Standard deviation of the added noise.")


class AddNoise(Strategy):
    name = "noise.gaussian"
    Config = NoiseConfig
    description = "Adds N(0, std^2) to every floating-point weight."

    def apply(self, artifact, config, context):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        model = AutoModelForSequenceClassification.from_pretrained(artifact.path)
        gen = torch.Generator().manual_seed(context.seed)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=gen) * config.std)
        model.save_pretrained(context.output_dir)
        AutoTokenizer.from_pretrained(artifact.path).save_pretrained(context.output_dir)
        return context.new_artifact(artifact, self.name, config)


@hookimpl
def compressor_register_strategies(register):
    register(AddNoise)
'''


def test_installed_plugin_package_is_listed_and_runs(tmp_path, tiny_bert_dir):
    pkg = tmp_path / "pkg"
    (pkg / "compressor_noise").mkdir(parents=True)
    (pkg / "pyproject.toml").write_text(PYPROJECT)
    (pkg / "compressor_noise" / "__init__.py").write_text("")
    (pkg / "compressor_noise" / "plugin.py").write_text(PLUGIN)
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(site), str(pkg)],
        check=True,
        capture_output=True,
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}

    listed = subprocess.run(
        [sys.executable, "-m", "compressor", "plugins"], capture_output=True, text=True, env=env
    )
    assert listed.returncode == 0, listed.stderr
    line = next(ln for ln in listed.stdout.splitlines() if ln.startswith("noise"))
    assert "compressor-noise-plugin" in line and "0.3.1" in line and "noise.gaussian" in line

    data = tmp_path / "data.csv"
    data.write_text("text,label\n" + "".join(f"good film {i},1\nbad film {i},0\n" for i in range(30)))
    recipe = tmp_path / "noise.yaml"
    recipe.write_text(textwrap.dedent(f"""\
        version: 1
        name: noise
        model: {{name: {tiny_bert_dir}, source: local}}
        task:
          data: {{files: {{train: data.csv}}}}
        evaluation: {{baseline: false, latency: false, sequence_length: 32}}
        stages:
          - name: noisy
            strategy: noise.gaussian
            config: {{std: 0.5}}
        """))
    ran = subprocess.run(
        [sys.executable, "-m", "compressor", "run", str(recipe), "--run-dir", str(tmp_path / "run"), "--no-progress"],
        capture_output=True, text=True, env=env,
    )
    assert ran.returncode == 0, ran.stderr
    lineage = json.loads((tmp_path / "run" / "artifacts" / "01-noisy" / "lineage.json").read_text())
    assert lineage["lineage"]["strategy"] == "noise.gaussian"
    assert lineage["lineage"]["config"] == {"std": 0.5}
    from safetensors.torch import load_file

    before = load_file(tiny_bert_dir / "model.safetensors")
    after = load_file(tmp_path / "run" / "artifacts" / "01-noisy" / "model.safetensors")
    diff = (after["bert.embeddings.word_embeddings.weight"] - before["bert.embeddings.word_embeddings.weight"]).std()
    assert 0.4 < float(diff) < 0.6
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results[0]["model"] == "noisy"
