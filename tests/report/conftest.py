"""Hand-made result dicts shaped like compressor.evaluate.evaluate_artifact's output."""

from __future__ import annotations

from typing import Any

import pytest


def result(name: str, *, strategy=None, reference=None, acc=0.9, f1=0.88, n=1000,
           params=20_000_000, disk_bytes=80_000_000, p50=(10.0, 200.0), task_metric="f1",
           sha="abc", load=0.5) -> dict[str, Any]:
    latency = []
    for bs, p in zip((1, 32), p50):
        latency.append({"batch_size": bs, "sequence_length": 128, "p50_ms": p, "p90_ms": p * 1.1,
                        "p99_ms": p * 1.2, "mean_ms": p * 1.05,
                        "throughput_seq_per_s": bs / (p / 1e3), "runs": 40})
    return {
        "model": name, "stage": name, "strategy": strategy, "parent": reference,
        "reference": reference, "format": "pytorch", "backend": "pytorch", "device": "cpu",
        "threads": 2, "sequence_length": 128, "task": "mr-snippets",
        "accuracy": {"split": "test", "n": n, "accuracy": acc, task_metric: f1,
                     "task_metric": task_metric},
        "size": {"params": params, "disk_bytes": disk_bytes, "disk_mb": disk_bytes / 1e6},
        "latency": latency,
        "latency_inputs": {"split": "test", "n_texts": 32, "sha256": sha},
        "warmup": 10,
        "machine": {"cpu_model": "Test CPU", "machine": "x86_64", "cpus_available": 2,
                    "load_avg_1m": load},
        "evaluated_at": "2025-01-01T00:00:00+00:00", "load_time_s": 0.5,
    }


@pytest.fixture
def results() -> list[dict[str, Any]]:
    return [
        result("baseline"),
        result("student", strategy="distill.distilbert", reference="baseline", acc=0.87,
               f1=0.85, params=11_000_000, disk_bytes=44_000_000, p50=(5.0, 100.0)),
        result("int8", strategy="quantize.dynamic-int8", reference="student", acc=0.8725,
               f1=0.86, params=11_000_000, disk_bytes=20_000_000, p50=(2.5, 40.0)),
        result("orphan", strategy="prune.heads", reference="missing", acc=0.5),
    ]


@pytest.fixture
def make_result():
    return result
