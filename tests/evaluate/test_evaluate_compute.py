"""FLOPs (PyTorch and ONNX agree with the analytic count), precision, peak calibration, and
the evaluator's full record: intervals, paired differences, predictions, memory, matrix."""

from __future__ import annotations

import json

import numpy as np
import pytest

from compressor.artifact import Lineage
from compressor.evaluate import evaluate_artifacts
from compressor.evaluate.compute import (
    cached_peaks,
    model_precision,
    onnx_flops,
    pytorch_flops,
)


def bert_flops(*, layers, hidden, intermediate, length, num_labels=2):
    """Matrix products of a BERT classifier at batch 1: Q, K, V, O projections, scores and
    context, the two FFN layers, pooler and classifier (2 FLOPs per multiply-add)."""
    per_layer = 2 * length * hidden * hidden * 4 + 2 * length * length * hidden * 2
    per_layer += 2 * length * hidden * intermediate * 2
    return layers * per_layer + 2 * hidden * hidden + 2 * hidden * num_labels


def test_pytorch_and_onnx_flops_match_the_analytic_count(make_artifact, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification

    from compressor.onnx_export import export_onnx

    art = make_artifact(hidden=32, layers=2, intermediate=37)
    model = AutoModelForSequenceClassification.from_pretrained(art.path).eval()
    for length in (8, 24):
        batch = {"input_ids": torch.ones(1, length, dtype=torch.long),
                 "attention_mask": torch.ones(1, length, dtype=torch.long)}
        expected = bert_flops(layers=2, hidden=32, intermediate=37, length=length)
        assert pytorch_flops(model, batch) == expected
    out = tmp_path / "onnx"
    onnx_file = export_onnx(art.path, out, task_type="text-classification").onnx_file
    assert onnx_flops(onnx_file, batch_size=1, sequence_length=24) == bert_flops(
        layers=2, hidden=32, intermediate=37, length=24)


def test_precision_of_pytorch_models(make_artifact):
    import torch

    from compressor.evaluate.backends import PyTorchBackend

    backend = PyTorchBackend.load(make_artifact(), task_type="text-classification", threads=1)
    assert model_precision(backend) == "fp32"
    backend.model.to(torch.bfloat16)
    assert model_precision(backend) == "bf16"
    backend.model = torch.ao.quantization.quantize_dynamic(
        backend.model.float(), {torch.nn.Linear}, dtype=torch.qint8)
    assert model_precision(backend) == "int8"


def test_peak_calibration_is_cached(tmp_path):
    first = cached_peaks(["fp32", "int8"], threads=1, device="cpu", cache_dir=tmp_path,
                         min_run_time_s=0.05)
    assert first["fp32"]["gflops"] > 0.1 and first["int8"]["gflops"] > 0.1
    assert not first["fp32"]["cached"]
    again = cached_peaks(["fp32"], threads=1, device="cpu", cache_dir=tmp_path)
    assert again["fp32"]["cached"] and again["fp32"]["gflops"] == first["fp32"]["gflops"]
    assert len(json.loads((tmp_path / "calibration.json").read_text())) == 2


def test_full_record(make_artifact, make_data, fast_settings, tmp_path):
    data = make_data(80)
    teacher = make_artifact("teacher", layers=2, seed=0)
    student = make_artifact("student", layers=1, seed=1, lineage=Lineage(
        stage="student", strategy="distill.distilbert", parent="teacher", reference="teacher"))
    settings = fast_settings.model_copy(update={
        "sequence_lengths": [8, 16], "calibration_s": 0.05, "device": "auto"})
    records = evaluate_artifacts([teacher, student], data, settings, progress=False,
                                 output_dir=tmp_path)
    assert json.loads(json.dumps(records)) == records
    t, s = records
    assert t["device"] == s["device"] == "cpu" and t["precision"] == "fp32"
    # accuracy: bootstrap interval around the value; paired difference from the teacher
    for r in records:
        lo, hi = r["accuracy"]["ci"]["accuracy"]
        assert lo <= r["accuracy"]["accuracy"] <= hi
    assert t["accuracy"]["vs_reference"] is None
    d = s["accuracy"]["vs_reference"]["accuracy"]
    assert s["accuracy"]["vs_reference"]["reference"] == "teacher"
    assert d["value"] == pytest.approx(s["accuracy"]["accuracy"] - t["accuracy"]["accuracy"])
    assert d["low"] <= d["value"] <= d["high"]
    # predictions on disk reproduce the accuracy
    saved = np.load(tmp_path / s["accuracy"]["predictions_file"])
    labels, preds = saved["label"], saved["prediction"]
    assert (labels == preds).mean() == pytest.approx(s["accuracy"]["accuracy"])
    # the matrix: 2 batch sizes x 2 lengths, FLOPs per length, GFLOP/s beside the peak
    assert [(e["batch_size"], e["sequence_length"]) for e in s["latency"]] == [
        (1, 8), (1, 16), (4, 8), (4, 16)]
    flops = t["compute"]["flops_per_sequence"]
    assert flops["8"] == bert_flops(layers=2, hidden=32, intermediate=37, length=8)
    assert s["compute"]["flops_per_sequence"]["16"] < flops["16"]
    e = t["latency"][3]
    assert e["gflops"] == pytest.approx(flops["16"] * 4 / (e["p50_ms"] / 1e3) / 1e9)
    assert e["peak_fraction"] == pytest.approx(e["gflops"] / t["compute"]["peak_gflops"])
    assert (tmp_path / "calibration.json").exists()
    assert t["memory"]["device"] == "cpu" and t["memory"]["peak_rss_mb"] >= 0
    assert (t["memory"]["batch_size"], t["memory"]["sequence_length"]) == (4, 16)
    assert e["stop_reason"] in {"stable", "max_runs", "max_time"} and e["timer"] == "perf_counter_ns"


def test_a_static_qdq_graph_reads_as_int8(tmp_path):
    """ONNX Runtime runs QuantizeLinear -> DequantizeLinear -> MatMul groups as int8
    kernels: such a graph is int8, so its GOP/s is compared with the int8 peak."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from compressor.evaluate.compute import onnx_precision

    def graph(qdq: bool) -> onnx.ModelProto:
        w = numpy_helper.from_array(np.ones((4, 4), dtype=np.float32), "w")
        nodes, inits, src = [], [w], "x"
        if qdq:
            inits += [numpy_helper.from_array(np.array(0.1, dtype=np.float32), "s"),
                      numpy_helper.from_array(np.array(0, dtype=np.uint8), "z")]
            nodes += [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
                      helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"])]
            src = "xd"
        nodes.append(helper.make_node("MatMul", [src, "w"], ["y"]))
        g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], inits)
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])

    for qdq, expected in ((False, "fp32"), (True, "int8")):
        path = tmp_path / f"qdq-{qdq}.onnx"
        onnx.save(graph(qdq), str(path))
        assert onnx_precision(path) == expected
