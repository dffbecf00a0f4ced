"""Adaptive stopping, timers (CUDA faked), memory probes, devices without a GPU."""

from __future__ import annotations

import itertools
import types

import pytest

from compressor.evaluate.latency import (
    CudaEventTimer,
    WallTimer,
    p50_rel_halfwidth,
    run_interleaved,
    summarize,
    timer_for,
)
from compressor.evaluate.memory import CpuMemoryProbe, CudaMemoryProbe, probe_for


class ScriptedTimer:
    """Returns the next scripted time (ns) for each call, and counts synchronisations."""

    name = "scripted"

    def __init__(self, times):
        self.times = iter(times)
        self.syncs = 0

    def time(self, fn):
        fn()
        return next(self.times)

    def synchronize(self):
        self.syncs += 1


def test_stops_when_p50_is_stable():
    steady = ScriptedTimer(itertools.repeat(1_000_000))
    noisy = ScriptedTimer(itertools.cycle([1_000_000, 3_000_000]))
    t = run_interleaved([lambda: None], warmup=3, min_runs=10, max_runs=500, min_time_s=0,
                        target_rel_ci=0.02, timers=[steady])
    assert (t.stop_reason, t.rounds) == ("stable", 10) and steady.syncs == 1
    # 50% spread never gets within 2%: stops at max_runs
    t = run_interleaved([lambda: None], warmup=0, min_runs=10, max_runs=60, min_time_s=0,
                        target_rel_ci=0.02, timers=[noisy])
    assert (t.stop_reason, t.rounds) == ("max_runs", 60)


def test_stops_at_max_time_and_waits_for_the_slowest_model():
    slow = ScriptedTimer(itertools.repeat(100_000_000))  # 0.1 s per call
    t = run_interleaved([lambda: None], warmup=0, min_runs=1, max_runs=1000, min_time_s=0,
                        max_time_s=0.5, target_rel_ci=0.0001, timers=[slow])
    assert (t.stop_reason, t.rounds) == ("max_time", 5)
    # a model that stabilises late keeps every model running (one call each per round)
    steady = ScriptedTimer(itertools.repeat(1_000_000))
    late = ScriptedTimer(itertools.chain([5_000_000, 1_000] * 10, itertools.repeat(2_000_000)))
    t = run_interleaved([lambda: None, lambda: None], warmup=0, min_runs=5, max_runs=1000,
                        min_time_s=0, target_rel_ci=0.05, timers=[steady, late])
    assert t.stop_reason == "stable" and t.rounds > 20
    assert len(t.samples[0]) == len(t.samples[1]) == t.rounds


def test_rel_halfwidth_and_summary_intervals():
    assert p50_rel_halfwidth([1] * 5) == float("inf")
    assert p50_rel_halfwidth([100] * 50) == 0.0
    s = summarize([i * 1_000_000 for i in range(1, 101)], batch_size=4, sequence_length=32)
    assert s["p50_ci_ms"] == [40.0, 61.0]  # order statistics 40 and 61 of 100
    assert s["p50_ci_ms"][0] < s["p50_ms"] < s["p50_ci_ms"][1]
    assert s["mean_ci_ms"][0] < 50.5 < s["mean_ci_ms"][1]
    assert s["throughput_ci"] == pytest.approx([4 / 0.061, 4 / 0.040])


class FakeEvent:
    clock = 0.0

    def __init__(self, enable_timing=False):
        assert enable_timing
        self.t = None

    def record(self):
        FakeEvent.clock += 1.5  # each record happens 1.5 ms after the previous one
        self.t = FakeEvent.clock

    def synchronize(self):
        self.synced = True

    def elapsed_time(self, end):
        return end.t - self.t


def fake_cuda():
    calls = []
    return types.SimpleNamespace(
        Event=FakeEvent,
        synchronize=lambda: calls.append("sync"),
        calls=calls,
    )


def test_cuda_event_timer_with_cuda_faked():
    cuda = fake_cuda()
    timer = CudaEventTimer(cuda)
    ran = []
    assert timer.time(lambda: ran.append(1)) == 1_500_000 and ran == [1]
    timer.synchronize()
    assert cuda.calls == ["sync"]


def test_timer_decisions_without_a_gpu():
    cuda = fake_cuda()
    assert isinstance(timer_for("torch", "cpu"), WallTimer)
    assert isinstance(timer_for("onnxruntime", "cpu"), WallTimer)
    assert isinstance(timer_for("torch", "cuda", cuda=cuda), CudaEventTimer)
    ort = timer_for("onnxruntime", "cuda", cuda=cuda)  # ORT copies outputs back: wall + sync
    assert isinstance(ort, WallTimer)
    ort.time(lambda: None)
    assert cuda.calls == ["sync"]


def test_cuda_memory_probe_with_cuda_faked():
    state = {"allocated": 100, "peak": 100}

    def alloc(n):
        state["allocated"] += n
        state["peak"] = max(state["peak"], state["allocated"])

    cuda = types.SimpleNamespace(
        synchronize=lambda: None, empty_cache=lambda: None,
        memory_allocated=lambda: state["allocated"], max_memory_allocated=lambda: state["peak"],
        reset_peak_memory_stats=lambda: state.update(peak=state["allocated"]),
    )
    probe = CudaMemoryProbe(cuda)
    probe.before_load()
    alloc(40_000_000)  # weights
    probe.after_load()

    def call():
        alloc(25_000_000)  # activations, freed after the call
        alloc(-25_000_000)

    res = probe.inference(call)
    assert res["load_mb"] == pytest.approx(40.0) and res["inference_peak_mb"] == pytest.approx(25.0)
    assert res["peak_gpu_mb"] == pytest.approx(65.0)
    assert CudaMemoryProbe(cuda, tracked=False).inference(call)["peak_gpu_mb"] is None
    assert isinstance(probe_for("cuda", "onnxruntime", cuda=cuda), CudaMemoryProbe)
    assert isinstance(probe_for("cpu", "torch"), CpuMemoryProbe)
    assert probe_for("cuda", "torch", cuda=cuda).tracked and not probe_for("cuda", "onnxruntime", cuda=cuda).tracked


def test_cpu_memory_probe_sees_an_allocation():
    import numpy as np

    probe = CpuMemoryProbe()
    probe.before_load()
    weights = np.ones(30_000_000 // 8)  # 30 MB, touched
    probe.after_load()

    def call():
        tmp = np.ones(60_000_000 // 8)  # 60 MB, freed when the call ends
        return float(tmp.sum())

    res = probe.inference(call)
    assert 25 < res["load_rss_mb"] < 40
    assert 50 < res["inference_peak_mb"] < 75, res
    assert res["peak_rss_mb"] == pytest.approx(res["load_rss_mb"] + res["inference_peak_mb"])
    del weights


def test_evaluation_devices_without_a_gpu(make_artifact):
    from compressor.errors import CompressorError
    from compressor.evaluate.backends import PyTorchBackend, evaluation_devices

    art = make_artifact()
    assert evaluation_devices("auto", PyTorchBackend, art, cuda_available=False) == ["cpu"]
    assert evaluation_devices("auto", PyTorchBackend, art, cuda_available=True) == ["cpu", "cuda"]
    with pytest.raises(CompressorError, match="cuda"):
        evaluation_devices("cuda", PyTorchBackend, art, cuda_available=False)
