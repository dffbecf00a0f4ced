"""The evaluator: one implementation for every artifact (accuracy, size, latency)."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..errors import CompressorError
from .settings import EvaluationSettings

if TYPE_CHECKING:  # pragma: no cover
    from ..artifact import Artifact
    from ..task import TaskData


def _machine() -> dict[str, Any]:
    import os
    import platform

    from ..manifest import cpu_model

    return {
        "cpu_model": cpu_model(),
        "machine": platform.machine(),
        "cpus_available": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
    }


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
) -> dict[str, Any]:
    """Evaluate one model: accuracy on a labelled split, size, and CPU latency.

    Every model of a run goes through this function with the same ``data`` and ``settings``,
    so results are comparable: same examples, same latency texts, same lengths, same threads.

    Steps: load the model and its own tokenizer (backend chosen by ``artifact.format``);
    under ``torch.set_num_threads(threads)`` (restored afterwards) run the accuracy pass on
    ``data.split(settings.accuracy_split)`` (text-classification tasks only; ``None`` for
    masked-lm); count parameters and weight bytes; time forward calls per batch size on
    fixed-length inputs (see :mod:`compressor.evaluate.latency`).

    :param artifact: the model directory and its lineage.
    :param data: the run's data; ``text``/``text_pair``/``label`` columns.
    :param settings: the recipe's ``evaluation`` section.
    :param progress: show progress bars for the accuracy pass and the timing loops.
    :returns: a JSON-serialisable dict::

        {"model", "stage", "strategy", "parent", "reference", "format", "backend",
         "backend_version", "device", "threads", "sequence_length", "task",
         "accuracy": {"split", "n", "accuracy", "f1" | "macro_f1", "task_metric"} | None,
         "size": {"params", "disk_bytes", "disk_mb"},
         "latency": [{"batch_size", "sequence_length", "p50_ms", "p90_ms", "p99_ms",
                      "mean_ms", "throughput_seq_per_s", "runs"}, ...],   # [] if off
         "latency_inputs": {"split", "n_texts", "sha256"} | None,
         "warmup", "machine": {"cpu_model", "machine", "cpus_available", "load_avg_1m"},
         "evaluated_at", "load_time_s"}

        ``load_avg_1m`` is the larger 1-minute load average seen before and after timing
        (``None`` without timing): above ``cpus_available`` other processes competed for
        the CPUs and latencies are inflated.

        Accuracy-like values are fractions in [0, 1]; times in ms; throughput in sequences
        per second (batch size / p50); disk in bytes and MB (1e6 bytes).
    :raises CompressorError: for an unknown format, a missing split or column, a model
        whose number of outputs differs from the task's labels, or a ``sequence_length``
        longer than the model accepts.
    """
    return evaluate_artifacts([artifact], data, settings, progress=progress)[0]


def evaluate_artifacts(
    artifacts: "list[Artifact]",
    data: "TaskData",
    settings: EvaluationSettings,
    *,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Evaluate several models with the same data and settings; time them interleaved.

    Accuracy and size are measured model by model. Latency is measured for all models in
    interleaved rounds (:func:`compressor.evaluate.latency.time_interleaved`): a round runs
    one call of each model, so load from other processes falls on every model alike and
    the ratios between models (speedups) stay meaningful. All models are held in memory
    during timing.

    :param artifacts: the models, in report order.
    :returns: one record per artifact, as :func:`evaluate_artifact` describes; each has
        ``"latency_interleaved_with"``: the names of the models timed in the same rounds.
    :raises CompressorError: as :func:`evaluate_artifact`.
    """
    from .accuracy import measure_accuracy
    from .backends import backend_for
    from .latency import (
        latency_texts,
        measure_latency_interleaved,
        resolve_threads,
        texts_fingerprint,
        torch_threads,
    )
    from .size import measure_size

    threads = resolve_threads(settings.threads)
    split_name = settings.accuracy_split
    try:
        split = data.split(split_name)
    except KeyError as exc:
        raise CompressorError(
            str(exc.args[0]) if exc.args else f"no split {split_name!r}",
            key="evaluation.accuracy_split",
        ) from None

    records: list[dict[str, Any]] = []
    backends: list[Any] = []
    with torch_threads(threads):
        try:
            for artifact in artifacts:
                backend_cls = backend_for(artifact)
                t0 = time.perf_counter()
                backend = backend_cls.load(artifact, task_type=data.type, threads=threads)
                load_time_s = time.perf_counter() - t0
                backends.append(backend)
                accuracy = None
                if data.type == "text-classification":
                    num_labels = data.num_labels or int(getattr(backend.config, "num_labels", 0))
                    accuracy = measure_accuracy(
                        backend,
                        split,
                        num_labels=num_labels,
                        split=split_name,
                        batch_size=settings.accuracy_batch_size,
                        max_samples=settings.max_eval_samples,
                        progress=progress,
                    )
                lineage = artifact.lineage
                records.append(
                    {
                        "model": artifact.name,
                        "stage": lineage.stage,
                        "strategy": lineage.strategy,
                        "parent": lineage.parent,
                        "reference": lineage.reference,
                        "format": artifact.format,
                        "backend": backend.name,
                        "backend_version": backend.version(),
                        "device": settings.device,
                        "threads": threads,
                        "sequence_length": settings.sequence_length,
                        "task": data.name,
                        "accuracy": accuracy,
                        "size": measure_size(backend, artifact),
                        "latency": [],
                        "latency_inputs": None,
                        "latency_interleaved_with": [],
                        "warmup": settings.warmup,
                        "machine": {**_machine(), "load_avg_1m": None},
                        "evaluated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        "load_time_s": load_time_s,
                    }
                )
            if settings.latency and backends:
                texts, pairs = latency_texts(split, max(settings.batch_sizes))
                inputs = {
                    "split": split_name,
                    "n_texts": len(texts),
                    "sha256": texts_fingerprint(texts, pairs),
                }
                load_before = _load_average()
                latencies = measure_latency_interleaved(backends, texts, pairs, settings, progress=progress)
                loads = [x for x in (load_before, _load_average()) if x is not None]
                load_avg = max(loads) if loads else None
                names = [a.name for a in artifacts]
                for record, latency in zip(records, latencies):
                    record["latency"] = latency
                    record["latency_inputs"] = inputs
                    record["latency_interleaved_with"] = [n for n in names if n != record["model"]]
                    record["machine"]["load_avg_1m"] = load_avg
        finally:
            for backend in backends:
                backend.close()
    return records
