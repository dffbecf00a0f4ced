"""The evaluator: one implementation for every artifact (accuracy, size, memory, compute,
latency), on every device the settings and the machine allow."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import CompressorError
from .settings import EvaluationSettings

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from ..artifact import Artifact
    from ..task import TaskData
    from ..tasks import Task
    from .records import EvaluationRecord, Machine

#: Folder of the run directory holding per-example predictions (one ``.npy`` per model).
PREDICTIONS_DIR = "predictions"


def _machine(device: str) -> "Machine":
    """The machine record: CPU model, architecture, instruction sets and where they were
    read (:func:`compressor.hardware.cpu_facts`), CPUs available, the GPU on CUDA, the
    runtimes' kernels (:func:`compressor.hardware.kernel_info`); the load average is filled
    in after timing."""
    import os

    from ..hardware import cpu_facts, kernel_info
    from .records import Kernels, Machine

    facts = cpu_facts()
    gpu = None
    if device == "cuda":
        import torch

        gpu = torch.cuda.get_device_name(0)
    return Machine(
        cpu_model=facts["cpu_model"],
        machine=facts["machine"],
        cpus_available=len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        gpu=gpu,
        load_avg_1m=None,
        instruction_sets=facts["instruction_sets"],
        cpu_flags_source=facts["cpu_flags_source"],
        kernels=Kernels.model_validate(kernel_info()),
    )


def _load_average() -> float | None:
    """1-minute system load average (processes running or waiting for a CPU), if known."""
    import os

    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):  # pragma: no cover - not on every OS
        return None


def evaluate_artifact(
    artifact: "Artifact",
    data: "TaskData",
    settings: EvaluationSettings,
    *,
    progress: bool = True,
    output_dir: Path | None = None,
    backends: "Mapping[str, Any] | None" = None,
    tasks: "Mapping[str, Task] | None" = None,
) -> dict[str, Any]:
    """Evaluate one model (the first record of :func:`evaluate_artifacts`: its first device).

    :returns: one record as :func:`evaluate_artifacts` describes.
    """
    return evaluate_artifacts(
        [artifact], data, settings, progress=progress, output_dir=output_dir, backends=backends, tasks=tasks
    )[0]


def evaluate_artifacts(
    artifacts: "list[Artifact]",
    data: "TaskData",
    settings: EvaluationSettings,
    *,
    progress: bool = True,
    output_dir: Path | None = None,
    backends: "Mapping[str, Any] | None" = None,
    tasks: "Mapping[str, Task] | None" = None,
) -> list[dict[str, Any]]:
    """:func:`evaluate_records` with each record as the JSON object ``results.json`` holds
    (:meth:`~compressor.evaluate.records.EvaluationRecord.to_json`): plain dicts, for callers
    that store or extend them (the run's ``results.jsonl``, hooks).

    :returns: one dict per (model, device), as :func:`evaluate_records` describes, with
        ``schema_version`` first.
    :raises CompressorError: as :func:`evaluate_records`.
    """
    return [
        record.to_json()
        for record in evaluate_records(
            artifacts, data, settings, progress=progress, output_dir=output_dir, backends=backends,
            tasks=tasks,
        )
    ]


def evaluate_records(
    artifacts: "list[Artifact]",
    data: "TaskData",
    settings: EvaluationSettings,
    *,
    progress: bool = True,
    output_dir: Path | None = None,
    backends: "Mapping[str, Any] | None" = None,
    tasks: "Mapping[str, Task] | None" = None,
) -> "list[EvaluationRecord]":
    """Evaluate several models with the same data and settings; time them interleaved.

    Devices: each artifact is measured on the devices
    :func:`compressor.evaluate.backends.evaluation_devices` picks for ``settings.device``
    (CPU; also CUDA with ``auto`` where a GPU is usable). Models are evaluated device by
    device, CPU first; all models of one device are held in memory together.

    Per model and device: load time; accuracy and the task metric on
    ``settings.accuracy_split`` with percentile-bootstrap intervals, and the paired
    bootstrap difference from its ``reference`` (teacher or parent) when that model is
    evaluated on the same device in the same call; size; precision; memory
    (:mod:`compressor.evaluate.memory`); FLOPs per sequence at each latency length
    (:mod:`compressor.evaluate.compute`); latency at every batch size x sequence length,
    all models timed in interleaved rounds (:mod:`compressor.evaluate.latency`), with the
    achieved GFLOP/s beside the machine's measured matmul peak for the model's precision;
    the machine: CPU model, instruction sets (AVX2, AVX-512, VNNI, AMX...; see
    :mod:`compressor.hardware`), the kernels PyTorch and ONNX Runtime report, and the load
    average while timing. Everything runs under ``torch.set_num_threads(threads)``
    (restored afterwards).

    :param artifacts: the models, in report order.
    :param data: the run's data; ``text``/``text_pair``/``label`` columns.
    :param settings: the recipe's ``evaluation`` section.
    :param progress: show progress bars (accuracy passes, calibration, timing rounds).
    :param backends: artifact format -> backend class registered by plugins (the run's
        ``Plugins.backends``); default: the core's own (``pytorch``, ``onnx``).
    :param tasks: task name -> task (the run's ``Plugins.tasks``), where ``data.type`` is
        looked up; default: the tasks in use (:func:`compressor.tasks.get_task`). The
        evaluator is given its registries: it never reaches the plugin manager.
    :param output_dir: the run directory: per-example predictions are written to
        ``output_dir/predictions/<model>.<device>.npz`` (the task's per-example arrays,
        e.g. ``label`` and ``prediction`` int64 ``(n,)`` for classification) and the matmul calibration is cached in
        ``output_dir/calibration.json``; ``None`` writes nothing.
    :returns: one :class:`~compressor.evaluate.records.EvaluationRecord` per (model,
        device), models in the order given, CPU records first. Every field but those a run
        or a comparison adds (``fingerprint``, ``settings_key``, ``run``) is set, ``None``
        where it does not apply; ``docs/results-reference.md`` describes each.
        ``machine.load_avg_1m`` is the larger 1-minute load average seen before and after
        timing: above ``cpus_available`` other processes competed for the CPUs and
        latencies are inflated.
    :raises CompressorError: for an unknown format, a missing split or column, a model
        whose number of outputs differs from the task's labels, a sequence length longer
        than a model accepts, or a device that cannot be used.
    """
    from ..tasks import get_task
    from .backends import backend_for, evaluation_devices
    from .latency import resolve_threads, torch_threads

    task = get_task(data.type, tasks)
    threads = resolve_threads(settings.threads)
    split_name = settings.accuracy_split
    try:
        split = data.split(split_name)
    except KeyError as exc:
        raise CompressorError(
            str(exc.args[0]) if exc.args else f"no split {split_name!r}",
            key="evaluation.accuracy_split",
        ) from None
    plan = []
    for artifact in artifacts:
        backend_cls = backend_for(artifact, backends)
        plan.append((artifact, backend_cls, evaluation_devices(settings.device, backend_cls, artifact)))
    devices = [d for d in ("cpu", "cuda") if any(d in p[2] for p in plan)]
    records: "list[EvaluationRecord]" = []
    with torch_threads(threads):
        for device in devices:
            group = [(a, cls) for a, cls, ds in plan if device in ds]
            records += _evaluate_on_device(
                group, data, task, split, settings, device=device, threads=threads,
                progress=progress, output_dir=output_dir,
            )
    return records


def _evaluate_on_device(
    group: list[tuple["Artifact", type]],
    data: "TaskData",
    task: "Task",
    split: Any,
    settings: EvaluationSettings,
    *,
    device: str,
    threads: int,
    progress: bool,
    output_dir: Path | None,
) -> "list[EvaluationRecord]":
    from .latency import (
        encode_latency_batch,
        latency_texts,
        real_token_fraction,
        texts_fingerprint,
    )
    from .backends import load_backend
    from .memory import probe_for
    from .records import (
        EvaluationRecord,
        LatencyInputs,
        LatencySettings,
        Memory,
        Size,
    )
    from .size import measure_size

    split_name = settings.accuracy_split
    records: list[EvaluationRecord] = []
    backends: list[Any] = []
    probes: list[Any] = []
    scores: dict[str, Any] = {}
    scored_split = split
    if settings.max_eval_samples is not None and settings.max_eval_samples < len(split):
        scored_split = split.select(range(settings.max_eval_samples))
    machine = _machine(device)
    try:
        for artifact, backend_cls in group:
            probe = probe_for(device, backend_cls.runtime) if settings.memory else None
            if probe is not None:
                probe.before_load()
            t0 = time.perf_counter()
            backend = load_backend(backend_cls, artifact, task=task, threads=threads, device=device)
            load_time_s = time.perf_counter() - t0
            if probe is not None:
                probe.after_load()
            backends.append(backend)
            probes.append(probe)
            accuracy = None
            if task.evaluated:
                if len(scored_split) == 0:
                    raise CompressorError(
                        f"split {split_name!r} is empty: nothing to evaluate the task on"
                    )
                scored = task.score(
                    backend, scored_split, data,
                    batch_size=settings.accuracy_batch_size, progress=progress,
                )
                scores[artifact.name] = scored
            lineage = artifact.lineage
            records.append(
                EvaluationRecord(
                    model=artifact.name,
                    stage=lineage.stage,
                    strategy=lineage.strategy,
                    parent=lineage.parent,
                    reference=lineage.reference,
                    format=artifact.format,
                    summaries=lineage.summaries(),
                    backend=backend.name,
                    backend_version=backend.version(),
                    device=device,
                    precision=_precision(backend),
                    threads=threads,
                    sequence_length=settings.lengths[0],
                    sequence_lengths=settings.lengths,
                    task=data.name,
                    task_type=data.type,
                    accuracy=accuracy,
                    size=Size.model_validate(measure_size(backend, artifact)),
                    memory=None,
                    compute=None,
                    latency=[],
                    latency_settings=LatencySettings(
                        min_runs=settings.min_runs,
                        max_runs=settings.max_runs,
                        min_time_s=settings.min_time_s,
                        max_time_s=settings.max_time_s,
                        target_rel_ci=settings.target_rel_ci,
                        confidence=settings.confidence,
                    ),
                    latency_inputs=None,
                    latency_interleaved_with=[],
                    warmup=settings.warmup,
                    machine=machine.model_copy(deep=True),
                    evaluated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    load_time_s=load_time_s,
                )
            )
        if scores:
            for record in records:  # comparisons with the reference, then the metrics
                own = scores.get(record.model)
                # a model without a reference is its own (agreement 1 by definition); one
                # whose reference was not scored in this call gets no comparison
                ref = own if record.reference in (None, record.model) else scores.get(record.reference)
                if own is not None and ref is not None:
                    task.relate(own, ref, data)
            for record in records:
                if record.model in scores:
                    record.accuracy = _accuracy_record(task, scores[record.model], data, split_name)
            _accuracy_intervals(records, scores, settings, data, task, device, output_dir)

        min_words = max(settings.lengths) if settings.latency_inputs == "packed" else None
        texts, pairs = latency_texts(
            task.plain_text(split), max(settings.batch_sizes), min_words=min_words
        )
        largest = (max(settings.batch_sizes), max(settings.lengths))
        for backend, probe, record in zip(backends, probes, records):
            if probe is not None:
                batch = encode_latency_batch(backend, texts, pairs, *largest)
                record.memory = Memory.model_validate({
                    **probe.inference(lambda: backend.run(batch)),
                    "batch_size": largest[0],
                    "sequence_length": largest[1],
                })
            if settings.flops:
                record.compute = _compute(backend, texts, pairs, settings)
        if settings.flops and settings.calibration_s > 0:
            _calibrate(records, settings, device=device, threads=threads,
                       output_dir=output_dir, progress=progress)

        if settings.latency and backends:
            _latency(records, backends, texts, pairs, settings, device=device, progress=progress)
            inputs = {
                "split": split_name,
                "n_texts": len(texts),
                "sha256": texts_fingerprint(texts, pairs),
                "mode": settings.latency_inputs,
            }
            for backend, record in zip(backends, records):
                # Per model: each tokenizer splits the same text into its own tokens.
                fraction = {
                    str(length): real_token_fraction(
                        encode_latency_batch(backend, texts, pairs, max(settings.batch_sizes), length)
                    )
                    for length in settings.lengths
                }
                record.latency_inputs = LatencyInputs.model_validate(
                    {**inputs, "real_token_fraction": fraction}
                )
    finally:
        for backend in backends:
            backend.close()
    return records


def _precision(backend: Any) -> str | None:
    from .compute import model_precision

    try:
        return model_precision(backend)
    except Exception:  # noqa: BLE001 - an unknown model object: precision unknown
        return None


def _accuracy_record(task: Any, scored: Any, data: "TaskData", split: str) -> Any:
    """The :class:`~compressor.evaluate.records.Accuracy` of one model's scores."""
    from .records import CLASSIFICATION_METRICS, Accuracy

    values = task.full_metrics(scored, data)
    names = [m.name for m in task.metrics(data)]
    fields = {k: v for k, v in values.items() if k in CLASSIFICATION_METRICS}
    return Accuracy(
        split=split,
        n=len(scored),
        **fields,
        task_metric=names[1] if len(names) > 1 else None,
        primary=names[0] if names else None,
        metrics={k: v for k, v in values.items() if k not in CLASSIFICATION_METRICS},
        metric_labels={m.name: m.header for m in task.metrics(data)},
        predicted_classes=scored.extra.get("predicted_classes"),
        details={k: v for k, v in scored.extra.items() if k != "predicted_classes"},
    )


def _accuracy_intervals(
    records: "list[EvaluationRecord]",
    scores: dict[str, Any],
    settings: EvaluationSettings,
    data: "TaskData",
    task: "Task",
    device: str,
    output_dir: Path | None,
) -> None:
    """Bootstrap intervals, paired differences from the reference, predictions on disk."""
    import numpy as np

    from .records import CLASSIFICATION_METRICS, AccuracyIntervals, Difference, VsReference
    from .stats import paired_bootstrap

    folder = Path(output_dir) / PREDICTIONS_DIR if output_dir is not None else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    for record in records:
        accuracy = record.accuracy
        name = record.model
        if accuracy is None or name not in scores:
            continue
        scored = scores[name]
        ref = record.reference
        ref_scored = scores.get(ref) if ref and ref != name else None
        if ref_scored is not None and len(ref_scored) != len(scored):
            ref_scored = None  # scored on other units: no paired difference
        boot = paired_bootstrap(
            lambda w, s=scored: task.metric_matrix(w, s, data),
            len(scored),
            reference_matrix=(lambda w, s=ref_scored: task.metric_matrix(w, s, data))
            if ref_scored is not None else None,
            resamples=settings.bootstrap_resamples,
            confidence=settings.confidence,
            seed=settings.bootstrap_seed,
        )
        diff = boot.pop("diff", None)
        meta = {k: boot.pop(k) for k in ("resamples", "confidence", "method")}
        accuracy.ci = AccuracyIntervals(
            **{k: v for k, v in boot.items() if k in CLASSIFICATION_METRICS},
            intervals={k: v for k, v in boot.items() if k not in CLASSIFICATION_METRICS},
            **meta,
        )
        accuracy.vs_reference = None
        if diff is not None:
            accuracy.vs_reference = VsReference(
                reference=ref,
                **{k: Difference(**v) for k, v in diff.items() if k in CLASSIFICATION_METRICS},
                differences={k: Difference(**v) for k, v in diff.items() if k not in CLASSIFICATION_METRICS},
            )
        accuracy.predictions_file = None
        if folder is not None and scored.predictions:
            path = folder / f"{name}.{device}.npz"
            np.savez_compressed(path, **scored.predictions)
            accuracy.predictions_file = f"{PREDICTIONS_DIR}/{path.name}"


def _compute(backend: Any, texts: list[str], pairs: list[str] | None,
             settings: EvaluationSettings) -> Any:
    from .compute import flops_per_sequence
    from .latency import encode_latency_batch
    from .records import Compute

    flops: dict[str, int] = {}
    error = None
    try:
        for length in settings.lengths:
            batch = encode_latency_batch(backend, texts, pairs, 1, length)
            flops[str(length)] = flops_per_sequence(backend, batch, sequence_length=length)
    except (ValueError, RuntimeError, NotImplementedError) as exc:
        flops = {}
        error = f"FLOPs not counted: {type(exc).__name__}: {exc}"
    return Compute(flops_per_sequence=flops, peak_gflops=None, peak=None, error=error)


def _calibrate(records: "list[EvaluationRecord]", settings: EvaluationSettings, *, device: str,
               threads: int, output_dir: Path | None, progress: bool) -> None:
    from .compute import cached_peaks
    from .records import Calibration

    precisions = [r.precision for r in records if r.precision and r.compute is not None]
    peaks = cached_peaks(
        precisions, threads=threads, device=device, cache_dir=output_dir,
        min_run_time_s=settings.calibration_s, progress=progress,
    )
    for record in records:
        peak = peaks.get(record.precision) if record.precision else None
        if record.compute is not None and peak is not None:
            record.compute.peak = Calibration.model_validate(peak)
            record.compute.peak_gflops = record.compute.peak.gflops


def _latency(records: "list[EvaluationRecord]", backends: list[Any], texts: list[str],
             pairs: list[str] | None, settings: EvaluationSettings, *, device: str,
             progress: bool) -> None:
    from .latency import measure_latency_interleaved, runtime_groups
    from .records import LatencyCell

    load_before = _load_average()
    latencies = measure_latency_interleaved(
        backends, texts, pairs, settings, device=device, progress=progress
    )
    loads = [x for x in (load_before, _load_average()) if x is not None]
    load_avg = max(loads) if loads else None
    names = [r.model for r in records]
    group_of = {names[i]: group for group in runtime_groups(backends) for i in group}
    for record, latency in zip(records, latencies):
        compute = record.compute
        peak = compute.peak_gflops if compute is not None else None
        cells = []
        for entry in latency:
            per_seq = compute.flops_at(entry["sequence_length"]) if compute is not None else None
            gflops = None
            if per_seq and entry["p50_ms"] > 0:
                gflops = per_seq * entry["batch_size"] / (entry["p50_ms"] / 1e3) / 1e9
            entry["gflops"] = gflops
            entry["peak_fraction"] = gflops / peak if gflops is not None and peak else None
            cells.append(LatencyCell.model_validate(entry))
        record.latency = cells
        # models are interleaved with the others of their group only (runtime_groups)
        record.latency_interleaved_with = [
            names[j] for j in group_of[record.model] if names[j] != record.model
        ]
        if record.machine is not None:
            record.machine.load_avg_1m = load_avg
