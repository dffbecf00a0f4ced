"""Training steps per second of the quick start's teacher, before and after the throughput
options, measured in one run.

The quick start's first stage (``recipes/quickstart.yaml``: ``finetune`` of the packaged
MiniLM-L6 on ``mr-snippets``, batch 32, max_length 128, lr 1e-4) is trained for a capped
number of steps (``max_steps``) with each variant, in interleaved rounds (A B C A B C ...),
so that a machine that gets busier or quieter affects every variant alike:

- ``random``: random batches padded to their longest sentence (the recipe before);
- ``grouped``: ``group_by_length: true`` (transformers' LengthGroupedSampler);
- ``grouped+1w``: the same with ``dataloader_workers: 1``.

It also counts the tokens each sampler pads to over a whole epoch (deterministic, the cause
of the difference), and records the CPU model, instruction sets and load average.

    python benchmarks/training_throughput.py [--steps 20] [--rounds 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path


def padded_tokens(train, batch: int, grouped: bool, seed: int = 0) -> tuple[int, int]:
    """(real tokens, tokens after padding each batch to its longest) over one epoch."""
    import torch
    from transformers.trainer_pt_utils import get_length_grouped_indices

    lengths = [len(x) for x in train["input_ids"]]
    g = torch.Generator().manual_seed(seed)
    order = get_length_grouped_indices(lengths, batch, generator=g) if grouped else torch.randperm(len(lengths), generator=g).tolist()
    real = sum(lengths)
    padded = sum(max(lengths[i] for i in order[s:s + batch]) * len(order[s:s + batch]) for s in range(0, len(order), batch))
    return real, padded


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20, help="optimiser steps per measurement")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--variants", nargs="+", default=["random", "grouped", "grouped+1w"])
    p.add_argument("--out", type=Path)
    args = p.parse_args()

    from compressor import DataConfig
    from compressor.artifact import Artifact
    from compressor.hardware import cpu_model, instruction_sets
    from compressor.plugins import get_plugins
    from compressor.sources.datasets import load_task_data
    from compressor.sources.models import resolve_model
    from compressor.sources.packaged import cache_root
    from compressor.strategy import StageContext
    from compressor.training import trainer as training
    from compressor_finetune.plugin import FineTune, FineTuneConfig
    from transformers import AutoTokenizer

    plugins = get_plugins()
    model_dir = resolve_model("all-minilm-l6-v2", "auto", sources=plugins.model_sources, cache_dir=cache_root())
    data = load_task_data(
        DataConfig(name="mr-snippets"), datasets_registry=plugins.datasets, cache_dir=cache_root(), seed=0,
        base_dir=Path.cwd(), task_type="text-classification", tasks_registry=plugins.tasks,
    )
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    train = training.tokenize_split(data.splits["train"], tok, 128, data, progress=False)
    pad = {name: padded_tokens(train, 32, grouped) for name, grouped in (("random", False), ("grouped", True))}

    options = {
        "random": {},
        "grouped": {"group_by_length": True},
        "grouped+1w": {"group_by_length": True, "dataloader_workers": 1},
    }
    base = dict(epochs=2, learning_rate=1e-4, batch_size=32, max_length=128, max_steps=args.steps, logging_steps=10_000)
    results: dict[str, list[float]] = {v: [] for v in args.variants}
    loads = []
    for r in range(args.rounds):
        for variant in args.variants:
            with tempfile.TemporaryDirectory() as tmp:
                ctx = StageContext(stage_name="teacher", output_dir=Path(tmp) / "out", work_dir=Path(tmp) / "work",
                                   data=data, seed=0, progress=False, logger=logging.getLogger("bench"))
                ctx.output_dir.mkdir()
                ctx.work_dir.mkdir()
                config = FineTuneConfig(**base, **options[variant])
                art = FineTune().apply(Artifact(name="baseline", path=model_dir), config, ctx)
                extra = art.lineage.extra
                sps = extra["global_step"] / extra["train_runtime_s"]
                results[variant].append(sps)
                loads.append(os.getloadavg()[0])
                print(f"round {r + 1} {variant}: {sps:.3f} steps/s ({extra['train_runtime_s']:.1f} s for "
                      f"{extra['global_step']} steps), load {loads[-1]:.2f}", flush=True)
    summary = {
        "cpu": cpu_model(), "instruction_sets": instruction_sets(), "threads": __import__("torch").get_num_threads(),
        "steps": args.steps, "rounds": args.rounds, "load_average_1min": loads,
        "steps_per_second": results, "median": {v: sorted(x)[len(x) // 2] for v, x in results.items()},
        "epoch_tokens": {k: {"real": a, "padded": b} for k, (a, b) in pad.items()},
        "at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
