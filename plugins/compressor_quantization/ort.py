"""ONNX Runtime int8: export (PyTorch input), graph optimisation, dynamic or static
(calibrated) quantisation with ``onnxruntime.quantization``, then a saturation check.

A PyTorch input is exported and optimised by the core's :mod:`compressor.onnx_export`, the
same path as the ``export.onnx`` strategy. The weight type, per-channel scales and
``reduce_range`` come from the preset's instruction set
(:func:`~.hardware.choose_int8_settings`). The saturation check
(:func:`saturation_check`) runs the int8 graph and the float graph it was made from on a
batch of the task's validation split, and re-quantises with ``reduce_range`` when the int8
outputs are far off and 7-bit weights bring them back: the signature of the 16-bit sums of
``VPMADDUBSW`` saturating on AVX2 and AVX-512 CPUs without VNNI.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from collections.abc import Callable, Iterator, Sequence
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
    session,
)

from .hardware import (
    SATURATING_PRESETS,
    Int8Settings,
    choose_int8_settings,
    choose_ort_preset,
    cpu_flags,
    faked_cpuinfo,
    host_preset,
    machine,
)

if TYPE_CHECKING:  # pragma: no cover
    from compressor.artifact import Artifact
    from compressor.strategy import StageContext, Strategy

#: Activation and weight types of optimum's ``AutoQuantizationConfig`` presets: unsigned
#: activations everywhere; unsigned weights on AVX2, signed elsewhere. The strategies no longer
#: use this table (see :func:`~.hardware.choose_int8_settings`: s8 weights everywhere, 7-bit on
#: AVX2/AVX-512 without VNNI); ``benchmarks/onnx_stacks.py`` uses it to rebuild optimum's graphs.
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
    seen = sorted(
        f for f in flags if f.startswith(("avx2", "avx512", "amx")) or f in ("avx_vnni", "asimd", "asimddp")
    )
    if requested != "auto":
        return requested, "recipe", seen
    return choose_ort_preset(flags, arch), f"cpu flags ({arch})", seen


def resolve_int8_settings(config: Any) -> tuple[Int8Settings, str, list[str]]:
    """The int8 settings of a ``quantize.ort-*`` config: the preset (:func:`resolve_preset`),
    then :func:`~.hardware.choose_int8_settings` with the config's ``weight_type``,
    ``per_channel`` and ``reduce_range``.

    :returns: ``(settings, how the preset was chosen, relevant cpu flags)``.
    :raises StageError: when ``auto`` finds no fitting preset.
    """
    preset, how, flags = resolve_preset(config.preset)
    if how == "recipe":
        chosen_by = f"recipe (preset {preset})"
    else:
        faked = faked_cpuinfo()
        where = f", faked by COMPRESSOR_CPUINFO={faked}" if faked is not None else ""
        chosen_by = f"auto (cpu flags {' '.join(flags) or 'none'} on {machine()}{where})"
    settings = choose_int8_settings(
        preset, weight_type=config.weight_type, per_channel=config.per_channel,
        reduce_range=config.reduce_range, chosen_by=chosen_by,
    )
    return settings, how, flags


def prepare_for_quantization(
    onnx_file: Path, config_dir: Path, out_dir: Path, *, record: dict[str, Any] | None = None
) -> Path:
    """Copy the graph with the type of every tensor the quantiser meets filled in.

    ONNX Runtime's quantizer needs the type of every tensor it quantises; ONNX's own shape
    inference stops at ONNX Runtime's contrib operators (the fused ``Attention``,
    ``SkipLayerNormalization`` of an optimised graph), so the symbolic inference of
    ``onnxruntime.tools.symbolic_shape_infer`` fills them in first. Where it meets an operator
    it does not know (``FusedMatMul``, which ONNX Runtime's level-2 optimisation makes of
    ModernBERT's attention), it runs again guessing that operator's output rank from its
    first input.

    Where symbolic inference fails both ways (it asserts on some optimised graphs: EuroBERT's
    ``SimplifiedLayerNormalization``, ModernBERT's local attention, MobileBERT, LUKE), the
    graph is quantised without it, as ONNX Runtime allows: ONNX's shape inference types the
    standard operators, each contrib operator's outputs get the element type of its first
    typed input (the contrib operators of an optimised encoder graph compute in their input's
    float type), and the two alternate until nothing changes (:func:`infer_types`). The
    quantiser then takes any tensor still untyped as float (``DefaultTensorType``, see
    :data:`FALLBACK_EXTRA_OPTIONS`); the int8 graph's outputs are checked against the float
    graph's afterwards as on the symbolic path (the saturation check, accuracy control).

    :param onnx_file: the float graph (exported, optionally optimised).
    :param config_dir: the folder whose ``config.json`` goes with the graph.
    :param out_dir: where ``model.onnx`` and ``config.json`` are written (created).
    :param record: when given, filled with ``{"method": "symbolic" | "symbolic
        (output rank guessed)" | "onnx (symbolic inference failed)", "reason": why symbolic
        inference failed or None, "untyped": tensors left untyped}``.
    :returns: ``out_dir / "model.onnx"`` (``out_dir`` also gets ``config.json``).
    """
    import onnx
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    out_dir.mkdir(parents=True, exist_ok=True)
    model = onnx.load(str(onnx_file))
    # On failure the tool saves 'sym_shape_infer_temp.onnx' (+ data) into the working
    # directory: run it from a scratch folder so the user's folder stays clean.
    inferred = None
    how: dict[str, Any] = {"method": "symbolic", "reason": None, "untyped": 0}
    for guess in (False, True):
        try:
            with tempfile.TemporaryDirectory(prefix="compressor-shape-") as scratch, _in_folder(Path(scratch)):
                inferred = SymbolicShapeInference.infer_shapes(model, auto_merge=True, guess_output_rank=guess)
            if guess:
                how["method"] = "symbolic (output rank guessed)"
            break
        except Exception as exc:  # noqa: BLE001 - the tool raises bare Exceptions
            if guess:
                how = {
                    "method": "onnx (symbolic inference failed)",
                    "reason": f"{type(exc).__name__}: {exc}".rstrip(": ") or type(exc).__name__,
                }
                inferred, how["untyped"] = infer_types(model)
    if inferred is not None:
        model = inferred
    onnx.save(model, str(out_dir / ONNX_FILE))
    shutil.copyfile(config_dir / "config.json", out_dir / "config.json")
    if record is not None:
        record.update(how)
    return out_dir / ONNX_FILE


FALLBACK_EXTRA_OPTIONS: dict[str, Any] = {"DefaultTensorType": 1}
"""``extra_options`` of ONNX Runtime's quantizer for a graph prepared without symbolic
shape inference: a tensor whose type is still unknown is taken as float
(``onnx.TensorProto.FLOAT`` is 1)."""


def infer_types(model: Any, *, rounds: int = 50) -> tuple[Any, int]:
    """Element types of a graph's tensors without symbolic shape inference.

    ONNX's shape inference (non-strict) types the standard operators; the outputs it leaves
    untyped (those of ONNX Runtime's contrib operators, which it does not know) get the
    element type of the operator's first typed input (no shape); repeated until no type is
    added.

    :param model: an ``onnx.ModelProto`` (not changed).
    :param rounds: at most this many alternations.
    :returns: ``(typed model, number of node outputs still untyped)``.
    """
    import onnx
    from onnx import helper

    current = model
    for _ in range(rounds):
        current = onnx.shape_inference.infer_shapes(current, strict_mode=False)
        graph = current.graph
        types = {
            v.name: v.type.tensor_type.elem_type
            for v in (*graph.input, *graph.output, *graph.value_info)
            if v.type.HasField("tensor_type") and v.type.tensor_type.elem_type
        }
        types.update({t.name: t.data_type for t in graph.initializer})
        added = []
        for node in graph.node:
            # an operator ONNX does not type: a contrib one (some, as ONNX Runtime's
            # SimplifiedLayerNormalization, are registered in ONNX's own domain)
            given = next((types[i] for i in node.input if i and i in types), None)
            if given is None:
                continue
            for out in node.output:
                if out and out not in types:
                    types[out] = given
                    added.append(helper.make_tensor_value_info(out, given, None))
        if not added:
            break
        graph.value_info.extend(added)
    known = {v.name for v in (*current.graph.input, *current.graph.value_info, *current.graph.output)}
    known |= {t.name for t in current.graph.initializer}
    untyped = sum(1 for n in current.graph.node for o in n.output if o and o not in known)
    return current, untyped


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
    padding: str = "max_length",
) -> list[dict[str, Any]]:
    """``samples`` examples drawn (seeded, without replacement) from ``split``, tokenised to
    exactly ``max_length`` tokens (``padding="longest"``: to the longest of them, at most
    ``max_length``), cut into batches: int64 arrays ``(batch, length)`` keyed by graph input
    name.

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
        padding=padding,
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


#: Longest input (tokens) of the saturation check's batch for dynamic quantisation (static
#: quantisation uses its ``max_length``); the batch is padded to its longest example.
CHECK_MAX_LENGTH = 128

#: The saturation check keeps the ``reduce_range`` graph when its deviation is at most this
#: fraction of the first graph's: a gap that 7-bit weights at least halve is saturation, while
#: 7-bit and 8-bit graphs without saturation differ by 15-25% either way (u8 weights, measured
#: in docs/quantization.md).
MATERIAL_REDUCTION = 0.5

#: What the saturation check's deviation is.
DEVIATION_METRIC = (
    "max |int8 - float| over the graph outputs, relative to max |float| (padding positions "
    "excluded), ONNX Runtime on this CPU"
)


def output_deviation(
    reference: Path, candidate: Path, batches: list[dict[str, Any]]
) -> float:
    """How far ``candidate``'s outputs are from ``reference``'s: the largest absolute
    difference over every output, divided by the largest absolute reference output (0 when
    that is 0), over the positions where ``attention_mask`` is 1 for outputs with a sequence
    axis. Both graphs run on this CPU (one thread), chunk by chunk.

    :param batches: int64 input arrays keyed by input name (a graph's missing inputs are
        not fed).
    """
    import numpy as np

    ref_sess, cand_sess = session(reference, threads=1), session(candidate, threads=1)
    names = [o.name for o in ref_sess.get_outputs()]
    worst = scale = 0.0
    for batch in batches:
        feed = {i.name: batch[i.name] for i in ref_sess.get_inputs() if i.name in batch}
        refs = ref_sess.run(names, feed)
        gots = cand_sess.run(names, {i.name: batch[i.name] for i in cand_sess.get_inputs() if i.name in batch})
        mask = batch.get("attention_mask")
        for ref, got in zip(refs, gots):
            ref, got = np.asarray(ref, dtype=np.float32), np.asarray(got, dtype=np.float32)
            if mask is not None and ref.ndim >= 2 and ref.shape[:2] == mask.shape:
                keep = mask.astype(bool)
                ref, got = ref[keep], got[keep]
            if ref.size:
                worst = max(worst, float(np.abs(got - ref).max()))
                scale = max(scale, float(np.abs(ref).max()))
    return worst / scale if scale > 0 else worst


def _check_split(context: "StageContext", requested: str) -> str | None:
    """``requested`` if the task has it (non-empty), else ``test``, else ``train``."""
    for name in dict.fromkeys((requested, "test", "train")):
        try:
            if len(context.data.split(name)):
                return name
        except KeyError:
            continue
    return None


def _deviation_meter(
    context: "StageContext", tokenizer: Any, input_names: set[str], reference: Path, config: Any, max_length: int
) -> Callable[[Path], tuple[float, dict[str, Any]]]:
    """``measure(int8_graph) -> (deviation, facts)``: :func:`output_deviation` of the graph
    against ``reference`` on ``saturation_samples`` examples of ``saturation_split`` (drawn
    with the run's seed, padded to the longest), tokenised once."""
    split = _check_split(context, config.saturation_split)
    if split is None:
        raise StageError(
            "the saturation check needs examples, and the task has none in "
            f"{config.saturation_split!r}, 'test' or 'train'",
            key="config.saturation_split",
            hint="name a split with examples, or set saturation_check: false",
        )
    batches = calibration_batches(
        context, tokenizer, input_names, split=split, samples=config.saturation_samples,
        max_length=max_length, seed=context.seed, batch_size=8, padding="longest",
    )
    facts = {
        "split": split,
        "samples": sum(len(next(iter(b.values()))) for b in batches),
        "max_length": max_length,
        "metric": DEVIATION_METRIC,
    }

    def measure(graph: Path) -> tuple[float, dict[str, Any]]:
        return output_deviation(reference, graph, batches), facts

    return measure


def saturation_check(
    settings: Int8Settings,
    quantized: Path,
    *,
    requantize: Callable[[], Path],
    measure: Callable[[Path], tuple[float, dict[str, Any]]],
    tolerance: float,
    host: str | None,
) -> tuple[Path, Int8Settings, dict[str, Any]]:
    """Look for saturated int8 sums, and avoid them with ``reduce_range`` when that helps.

    1. ``measure(quantized)``: the int8 graph's deviation from the float graph (one batch).
    2. ``reduce_range`` already on, or deviation within ``tolerance``: keep the graph, record
       the deviation.
    3. Else, when s8 weights run on saturating kernels (:data:`~.hardware.SATURATING_PRESETS`)
       both on this CPU (``host``) and on the preset's target: ``requantize()`` with
       ``reduce_range`` and measure again; if that deviation is at most
       :data:`MATERIAL_REDUCTION` of the first, saturation was detected: keep the
       ``reduce_range`` graph. Otherwise keep the first graph: its gap is not saturation.
       Where neither can saturate (VNNI, AMX, ARM, u8 weights) the gap is quantisation error,
       and where only one can (a recipe's preset for another machine) a gap measured here
       says nothing about the target: both are only recorded, with no second quantisation.

    :param settings: what ``quantized`` was made with.
    :param requantize: makes the ``reduce_range`` graph and returns its path.
    :param measure: ``graph -> (deviation, facts)`` (:func:`output_deviation` on the check's
        batch; tests fake it).
    :param host: this CPU's preset (:func:`~.hardware.host_preset`), ``None`` if it has none.
    :returns: ``(graph to keep, its settings, record)``; the record has ``deviation``,
        ``reduce_range_deviation`` (``None`` when not tried), ``saturation_detected``,
        ``avoided``, ``host_kernels``, the batch's facts and ``summary`` (one readable line).
    """
    deviation, facts = measure(quantized)
    record: dict[str, Any] = {
        "ran": True,
        **facts,
        "tolerance": tolerance,
        "host_kernels": host,
        "deviation": round(deviation, 6),
        "reduce_range_deviation": None,
        "saturation_detected": False,
        "avoided": False,
    }
    # u8 x s8 sums saturate only on VPMADDUBSW kernels: AVX2 and AVX-512 without VNNI
    s8 = settings.weight_type == "QInt8"
    target_saturates = s8 and settings.preset in SATURATING_PRESETS
    host_saturates = s8 and host in SATURATING_PRESETS
    if settings.reduce_range:
        record["summary"] = (
            f"reduce_range already on; max deviation {deviation:.4f} of the float outputs on "
            f"{facts['samples']} examples of {facts['split']!r}"
        )
        return quantized, settings, record
    if deviation <= tolerance:
        record["summary"] = (
            f"max deviation {deviation:.4f} of the float outputs on {facts['samples']} examples of "
            f"{facts['split']!r}, within the tolerance {tolerance:g}: no saturation to avoid"
        )
        return quantized, settings, record
    if not target_saturates and not host_saturates:
        record["summary"] = (
            f"max deviation {deviation:.4f} exceeds the tolerance {tolerance:g}, but neither this CPU's "
            f"int8 kernels ({host or 'none'}) nor the {settings.preset} target's can saturate with "
            f"{'s8' if s8 else 'u8'} weights: quantisation error, reduce_range not tried"
        )
        return quantized, settings, record
    if target_saturates != host_saturates:
        if host_saturates:
            why = (f"this CPU's int8 kernels ({host}) can saturate but the {settings.preset} target's "
                   "cannot: the gap measured here is not the target's")
        else:
            why = (f"the {settings.preset} target's int8 kernels can saturate but this CPU's "
                   f"({host or 'none'}) cannot: saturation cannot be measured here")
        record["summary"] = (
            f"max deviation {deviation:.4f} exceeds the tolerance {tolerance:g}, but {why}; reduce_range not tried"
        )
        return quantized, settings, record
    reduced = requantize()
    after, _ = measure(reduced)
    record["reduce_range_deviation"] = round(after, 6)
    if after <= MATERIAL_REDUCTION * deviation:
        record["saturation_detected"] = record["avoided"] = True
        record["summary"] = (
            f"saturation detected and avoided: max deviation {deviation:.4f} of the float outputs "
            f"with 8-bit weights, {after:.4f} with reduce_range (7-bit), which this graph uses"
        )
        why = f"the saturation check measured {deviation:.4f} without it and {after:.4f} with it"
        return reduced, settings.with_reduce_range(why), record
    record["summary"] = (
        f"max deviation {deviation:.4f} exceeds the tolerance {tolerance:g}, but reduce_range gives "
        f"{after:.4f}: not saturation, the 8-bit graph is kept"
    )
    return quantized, settings, record


def run_ort_quantization(
    strategy: "Strategy", artifact: "Artifact", config: Any, context: "StageContext", *, static: bool
) -> "Artifact":
    """Export if needed, optimise, (calibrate,) quantise; see :class:`~.plugin.OrtDynamic`
    and :class:`~.plugin.OrtStatic`."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

    settings, reason, flags = resolve_int8_settings(config)
    preset = settings.preset
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
    shape_inference: dict[str, Any] = {}
    prepared = prepare_for_quantization(onnx_file, config_dir, scratch / "prepared", record=shape_inference)
    if shape_inference["reason"]:
        context.logger.info(
            "%s: symbolic shape inference failed on %s (%s): quantising with ONNX's shape "
            "inference and contrib outputs typed from their inputs (%d tensors left untyped, "
            "taken as float)", context.stage_name, Path(onnx_file).name, shape_inference["reason"],
            shape_inference["untyped"],
        )
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
    activation_type, weight_type = getattr(QuantType, settings.activation_type), getattr(QuantType, settings.weight_type)
    # symmetric weights, asymmetric activations (what optimum's presets set)
    extra_options: dict[str, Any] = {"WeightSymmetric": True, "ActivationSymmetric": False}
    if shape_inference["reason"]:
        extra_options.update(FALLBACK_EXTRA_OPTIONS)
    session_inputs = {
        i.name for i in ort.InferenceSession(str(prepared), providers=["CPUExecutionProvider"]).get_inputs()
    }

    calibration: dict[str, Any] | None = None
    batches: list[dict[str, Any]] = []
    method: Any = None
    max_length = capped_length(getattr(config, "max_length", CHECK_MAX_LENGTH), config_dir, tokenizer)
    if static:
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
        method = {
            "minmax": CalibrationMethod.MinMax,
            "entropy": CalibrationMethod.Entropy,
            "percentiles": CalibrationMethod.Percentile,
        }[config.calibration_method]
        if config.calibration_method == "percentiles":
            extra_options["CalibPercentile"] = config.percentile
        calibration = {
            "method": config.calibration_method,
            "samples": samples,
            "split": config.calibration_split,
            "max_length": max_length,
            "seed": context.seed,
        }
        if config.calibration_method == "percentiles":
            calibration["percentile"] = config.percentile

    def quantize(reduce_range: bool, target: Path, exclude: Sequence[str] = ()) -> Path:
        """Quantise ``prepared`` into ``target`` with the settings and ``reduce_range``,
        leaving the nodes named in ``exclude`` in float."""
        with _root_logging_untouched():
            try:
                if static:
                    with _in_folder(scratch):  # the calibrator writes its augmented graph to the cwd
                        quantize_static(
                            prepared, target, _reader(batches), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=operators, per_channel=settings.per_channel,
                            reduce_range=reduce_range, activation_type=activation_type,
                            weight_type=weight_type, calibrate_method=method, extra_options=extra_options,
                            # a second quantisation (saturation check) reuses the ranges
                            calibration_cache_path=scratch / "calibration.json",
                            nodes_to_exclude=list(exclude),
                        )
                else:
                    quantize_dynamic(
                        prepared, target, op_types_to_quantize=operators, per_channel=settings.per_channel,
                        reduce_range=reduce_range, weight_type=weight_type, extra_options=extra_options,
                        nodes_to_exclude=list(exclude),
                    )
            except (ValueError, RuntimeError, KeyError, TypeError) as exc:
                raise StageError(f"ONNX Runtime quantisation failed: {type(exc).__name__}: {exc}") from exc
        return target

    context.logger.info(
        "%s: quantising (%s, %s)", context.stage_name, "static" if static else "dynamic", settings.summary()
    )
    if static:
        context.logger.info(
            "%s: calibrating (%s) on %d examples of %r", context.stage_name,
            config.calibration_method, calibration["samples"] if calibration else 0, config.calibration_split,
        )
    quantized = quantize(settings.reduce_range, scratch / "quantized.onnx")
    check: dict[str, Any] = {"ran": False, "summary": "off (saturation_check: false)"}
    if config.saturation_check:
        quantized, settings, check = saturation_check(
            settings,
            quantized,
            requantize=lambda: quantize(True, scratch / "quantized-reduce-range.onnx"),
            measure=_deviation_meter(context, tokenizer, session_inputs, prepared, config, max_length),
            tolerance=config.saturation_tolerance,
            host=host_preset(),
        )
        log = context.logger.warning if check.get("saturation_detected") else context.logger.info
        log("%s: saturation check: %s", context.stage_name, check["summary"])

    control = None
    if config.max_loss is not None:
        control = accuracy_control(
            context, tokenizer, config, prepared, quantized, config_dir, scratch, operators,
            lambda exclude, target: quantize(settings.reduce_range, target, exclude),
        )
        quantized = control["graph"]

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
        "per_channel": settings.per_channel,
        "reduce_range": settings.reduce_range,
        "int8_settings": settings.record(),
        "saturation_check": check,
        "optimization": level,
        "exporter": exporter,
        "attention_fusion": attention,
        "activation_type": settings.activation_type,
        "weight_type": settings.weight_type,
        "operators_quantized": operators,
        "shape_inference": shape_inference,
        "int8_nodes": {op: n for op, n in sorted(after.items()) if op in INT8_OPERATORS},
        "onnxruntime": ort.__version__,
    }
    if control is not None:
        extra["accuracy_control"] = control["record"]
    if static:
        extra["calibration"] = calibration
        extra["excluded_operators"] = present_excluded
        extra["exclude_operators"] = list(config.exclude_operators)
    shutil.rmtree(scratch, ignore_errors=True)
    return context.new_artifact(artifact, strategy.name, config, format="onnx", extra=extra)


def accuracy_control(
    context: "StageContext", tokenizer: Any, config: Any, prepared: Path, quantized: Path,
    config_dir: Path, scratch: Path, operators: list[str], quantize: Any,
) -> dict[str, Any]:
    """Accuracy-controlled int8 (:func:`.accuracy_control.accuracy_controlled_int8`) of the
    stage's graph, with the latency cost of the groups kept in float.

    :returns: ``{"graph": the chosen int8 graph, "record": JSON for lineage.extra}``; the
        record has a one-line ``summary`` (shown on the model card).
    :raises StageError: (exit status 2) when no int8 graph meets the bound.
    """
    from compressor.evaluate.stats import paired_bootstrap

    from .accuracy_control import OnnxTaskScorer, accuracy_controlled_int8

    context.logger.info(
        "%s: accuracy control: at most %.2f points lost (confidence %s) on the validation split",
        context.stage_name, config.max_loss, config.confidence,
    )
    result = accuracy_controlled_int8(
        prepared, quantize, OnnxTaskScorer(context.data, tokenizer, config_dir),
        op_types=operators, max_loss=config.max_loss, confidence=config.confidence,
        work_dir=scratch / "accuracy-control", bootstrap=paired_bootstrap, seed=context.seed,
        int8_graph=quantized, logger=context.logger,
    )
    result.raise_if_uncertified()
    record = result.to_json()
    kept = [g["name"] for g in record["kept_float"]]
    cost = None
    if kept:
        cost = latency_ratio(result.graph, quantized, tokenizer, context, config_dir=config_dir)
    record["latency_cost"] = cost
    b = record["bound"]
    interval = (f"[{b['low']:+.2f}, {b['high']:+.2f}]" if b.get("low") is not None else "(point value)")
    record["summary"] = (
        f"{len(kept)} node group(s) kept in float ({', '.join(kept) or 'none'}); "
        f"{record['metric']} vs input {b['point']:+.2f} points {interval} on {record['units']} "
        f"{record['split']} examples, bound -{config.max_loss:g}"
        + (f"; p50 {cost['ratio']:.2f}x the all-int8 graph's (batch 1, {cost['tokens']} tokens)" if cost else "")
    )
    context.logger.info("%s: accuracy control: %s", context.stage_name, record["summary"])
    return {"graph": result.graph, "record": record}


def latency_ratio(
    chosen: Path, all_int8: Path, tokenizer: Any, context: "StageContext", *, config_dir: Path, rounds: int = 3
) -> dict[str, Any]:
    """p50 latency of ``chosen`` over ``all_int8`` (ONNX Runtime, CPU, one thread, batch 1):
    what the groups kept in float cost. One validation sentence padded to 128 tokens (or
    the model's limit), timed with ``torch.utils.benchmark`` (``blocked_autorange``, 0.3 s
    each), the two graphs alternating for ``rounds`` rounds; the ratio of the medians of the
    rounds' medians, so that load shifts during the probe hit both. The evaluator measures
    the artifact itself with its full protocol.

    :returns: ``{"ratio", "chosen_p50_ms", "all_int8_p50_ms", "tokens", "rounds"}``.
    """
    import statistics

    from torch.utils import benchmark

    from compressor.onnx_export import session

    split = context.data.splits.get("validation") or context.data.splits["test"]
    text = str(context.data.task.plain_text(split)[0]["text"])
    tokens = capped_length(CHECK_MAX_LENGTH, config_dir, tokenizer)
    batch = tokenizer([text], padding="max_length", truncation=True, max_length=tokens, return_tensors="np")
    timers = []
    for graph in (chosen, all_int8):
        sess = session(Path(graph), threads=1)
        feed = {k: v for k, v in batch.items() if k in {i.name for i in sess.get_inputs()}}
        timers.append(benchmark.Timer(stmt="run(None, feed)", globals={"run": sess.run, "feed": feed}, num_threads=1))
    medians: list[list[float]] = [[], []]
    for _ in range(rounds):
        for k, timer in enumerate(timers):
            medians[k].append(timer.blocked_autorange(min_run_time=0.3).median * 1e3)
    p50 = [statistics.median(m) for m in medians]
    return {"ratio": p50[0] / p50[1], "chosen_p50_ms": p50[0], "all_int8_p50_ms": p50[1], "tokens": tokens, "rounds": rounds}


#: ONNX Runtime's advice that does not apply here (the stage runs its own pre-processing, or
#: skips symbolic shape inference on purpose): kept in the log at debug level only
ORT_ADVICE = ("Please consider to run pre-processing before quantization",)


@contextlib.contextmanager
def _root_logging_untouched() -> Iterator[None]:
    """Route what ``onnxruntime.quantization`` logs through the root logger into
    compressor's log (``compressor.onnxruntime``), and leave the root logger as it was.

    It logs with ``logging.warning``, which installs a stderr handler on a root logger that
    has none: its messages came out as ``WARNING:root:...`` and every later message of
    compressor's own logger twice. While the block runs, a root logger without handlers gets
    one that forwards other loggers' records to compressor's log at their level
    (:data:`ORT_ADVICE` at debug level); a root logger the user configured is left alone.
    """
    import logging

    class Forward(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.name == "compressor" or record.name.startswith("compressor."):
                return  # ours, propagated: already handled by compressor's handlers
            text = record.getMessage()
            level = logging.DEBUG if any(a in text for a in ORT_ADVICE) else record.levelno
            logging.getLogger("compressor.onnxruntime").log(level, "onnxruntime: %s", text)

    root = logging.getLogger()
    before = list(root.handlers)
    if not before:
        root.addHandler(Forward())  # removed below with whatever ORT added
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
