"""Every quantisation strategy on a tiny BERT: the artifact reloads and the evaluator
measures it through the backend its plugin registered."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from compressor.artifact import Artifact
from compressor.errors import StageError
from compressor.evaluate import EvaluationSettings, evaluate_artifacts
from compressor.evaluate.backends import backend_for
from compressor.plugins import Plugins


from compressor_quantization import hardware  # noqa: E402
from compressor_quantization import plugin as qplugin  # noqa: E402

SETTINGS = EvaluationSettings(
    batch_sizes=[1], sequence_length=16, threads=1, warmup=1, min_runs=2, max_runs=4,
    min_time_s=0.0, accuracy_batch_size=32,
)


@pytest.fixture(scope="module")
def registry():
    """Backends registered by the quantisation plugin, loaded like any plugin."""
    plugins = Plugins().load(entry_points_enabled=False, extra=[("quantization", qplugin)])
    return plugins.backends


@pytest.fixture
def baseline(finetuned_teacher):
    return finetuned_teacher


def _fp32_logits(path: Path, texts: list[str]):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    with torch.inference_mode():
        return model(**tok(texts, padding=True, return_tensors="pt")).logits.numpy()


def _backend_logits(artifact, registry, texts):
    backend = backend_for(artifact, registry).load(artifact, task_type="text-classification", threads=1)
    try:
        return backend.predict_logits(backend.encode(texts, padding=True, max_length=64)), backend
    finally:
        backend.close()


def test_registry_lists_plugin_formats(registry):
    assert set(registry) == {"pytorch", "onnx", "pytorch-dynamic-int8", "pytorch-half"}  # core + plugin


def test_dynamic_int8_reloads_and_is_measured(baseline, make_context, task_data, registry, monkeypatch):
    ctx = make_context("int8")
    art = qplugin.DynamicInt8().apply(baseline, qplugin.DynamicInt8Config(), ctx)
    assert art.format == "pytorch-dynamic-int8"
    assert art.lineage.extra["quantized_modules"] == 4 * 6 + 2  # q,k,v,o,ffn1,ffn2 per layer + pooler + classifier
    texts = task_data.split("test")["text"][:32]
    got, backend = _backend_logits(art, registry, texts)
    assert backend.name == "pytorch-dynamic-int8"
    ref = _fp32_logits(baseline.path, texts)
    assert np.abs(got - ref).max() < 0.1 * np.abs(ref).max()  # int8 weights: close, not equal
    assert not np.array_equal(got, ref)
    assert (got.argmax(-1) == ref.argmax(-1)).mean() >= 0.9
    # the evaluator measures it next to its fp32 parent (interleaved timing)
    fp32, int8 = evaluate_artifacts([baseline, art], task_data, SETTINGS, progress=False, backends=registry)
    assert int8["backend"] == "pytorch-dynamic-int8" and int8["latency"][0]["runs"] >= 2
    assert abs(int8["accuracy"]["accuracy"] - fp32["accuracy"]["accuracy"]) <= 0.05
    assert int8["size"]["params"] == fp32["size"]["params"]  # same elements, int8 storage
    assert int8["size"]["disk_bytes"] < fp32["size"]["disk_bytes"]


def test_ort_dynamic_from_pytorch_uses_fused_int8_graph(baseline, make_context, task_data, monkeypatch):
    monkeypatch.setattr("compressor_quantization.ort.cpu_flags", lambda: frozenset({"avx2", "fma"}))
    monkeypatch.setattr("compressor_quantization.ort.machine", lambda: "x86_64")
    ctx = make_context("ort-dyn")
    art = qplugin.OrtDynamic().apply(baseline, qplugin.OrtDynamicConfig(), ctx)
    extra = art.lineage.extra
    assert art.format == "onnx" and extra["preset"] == "avx2" and extra["preset_chosen_by"].startswith("cpu flags")
    assert extra["optimization"] == "O2" and extra["mode"] == "dynamic"
    # AVX2: s8 per-channel weights in 7 bits, as ONNX Runtime's docs advise (issue 25)
    assert (extra["weight_type"], extra["per_channel"], extra["reduce_range"]) == ("QInt8", True, True)
    assert extra["int8_settings"]["chosen_by"] == "auto (cpu flags avx2 on x86_64)"
    assert extra["saturation_check"]["ran"] and extra["saturation_check"]["reduce_range_deviation"] is None
    assert extra["int8_nodes"].get("QAttention") == 4 and extra["int8_nodes"].get("MatMulInteger", 0) > 0
    texts = task_data.split("test")["text"][:32]
    got, _ = _backend_logits(art, {}, texts)
    ref = _fp32_logits(baseline.path, texts)
    assert (got.argmax(-1) == ref.argmax(-1)).mean() >= 0.9
    (res,) = evaluate_artifacts([art], task_data, SETTINGS, progress=False)
    assert res["backend"] == "onnxruntime" and res["accuracy"]["n"] == len(task_data.split("test"))


def test_ort_dynamic_preset_from_recipe_and_onnx_input_rules(baseline, make_context, monkeypatch):
    from compressor_export.plugin import ExportOnnx, ExportOnnxConfig

    monkeypatch.setattr("compressor_quantization.ort.cpu_flags", lambda: frozenset())
    onnx_art = ExportOnnx().apply(baseline, ExportOnnxConfig(optimization="O2", parity_samples=8), make_context("onnx"))
    with pytest.raises(StageError, match="already ONNX"):
        qplugin.OrtDynamic().apply(onnx_art, qplugin.OrtDynamicConfig(preset="avx512_vnni", optimization="O2"), make_context("bad"))
    art = qplugin.OrtDynamic().apply(onnx_art, qplugin.OrtDynamicConfig(preset="avx512_vnni"), make_context("q"))
    assert art.lineage.extra["preset"] == "avx512_vnni" and art.lineage.extra["preset_chosen_by"] == "recipe"
    assert art.lineage.extra["optimization"] == "O2"  # inherited from the export stage
    with pytest.raises(StageError, match="no ONNX Runtime int8 preset"):
        qplugin.OrtDynamic().apply(onnx_art, qplugin.OrtDynamicConfig(), make_context("auto"))


def test_ort_static_calibrates_and_records_exclusions(baseline, make_context, task_data, monkeypatch):
    import dataclasses

    import onnx

    cfg = qplugin.OrtStaticConfig(preset="avx512_vnni", calibration_samples=16, max_length=32)
    ctx = make_context("static")
    # folders relative to the working directory, as a relative --run-dir gives them: the
    # calibrator changes directory, so the strategy must not depend on the cwd
    monkeypatch.chdir(ctx.work_dir.parent.parent)
    ctx = dataclasses.replace(ctx, work_dir=Path("static/work"), output_dir=Path("static/model"))
    art = qplugin.OrtStatic().apply(baseline, cfg, ctx)
    extra = art.lineage.extra
    assert extra["mode"] == "static" and extra["calibration"]["samples"] == 16
    assert extra["calibration"]["method"] == "minmax" and extra["calibration"]["split"] == "train"
    # LayerNormalization is in ORT's default static list; the default exclusion removes it
    assert "LayerNormalization" not in extra["operators_quantized"] and "MatMul" in extra["operators_quantized"]
    assert extra["excluded_operators"].get("LayerNormalization", 0) >= 4 * 2
    graph = onnx.load(str(art.path / "model.onnx")).graph
    quantized_inputs = {i for n in graph.node if n.op_type == "DequantizeLinear" for i in n.output}
    for node in graph.node:
        if node.op_type == "LayerNormalization":  # excluded: fed by float tensors only
            assert not set(node.input) & quantized_inputs
    assert extra["int8_nodes"].get("QuantizeLinear", 0) > 0
    texts = task_data.split("test")["text"][:32]
    got, _ = _backend_logits(art, {}, texts)
    ref = _fp32_logits(baseline.path, texts)
    assert (got.argmax(-1) == ref.argmax(-1)).mean() >= 0.85


def test_half_bf16_runs_in_bf16_and_refuses_without_hardware(baseline, make_context, task_data, registry, monkeypatch):
    import torch

    monkeypatch.setattr("compressor_quantization.half.cpu_flags", lambda: frozenset({"avx2"}))
    with pytest.raises(StageError, match="AMX-BF16 or AVX-512 BF16"):
        qplugin.Half().apply(baseline, qplugin.HalfConfig(), make_context("half-refused"))
    monkeypatch.setattr("compressor_quantization.half.cpu_flags", lambda: frozenset({"amx_bf16"}))
    art = qplugin.Half().apply(baseline, qplugin.HalfConfig(), make_context("half"))
    assert art.format == "pytorch-half" and art.lineage.extra["dtype"] == "bfloat16"
    backend = backend_for(art, registry).load(art, task_type="text-classification", threads=1)
    assert next(backend.model.parameters()).dtype == torch.bfloat16
    texts = task_data.split("test")["text"][:32]
    got = backend.predict_logits(backend.encode(texts, padding=True, max_length=64))
    ref = _fp32_logits(baseline.path, texts)
    assert got.dtype == np.float32 and (got.argmax(-1) == ref.argmax(-1)).mean() >= 0.9
    assert backend_for(art, registry).devices_for(art) == ("cpu", "cuda")


def test_ort_dynamic_per_channel_has_one_weight_scale_per_output_column(baseline, make_context, task_data, monkeypatch):
    import onnx
    from onnx import numpy_helper

    monkeypatch.setattr("compressor_quantization.ort.cpu_flags", lambda: frozenset({"avx2", "fma"}))
    monkeypatch.setattr("compressor_quantization.ort.machine", lambda: "x86_64")
    art = qplugin.OrtDynamic().apply(baseline, qplugin.OrtDynamicConfig(per_channel=True), make_context("ort-pc"))
    assert art.lineage.extra["per_channel"] is True
    graph = onnx.load(str(art.path / "model.onnx")).graph
    scales = {i.name: numpy_helper.to_array(i) for i in graph.initializer if i.name.endswith("_scale")}
    vectors = [s for s in scales.values() if s.ndim == 1 and s.size > 1]
    assert vectors and all(np.unique(v).size > 1 for v in vectors)  # one scale per column, not one copied
    # per_channel: false in the recipe gives one scale per weight tensor
    tensor = qplugin.OrtDynamic().apply(baseline, qplugin.OrtDynamicConfig(per_channel=False), make_context("ort-pt"))
    assert tensor.lineage.extra["per_channel"] is False
    graph = onnx.load(str(tensor.path / "model.onnx")).graph
    assert all(numpy_helper.to_array(i).size == 1 for i in graph.initializer if i.name.endswith("_scale"))
    texts = task_data.split("test")["text"][:32]
    got, _ = _backend_logits(art, {}, texts)
    ref = _fp32_logits(baseline.path, texts)
    assert (got.argmax(-1) == ref.argmax(-1)).mean() >= 0.9


def test_ort_static_caps_calibration_at_the_model_positions(baseline, make_context, caplog):
    """The default max_length (128) on a model of 64 positions: calibration at 64 tokens,
    logged, instead of ONNX Runtime's "broadcast 64 by 128" in the embeddings' Add."""
    import logging

    cfg = qplugin.OrtStaticConfig(preset="avx512_vnni", calibration_samples=8)
    assert cfg.max_length == 128
    with caplog.at_level(logging.INFO):
        art = qplugin.OrtStatic().apply(baseline, cfg, make_context("static-capped"))
    assert art.lineage.extra["calibration"]["max_length"] == 64
    assert "calibration inputs capped at 64 tokens" in caplog.text


def test_ort_static_caps_roberta_calibration_before_its_padding_offset(tmp_path):
    """RoBERTa's 66 positions hold 64 tokens (ids start after the padding id); with no
    tokenizer limit, the cap comes from the config alone."""
    from transformers import AutoTokenizer

    from compressor import testing

    folder = testing.tiny_model("roberta", tmp_path / "roberta")
    tok = AutoTokenizer.from_pretrained(folder)
    tok.model_max_length = int(1e30)  # transformers' "no limit"
    tok.save_pretrained(folder)
    art = testing.apply_strategy(
        "quantize.ort-static", folder, {"preset": "avx512_vnni", "calibration_samples": 8}, tmp_path, stage_name="q"
    )
    assert art.lineage.extra["calibration"]["max_length"] == 64


def test_ort_dynamic_quantises_modernbert_at_the_default_level(tmp_path):
    """ONNX Runtime's level-2 optimisation turns ModernBERT's attention products into
    FusedMatMul, which its symbolic shape inference does not know: the quantizer's
    preparation guesses that operator's output rank instead of failing."""
    import onnxruntime
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from compressor import testing

    folder = testing.tiny_model("modernbert", tmp_path / "modernbert")
    art = testing.apply_strategy("quantize.ort-dynamic", folder, {"preset": "avx2"}, tmp_path, stage_name="q")
    assert art.lineage.extra["optimization"] == "O2" and art.lineage.extra["int8_nodes"].get("MatMulInteger", 0) > 0
    texts = testing.tiny_task_data().split("test")["text"][:16]
    enc = AutoTokenizer.from_pretrained(folder)(texts, padding=True, return_tensors="np")
    sess = onnxruntime.InferenceSession(str(art.path / "model.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(["logits"], {i.name: enc[i.name] for i in sess.get_inputs()})[0]
    with torch.inference_mode():
        ref = AutoModelForSequenceClassification.from_pretrained(folder).eval()(
            **{k: torch.from_numpy(v) for k, v in enc.items()}
        ).logits.numpy()
    assert np.abs(got - ref).max() < 0.1 * np.abs(ref).max() + 1e-3
