"""Does the evaluator's timing harness add time over a bare loop? (issue #6)

Times the same model on the same batch two ways, alternating blocks so both see the same
machine load:

- bare: ``with torch.inference_mode(): model(**batch)`` between two ``perf_counter_ns``;
- harness: :func:`compressor.evaluate.latency.run_interleaved` around
  ``PyTorchBackend.run(batch)`` (the evaluator's path, adaptive stopping off: fixed counts).

Prints the p50 of each block, the median over blocks, and the overhead in percent.

    python benchmarks/harness_overhead.py [MODEL_DIR] [--threads 2] [--length 128]
        [--calls 200] [--blocks 6]

MODEL_DIR defaults to the fine-tuned MiniLM teacher of the quick start
(runs/quickstart/artifacts/01-teacher), read only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

DEFAULT = Path("runs/quickstart/artifacts/01-teacher")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, nargs="?", default=DEFAULT)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--blocks", type=int, default=6)
    args = ap.parse_args()

    import torch

    from compressor.artifact import Artifact
    from compressor.evaluate.backends import PyTorchBackend
    from compressor.evaluate.latency import encode_latency_batch, run_interleaved

    torch.set_num_threads(args.threads)
    art = Artifact.load(args.model)
    backend = PyTorchBackend.load(art, task_type="text-classification", threads=args.threads)
    # long enough that all --length positions are real tokens (the evaluator packs inputs)
    texts = [" ".join(["a thoroughly enjoyable film with a clever script and fine performances"] * 64)]
    batch = encode_latency_batch(backend, texts, None, 1, args.length)
    model = backend.model

    def bare() -> float:
        with torch.inference_mode():
            for _ in range(10):
                model(**batch)
            samples = []
            for _ in range(args.calls):
                t0 = time.perf_counter_ns()
                model(**batch)
                samples.append(time.perf_counter_ns() - t0)
        return statistics.median(samples) / 1e6

    def harness() -> float:
        t = run_interleaved([lambda: backend.run(batch)], warmup=10, min_runs=args.calls,
                            max_runs=args.calls, min_time_s=0.0, target_rel_ci=0.0)
        return statistics.median(t.samples[0]) / 1e6

    print(f"# {datetime.now(timezone.utc).isoformat(timespec='seconds')}; load average "
          f"{os.getloadavg()}; torch {torch.__version__}; {args.threads} threads; batch 1, "
          f"{args.length} tokens; {args.calls} calls per block; model {args.model}")
    rows = []
    for i in range(args.blocks):
        order = (bare, harness) if i % 2 == 0 else (harness, bare)
        result = {f.__name__: f() for f in order}
        rows.append(result)
        print(f"block {i + 1}: bare p50 {result['bare']:.3f} ms, harness p50 {result['harness']:.3f} ms")
    b = statistics.median(r["bare"] for r in rows)
    h = statistics.median(r["harness"] for r in rows)
    print(f"median over blocks: bare {b:.3f} ms, harness {h:.3f} ms, overhead {100 * (h / b - 1):+.2f}%")
    print(f"# load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
