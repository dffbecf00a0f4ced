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


def test_pytorch_variants_are_interleaved_with_their_fp32_parent():
    """dynamic int8 and half-precision models run on the same OpenMP pool as fp32 PyTorch:
    one group, timed interleaved; each ONNX Runtime session is timed on its own."""
    from compressor.evaluate.backends import OnnxRuntimeBackend, PyTorchBackend
    from compressor.evaluate.latency import runtime_groups
    from compressor_quantization.backends import DynamicInt8Backend, HalfBackend

    backends = [PyTorchBackend, OnnxRuntimeBackend, DynamicInt8Backend, HalfBackend, OnnxRuntimeBackend]
    assert runtime_groups(backends) == [[0, 2, 3], [1], [4]]


def test_models_with_their_own_thread_pool_are_timed_alone():
    from types import SimpleNamespace

    from compressor.evaluate.backends import OnnxRuntimeBackend
    from compressor.evaluate.latency import runtime_groups

    ort = SimpleNamespace(runtime="onnxruntime", shared_thread_pool=OnnxRuntimeBackend.shared_thread_pool)
    torch_a, torch_b = SimpleNamespace(runtime="torch"), SimpleNamespace(runtime="torch")
    assert runtime_groups([torch_a, ort, torch_b, ort]) == [[0, 2], [1], [3]]


class _FakeBackend:
    """Just enough of a Backend for measure_latency_interleaved: records its calls."""

    def __init__(self, name: str, log: list[str], shared: bool = True) -> None:
        self.name, self.log, self.shared_thread_pool = name, log, shared

    def max_positions(self):
        return None

    def encode(self, texts, pairs, *, padding, max_length):
        import numpy as np

        return {"input_ids": np.zeros((len(texts), max_length), dtype=np.int64)}

    def run(self, batch):
        self.log.append(self.name)


def test_latency_passes_alternate_runtimes_and_pool_samples():
    from compressor.evaluate import EvaluationSettings
    from compressor.evaluate.latency import measure_latency_interleaved

    log: list[str] = []
    backends = [_FakeBackend("torch", log), _FakeBackend("ort", log, shared=False)]
    settings = EvaluationSettings(batch_sizes=[1], sequence_length=8, warmup=1, min_runs=6,
                                  max_runs=6, min_time_s=0.0, target_rel_ci=0.0, latency_passes=3)
    out = measure_latency_interleaved(backends, ["a text"], None, settings, progress=False)
    # three passes; in each, torch's warm-up + 2 timed calls, then ort's
    assert log == (["torch"] * 3 + ["ort"] * 3) * 3
    assert [cell["runs"] for per_model in out for cell in per_model] == [6, 6]
    assert out[0][0]["passes"] == 3 and out[0][0]["stop_reason"] == "min_runs"

    log.clear()  # a single runtime group needs no passes: one interleaved block
    one = measure_latency_interleaved(backends[:1], ["a text"], None, settings, progress=False)
    assert log == ["torch"] * 7 and one[0][0]["passes"] == 1
