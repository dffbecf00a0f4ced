"""The Pareto plot: the task's headline metric (accuracy, entity F1, Spearman...) vs p50
latency, marker area by disk size, optimal models marked.

matplotlib with the Agg backend (no display needed), imported inside the functions.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..evaluate.records import EvaluationRecord, as_records
from ..evaluate.stats import pareto_front
from .tables import Records, accuracy_value, batch_sizes, by_device, disk_bytes, latency_at, metric_header


def plot_batch_size(results: Sequence[EvaluationRecord]) -> int | None:
    """The batch size the plot uses: 1 when measured, else the smallest."""
    sizes = batch_sizes(results)
    if not sizes:
        return None
    return 1 if 1 in sizes else sizes[0]


def pareto_points(results: Records) -> list[dict[str, Any]]:
    """One point per record with a headline metric and latency: ``{"model", "accuracy" (the
    headline metric as a fraction),
    "p50_ms", "disk_mb", "optimal"}``; ``optimal`` marks the Pareto front (higher accuracy,
    lower p50 at :func:`plot_batch_size`, the record's primary sequence length)."""
    results = as_records(results)
    bs = plot_batch_size(results)
    points = []
    for r in results:
        acc = accuracy_value(r)
        p50 = latency_at(r, bs, "p50_ms") if bs is not None else None
        if acc is None or p50 is None:
            continue
        disk = disk_bytes(r)
        points.append({"model": r.model, "accuracy": acc, "p50_ms": p50,
                       "disk_mb": None if disk is None else disk / 1e6})
    flags = pareto_front([(p["accuracy"], p["p50_ms"]) for p in points])
    for p, flag in zip(points, flags):
        p["optimal"] = flag
    return points


def pareto_png(results: Records, *, title: str) -> bytes | None:
    """A PNG of the Pareto plot of ``results`` (one device), or ``None`` without points.

    x: p50 latency (ms, log scale when it spans more than 10x) at :func:`plot_batch_size`;
    y: the headline metric (x100, labelled by :func:`metric_header`); marker area proportional to disk size; Pareto-optimal models drawn as
    filled stars joined by the front, the others as open circles; each point labelled.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    results = as_records(results)
    points = pareto_points(results)
    if not points:
        return None
    bs = plot_batch_size(results)
    length = next((r.sequence_length for r in results if r.sequence_length), None)
    disks = [p["disk_mb"] or 0.0 for p in points]
    biggest = max(disks) or 1.0
    fig, ax = plt.subplots(figsize=(7.0, 4.6), dpi=110)
    try:
        for p, disk in zip(points, disks):
            size = 40 + 560 * disk / biggest
            if p["optimal"]:
                ax.scatter(p["p50_ms"], 100 * p["accuracy"], s=size, marker="*",
                           color="tab:red", edgecolor="black", zorder=3)
            else:
                ax.scatter(p["p50_ms"], 100 * p["accuracy"], s=size, marker="o",
                           facecolor="none", edgecolor="tab:blue", zorder=2)
            ax.annotate(f"{p['model']} ({disk:.0f} MB)", (p["p50_ms"], 100 * p["accuracy"]),
                        textcoords="offset points", xytext=(6, 6), fontsize=8)
        front = sorted((p for p in points if p["optimal"]), key=lambda p: p["p50_ms"])
        if len(front) > 1:
            ax.plot([p["p50_ms"] for p in front], [100 * p["accuracy"] for p in front],
                    color="tab:red", linestyle="--", linewidth=1, zorder=1,
                    label="Pareto front")
            ax.legend(loc="lower right", fontsize=8)
        lat = [p["p50_ms"] for p in points]
        if min(lat) > 0 and max(lat) / min(lat) > 10:
            ax.set_xscale("log")
        ax.set_xlabel(f"p50 latency (ms), batch {bs}" + (f", {length} tokens" if length else ""))
        ax.set_ylabel(metric_header(results))
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.margins(x=0.25, y=0.2)
        buf = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)


def pareto_plots(results: Sequence[EvaluationRecord], *, title: str) -> dict[str, bytes]:
    """The Pareto plot of each device (``title (device)``), as PNG bytes.

    :returns: device -> PNG, for devices with at least one point.
    """
    out: dict[str, bytes] = {}
    for device, subset in by_device(results):
        png = pareto_png(subset, title=f"{title} ({device})")
        if png is not None:
            out[device] = png
    return out


def write_pareto_plots(out_dir: Path, results: Records, *, title: str) -> dict[str, Path]:
    """Write ``pareto-<device>.png`` per device into ``out_dir`` (each atomically).

    :returns: device -> path, for devices with at least one point.
    """
    from ..io import write_bytes_atomic

    out: dict[str, Path] = {}
    for device, png in pareto_plots(as_records(results), title=title).items():
        path = Path(out_dir) / f"pareto-{device}.png"
        write_bytes_atomic(path, png)
        out[device] = path
    return out
