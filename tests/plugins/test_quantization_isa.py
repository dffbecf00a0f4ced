"""ISA-aware ONNX Runtime int8 settings and the saturation check, end to end on tiny models.

Faked CPUs (``COMPRESSOR_CPUINFO``, the files of ``test_quantization_hardware``) decide
``preset: auto``; the quantised graph's weights show what reached ONNX Runtime: with
``reduce_range`` the int8 weights lie in [-64, 64] (ONNX Runtime's reduced int8 range;
255 x 64 x 2 = 32640 fits VPMADDUBSW's 16-bit sums), without it per-channel weights reach 127.

The planted-saturation model saturates only where ONNX Runtime's u8s8 kernels use
VPMADDUBSW (AVX2, AVX-512 without VNNI: this project's AMD EPYC). Elsewhere its detection is
skipped with the reason, and the mechanism is tested with a faked deviation measurement.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest

from compressor import testing
from compressor.errors import StageError
from compressor_quantization import ort as qort
from compressor_quantization.hardware import SATURATING_PRESETS, choose_int8_settings, host_preset

from test_quantization_hardware import fake_cpu

HOST = host_preset()


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return testing.tiny_model("bert", tmp_path_factory.mktemp("tiny-bert") / "model")


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT whose first FFN input saturates VPMADDUBSW: LayerNorm bias +8 on 8 hidden
    dimensions (their activations quantise near 255) and ``intermediate.dense`` weights 0.5
    on them (each output column's largest weight: 127 per channel), so adjacent u8 x s8
    products add to 255 x 127 x 2 = 64770 > 32767."""
    import torch
    from transformers import AutoModelForSequenceClassification

    folder = testing.tiny_model("bert", tmp_path_factory.mktemp("planted") / "model")
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    with torch.no_grad():
        layer = model.bert.encoder.layer[0]
        layer.attention.output.LayerNorm.bias[:8] = 8.0
        layer.intermediate.dense.weight[:, :8] = 0.5
    model.save_pretrained(folder)
    return folder


def int8_weights(graph: Path) -> np.ndarray:
    """Every 8-bit matrix-product weight of a quantised graph, flattened: the ``*_quantized``
    tensors of dynamic (QOperator) graphs, the 8-bit inputs of ``DequantizeLinear`` in QDQ
    graphs. The embedding tables are left out: ONNX Runtime quantises a ``Gather``'s table
    as asymmetric u8 at full range whatever the weight settings (a lookup, no products)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(graph))
    inits = {i.name: i for i in model.graph.initializer if "embeddings" not in i.name}
    names = {n for n in inits if n.endswith("_quantized")}
    names |= {n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits}
    arrays = [numpy_helper.to_array(inits[n]) for n in names]
    arrays = [a.ravel() for a in arrays if a.dtype in (np.int8, np.uint8) and a.size > 1]
    assert arrays, f"no 8-bit weights in {graph}"
    return np.concatenate([a.astype(np.int64) for a in arrays])


def signed_weights(graph: Path) -> np.ndarray:
    weights = int8_weights(graph)
    assert weights.min() < 0, "expected s8 weights"
    return weights


# --- preset: auto, end to end -------------------------------------------------------------


@pytest.mark.parametrize(
    "cpu, static, reduce_range",
    [
        ("epyc-milan-avx2", False, True),
        ("xeon-cascadelake-vnni", False, False),
        ("xeon-skylake-avx512", True, True),
        ("xeon-sapphirerapids-amx", True, False),
    ],
)
def test_auto_settings_reach_onnx_runtime(cpu, static, reduce_range, tiny_bert, tmp_path, monkeypatch):
    cpuinfo = fake_cpu(monkeypatch, tmp_path, cpu)
    strategy = "quantize.ort-static" if static else "quantize.ort-dynamic"
    config = {"calibration_samples": 8, "max_length": 32} if static else {}
    art = testing.apply_strategy(strategy, tiny_bert, config, tmp_path, stage_name="q")
    extra = art.lineage.extra
    settings = extra["int8_settings"]
    assert (settings["weight_type"], settings["per_channel"], settings["reduce_range"]) == ("QInt8", True, reduce_range)
    assert extra["reduce_range"] is reduce_range and extra["per_channel"] is True and extra["weight_type"] == "QInt8"
    assert settings["chosen_by"].startswith("auto (cpu flags ") and f"COMPRESSOR_CPUINFO={cpuinfo}" in settings["chosen_by"]
    if cpu.endswith("amx"):
        assert "amx_int8" in settings["chosen_by"] and "AMX" in settings["reason"]
    assert settings["summary"].startswith(f"int8 u8s8 ({extra['preset']}), per-channel, reduce_range ")
    # what ONNX Runtime received: 7-bit weights, or full 8-bit per-channel ones
    weights = signed_weights(art.path / "model.onnx")
    if reduce_range:
        assert weights.min() >= -64 and weights.max() <= 64
        assert extra["saturation_check"]["summary"].startswith("reduce_range already on")
    else:
        assert np.abs(weights).max() == 127
    check = extra["saturation_check"]
    assert check["ran"] and check["split"] == "validation" and check["samples"] == 32
    assert 0 <= check["deviation"] < 1 and check["host_kernels"] == HOST


def test_recipe_values_win_over_auto(tiny_bert, tmp_path, monkeypatch):
    fake_cpu(monkeypatch, tmp_path, "epyc-milan-avx2")
    art = testing.apply_strategy(
        "quantize.ort-dynamic", tiny_bert,
        {"weight_type": "uint8", "per_channel": False, "saturation_check": False}, tmp_path, stage_name="q",
    )
    extra = art.lineage.extra
    assert extra["weight_type"] == "QUInt8" and extra["per_channel"] is False and extra["reduce_range"] is False
    assert extra["int8_settings"]["chosen_by"].endswith("recipe sets weight_type uint8, per_channel false")
    assert extra["saturation_check"] == {"ran": False, "summary": "off (saturation_check: false)"}
    weights = int8_weights(art.path / "model.onnx")
    assert weights.min() >= 0 and weights.max() > 127  # u8 weights, full range (zero point 128)
    again = testing.apply_strategy(
        "quantize.ort-dynamic", tiny_bert, {"preset": "avx2", "weight_type": "uint8", "reduce_range": True,
                                            "saturation_check": False}, tmp_path, stage_name="q2",
    )
    assert again.lineage.extra["int8_settings"]["chosen_by"].startswith("recipe (preset avx2)")
    reduced = int8_weights(again.path / "model.onnx")  # 7 bits: [0, 127] around the zero point 64
    assert reduced.min() >= 0 and reduced.max() - reduced.min() <= 128


# --- the saturation check -----------------------------------------------------------------


def test_planted_saturation_is_detected_and_avoided(planted, tmp_path, caplog):
    """8-bit per-channel weights on the AVX2 preset, as a recipe that turns reduce_range off
    would get them: on this CPU's VPMADDUBSW kernels the planted FFN saturates."""
    with caplog.at_level(logging.INFO, logger="compressor.testing"):
        art = testing.apply_strategy(
            "quantize.ort-dynamic", planted, {"preset": "avx2", "reduce_range": False}, tmp_path, stage_name="q"
        )
    check = art.lineage.extra["saturation_check"]
    if HOST not in SATURATING_PRESETS:
        # the target (avx2) saturates, this CPU's kernels do not: recorded, nothing tried
        assert check["reduce_range_deviation"] is None and not check["saturation_detected"]
        pytest.skip(f"this CPU's int8 kernels ({HOST}) do not saturate (VNNI, AMX or ARM): nothing to detect here")
    assert check["saturation_detected"] and check["avoided"]
    assert check["deviation"] > check["tolerance"] and check["reduce_range_deviation"] <= 0.5 * check["deviation"]
    assert check["summary"].startswith("saturation detected and avoided")
    extra = art.lineage.extra
    assert extra["reduce_range"] is True and extra["int8_settings"]["reduce_range"] is True
    assert extra["int8_settings"]["chosen_by"].endswith("reduce_range by the saturation check")
    assert "saturation check measured" in extra["int8_settings"]["reason"]
    weights = signed_weights(art.path / "model.onnx")
    assert weights.min() >= -64 and weights.max() <= 64  # the kept graph is the 7-bit one
    assert any("saturation detected and avoided" in r.getMessage() and r.levelno == logging.WARNING
               for r in caplog.records)


def test_planted_saturation_with_reduce_range_only_records_the_deviation(planted, tmp_path):
    art = testing.apply_strategy("quantize.ort-dynamic", planted, {"preset": "avx2"}, tmp_path, stage_name="q")
    check = art.lineage.extra["saturation_check"]
    assert art.lineage.extra["reduce_range"] is True  # auto on avx2
    assert check["reduce_range_deviation"] is None and not check["saturation_detected"]
    assert check["deviation"] < check["tolerance"]  # 7-bit weights: no saturation anywhere


@pytest.mark.parametrize("static", [False, True])
def test_a_faked_deviation_drives_the_strategy(static, tiny_bert, tmp_path, monkeypatch):
    """The mechanism on any CPU: the first graph measures 0.4, the reduce_range one 0.03."""
    measured: list[Path] = []

    def fake_deviation(reference: Path, candidate: Path, batches: list) -> float:
        measured.append(candidate)
        assert reference.name == "model.onnx" and sum(len(b["input_ids"]) for b in batches) == 32
        return 0.4 if len(measured) == 1 else 0.03

    monkeypatch.setattr(qort, "output_deviation", fake_deviation)
    monkeypatch.setattr(qort, "host_preset", lambda: "avx2")
    strategy = "quantize.ort-static" if static else "quantize.ort-dynamic"
    config = {"preset": "avx2", "reduce_range": False}
    if static:
        config |= {"calibration_samples": 8, "max_length": 32}
    art = testing.apply_strategy(strategy, tiny_bert, config, tmp_path, stage_name="q")
    check = art.lineage.extra["saturation_check"]
    assert len(measured) == 2 and measured[1].name == "quantized-reduce-range.onnx"
    assert (check["deviation"], check["reduce_range_deviation"]) == (0.4, 0.03)
    assert check["saturation_detected"] and check["avoided"] and art.lineage.extra["reduce_range"] is True
    weights = signed_weights(art.path / "model.onnx")
    assert weights.min() >= -64 and weights.max() <= 64


def _fake(values):
    calls: list[str] = []
    measured = iter(values)

    def measure(graph: Path):
        calls.append(graph.name)
        return next(measured), {"split": "validation", "samples": 32, "max_length": 64, "metric": "m"}

    def requantize() -> Path:
        calls.append("requantize")
        return Path("reduced.onnx")

    return calls, measure, requantize


@pytest.mark.parametrize(
    "preset, reduce_range, host, values, kept, calls, detected",
    [
        # 8-bit weights far off, 7-bit ones at most half as far: saturation, avoided
        ("avx2", False, "avx2", [0.4, 0.03], "reduced.onnx", ["q.onnx", "requantize", "reduced.onnx"], True),
        ("avx512", False, "avx512", [0.2, 0.1], "reduced.onnx", ["q.onnx", "requantize", "reduced.onnx"], True),
        # far off, but reduce_range does not halve it: not saturation, the 8-bit graph stays
        ("avx2", False, "avx2", [0.2, 0.15], "q.onnx", ["q.onnx", "requantize", "reduced.onnx"], False),
        # far off where nothing can saturate (VNNI here and there): quantisation error, no retry
        ("avx512_vnni", False, "avx512_vnni", [0.2], "q.onnx", ["q.onnx"], False),
        ("arm64", False, "arm64", [0.2], "q.onnx", ["q.onnx"], False),
        # within the tolerance: nothing more to do
        ("avx2", False, "avx2", [0.05], "q.onnx", ["q.onnx"], False),
        # reduce_range already on: just the deviation
        ("avx2", True, "avx2", [0.4], "q.onnx", ["q.onnx"], False),
        # this CPU's kernels are not the target's (a preset for another machine): recorded only
        ("avx2", False, "avx512_vnni", [0.4], "q.onnx", ["q.onnx"], False),
        ("avx512_vnni", False, "avx2", [0.4], "q.onnx", ["q.onnx"], False),
        ("arm64", False, None, [0.4], "q.onnx", ["q.onnx"], False),
    ],
)
def test_saturation_check_logic(preset, reduce_range, host, values, kept, calls, detected):
    settings = choose_int8_settings(preset, reduce_range=reduce_range)
    _expect_check(settings, host, values, kept, calls, detected)


def test_u8_weights_are_never_retried():
    """u8u8 kernels widen to 16 bits before multiplying: no saturation on any CPU."""
    settings = choose_int8_settings("avx2", weight_type="uint8")
    record = _expect_check(settings, "avx2", [0.3], "q.onnx", ["q.onnx"], False)
    assert "can saturate with u8 weights" in record["summary"]


def _expect_check(settings, host, values, kept, calls, detected):
    reduce_range = settings.reduce_range
    seen, measure, requantize = _fake(values)
    graph, after, record = qort.saturation_check(
        settings, Path("q.onnx"), requantize=requantize, measure=measure, tolerance=0.05, host=host
    )
    assert graph.name == kept and seen == calls
    assert record["saturation_detected"] is detected and record["avoided"] is detected
    assert record["deviation"] == values[0] and record["host_kernels"] == host
    assert record["reduce_range_deviation"] == (values[1] if len(values) > 1 else None)
    assert after.reduce_range is (reduce_range or detected)
    assert after == settings or detected
    assert record["split"] == "validation" and record["tolerance"] == 0.05 and record["summary"]
    return record


def test_check_falls_back_to_another_split_and_can_be_turned_off(tiny_bert, tmp_path, monkeypatch):
    data = testing.tiny_task_data()
    no_validation = dataclasses.replace(data, splits={k: v for k, v in data.splits.items() if k != "validation"})
    art = testing.apply_strategy(
        "quantize.ort-dynamic", tiny_bert, {"preset": "avx512_vnni"}, tmp_path, stage_name="q", data=no_validation
    )
    assert art.lineage.extra["saturation_check"]["split"] == "test"
    empty = dataclasses.replace(data, splits={k: v.select([]) for k, v in data.splits.items()})
    with pytest.raises(StageError, match="the saturation check needs examples") as info:
        testing.apply_strategy("quantize.ort-dynamic", tiny_bert, {"preset": "avx512_vnni"}, tmp_path,
                               stage_name="q2", data=empty)
    assert info.value.key == "config.saturation_split"

    def never(*args, **kwargs):
        raise AssertionError("measured with saturation_check off")

    monkeypatch.setattr(qort, "output_deviation", never)
    off = testing.apply_strategy("quantize.ort-dynamic", tiny_bert, {"preset": "avx2", "saturation_check": False},
                                 tmp_path, stage_name="q3")
    assert off.lineage.extra["saturation_check"]["ran"] is False


def test_output_deviation_is_relative_and_skips_padding(tmp_path):
    """Two graphs over ``input_ids`` (as float): the reference, and one that is off by 100 on
    padding positions and by 1 on one real position."""
    import onnx
    from onnx import TensorProto, helper

    def graph(name: str, pad_error: float, real_error: float) -> Path:
        ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "s"])
        mask = helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["b", "s"])
        out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", "s"])
        nodes = [
            helper.make_node("Cast", ["input_ids"], ["x"], to=TensorProto.FLOAT),
            helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
            helper.make_node("Sub", ["one", "m"], ["pad"]),
            helper.make_node("Mul", ["pad", "pad_error"], ["e1"]),
            helper.make_node("Equal", ["input_ids", "seven"], ["is7"]),
            helper.make_node("Cast", ["is7"], ["f7"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["f7", "real_error"], ["e2"]),
            helper.make_node("Add", ["x", "e1"], ["y"]),
            helper.make_node("Add", ["y", "e2"], ["logits"]),
        ]
        consts = [
            helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
            helper.make_tensor("pad_error", TensorProto.FLOAT, [], [pad_error]),
            helper.make_tensor("real_error", TensorProto.FLOAT, [], [real_error]),
            helper.make_tensor("seven", TensorProto.INT64, [], [7]),
        ]
        model = helper.make_model(helper.make_graph(nodes, name, [ids, mask], [out], consts),
                                  opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        path = tmp_path / f"{name}.onnx"
        onnx.save(model, str(path))
        return path

    batch = {
        "input_ids": np.array([[1, 7, 20, 0], [3, 4, 0, 0]], dtype=np.int64),
        "attention_mask": np.array([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=np.int64),
    }
    reference = graph("reference", 0.0, 0.0)
    assert qort.output_deviation(reference, graph("padding-only", 100.0, 0.0), [batch]) == 0.0
    assert qort.output_deviation(reference, graph("one-off", 100.0, 1.0), [batch]) == pytest.approx(1 / 20)
    # a graph without the mask input still runs: only the inputs it declares are fed
    assert qort.output_deviation(reference, reference, [batch, batch]) == 0.0


def test_resolve_reads_the_faked_cpu_and_names_it(tmp_path, monkeypatch):
    path = fake_cpu(monkeypatch, tmp_path, "graviton3-arm64")
    config = qort_config()
    settings, how, flags = qort.resolve_int8_settings(config)
    assert settings.preset == "arm64" and how == "cpu flags (aarch64)" and "asimddp" in flags
    assert settings.chosen_by == f"auto (cpu flags {' '.join(flags)} on aarch64, faked by COMPRESSOR_CPUINFO={path})"
    assert not settings.reduce_range and settings.per_channel and settings.weight_type == "QInt8"
    named = qort.resolve_int8_settings(qort_config(preset="avx512", per_channel=False))[0]
    assert named.chosen_by == "recipe (preset avx512); recipe sets per_channel false" and not named.reduce_range


def qort_config(**kw):
    from compressor_quantization.plugin import OrtDynamicConfig

    return OrtDynamicConfig(**kw)


def test_onnxruntime_root_logging_goes_to_our_log_and_the_root_is_left_as_it_was(monkeypatch, capsys):
    """ORT's quantiser logs with ``logging.warning`` on the root logger: inside the stage
    that lands in compressor's log (its advice at debug level), not as ``WARNING:root:`` on
    stderr, and no handler stays behind."""
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    seen: list[tuple[int, str]] = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append((record.levelno, record.getMessage()))

    ours = logging.getLogger("compressor.onnxruntime")
    keep = Keep(level=logging.DEBUG)
    ours.addHandler(keep)
    monkeypatch.setattr(ours, "level", logging.DEBUG)
    try:
        with qort._root_logging_untouched():
            logging.warning("Please consider to run pre-processing before quantization. Refer to ...")
            logging.warning("Inference failed or unsupported type to quantize for tensor 'x'")
    finally:
        ours.removeHandler(keep)
    assert root.handlers == []
    assert "WARNING:root" not in capsys.readouterr().err
    assert seen == [
        (logging.DEBUG, "onnxruntime: Please consider to run pre-processing before quantization. Refer to ..."),
        (logging.WARNING, "onnxruntime: Inference failed or unsupported type to quantize for tensor 'x'"),
    ]
