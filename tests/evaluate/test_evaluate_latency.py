import json
import time

import pytest
import torch

from compressor.errors import CompressorError
from compressor.evaluate import EvaluationSettings, evaluate_artifact
from compressor.evaluate.latency import (
    default_threads,
    latency_texts,
    summarize,
    texts_fingerprint,
    time_calls,
)


def test_latency_texts_are_the_first_texts_repeated(make_data):
    import datasets

    ds = datasets.Dataset.from_dict({"text": ["a", "b", "c"], "label": [0, 1, 0]})
    assert latency_texts(ds, 7) == (["a", "b", "c", "a", "b", "c", "a"], None)
    assert latency_texts(ds, 2) == (["a", "b"], None)
    pairs = datasets.Dataset.from_dict(
        {"text": ["a", "b"], "text_pair": ["x", "y"], "label": [0, 1]}
    )
    assert latency_texts(pairs, 3) == (["a", "b", "a"], ["x", "y", "x"])
    data = make_data(50)
    assert latency_texts(data.split("test"), 32) == latency_texts(data.split("test"), 32)
    assert latency_texts(data.split("test"), 32)[0] == data.split("test")["text"][:32]


def test_packed_latency_texts_join_consecutive_texts_to_min_words():
    import datasets

    rows = [" ".join(f"w{i}" for _ in range(k)) for i, k in enumerate([3, 1, 4, 2, 5])]
    ds = datasets.Dataset.from_dict({"text": rows, "label": [0] * 5})
    texts, pairs = latency_texts(ds, 3, min_words=6)
    assert pairs is None
    # 3+1+4 = 8 words, then 2+5 = 7, then the split cycles: 3+1+4 again
    assert texts == [" ".join(rows[0:3]), " ".join(rows[3:5]), " ".join(rows[0:3])]
    assert all(len(t.split()) >= 6 for t in texts)
    assert latency_texts(ds, 3, min_words=6) == (texts, None)  # deterministic
    pairs_ds = datasets.Dataset.from_dict({"text": rows, "text_pair": rows[::-1], "label": [0] * 5})
    texts, pairs = latency_texts(pairs_ds, 2, min_words=5)
    assert [len(t.split()) >= 5 for t in texts + pairs] == [True] * 4
    assert pairs[:2] == [rows[4], " ".join(rows[3:1:-1])]  # 5 words; 2 + 4 words
    with pytest.raises(CompressorError, match="no words"):
        latency_texts(datasets.Dataset.from_dict({"text": ["", " "], "label": [0, 1]}), 2, min_words=4)


def test_packed_inputs_are_all_real_tokens_and_padded_ones_are_not(make_artifact, task_data):
    from compressor.evaluate.backends import PyTorchBackend
    from compressor.evaluate.latency import encode_latency_batch, real_token_fraction

    backend = PyTorchBackend.load(make_artifact(), task_type="text-classification", threads=1)
    split = task_data.split("test")
    packed = encode_latency_batch(backend, *latency_texts(split, 4, min_words=64), 4, 64)
    padded = encode_latency_batch(backend, *latency_texts(split, 4), 4, 64)
    assert real_token_fraction(packed) == 1.0
    expected = float(padded["attention_mask"].sum()) / (4 * 64)
    assert real_token_fraction(padded) == pytest.approx(expected) and expected < 0.9
    assert real_token_fraction({"input_ids": padded["input_ids"]}) is None


def test_latency_texts_empty_split_is_an_error():
    import datasets

    with pytest.raises(CompressorError):
        latency_texts(datasets.Dataset.from_dict({"text": [], "label": []}), 4)


def test_summarize_known_samples():
    s = summarize([i * 1_000_000 for i in range(1, 101)], batch_size=8, sequence_length=64)
    assert s["p50_ms"] == pytest.approx(50.5)
    assert s["p90_ms"] == pytest.approx(90.1)
    assert s["p99_ms"] == pytest.approx(99.01)
    assert s["mean_ms"] == pytest.approx(50.5)
    assert s["throughput_seq_per_s"] == pytest.approx(8 / 0.0505)
    assert s["runs"] == 100 and s["batch_size"] == 8 and s["sequence_length"] == 64


def test_time_calls_stops_on_min_runs_and_min_time():
    calls = []
    samples = time_calls(lambda: calls.append(1), warmup=4, min_runs=7, max_runs=1000,
                         min_time_s=0.0)
    assert len(samples) == 7 and len(calls) == 11
    samples = time_calls(lambda: time.sleep(0.002), warmup=0, min_runs=2, max_runs=1000,
                         min_time_s=0.05)
    assert sum(samples) >= 0.05e9 and 2 <= len(samples) < 40
    samples = time_calls(lambda: time.sleep(0.001), warmup=0, min_runs=2, max_runs=5,
                         min_time_s=10.0)
    assert len(samples) == 5  # max_runs caps


def test_latency_results_and_identical_inputs(make_artifact, task_data, fast_settings, words):
    settings = fast_settings.model_copy(update={"min_runs": 5, "max_runs": 8})
    # a second model with a different vocabulary (hence tokenizer) still gets the same texts
    a = make_artifact("a")
    b = make_artifact("b", words=words[::-1][:300], layers=1)
    res_a = evaluate_artifact(a, task_data, settings, progress=False)
    res_b = evaluate_artifact(b, task_data, settings, progress=False)
    for res in (res_a, res_b):
        assert [e["batch_size"] for e in res["latency"]] == [1, 4]
        for e in res["latency"]:
            assert 0 < e["p50_ms"] <= e["p90_ms"] <= e["p99_ms"]
            assert 5 <= e["runs"] <= 8
            assert e["sequence_length"] == 16
            assert e["throughput_seq_per_s"] == pytest.approx(e["batch_size"] / (e["p50_ms"] / 1e3))
    texts, pairs = latency_texts(task_data.split("test"), 4, min_words=16)
    for res in (res_a, res_b):
        assert res["latency_inputs"] == {
            "split": "test", "n_texts": 4, "sha256": texts_fingerprint(texts, pairs),
            "mode": "packed", "real_token_fraction": {"16": 1.0},
        }


def test_latency_batch_has_exact_length(make_artifact, words):
    from compressor.evaluate.backends import PyTorchBackend

    backend = PyTorchBackend.load(make_artifact(), task_type="text-classification", threads=1)
    short_and_long = ["baba", " ".join(words[:300])]
    batch = backend.encode(short_and_long, padding="max_length", max_length=128)
    assert tuple(batch["input_ids"].shape) == (2, 128)
    assert batch["attention_mask"][0].sum() < 128 == batch["attention_mask"][1].sum()


def test_small_model_is_faster_than_large(make_artifact, task_data):
    settings = EvaluationSettings(batch_sizes=[1], sequence_length=128, threads=1, warmup=2,
                                  min_runs=7, max_runs=15, min_time_s=0.0, latency=True,
                                  max_eval_samples=8, calibration_s=0.0)
    small = make_artifact("small", hidden=32, layers=1)
    large = make_artifact("large", hidden=256, layers=8, heads=4, intermediate=1024)
    # ~50x fewer FLOPs. The machine may be shared: interleave two rounds, keep each best p50.
    p50 = {"small": [], "large": []}
    for _ in range(2):
        for art in (small, large):
            res = evaluate_artifact(art, task_data, settings, progress=False)
            p50[art.name].append(res["latency"][0]["p50_ms"])
    assert 2 * min(p50["small"]) < min(p50["large"]), p50


def test_threads_recorded_and_restored(make_artifact, task_data, fast_settings):
    art = make_artifact()
    before = torch.get_num_threads()
    res = evaluate_artifact(art, task_data, fast_settings.model_copy(update={"threads": 1}),
                            progress=False)
    assert res["threads"] == 1 and torch.get_num_threads() == before
    res = evaluate_artifact(art, task_data, fast_settings.model_copy(update={"threads": None}),
                            progress=False)
    assert res["threads"] == default_threads() and torch.get_num_threads() == before


def test_sequence_length_over_model_limit(make_artifact, task_data, fast_settings):
    art = make_artifact(max_positions=64)
    with pytest.raises(CompressorError, match="64") as info:
        evaluate_artifact(art, task_data, fast_settings.model_copy(update={"sequence_length": 100}),
                          progress=False)
    assert info.value.key == "evaluation.sequence_length"
    assert torch.get_num_threads() >= 1


def test_result_layout(make_artifact, task_data, fast_settings):
    from compressor.artifact import Lineage

    art = make_artifact("student", lineage=Lineage(stage="student", strategy="distill.distilbert",
                                                   parent="teacher", reference="teacher"))
    res = evaluate_artifact(art, task_data, fast_settings, progress=True)
    assert json.loads(json.dumps(res)) == res
    assert {k: res[k] for k in ("model", "stage", "strategy", "parent", "reference", "format",
                                "backend", "device", "sequence_length")} == {
        "model": "student", "stage": "student", "strategy": "distill.distilbert",
        "parent": "teacher", "reference": "teacher", "format": "pytorch", "backend": "pytorch",
        "device": "cpu", "sequence_length": 16,
    }
    assert res["load_time_s"] > 0 and res["evaluated_at"].endswith("+00:00")
    assert set(res["size"]) == {"params", "disk_bytes", "disk_mb", "structure", "sparsity"}
    assert res["size"]["structure"]["layers"] >= 1 and res["size"]["sparsity"] == 0.0  # dense


def test_latency_off(make_artifact, task_data, fast_settings):
    res = evaluate_artifact(make_artifact(), task_data,
                            fast_settings.model_copy(update={"latency": False}), progress=False)
    assert res["latency"] == [] and res["latency_inputs"] is None
