"""Which weights do movement scores remove? One-shot masks from several importance scores.

    python benchmarks/movement_scores.py runs/quickstart/artifacts/01-teacher [--batches 50]

Loads a fine-tuned sequence classifier and the ``mr-snippets`` splits exactly as a recipe with
``seed: 0`` gets them. Accumulates, over ``--batches`` training batches of 32 at the model's
weights (no update), the per-weight quantities below, then masks each encoder-layer Linear
matrix (per-layer, as ``prune.movement``'s default scope) at every ``--sparsity`` and prints the
validation accuracy without any retraining:

- ``magnitude``: ``|W|`` (``prune.magnitude``);
- ``random``: uniform scores;
- ``movement``: ``-sum_t dL/dW * W`` (Sanh et al. 2020, eq. 5: what ``prune.movement``'s
  scores accumulate through the straight-through gradient), one score per weight;
- ``movement, 32x32 blocks``: the same summed over 32 x 32 blocks (``block: [32, 32]``);
- ``-movement``: the opposite ranking, to show whether the sign carries the signal;
- ``taylor``: ``mean_t (dL/dW * W)^2`` (first-order Taylor importance, Molchanov et al. 2019).

Heavy: torch, transformers; about two minutes for 50 batches on 2 cores.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path, help="fine-tuned PyTorch sequence classifier folder")
    ap.add_argument("--batches", type=int, default=50, help="training batches of 32 the scores sum over")
    ap.add_argument("--sparsity", default="0.2,0.5", help="comma-separated sparsities")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    import torch
    from tabulate import tabulate
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from compressor.plugins import Plugins
    from compressor.recipe import DataConfig
    from compressor.sources.datasets import load_task_data
    from compressor.sources.packaged import cache_root
    from compressor_pruning.magnitude import prunable_weights

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = load_task_data(
        DataConfig(name="mr-snippets"), datasets_registry=Plugins().load().datasets,
        cache_dir=cache_root(), seed=0, base_dir=Path.cwd(), task_type="text-classification",
    )
    train, validation = data.split("train"), data.split("validation")
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForSequenceClassification.from_pretrained(args.model)
    weights = prunable_weights(model)
    dense = {k: w.detach().clone() for k, w in weights.items()}

    def encode(rows: dict) -> dict:
        return tokenizer(rows["text"], padding=True, truncation=True, max_length=128, return_tensors="pt")

    movement = {k: torch.zeros_like(w) for k, w in dense.items()}
    taylor = {k: torch.zeros_like(w) for k, w in dense.items()}
    model.train()  # dropout on, as while fine-tuning
    for i in range(args.batches):
        rows = train[i * 32 : (i + 1) * 32]
        model.zero_grad()
        model(**encode(rows), labels=torch.tensor(rows["label"])).loss.backward()
        with torch.no_grad():
            for k, w in weights.items():
                gw = w.grad * w
                movement[k] -= gw
                taylor[k] += gw.square() / args.batches
    model.eval()

    def blocks(scores: torch.Tensor, size: int = 32) -> torch.Tensor:
        out, inp = scores.shape
        summed = scores.reshape(out // size, size, inp // size, size).sum(dim=(1, 3))
        return summed.repeat_interleave(size, 0).repeat_interleave(size, 1)

    rankings = {
        "magnitude |W|": {k: w.abs() for k, w in dense.items()},
        "random": {k: torch.rand_like(w) for k, w in dense.items()},
        "movement -sum g*W": movement,
        "movement, 32x32 blocks": {k: blocks(s) for k, s in movement.items()},
        "-movement (opposite sign)": {k: -s for k, s in movement.items()},
        "taylor mean (g*W)^2": taylor,
    }

    @torch.no_grad()
    def accuracy() -> float:
        correct = 0
        for i in range(0, len(validation), 128):
            rows = validation[i : i + 128]
            correct += int((model(**encode(rows)).logits.argmax(-1) == torch.tensor(rows["label"])).sum())
        return 100.0 * correct / len(validation)

    sparsities = [float(s) for s in args.sparsity.split(",")]
    table = [["dense", *[f"{accuracy():.2f}"] * len(sparsities)]]
    for name, scores in rankings.items():
        row = [name]
        for sparsity in sparsities:
            with torch.no_grad():
                for k, w in weights.items():
                    s = scores[k].flatten()
                    order = torch.argsort(s, stable=True)
                    keep = torch.ones_like(s)
                    keep[order[: int(round(sparsity * s.numel()))]] = 0
                    w.copy_(dense[k] * keep.view_as(w))
            row.append(f"{accuracy():.2f}")
        table.append(row)
    with torch.no_grad():
        for k, w in weights.items():
            w.copy_(dense[k])
    print(f"validation accuracy (%), n = {len(validation)}, scores from {args.batches} batches of 32, per-layer masks")
    print(tabulate(table, headers=["scores", *[f"sparsity {s:g}" for s in sparsities]], tablefmt="github"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
