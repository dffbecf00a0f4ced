"""Two back-to-back evaluations of the same model: how far apart are their p50s? (issue #6)

Runs :func:`compressor.evaluate.evaluate_artifacts` twice on the same artifact with the
same settings (batch 1, 128 tokens, the default adaptive stopping rule), and prints both
p50s with their 95% intervals and the relative difference.

    python benchmarks/repeatability.py [MODEL_DIR] [--threads 2] [--length 128]

MODEL_DIR defaults to the fine-tuned MiniLM teacher of the quick start
(runs/quickstart/artifacts/01-teacher), read only. The accuracy pass is capped
at 64 examples (this measures latency); data: the packaged mr-snippets test split.
"""

from __future__ import annotations

import argparse
import os
from datetime import datetime, timezone
from pathlib import Path

DEFAULT = Path("runs/quickstart/artifacts/01-teacher")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, nargs="?", default=DEFAULT)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--length", type=int, default=128)
    args = ap.parse_args()

    from compressor.artifact import Artifact
    from compressor.evaluate import EvaluationSettings, evaluate_artifacts
    from compressor.plugins import get_plugins
    from compressor.recipe import DataConfig
    from compressor.sources.datasets import load_task_data
    from compressor.sources.packaged import cache_root

    data = load_task_data(DataConfig(name="mr-snippets"), datasets_registry=get_plugins().datasets,
                          cache_dir=cache_root(), seed=0, base_dir=Path.cwd())
    settings = EvaluationSettings(batch_sizes=[1], sequence_length=args.length,
                                  threads=args.threads, max_eval_samples=64, memory=False,
                                  flops=False, device="cpu")
    art = Artifact.load(args.model)
    print(f"# {datetime.now(timezone.utc).isoformat(timespec='seconds')}; load average "
          f"{os.getloadavg()}; {args.threads} threads; batch 1, {args.length} tokens")
    p50s = []
    for i in range(2):
        e = evaluate_artifacts([art], data, settings, progress=False)[0]["latency"][0]
        p50s.append(e["p50_ms"])
        print(f"evaluation {i + 1}: p50 {e['p50_ms']:.3f} ms, 95% CI "
              f"[{e['p50_ci_ms'][0]:.3f}, {e['p50_ci_ms'][1]:.3f}], {e['runs']} calls, "
              f"stopped by {e['stop_reason']}")
    diff = abs(p50s[1] - p50s[0]) / min(p50s)
    print(f"difference: {100 * diff:.2f}% of the smaller p50")
    print(f"# load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
