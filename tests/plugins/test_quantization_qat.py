"""quantize.qat (issue 25, item 4): quantization-aware training distilled from the fp32 input,
exported as a QDQ int8 ONNX graph.

The planted weight outliers: in both layers of a fine-tuned tiny BERT, one input channel of the
attention output projection and of the FFN output projection is made dead (the value channel,
and the FFN intermediate channel, have zero weights and bias, so the channel is exactly 0) and
that channel's weight column is set to 30. The fp32 model computes exactly what it computed
before. Per-tensor int8 weights then get a step of 30/127, which rounds every other weight of
those projections (|w| < 0.1) to zero: post-training int8 (ONNX Runtime dynamic, and the same
QDQ settings calibrated but untrained) predicts one class. QAT trains the weights through the
straight-through estimator until they land on the coarse grid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from compressor.artifact import Artifact
from compressor.errors import StageError
from compressor.testing import apply_strategy, tiny_model, tiny_task_data

pytestmark = pytest.mark.filterwarnings("ignore")

OUTLIER = 30.0
N_EVAL = 64
PER_TENSOR = {"per_channel": False, "reduce_range": False}


@pytest.fixture(scope="module")
def data() -> Any:
    return tiny_task_data(n_train=128, n_eval=N_EVAL)


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory, data: Any) -> Path:
    """A 2-layer tiny BERT fine-tuned on the kit's sentiment task, with the planted weight
    outliers (module docstring)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("qat")
    base = tiny_model("bert", root / "random", config={"num_hidden_layers": 2})
    teacher = apply_strategy(
        "finetune",
        base,
        {
            "max_steps": 80,
            "batch_size": 16,
            "learning_rate": 2e-3,
            "warmup_ratio": 0.1,
            "logging_steps": 100,
        },
        root / "teacher",
        data=data,
        stage_name="teacher",
    )
    model = AutoModelForSequenceClassification.from_pretrained(teacher.path)
    with torch.no_grad():
        for layer in model.bert.encoder.layer:
            layer.intermediate.dense.weight[0].zero_()
            layer.intermediate.dense.bias[0] = 0.0
            layer.output.dense.weight[:, 0] = OUTLIER
            layer.attention.self.value.weight[0].zero_()
            layer.attention.self.value.bias[0] = 0.0
            layer.attention.output.dense.weight[:, 0] = OUTLIER
    out = root / "planted"
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(teacher.path).save_pretrained(out)
    return out


def _accuracy(data: Any, model_dir: Path, graph: Path) -> float:
    from compressor_quantization.accuracy_control import OnnxTaskScorer
    from transformers import AutoTokenizer

    scorer = OnnxTaskScorer(
        data,
        AutoTokenizer.from_pretrained(model_dir),
        model_dir,
        batch_size=32,
        threads=1,
    )
    return float(
        scorer.metric_matrix(np.ones((1, len(scorer))), scorer.score(graph))[
            "accuracy"
        ][0]
    )


def test_qat_beats_post_training_int8_on_planted_outliers(
    planted: Path, data: Any, tmp_path: Path
) -> None:
    import onnx

    source = Artifact(name="planted", path=planted)
    fp32 = apply_strategy(
        "export.onnx", source, {}, tmp_path / "fp32", data=data, stage_name="fp32"
    )
    ptq = apply_strategy(
        "quantize.ort-dynamic",
        source,
        {**PER_TENSOR, "saturation_check": False},
        tmp_path / "ptq",
        data=data,
        stage_name="ptq",
    )
    qat = apply_strategy(
        "quantize.qat",
        source,
        {
            **PER_TENSOR,
            "max_steps": 60,
            "batch_size": 16,
            "learning_rate": 5e-3,
            "warmup_ratio": 0.0,
            "calibration_samples": 64,
            "logging_steps": 1000,
        },
        tmp_path / "qat",
        data=data,
        stage_name="qat",
    )
    acc = {
        name: _accuracy(data, planted, Path(art.path) / "model.onnx")
        for name, art in (("fp32", fp32), ("ptq", ptq), ("qat", qat))
    }
    # the premise: the planted model is intact in fp32 and post-training per-tensor int8 breaks it
    assert acc["fp32"] >= 0.95, acc
    assert acc["ptq"] <= acc["fp32"] - 0.2, acc
    # QAT scores at least as well as post-training int8, and here recovers the fp32 model
    assert acc["qat"] >= acc["ptq"], acc
    assert acc["qat"] >= acc["fp32"] - 0.05, acc
    # the stage's own comparison: the same QDQ settings calibrated but untrained break too
    extra = qat.lineage.extra
    comparison = extra["ptq_comparison"]
    assert comparison["metric"] == "accuracy" and comparison["examples"] == N_EVAL
    assert comparison["qat"] == pytest.approx(acc["qat"])
    assert (
        comparison["ptq"] <= acc["fp32"] - 0.2 and comparison["qat"] > comparison["ptq"]
    )
    # int8 operators: Q/DQ pairs in the file, integer MatMul kernels in ONNX Runtime's graph
    record = extra["qat"]
    assert (
        record["quantized_modules"] == 14
    )  # 2 x (q, k, v, attention out, FFN in, FFN out) + pooler + head
    assert record["per_channel"] is False and record["reduce_range"] is False
    assert extra["int8_nodes"]["QuantizeLinear"] == 14
    assert extra["int8_nodes"]["DequantizeLinear"] == 28
    kernels = extra["int8_kernels"]["counts"]
    assert (
        kernels.get("MatMulIntegerToFloat", 0) + kernels.get("QLinearMatMul", 0) >= 12
    ), kernels
    # the weights are stored as int8 initialisers feeding DequantizeLinear
    graph = onnx.load(str(Path(qat.path) / "model.onnx")).graph
    inits = {i.name: i for i in graph.initializer}
    weights = [
        inits[n.input[0]]
        for n in graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in inits
    ]
    assert len(weights) == extra["weights_folded"] == 14
    assert all(w.data_type == onnx.TensorProto.INT8 for w in weights)
    # summaries reach the model card and the report
    summaries = qat.lineage.summaries()
    assert {"qat", "int8_kernels", "int8_settings", "ptq_comparison"} <= set(summaries)
    assert (
        "MatMulIntegerToFloat" in summaries["int8_kernels"]
        and "T=2" in summaries["qat"]
    )


def test_qat_token_classification_per_channel(tmp_path: Path) -> None:
    """Another task: token classification, per-channel 7-bit weights (the avx2 preset), labels
    and distillation together; the graph's outputs are per token."""
    import onnxruntime as ort

    data = tiny_task_data(n_train=32, n_eval=16, task="token-classification")
    base = tiny_model("bert", tmp_path / "random", task="token-classification")
    art = apply_strategy(
        "quantize.qat",
        base,
        {
            "preset": "avx2",
            "max_steps": 4,
            "batch_size": 8,
            "calibration_samples": 16,
            "alpha_task": 1.0,
            "compare_ptq": False,
        },
        tmp_path / "qat",
        data=data,
        stage_name="qat",
    )
    extra = art.lineage.extra
    assert extra["qat"]["per_channel"] is True and extra["qat"]["reduce_range"] is True
    assert "[-64, 64]" in extra["qat"]["weights"]
    assert "ptq_comparison" not in extra
    assert extra["int8_kernels"]["counts"].get("MatMulIntegerToFloat", 0) >= 12
    assert set(extra["qat"]["training"]) >= {"train_loss", "global_step"}
    sess = ort.InferenceSession(
        str(Path(art.path) / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    assert [o.name for o in sess.get_outputs()] == ["logits"]
    feed = {i.name: np.ones((2, 7), dtype=np.int64) for i in sess.get_inputs()}
    assert sess.run(None, feed)[0].shape == (2, 7, 5)


@pytest.mark.parametrize(
    "config,match",
    [
        ({"alpha_ce": 0, "alpha_task": 0, "alpha_cos": 0}, "at least one"),
        ({"temperature": 0}, "temperature"),
        ({"ema_decay": 1.0}, "ema_decay"),
        ({"per_channel": "sometimes"}, "per_channel"),
        ({"opset": 11}, "opset"),
        ({"range_update": "minmax"}, "range_update"),
    ],
)
def test_bad_config_is_refused_with_its_key(config: dict[str, Any], match: str) -> None:
    from compressor_quantization import QATConfig
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=match):
        QATConfig.model_validate(config)


def test_excluding_every_linear_is_a_stage_error(tmp_path: Path) -> None:
    data = tiny_task_data(n_train=16, n_eval=8)
    base = tiny_model("bert", tmp_path / "random")
    with pytest.raises(StageError, match="no nn.Linear") as info:
        apply_strategy(
            "quantize.qat",
            base,
            {"exclude_modules": ["*"], "max_steps": 1},
            tmp_path / "qat",
            data=data,
            stage_name="qat",
        )
    assert info.value.key == "config.exclude_modules"


def test_fake_quant_linear_matches_its_qdq_arithmetic() -> None:
    """The module computes DQ(Q_u8(x)) @ DQ(Q_s8(W^T)) + b with the documented parameters."""
    import torch
    from compressor_quantization.qat import FakeQuantLinear
    from torch import nn

    torch.manual_seed(0)
    linear = nn.Linear(8, 4)
    fq = FakeQuantLinear(linear, per_channel=True, reduce_range=True, ema_decay=0.9)
    x = torch.randn(3, 5, 8)
    fq(x)  # calibrate: the range becomes x's min and max
    assert float(fq.act_min) == pytest.approx(float(x.min())) and float(
        fq.act_max
    ) == pytest.approx(float(x.max()))
    fq.freeze()
    got = fq(x)
    scale = (x.max() - x.min()) / 255
    zero = torch.round(-x.min() / scale).clamp(0, 255)
    xq = (torch.clamp(torch.round(x / scale) + zero, 0, 255) - zero) * scale
    wt = linear.weight.detach().t()
    ws = wt.abs().amax(dim=0) / 64
    wq = torch.round(wt / ws) * ws
    assert int((wt / ws).round().abs().max()) == 64
    torch.testing.assert_close(
        got, xq @ wq + linear.bias.detach(), atol=1e-5, rtol=1e-5
    )
    # EMA mode moves the range towards a new batch by (1 - decay)
    fq.unfreeze("ema")
    fq.train()
    before = float(fq.act_max)
    fq(x * 2)
    assert float(fq.act_max) == pytest.approx(
        0.9 * before + 0.1 * float((x * 2).max()), rel=1e-5
    )
