"""Interleaved latency: several models timed in the same rounds."""

from __future__ import annotations

import time

from compressor.evaluate import evaluate_artifacts
from compressor.evaluate.latency import time_interleaved


def test_rounds_alternate_order_and_every_callable_gets_its_runs():
    calls: list[str] = []

    def make(name: str, sleep_s: float):
        def fn():
            calls.append(name)
            time.sleep(sleep_s)

        return fn

    samples = time_interleaved(
        [make("a", 0.0), make("b", 0.002)], warmup=2, min_runs=5, max_runs=50, min_time_s=0.0
    )
    assert calls[:4] == ["a", "a", "b", "b"]  # warm-up of each, untimed
    assert calls[4:10] == ["a", "b", "b", "a", "a", "b"]  # forward, reversed, forward...
    assert [len(s) for s in samples] == [5, 5]
    assert min(samples[1]) >= 2_000_000  # the 2 ms sleep is inside the timed call


def test_min_time_is_reached_by_every_callable_or_max_runs():
    samples = time_interleaved(
        [lambda: None, lambda: time.sleep(0.001)], warmup=0, min_runs=1, max_runs=1000, min_time_s=0.02
    )
    assert sum(samples[1]) >= 20_000_000
    assert len(samples[0]) == len(samples[1])  # one call of each per round
    capped = time_interleaved([lambda: None], warmup=0, min_runs=1, max_runs=7, min_time_s=10.0)
    assert len(capped[0]) == 7


def test_evaluate_artifacts_times_models_together(make_artifact, task_data, fast_settings):
    small = make_artifact("small", hidden=32, layers=1)
    large = make_artifact("large", hidden=128, layers=4, heads=4, intermediate=256, seed=1)
    records = evaluate_artifacts([small, large], task_data, fast_settings, progress=False)
    assert [r["model"] for r in records] == ["small", "large"]
    assert records[0]["latency_interleaved_with"] == ["large"]
    assert records[1]["latency_interleaved_with"] == ["small"]
    runs = [[x["runs"] for x in r["latency"]] for r in records]
    assert runs[0] == runs[1]  # same number of rounds for both
    assert records[0]["latency_inputs"] == records[1]["latency_inputs"]
    assert records[0]["size"]["params"] < records[1]["size"]["params"]


def test_runtimes_are_grouped_for_timing():
    from types import SimpleNamespace

    from compressor.evaluate.latency import runtime_groups

    backends = [SimpleNamespace(name=n) for n in ("pytorch", "onnxruntime", "pytorch", "pytorch-half")]
    assert runtime_groups(backends) == [[0, 2], [1], [3]]


def test_models_with_their_own_thread_pool_are_timed_alone():
    from types import SimpleNamespace

    from compressor.evaluate.backends import OnnxRuntimeBackend
    from compressor.evaluate.latency import runtime_groups

    ort = SimpleNamespace(name="onnxruntime", shared_thread_pool=OnnxRuntimeBackend.shared_thread_pool)
    torch_a, torch_b = SimpleNamespace(name="pytorch"), SimpleNamespace(name="pytorch")
    assert runtime_groups([torch_a, ort, torch_b, ort]) == [[0, 2], [1], [3]]
