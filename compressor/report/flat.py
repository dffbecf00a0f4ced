"""Flat exports: ``results.csv`` (one row per model, device and latency cell).

The JSON export is ``results.json`` (the evaluator's records,
:class:`~compressor.evaluate.records.EvaluationRecord`); the CSV flattens them for
spreadsheets and pandas: model-level columns repeat on each latency row, and a model
evaluated without latency has one row with empty latency columns. ``instruction_sets`` lists
the CPU's (cpuinfo names, space-separated). Numbers are written with full precision, so
:func:`read_csv` gives back the same values.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from ..evaluate.records import Interval, LatencyCell, as_records
from .tables import Records

CSV_FILE = "results.csv"

#: Columns of the CSV, in order.
CSV_COLUMNS = [
    "run", "model", "device", "stage", "strategy", "reference", "format", "backend", "precision",
    "threads", "task", "split", "n", "accuracy", "accuracy_ci_low", "accuracy_ci_high",
    "task_metric", "task_metric_value", "acc_diff", "acc_diff_low", "acc_diff_high",
    "task_type", "primary_metric", "primary_value", "primary_ci_low", "primary_ci_high",
    "primary_diff", "primary_diff_low", "primary_diff_high",
    "params", "disk_bytes", "load_time_s", "load_memory_mb", "inference_peak_mb",
    "peak_memory_mb", "flops_per_sequence", "matmul_peak_gflops", "batch_size",
    "sequence_length", "p50_ms", "p50_ci_low_ms", "p50_ci_high_ms", "p90_ms", "p99_ms",
    "mean_ms", "mean_ci_low_ms", "mean_ci_high_ms", "throughput_seq_per_s", "gflops",
    "peak_fraction", "runs", "stop_reason", "cpu_model", "instruction_sets", "load_avg_1m",
    "evaluated_at",
]
_TEXT = {"run", "model", "device", "stage", "strategy", "reference", "format", "backend",
         "precision", "task", "split", "task_metric", "task_type", "primary_metric", "stop_reason", "cpu_model",
         "instruction_sets", "evaluated_at"}
_INT = {"threads", "n", "params", "disk_bytes", "flops_per_sequence", "batch_size",
        "sequence_length", "runs"}


def _pair(value: Interval | None, i: int) -> float | None:
    return value[i] if value is not None else None


def flatten(results: Records, *, run: str | None = None) -> list[dict[str, Any]]:
    """The CSV rows of ``results`` as dicts keyed by :data:`CSV_COLUMNS` (``None`` = empty).

    :param results: evaluation records (or raw ``results.json`` objects, any version).
    :param run: the ``run`` column for records that do not name their run.
    """
    rows = []
    for r in as_records(results):
        acc = r.accuracy
        ci = acc.ci if acc is not None else None
        metric = acc.task_metric if acc is not None else None
        vs = acc.vs_reference if acc is not None else None
        diff = vs.accuracy if vs is not None else None
        primary = acc.headline if acc is not None else None
        p_ci = ci.interval(primary) if ci is not None and primary else None
        p_diff = vs.difference(primary) if vs is not None and primary else None
        mem, comp, size, machine = r.memory, r.compute, r.size, r.machine
        base = {
            "run": r.run if r.run is not None else run, "model": r.model, "device": r.device,
            "stage": r.stage, "strategy": r.strategy,
            "reference": r.reference, "format": r.format,
            "backend": r.backend, "precision": r.precision,
            "threads": r.threads, "task": r.task,
            "split": acc.split if acc is not None else None,
            "n": acc.n if acc is not None else None,
            "accuracy": acc.accuracy if acc is not None else None,
            "accuracy_ci_low": _pair(ci.accuracy if ci is not None else None, 0),
            "accuracy_ci_high": _pair(ci.accuracy if ci is not None else None, 1),
            "task_metric": metric,
            "task_metric_value": acc.task_metric_value if acc is not None else None,
            "acc_diff": diff.value if diff is not None else None,
            "acc_diff_low": diff.low if diff is not None else None,
            "acc_diff_high": diff.high if diff is not None else None,
            "task_type": r.task_type,
            "primary_metric": primary,
            "primary_value": acc.value(primary) if acc is not None and primary else None,
            "primary_ci_low": _pair(p_ci, 0),
            "primary_ci_high": _pair(p_ci, 1),
            "primary_diff": p_diff.value if p_diff is not None else None,
            "primary_diff_low": p_diff.low if p_diff is not None else None,
            "primary_diff_high": p_diff.high if p_diff is not None else None,
            "params": size.params if size is not None else None,
            "disk_bytes": size.disk_bytes if size is not None else None,
            "load_time_s": r.load_time_s,
            "load_memory_mb": mem.loaded_mb if mem is not None else None,
            "inference_peak_mb": mem.inference_peak_mb if mem is not None else None,
            "peak_memory_mb": mem.peak_mb if mem is not None else None,
            "matmul_peak_gflops": comp.peak_gflops if comp is not None else None,
            "cpu_model": machine.cpu_model if machine is not None else None,
            "instruction_sets": " ".join(machine.instruction_sets)
            if machine is not None and machine.instruction_sets is not None else None,
            "load_avg_1m": machine.load_avg_1m if machine is not None else None,
            "evaluated_at": r.evaluated_at,
        }
        cells: list[LatencyCell | None] = list(r.latency) or [None]
        for e in cells:
            row: dict[str, Any] = dict.fromkeys(CSV_COLUMNS)
            row.update(base)
            length = e.sequence_length if e is not None else r.sequence_length
            row["flops_per_sequence"] = comp.flops_at(length) if comp is not None else None
            if e is not None:
                row.update({
                    "batch_size": e.batch_size, "sequence_length": length,
                    "p50_ms": e.p50_ms, "p50_ci_low_ms": _pair(e.p50_ci_ms, 0),
                    "p50_ci_high_ms": _pair(e.p50_ci_ms, 1), "p90_ms": e.p90_ms,
                    "p99_ms": e.p99_ms, "mean_ms": e.mean_ms,
                    "mean_ci_low_ms": _pair(e.mean_ci_ms, 0),
                    "mean_ci_high_ms": _pair(e.mean_ci_ms, 1),
                    "throughput_seq_per_s": e.throughput_seq_per_s,
                    "gflops": e.gflops, "peak_fraction": e.peak_fraction,
                    "runs": e.runs, "stop_reason": e.stop_reason,
                })
            rows.append(row)
    return rows


def render_csv(results: Records, *, run: str | None = None) -> str:
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
