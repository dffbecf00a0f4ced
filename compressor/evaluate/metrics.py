"""Metric descriptors: name, unit, direction. The report uses them for headers and arrows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MetricGroup = Literal["accuracy", "size", "latency"]


@dataclass(frozen=True)
class Metric:
    """One metric the evaluator reports.

    :param name: key in the results (``accuracy``, ``p50_ms``, ...).
    :param label: short human name for table headers.
    :param unit: unit of the stored value (``"fraction"`` for accuracy-like values in
        ``[0, 1]``; ``"count"``, ``"MB"``, ``"ms"``, ``"seq/s"``).
    :param higher_is_better: direction in which the metric improves.
    :param group: which part of a result holds it: ``result["accuracy"]``, ``result["size"]``
        or each entry of ``result["latency"]``.
    :param description: one line for report notes.
    """

    name: str
    label: str
    unit: str
    higher_is_better: bool
    group: MetricGroup
    description: str


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("accuracy", "accuracy", "fraction", True, "accuracy",
               "Share of examples whose argmax prediction equals the label."),
        Metric("f1", "F1", "fraction", True, "accuracy",
               "Binary F1 of the positive class (label 1); for 2-class tasks."),
        Metric("macro_f1", "macro-F1", "fraction", True, "accuracy",
               "Unweighted mean of per-class F1; for tasks with more than 2 classes."),
        Metric("params", "params", "count", False, "size",
               "Parameters (unique tensors' elements; ONNX: initializer elements)."),
        Metric("disk_mb", "disk", "MB", False, "size",
               "Bytes of the weight files on disk / 1e6."),
        Metric("p50_ms", "p50", "ms", False, "latency",
               "Median wall time of one forward call."),
        Metric("p90_ms", "p90", "ms", False, "latency",
               "90th percentile wall time of one forward call."),
        Metric("p99_ms", "p99", "ms", False, "latency",
               "99th percentile wall time of one forward call."),
        Metric("throughput_seq_per_s", "throughput", "seq/s", True, "latency",
               "Sequences per second: batch size / median call time."),
    )
}
"""Descriptors of the reported metrics, by result key."""
