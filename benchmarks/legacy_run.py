"""Re-evaluate every artifact of a run folder written by an earlier compressor release (the
transformers 4.57 + optimum-onnx stack) with this release, and compare accuracy with the
figures that run recorded.

    # 1. in an environment with compressor 0.1's pins (git worktree of fab2c5e, pip install -e
    #    it into a fresh venv with torch==2.13.0), write a run folder:
    /path/to/old-venv/bin/compressor run legacy.yaml --run-dir runs/legacy-0.1
    # 2. here:
    python benchmarks/legacy_run.py runs/legacy-0.1

The recipe measured in docs/dependencies.md (``legacy.yaml``)::

    version: 1
    name: legacy
    seed: 0
    model: {name: all-minilm-l6-v2}
    task:
      type: text-classification
      data: {name: mr-snippets, max_train_samples: 640, max_eval_samples: 256}
    evaluation: {baseline: false, batch_sizes: [1], sequence_length: 64}
    stages:
      - {name: teacher, strategy: finetune, config: {epochs: 1, learning_rate: 1.0e-4, batch_size: 32, max_length: 64}}
      - {name: heads, strategy: prune.heads, input: teacher, config: {fraction: 0.25, importance_samples: 64, max_length: 64}}
      - {name: int8-torch, strategy: quantize.dynamic-int8, input: teacher}
      - {name: int8-ort, strategy: quantize.ort-dynamic, input: teacher}
      - {name: onnx, strategy: export.onnx, input: heads, config: {optimization: O2}}

Each artifact is loaded through the plugins' evaluation backends as a run would load it
(PyTorch folders, ``pytorch-dynamic-int8``, head-pruned models whose ``config.json`` lists
``pruned_heads``, optimum-written ONNX graphs), on the data split the old run evaluated
(its recipe, seed and caps). Prints one row per artifact: the accuracy recorded then, the
accuracy measured now and how many test rows changed their prediction count; exit status 1
if any artifact fails to load or its accuracy moved by more than one test row.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="run folder written by an earlier release")
    args = parser.parse_args(argv)

    from tabulate import tabulate

    from compressor.artifact import Artifact
    from compressor.errors import CompressorError
    from compressor.evaluate import EvaluationSettings, evaluate_artifacts
    from compressor.plugins import get_plugins
    from compressor.recipe import load_recipe
    from compressor.sources.datasets import load_task_data
    from compressor.sources.packaged import cache_root

    plugins = get_plugins()
    loaded = load_recipe(args.run_dir / "recipe.yaml", plugins=plugins)
    recipe = loaded.recipe
    data = load_task_data(recipe.task.data, datasets_registry=plugins.datasets, cache_dir=cache_root(),
                          seed=recipe.seed, base_dir=loaded.base_dir, task_type=recipe.task.type)
    old = {r["model"]: r for r in json.loads((args.run_dir / "results.json").read_text())
           if r.get("device", "cpu") == "cpu"}
    settings = EvaluationSettings(batch_sizes=[1], sequence_length=32, min_runs=3, min_time_s=0.0,
                                  warmup=1, latency_passes=1, calibration_s=0)
    rows, bad = [], 0
    for folder in sorted((args.run_dir / "artifacts").iterdir()):
        art = Artifact.load(folder)
        if art.name not in old:  # e.g. a baseline the run did not evaluate
            rows.append([art.name, art.format, "not evaluated then", "-", "-"])
            continue
        before = old[art.name].get("accuracy", {})
        try:
            (rec,) = evaluate_artifacts([art], data, settings, progress=False, backends=plugins.backends)
        except CompressorError as exc:
            rows.append([art.name, art.format, before.get("accuracy"), "load failed", str(exc)[:80]])
            bad += 1
            continue
        now = rec["accuracy"]
        moved = abs(now["accuracy"] - before.get("accuracy", float("nan"))) * now["n"]
        bad += int(not moved <= 1.0)
        rows.append([art.name, art.format, f"{100 * before.get('accuracy', float('nan')):.2f}",
                     f"{100 * now['accuracy']:.2f}", f"{moved:.0f} of {now['n']} rows"])
    print(tabulate(rows, headers=["artifact", "format", "accuracy then (%)", "accuracy now (%)", "difference"],
                   tablefmt="github"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
