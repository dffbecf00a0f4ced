"""The comparison table: one row per evaluated model, absolute and relative columns.

Input is a list of result dicts as :func:`compressor.evaluate.evaluate_artifact` returns
them. Relative columns compare a model with its ``reference`` (the teacher of a distilled
student, the parent otherwise) when that reference is among the results.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import CompressorError
from ..evaluate.metrics import METRICS

MISSING = "-"
"""Cell text for values that do not apply or were not measured."""


# --- reading values out of result dicts ------------------------------------------------


def batch_sizes(results: Sequence[dict[str, Any]]) -> list[int]:
    """Every batch size at which any result has latency, ascending."""
    return sorted({e["batch_size"] for r in results for e in (r.get("latency") or [])})


def latency_at(
    result: dict[str, Any], batch_size: int, key: str, sequence_length: int | None = None
) -> float | None:
    """``result``'s latency value ``key`` (e.g. ``"p50_ms"``) at ``batch_size``, or ``None``.

    :param sequence_length: the cell's length in tokens; default: the result's primary
        length (``result["sequence_length"]``, the first of the matrix), or any length for
        results that record none.
    """
    length = sequence_length if sequence_length is not None else result.get("sequence_length")
    for entry in result.get("latency") or []:
        if entry.get("batch_size") != batch_size:
            continue
        if length is not None and entry.get("sequence_length", length) != length:
            continue
        value = entry.get(key)
        return float(value) if value is not None else None
    return None


def accuracy_value(result: dict[str, Any], key: str = "accuracy") -> float | None:
    """A value from ``result["accuracy"]`` (fraction in [0, 1]), or ``None``."""
    acc = result.get("accuracy") or {}
    value = acc.get(key)
    return float(value) if value is not None else None


def task_metric_value(result: dict[str, Any]) -> float | None:
    """The result's task metric (F1 or macro-F1, fraction), or ``None``."""
    acc = result.get("accuracy") or {}
    name = acc.get("task_metric")
    return accuracy_value(result, name) if name else None


def accuracy_ci95_pts(result: dict[str, Any]) -> float | None:
    """Half-width in percentage points of the 95% interval of accuracy.

    The evaluator's bootstrap interval (``accuracy.ci.accuracy``: half its width) when
    recorded, else the normal approximation ``1.96 * sqrt(p * (1 - p) / n) * 100``;
    ``None`` without accuracy or examples.
    """
    ci = ((result.get("accuracy") or {}).get("ci") or {}).get("accuracy")
    if ci and len(ci) == 2 and None not in ci:
        return 50.0 * (float(ci[1]) - float(ci[0]))
    p = accuracy_value(result)
    n = (result.get("accuracy") or {}).get("n")
    if p is None or not n:
        return None
    return 196.0 * math.sqrt(p * (1.0 - p) / n)


def disk_bytes(result: dict[str, Any]) -> float | None:
    size = result.get("size") or {}
    if size.get("disk_bytes") is not None:
        return float(size["disk_bytes"])
    if size.get("disk_mb") is not None:
        return float(size["disk_mb"]) * 1e6
    return None


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
    :param value: computes the cell from (result, reference result or ``None``).
    :param fmt: formats a non-``None`` value to text.
    :param align: ``"left"`` or ``"right"``.
    """

    header: str
    value: Callable[[dict[str, Any], dict[str, Any] | None], Any]
    fmt: Callable[[Any], str] = str
    align: str = "right"


def _f(digits: int, signed: bool = False) -> Callable[[Any], str]:
    spec = f"{'+' if signed else ''},.{digits}f"
    return lambda v: format(v, spec)


def _pct(v: float | None) -> float | None:
    return None if v is None else 100.0 * v


def _task_metric_header(results: Sequence[dict[str, Any]]) -> str:
    names = {(r.get("accuracy") or {}).get("task_metric") for r in results} - {None}
    if len(names) == 1:
        (name,) = names
        metric = METRICS.get(name)
        return f"{metric.label if metric else name} (%)"
    return "task metric (%)"


def table_columns(results: Sequence[dict[str, Any]]) -> list[Column]:
    """The columns of :func:`render_table` for these results.

    Accuracy columns appear when any result has accuracy, latency columns when any has
    latency, relative columns when any result's reference is among the results. The
    "small" batch size is 1 when measured (else the smallest); throughput is shown at the
    largest.
    """
    cols = [
        Column("model", lambda r, _: r.get("model"), align="left"),
        Column("strategy", lambda r, _: r.get("strategy"), align="left"),
    ]
    if any(r.get("accuracy") for r in results):
        cols += [
            Column("accuracy (%)", lambda r, _: _pct(accuracy_value(r)), _f(2)),
            Column("acc ±95% (pts)", lambda r, _: accuracy_ci95_pts(r), _f(2)),
            Column(_task_metric_header(results), lambda r, _: _pct(task_metric_value(r)), _f(2)),
        ]
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
    names = {r.get("model") for r in results}
    if any(r.get("reference") in names for r in results):
        cols.append(
            Column("vs", lambda r, ref: ref.get("model") if ref else None, align="left")
        )
        if any(r.get("accuracy") for r in results):
            cols.append(
                Column(
                    "acc Δ (pts)",
                    lambda r, ref: _pct(_diff(accuracy_value(r), accuracy_value(ref)))
                    if ref
                    else None,
                    _f(2, signed=True),
                )
            )
            if any(paired_diff(r) for r in results):
                cols.append(Column("acc Δ 95% CI (pts)", lambda r, _: _diff_ci_text(r)))
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


def sparsity_value(result: dict[str, Any]) -> float | None:
    """Fraction of zeros in the encoder layers' Linear weights (``size.sparsity``), or ``None``."""
    value = (result.get("size") or {}).get("sparsity")
    return float(value) if value is not None else None


def collapse_flag(result: dict[str, Any]) -> str | None:
    """``"one class for all N examples"`` when a model predicted the same class for every
    example of the accuracy split (``accuracy.predicted_classes == 1``): a collapsed model,
    whatever its accuracy says (on a balanced binary split that is about 50%).

    :returns: the flag text, or ``None`` (more than one class predicted, or not recorded).
    """
    acc = result.get("accuracy") or {}
    if acc.get("predicted_classes") == 1 and (acc.get("n") or 0) > 1:
        return f"one class for all {acc['n']} examples"
    return None


SHRINK_THRESHOLD = 0.10
"""A model counts as smaller when its parameters or its non-zero weights fell by more than this
fraction of its reference's."""

SPEEDUP_THRESHOLD = 0.05
"""... and as faster when its p50 latency fell by at least this fraction of its reference's."""


def no_speedup_flag(result: dict[str, Any], reference: dict[str, Any] | None) -> str | None:
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
    params = (result.get("size") or {}).get("params")
    ref_params = (reference.get("size") or {}).get("params")
    smaller = bool(params and ref_params and params < (1.0 - SHRINK_THRESHOLD) * ref_params)
    zeros = ((result.get("size") or {}).get("structure") or {}).get("zero_weights")
    ref_zeros = ((reference.get("size") or {}).get("structure") or {}).get("zero_weights") or 0
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


def _params_m(r: dict[str, Any]) -> float | None:
    params = (r.get("size") or {}).get("params")
    return None if params is None else params / 1e6


def _disk_mb(r: dict[str, Any]) -> float | None:
    b = disk_bytes(r)
    return None if b is None else b / 1e6


def references(results: Sequence[dict[str, Any]]) -> list[dict[str, Any] | None]:
    """For each result, the result named by its ``reference`` on the same device (first
    match), or ``None``."""
    by_name: dict[tuple[Any, Any], dict[str, Any]] = {}
    for r in results:
        by_name.setdefault((r.get("model"), r.get("device")), r)
    out = []
    for r in results:
        ref = by_name.get((r.get("reference"), r.get("device"))) if r.get("reference") else None
        out.append(ref if ref is not r else None)
    return out


def paired_diff(result: dict[str, Any], key: str = "accuracy") -> dict[str, Any] | None:
    """The evaluator's paired-bootstrap difference from the reference for metric ``key``:
    ``{"value", "low", "high"}`` as fractions (model minus reference), or ``None``."""
    vs = (result.get("accuracy") or {}).get("vs_reference") or {}
    d = vs.get(key)
    return d if isinstance(d, dict) and d.get("low") is not None else None


def diff_verdict(result: dict[str, Any], key: str = "accuracy") -> str | None:
    """``"within noise"`` when the paired interval contains 0, else ``"loss"``/``"gain"``."""
    d = paired_diff(result, key)
    if d is None:
        return None
    if d["low"] <= 0.0 <= d["high"]:
        return "within noise"
    return "loss" if d["high"] < 0 else "gain"


def _diff_ci_text(result: dict[str, Any]) -> str | None:
    d = paired_diff(result)
    if d is None:
        return None
    return f"[{100 * d['low']:+.2f}, {100 * d['high']:+.2f}]"


def table_rows(results: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Headers and raw (unformatted) cell values of the comparison table."""
    cols = table_columns(results)
    refs = references(results)
    rows = [[c.value(r, ref) for c in cols] for r, ref in zip(results, refs)]
    return [c.header for c in cols], rows


def render_table(results: Sequence[dict[str, Any]], *, fmt: str = "github") -> str:
    """One table comparing every evaluated model, rows in the order given.

    Columns: model, strategy, accuracy (%), its 95% interval half-width (pts), the task
    metric (%), params (M), disk (MB), p50 (ms) at each batch size, p90 and p99 (ms) at
    batch 1, throughput (seq/s) at the largest batch size; and, when a model's
    ``reference`` is among the results: the reference's name ("vs"), "acc Δ (pts)"
    (model minus reference accuracy, percentage points), "speedup bs1 (x)" (reference p50
    / model p50) and "size ratio" (model disk bytes / reference disk bytes). Cells that do
    not apply show ``-``.

    :param results: result dicts from :func:`compressor.evaluate.evaluate_artifact`.
    :param fmt: any ``tabulate`` table format (``"github"``, ``"simple"``, ``"html"``...).
    :returns: the table as text.
    :raises CompressorError: for an unknown ``fmt``.
    """
    import tabulate

    if fmt not in tabulate.tabulate_formats:
        raise CompressorError(
            f"unknown table format {fmt!r}",
            expected=", ".join(sorted(tabulate.tabulate_formats)),
        )
    cols = table_columns(results)
    refs = references(results)
    rows = [
        [MISSING if (v := c.value(r, ref)) is None else c.fmt(v) for c in cols]
        for r, ref in zip(results, refs)
    ]
    return tabulate.tabulate(
        rows,
        headers=[c.header for c in cols],
        tablefmt=fmt,
        disable_numparse=True,
        colalign=[c.align for c in cols],
    )
