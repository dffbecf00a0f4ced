"""``compressor compare RUN_DIR...``: several runs in one table and one Pareto plot.

Figures measured on different devices, with different thread counts or on different CPU
(or GPU) models are not comparable: :func:`compare_runs` refuses to rank them together
unless ``allow_mixed`` is set, and then keeps one table and one plot per comparable group
(device, threads, CPU model, GPU) with a warning in the report. Model names become
``<run>/<model>`` so references stay within their run. Note that latencies from separate
runs were not timed interleaved: on a shared machine their ratios are less reliable than
those within one run (the report says so).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CompressorError

COMPARE_MD = "compare.md"
COMPARE_HTML = "compare.html"
COMPARE_CSV = "compare.csv"
COMPARE_JSON = "compare.json"


@dataclass
class Comparison:
    """What :func:`compare_runs` produced.

    :ivar results: every record, names prefixed with their run.
    :ivar groups: comparable-group label -> its records.
    :ivar files: the files written (empty without an output folder).
    """

    results: list[dict[str, Any]]
    groups: dict[str, list[dict[str, Any]]]
    files: list[Path] = field(default_factory=list)


def comparable_key(record: dict[str, Any]) -> tuple[Any, ...]:
    """(device, threads, CPU model, GPU) of a record: figures are comparable only within one."""
    m = record.get("machine") or {}
    return (record.get("device") or "cpu", record.get("threads"), m.get("cpu_model"), m.get("gpu"))


def _label(key: tuple[Any, ...]) -> str:
    device, threads, cpu, gpu = key
    return f"{device}, {threads} threads, {gpu or cpu}"


def load_run(run_dir: Path) -> tuple[str, list[dict[str, Any]]]:
    """A run's name (its manifest's ``run``, else the folder name) and its results."""
    from ..manifest import read_manifest
    from .markdown import load_results

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CompressorError(f"run directory {run_dir} does not exist")
    results = load_results(run_dir)
    try:
        manifest = read_manifest(run_dir) or {}
    except (OSError, json.JSONDecodeError):
        manifest = {}
    return str(manifest.get("run") or run_dir.name), results


def compare_runs(
    run_dirs: Sequence[Path],
    *,
    output: Path | None = None,
    allow_mixed: bool = False,
    title: str = "Comparison",
) -> Comparison:
    """Merge the results of several runs; write ``compare.{md,html,csv,json}`` and
    ``pareto-<device>.png`` into ``output`` when given.

    :param run_dirs: run directories (each with ``results.json``).
    :param output: folder for the files (created); ``None`` writes nothing.
    :param allow_mixed: accept records from different devices, thread counts or CPU/GPU
        models (one table and plot per comparable group).
    :param title: the report title.
    :returns: a :class:`Comparison`.
    :raises CompressorError: for no run, a missing or unreadable run, two runs with the same
        name, or incomparable figures without ``allow_mixed``.
    """
    if not run_dirs:
        raise CompressorError("compare needs at least one run directory")
    merged: list[dict[str, Any]] = []
    names: dict[str, Path] = {}
    for run_dir in run_dirs:
        name, results = load_run(run_dir)
        if name in names:
            name = f"{name}@{Path(run_dir).name}"
            if name in names:
                raise CompressorError(f"run {run_dir} is given twice")
        names[name] = Path(run_dir)
        for r in results:
            rec = json.loads(json.dumps(r))  # a deep copy
            rec["run"] = name
            rec["model"] = f"{name}/{r.get('model')}"
            if r.get("reference"):
                rec["reference"] = f"{name}/{r['reference']}"
            if r.get("parent"):
                rec["parent"] = f"{name}/{r['parent']}"
            merged.append(rec)
    groups: dict[str, list[dict[str, Any]]] = {}
    for rec in merged:
        groups.setdefault(_label(comparable_key(rec)), []).append(rec)
    if len(groups) > 1 and not allow_mixed:
        listing = "; ".join(
            f"{label}: {', '.join(r['model'] for r in recs)}" for label, recs in groups.items()
        )
        raise CompressorError(
            f"these runs were measured under different conditions and cannot be ranked "
            f"together ({listing})",
            hint="compare runs from one device, thread count and CPU/GPU model, or pass "
            "--allow-mixed to get one table per group",
        )
    comparison = Comparison(results=merged, groups=groups)
    if output is not None:
        comparison.files = _write(Path(output), comparison, title=title, runs=names)
    return comparison


def _write(out: Path, comparison: Comparison, *, title: str, runs: dict[str, Path]) -> list[Path]:
    import tabulate

    from ..artifact import write_json_atomic
    from .details import detail_tables
    from .figures import pareto_png
    from .flat import render_csv
    from .html import render_html
    from .markdown import notes_lines, write_text_atomic
    from .tables import render_table

    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    run_lines = [f"- **{name}**: `{path}`" for name, path in runs.items()]
    mixed = len(comparison.groups) > 1
    warn = ["- **Warning**: mixed devices, thread counts or machines were allowed; each group "
            "below is ranked on its own, and figures must not be compared across groups."] if mixed else []
    sep = ["- Latencies from different runs were not timed interleaved: on a shared machine "
           "ratios across runs are less reliable than within one run."]
    parts = [f"# {title}", "", *run_lines, *warn, *sep, ""]
    images: dict[str, bytes] = {}
    for i, (label, recs) in enumerate(comparison.groups.items()):
        parts += [f"## {label}", "", render_table(recs, fmt="github"), ""]
        png = pareto_png(recs, title=f"{title}: {label}")
        if png is not None:
            device = recs[0].get("device") or "cpu"
            fname = f"pareto-{device}.png" if not mixed else f"pareto-{i + 1}-{device}.png"
            (out / fname).write_bytes(png)
            files.append(out / fname)
            images.setdefault(device, png)  # the HTML embeds one plot per device
            parts += [f"![Pareto plot: {label}]({fname})", ""]
    for table_title, headers, rows in detail_tables(comparison.results):
        parts += [f"## {table_title}", "",
                  tabulate.tabulate(rows, headers=headers, tablefmt="github",
                                    disable_numparse=True), ""]
    parts += ["## Notes", "", *notes_lines(comparison.results), ""]
    write_text_atomic(out / COMPARE_MD, "\n".join(parts))
    write_text_atomic(out / COMPARE_HTML, render_html(comparison.results, title=title, images=images))
    write_text_atomic(out / COMPARE_CSV, render_csv(comparison.results))
    write_json_atomic(out / COMPARE_JSON, comparison.results)
    files += [out / COMPARE_MD, out / COMPARE_HTML, out / COMPARE_CSV, out / COMPARE_JSON]
    return files
