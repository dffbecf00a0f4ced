"""Capped runs of recipes/ablation.yaml, recipes/general-distillation.yaml and
recipes/distilbert-paper.yaml, and the tables of docs/distillation.md.

CPU time is scarce, so the measured runs change the recipes in documented ways only (printed
and saved as ``recipe.capped.yaml`` in the run directory):

- ``ablation``: the teacher stage is replaced by an existing fine-tuned teacher folder
  (``--teacher``, used as the run's model and named ``baseline``), the students train on
  ``--max-train-samples`` rows for ``--epochs`` epochs, for the ``--seeds`` and ``--rows``
  given;
- ``general``: masked-LM stages train on at most ``--max-train-blocks`` blocks of the corpus
  (``--max-eval-blocks`` held out), and ``--adapt-train`` / ``--adapt-lr`` may override
  the ``mlm-adapt`` stage's ``train`` and learning rate; the fine-tuning stages are unchanged;
- ``paper``: teacher and student train on ``--max-train-samples`` rows of the task
  (accuracy and latency are measured on the full test split as always).

Usage::

    python benchmarks/distillation_recipes.py ablation --teacher DIR --out runs/ablation-capped \\
        --max-train-samples 2000 --epochs 1 --seeds 0,1,2
    python benchmarks/distillation_recipes.py general --out runs/general-capped \\
        --max-train-blocks 600 --max-eval-blocks 100
    python benchmarks/distillation_recipes.py paper --out runs/distilbert-paper-capped \\
        --max-train-samples 4000
    python benchmarks/distillation_recipes.py table runs/ablation-capped   # mean / std per row
    python benchmarks/distillation_recipes.py ablation --teacher DIR --out runs/ablation-s0 \\
        --max-train-samples 0 --epochs 2 --seeds 0     # uncapped, one run per seed
    python benchmarks/distillation_recipes.py table runs/ablation-s0 runs/ablation-s1 runs/ablation-s2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
ROWS = ["triple", "ce-only", "no-ce", "no-cos", "no-task", "random-init", "uniform"]
PAPER = {  # Sanh et al. 2019, Table 4, GLUE macro-score points vs the triple loss
    "no-ce": "-2.96 (row '0 - Lcos - Lmlm')",
    "no-cos": "-1.46 (row 'Lce - 0 - Lmlm')",
    "no-task": "-0.31 (row 'Lce - Lcos - 0', L_mlm removed)",
    "random-init": "-3.69",
    "ce-only": "not in the table",
    "uniform": "not in the table (the paper takes one layer out of two)",
    "triple": "0 (reference)",
}


def _write(recipe: dict, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    path = out.parent / f"{out.name}.capped.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    print(yaml.safe_dump(recipe, sort_keys=False))
    return path


def ablation(args: argparse.Namespace) -> Path:
    recipe = yaml.safe_load((ROOT / "recipes/ablation.yaml").read_text())
    seeds = {int(s) for s in args.seeds.split(",")}
    rows = set(args.rows.split(",")) if args.rows else set(ROWS)
    unknown = rows - set(ROWS)
    if unknown:
        raise SystemExit(f"unknown rows {sorted(unknown)}; known: {ROWS}")
    recipe["name"] = Path(args.out).name
    recipe["model"] = {"name": str(Path(args.teacher).resolve()), "source": "local"}
    recipe["task"]["data"]["max_train_samples"] = args.max_train_samples or None
    recipe["evaluation"]["baseline"] = True  # the teacher
    stages = []
    for stage in recipe["stages"]:
        if stage["strategy"] != "distill.distilbert" or stage["config"]["seed"] not in seeds:
            continue
        if stage["name"].rsplit("-s", 1)[0] not in rows:
            continue
        stage["config"].update(teacher="baseline", epochs=args.epochs)
        stages.append(stage)
    recipe["stages"] = stages
    return _write(recipe, Path(args.out))


def general(args: argparse.Namespace) -> Path:
    recipe = yaml.safe_load((ROOT / "recipes/general-distillation.yaml").read_text())
    recipe["name"] = Path(args.out).name
    for stage in recipe["stages"]:
        if stage["name"] in ("teacher-mlm", "student-mlm"):
            stage["config"].update(max_train_blocks=args.max_train_blocks, max_eval_blocks=args.max_eval_blocks)
        if stage["name"] == "teacher-mlm":
            if args.adapt_train is not None:
                stage["config"]["train"] = args.adapt_train
            if args.adapt_lr is not None:
                stage["config"]["learning_rate"] = args.adapt_lr
    return _write(recipe, Path(args.out))


def paper(args: argparse.Namespace) -> Path:
    recipe = yaml.safe_load((ROOT / "recipes/distilbert-paper.yaml").read_text())
    recipe["name"] = Path(args.out).name
    recipe["task"]["data"]["max_train_samples"] = args.max_train_samples
    return _write(recipe, Path(args.out))


def table(*run_dirs: Path) -> str:
    """Mean and standard deviation per ablation row over the students of ``run_dirs``.

    The teacher line is the first run's baseline; runs split by seed must share it.
    """
    results = [r for run_dir in run_dirs for r in json.loads((run_dir / "results.json").read_text())]
    acc = {r["model"]: 100 * r["accuracy"]["accuracy"] for r in results if r.get("accuracy")}
    lines = []
    if "baseline" in acc:
        lines.append(f"teacher (baseline): {acc['baseline']:.2f}% test accuracy, n = "
                     f"{results[0]['accuracy']['n']}\n")
    per_row = {row: [v for k, v in acc.items() if k.rsplit("-s", 1)[0] == row] for row in ROWS}
    ref = statistics.mean(per_row["triple"]) if per_row["triple"] else None
    lines.append("| row | seeds | accuracy mean (%) | std (pts) | delta vs triple (pts) | paper delta (GLUE pts) |")
    lines.append("|---|---|---|---|---|---|")
    for row, values in per_row.items():
        if not values:
            continue
        mean = statistics.mean(values)
        std = statistics.stdev(values) if len(values) > 1 else float("nan")
        delta = f"{mean - ref:+.2f}" if ref is not None else "-"
        lines.append(f"| {row} | {len(values)} | {mean:.2f} | {std:.2f} | {delta} | {PAPER[row]} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("ablation")
    a.add_argument("--teacher", required=True, help="fine-tuned MiniLM-L6 teacher folder")
    a.add_argument("--out", required=True)
    a.add_argument("--max-train-samples", type=int, default=2000, help="0: the whole train split")
    a.add_argument("--epochs", type=float, default=1.0)
    a.add_argument("--seeds", default="0,1,2")
    a.add_argument("--rows", default="", help=f"comma-separated rows of {ROWS}; default: all")
    g = sub.add_parser("general")
    g.add_argument("--out", required=True)
    g.add_argument("--max-train-blocks", type=int, default=600)
    g.add_argument("--max-eval-blocks", type=int, default=100)
    g.add_argument("--adapt-train", choices=["head", "all"], help="override mlm-adapt's 'train'")
    g.add_argument("--adapt-lr", type=float, help="override mlm-adapt's learning rate")
    pp = sub.add_parser("paper")
    pp.add_argument("--out", required=True)
    pp.add_argument("--max-train-samples", type=int, default=4000)
    t = sub.add_parser("table")
    t.add_argument("run_dir", nargs="+", help="ablation runs (e.g. one per seed)")
    args = p.parse_args(argv)
    if args.cmd == "table":
        print(table(*map(Path, args.run_dir)))
        return 0
    from compressor import run

    recipe = {"ablation": ablation, "general": general, "paper": paper}[args.cmd](args)
    result = run(recipe, run_dir=args.out, overwrite=True, progress=False)
    if args.cmd == "ablation":
        print(table(result.run_dir))
    print(f"report: {result.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
