"""Flat exports: ``results.csv`` (one row per model, device and latency cell).

The JSON export is ``results.json`` (the evaluator's records as they are); the CSV flattens
them for spreadsheets and pandas: model-level columns repeat on each latency row, and a
model evaluated without latency has one row with empty latency columns. Numbers are written
with full precision, so :func:`read_csv` gives back the same values.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CSV_FILE = "results.csv"

#: Columns of the CSV, in order.
CSV_COLUMNS = [
    "run", "model", "device", "stage", "strategy", "reference", "format", "backend", "precision",
    "threads", "task", "split", "n", "accuracy", "accuracy_ci_low", "accuracy_ci_high",
    "task_metric", "task_metric_value", "acc_diff", "acc_diff_low", "acc_diff_high",
    "params", "disk_bytes", "load_time_s", "load_memory_mb", "inference_peak_mb",
    "peak_memory_mb", "flops_per_sequence", "matmul_peak_gflops", "batch_size",
    "sequence_length", "p50_ms", "p50_ci_low_ms", "p50_ci_high_ms", "p90_ms", "p99_ms",
    "mean_ms", "mean_ci_low_ms", "mean_ci_high_ms", "throughput_seq_per_s", "gflops",
    "peak_fraction", "runs", "stop_reason", "cpu_model", "load_avg_1m", "evaluated_at",
]
_TEXT = {"run", "model", "device", "stage", "strategy", "reference", "format", "backend",
         "precision", "task", "split", "task_metric", "stop_reason", "cpu_model", "evaluated_at"}
_INT = {"threads", "n", "params", "disk_bytes", "flops_per_sequence", "batch_size",
        "sequence_length", "runs"}


def _pair(value: Any, i: int) -> Any:
    return value[i] if isinstance(value, (list, tuple)) and len(value) == 2 else None


def flatten(results: Sequence[dict[str, Any]], *, run: str | None = None) -> list[dict[str, Any]]:
    """The CSV rows of ``results`` as dicts keyed by :data:`CSV_COLUMNS` (``None`` = empty)."""
    rows = []
    for r in results:
        acc = r.get("accuracy") or {}
        ci = acc.get("ci") or {}
        metric = acc.get("task_metric")
        diff = (acc.get("vs_reference") or {}).get("accuracy") or {}
        mem = r.get("memory") or {}
        comp = r.get("compute") or {}
        flops = comp.get("flops_per_sequence") or {}
        size = r.get("size") or {}
        machine = r.get("machine") or {}
        base = {
            "run": r.get("run", run), "model": r.get("model"), "device": r.get("device"),
            "stage": r.get("stage"), "strategy": r.get("strategy"),
            "reference": r.get("reference"), "format": r.get("format"),
            "backend": r.get("backend"), "precision": r.get("precision"),
            "threads": r.get("threads"), "task": r.get("task"), "split": acc.get("split"),
            "n": acc.get("n"), "accuracy": acc.get("accuracy"),
            "accuracy_ci_low": _pair(ci.get("accuracy"), 0),
            "accuracy_ci_high": _pair(ci.get("accuracy"), 1),
            "task_metric": metric, "task_metric_value": acc.get(metric) if metric else None,
            "acc_diff": diff.get("value"), "acc_diff_low": diff.get("low"),
            "acc_diff_high": diff.get("high"), "params": size.get("params"),
            "disk_bytes": size.get("disk_bytes"), "load_time_s": r.get("load_time_s"),
            "load_memory_mb": mem.get("load_rss_mb", mem.get("load_mb")),
            "inference_peak_mb": mem.get("inference_peak_mb"),
            "peak_memory_mb": mem.get("peak_rss_mb", mem.get("peak_gpu_mb")),
            "matmul_peak_gflops": comp.get("peak_gflops"),
            "cpu_model": machine.get("cpu_model"), "load_avg_1m": machine.get("load_avg_1m"),
            "evaluated_at": r.get("evaluated_at"),
        }
        cells = r.get("latency") or [None]
        for e in cells:
            row = dict.fromkeys(CSV_COLUMNS)
            row.update(base)
            length = e.get("sequence_length") if e else r.get("sequence_length")
            row["flops_per_sequence"] = flops.get(str(length)) if length is not None else None
            if e:
                row.update({
                    "batch_size": e.get("batch_size"), "sequence_length": length,
                    "p50_ms": e.get("p50_ms"), "p50_ci_low_ms": _pair(e.get("p50_ci_ms"), 0),
                    "p50_ci_high_ms": _pair(e.get("p50_ci_ms"), 1), "p90_ms": e.get("p90_ms"),
                    "p99_ms": e.get("p99_ms"), "mean_ms": e.get("mean_ms"),
                    "mean_ci_low_ms": _pair(e.get("mean_ci_ms"), 0),
                    "mean_ci_high_ms": _pair(e.get("mean_ci_ms"), 1),
                    "throughput_seq_per_s": e.get("throughput_seq_per_s"),
                    "gflops": e.get("gflops"), "peak_fraction": e.get("peak_fraction"),
                    "runs": e.get("runs"), "stop_reason": e.get("stop_reason"),
                })
            rows.append(row)
    return rows


def render_csv(results: Sequence[dict[str, Any]], *, run: str | None = None) -> str:
    """The CSV text (header + :func:`flatten` rows); floats written with ``repr``."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in flatten(results, run=run):
        writer.writerow({k: "" if v is None else (repr(v) if isinstance(v, float) else v)
                         for k, v in row.items()})
    return buf.getvalue()


def read_csv(path: Path) -> list[dict[str, Any]]:
    """Read a CSV written by :func:`render_csv`: empty cells become ``None``, numeric
    columns ``int``/``float``."""
    out = []
    with open(path, newline="", encoding="utf-8") as fh:
        for raw in csv.DictReader(fh):
            row: dict[str, Any] = {}
            for k, v in raw.items():
                if v == "":
                    row[k] = None
                elif k in _TEXT:
                    row[k] = v
                elif k in _INT:
                    row[k] = int(v)
                else:
                    row[k] = float(v)
            out.append(row)
    return out
