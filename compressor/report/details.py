"""Detail tables under the main comparison: accuracy intervals, every latency cell, memory
and compute. Each is ``(title, headers, rows of text cells)`` so the markdown and HTML
reports render the same content."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .tables import MISSING, accuracy_value, diff_verdict, paired_diff, task_metric_value

DetailTable = tuple[str, list[str], list[list[str]]]


def _fmt(value: Any, spec: str) -> str:
    return MISSING if value is None else format(value, spec)


def _ci(pair: Any, scale: float = 1.0, spec: str = ".2f") -> str:
    if not pair or len(pair) != 2 or None in pair:
        return MISSING
    return f"[{format(pair[0] * scale, spec)}, {format(pair[1] * scale, spec)}]"


def devices(results: Sequence[dict[str, Any]]) -> list[str]:
    """Devices of the results in first-seen order (``"cpu"`` for records without one)."""
    out: list[str] = []
    for r in results:
        d = r.get("device") or "cpu"
        if d not in out:
            out.append(d)
    return out


def accuracy_table(results: Sequence[dict[str, Any]]) -> DetailTable | None:
    """Accuracy and task metric with bootstrap intervals; paired difference from the
    reference with its interval and a verdict (``within noise`` when it contains 0)."""
    rows = []
    for r in results:
        acc = r.get("accuracy")
        if not acc:
            continue
        ci = acc.get("ci") or {}
        metric = acc.get("task_metric")
        d_acc = paired_diff(r, "accuracy")
        d_task = paired_diff(r, metric) if metric else None
        vs = (acc.get("vs_reference") or {}).get("reference")
        rows.append([
            str(r.get("model")),
            str(r.get("device") or "cpu"),
            _fmt(None if accuracy_value(r) is None else 100 * accuracy_value(r), ".2f"),
            _ci(ci.get("accuracy"), 100),
            f"{metric}: {_fmt(None if task_metric_value(r) is None else 100 * task_metric_value(r), '.2f')}"
            if metric else MISSING,
            _ci(ci.get(metric), 100) if metric else MISSING,
            vs or MISSING,
            _fmt(None if d_acc is None else 100 * d_acc["value"], "+.2f"),
            _ci([d_acc["low"], d_acc["high"]], 100, "+.2f") if d_acc else MISSING,
            _fmt(None if d_task is None else 100 * d_task["value"], "+.2f"),
            diff_verdict(r) or MISSING,
        ])
    if not rows:
        return None
    conf = next((int(round(100 * (r["accuracy"].get("ci") or {}).get("confidence", 0.95)))
                 for r in results if r.get("accuracy")), 95)
    headers = ["model", "device", "accuracy (%)", f"{conf}% CI", "task metric (%)", f"{conf}% CI",
               "vs", "acc Δ (pts)", f"acc Δ {conf}% CI (pts)", "task Δ (pts)", "verdict"]
    return (f"Accuracy with {conf}% bootstrap intervals and paired differences", headers, rows)


def latency_table(results: Sequence[dict[str, Any]]) -> DetailTable | None:
    """Every (batch size, sequence length) cell of every model."""
    rows = []
    for r in results:
        for e in r.get("latency") or []:
            rows.append([
                str(r.get("model")),
                str(r.get("device") or "cpu"),
                str(e.get("batch_size")),
                str(e.get("sequence_length")),
                _fmt(e.get("p50_ms"), ".2f"),
                _ci(e.get("p50_ci_ms")),
                _fmt(e.get("p90_ms"), ".2f"),
                _fmt(e.get("p99_ms"), ".2f"),
                _fmt(e.get("mean_ms"), ".2f") + (
                    f" {_ci(e.get('mean_ci_ms'))}" if e.get("mean_ci_ms") else ""),
                _fmt(e.get("throughput_seq_per_s"), ",.1f"),
                _fmt(e.get("gflops"), ".1f"),
                _fmt(None if e.get("peak_fraction") is None else 100 * e["peak_fraction"], ".1f"),
                str(e.get("runs", MISSING)),
                str(e.get("stop_reason") or MISSING),
            ])
    if not rows:
        return None
    headers = ["model", "device", "batch", "tokens", "p50 (ms)", "p50 95% CI (ms)", "p90 (ms)",
               "p99 (ms)", "mean (ms) [95% CI]", "throughput (seq/s)", "GFLOP/s",
               "% of matmul peak", "runs", "stopped by"]
    return ("Latency: every batch size x sequence length", headers, rows)


def resources_table(results: Sequence[dict[str, Any]]) -> DetailTable | None:
    """Precision, load time, memory, FLOPs per sequence and the calibrated matmul peak."""
    rows = []
    for r in results:
        mem = r.get("memory") or {}
        comp = r.get("compute") or {}
        flops = comp.get("flops_per_sequence") or {}
        first = flops.get(str(r.get("sequence_length"))) if flops else None
        peak = mem.get("peak_rss_mb", mem.get("peak_gpu_mb"))
        rows.append([
            str(r.get("model")),
            str(r.get("device") or "cpu"),
            str(r.get("precision") or MISSING),
            _fmt(r.get("load_time_s"), ".2f"),
            _fmt(mem.get("load_rss_mb", mem.get("load_mb")), ",.1f"),
            _fmt(mem.get("inference_peak_mb"), ",.1f"),
            _fmt(peak, ",.1f"),
            _fmt(None if first is None else first / 1e9, ".3f"),
            _fmt(comp.get("peak_gflops"), ",.1f"),
        ])
    if not any(any(c != MISSING for c in row[3:]) for row in rows):
        return None
    headers = ["model", "device", "precision", "load (s)", "memory after load (MB)",
               "inference peak (MB)", "peak total (MB)", "GFLOP / sequence",
               "matmul peak (GFLOP/s)"]
    return ("Memory, load time and compute", headers, rows)


def detail_tables(results: Sequence[dict[str, Any]]) -> list[DetailTable]:
    """The detail tables that apply to these results, in report order."""
    return [t for t in (accuracy_table(results), resources_table(results), latency_table(results)) if t]


def resource_notes(results: Sequence[dict[str, Any]]) -> list[str]:
    """Notes explaining the detail tables' methods (markdown bullets)."""
    notes = [
        "- Accuracy intervals: percentile bootstrap over the evaluation examples "
        "(fixed seed); acc Δ: paired bootstrap of model minus reference on the same examples "
        "and resamples; **within noise** means the interval contains 0.",
        "- Latency: warm-up, then interleaved timed rounds until each p50's order-statistic "
        "95% interval is within the target (\"stable\"), or a run/time cap; per-call samples "
        "give p90/p99; mean with a Student-t interval.",
    ]
    if any(r.get("memory") for r in results):
        method = next(((r.get("memory") or {}).get("method") for r in results if r.get("memory")), "")
        notes.append(
            "- Memory (CPU): resident memory added by loading the model (RSS delta after "
            "gc + malloc_trim), plus the peak added by one call at the largest batch and "
            f"length ({method}); measured in the evaluating process, model by model."
        )
    if any(r.get("compute") for r in results):
        notes.append(
            "- GFLOP / sequence: matrix products at batch 1 (torch FlopCounterMode for "
            "PyTorch, the ONNX graph's MatMul/Gemm nodes for ONNX); GFLOP/s = FLOPs x batch / "
            "p50; matmul peak: 1024^3 product at the model's precision and thread count "
            "(torch.utils.benchmark), GOP/s for int8."
        )
    return notes
