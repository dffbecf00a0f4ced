"""ONNX Runtime int8 without symbolic shape inference (issue 24): where ONNX Runtime's
symbolic inference fails on an optimised graph, ``quantize.ort-dynamic`` types the graph
with ONNX's inference plus the contrib operators' input types
(:func:`compressor_quantization.ort.infer_types`) and quantises it anyway."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from _tiny_encoders import save_encoder

from compressor import testing


def _run(graph: Path, enc: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    return sess.run(
        None, {k: v.astype(np.int64) for k, v in enc.items() if k in names}
    )[0]


def test_the_fallback_quantises_as_the_symbolic_path_does(tmp_path: Path) -> None:
    """On a graph symbolic inference handles (BERT at O2: fused Attention and
    SkipLayerNormalization, which ONNX's inference cannot type), the fallback's preparation
    gives the same int8 graph: the same int8 nodes, the same outputs."""
    from compressor_quantization.ort import (
        FALLBACK_EXTRA_OPTIONS,
        infer_types,
        prepare_for_quantization,
    )
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from compressor.onnx_export import export_onnx, optimize_onnx

    folder = testing.tiny_model(
        "bert", tmp_path / "m", config={"num_attention_heads": 4}
    )
    exported = export_onnx(folder, tmp_path / "exp", task_type="text-classification")
    optimized = tmp_path / "exp" / "optimized.onnx"
    optimize_onnx(
        exported.onnx_file,
        optimized,
        model_type="bert",
        level="O2",
        num_heads=exported.num_heads,
        hidden_size=exported.attention_hidden_size,
    )
    record: dict = {}
    symbolic = prepare_for_quantization(
        optimized, tmp_path / "exp", tmp_path / "symbolic", record=record
    )
    assert record == {"method": "symbolic", "reason": None, "untyped": 0}
    plain = onnx.shape_inference.infer_shapes(
        onnx.load(str(optimized)), strict_mode=False
    )
    typed, untyped = infer_types(onnx.load(str(optimized)))
    assert untyped == 0 and len(typed.graph.value_info) > len(plain.graph.value_info)
    fallback = tmp_path / "fallback.onnx"
    onnx.save(typed, str(fallback))
    enc = dict(
        testing.tiny_tokenizer("bert")(
            ["a great movie", "the plot was dull and boring"],
            padding=True,
            return_tensors="np",
        )
    )
    outputs, ops = [], []
    base = {"WeightSymmetric": True, "ActivationSymmetric": False}
    for source, extra in (
        (symbolic, base),
        (fallback, {**base, **FALLBACK_EXTRA_OPTIONS}),
    ):
        target = tmp_path / f"int8-{source.stem}-{len(outputs)}.onnx"
        quantize_dynamic(
            str(source),
            str(target),
            weight_type=QuantType.QInt8,
            per_channel=True,
            extra_options=extra,
        )
        ops.append(sorted(n.op_type for n in onnx.load(str(target)).graph.node))
        outputs.append(_run(target, enc))
    assert ops[0] == ops[1] and ops[0].count("QAttention") == 2
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_a_failing_symbolic_inference_is_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from compressor_quantization.ort import prepare_for_quantization
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    from compressor.onnx_export import export_onnx

    folder = testing.tiny_model("bert", tmp_path / "m")
    exported = export_onnx(folder, tmp_path / "exp", task_type="text-classification")

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError  # what ORT 1.32 raises on EuroBERT's optimised graph

    monkeypatch.setattr(SymbolicShapeInference, "infer_shapes", staticmethod(fail))
    record: dict = {}
    prepared = prepare_for_quantization(
        exported.onnx_file, tmp_path / "exp", tmp_path / "prep", record=record
    )
    assert record == {
        "method": "onnx (symbolic inference failed)",
        "reason": "AssertionError",
        "untyped": 0,
    }
    assert (prepared.parent / "config.json").is_file()


def test_ort_int8_without_symbolic_shape_inference(tmp_path: Path) -> None:
    """ONNX Runtime's symbolic shape inference asserts on EuroBERT's optimised graph: the
    graph is quantised with ONNX's inference instead, and the int8 outputs track the float
    model's."""
    from compressor.artifact import Artifact
    from compressor.evaluate.backends import backend_for, load_backend
    from compressor.tasks import get_task

    model_dir = save_encoder("eurobert", tmp_path / "model")
    data = testing.tiny_task_data()
    int8 = testing.apply_strategy(
        "quantize.ort-dynamic",
        model_dir,
        {"saturation_check": False},
        tmp_path / "ort",
        data=data,
        stage_name="ort",
    )
    extra = int8.lineage.extra
    assert extra["shape_inference"]["method"] == "onnx (symbolic inference failed)"
    assert (
        extra["shape_inference"]["reason"] and extra["shape_inference"]["untyped"] == 0
    )
    # every weight MatMul quantised: 4 layers x (q, k, v, o, gate, up, down) + the classifier
    assert extra["int8_nodes"]["MatMulInteger"] >= 4 * 7
    task = get_task("text-classification")
    outputs = []
    for artifact in (Artifact(name="baseline", path=model_dir), int8):
        backend = load_backend(backend_for(artifact), artifact, task=task, threads=1)
        try:
            texts = list(data.split("test")["text"])
            outputs.append(
                backend.predict_logits(
                    backend.encode(texts, padding=True, max_length=32)
                )
            )
        finally:
            backend.close()
    float_logits, int8_logits = outputs
    spread = float(np.abs(float_logits).max())
    assert float(np.abs(int8_logits - float_logits).max()) < 0.1 * spread + 1e-3
