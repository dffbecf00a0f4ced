"""ONNX Runtime int8 through optimum: export (PyTorch input), graph optimisation,
dynamic or static (calibrated) quantisation.

The export follows the same path as the ``export.onnx`` strategy (optimum's
``ORTModelFor*.from_pretrained(dir, export=True)`` and ``ORTOptimizer``); it is repeated here
rather than imported because plugins depend on the core only.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compressor.errors import StageError

from .hardware import choose_ort_preset, cpu_flags, machine

if TYPE_CHECKING:  # pragma: no cover
    from compressor.artifact import Artifact
    from compressor.strategy import StageContext, Strategy

ONNX_FILE = "model.onnx"

#: Operator types of int8 kernels in a quantised graph (QOperator and QDQ forms).
INT8_OPS = {
    "QAttention", "MatMulInteger", "DynamicQuantizeLinear", "QLinearMatMul", "QLinearAdd",
    "QLinearMul", "QGemm", "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeMatMul",
}


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


def _ort_class(task_type: str) -> Any:
    from optimum.onnxruntime import ORTModelForMaskedLM, ORTModelForSequenceClassification

    return ORTModelForMaskedLM if task_type == "masked-lm" else ORTModelForSequenceClassification


def export_and_optimize(source: Path, scratch: Path, *, task_type: str, level: str, opset: int | None) -> Path:
    """Export a PyTorch folder with optimum, optionally run ``ORTOptimizer`` at ``level``.

    :returns: the ``.onnx`` file (its folder also holds ``config.json``).
    :raises StageError: if export or optimisation fails.
    """
    from optimum.onnxruntime import AutoOptimizationConfig, ORTOptimizer

    kwargs: dict[str, Any] = {"export": True, "provider": "CPUExecutionProvider"}
    if opset is not None:
        kwargs["opset"] = opset
    try:
        model = _ort_class(task_type).from_pretrained(str(source), **kwargs)
    except (ValueError, KeyError, RuntimeError, OSError, TypeError) as exc:
        raise StageError(f"optimum could not export {source} to ONNX: {type(exc).__name__}: {exc}") from exc
    model.save_pretrained(scratch / "exported")
    if level == "none":
        return scratch / "exported" / ONNX_FILE
    try:
        ORTOptimizer.from_pretrained(model).optimize(
            save_dir=scratch / "optimized",
            optimization_config=AutoOptimizationConfig.with_optimization_level(level, for_gpu=False),
        )
    except (ValueError, KeyError, RuntimeError, NotImplementedError) as exc:
        raise StageError(
            f"ONNX Runtime graph optimisation {level} failed: {type(exc).__name__}: {exc}",
            key="config.optimization",
            hint="try optimization: O1 or none",
        ) from exc
    return next((scratch / "optimized").glob("*.onnx"))


def prepare_for_quantization(onnx_file: Path, config_dir: Path, out_dir: Path) -> Path:
    """Copy the graph with ONNX Runtime's symbolic shape inference applied.

    ``ORTQuantizer`` needs the type of every tensor it quantises; ONNX's own shape
    inference stops at ONNX Runtime's contrib operators (the fused ``Attention``,
    ``SkipLayerNormalization`` of an optimised graph), so the symbolic inference of
    ``onnxruntime.tools.symbolic_shape_infer`` fills them in first.

    :returns: ``out_dir / "model.onnx"`` (``out_dir`` also gets ``config.json``).
    """
    import onnx
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    out_dir.mkdir(parents=True, exist_ok=True)
    model = onnx.load(str(onnx_file))
    # On failure the tool saves 'sym_shape_infer_temp.onnx' (+ data) into the working
    # directory: run it from a scratch folder so the user's folder stays clean.
    cwd = os.getcwd()
    try:
        with tempfile.TemporaryDirectory(prefix="compressor-shape-") as scratch:
            os.chdir(scratch)
            try:
                inferred = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
            finally:
                os.chdir(cwd)
    except Exception as exc:  # noqa: BLE001 - the tool raises bare Exceptions
        raise StageError(f"symbolic shape inference failed on {onnx_file.name}: {exc}") from exc
    if inferred is not None:
        model = inferred
    onnx.save(model, str(out_dir / ONNX_FILE))
    shutil.copyfile(config_dir / "config.json", out_dir / "config.json")
    return out_dir / ONNX_FILE


def op_counts(onnx_file: Path) -> Counter:
    """Number of nodes per operator type in a graph."""
    import onnx

    return Counter(n.op_type for n in onnx.load(str(onnx_file), load_external_data=False).graph.node)


def calibration_dataset(
    context: "StageContext", tokenizer: Any, input_names: set[str], *, split: str, samples: int, max_length: int, seed: int
) -> Any:
    """``samples`` examples drawn (seeded, without replacement) from ``split``, tokenised to
    exactly ``max_length`` tokens: a :class:`datasets.Dataset` with one int64 column per
    graph input.

    :raises StageError: for a missing or empty split.
    """
    import datasets
    import numpy as np

    try:
        data = context.data.split(split)
    except KeyError as exc:
        raise StageError(str(exc.args[0]), key="config.calibration_split") from None
    if len(data) == 0:
        raise StageError(f"calibration split {split!r} is empty", key="config.calibration_split")
    index = sorted(random.Random(seed).sample(range(len(data)), min(samples, len(data))))
    rows = data.select(index)
    enc = tokenizer(
        list(rows["text"]),
        list(rows["text_pair"]) if "text_pair" in rows.column_names else None,
        padding="max_length",
        truncation=True,
        max_length=max_length,
        return_tensors="np",
    )
    columns = {k: np.asarray(v, dtype=np.int64) for k, v in enc.items() if k in input_names}
    return datasets.Dataset.from_dict({k: v.tolist() for k, v in columns.items()}).with_format("numpy")


def run_ort_quantization(
    strategy: "Strategy", artifact: "Artifact", config: Any, context: "StageContext", *, static: bool
) -> "Artifact":
    """Export if needed, optimise, (calibrate,) quantise; see :class:`~.plugin.OrtDynamic`
    and :class:`~.plugin.OrtStatic`."""
    import onnxruntime as ort
    from optimum.onnxruntime import AutoCalibrationConfig, AutoQuantizationConfig, ORTQuantizer
    from optimum.onnxruntime.configuration import ORT_DEFAULT_OPS_STATIC_QUANTIZATION_QDQ
    from transformers import AutoTokenizer

    preset, reason, flags = resolve_preset(config.preset)
    source = Path(artifact.path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise StageError(f"artifact {artifact.name!r} has no loadable tokenizer: {exc}") from exc
    scratch = Path(context.work_dir) / "ort-quantization"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)

    if artifact.format == "pytorch":
        level = config.optimization or strategy.default_optimization
        context.logger.info("%s: exporting %s to ONNX (optimisation %s)", context.stage_name, artifact.name, level)
        onnx_file = export_and_optimize(source, scratch, task_type=context.data.type, level=level, opset=config.opset)
        config_dir = scratch / "exported"
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
    prepared = prepare_for_quantization(onnx_file, config_dir, scratch / "prepared")
    before = op_counts(prepared)

    present_excluded: dict[str, int] = {}
    kwargs: dict[str, Any] = {"is_static": static, "per_channel": config.per_channel}
    if static:
        if config.operators_to_quantize is not None:
            operators = list(config.operators_to_quantize)
        else:
            operators = [op for op in ORT_DEFAULT_OPS_STATIC_QUANTIZATION_QDQ if op not in config.exclude_operators]
        operators = [op for op in operators if op not in config.exclude_operators]
        if not operators:
            raise StageError("every operator type is excluded: nothing to quantise", key="config.exclude_operators")
        kwargs["operators_to_quantize"] = operators
        present_excluded = {op: before[op] for op in config.exclude_operators if before.get(op)}
    qconfig = getattr(AutoQuantizationConfig, preset)(**kwargs)
    quantizer = ORTQuantizer.from_pretrained(prepared.parent, file_name=prepared.name)

    ranges = None
    calibration: dict[str, Any] | None = None
    if static:
        session_inputs = {
            i.name for i in ort.InferenceSession(str(prepared), providers=["CPUExecutionProvider"]).get_inputs()
        }
        dataset = calibration_dataset(
            context, tokenizer, session_inputs, split=config.calibration_split,
            samples=config.calibration_samples, max_length=config.max_length, seed=context.seed,
        )
        if config.calibration_method == "minmax":
            calib = AutoCalibrationConfig.minmax(dataset)
        elif config.calibration_method == "entropy":
            calib = AutoCalibrationConfig.entropy(dataset)
        else:
            calib = AutoCalibrationConfig.percentiles(dataset, percentile=config.percentile)
        context.logger.info(
            "%s: calibrating (%s) on %d examples of %r", context.stage_name,
            config.calibration_method, len(dataset), config.calibration_split,
        )
        try:
            ranges = quantizer.fit(
                dataset=dataset,
                calibration_config=calib,
                onnx_augmented_model_name=scratch / "augmented_model.onnx",
                operators_to_quantize=qconfig.operators_to_quantize,
                batch_size=config.calibration_batch_size,
            )
        except (ValueError, RuntimeError) as exc:
            raise StageError(f"calibration failed: {type(exc).__name__}: {exc}") from exc
        calibration = {
            "method": config.calibration_method,
            "samples": len(dataset),
            "split": config.calibration_split,
            "max_length": config.max_length,
            "seed": context.seed,
        }
        if config.calibration_method == "percentiles":
            calibration["percentile"] = config.percentile

    context.logger.info("%s: quantising (preset %s, %s)", context.stage_name, preset, "static" if static else "dynamic")
    try:
        quantizer.quantize(
            save_dir=scratch / "quantized", quantization_config=qconfig, calibration_tensors_range=ranges
        )
    except (ValueError, RuntimeError, KeyError) as exc:
        raise StageError(f"ONNX Runtime quantisation failed: {type(exc).__name__}: {exc}") from exc
    quantized = next((scratch / "quantized").glob("*.onnx"))

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
        "operators_quantized": list(qconfig.operators_to_quantize),
        "int8_nodes": {op: n for op, n in sorted(after.items()) if op in INT8_OPS},
        "onnxruntime": ort.__version__,
    }
    if static:
        extra["calibration"] = calibration
        extra["excluded_operators"] = present_excluded
        extra["exclude_operators"] = list(config.exclude_operators)
    shutil.rmtree(scratch, ignore_errors=True)
    return context.new_artifact(artifact, strategy.name, config, format="onnx", extra=extra)
