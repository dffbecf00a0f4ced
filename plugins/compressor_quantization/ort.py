"""ONNX Runtime int8: export (PyTorch input), graph optimisation, dynamic or static
(calibrated) quantisation with ``onnxruntime.quantization``.

A PyTorch input is exported and optimised by the core's :mod:`compressor.onnx_export`, the
same path as the ``export.onnx`` strategy.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from compressor.errors import StageError
from compressor.onnx_export import (
    INT8_OPERATORS,
    ONNX_FILE,
    attention_fusion,
    capped_length,
    export_onnx,
    op_counts,
    optimize_onnx,
)

from .hardware import choose_ort_preset, cpu_flags, machine

if TYPE_CHECKING:  # pragma: no cover
    from compressor.artifact import Artifact
    from compressor.strategy import StageContext, Strategy

#: Weight and activation types of each preset, as optimum's ``AutoQuantizationConfig``
#: defined them: unsigned activations everywhere; unsigned weights on AVX2 (no signed int8
#: dot product without VNNI: ``VPMADDUBSW`` takes u8 x s8 and saturates), signed elsewhere.
PRESET_TYPES = {
    "avx512_vnni": ("QUInt8", "QInt8"),
    "avx512": ("QUInt8", "QInt8"),
    "avx2": ("QUInt8", "QUInt8"),
    "arm64": ("QUInt8", "QInt8"),
}

def default_operators(static: bool) -> list[str]:
    """Operator types quantised when the recipe names none: every type ONNX Runtime has an
    int8 form for, its ``IntegerOpsRegistry`` (dynamic, QOperator) or ``QDQRegistry``
    (static, QDQ), which is what optimum's presets used. Static quantisation then drops
    ``exclude_operators``."""
    from onnxruntime.quantization.registry import IntegerOpsRegistry, QDQRegistry

    return list(QDQRegistry if static else IntegerOpsRegistry)


def resolve_preset(requested: str) -> tuple[str, str, list[str]]:
    """The preset to use and why.

    :returns: ``(preset, reason, relevant_flags)``: ``reason`` is ``"recipe"`` or
        ``"cpu flags"``; ``relevant_flags`` the SIMD flags seen (for the lineage).
    :raises StageError: when ``auto`` finds no fitting preset.
    """
    flags = cpu_flags()
    arch = machine()
    seen = sorted(f for f in flags if f.startswith(("avx2", "avx512", "amx")) or f in ("asimd", "asimddp"))
    if requested != "auto":
        return requested, "recipe", seen
    return choose_ort_preset(flags, arch), f"cpu flags ({arch})", seen


def prepare_for_quantization(onnx_file: Path, config_dir: Path, out_dir: Path) -> Path:
    """Copy the graph with ONNX Runtime's symbolic shape inference applied.

    ONNX Runtime's quantizer needs the type of every tensor it quantises; ONNX's own shape
    inference stops at ONNX Runtime's contrib operators (the fused ``Attention``,
    ``SkipLayerNormalization`` of an optimised graph), so the symbolic inference of
    ``onnxruntime.tools.symbolic_shape_infer`` fills them in first. Where it meets an operator
    it does not know (``FusedMatMul``, which ONNX Runtime's level-2 optimisation makes of
    ModernBERT's attention), it runs again guessing that operator's output rank from its
    first input.

    :returns: ``out_dir / "model.onnx"`` (``out_dir`` also gets ``config.json``).
    :raises StageError: when the inference fails both ways.
    """
    import onnx
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    out_dir.mkdir(parents=True, exist_ok=True)
    model = onnx.load(str(onnx_file))
    # On failure the tool saves 'sym_shape_infer_temp.onnx' (+ data) into the working
    # directory: run it from a scratch folder so the user's folder stays clean.
    inferred = None
    for guess in (False, True):
        try:
            with tempfile.TemporaryDirectory(prefix="compressor-shape-") as scratch, _in_folder(Path(scratch)):
                inferred = SymbolicShapeInference.infer_shapes(model, auto_merge=True, guess_output_rank=guess)
            break
        except Exception as exc:  # noqa: BLE001 - the tool raises bare Exceptions
            if guess:
                raise StageError(f"symbolic shape inference failed on {onnx_file.name}: {exc}") from exc
    if inferred is not None:
        model = inferred
    onnx.save(model, str(out_dir / ONNX_FILE))
    shutil.copyfile(config_dir / "config.json", out_dir / "config.json")
    return out_dir / ONNX_FILE


def calibration_batches(
    context: "StageContext",
    tokenizer: Any,
    input_names: set[str],
    *,
    split: str,
    samples: int,
    max_length: int,
    seed: int,
    batch_size: int,
) -> list[dict[str, Any]]:
    """``samples`` examples drawn (seeded, without replacement) from ``split``, tokenised to
    exactly ``max_length`` tokens, cut into batches: int64 arrays ``(batch, max_length)``
    keyed by graph input name.

    :raises StageError: for a missing or empty split.
    """
    import numpy as np

    try:
        data = context.data.split(split)
    except KeyError as exc:
        raise StageError(str(exc.args[0]), key="config.calibration_split") from None
    if len(data) == 0:
        raise StageError(f"calibration split {split!r} is empty", key="config.calibration_split")
    index = sorted(random.Random(seed).sample(range(len(data)), min(samples, len(data))))
    rows = context.data.task.plain_text(data.select(index))
    enc = tokenizer(
        list(rows["text"]),
        list(rows["text_pair"]) if "text_pair" in rows.column_names else None,
        padding="max_length",
        truncation=True,
        max_length=max_length,
        return_tensors="np",
    )
    columns = {k: np.asarray(v, dtype=np.int64) for k, v in enc.items() if k in input_names}
    n = len(index)
    return [{k: v[i:i + batch_size] for k, v in columns.items()} for i in range(0, n, batch_size)]


def _reader(batches: list[dict[str, Any]]) -> Any:
    """An ``onnxruntime.quantization.CalibrationDataReader`` over ``batches``."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(batches)

        def get_next(self) -> dict[str, Any] | None:
            return next(self._it, None)

        def rewind(self) -> None:
            self._it = iter(batches)

    return _Batches()


def run_ort_quantization(
    strategy: "Strategy", artifact: "Artifact", config: Any, context: "StageContext", *, static: bool
) -> "Artifact":
    """Export if needed, optimise, (calibrate,) quantise; see :class:`~.plugin.OrtDynamic`
    and :class:`~.plugin.OrtStatic`."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

    preset, reason, flags = resolve_preset(config.preset)
    source = Path(artifact.path)
    tokenizer = context.load_tokenizer(artifact)
    # absolute: the static calibrator runs with the scratch folder as the working directory
    scratch = (Path(context.work_dir) / "ort-quantization").resolve()
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)

    exporter = None
    attention: dict[str, Any] | None = None
    if artifact.format == "pytorch":
        level = config.optimization or strategy.default_optimization
        context.logger.info("%s: exporting %s to ONNX (optimisation %s)", context.stage_name, artifact.name, level)
        exported = export_onnx(
            source, scratch / "exported", task_type=context.data.type, exporter=config.exporter, opset=config.opset
        )
        exporter = exported.exporter
        onnx_file, config_dir = exported.onnx_file, scratch / "exported"
        model_type = str(json.loads((source / "config.json").read_text(encoding="utf-8")).get("model_type", ""))
        fused: dict[str, int] = {}
        if level != "none":
            onnx_file = scratch / "exported" / "optimized.onnx"
            fused = optimize_onnx(
                exported.onnx_file, onnx_file, model_type=model_type, level=level,
                num_heads=exported.num_heads, hidden_size=exported.attention_hidden_size,
            )
        attention = attention_fusion(exported, fused, level=level, model_type=model_type)
        if level not in ("none", "O1") and attention["reason"]:
            context.logger.info("%s: %s", context.stage_name, attention["reason"])
    else:
        if config.optimization is not None:
            raise StageError(
                f"optimization {config.optimization!r} is set but the input {artifact.name!r} is "
                "already ONNX: it is quantised as it is",
                key="config.optimization",
                hint="set the level in the export.onnx stage that made the input, and leave "
                "optimization unset here",
            )
        files = sorted(source.glob("*.onnx"))
        if len(files) != 1:
            raise StageError(f"ONNX artifact {artifact.name!r} must hold one .onnx file, found {[f.name for f in files]}")
        onnx_file, config_dir = files[0], source
        level = (artifact.lineage.extra or {}).get("optimization") or "none"
        attention = (artifact.lineage.extra or {}).get("attention_fusion")
    prepared = prepare_for_quantization(onnx_file, config_dir, scratch / "prepared")
    before = op_counts(prepared)

    present_excluded: dict[str, int] = {}
    if static:
        operators = list(config.operators_to_quantize) if config.operators_to_quantize is not None else default_operators(True)
        operators = [op for op in operators if op not in config.exclude_operators]
        if not operators:
            raise StageError("every operator type is excluded: nothing to quantise", key="config.exclude_operators")
        present_excluded = {op: before[op] for op in config.exclude_operators if before.get(op)}
    else:
        operators = default_operators(False)
    activation_type, weight_type = (getattr(QuantType, t) for t in PRESET_TYPES[preset])
    # what optimum's presets set: symmetric weights, asymmetric activations, full 8-bit range
    extra_options: dict[str, Any] = {"WeightSymmetric": True, "ActivationSymmetric": False}
    quantized = scratch / "quantized.onnx"

    calibration: dict[str, Any] | None = None
    context.logger.info("%s: quantising (preset %s, %s)", context.stage_name, preset, "static" if static else "dynamic")
    with _root_logging_untouched():
        try:
            if static:
                session_inputs = {
                    i.name for i in ort.InferenceSession(str(prepared), providers=["CPUExecutionProvider"]).get_inputs()
                }
                max_length = capped_length(config.max_length, config_dir, tokenizer)
                if max_length < config.max_length:
                    context.logger.info(
                        "%s: calibration inputs capped at %d tokens, the model's limit (max_length %d)",
                        context.stage_name, max_length, config.max_length,
                    )
                batches = calibration_batches(
                    context, tokenizer, session_inputs, split=config.calibration_split,
                    samples=config.calibration_samples, max_length=max_length, seed=context.seed,
                    batch_size=config.calibration_batch_size,
                )
                samples = sum(len(next(iter(b.values()))) for b in batches)
                context.logger.info(
                    "%s: calibrating (%s) on %d examples of %r", context.stage_name,
                    config.calibration_method, samples, config.calibration_split,
                )
                method = {
                    "minmax": CalibrationMethod.MinMax,
                    "entropy": CalibrationMethod.Entropy,
                    "percentiles": CalibrationMethod.Percentile,
                }[config.calibration_method]
                if config.calibration_method == "percentiles":
                    extra_options["CalibPercentile"] = config.percentile
                with _in_folder(scratch):  # the calibrator writes its augmented graph to the cwd
                    quantize_static(
                        prepared, quantized, _reader(batches), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=operators, per_channel=config.per_channel,
                        reduce_range=False, activation_type=activation_type, weight_type=weight_type,
                        calibrate_method=method, extra_options=extra_options,
                    )
                calibration = {
                    "method": config.calibration_method,
                    "samples": samples,
                    "split": config.calibration_split,
                    "max_length": max_length,
                    "seed": context.seed,
                }
                if config.calibration_method == "percentiles":
                    calibration["percentile"] = config.percentile
            else:
                quantize_dynamic(
                    prepared, quantized, op_types_to_quantize=operators, per_channel=config.per_channel,
                    reduce_range=False, weight_type=weight_type, extra_options=extra_options,
                )
        except (ValueError, RuntimeError, KeyError, TypeError) as exc:
            raise StageError(f"ONNX Runtime quantisation failed: {type(exc).__name__}: {exc}") from exc

    out = Path(context.output_dir)
    shutil.copyfile(quantized, out / ONNX_FILE)
    shutil.copyfile(config_dir / "config.json", out / "config.json")
    tokenizer.save_pretrained(out)
    after = op_counts(out / ONNX_FILE)
    extra: dict[str, Any] = {
        "preset": preset,
        "preset_chosen_by": reason,
        "cpu_flags": flags,
        "mode": "static" if static else "dynamic",
        "per_channel": config.per_channel,
        "optimization": level,
        "exporter": exporter,
        "attention_fusion": attention,
        "activation_type": PRESET_TYPES[preset][0],
        "weight_type": PRESET_TYPES[preset][1],
        "operators_quantized": operators,
        "int8_nodes": {op: n for op, n in sorted(after.items()) if op in INT8_OPERATORS},
        "onnxruntime": ort.__version__,
    }
    if static:
        extra["calibration"] = calibration
        extra["excluded_operators"] = present_excluded
        extra["exclude_operators"] = list(config.exclude_operators)
    shutil.rmtree(scratch, ignore_errors=True)
    return context.new_artifact(artifact, strategy.name, config, format="onnx", extra=extra)


@contextlib.contextmanager
def _root_logging_untouched() -> Iterator[None]:
    """Undo the handler ``onnxruntime.quantization`` gives the root logger.

    It logs through the root logger (``logging.warning``), which installs a stderr handler
    when the root has none; every later message of compressor's own logger, which has its
    console handler, would then be printed twice.
    """
    import logging

    root = logging.getLogger()
    before = list(root.handlers)
    try:
        yield
    finally:
        for handler in [h for h in root.handlers if h not in before]:
            root.removeHandler(handler)


@contextlib.contextmanager
def _in_folder(folder: Path) -> Iterator[None]:
    """Run the block with ``folder`` as the working directory."""
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(cwd)
