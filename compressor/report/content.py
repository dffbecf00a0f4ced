"""What a report shows, independent of its format: one content model, two renderers.

:func:`report_content` (a run's ``report.md``/``report.html``) and
:func:`comparison_content` (``compressor compare``) turn evaluation records into a
:class:`ReportContent`: the title, the header facts (machine, CPU instruction sets and
kernels, threads, inputs, timing rule, load, run identifiers), one section per device (or
comparable group) with its comparison table and Pareto plot, the detail tables, and the
notes. :func:`compressor.report.markdown.render_markdown` and
:func:`compressor.report.html.render_html_document` render the same content, so the two files
cannot drift apart.

Text with emphasis is a :data:`Line` of :class:`Span` s (plain, ``strong`` or ``code``):
each renderer escapes and marks it up its own way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..evaluate.metrics import METRICS
from ..evaluate.records import EvaluationRecord, Kernels
from .details import detail_tables
from .tables import batch_sizes, by_device, headline_label, metric_header, short_metric, table_cells

if TYPE_CHECKING:  # pragma: no cover
    from .compare import Comparison

# --- the content model ---------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """A run of text: plain, ``strong`` (bold) or ``code`` (monospace)."""

    text: str
    style: Literal["", "strong", "code"] = ""


#: One line of text (a header fact, a note): spans in order.
Line = tuple[Span, ...]


def strong(text: str) -> Span:
    """A bold span."""
    return Span(text, "strong")


def code(text: str) -> Span:
    """A monospace span."""
    return Span(text, "code")


def line(*parts: "str | Span") -> Line:
    """A :data:`Line` from plain strings and spans (empty strings dropped)."""
    return tuple(p if isinstance(p, Span) else Span(p) for p in parts if p != "")


def plain(text: Line) -> str:
    """The text of a line without markup."""
    return "".join(s.text for s in text)


@dataclass
class Table:
    """A table of text cells.

    :ivar id: the HTML element id (``results-cpu``, ``detail-0``).
    :ivar headers: column headers.
    :ivar rows: text cells, ``-`` where nothing applies.
    :ivar align: ``"left"``/``"right"`` per column; ``None``: the renderer's default.
    """

    id: str
    headers: list[str]
    rows: list[list[str]]
    align: list[str] | None = None


@dataclass
class Figure:
    """A plot: the PNG and where the Markdown file finds it.

    :ivar id: the HTML element id (``pareto-cpu``).
    :ivar alt: alternative text (the Markdown image's text).
    :ivar caption: the HTML caption.
    :ivar file: the PNG's file name next to the Markdown file (``None``: not written).
    :ivar png: the PNG bytes, embedded in HTML (``None``: not embedded).
    """

    id: str
    alt: str
    caption: str
    file: str | None = None
    png: bytes | None = None


@dataclass
class Section:
    """A second-level section: a heading, then a table, a figure and bullet lines, each
    optional."""

    heading: str
    table: Table | None = None
    figure: Figure | None = None
    bullets: list[Line] = field(default_factory=list)


@dataclass
class ReportContent:
    """Everything a report shows.

    :ivar title: the first heading.
    :ivar header: facts under the title, one bullet each.
    :ivar sections: results per device or group, detail tables, notes.
    :ivar empty: the message shown instead of sections when nothing was evaluated.
    """

    title: str
    header: list[Line]
    sections: list[Section] = field(default_factory=list)
    empty: str | None = None


# --- header --------------------------------------------------------------------------------


def _values(results: Sequence[EvaluationRecord], attr: str) -> list[Any]:
    """Distinct values of record field ``attr`` across records, in first-seen order."""
    out: list[Any] = []
    for r in results:
        v = getattr(r, attr)
        if v is not None and v not in out:
            out.append(v)
    return out


def _join(values: Sequence[Any]) -> str:
    return ", ".join(str(v) for v in values) if values else "-"


def _inputs_mode(results: Sequence[EvaluationRecord]) -> str:
    """How latency inputs were made, with the lowest fraction of real (unpadded) tokens."""
    infos = [r.latency_inputs for r in results if r.latency and r.latency_inputs is not None]
    modes = sorted({i.mode for i in infos if i.mode})
    fractions = [
        f for i in infos for f in (i.real_token_fraction or {}).values() if f is not None
    ]
    if not modes:
        return "padded/truncated"
    text = {"packed": "consecutive texts packed, truncated", "padded": "one text each, padded"}
    out = " / ".join(text.get(m, m) for m in modes)
    if fractions:
        low = min(fractions)
        out += "; every position a real token" if low == 1.0 else (
            f"; real tokens: at least {100 * low:.0f}% of positions"
        )
    return out


def _latency_lengths(results: Sequence[EvaluationRecord]) -> list[int]:
    """Sequence lengths timed, over every latency cell of every record, ascending."""
    return sorted({c.sequence_length for r in results for c in r.latency
                   if c.sequence_length is not None})


def _hardware(manifest: Mapping[str, Any] | None) -> Mapping[str, Any]:
    hw = (manifest or {}).get("hardware")
    return hw if isinstance(hw, Mapping) else {}


def _machine_line(results: Sequence[EvaluationRecord], manifest: Mapping[str, Any] | None) -> str:
    hw = _hardware(manifest)
    if hw:
        cpu = hw.get("cpu_model") or hw.get("machine")
        cpus = hw.get("cpus_available")
        gpu = hw.get("cuda")
    else:
        m = next((r.machine for r in results if r.machine is not None), None)
        cpu = (m.cpu_model or m.machine) if m is not None else None
        cpus, gpu = (m.cpus_available if m is not None else None), None
        legacy = (manifest or {}).get("hardware")
        if isinstance(legacy, str):
            cpu = legacy
    parts = [str(cpu or "unknown CPU")]
    if cpus:
        parts.append(f"{cpus} CPUs available")
    if gpu:
        parts.append(f"GPU: {gpu}")
    return "; ".join(parts)


@dataclass(frozen=True)
class _Cpu:
    model: str | None
    arch: str | None
    instruction_sets: tuple[str, ...] | None
    source: str | None
    kernels: str | None  # kernels_text of the runtimes' report


def _cpus(
    results: Sequence[EvaluationRecord], manifest: Mapping[str, Any] | None
) -> list[tuple[_Cpu, list[str]]]:
    """The distinct CPUs of the records (model, instruction sets, kernels) in first-seen
    order, each with the runs measured on it (compare's records name theirs); the manifest's
    facts stand in for records written before instruction sets were recorded."""
    hw = _hardware(manifest)
    out: dict[_Cpu, list[str]] = {}
    for r in results:
        m = r.machine
        if m is None:
            continue
        isa = tuple(m.instruction_sets) if m.instruction_sets is not None else None
        kernels = m.kernels
        source = m.cpu_flags_source
        same_cpu = hw.get("cpu_model") in (None, m.cpu_model)
        if isa is None and isinstance(hw.get("instruction_sets"), list) and same_cpu:
            isa = tuple(hw["instruction_sets"])
            source = source or hw.get("cpu_flags_source")
        if kernels is None and isinstance(hw.get("kernels"), Mapping) and same_cpu:
            kernels = Kernels.model_validate(hw["kernels"])
        runs = out.setdefault(_Cpu(m.cpu_model, m.machine, isa, source, kernels_text(kernels)), [])
        if r.run and r.run not in runs:
            runs.append(r.run)
    if not out and hw:
        isa = hw.get("instruction_sets")
        kernels = hw.get("kernels")
        out[_Cpu(
            hw.get("cpu_model"), hw.get("machine"),
            tuple(isa) if isinstance(isa, list) else None, hw.get("cpu_flags_source"),
            kernels_text(Kernels.model_validate(kernels)) if isinstance(kernels, Mapping) else None,
        )] = []
    return list(out.items())


def kernels_text(kernels: Kernels | None) -> str | None:
    """``"PyTorch 2.13.0: ATen AVX2, oneDNN 3.12.0; ONNX Runtime 1.32.0: CPU build,
    CPUExecutionProvider"``, or ``None`` when nothing is known."""
    if kernels is None:
        return None
    parts = []
    if kernels.torch or kernels.torch_cpu_capability:
        bits = []
        if kernels.torch_cpu_capability:
            bits.append(f"ATen {kernels.torch_cpu_capability}")
        bits.append(f"oneDNN {kernels.onednn}" if kernels.onednn else "no oneDNN")
        parts.append(f"PyTorch {kernels.torch or '?'}: {', '.join(bits)}")
    if kernels.onnxruntime:
        bits = []
        if kernels.onnxruntime_device:
            bits.append(f"{kernels.onnxruntime_device} build")
        if kernels.onnxruntime_providers:
            bits.append(", ".join(kernels.onnxruntime_providers))
        parts.append(f"ONNX Runtime {kernels.onnxruntime}" + (f": {', '.join(bits)}" if bits else ""))
    return "; ".join(parts) or None


def cpu_lines(results: Sequence[EvaluationRecord], manifest: Mapping[str, Any] | None = None) -> list[Line]:
    """Header lines on the CPU's instruction sets and the kernels the runtimes chose: one
    line each, or one per CPU when the records come from several.

    The instruction sets decide how fast int8 and bf16 products run (VNNI, AVX-512 BF16,
    AMX), so figures from machines with different sets are not comparable.
    """
    from ..hardware import PROC_CPUINFO, describe_instruction_sets

    cpus = _cpus(results, manifest)
    several = len({(c.model, c.instruction_sets) for c, _ in cpus}) > 1
    models = [c.model for c, _ in cpus]
    lines: list[Line] = []
    for cpu, runs in cpus:
        who = ""
        if several:  # name the CPU, or the runs where one model name hides different CPUs
            who = f" ({cpu.model})" if cpu.model and models.count(cpu.model) == 1 else (
                f" (runs {', '.join(runs)})" if len(runs) > 1 else f" (run {runs[0]})" if runs
                else f" ({cpu.model or 'unknown CPU'})"
            )
        if cpu.instruction_sets is None and cpu.source:
            text = f"unknown ({cpu.source} lists no flags on this system)"
        elif cpu.instruction_sets is None:
            text = "not recorded (results written before compressor recorded them)"
        else:
            text = describe_instruction_sets(cpu.instruction_sets, cpu.arch)
            if cpu.source and cpu.source != PROC_CPUINFO:
                text += f" (read from {cpu.source}, not /proc/cpuinfo)"
        isa_line = line(strong("CPU instruction sets"), f"{who}: {text}")
        if isa_line not in lines:
            lines.append(isa_line)
        if cpu.kernels:
            k_line = line(strong("Kernels"), f"{who}: {cpu.kernels}")
            if k_line not in lines:
                lines.append(k_line)
    return lines


def header_lines(results: Sequence[EvaluationRecord], manifest: Mapping[str, Any] | None) -> list[Line]:
    """The facts under the title: machine, CPU instruction sets and kernels, threads,
    inputs, timing, load, accuracy split, data, run identifiers, when evaluated."""
    lines = [line(strong("Machine"), f": {_machine_line(results, manifest)}")]
    lines += cpu_lines(results, manifest)
    lines.append(line(
        strong("Device"), f": {_join(_values(results, 'device'))}; ",
        strong("threads"), f": {_join(_values(results, 'threads'))}; ",
        strong("backends"), f": {_join(_values(results, 'backend'))}",
    ))
    sizes = batch_sizes(results)
    if sizes:
        hashes = {r.latency_inputs.sha256 if r.latency_inputs is not None else None
                  for r in results if r.latency}
        same = Span("the same texts for every model") if len(hashes) == 1 else strong("different texts")
        lines.append(line(
            strong("Latency inputs"),
            f": {_join(_latency_lengths(results))} tokens per sequence ({_inputs_mode(results)}), "
            f"batch sizes {_join(sizes)}; ",
            same,
            ", each model tokenising them with its own tokenizer",
        ))
        runs = [c.runs for r in results for c in r.latency if c.runs is not None]
        warmups = _values(results, "warmup")
        timers = sorted({c.timer or "perf_counter_ns" for r in results for c in r.latency})
        stops = sorted({c.stop_reason for r in results for c in r.latency if c.stop_reason})
        rule = next((r.latency_settings for r in results if r.latency_settings), None)
        rule_text = ""
        if rule is not None and None not in (rule.target_rel_ci, rule.min_runs, rule.min_time_s,
                                             rule.max_runs, rule.max_time_s):
            rule_text = (
                f"; stop when each p50's 95% interval is within ±{100 * rule.target_rel_ci:.1f}% "
                f"(at least {rule.min_runs} calls and {rule.min_time_s:g} s; at most "
                f"{rule.max_runs} calls or {rule.max_time_s:g} s)"
            )
        calls = f"; {min(runs)}-{max(runs)} timed calls per cell" if runs else ""
        lines.append(line(
            strong("Timing"),
            f": each forward call timed on its own ({_join(timers)}) after "
            f"{_join(warmups)} warm-up calls{rule_text}{calls}"
            f"{'; stopped by: ' + _join(stops) if stops else ''}; "
            "throughput = batch size / p50",
        ))
        machines = [r.machine for r in results if r.machine is not None]
        loads = [m.load_avg_1m for m in machines if m.load_avg_1m is not None]
        if loads:
            cpus = max(m.cpus_available or 0 for m in machines)
            # the timed model's own threads keep the load near the CPU count on a quiet
            # machine; half a CPU more than that means another process was running
            busy = bool(cpus and max(loads) > cpus + 0.5)
            lines.append(line(
                strong("Load average (1 min) while timing"), f": {min(loads):.2f}-{max(loads):.2f}",
                *(["; ", strong("the machine was busy"),
                   f" (load above its {cpus} CPUs): latencies are inflated and ratios unreliable"]
                  if busy else []),
            ))
    accs = [r.accuracy for r in results if r.accuracy is not None]
    splits = {a.split for a in accs} - {None}
    ns = {a.n for a in accs} - {None}
    if splits:
        lines.append(line(
            strong("Accuracy"), f": split {_join(sorted(splits))}, n = {_join(sorted(ns))} examples"
        ))
    tasks = _values(results, "task")
    if tasks:
        lines.append(line(strong("Data"), f": {_join(tasks)}"))
    run_line = _run_line(manifest)
    if run_line:
        lines.append(run_line)
    stamps = sorted(_values(results, "evaluated_at"))
    if stamps:
        when = stamps[0] if len(stamps) == 1 else f"{stamps[0]} to {stamps[-1]}"
        lines.append(line(strong("Evaluated"), f": {when}"))
    return lines


def _run_line(manifest: Mapping[str, Any] | None) -> Line | None:
    """Recipe hash, git SHA, seed, data fingerprint (each shortened) and library versions."""
    m = manifest or {}
    data = m.get("data") if isinstance(m.get("data"), Mapping) else {}
    idents = {
        "recipe hash": m.get("recipe_hash"),
        "git SHA": m.get("git_sha"),
        "seed": m.get("seed"),
        "data fingerprint": data.get("fingerprint") or m.get("dataset_fingerprint"),
    }
    bits: list[list[str | Span]] = []
    for label, value in idents.items():
        if value not in (None, ""):
            text = str(value)
            bits.append([f"{label} ", code(text[:12] if len(text) > 12 else text)])
    versions = m.get("versions")
    if isinstance(versions, Mapping):
        for lib in ("torch", "transformers", "onnxruntime"):
            if versions.get(lib):
                bits.append([f"{lib} {versions[lib]}"])
    if not bits:
        return None
    parts: list[str | Span] = [strong("Run"), ": "]
    for i, bit in enumerate(bits):
        parts += (["; "] if i else []) + bit
    return line(*parts)


# --- notes ---------------------------------------------------------------------------------


def notes_lines(results: Sequence[EvaluationRecord]) -> list[Line]:
    """The notes under the tables: what each column means and how far to trust it."""
    short = short_metric(results)
    if short == "acc":
        quality = [
            line("accuracy and the task metric are on the evaluation split; "
                 f"{METRICS['f1'].label}: {METRICS['f1'].description} "
                 f"{METRICS['macro_f1'].label}: {METRICS['macro_f1'].description}"),
            line("acc ±95% (pts): half-width of a 95% interval for accuracy (bootstrap, or "
                 "normal approximation when none was recorded); accuracy differences smaller "
                 "than it are within sampling noise."),
        ]
    else:
        quality = [
            line(f"{metric_header(results)}: the task's headline metric on the evaluation split, "
                 "x100; the other columns are its other metrics."),
            line(f"{short} ±95% (pts): half-width of the bootstrap 95% interval of "
                 f"{headline_label(results)}; differences smaller than it are within sampling noise."),
        ]
    notes = [
        *quality,
        line(f"params: {METRICS['params'].description} disk: {METRICS['disk_mb'].description}"),
        line("pXX bsN (ms): percentile of per-call latency at batch size N (linear "
             "interpolation); throughput (seq/s): batch size / median call time."),
    ]
    if any(r.reference for r in results):
        notes.append(line(
            f"vs: the model's reference (teacher or parent); {short} Δ (pts): model minus "
            f"reference {headline_label(results)} in points (x100); speedup (x): reference p50 / model p50 "
            "(>1 is faster); size ratio: model / reference bytes on disk (<1 is smaller)."
        ))
    if any(r.latency_interleaved_with for r in results):
        notes.append(line(
            "PyTorch models were timed in interleaved rounds (one call of each model per "
            "round), so load from other processes falls on every model alike; models with "
            "their own thread pool (each ONNX Runtime session) were timed alone, one after the "
            "other, since thread pools slow each other when interleaved. Absolute times still "
            "vary between runs on a shared machine."
        ))
    else:
        notes.append(line(
            "Each model was timed in its own loop; small latency ratios vary between runs "
            "on a shared machine: repeat before drawing conclusions."
        ))
    if len(_values(results, "threads")) > 1 or len(_values(results, "sequence_length")) > 1:
        notes.append(line(strong("Warning"), ": models were timed with different threads or lengths."))
    shown: set[str] = set()
    for r in results:  # what each stage chose and why (int8 settings, accuracy control...)
        if r.model in shown:
            continue
        shown.add(r.model)
        for key, text in r.summaries.items():
            notes.append(line(code(r.model), f" {key.replace('_', ' ')}: {text}"))
    return notes


def resource_notes(results: Sequence[EvaluationRecord]) -> list[Line]:
    """Notes explaining the detail tables' methods and what the CPU's instruction sets mean."""
    notes = [
        line(f"{headline_label(results)[0].upper()}{headline_label(results)[1:]} intervals: percentile "
             "bootstrap over the evaluation examples (texts, pairs, sentences or questions; fixed "
             f"seed); {short_metric(results)} Δ: paired bootstrap of model minus reference on the same examples "
             "and resamples; ", strong("within noise"), " means the interval contains 0."),
        line("Latency: warm-up, then interleaved timed rounds until each p50's order-statistic "
             "95% interval is within the target (\"stable\"), or a run/time cap; per-call samples "
             "give p90/p99; mean with a Student-t interval."),
    ]
    if any(r.memory for r in results):
        method = next((r.memory.method for r in results if r.memory is not None), None) or ""
        notes.append(line(
            "Memory (CPU): resident memory added by loading the model (RSS delta after "
            "gc + malloc_trim), plus the peak added by one call at the largest batch and "
            f"length ({method}); measured in the evaluating process, model by model."
        ))
    if any(r.compute for r in results):
        notes.append(line(
            "GFLOP / sequence: matrix products at batch 1 (torch FlopCounterMode for "
            "PyTorch, the ONNX graph's MatMul/Gemm nodes for ONNX); GFLOP/s = FLOPs x batch / "
            "p50; matmul peak: 1024^3 product at the model's precision and thread count "
            "(torch.utils.benchmark), GOP/s for int8."
        ))
    if any(r.machine is not None and r.machine.instruction_sets is not None for r in results):
        notes.append(line(
            "CPU instruction sets decide which kernels run: int8 products are fastest with "
            "VNNI (AVX-512 VNNI, AVX-VNNI) or AMX int8, bf16 with AVX-512 BF16 or AMX bf16; "
            "without them the same model falls back to AVX2 kernels and its speedup is "
            "smaller. ATen's CPU capability is the vector ISA PyTorch dispatches to; ONNX "
            "Runtime picks its kernels from the same flags at run time and does not report "
            "them. Compare figures only between CPUs with the same instruction sets."
        ))
    return notes


# --- sections ------------------------------------------------------------------------------


def _detail_sections(results: Sequence[EvaluationRecord]) -> list[Section]:
    return [
        Section(title, table=Table(f"detail-{i}", headers, rows))
        for i, (title, headers, rows) in enumerate(detail_tables(results))
    ]


def pareto_figure(device: str, *, file: str | None = None, png: bytes | None = None,
                  alt: str | None = None, figure_id: str | None = None, metric: str = "accuracy") -> Figure:
    """The content of one Pareto plot (``pareto-<device>``); ``metric``: the headline
    metric's name (:func:`~compressor.report.tables.headline_label`)."""
    return Figure(
        id=figure_id or f"pareto-{device}",
        alt=alt or (f"Pareto plot ({device}): {metric} vs p50 latency, marker area by disk size, "
                    "Pareto-optimal models as red stars"),
        caption=f"{metric[0].upper()}{metric[1:]} vs p50 latency; marker area by disk size; "
                "Pareto-optimal models as red stars joined by the front.",
        file=file,
        png=png,
    )


def report_content(
    results: Sequence[EvaluationRecord],
    *,
    title: str,
    manifest: Mapping[str, Any] | None = None,
    figures: Mapping[str, Figure] | None = None,
) -> ReportContent:
    """The content of a run's report.

    :param results: the run's records, in row order.
    :param title: the report's title.
    :param manifest: the run manifest (machine, versions, identifiers), if any.
    :param figures: device -> its Pareto plot.
    :returns: header; one "Results" section per device (table and plot); the detail
        tables; the notes. With no record: the header and "No model was evaluated.".
    """
    content = ReportContent(title=title, header=header_lines(results, manifest))
    if not results:
        content.empty = "No model was evaluated."
        return content
    groups = by_device(results)
    for device, subset in groups:
        headers, rows, align = table_cells(subset)
        content.sections.append(Section(
            "Results" if len(groups) == 1 else f"Results on {device}",
            table=Table(f"results-{device}", headers, rows, align),
            figure=(figures or {}).get(device),
        ))
    content.sections += _detail_sections(results)
    content.sections.append(Section("Notes", bullets=[*notes_lines(results), *resource_notes(results)]))
    return content


def comparison_content(
    comparison: "Comparison",
    *,
    title: str,
    runs: Mapping[str, Path],
    figures: Sequence[Figure | None] = (),
) -> ReportContent:
    """The content of ``compressor compare``'s report.

    :param comparison: the merged records and their comparable groups.
    :param title: the report's title.
    :param runs: run name -> its folder, listed first in the header.
    :param figures: the Pareto plot of each group, in group order (``None``: no plot).
    :returns: header (runs, machine and CPU facts, warnings); one section per comparable
        group; the detail tables over every record; the notes.
    """
    results = comparison.results
    mixed = len(comparison.groups) > 1
    header = [line(strong(name), ": ", code(str(path))) for name, path in runs.items()]
    header += header_lines(results, None)
    if mixed:
        header.append(line(
            strong("Warning"), ": mixed devices, thread counts or machines were allowed; each "
            "group below is ranked on its own, and figures must not be compared across groups."
        ))
    header.append(line(
        "Latencies from different runs were not timed interleaved: on a shared machine "
        "ratios across runs are less reliable than within one run."
    ))
    content = ReportContent(title=title, header=header)
    if not results:
        content.empty = "No model was evaluated."
        return content
    for i, (label, recs) in enumerate(comparison.groups.items()):
        device = recs[0].device_name
        headers, rows, align = table_cells(recs)
        table_id = f"results-{i + 1}-{device}" if mixed else f"results-{device}"
        figure = figures[i] if i < len(figures) else None
        content.sections.append(Section(label, table=Table(table_id, headers, rows, align), figure=figure))
    content.sections += _detail_sections(results)
    content.sections.append(Section("Notes", bullets=[*notes_lines(results), *resource_notes(results)]))
    return content
