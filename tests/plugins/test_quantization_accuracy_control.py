"""Accuracy-controlled int8 (issue 25, item 3): node groups of real exported graphs, and the
search on a tiny fine-tuned BERT with a planted activation outlier.

The planted outlier (Bondarenko et al., EMNLP 2021: structured outliers at the FFN output of
BERT layers): in layer 1's FFN, one intermediate channel is made a constant 1e5 (its input
weights zeroed, its bias 1e5) and its contribution is cancelled by the output dense's bias, so
the fp32 model computes what it computed before, bar that one channel's former contribution.
The output dense's input then has one channel 1e5 times the others: per-tensor int8 of that
MatMul (one activation scale for the whole tensor) rounds every other channel to zero and
leaves a weight-rounding error of ~1e5 x half a weight step on the cancelled constant, and the
model predicts one class. Every other node group quantises harmlessly.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from compressor.errors import StageError
from compressor.evaluate.stats import paired_bootstrap
from compressor.onnx_export import export_onnx, optimize_onnx
from compressor.testing import apply_strategy, tiny_model, tiny_task_data
from compressor_quantization.accuracy_control import (
    AccuracyControlResult,
    NodeGroup,
    OnnxTaskScorer,
    accuracy_controlled_int8,
    node_groups,
    normalized_mse,
)
from compressor_quantization.ort import prepare_for_quantization

pytestmark = pytest.mark.filterwarnings("ignore")

#: the operator types of dynamic quantisation (onnxruntime's IntegerOpsRegistry)
DYNAMIC_OPS = ["Conv", "MatMul", "Attention", "LSTM", "Gather", "Transpose", "EmbedLayerNormalization"]
PLANTED = "layer.1.ffn_out"
OUTLIER = 1e5
N_EVAL = 64


def _dynamic(prepared: Path, *, per_channel: bool = False) -> Any:
    """``quantize(nodes_to_exclude, out)`` as ``quantize.ort-dynamic`` runs it (optimum's
    presets: symmetric s8 weights, u8 activations), per-tensor weights by default."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    def quantize(exclude: list[str], out: Path) -> None:
        quantize_dynamic(
            prepared, out, op_types_to_quantize=DYNAMIC_OPS, per_channel=per_channel, reduce_range=False,
            weight_type=QuantType.QInt8, extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
            nodes_to_exclude=exclude,
        )

    return quantize


def _plant_outlier(model_dir: Path, out_dir: Path, *, layer: int = 1) -> int:
    """Copy the model with the outlier channel planted in ``layer``'s FFN; returns the channel."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    ffn = model.bert.encoder.layer[layer]
    channel = 0
    with torch.no_grad():
        ffn.intermediate.dense.weight[channel].zero_()
        ffn.intermediate.dense.bias[channel] = OUTLIER
        ffn.output.dense.bias -= ffn.output.dense.weight[:, channel] * OUTLIER
    model.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out_dir)
    return channel


def _prepared_graph(model_dir: Path, work: Path, level: str = "O2") -> Path:
    """Export, optimise (the dynamic strategy's default level) and pre-process, as
    ``run_ort_quantization`` does before it quantises."""
    exported = export_onnx(model_dir, work / "exported", task_type="text-classification")
    onnx_file = exported.onnx_file
    if level != "none":
        onnx_file = work / "exported" / "optimized.onnx"
        optimize_onnx(exported.onnx_file, onnx_file, model_type="bert", level=level,
                      num_heads=exported.num_heads, hidden_size=exported.attention_hidden_size)
    return prepare_for_quantization(onnx_file, work / "exported", work / "prepared")


@pytest.fixture(scope="module")
def data() -> Any:
    return tiny_task_data(n_train=128, n_eval=N_EVAL)


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory, data: Any) -> dict[str, Any]:
    """A 2-layer tiny BERT fine-tuned on the kit's sentiment task, the planted copy, and the
    planted copy's prepared float graph."""
    import torch

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("accuracy-control")
    base = tiny_model("bert", root / "random", config={"num_hidden_layers": 2})
    teacher = apply_strategy(
        "finetune", base,
        {"max_steps": 80, "batch_size": 16, "learning_rate": 2e-3, "warmup_ratio": 0.1, "logging_steps": 100},
        root / "teacher", data=data, stage_name="teacher",
    )
    model_dir = root / "planted"
    _plant_outlier(Path(teacher.path), model_dir)
    graph = _prepared_graph(model_dir, root / "onnx")
    return {"root": root, "teacher": Path(teacher.path), "model": model_dir, "graph": graph}


def _scorer(data: Any, model_dir: Path) -> OnnxTaskScorer:
    from transformers import AutoTokenizer

    return OnnxTaskScorer(data, AutoTokenizer.from_pretrained(model_dir), model_dir, batch_size=16, threads=1)


def _control(planted: dict[str, Any], data: Any, tmp_path: Path, quantize: Any = None, **kw: Any) -> AccuracyControlResult:
    return accuracy_controlled_int8(
        planted["graph"], quantize or _dynamic(planted["graph"]), _scorer(data, planted["model"]),
        op_types=DYNAMIC_OPS, work_dir=tmp_path / "work", bootstrap=paired_bootstrap,
        resamples=1000, **{"max_loss": 2.0, **kw},
    )


# --- node groups of real exported graphs ----------------------------------------------------


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Unoptimised TorchScript exports of tiny BERT, RoBERTa and ModernBERT, and a dynamo
    export of BERT."""
    import torch

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("groups")
    out = {}
    for arch, exporter in (("bert", "torchscript"), ("roberta", "torchscript"), ("modernbert", "torchscript"),
                           ("bert", "dynamo")):
        model = tiny_model(arch, root / arch / "model")
        out[f"{arch}-{exporter}"] = export_onnx(
            model, root / arch / exporter, task_type="text-classification", exporter=exporter
        ).onnx_file
    return out


LAYER_GROUPS = [f"layer.{i}.{k}" for i in (0, 1) for k in ("qkv", "attention_output", "ffn_in", "ffn_out")]


@pytest.mark.parametrize("name,prefix", [
    ("bert-torchscript", "/bert/encoder/layer.{i}/"),
    ("roberta-torchscript", "/roberta/encoder/layer.{i}/"),
    ("modernbert-torchscript", "/model/layers.{i}/"),
])
def test_groups_of_torchscript_exports(exports: dict[str, Path], name: str, prefix: str) -> None:
    groups = {g.name: g for g in node_groups(exports[name], DYNAMIC_OPS)}
    assert list(groups) == ["embeddings", *LAYER_GROUPS, "head"]
    weights = {
        "bert": {"qkv": ["attention/self/query/MatMul", "attention/self/key/MatMul", "attention/self/value/MatMul"],
                 "attention_output": ["attention/output/dense/MatMul"], "ffn_in": ["intermediate/dense/MatMul"],
                 "ffn_out": ["output/dense/MatMul"]},
        "modernbert": {"qkv": ["attn/Wqkv/MatMul"], "attention_output": ["attn/Wo/MatMul"],
                       "ffn_in": ["mlp/Wi/MatMul"], "ffn_out": ["mlp/Wo/MatMul"]},
    }["modernbert" if name.startswith("modernbert") else "bert"]
    for i in (0, 1):
        for kind, suffixes in weights.items():
            nodes = groups[f"layer.{i}.{kind}"].nodes
            for suffix in suffixes:
                assert prefix.format(i=i) + suffix in nodes, (kind, nodes)
            if kind != "qkv":  # q/k/v also holds the attention products and transposes
                assert nodes == tuple(prefix.format(i=i) + s for s in suffixes)
    assert all("embeddings" in n for n in groups["embeddings"].nodes)
    assert groups["embeddings"].nodes  # the word embedding lookup at least
    head = groups["head"].nodes
    assert any("classifier" in n for n in head), head
    # shape arithmetic (Gathers of integer shapes) is left out
    every = {n for g in groups.values() for n in g.nodes}
    assert not every & {"/bert/Gather", "/roberta/Gather", "/model/Gather", "/bert/encoder/layer.1/attention/self/Gather"}


def test_groups_of_a_dynamo_export_come_from_module_scopes(exports: dict[str, Path]) -> None:
    import onnx

    groups = {g.name: g for g in node_groups(exports["bert-dynamo"], DYNAMIC_OPS)}
    assert list(groups) == ["embeddings", *LAYER_GROUPS, "head"]
    model = onnx.load(str(exports["bert-dynamo"]), load_external_data=False)
    scope = {n.name: {p.key: p.value for p in n.metadata_props}.get("pkg.torch.onnx.name_scopes", "")
             for n in model.graph.node}
    assert "bert.encoder.layer.1.output.dense" in scope[groups["layer.1.ffn_out"].nodes[0]]
    assert "bert.encoder.layer.0.intermediate.dense" in scope[groups["layer.0.ffn_in"].nodes[0]]
    assert len(groups["embeddings"].nodes) == 3


def test_groups_of_fused_attention_come_from_graph_position(planted: dict[str, Any]) -> None:
    """ONNX Runtime's fusion names the attention ``Attention_0``, ``Attention_1``: their layer
    is the one of the output projection they feed."""
    groups = {g.name: g for g in node_groups(planted["graph"], DYNAMIC_OPS)}
    assert groups["layer.0.qkv"].nodes == ("Attention_0",)
    assert groups["layer.1.qkv"].nodes == ("Attention_1",)
    assert groups["layer.1.ffn_out"].nodes == ("/bert/encoder/layer.1/output/dense/MatMul",)
    # the head's Gemms are rewritten to <name>_MatMul by dynamic quantisation before exclusion
    assert "/classifier/Gemm_MatMul" in groups["head"].nodes_to_exclude


@pytest.mark.parametrize("pattern", ["MatMul_{k}", "/bert/encoder/layer.1/MatMul_{k}"])
def test_groups_of_weighted_nodes_named_without_kind(exports: dict[str, Path], pattern: str) -> None:
    """Layer 1's weighted MatMuls renamed so that their names tell no kind: with no layer
    either (``MatMul_7``, as ONNX Runtime's fusions name nodes), layer and kind come from the
    named node each feeds (its bias ``Add``); with the layer only (``layer.1/MatMul_7``), the
    kinds come from their order in the layer."""
    import onnx

    model = onnx.load(str(exports["bert-torchscript"]))
    inits = {i.name for i in model.graph.initializer}
    renamed = {}
    for k, node in enumerate(model.graph.node):
        if "layer.1/" in node.name and node.op_type == "MatMul" and any(t in inits for t in node.input):
            renamed[node.name] = node.name = pattern.format(k=k)
    assert len(renamed) == 6
    named = {g.name: g for g in node_groups(exports["bert-torchscript"], DYNAMIC_OPS)}
    anon = {g.name: g for g in node_groups(model, DYNAMIC_OPS)}
    assert list(anon) == list(named)
    for kind in ("attention_output", "ffn_in", "ffn_out"):
        assert anon[f"layer.1.{kind}"].nodes == tuple(renamed[n] for n in named[f"layer.1.{kind}"].nodes)
    assert {renamed[n] for n in named["layer.1.qkv"].nodes if n in renamed} <= set(anon["layer.1.qkv"].nodes)
    assert anon["layer.0.ffn_out"] == named["layer.0.ffn_out"]


def test_a_graph_without_layers_gets_one_group_per_node() -> None:
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 4), dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm"), helper.make_node("Relu", ["y"], ["z"], name="r")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4])], [w],
    )
    assert node_groups(helper.make_model(graph), ["MatMul"]) == [NodeGroup("node:mm", "node", None, ("mm",))]


def test_normalized_mse() -> None:
    ref = np.array([3.0, 4.0])
    assert normalized_mse(ref, ref) == 0.0
    assert normalized_mse(ref, np.zeros(2)) == pytest.approx(1.0)
    assert normalized_mse(np.zeros(0), np.zeros(0)) == 0.0


# --- the search ---------------------------------------------------------------------------


def test_planted_outlier_breaks_per_tensor_int8(planted: dict[str, Any], data: Any, tmp_path: Path) -> None:
    """The premise: the planted fp32 model is as good as the fine-tuned one, and per-tensor
    int8 of it loses far more than 2 points, all of it in the planted group."""
    scorer = _scorer(data, planted["model"])
    reference = scorer.score(planted["graph"])
    ones = np.ones((1, len(reference)))
    fp32 = scorer.metric_matrix(ones, reference)["accuracy"][0]
    assert fp32 >= 0.95
    quantize = _dynamic(planted["graph"])
    quantize([], tmp_path / "int8.onnx")
    int8 = scorer.metric_matrix(ones, scorer.score(tmp_path / "int8.onnx"))["accuracy"][0]
    assert 100 * (int8 - fp32) < -20, (fp32, int8)
    groups = {g.name: g for g in node_groups(planted["graph"], DYNAMIC_OPS)}
    quantize(groups[PLANTED].nodes_to_exclude, tmp_path / "kept.onnx")
    kept = scorer.metric_matrix(ones, scorer.score(tmp_path / "kept.onnx"))["accuracy"][0]
    assert kept == fp32


def test_accuracy_control_keeps_exactly_the_planted_group(planted: dict[str, Any], data: Any, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        result = _control(planted, data, tmp_path, max_loss=2.0)
    assert result.certified and result.reason is None
    assert [g.name for g in result.kept_float] == [PLANTED]
    assert result.nodes_to_exclude == ["/bert/encoder/layer.1/output/dense/MatMul"]
    assert result.ranking[0][0] == PLANTED
    # the planted group's reversion removes nearly all the deviation; the next best does not
    assert result.ranking[0][1] < 0.1 * result.ranking[1][1]
    assert result.bound.low is not None and result.bound.low >= -2.0
    assert result.int8_bound.low is not None and result.int8_bound.low < -20
    assert result.bound.low <= result.bound.point <= result.bound.high
    groups = len(result.groups)
    assert groups == 10  # embeddings, 2 x (qkv, attention output, FFN in, FFN out), head
    # the all-int8 graph, one per group ranked; the first step reuses the ranking's graph
    assert result.quantizations == 1 + groups
    assert result.evaluations == 2
    assert [s.passed for s in result.steps] == [False, True]
    assert result.graph is not None and result.graph.exists()
    assert result.criterion == "paired bootstrap lower bound" and result.units == N_EVAL
    record = result.to_json()
    assert record["kept_float"][0]["name"] == PLANTED
    assert record["kept_float"][0]["nodes"] == ["/bert/encoder/layer.1/output/dense/MatMul"]
    assert record["ranking"]["order"][0]["group"] == PLANTED
    assert set(record["bound"]) == {"low", "point", "high"}
    json.dumps(record)
    result.raise_if_uncertified()  # certified: no error
    assert PLANTED in caplog.text


def test_a_loose_max_loss_keeps_nothing_in_float(planted: dict[str, Any], data: Any, tmp_path: Path) -> None:
    result = _control(planted, data, tmp_path, max_loss=100.0)
    assert result.certified and result.kept_float == [] and result.nodes_to_exclude == []
    assert result.quantizations == 1 and result.evaluations == 1 and result.ranking == []
    assert result.bound == result.int8_bound
    # the caller's all-int8 graph is reused when given
    _dynamic(planted["graph"])([], tmp_path / "given.onnx")
    again = _control(planted, data, tmp_path, max_loss=100.0, int8_graph=tmp_path / "given.onnx")
    assert again.quantizations == 0 and again.graph == tmp_path / "given.onnx" and again.bound == result.bound


def test_point_comparison_without_confidence(planted: dict[str, Any], data: Any, tmp_path: Path) -> None:
    result = accuracy_controlled_int8(
        planted["graph"], _dynamic(planted["graph"]), _scorer(data, planted["model"]), op_types=DYNAMIC_OPS,
        max_loss=2.0, confidence=None, work_dir=tmp_path / "work", ranking_subset_size=8,
    )
    assert result.certified and [g.name for g in result.kept_float] == [PLANTED]
    assert result.criterion == "point difference (no interval)"
    assert result.bound.low is None and result.bound.high is None and result.bound.point >= -2.0
    assert result.to_json()["confidence"] is None and result.to_json()["resamples"] is None
    assert len(result.ranking_rows) == 8


def test_when_no_group_explains_the_loss_nothing_is_certified(planted: dict[str, Any], data: Any,
                                                              tmp_path: Path) -> None:
    """A loss no node group explains (here a quantiser that ignores the exclusions): every
    graph with a quantised group fails, and the result says so instead of returning the
    all-float input as 'int8'."""
    per_tensor = _dynamic(planted["graph"])

    def ignores_exclusions(exclude: list[str], out: Path) -> None:
        per_tensor([], out)

    result = _control(planted, data, tmp_path, quantize=ignores_exclusions, max_loss=2.0)
    assert not result.certified and result.graph is None
    assert len(result.kept_float) == len(result.groups) - 1
    assert all(not s.passed for s in result.steps) and len(result.steps) == len(result.groups)
    assert "no int8 graph meets the bound" in (result.reason or "")
    with pytest.raises(StageError, match="no int8 graph meets the bound") as info:
        result.raise_if_uncertified()
    assert info.value.key == "config.max_loss"
    assert result.to_json()["certified"] is False


@pytest.mark.parametrize("kw,match", [
    ({"max_loss": -1.0}, "max_loss"),
    ({"confidence": 1.0}, "confidence"),
    ({"bootstrap": None}, "paired bootstrap"),
    ({"ranking_subset_size": 0}, "ranking_subset_size"),
])
def test_bad_arguments(planted: dict[str, Any], data: Any, tmp_path: Path, kw: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {"max_loss": 1.0, "bootstrap": paired_bootstrap, **kw}
    with pytest.raises(ValueError, match=match):
        accuracy_controlled_int8(planted["graph"], _dynamic(planted["graph"]), _scorer(data, planted["model"]),
                                 op_types=DYNAMIC_OPS, work_dir=tmp_path, **args)


def test_scorer_refuses_a_missing_split(planted: dict[str, Any], data: Any) -> None:
    from transformers import AutoTokenizer

    with pytest.raises(StageError, match="nope"):
        OnnxTaskScorer(data, AutoTokenizer.from_pretrained(planted["model"]), planted["model"], split="nope")


def test_scorer_outputs_drop_padding(planted: dict[str, Any], data: Any) -> None:
    """Per-row outputs are the same whatever the batch they were padded in."""
    scorer = _scorer(data, planted["model"])
    every = scorer.outputs(planted["graph"])
    some = scorer.outputs(planted["graph"], [3, 0])
    assert len(every) == len(scorer) == N_EVAL
    np.testing.assert_allclose(some[0], every[3], atol=1e-5)
    np.testing.assert_allclose(some[1], every[0], atol=1e-5)


def test_the_strategy_with_max_loss_keeps_the_planted_group_and_records_it(planted: dict[str, Any], data: Any,
                                                                           tmp_path: Path) -> None:
    """quantize.ort-dynamic with max_loss, end to end: the artifact keeps the planted group
    in float, passes the bound, and its lineage (hence card and report) says so."""
    from compressor.artifact import Artifact

    source = Artifact(name="baseline", path=planted["model"])
    art = apply_strategy("quantize.ort-dynamic", source, {"per_channel": False, "max_loss": 2.0},
                         tmp_path / "ok", data=data, stage_name="int8")
    record = art.lineage.extra["accuracy_control"]
    assert [g["name"] for g in record["kept_float"]] == [PLANTED]
    assert record["certified"] and record["bound"]["low"] >= -2.0
    assert record["latency_cost"]["ratio"] > 0 and "kept in float" in record["summary"]
    # the artifact holds the chosen graph: the planted node stays a float MatMul
    import onnx

    nodes = {n.name: n.op_type for n in onnx.load(str(Path(art.path) / "model.onnx")).graph.node}
    assert nodes["/bert/encoder/layer.1/output/dense/MatMul"] == "MatMul"
    assert "MatMulInteger" in set(nodes.values())
