"""Detail tables under the main comparison: accuracy intervals, every latency cell, memory
and compute. Each is ``(title, headers, rows of text cells)`` so the Markdown and HTML
renderers show the same content."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..evaluate.records import EvaluationRecord, Interval
from .tables import (
    MISSING,
    accuracy_value,
    devices,
    diff_verdict,
    metric_header,
    short_metric,
    paired_diff,
    task_metric_value,
)

__all__ = [
    "DetailTable",
    "accuracy_table",
    "detail_tables",
    "devices",
    "latency_table",
    "resources_table",
]

DetailTable = tuple[str, list[str], list[list[str]]]


def _fmt(value: Any, spec: str) -> str:
    return MISSING if value is None else format(value, spec)


def _ci(pair: Interval | None, scale: float = 1.0, spec: str = ".2f") -> str:
    if pair is None:
        return MISSING
    return f"[{format(pair[0] * scale, spec)}, {format(pair[1] * scale, spec)}]"


def _pct(value: float | None) -> float | None:
    return None if value is None else 100 * value


def accuracy_table(results: Sequence[EvaluationRecord]) -> DetailTable | None:
    """Accuracy and task metric with bootstrap intervals; paired difference from the
    reference with its interval and a verdict (``within noise`` when it contains 0)."""
    rows = []
    confidence = None
    for r in results:
        acc = r.accuracy
        if acc is None:
            continue
        ci = acc.ci
        if confidence is None:
            confidence = ci.confidence if ci is not None and ci.confidence is not None else 0.95
        metric = acc.task_metric
        d_acc = paired_diff(r)
        d_task = paired_diff(r, metric) if metric else None
        vs = acc.vs_reference.reference if acc.vs_reference is not None else None
        rows.append([
            r.model,
            r.device_name,
            _fmt(_pct(accuracy_value(r)), ".2f"),
            _ci(ci.interval(acc.headline) if ci is not None else None, 100),
            f"{metric}: {_fmt(_pct(task_metric_value(r)), '.2f')}" if metric else MISSING,
            _ci(ci.interval(metric) if ci is not None and metric else None, 100) if metric else MISSING,
            vs or MISSING,
            _fmt(None if d_acc is None else 100 * d_acc.value, "+.2f"),
            _ci((d_acc.low, d_acc.high), 100, "+.2f") if d_acc else MISSING,
            _fmt(None if d_task is None else 100 * d_task.value, "+.2f"),
            diff_verdict(r) or MISSING,
        ])
    if not rows:
        return None
    conf = int(round(100 * (confidence or 0.95)))
    recs = [r for r in results if r.accuracy is not None]
    short = short_metric(recs)
    headers = ["model", "device", metric_header(recs), f"{conf}% CI", "task metric (x100)", f"{conf}% CI",
               "vs", f"{short} Δ (pts)", f"{short} Δ {conf}% CI (pts)", "task Δ (pts)", "verdict"]
    title = "Accuracy" if short == "acc" else "Task quality"
    return (f"{title} with {conf}% bootstrap intervals and paired differences", headers, rows)


def latency_table(results: Sequence[EvaluationRecord]) -> DetailTable | None:
    """Every (batch size, sequence length) cell of every model."""
    rows = []
    for r in results:
        for e in r.latency:
            rows.append([
                r.model,
                r.device_name,
                str(e.batch_size),
                MISSING if e.sequence_length is None else str(e.sequence_length),
                _fmt(e.p50_ms, ".2f"),
                _ci(e.p50_ci_ms),
                _fmt(e.p90_ms, ".2f"),
                _fmt(e.p99_ms, ".2f"),
                _fmt(e.mean_ms, ".2f") + (f" {_ci(e.mean_ci_ms)}" if e.mean_ci_ms else ""),
                _fmt(e.throughput_seq_per_s, ",.1f"),
                _fmt(e.gflops, ".1f"),
                _fmt(_pct(e.peak_fraction), ".1f"),
                MISSING if e.runs is None else str(e.runs),
                e.stop_reason or MISSING,
            ])
    if not rows:
        return None
    headers = ["model", "device", "batch", "tokens", "p50 (ms)", "p50 95% CI (ms)", "p90 (ms)",
               "p99 (ms)", "mean (ms) [95% CI]", "throughput (seq/s)", "GFLOP/s",
               "% of matmul peak", "runs", "stopped by"]
    return ("Latency: every batch size x sequence length", headers, rows)


def resources_table(results: Sequence[EvaluationRecord]) -> DetailTable | None:
    """Precision, load time, memory, FLOPs per sequence and the calibrated matmul peak."""
    rows = []
    for r in results:
        mem, comp = r.memory, r.compute
        first = comp.flops_at(r.sequence_length) if comp is not None else None
        rows.append([
            r.model,
            r.device_name,
            r.precision or MISSING,
            _fmt(r.load_time_s, ".2f"),
            _fmt(mem.loaded_mb if mem is not None else None, ",.1f"),
            _fmt(mem.inference_peak_mb if mem is not None else None, ",.1f"),
            _fmt(mem.peak_mb if mem is not None else None, ",.1f"),
            _fmt(None if first is None else first / 1e9, ".3f"),
            _fmt(comp.peak_gflops if comp is not None else None, ",.1f"),
        ])
    if not any(any(c != MISSING for c in row[3:]) for row in rows):
        return None
    headers = ["model", "device", "precision", "load (s)", "memory after load (MB)",
               "inference peak (MB)", "peak total (MB)", "GFLOP / sequence",
               "matmul peak (GFLOP/s)"]
    return ("Memory, load time and compute", headers, rows)


def detail_tables(results: Sequence[EvaluationRecord]) -> list[DetailTable]:
    """The detail tables that apply to these records, in report order."""
    return [t for t in (accuracy_table(results), resources_table(results), latency_table(results)) if t]
