"""The comparison table: one row per evaluated model, absolute and relative columns.

Input is a list of :class:`~compressor.evaluate.records.EvaluationRecord` (raw dicts as in
``results.json`` are loaded first, any schema version). Relative columns compare a model with
its ``reference`` (the teacher of a distilled student, the parent otherwise) when that
reference is among the records.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import CompressorError
from ..evaluate.metrics import METRICS
from ..evaluate.records import EvaluationRecord, as_records, load_record

MISSING = "-"
"""Cell text for values that do not apply or were not measured."""

#: What the report functions accept: typed records or raw ``results.json`` objects.
Records = Sequence["EvaluationRecord | Mapping[str, Any]"]


def devices(results: Sequence[EvaluationRecord]) -> list[str]:
    """Devices of the records in first-seen order (``"cpu"`` for records without one)."""
    out: list[str] = []
    for r in results:
        if r.device_name not in out:
            out.append(r.device_name)
    return out


def by_device(results: Sequence[EvaluationRecord]) -> list[tuple[str, list[EvaluationRecord]]]:
    """The records split by device (first-seen order): tables and rankings never mix devices."""
    return [(d, [r for r in results if r.device_name == d]) for d in devices(results)]


# --- reading values out of records ------------------------------------------------------


def batch_sizes(results: Sequence[EvaluationRecord]) -> list[int]:
    """Every batch size at which any record has latency, ascending."""
    return sorted({cell.batch_size for r in results for cell in r.latency})


def latency_at(
    result: EvaluationRecord, batch_size: int, key: str, sequence_length: int | None = None
) -> float | None:
    """``result``'s latency value ``key`` (e.g. ``"p50_ms"``) at ``batch_size``, or ``None``.

    :param sequence_length: the cell's length in tokens; default: the record's primary
        length (``sequence_length``, the first of the matrix), or any length for records
        that record none.
    :raises AttributeError: for a ``key`` that is not a field of
        :class:`~compressor.evaluate.records.LatencyCell`.
    """
    cell = result.latency_cell(batch_size, sequence_length)
    value = cell.value(key) if cell is not None else None
    return float(value) if value is not None else None


def headline(result: EvaluationRecord | None) -> str:
    """The record's headline quality metric (``"accuracy"`` for classification, else the
    task's first metric: Spearman, entity F1, exact match...)."""
    if result is None or result.accuracy is None:
        return "accuracy"
    return result.accuracy.headline


def accuracy_value(result: EvaluationRecord | None, key: str | None = None) -> float | None:
    """A value of ``result.accuracy``: metric ``key``, the headline metric by default
    (fractions and correlations as stored), or ``None``."""
    if result is None or result.accuracy is None:
        return None
    return result.accuracy.value(key or result.accuracy.headline)


def task_metric_value(result: EvaluationRecord) -> float | None:
    """The record's second task metric (F1 or macro-F1 for classification), or ``None``."""
    return result.accuracy.task_metric_value if result.accuracy is not None else None


def accuracy_ci95_pts(result: EvaluationRecord) -> float | None:
    """Half-width, x100 (percentage points for fractions), of the 95% interval of the
    headline metric.

    The evaluator's bootstrap interval (half its width) when recorded, else for accuracy
    the normal approximation ``1.96 * sqrt(p * (1 - p) / n) * 100``; ``None`` without a
    value or examples.
    """
    acc = result.accuracy
    if acc is None:
        return None
    ci = acc.ci.interval(acc.headline) if acc.ci is not None else None
    if ci is not None:
        return 50.0 * (ci[1] - ci[0])
    p = acc.accuracy if acc.headline == "accuracy" else None
    if p is None or not acc.n:
        return None
    return 196.0 * math.sqrt(p * (1.0 - p) / acc.n)


def metric_header(results: Sequence[EvaluationRecord], which: str = "headline") -> str:
    """Column header of the headline (or the second, ``which="task"``) metric: the task's
    label with its unit, e.g. ``"accuracy (%)"``, ``"Spearman (x100)"``."""
    headers = set()
    for r in results:
        acc = r.accuracy
        if acc is None:
            continue
        name = acc.headline if which == "headline" else acc.task_metric
        if not name:
            continue
        if name in acc.metric_labels:
            headers.add(acc.metric_labels[name])
        else:
            metric = METRICS.get(name)
            headers.add(f"{metric.label if metric else name} (%)")
    if len(headers) == 1:
        return headers.pop()
    unit = "(%)" if headers and all(h.endswith("(%)") for h in headers) else "(x100)"
    return f"quality {unit}" if which == "headline" else f"task metric {unit}"


def headline_label(results: Sequence[EvaluationRecord]) -> str:
    """The headline metric's name without its unit (``"accuracy"``, ``"entity F1"``), for
    plot captions and notes."""
    return metric_header(results).rsplit(" (", 1)[0]


def short_metric(results: Sequence[EvaluationRecord]) -> str:
    """The headline metric's short name for Δ columns (``acc`` for accuracy)."""
    names = {headline(r) for r in results if r.accuracy is not None}
    if names == {"accuracy"} or not names:
        return "acc"
    return names.pop() if len(names) == 1 else "quality"


def disk_bytes(result: EvaluationRecord | None) -> float | None:
    """Bytes on disk (``size.disk_bytes``, else ``size.disk_mb`` x 1e6), or ``None``."""
    if result is None or result.size is None:
        return None
    return result.size.total_bytes


def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den == 0:
        return None
    return num / den


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


# --- columns -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One table column.

    :param header: header text, unit in parentheses.
    :param value: computes the cell from (record, reference record or ``None``).
    :param fmt: formats a non-``None`` value to text.
    :param align: ``"left"`` or ``"right"``.
    """

    header: str
    value: Callable[[EvaluationRecord, EvaluationRecord | None], Any]
    fmt: Callable[[Any], str] = str
    align: str = "right"


def _f(digits: int, signed: bool = False) -> Callable[[Any], str]:
    spec = f"{'+' if signed else ''},.{digits}f"
    return lambda v: format(v, spec)


def _pct(v: float | None) -> float | None:
    return None if v is None else 100.0 * v


def _model(r: EvaluationRecord | None) -> str | None:
    return r.model if r is not None else None


def table_columns(results: Sequence[EvaluationRecord]) -> list[Column]:
    """The columns of :func:`render_table` for these records.

    Accuracy columns appear when any record has accuracy, latency columns when any has
    latency, relative columns when any record's reference is among the records. The
    "small" batch size is 1 when measured (else the smallest); throughput is shown at the
    largest.
    """
    cols = [
        Column("model", lambda r, _: r.model, align="left"),
        Column("strategy", lambda r, _: r.strategy, align="left"),
    ]
    has_accuracy = any(r.accuracy for r in results)
    short = short_metric(results)
    if has_accuracy:
        cols += [
            Column(metric_header(results), lambda r, _: _pct(accuracy_value(r)), _f(2)),
            Column(f"{short} ±95% (pts)", lambda r, _: accuracy_ci95_pts(r), _f(2)),
        ]
        if any(task_metric_value(r) is not None for r in results):
            cols.append(Column(metric_header(results, "task"),
                               lambda r, _: _pct(task_metric_value(r)), _f(2)))
        if any(collapse_flag(r) for r in results):
            cols.append(Column("accuracy check", lambda r, _: collapse_flag(r), align="left"))
    cols += [
        Column("params (M)", lambda r, _: _params_m(r), _f(2)),
        Column("disk (MB)", lambda r, _: _disk_mb(r), _f(1)),
    ]
    if any((sparsity_value(r) or 0.0) >= 0.01 for r in results):
        cols.append(Column("sparsity (%)", lambda r, _: _pct(sparsity_value(r)), _f(1)))
    sizes = batch_sizes(results)
    small = large = None
    if sizes:
        small = 1 if 1 in sizes else sizes[0]
        large = sizes[-1]
        for bs in sizes:
            cols.append(
                Column(f"p50 bs{bs} (ms)", lambda r, _, bs=bs: latency_at(r, bs, "p50_ms"), _f(2))
            )
        cols += [
            Column(f"p90 bs{small} (ms)", lambda r, _: latency_at(r, small, "p90_ms"), _f(2)),
            Column(f"p99 bs{small} (ms)", lambda r, _: latency_at(r, small, "p99_ms"), _f(2)),
            Column(
                f"throughput bs{large} (seq/s)",
                lambda r, _: latency_at(r, large, "throughput_seq_per_s"),
                _f(1),
            ),
        ]
    names = {r.model for r in results}
    if any(r.reference in names for r in results):
        cols.append(Column("vs", lambda r, ref: _model(ref), align="left"))
        if has_accuracy:
            cols.append(
                Column(
                    f"{short} Δ (pts)",
                    lambda r, ref: _pct(_diff(accuracy_value(r), accuracy_value(ref)))
                    if ref
                    else None,
                    _f(2, signed=True),
                )
            )
            if any(paired_diff(r) for r in results):
                cols.append(Column(f"{short} Δ 95% CI (pts)", lambda r, _: _diff_ci_text(r)))
                cols.append(Column("verdict", lambda r, _: diff_verdict(r), align="left"))
        if small is not None:
            cols.append(
                Column(
                    f"speedup bs{small} (x)",
                    lambda r, ref: _ratio(
                        latency_at(ref, small, "p50_ms"), latency_at(r, small, "p50_ms")
                    )
                    if ref
                    else None,
                    _f(2),
                )
            )
        cols.append(
            Column(
                "size ratio",
                lambda r, ref: _ratio(disk_bytes(r), disk_bytes(ref)) if ref else None,
                _f(2),
            )
        )
        if any(no_speedup_flag(r, ref) for r, ref in zip(results, references(results))):
            cols.append(Column("speed check", lambda r, ref: no_speedup_flag(r, ref), align="left"))
    return cols


def sparsity_value(result: EvaluationRecord) -> float | None:
    """Fraction of zeros in the encoder layers' Linear weights (``size.sparsity``), or ``None``."""
    return result.size.sparsity if result.size is not None else None


def collapse_flag(result: "EvaluationRecord | Mapping[str, Any]") -> str | None:
    """``"one class for all N examples"`` when a model predicted the same class for every
    example of the accuracy split (``accuracy.predicted_classes == 1``): a collapsed model,
    whatever its accuracy says (on a balanced binary split that is about 50%).

    :returns: the flag text, or ``None`` (more than one class predicted, or not recorded).
    """
    acc = load_record(result).accuracy
    if acc is not None and acc.predicted_classes == 1 and (acc.n or 0) > 1:
        return f"one class for all {acc.n} examples"
    return None


SHRINK_THRESHOLD = 0.10
"""A model counts as smaller when its parameters or its non-zero weights fell by more than this
fraction of its reference's."""

SPEEDUP_THRESHOLD = 0.05
"""... and as faster when its p50 latency fell by at least this fraction of its reference's."""


def _zeros(r: EvaluationRecord) -> int | None:
    structure = r.size.structure if r.size is not None else None
    return structure.zero_weights if structure is not None else None


def no_speedup_flag(
    result: "EvaluationRecord | Mapping[str, Any]",
    reference: "EvaluationRecord | Mapping[str, Any] | None",
) -> str | None:
    """``"no measured speedup (bs1, bs32)"`` when a model shrank but did not get faster.

    The model shrank when its parameter count, or its count of non-zero parameters
    (parameters minus the zeros in ``size.structure.zero_weights``), is more than :data:`SHRINK_THRESHOLD` below its
    reference's; it did not get faster at a batch size where its p50 latency is less than
    :data:`SPEEDUP_THRESHOLD` below the reference's (both measured in the same run). The
    batch sizes listed are those without the speedup. Masks in dense kernels, the usual
    outcome of unstructured pruning in plain PyTorch, get this flag.

    :returns: the flag text, or ``None`` (no reference, not smaller, or faster everywhere).
    """
    if reference is None:
        return None
    result, reference = load_record(result), load_record(reference)
    params = result.size.params if result.size is not None else None
    ref_params = reference.size.params if reference.size is not None else None
    smaller = bool(params and ref_params and params < (1.0 - SHRINK_THRESHOLD) * ref_params)
    zeros = _zeros(result)
    ref_zeros = _zeros(reference) or 0
    if zeros is not None and params and ref_params:
        nonzero, ref_nonzero = params - zeros, ref_params - ref_zeros
        smaller = smaller or nonzero < (1.0 - SHRINK_THRESHOLD) * ref_nonzero
    if not smaller:
        return None
    slow = []
    for bs in batch_sizes([result]):
        p50, ref_p50 = latency_at(result, bs, "p50_ms"), latency_at(reference, bs, "p50_ms")
        if p50 is not None and ref_p50 and p50 > (1.0 - SPEEDUP_THRESHOLD) * ref_p50:
            slow.append(f"bs{bs}")
    return f"no measured speedup ({', '.join(slow)})" if slow else None


def _params_m(r: EvaluationRecord) -> float | None:
    params = r.size.params if r.size is not None else None
    return None if params is None else params / 1e6


def _disk_mb(r: EvaluationRecord) -> float | None:
    b = disk_bytes(r)
    return None if b is None else b / 1e6


def references(results: Sequence[EvaluationRecord]) -> list[EvaluationRecord | None]:
    """For each record, the record named by its ``reference`` on the same device (first
    match), or ``None``."""
    by_name: dict[tuple[str, str], EvaluationRecord] = {}
    for r in results:
        by_name.setdefault((r.model, r.device_name), r)
    out: list[EvaluationRecord | None] = []
    for r in results:
        ref = by_name.get((r.reference, r.device_name)) if r.reference else None
        out.append(ref if ref is not r else None)
    return out


def paired_diff(result: EvaluationRecord, key: str | None = None) -> Any:
    """The evaluator's paired-bootstrap difference from the reference for metric ``key``
    (default: the headline metric)
    (a :class:`~compressor.evaluate.records.Difference`: ``value``, ``low``, ``high`` as
    fractions, model minus reference), or ``None`` (none recorded, or no interval)."""
    vs = result.accuracy.vs_reference if result.accuracy is not None else None
    d = vs.difference(key or headline(result)) if vs is not None else None
    return d if d is not None and d.low is not None and d.high is not None else None


def diff_verdict(result: EvaluationRecord, key: str | None = None) -> str | None:
    """``"within noise"`` when the paired interval contains 0, else ``"loss"``/``"gain"``."""
    d = paired_diff(result, key)
    return d.verdict() if d is not None else None


def _diff_ci_text(result: EvaluationRecord) -> str | None:
    d = paired_diff(result)
    if d is None:
        return None
    return f"[{100 * d.low:+.2f}, {100 * d.high:+.2f}]"


def table_rows(results: Records) -> tuple[list[str], list[list[Any]]]:
    """Headers and raw (unformatted) cell values of the comparison table."""
    records = as_records(results)
    cols = table_columns(records)
    refs = references(records)
    rows = [[c.value(r, ref) for c in cols] for r, ref in zip(records, refs)]
    return [c.header for c in cols], rows


def table_cells(results: Sequence[EvaluationRecord]) -> tuple[list[str], list[list[str]], list[str]]:
    """Headers, formatted cells (``-`` where nothing applies) and column alignments of the
    comparison table: what every renderer shows."""
    cols = table_columns(results)
    refs = references(results)
    rows = [
        [MISSING if (v := c.value(r, ref)) is None else c.fmt(v) for c in cols]
        for r, ref in zip(results, refs)
    ]
    return [c.header for c in cols], rows, [c.align for c in cols]


def render_table(results: Records, *, fmt: str = "github") -> str:
    """One table comparing every evaluated model, rows in the order given.

    Columns: model, strategy, accuracy (%), its 95% interval half-width (pts), the task
    metric (%), params (M), disk (MB), p50 (ms) at each batch size, p90 and p99 (ms) at
    batch 1, throughput (seq/s) at the largest batch size; and, when a model's
    ``reference`` is among the records: the reference's name ("vs"), "acc Δ (pts)"
    (model minus reference accuracy, percentage points), "speedup bs1 (x)" (reference p50
    / model p50) and "size ratio" (model disk bytes / reference disk bytes). Cells that do
    not apply show ``-``.

    :param results: evaluation records (or raw ``results.json`` objects, any version).
    :param fmt: any ``tabulate`` table format (``"github"``, ``"simple"``, ``"html"``...).
    :returns: the table as text.
    :raises CompressorError: for an unknown ``fmt``, or a raw record that does not validate.
    """
    import tabulate

    if fmt not in tabulate.tabulate_formats:
        raise CompressorError(
            f"unknown table format {fmt!r}",
            expected=", ".join(sorted(tabulate.tabulate_formats)),
        )
    headers, rows, align = table_cells(as_records(results))
    return tabulate.tabulate(
        rows,
        headers=headers,
        tablefmt=fmt,
        disable_numparse=True,
        colalign=align,
    )
