"""Head-pruned encoders through ONNX export and ONNX Runtime quantisation (issue 23).

After head pruning, layers can keep different head counts. ONNX Runtime's attention fusion
takes one head count (and its width, heads x head size) for the whole graph, so:

- layers with different counts: attention is left unfused, every other O2 fusion applies,
  and the export still matches PyTorch;
- layers with the same count (after pruning too): attention is fused with that count and
  the pruned width, not the model width.

Models: a 4-layer, 4-head tiny BERT (width 64, head size 16) and the same as RoBERTa.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from compressor import testing
from compressor.artifact import Artifact

UNEVEN = {0: [0], 1: [0, 1, 2], 2: [1, 2], 3: [3]}  # -> [3, 1, 2, 3] heads
EQUAL = {layer: [0, 2] for layer in range(4)}  # -> [2, 2, 2, 2] heads: width 32 of 64


def _four_head_model(arch: str, folder: Path, heads: dict[int, list[int]]) -> Path:
    """A 4-layer, 4-head (width 64) tiny ``arch`` classifier with ``heads`` removed, saved
    with its structure file and the kit's tokenizer of the family."""
    import torch
    import transformers
    from compressor_pruning.structured import prune_heads_

    from compressor.structure import save_pretrained

    tok = testing.tiny_tokenizer(arch)
    common: dict[str, Any] = {
        "hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 128,
        "vocab_size": len(tok), "num_labels": 2, "pad_token_id": tok.pad_token_id,
    }
    if arch == "bert":
        config = transformers.BertConfig(max_position_embeddings=64, **common)
    else:  # RoBERTa: positions start after the padding id, 2 of 66 unusable
        config = transformers.RobertaConfig(max_position_embeddings=66, type_vocab_size=1, **common)
    torch.manual_seed(0)
    model = transformers.AutoModelForSequenceClassification.from_config(config).eval()
    if heads:
        prune_heads_(model, heads)
    save_pretrained(model, folder, tok)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    root = tmp_path_factory.mktemp("four-head")
    return {
        (arch, name): _four_head_model(arch, root / f"{arch}-{name}", heads)
        for arch in ("bert", "roberta")
        for name, heads in (("uneven", UNEVEN), ("equal", EQUAL))
    }


def _ops(onnx_file: Path) -> Counter[str]:
    import onnx

    return Counter(n.op_type for n in onnx.load(str(onnx_file), load_external_data=False).graph.node)


def _attention_heads(onnx_file: Path) -> list[int]:
    """The ``num_heads`` attribute of every fused (Q)Attention node."""
    import onnx

    graph = onnx.load(str(onnx_file), load_external_data=False).graph
    return [
        next(a.i for a in n.attribute if a.name == "num_heads")
        for n in graph.node if n.op_type in ("Attention", "QAttention")
    ]


def _logits(art: Artifact, source: Path, texts: list[str]) -> tuple[Any, Any]:
    """(ONNX Runtime logits of ``art``, fp32 PyTorch logits of ``source``) on ``texts``."""
    import onnxruntime
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from compressor.structure import load_pretrained

    tok = AutoTokenizer.from_pretrained(art.path)
    enc = tok(texts, padding=True, return_tensors="np")
    sess = onnxruntime.InferenceSession(str(art.path / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    got = sess.run(["logits"], {k: v for k, v in enc.items() if k in names})[0]
    model = load_pretrained(AutoModelForSequenceClassification, source).eval()
    with torch.inference_mode():
        ref = model(**{k: torch.from_numpy(v) for k, v in enc.items()}).logits.numpy()
    return got, ref


@pytest.mark.parametrize("arch", ["bert", "roberta"])
@pytest.mark.parametrize("level", ["O2", "O3"])
def test_uneven_heads_export_unfused_attention_with_the_other_fusions(models, arch, level, tmp_path):
    source = models[arch, "uneven"]
    art = testing.apply_strategy(
        "export.onnx", source, {"optimization": level, "parity_samples": 16}, tmp_path, stage_name="onnx"
    )
    extra = art.lineage.extra
    assert extra["parity"]["max_abs_diff"] <= 1e-3 and extra["parity"]["argmax_agreement"] == 1.0
    ops = _ops(art.path / "model.onnx")
    assert ops["Attention"] == 0 and ops["MultiHeadAttention"] == 0
    assert ops["SkipLayerNormalization"] == 8  # two per layer: the other fusions still apply
    assert ops["FastGelu" if level == "O3" else "BiasGelu"] == 4
    attention = extra["attention_fusion"]
    assert attention["fused"] is False and attention["heads_per_layer"] == [3, 1, 2, 3]
    assert "different head counts [3, 1, 2, 3]" in attention["reason"]


@pytest.mark.parametrize("arch", ["bert", "roberta"])
def test_equal_pruned_heads_fuse_attention_with_the_pruned_width(models, arch, tmp_path):
    source = models[arch, "equal"]
    art = testing.apply_strategy(
        "export.onnx", source, {"optimization": "O2", "parity_samples": 16}, tmp_path, stage_name="onnx"
    )
    extra = art.lineage.extra
    assert extra["parity"]["max_abs_diff"] <= 1e-3
    assert _ops(art.path / "model.onnx")["Attention"] == 4
    assert _attention_heads(art.path / "model.onnx") == [2, 2, 2, 2]
    assert extra["attention_fusion"] == {"fused": True, "nodes": 4, "heads_per_layer": [2, 2, 2, 2], "reason": None}


def test_export_result_gives_the_pruned_attention_width(models, tmp_path):
    from compressor.onnx_export import export_onnx

    equal = export_onnx(models["bert", "equal"], tmp_path / "equal", task_type="text-classification")
    assert (equal.num_heads, equal.head_size, equal.hidden_size) == (2, 16, 64)
    assert equal.attention_hidden_size == 32 and equal.attention_note is None
    uneven = export_onnx(models["bert", "uneven"], tmp_path / "uneven", task_type="text-classification")
    assert uneven.num_heads is None and uneven.head_counts == [3, 1, 2, 3]
    assert uneven.attention_hidden_size == 0 and "different head counts" in uneven.attention_note


def test_optimize_onnx_refuses_a_width_that_is_not_a_multiple_of_the_heads(tmp_path):
    from compressor.onnx_export import optimize_onnx

    with pytest.raises(ValueError, match="multiple"):
        optimize_onnx(tmp_path / "in.onnx", tmp_path / "out.onnx", model_type="bert", level="O2",
                      num_heads=3, hidden_size=64)


@pytest.mark.parametrize("name", ["uneven", "equal"])
def test_ort_dynamic_quantises_pruned_models(models, name, tmp_path):
    source = models["bert", name]
    art = testing.apply_strategy(
        "quantize.ort-dynamic", source, {"optimization": "O2", "preset": "avx2"}, tmp_path, stage_name="q"
    )
    extra = art.lineage.extra
    assert extra["optimization"] == "O2" and extra["int8_nodes"].get("MatMulInteger", 0) > 0
    assert extra["attention_fusion"]["fused"] is (name == "equal")
    assert _attention_heads(art.path / "model.onnx") == ([2, 2, 2, 2] if name == "equal" else [])
    texts = testing.tiny_task_data().split("test")["text"][:32]
    got, ref = _logits(art, source, texts)
    assert np.abs(got - ref).max() < 0.1 * np.abs(ref).max() + 1e-3  # int8 weights: close


def test_ort_static_quantises_an_uneven_model_at_the_default_length(models, tmp_path):
    """Default max_length 128 on a model of 64 positions: calibration is capped, not failed."""
    source = models["bert", "uneven"]
    art = testing.apply_strategy(
        "quantize.ort-static", source, {"optimization": "O2", "preset": "avx512_vnni", "calibration_samples": 8},
        tmp_path, stage_name="q",
    )
    extra = art.lineage.extra
    assert extra["calibration"]["max_length"] == 64 and extra["attention_fusion"]["fused"] is False
    assert extra["int8_nodes"].get("QuantizeLinear", 0) > 0


def test_prune_heads_then_export_fuses_attention_only_for_equal_counts(tmp_path):
    """The chain as a recipe runs it: prune.heads's own output into export.onnx O2."""
    base = _four_head_model("bert", tmp_path / "base", {})
    data = testing.tiny_task_data()
    for config in ({"fraction": 0.5}, {"heads_per_layer": 2}):
        stage = "p" + str(len(config)) + next(iter(config))
        pruned = testing.apply_strategy(
            "prune.heads", base, {**config, "importance_samples": 16, "max_length": 32}, tmp_path,
            stage_name=stage, data=data,
        )
        counts = pruned.lineage.extra["heads_after"]
        art = testing.apply_strategy(
            "export.onnx", pruned, {"optimization": "O2", "parity_samples": 8}, tmp_path,
            stage_name=stage + "-onnx", data=data,
        )
        assert art.lineage.extra["parity"]["max_abs_diff"] <= 1e-3
        fused = _ops(art.path / "model.onnx")["Attention"]
        assert fused == (4 if len(set(counts)) == 1 else 0), counts
