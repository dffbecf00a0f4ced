"""Search efficiency of ``compressor tune``: TPE against random sampling at an equal number of
trials, several seeds each, on one recipe's search space.

For every (sampler, seed) the script runs the search in its own folder, all folders sharing
one stage store (``<out>/stages``) so the teacher and any stage an earlier search finished are
reused, which keeps the comparison about the samplers and not about training time. It prints,
per search: the best passing latency ratio (the recommended model's p50 / the reference's)
and the hypervolume of the passing trials in (latency ratio, loss in points), against the
reference point (ratio 1, loss ``max_loss``): the area of that box the passing trials
dominate (larger is better).

    python benchmarks/tune_efficiency.py recipes/tune-quickstart.yaml --trials 8 --seeds 0 1 \
        --out runs/tune-efficiency

Prints the CPU line (model, instruction sets) and the load average with the table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path


def hypervolume(points: list[tuple[float, float]], ref: tuple[float, float]) -> float:
    """2-D hypervolume of ``points`` (both coordinates lower-is-better) against ``ref``."""
    inside = sorted((x, y) for x, y in points if x < ref[0] and y < ref[1])
    # sweep: the staircase of non-dominated points, left to right
    front, best = [], ref[1]
    for x, y in inside:
        if y < best:
            front.append((x, y))
            best = y
    area = 0.0
    for i, (x, y) in enumerate(front):
        right = front[i + 1][0] if i + 1 < len(front) else ref[0]
        area += (right - x) * (ref[1] - y)
    return area


def main() -> None:
    from compressor.manifest import hardware
    from compressor.tune.tuner import NothingPasses, load_tune_recipe, tune

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("recipe", type=Path)
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--samplers", nargs="+", default=["tpe", "random"])
    p.add_argument("--out", type=Path, default=Path("runs/tune-efficiency"))
    p.add_argument("--max-loss", type=float, default=None,
                   help="override search.constraint.max_loss (a bound some candidates meet, so that "
                   "the searches have passing trials to compare)")
    args = p.parse_args()

    loaded = load_tune_recipe(args.recipe)
    max_loss = args.max_loss if args.max_loss is not None else loaded.recipe.search.constraint.max_loss
    hw = hardware()
    rows = []
    for sampler in args.samplers:
        for seed in args.seeds:
            text = args.recipe.read_text(encoding="utf-8")
            folder = args.out / f"{sampler}-seed{seed}"
            args.out.mkdir(parents=True, exist_ok=True)
            # the same recipe with another sampler and seed, kept beside the recipe so relative
            # data paths still resolve; not named *.yaml, so no recipe glob picks it up
            variant = args.recipe.parent / f".{args.recipe.stem}.{sampler}-{seed}.tune-variant"
            # the search block's sampler and seed only (the recipe's own seed keeps the stages'
            # fingerprints, so every search reuses the teacher and students of the others)
            text = re.sub(r"(?m)^(\s+)sampler: \S+$", rf"\g<1>sampler: {sampler}", text)
            text = re.sub(r"(?m)^(\s+)seed: \d+$", rf"\g<1>seed: {seed}", text)
            if args.max_loss is not None:
                text = re.sub(r"max_loss: [0-9.]+, confidence", f"max_loss: {args.max_loss}, confidence", text)
            variant.write_text(text, encoding="utf-8")
            try:
                try:
                    result = tune(variant, run_dir=folder, resume=folder.exists(), trials=args.trials,
                                  shared_stages=args.out / "stages")
                    best = result.best
                except NothingPasses:
                    best = None
                trials = json.loads((folder / "trials.json").read_text(encoding="utf-8"))
            finally:
                variant.unlink(missing_ok=True)
            passing = [t for t in trials if t["status"] == "passed" and t["objectives"]]
            points = [(next(iter(t["objectives"].values())), -t["bound"]["point"]) for t in passing]
            rows.append({
                "sampler": sampler, "seed": seed, "trials": len(trials),
                "passing": len(passing),
                "best_latency_ratio": None if best is None else next(iter(best.objectives.values())),
                "hypervolume": hypervolume(points, (1.0, max_loss)),
            })
    print(f"CPU: {hw.get('cpu_model')}; instruction sets: {', '.join(hw.get('instruction_sets') or [])}; "
          f"load average (1 min): {os.getloadavg()[0]:.2f}")
    print("| sampler | seed | trials | passing | best latency ratio | hypervolume |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        ratio = "-" if r["best_latency_ratio"] is None else f"{r['best_latency_ratio']:.3f}"
        print(f"| {r['sampler']} | {r['seed']} | {r['trials']} | {r['passing']} | {ratio} | {r['hypervolume']:.4f} |")


if __name__ == "__main__":
    sys.exit(main())
