"""Quantisation benchmark: a fine-tuned encoder in PyTorch fp32 against its int8 and bf16
versions, measured by the shared evaluator with every model timed in interleaved rounds.

    python benchmarks/quantization.py \
        --teacher runs/quickstart/artifacts/01-teacher \
        --student runs/quickstart/artifacts/02-student

Each strategy starts from the fine-tuned teacher (and, with ``--student``, the distilled
student gets ORT dynamic int8 as in the quick start). Models: PyTorch fp32 (reference),
ORT dynamic int8 after O2 graph fusion, ORT static int8 (min-max calibration on training
examples, LayerNorm/GELU/Softmax/Add left in float), PyTorch dynamic int8, bf16 (skipped with
the reason where the CPU lacks AMX / AVX-512 BF16). Accuracy on the mr-snippets test split
(seed 0, the split the quick start uses); latency at batch 1, 128 tokens, ``--threads``
threads, the runtimes taking ``--passes`` turns (samples pooled). Prints one table plus the
load average and the targets of issue #4.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", type=Path, required=True, help="fine-tuned PyTorch classifier folder")
    parser.add_argument("--student", type=Path, help="distilled student folder (adds student + student ORT int8)")
    parser.add_argument("--data", default="mr-snippets", help="registered data set (default mr-snippets)")
    parser.add_argument("--seed", type=int, default=0, help="split seed (the recipe's seed)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-quantization"), help="work folder")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--min-runs", type=int, default=100)
    parser.add_argument("--min-time-s", type=float, default=5.0)
    parser.add_argument("--calibration-samples", type=int, default=256)
    parser.add_argument("--passes", type=int, default=3,
                        help="turns the runtimes take (evaluation.latency_passes); pools samples")
    args = parser.parse_args(argv)

    from tabulate import tabulate

    from compressor.artifact import Artifact, Lineage
    from compressor.errors import CompressorError
    from compressor.evaluate import EvaluationSettings, evaluate_artifacts
    from compressor.plugins import get_plugins
    from compressor.recipe import DataConfig
    from compressor.sources.datasets import load_task_data
    from compressor.sources.packaged import cache_root
    from compressor.strategy import StageContext

    logging.basicConfig(level=logging.INFO, format="[bench] %(message)s")
    log = logging.getLogger("bench")
    plugins = get_plugins()
    data = load_task_data(
        DataConfig(name=args.data), datasets_registry=plugins.datasets, cache_dir=cache_root(),
        seed=args.seed, base_dir=Path.cwd(), task_type="text-classification",
    )
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)

    def copy_model(src: Path, name: str) -> Artifact:
        dst = args.out / name
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("lineage.json", "README.md"))
        art = Artifact(name=name, path=dst, lineage=Lineage(stage=name, extra={"source": str(src)}))
        art.save()
        return art

    artifacts: dict[str, Artifact] = {"teacher": copy_model(args.teacher, "teacher")}
    skipped: dict[str, str] = {}
    stage_times: dict[str, float] = {}

    def stage(name: str, strategy: str, parent: str, config: dict) -> None:
        cls = plugins.strategy(strategy)
        out = args.out / name
        out.mkdir()
        ctx = StageContext(
            stage_name=name, output_dir=out, work_dir=args.out / "work" / name, data=data,
            seed=args.seed, artifacts=dict(artifacts), logger=log, progress=False, plugins=plugins,
        )
        ctx.work_dir.mkdir(parents=True)
        t0 = time.perf_counter()
        try:
            artifacts[name] = cls().apply(artifacts[parent], cls.Config(**config), ctx)
        except CompressorError as exc:
            skipped[name] = str(exc).splitlines()[0]
            log.warning("%s skipped: %s", name, skipped[name])
        stage_times[name] = time.perf_counter() - t0

    stage("ort-int8", "quantize.ort-dynamic", "teacher", {"optimization": "O2"})
    stage("ort-static-int8", "quantize.ort-static", "teacher",
          {"calibration_samples": args.calibration_samples, "max_length": args.sequence_length})
    stage("torch-int8", "quantize.dynamic-int8", "teacher", {})
    stage("bf16", "quantize.half", "teacher", {})
    if args.student:
        artifacts["student"] = copy_model(args.student, "student")
        stage("student-ort-int8", "quantize.ort-dynamic", "student", {})

    settings = EvaluationSettings(
        batch_sizes=[1], sequence_length=args.sequence_length, threads=args.threads,
        warmup=20, min_runs=args.min_runs, max_runs=max(args.min_runs, 400),
        min_time_s=args.min_time_s, device="cpu", memory=False, flops=False,
        latency_passes=args.passes,
    )
    load_before = os.getloadavg()[0]
    records = evaluate_artifacts(list(artifacts.values()), data, settings, progress=False, backends=plugins.backends)
    load_after = os.getloadavg()[0]
    by_name = {r["model"]: r for r in records}
    ref = by_name["teacher"]

    def p50(r):
        return next(e for e in r["latency"] if e["batch_size"] == 1)["p50_ms"]

    rows = []
    for name, r in by_name.items():
        rows.append([
            name, r["strategy"] or "fine-tuned fp32", r["backend"],
            100 * r["accuracy"]["accuracy"],
            100 * (r["accuracy"]["accuracy"] - ref["accuracy"]["accuracy"]),
            r["size"]["disk_mb"], ref["size"]["disk_mb"] / r["size"]["disk_mb"],
            p50(r), p50(ref) / p50(r), stage_times.get(name),
        ])
    print()
    print(tabulate(rows, headers=["model", "strategy", "backend", "acc %", "Δ pts vs teacher",
                                  "disk MB", "smaller (x)", "p50 bs1 (ms)", "speedup (x)", "stage s"],
                   floatfmt=("", "", "", ".2f", "+.2f", ".1f", ".2f", ".2f", ".2f", ".0f"), tablefmt="github"))
    print(f"\nn test = {ref['accuracy']['n']}; threads {args.threads}; batch 1; {args.sequence_length} tokens; "
          f"interleaved rounds, {args.passes} passes over the runtimes, runs per model "
          f"{min(len_runs(r) for r in records)}+; "
          f"load average (1 min) {load_before:.2f} before, {load_after:.2f} after timing; "
          f"cpus available {len(os.sched_getaffinity(0))}; {time.strftime('%Y-%m-%d %H:%M %Z')}")
    for name, reason in skipped.items():
        print(f"skipped {name}: {reason}")
    static = artifacts.get("ort-static-int8")
    if static is not None:
        print(f"ort-static-int8 excluded operators (nodes left in float): {static.lineage.extra['excluded_operators']}")
    if "ort-int8" in by_name:
        r = by_name["ort-int8"]
        checks = [
            ("ORT dynamic int8 p50 speedup >= 2.5x", p50(ref) / p50(r) >= 2.5),
            ("ORT dynamic int8 accuracy within 0.5 pts", abs(r["accuracy"]["accuracy"] - ref["accuracy"]["accuracy"]) <= 0.005),
            ("ORT dynamic int8 >= 3.5x smaller on disk", ref["size"]["disk_mb"] / r["size"]["disk_mb"] >= 3.5),
        ]
        if "ort-static-int8" in by_name:
            s = by_name["ort-static-int8"]
            checks.append(("ORT static int8 accuracy within 1 pt",
                           abs(s["accuracy"]["accuracy"] - ref["accuracy"]["accuracy"]) <= 0.01))
        if "student-ort-int8" in by_name:
            checks.append(("student ORT int8 >= 3.5x faster than teacher fp32", p50(ref) / p50(by_name["student-ort-int8"]) >= 3.5))
        for label, ok in checks:
            print(f"{'MET ' if ok else 'MISS'} {label}")
    return 0


def len_runs(record) -> int:
    return min(e["runs"] for e in record["latency"])


if __name__ == "__main__":
    sys.exit(main())
