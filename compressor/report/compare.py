"""``compressor compare RUN_DIR...``: several runs in one table and one Pareto plot.

Figures measured on different devices, with different thread counts, on different CPU (or
GPU) models or on CPUs with different instruction sets (AVX2 vs AVX-512 VNNI vs AMX: the
int8 and bf16 kernels differ) are not comparable: :func:`compare_runs` refuses to rank them
together unless ``allow_mixed`` is set, and then keeps one table and one plot per comparable
group with a warning in the report. Records written before instruction sets were recorded
take those of the other records of the same CPU model, when these agree. Model names become
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
from ..evaluate.records import EvaluationRecord

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

    results: list[EvaluationRecord]
    groups: dict[str, list[EvaluationRecord]]
    files: list[Path] = field(default_factory=list)


def comparable_key(record: EvaluationRecord) -> tuple[Any, ...]:
    """(device, threads, CPU model, GPU, instruction sets) of a record: figures are
    comparable only within one. The instruction sets are a sorted tuple of cpuinfo names, or
    ``None`` for records written before they were recorded."""
    m = record.machine
    isa = tuple(sorted(m.instruction_sets)) if m is not None and m.instruction_sets is not None else None
    return (
        record.device_name,
        record.threads,
        m.cpu_model if m is not None else None,
        m.gpu if m is not None else None,
        isa,
    )


def comparable_keys(records: Sequence[EvaluationRecord]) -> list[tuple[Any, ...]]:
    """:func:`comparable_key` of each record; an unknown instruction-set list takes the one
    the other records of the same device, threads, CPU and GPU agree on (left unknown when
    they do not agree or there is none)."""
    keys = [comparable_key(r) for r in records]
    known: dict[tuple[Any, ...], set[tuple[str, ...]]] = {}
    for key in keys:
        if key[4] is not None:
            known.setdefault(key[:4], set()).add(key[4])
    out = []
    for key in keys:
        sets = known.get(key[:4], set())
        out.append((*key[:4], next(iter(sets))) if key[4] is None and len(sets) == 1 else key)
    return out


def _isa_text(isa: tuple[str, ...] | None) -> str:
    from ..hardware import label, relevant_instruction_sets

    if isa is None:
        return "instruction sets not recorded"
    order = [n for table in (relevant_instruction_sets("x86_64"), relevant_instruction_sets("aarch64"))
             for n, _ in table]
    names = sorted(isa, key=lambda n: order.index(n) if n in order else len(order))
    return "+".join(label(n) for n in names) or "no AVX2/AVX-512/AMX"


def _labels(keys: Sequence[tuple[Any, ...]]) -> dict[tuple[Any, ...], str]:
    """A heading per distinct key: ``"cpu, 2 threads, AMD EPYC"``, with the instruction sets
    appended when the keys do not all share them."""
    distinct = list(dict.fromkeys(keys))
    with_isa = len({k[4] for k in distinct}) > 1
    out = {}
    for device, threads, cpu, gpu, isa in distinct:
        text = f"{device}, {threads} threads, {gpu or cpu}"
        if with_isa and device != "cuda":
            text += f" ({_isa_text(isa)})"
        out[(device, threads, cpu, gpu, isa)] = text
    return out


def load_run(run_dir: Path) -> tuple[str, list[EvaluationRecord]]:
    """A run's name (its manifest's ``run``, else the folder name) and its records.

    :raises CompressorError: for a missing folder or unreadable results.
    """
    from ..manifest import read_manifest
    from .files import load_results

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CompressorError(f"run directory {run_dir} does not exist")
    results = load_results(run_dir)
    try:
        manifest = read_manifest(run_dir) or {}
    except (OSError, json.JSONDecodeError):
        manifest = {}
    return str(manifest.get("run") or run_dir.name), results


def _prefixed(record: EvaluationRecord, run: str) -> EvaluationRecord:
    """A copy of ``record`` named ``<run>/<model>``, its references likewise."""
    rec = record.model_copy(deep=True)
    rec.run = run
    rec.model = f"{run}/{record.model}"
    if record.reference:
        rec.reference = f"{run}/{record.reference}"
    if record.parent:
        rec.parent = f"{run}/{record.parent}"
    vs = rec.accuracy.vs_reference if rec.accuracy is not None else None
    if vs is not None and vs.reference:
        vs.reference = f"{run}/{vs.reference}"
    return rec


def compare_runs(
    run_dirs: Sequence[Path],
    *,
    output: Path | None = None,
    allow_mixed: bool = False,
    title: str = "Comparison",
) -> Comparison:
    """Merge the results of several runs; write ``compare.{md,html,csv,json}`` and
    ``pareto-<device>.png`` into ``output`` when given.

    :param run_dirs: run directories (each with ``results.json``, any schema version).
    :param output: folder for the files (created); ``None`` writes nothing.
    :param allow_mixed: accept records from different devices, thread counts, CPU/GPU
        models or CPU instruction sets (one table and plot per comparable group).
    :param title: the report title.
    :returns: a :class:`Comparison`.
    :raises CompressorError: for no run, a missing or unreadable run, two runs with the same
        name, or incomparable figures without ``allow_mixed``.
    """
    if not run_dirs:
        raise CompressorError("compare needs at least one run directory")
    merged: list[EvaluationRecord] = []
    names: dict[str, Path] = {}
    for run_dir in run_dirs:
        name, results = load_run(run_dir)
        if name in names:
            name = f"{name}@{Path(run_dir).name}"
            if name in names:
                raise CompressorError(f"run {run_dir} is given twice")
        names[name] = Path(run_dir)
        merged += [_prefixed(r, name) for r in results]
    keys = comparable_keys(merged)
    labels = _labels(keys)
    groups: dict[str, list[EvaluationRecord]] = {}
    for rec, key in zip(merged, keys):
        groups.setdefault(labels[key], []).append(rec)
    if len(groups) > 1 and not allow_mixed:
        listing = "; ".join(
            f"{label}: {', '.join(r.model for r in recs)}" for label, recs in groups.items()
        )
        raise CompressorError(
            f"these runs were measured under different conditions and cannot be ranked "
            f"together ({listing})",
            hint="compare runs from one device, thread count and CPU/GPU model with the same "
            "instruction sets, or pass --allow-mixed to get one table per group",
        )
    comparison = Comparison(results=merged, groups=groups)
    if output is not None:
        comparison.files = _write(Path(output), comparison, title=title, runs=names)
    return comparison


def _write(out: Path, comparison: Comparison, *, title: str, runs: dict[str, Path]) -> list[Path]:
    from ..io import write_bytes_atomic, write_json_atomic, write_text_atomic
    from .content import Figure, comparison_content, pareto_figure
    from .tables import headline_label
    from .figures import pareto_png
    from .flat import render_csv
    from .html import render_html_document
    from .markdown import render_markdown

    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    mixed = len(comparison.groups) > 1
    figures: list[Figure | None] = []
    for i, (label, recs) in enumerate(comparison.groups.items()):
        png = pareto_png(recs, title=f"{title}: {label}")
        if png is None:
            figures.append(None)
            continue
        device = recs[0].device_name
        fname = f"pareto-{device}.png" if not mixed else f"pareto-{i + 1}-{device}.png"
        write_bytes_atomic(out / fname, png)
        files.append(out / fname)
        figures.append(pareto_figure(device, file=fname, png=png, alt=f"Pareto plot: {label}",
                                     figure_id=Path(fname).stem, metric=headline_label(recs)))
    content = comparison_content(comparison, title=title, runs=runs, figures=figures)
    write_text_atomic(out / COMPARE_MD, render_markdown(content))
    write_text_atomic(out / COMPARE_HTML, render_html_document(content))
    write_text_atomic(out / COMPARE_CSV, render_csv(comparison.results))
    write_json_atomic(out / COMPARE_JSON, [r.to_json() for r in comparison.results])
    files += [out / COMPARE_MD, out / COMPARE_HTML, out / COMPARE_CSV, out / COMPARE_JSON]
    return files
