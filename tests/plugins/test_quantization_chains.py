"""Pruned models into the PyTorch quantisers (issue 23's first two failing chains), and the
ONNX Runtime quantisers' refusals of inputs they cannot take, at validation time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers

from compressor import load_recipe
from compressor.artifact import Artifact
from compressor.errors import RecipeError
from compressor.evaluate.backends import backend_for
from compressor.plugins import get_plugins
from compressor.structure import has_structure
from compressor.testing import apply_strategy, tiny_model, tiny_task_data, write_tiny_task_files

HEADS = {"num_attention_heads": 4, "num_hidden_layers": 3}


@pytest.fixture(scope="module")
def pruned(tmp_path_factory) -> Artifact:
    """A tiny BERT with 4 heads per layer, 2 FFN widths and uneven head counts after pruning."""
    root = tmp_path_factory.mktemp("pruned")
    base = tiny_model("bert", root / "base", config=HEADS)
    data = tiny_task_data()
    ffn = apply_strategy("prune.ffn", base, {"fraction": 0.5, "scope": "global", "importance_samples": 16},
                         root / "ffn", data=data, stage_name="ffn")
    heads = apply_strategy("prune.heads", ffn, {"fraction": 0.5, "importance_samples": 16},
                           root / "heads", data=data, stage_name="heads")
    assert has_structure(heads.path)
    assert len(set(heads.lineage.extra["heads_after"])) > 1, heads.lineage.extra["heads_after"]
    return Artifact(name="baseline", path=heads.path, format=heads.format, lineage=heads.lineage)


def _logits(artifact: Artifact, texts: list[str]) -> torch.Tensor:
    backend = backend_for(artifact, get_plugins().backends).load(artifact, task_type="text-classification", threads=1)
    batch = backend.encode(texts, padding=True, max_length=32)
    return torch.as_tensor(backend.predict_logits(batch))


def _attention_heads(model) -> list[int]:
    return [layer.attention.self.num_attention_heads for layer in model.bert.encoder.layer]


def test_dynamic_int8_of_a_pruned_model_keeps_its_shapes_and_outputs(pruned, tmp_path) -> None:
    out = apply_strategy("quantize.dynamic-int8", pruned, {}, tmp_path, stage_name="int8")
    model = backend_for(out, get_plugins().backends).load(out, task_type="text-classification", threads=1).model
    assert _attention_heads(model) == pruned.lineage.extra["heads_after"]
    texts = list(tiny_task_data().splits["test"]["text"][:16])
    ref, got = _logits(pruned, texts), _logits(out, texts)
    assert torch.allclose(got, ref, atol=0.05 * float(ref.abs().max()) + 1e-3), (got - ref).abs().max()


def test_half_of_a_pruned_model_keeps_its_shapes_and_outputs(pruned, tmp_path, monkeypatch) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Faked Xeon\nflags\t\t: avx2 avx512f avx512_bf16 amx_bf16\n\n")
    monkeypatch.setenv("COMPRESSOR_CPUINFO", str(cpuinfo))
    out = apply_strategy("quantize.half", pruned, {"dtype": "bfloat16"}, tmp_path / "run", stage_name="half")
    assert has_structure(out.path)
    backend = backend_for(out, get_plugins().backends).load(out, task_type="text-classification", threads=1)
    assert next(backend.model.parameters()).dtype == torch.bfloat16
    assert _attention_heads(backend.model) == pruned.lineage.extra["heads_after"]
    texts = list(tiny_task_data().splits["test"]["text"][:16])
    ref, got = _logits(pruned, texts), _logits(out, texts)
    assert torch.allclose(got, ref, atol=0.05 * float(ref.abs().max()) + 0.02), (got - ref).abs().max()


def test_an_onnx_or_int8_model_refuses_pytorch_loading_with_the_reason(pruned, tmp_path) -> None:
    from compressor.testing import make_context
    from compressor.errors import StageError

    out = apply_strategy("quantize.dynamic-int8", pruned, {}, tmp_path, stage_name="int8")
    ctx = make_context(tmp_path / "ctx", artifacts={"int8": out})
    with pytest.raises(StageError, match="'pytorch-dynamic-int8' model; it cannot be loaded as a PyTorch module"):
        ctx.load_model(out, transformers.AutoModelForSequenceClassification)


def _recipe(tmp_path: Path, model: Path, stages: list[dict]) -> Path:
    files = write_tiny_task_files(tmp_path / "data")
    path = tmp_path / "recipe.yaml"
    path.write_text(json.dumps({
        "version": 1, "name": "chain", "model": {"name": str(model), "source": "local"},
        "task": {"type": "text-classification",
                 "data": {"files": {k: str(tmp_path / "data" / v) for k, v in files.items()}}},
        "stages": stages,
    }))
    return path


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ([{"name": "onnx", "strategy": "export.onnx"},
          {"name": "int8", "strategy": "quantize.ort-dynamic", "config": {"optimization": "O2"}}],
         "optimization 'O2' is set, but the input is already ONNX"),
        ([{"name": "int8", "strategy": "quantize.ort-dynamic"},
          {"name": "again", "strategy": "quantize.ort-static"}],
         "its input is already quantised (made by quantize.ort-dynamic)"),
        ([{"name": "int8", "strategy": "quantize.ort-static"},
          {"name": "again", "strategy": "quantize.ort-dynamic"}],
         "its input is already quantised (made by quantize.ort-static)"),
    ],
)
def test_validation_refuses_what_an_ort_quantiser_cannot_take(tmp_path, stages, message) -> None:
    model = tiny_model("bert", tmp_path / "model")
    with pytest.raises(RecipeError) as info:
        load_recipe(_recipe(tmp_path, model, stages))
    exc = info.value
    assert message in exc.message and exc.key == "stages[1].strategy", exc.format()
    assert exc.where and exc.where.startswith(str(tmp_path / "recipe.yaml")), exc.where


def test_validation_accepts_an_exported_model_into_ort_quantisers(tmp_path) -> None:
    model = tiny_model("bert", tmp_path / "model")
    loaded = load_recipe(_recipe(tmp_path, model, [
        {"name": "onnx", "strategy": "export.onnx", "config": {"optimization": "O2"}},
        {"name": "int8", "strategy": "quantize.ort-dynamic"},
        {"name": "static", "strategy": "quantize.ort-static", "input": "onnx"},
    ]))
    assert [s.strategy for s in loaded.recipe.stages] == ["export.onnx", "quantize.ort-dynamic", "quantize.ort-static"]


def test_validation_refuses_a_teacher_in_a_format_the_stage_cannot_load(tmp_path) -> None:
    model = tiny_model("bert", tmp_path / "model")
    with pytest.raises(RecipeError) as info:
        load_recipe(_recipe(tmp_path, model, [
            {"name": "onnx", "strategy": "export.onnx"},
            {"name": "student", "strategy": "distill.distilbert", "input": "baseline",
             "config": {"teacher": "onnx", "student_layers": 1}},
        ]))
    exc = info.value
    assert exc.key == "stages[1].config.teacher" and "'onnx' model" in exc.message, exc.format()
