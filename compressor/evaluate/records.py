"""Typed evaluation records: what the evaluator measured for one model on one device.

The evaluator (:func:`compressor.evaluate.evaluator.evaluate_records`) builds an
:class:`EvaluationRecord` per (model, device); the reports read them by attribute, so a field
renamed on one side fails at once (an unknown key is a validation error, an unknown attribute
an ``AttributeError``) instead of printing ``-``. ``results.json`` holds a list of them
(:meth:`EvaluationRecord.to_json`), each with its :data:`SCHEMA_VERSION`.

Versions:

- **0**: records without ``schema_version`` (every run before the records were typed): the
  same keys as version 1 less ``machine.instruction_sets``, ``machine.cpu_flags_source`` and
  ``machine.kernels``; the oldest lack more (``memory``, ``compute``, intervals...). Read as
  they are: a missing key is ``None`` (not measured).
- **1**: adds ``schema_version`` and the CPU's instruction sets and kernels in ``machine``.
- **2**: adds ``task_type`` and, in ``accuracy``, the task's metrics of any name
  (``metrics``, ``primary``, ``metric_labels``, ``ci.intervals``,
  ``vs_reference.differences``, ``details``): regression, embeddings, NER and QA are scored
  by their own metrics. A version-1 record is a ``text-classification`` record.

:func:`load_record` / :func:`load_records` upgrade any known version (:func:`upgrade_record`)
and validate; a record from a newer compressor is refused with a message saying so.
``compressor schema --results`` prints the JSON Schema (:func:`results_schema`);
``docs/results-reference.md`` is generated from these models.

Accuracy-like values are fractions in [0, 1]; times in ms; throughput in sequences per second;
memory and disk in MB (1e6 bytes); FLOPs per sequence at batch 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import CompressorError

#: Version of the record layout written by this compressor (``schema_version``).
SCHEMA_VERSION = 2

#: ``$id`` of the published JSON Schema of ``results.json``.
SCHEMA_ID = f"compressor-results-v{SCHEMA_VERSION}"

#: Names of the classification metrics with their own fields; any other task metric lives in
#: ``Accuracy.metrics``.
CLASSIFICATION_METRICS = ("accuracy", "f1", "macro_f1")

Device = Literal["cpu", "cuda"]

Precision = Literal["fp32", "bf16", "fp16", "int8"]

#: ``[low, high]``.
Interval = tuple[float, float]


class _Record(BaseModel):
    """Base of every record model: unknown keys are errors, assignments are validated,
    infinities stay ``Infinity`` in JSON (a throughput of a 0 ms call)."""

    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, ser_json_inf_nan="constants"
    )


# --- accuracy ------------------------------------------------------------------------------


class AccuracyIntervals(_Record):
    """Percentile-bootstrap intervals of the task's metrics (units of each metric)."""

    accuracy: Interval | None = Field(None, description="Interval of accuracy, [low, high].")
    f1: Interval | None = Field(None, description="Interval of F1 (2-class tasks).")
    macro_f1: Interval | None = Field(None, description="Interval of macro-F1 (more classes).")
    resamples: int | None = Field(None, description="Bootstrap resamples.")
    confidence: float | None = Field(None, description="Coverage of the intervals, e.g. 0.95.")
    method: str | None = Field(None, description='"percentile bootstrap".')

    intervals: dict[str, Interval] = Field(
        default_factory=dict, description="Intervals of the other task metrics, by name."
    )

    def interval(self, metric: str) -> Interval | None:
        """The interval of ``metric`` (any of the task's metrics)."""
        if metric in CLASSIFICATION_METRICS:
            return getattr(self, metric)
        return self.intervals.get(metric)


class Difference(_Record):
    """Model minus reference on the same examples (fractions), with its paired-bootstrap
    interval."""

    value: float = Field(description="Difference on the full evaluation split.")
    low: float | None = Field(None, description="Lower bound of the paired interval.")
    high: float | None = Field(None, description="Upper bound of the paired interval.")

    def verdict(self) -> str | None:
        """``"within noise"`` when the interval contains 0, else ``"loss"`` or ``"gain"``;
        ``None`` without an interval."""
        if self.low is None or self.high is None:
            return None
        if self.low <= 0.0 <= self.high:
            return "within noise"
        return "loss" if self.high < 0 else "gain"


class VsReference(_Record):
    """Paired differences from the reference model (teacher or parent) evaluated in the
    same call on the same device."""

    reference: str | None = Field(None, description="The reference model's name.")
    accuracy: Difference | None = Field(None, description="Accuracy difference.")
    f1: Difference | None = Field(None, description="F1 difference (2-class tasks).")
    macro_f1: Difference | None = Field(None, description="Macro-F1 difference.")

    differences: dict[str, Difference] = Field(
        default_factory=dict, description="Differences of the other task metrics, by name."
    )

    def difference(self, metric: str) -> Difference | None:
        """The difference of ``metric`` (any of the task's metrics)."""
        if metric in CLASSIFICATION_METRICS:
            return getattr(self, metric)
        return self.differences.get(metric)


class Accuracy(_Record):
    """Task quality on the evaluation split: accuracy and F1 for classification (their own
    fields), any other task's metrics in ``metrics`` (Spearman, entity F1, exact match...)."""

    split: str | None = Field(None, description="The split scored (``evaluation.accuracy_split``).")
    n: int | None = Field(None, description="Examples scored.")
    accuracy: float | None = Field(None, description="Fraction of examples predicted right.")
    f1: float | None = Field(None, description="Binary F1 of class 1 (2-class tasks only).")
    macro_f1: float | None = Field(None, description="Unweighted mean of per-class F1 (more classes).")
    task_metric: str | None = Field(
        None, description="The task's second metric (f1/macro_f1 for classification)."
    )
    primary: str | None = Field(
        None, description="The task's headline metric (accuracy when null: version 1)."
    )
    metrics: dict[str, float] = Field(
        default_factory=dict, description="The task's metrics other than accuracy/f1/macro_f1."
    )
    metric_labels: dict[str, str] = Field(
        default_factory=dict, description="Metric name -> its name in reports."
    )
    details: dict[str, Any] = Field(
        default_factory=dict, description="Facts of the scoring that are not resampled."
    )
    predicted_classes: int | None = Field(
        None, description="Distinct classes predicted; 1 means a collapsed model."
    )
    ci: AccuracyIntervals | None = Field(None, description="Bootstrap intervals.")
    vs_reference: VsReference | None = Field(
        None, description="Paired differences from the reference; null without one."
    )
    predictions_file: str | None = Field(
        None, description="Per-example predictions and gold labels (.npz, arrays named by the task), relative to the run directory."
    )

    def value(self, metric: str) -> float | None:
        """The value of one of the task's metrics, or ``None``."""
        if metric in CLASSIFICATION_METRICS:
            return getattr(self, metric)
        return self.metrics.get(metric)

    @property
    def headline(self) -> str:
        """The headline metric's name (``primary``; ``"accuracy"`` for version-1 records)."""
        return self.primary or "accuracy"

    def label(self, metric: str) -> str:
        """The metric's name in reports."""
        return self.metric_labels.get(metric) or metric.replace("_", " ")

    @property
    def task_metric_value(self) -> float | None:
        """The task metric's value (fraction), or ``None``."""
        return self.value(self.task_metric) if self.task_metric else None


# --- size, memory, compute -----------------------------------------------------------------


class Structure(_Record):
    """The encoder's shape now (PyTorch models of known architectures)."""

    layers: int | None = Field(None, description="Encoder layers.")
    heads: list[int] | None = Field(None, description="Attention heads per layer.")
    heads_total: int | None = Field(None, description="Attention heads in all layers.")
    heads_config: int | None = Field(None, description="Heads per layer in the config.")
    ffn_widths: list[int] | None = Field(None, description="FFN width per layer.")
    ffn_config: int | None = Field(None, description="FFN width in the config.")
    sparsity: float | None = Field(None, description="Fraction of zeros in the layers' Linear weights.")
    shared_layers: bool | None = Field(
        None, description="One layer's weights run for every layer (ALBERT)."
    )
    sparsity_per_layer: list[float] | None = Field(None, description="The same, per layer.")
    linear_weights: int | None = Field(None, description="Elements of those weights.")
    zero_weights: int | None = Field(None, description="How many of them are exactly zero.")


class Size(_Record):
    """Parameters and bytes on disk."""

    params: int | None = Field(None, description="Unique parameter elements (ONNX: initializer elements).")
    disk_bytes: int | None = Field(None, description="Bytes of the weight files.")
    disk_mb: float | None = Field(None, description="disk_bytes / 1e6.")
    structure: Structure | None = Field(None, description="Encoder shape; null for other backends.")
    sparsity: float | None = Field(None, description="structure.sparsity repeated.")

    @property
    def total_bytes(self) -> float | None:
        """Bytes on disk (``disk_bytes``, else ``disk_mb`` x 1e6), or ``None``."""
        if self.disk_bytes is not None:
            return float(self.disk_bytes)
        if self.disk_mb is not None:
            return self.disk_mb * 1e6
        return None


class Memory(_Record):
    """Memory of one model: resident memory on CPU (``load_rss_mb``, ``peak_rss_mb``), memory
    allocated by PyTorch on CUDA (``load_mb``, ``peak_gpu_mb``)."""

    device: Device | None = Field(None, description="Where it was measured.")
    load_rss_mb: float | None = Field(None, description="CPU: resident memory added by loading.")
    load_mb: float | None = Field(None, description="CUDA: memory allocated by loading.")
    inference_peak_mb: float | None = Field(None, description="Peak added by one call at the largest cell.")
    peak_rss_mb: float | None = Field(None, description="CPU: load + inference peak.")
    peak_gpu_mb: float | None = Field(None, description="CUDA: load + inference peak.")
    method: str | None = Field(None, description="How it was measured.")
    batch_size: int | None = Field(None, description="Batch size of the measured call.")
    sequence_length: int | None = Field(None, description="Tokens per sequence of that call.")

    @property
    def loaded_mb(self) -> float | None:
        """Memory added by loading, CPU or CUDA."""
        return self.load_rss_mb if self.load_rss_mb is not None else self.load_mb

    @property
    def peak_mb(self) -> float | None:
        """Peak memory (load + inference), CPU or CUDA."""
        return self.peak_rss_mb if self.peak_rss_mb is not None else self.peak_gpu_mb


class Calibration(_Record):
    """The machine's measured matmul throughput at one precision (``calibration.json``)."""

    precision: Precision | None = Field(None, description="Precision of the product.")
    device: Device | None = Field(None, description="Where it ran.")
    threads: int | None = Field(None, description="Threads it ran on.")
    n: int | None = Field(None, description="Matrix size (n x n x n product).")
    median_s: float | None = Field(None, description="Median time of one product.")
    gflops: float | None = Field(None, description="GFLOP/s (GOP/s for int8); null if it failed.")
    error: str | None = Field(None, description="Why it could not be measured.")
    cached: bool | None = Field(None, description="Read from calibration.json.")


class Compute(_Record):
    """FLOPs per sequence and the calibrated matmul peak."""

    flops_per_sequence: dict[str, int] = Field(
        default_factory=dict, description="Sequence length (as text) -> FLOPs at batch 1."
    )
    peak_gflops: float | None = Field(None, description="Calibrated peak for the model's precision.")
    peak: Calibration | None = Field(None, description="The calibration behind it.")
    error: str | None = Field(None, description="Why FLOPs were not counted.")

    def flops_at(self, sequence_length: int | None) -> int | None:
        """FLOPs per sequence at ``sequence_length`` tokens, or ``None``."""
        if sequence_length is None:
            return None
        return self.flops_per_sequence.get(str(sequence_length))


# --- latency -------------------------------------------------------------------------------


class LatencyCell(_Record):
    """One (batch size, sequence length) cell of the latency matrix."""

    batch_size: int = Field(description="Sequences per call.")
    sequence_length: int | None = Field(None, description="Tokens per sequence.")
    p50_ms: float | None = Field(None, description="Median call time.")
    p50_ci_ms: Interval | None = Field(None, description="Order-statistic interval of the median.")
    p90_ms: float | None = Field(None, description="90th percentile.")
    p99_ms: float | None = Field(None, description="99th percentile.")
    mean_ms: float | None = Field(None, description="Mean call time.")
    mean_ci_ms: Interval | None = Field(None, description="Student-t interval of the mean.")
    std_ms: float | None = Field(None, description="Standard deviation.")
    min_ms: float | None = Field(None, description="Fastest call.")
    throughput_seq_per_s: float | None = Field(None, description="batch_size / p50.")
    throughput_ci: Interval | None = Field(None, description="batch_size / the p50 interval.")
    runs: int | None = Field(None, description="Timed calls.")
    timed_s: float | None = Field(None, description="Seconds of timed calls.")
    stop_reason: str | None = Field(
        None, description="stable, max_runs or max_time (passes' reasons joined by +)."
    )
    timer: str | None = Field(None, description="perf_counter_ns, cuda_event...")
    warmup: int | None = Field(None, description="Untimed calls before timing.")
    passes: int | None = Field(None, description="Turns the runtime groups took.")
    gflops: float | None = Field(None, description="Achieved GFLOP/s: FLOPs x batch / p50.")
    peak_fraction: float | None = Field(None, description="gflops / the calibrated peak.")

    def value(self, key: str) -> Any:
        """The value of field ``key`` (``"p50_ms"``, ``"p90_ms"``...).

        :raises AttributeError: for a name that is not a field (a typo fails here).
        """
        if key not in type(self).model_fields:
            raise AttributeError(f"LatencyCell has no field {key!r}")
        return getattr(self, key)


class LatencySettings(_Record):
    """The stopping rule latency was measured with."""

    min_runs: int | None = Field(None, description="Fewest timed calls per cell.")
    max_runs: int | None = Field(None, description="Most timed calls per cell.")
    min_time_s: float | None = Field(None, description="Fewest seconds of timed calls.")
    max_time_s: float | None = Field(None, description="Most seconds of timed calls.")
    target_rel_ci: float | None = Field(None, description="Target half-width of the p50 interval / p50.")
    confidence: float | None = Field(None, description="Coverage of the intervals.")


class LatencyInputs(_Record):
    """The texts latency was measured on."""

    split: str | None = Field(None, description="Split the texts came from.")
    n_texts: int | None = Field(None, description="Texts (the largest batch size).")
    sha256: str | None = Field(None, description="Fingerprint of the texts: same for every model.")
    mode: Literal["packed", "padded"] | None = Field(None, description="How inputs were made.")
    real_token_fraction: dict[str, float] | None = Field(
        None, description="Sequence length (as text) -> fraction of real (unpadded) tokens."
    )


# --- the machine ---------------------------------------------------------------------------


class Kernels(_Record):
    """What the runtimes report about their CPU kernels (:func:`compressor.hardware.kernel_info`)."""

    torch: str | None = Field(None, description="torch version.")
    torch_cpu_capability: str | None = Field(
        None, description="ISA ATen dispatches to (torch.backends.cpu.get_cpu_capability()): AVX2, AVX512..."
    )
    onednn: str | None = Field(None, description="oneDNN version in torch; null when unavailable.")
    onnxruntime: str | None = Field(None, description="ONNX Runtime version.")
    onnxruntime_device: str | None = Field(None, description="onnxruntime.get_device().")
    onnxruntime_providers: list[str] | None = Field(None, description="Available execution providers.")
    onnxruntime_build: str | None = Field(None, description="onnxruntime.get_build_info().")


class Machine(_Record):
    """Where the model was measured."""

    cpu_model: str | None = Field(None, description="CPU model name.")
    machine: str | None = Field(None, description="Architecture (x86_64, aarch64).")
    cpus_available: int | None = Field(None, description="Logical CPUs this process may use.")
    gpu: str | None = Field(None, description="GPU name on CUDA records.")
    load_avg_1m: float | None = Field(
        None, description="Larger 1-minute load average before/after timing."
    )
    instruction_sets: list[str] | None = Field(
        None,
        description="Instruction sets for matrix products the CPU has, as cpuinfo names them "
        "(avx2, avx512f, avx512_vnni, avx512_bf16, amx_int8...; asimddp, i8mm, sve on ARM); "
        "null in records before version 1.",
    )
    cpu_flags_source: str | None = Field(
        None, description="/proc/cpuinfo, or COMPRESSOR_CPUINFO=<file> when faked."
    )
    kernels: Kernels | None = Field(None, description="Kernels the runtimes report.")


# --- the record ----------------------------------------------------------------------------


class EvaluationRecord(_Record):
    """What the evaluator measured for one model on one device: one item of ``results.json``."""

    schema_version: int = Field(
        SCHEMA_VERSION, description="Layout version of this record; absent in version 0."
    )
    model: str = Field(description="Artifact name (``<run>/<name>`` in comparisons).")
    stage: str | None = Field(None, description="Stage that produced it (baseline for the input).")
    strategy: str | None = Field(None, description="Strategy of that stage; null for the baseline.")
    parent: str | None = Field(None, description="Artifact it was made from.")
    reference: str | None = Field(None, description="Artifact it is compared against (teacher or parent).")
    format: str | None = Field(None, description="Artifact format (pytorch, onnx...).")
    summaries: dict[str, str] = Field(
        default_factory=dict,
        description="What the stage's strategy summarised about its choices, one line per "
        "fact of its lineage (int8 settings, saturation check, accuracy control...).",
    )
    backend: str | None = Field(None, description="Evaluation backend that loaded it.")
    backend_version: str | None = Field(None, description="Version of the backend's runtime.")
    device: Device | None = Field(None, description="Where it was measured; null means cpu.")
    precision: Precision | None = Field(None, description="Precision of its matrix products.")
    threads: int | None = Field(None, description="Threads it ran on.")
    sequence_length: int | None = Field(None, description="Primary latency length (the first).")
    sequence_lengths: list[int] | None = Field(None, description="Every latency length.")
    task: str | None = Field(None, description="Data set name.")
    task_type: str | None = Field(
        None, description="Task type (text-classification... ; null: version 1, classification)."
    )
    accuracy: Accuracy | None = Field(None, description="Null for tasks without labels.")
    size: Size | None = Field(None, description="Parameters and disk size.")
    memory: Memory | None = Field(None, description="Null when memory was not measured.")
    compute: Compute | None = Field(None, description="Null when FLOPs were not counted.")
    latency: list[LatencyCell] = Field(
        default_factory=list, description="Every timed cell, batch sizes outermost."
    )
    latency_settings: LatencySettings | None = Field(None, description="The stopping rule.")
    latency_inputs: LatencyInputs | None = Field(None, description="The texts timed.")
    latency_interleaved_with: list[str] = Field(
        default_factory=list, description="Models timed in the same rounds."
    )
    warmup: int | None = Field(None, description="Untimed calls per cell.")
    machine: Machine | None = Field(None, description="The machine.")
    evaluated_at: str | None = Field(None, description="UTC time, ISO 8601.")
    load_time_s: float | None = Field(None, description="Wall time of loading the model.")
    fingerprint: str | None = Field(None, description="Stage fingerprint (added by the run).")
    settings_key: str | None = Field(None, description="Hash of the evaluation settings (added by the run).")
    run: str | None = Field(None, description="Run name (added by compressor compare).")

    @property
    def device_name(self) -> str:
        """The device, ``"cpu"`` for records without one."""
        return self.device or "cpu"

    def latency_cell(self, batch_size: int, sequence_length: int | None = None) -> LatencyCell | None:
        """The latency cell at ``batch_size`` and ``sequence_length`` (default: the record's
        primary length, or any length for records that recorded none), or ``None``."""
        length = sequence_length if sequence_length is not None else self.sequence_length
        for cell in self.latency:
            if cell.batch_size != batch_size:
                continue
            if length is not None and cell.sequence_length is not None and cell.sequence_length != length:
                continue
            return cell
        return None

    def to_json(self) -> dict[str, Any]:
        """The record as ``results.json`` holds it: JSON types, ``schema_version`` first,
        keys that were never set left out (a record read from an older file is written back
        with the keys it had)."""
        data = self.model_dump(mode="json", exclude_unset=True)
        data.pop("schema_version", None)
        return {"schema_version": self.schema_version, **data}


# --- reading any version ---------------------------------------------------------------------


def _upgrade_0(data: dict[str, Any]) -> dict[str, Any]:
    """Version 0 -> 1: the layout is unchanged; version 1 only adds keys (the CPU's
    instruction sets and kernels, unknown for old records)."""
    return {**data, "schema_version": 1}


def _upgrade_1(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 -> 2: a version-1 record with accuracy is a text-classification record
    whose headline metric is accuracy; the new keys are added empty."""
    out = {**data, "schema_version": 2}
    if out.get("accuracy") is not None:
        out.setdefault("task_type", "text-classification")
        out["accuracy"] = {**out["accuracy"], "primary": out["accuracy"].get("primary") or "accuracy"}
    return out


#: version -> function turning a record of that version into the next version.
UPGRADES = {0: _upgrade_0, 1: _upgrade_1}


def record_version(data: Mapping[str, Any]) -> int:
    """The ``schema_version`` of a raw record (0 when absent).

    :raises CompressorError: for a version that is not a non-negative integer.
    """
    version = data.get("schema_version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise CompressorError(f"record schema_version {version!r} is not a version number")
    return version


def upgrade_record(data: Mapping[str, Any]) -> dict[str, Any]:
    """A raw record of any known version, as a raw record of :data:`SCHEMA_VERSION`.

    :param data: a record as read from ``results.json`` or ``results.jsonl``.
    :returns: a new dict (``data`` is not changed).
    :raises CompressorError: for a version newer than this compressor knows.
    """
    version = record_version(data)
    if version > SCHEMA_VERSION:
        raise CompressorError(
            f"record of model {data.get('model')!r} has schema_version {version}; this "
            f"compressor reads up to {SCHEMA_VERSION}",
            hint="upgrade compressor to read results written by a newer version",
        )
    out = dict(data)
    while version < SCHEMA_VERSION:
        out = UPGRADES[version](out)
        version += 1
    return out


def load_record(data: "Mapping[str, Any] | EvaluationRecord", *, where: str = "record") -> EvaluationRecord:
    """An :class:`EvaluationRecord` from a raw record of any version (upgraded, validated),
    or the record itself.

    :param data: a dict as in ``results.json`` (with or without ``schema_version``), or a
        record.
    :param where: how to name the record in an error (``"results.json, record 3"``).
    :raises CompressorError: for a newer version, or a record that does not validate (the
        message names the field).
    """
    if isinstance(data, EvaluationRecord):
        return data
    if not isinstance(data, Mapping):
        raise CompressorError(f"{where} must be a JSON object, got {type(data).__name__}")
    try:
        return EvaluationRecord.model_validate(upgrade_record(data))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(record)'}: {err['msg']}"
            for err in exc.errors()[:5]
        )
        raise CompressorError(f"{where} (model {data.get('model')!r}) is not a valid evaluation record: {problems}") from None


def load_records(
    data: "Iterable[Mapping[str, Any] | EvaluationRecord]", *, where: str = "results"
) -> list[EvaluationRecord]:
    """:func:`load_record` for each item, in order.

    :raises CompressorError: as :func:`load_record`, naming the item's position.
    """
    return [load_record(item, where=f"{where}, record {i + 1}") for i, item in enumerate(data)]


def as_records(results: "Sequence[Mapping[str, Any] | EvaluationRecord]") -> list[EvaluationRecord]:
    """Records as given, raw dicts loaded (:func:`load_records`): what the report functions
    accept."""
    if all(isinstance(r, EvaluationRecord) for r in results):
        return list(results)  # type: ignore[arg-type]
    return load_records(results)


def results_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of ``results.json``: a list of :class:`EvaluationRecord`."""
    record = EvaluationRecord.model_json_schema(ref_template="#/$defs/{model}")
    # a record without schema_version is version 0, not this one: required here
    record["required"] = ["schema_version", *[k for k in record.get("required", []) if k != "schema_version"]]
    defs = record.pop("$defs", {})
    defs["EvaluationRecord"] = record
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "compressor results.json",
        "description": "The evaluation records of a run, in report order: one per model and device.",
        "type": "array",
        "items": {"$ref": "#/$defs/EvaluationRecord"},
        "$defs": defs,
    }


#: The record models in the order the reference documents them.
RECORD_MODELS: tuple[type[BaseModel], ...] = (
    EvaluationRecord,
    Accuracy,
    AccuracyIntervals,
    VsReference,
    Difference,
    Size,
    Structure,
    Memory,
    Compute,
    Calibration,
    LatencyCell,
    LatencySettings,
    LatencyInputs,
    Machine,
    Kernels,
)
