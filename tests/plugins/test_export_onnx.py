"""export.onnx on a tiny BERT: export, O2 fusion, parity recorded, a broken export fails."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from compressor.artifact import Artifact
from compressor.errors import StageError

from compressor_export.plugin import ExportOnnx, ExportOnnxConfig  # noqa: E402


def _export(tiny_bert_dir: Path, make_context, stage: str = "onnx", **cfg):
    ctx = make_context(stage)
    base = Artifact(name="baseline", path=tiny_bert_dir)
    return ExportOnnx().apply(base, ExportOnnxConfig(parity_samples=24, **cfg), ctx)


def _logits(onnx_dir: Path, tiny_bert_dir: Path, texts: list[str]):
    import onnxruntime
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(onnx_dir)
    enc = tok(texts, padding=True, return_tensors="np")
    session = onnxruntime.InferenceSession(str(onnx_dir / "model.onnx"))
    names = [i.name for i in session.get_inputs()]
    got = session.run(["logits"], {k: v for k, v in enc.items() if k in names})[0]
    ref_model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir).eval()
    with torch.inference_mode():
        ref = ref_model(**{k: torch.from_numpy(v) for k, v in enc.items()}).logits.numpy()
    return ref, got


def test_export_records_parity_and_reloads(tiny_bert_dir, make_context, task_data):
    art = _export(tiny_bert_dir, make_context)
    assert art.format == "onnx"
    assert sorted(p.name for p in art.path.glob("*.onnx")) == ["model.onnx"]
    parity = art.lineage.extra["parity"]
    assert parity["n"] == 24 and parity["split"] == "test"
    assert 0.0 <= parity["max_abs_diff"] <= parity["tolerance"] == 1e-3
    assert parity["argmax_agreement"] == 1.0
    # the recorded difference is the one an independent comparison finds
    ref, got = _logits(art.path, tiny_bert_dir, task_data.split("test")["text"][:24])
    assert np.abs(ref - got).max() == pytest.approx(parity["max_abs_diff"], abs=1e-5)
    loaded = Artifact.load(art.path)
    assert loaded.format == "onnx" and loaded.lineage.strategy == "export.onnx"


def test_export_o2_fuses_attention_and_keeps_parity(tiny_bert_dir, make_context):
    art = _export(tiny_bert_dir, make_context, optimization="O2")
    fused = art.lineage.extra["fused_operators"]
    assert fused.get("Attention", 0) == 4  # one per layer of the tiny BERT
    assert fused.get("SkipLayerNormalization", 0) > 0
    assert art.lineage.extra["parity"]["max_abs_diff"] <= 1e-3


def test_broken_export_fails_with_measured_difference(tiny_bert_dir, make_context, monkeypatch):
    import onnx
    from onnx import numpy_helper

    from compressor_export import export as export_module

    original = export_module.export_onnx

    def corrupt(source, out_dir, **kw):
        result = original(source, out_dir, **kw)
        path = result.onnx_file
        proto = onnx.load(str(path))
        for init in proto.graph.initializer:
            if "classifier" in init.name and "bias" in init.name:
                init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) + 0.25, init.name))
                break
        else:
            raise AssertionError("no classifier bias in the exported graph")
        onnx.save(proto, str(path))
        return result

    monkeypatch.setattr(export_module, "export_onnx", corrupt)
    with pytest.raises(StageError) as info:
        _export(tiny_bert_dir, make_context, stage="broken")
    measured = float(re.search(r"max \|logit difference\| = ([0-9.eE+-]+)", str(info.value)).group(1))
    assert measured == pytest.approx(0.25, abs=1e-3)
    assert "1e-03" in str(info.value) or "0.001" in str(info.value)


def test_o4_needs_for_gpu():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="for_gpu"):
        ExportOnnxConfig(optimization="O4")
    assert ExportOnnxConfig(optimization="O4", for_gpu=True).for_gpu


def test_parity_inputs_are_capped_at_the_model_positions(tiny_bert_dir, make_context, task_data, caplog):
    """Texts longer than the model's 64 positions with the default max_length 128: the parity
    check truncates them at 64 (PyTorch would fail on position 64) and says so."""
    import logging

    from compressor.task import TaskData

    long_texts = [" ".join(["w1", "good", "w2"] * 40)] * 4  # 120 words, 122 tokens
    data = TaskData(
        type="text-classification",
        splits={**task_data.splits, "test": task_data.splits["test"].from_dict({"text": long_texts, "label": [1] * 4})},
        label_names=task_data.label_names,
        name="long",
    )
    assert ExportOnnxConfig().max_length == 128
    with caplog.at_level(logging.INFO):
        art = ExportOnnx().apply(
            Artifact(name="baseline", path=tiny_bert_dir), ExportOnnxConfig(parity_samples=4), make_context("long", data=data)
        )
    parity = art.lineage.extra["parity"]
    assert parity["max_length"] == 64 and parity["n"] == 4 and parity["max_abs_diff"] <= 1e-3
    assert "parity inputs truncated to 64 tokens" in caplog.text


def test_max_input_length_reads_positions_offset_and_tokenizer(tmp_path):
    from types import SimpleNamespace

    from transformers import BertConfig, RobertaConfig

    from compressor.errors import CompressorError
    from compressor.onnx_export import capped_length, max_input_length

    assert max_input_length(BertConfig(max_position_embeddings=64)) == 64
    # RoBERTa's positions start after the padding id: 2 of 66 are unusable
    assert max_input_length(RobertaConfig(max_position_embeddings=66)) == 64
    assert max_input_length({"model_type": "mpnet", "max_position_embeddings": 514}) == 512
    assert max_input_length(BertConfig(max_position_embeddings=512), SimpleNamespace(model_max_length=32)) == 32
    # transformers' "no limit" (VERY_LARGE_INTEGER) is not a limit
    assert max_input_length(BertConfig(max_position_embeddings=512), SimpleNamespace(model_max_length=int(1e30))) == 512
    assert max_input_length({"model_type": "x"}) is None and capped_length(128, {"model_type": "x"}) == 128
    RobertaConfig(max_position_embeddings=66).save_pretrained(tmp_path)
    assert capped_length(128, tmp_path) == 64 and capped_length(32, tmp_path) == 32
    with pytest.raises(CompressorError, match="config.json"):
        max_input_length(tmp_path / "missing")
