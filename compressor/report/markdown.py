"""``report.md``, ``report.html``, ``results.json``, ``results.csv`` and the Pareto plots of a run."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..artifact import write_json_atomic
from ..errors import CompressorError
from ..evaluate.metrics import METRICS
from .tables import batch_sizes, render_table

RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (temporary file then ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _values(results: Sequence[dict[str, Any]], key: str) -> list[Any]:
    """Distinct values of ``key`` across results, in first-seen order."""
    out: list[Any] = []
    for r in results:
        v = r.get(key)
        if v is not None and v not in out:
            out.append(v)
    return out


def _join(values: Sequence[Any]) -> str:
    return ", ".join(str(v) for v in values) if values else "-"


def _inputs_mode(results: list[dict[str, Any]]) -> str:
    """How latency inputs were made, with the lowest fraction of real (unpadded) tokens."""
    infos = [r.get("latency_inputs") or {} for r in results if r.get("latency")]
    modes = sorted({i.get("mode") for i in infos if i.get("mode")})
    fractions = [
        f for i in infos for f in (i.get("real_token_fraction") or {}).values() if f is not None
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


def _latency_lengths(results: Sequence[dict[str, Any]]) -> list[int]:
    """Sequence lengths timed, over every latency cell of every result, ascending."""
    return sorted({e["sequence_length"] for r in results for e in (r.get("latency") or [])
                   if e.get("sequence_length") is not None})


def _machine_line(results: Sequence[dict[str, Any]], manifest: dict[str, Any] | None) -> str:
    hw = (manifest or {}).get("hardware")
    if isinstance(hw, dict) and hw:
        cpu = hw.get("cpu_model") or hw.get("machine")
        cpus = hw.get("cpus_available")
        gpu = hw.get("cuda")
    else:
        machines = _values(results, "machine")
        m = machines[0] if machines and isinstance(machines[0], dict) else {}
        cpu, cpus, gpu = m.get("cpu_model") or m.get("machine"), m.get("cpus_available"), None
        if isinstance(hw, str):
            cpu = hw
    parts = [str(cpu or "unknown CPU")]
    if cpus:
        parts.append(f"{cpus} CPUs available")
    if gpu:
        parts.append(f"GPU: {gpu}")
    return "; ".join(parts)


def header_lines(results: Sequence[dict[str, Any]], manifest: dict[str, Any] | None) -> list[str]:
    """The bullet lines under the title: machine, threads, inputs, timing, accuracy split."""
    lines = [f"- **Machine**: {_machine_line(results, manifest)}"]
    devices = _values(results, "device")
    backends = _values(results, "backend")
    lines.append(
        f"- **Device**: {_join(devices)}; **threads**: {_join(_values(results, 'threads'))}; "
        f"**backends**: {_join(backends)}"
    )
    sizes = batch_sizes(results)
    if sizes:
        hashes = {
            (r.get("latency_inputs") or {}).get("sha256") for r in results if r.get("latency")
        }
        same = "the same texts for every model" if len(hashes) == 1 else "**different texts**"
        lines.append(
            f"- **Latency inputs**: {_join(_latency_lengths(results))} tokens per "
            f"sequence ({_inputs_mode(results)}), batch sizes {_join(sizes)}; {same}, each "
            "model tokenising them with its own tokenizer"
        )
        runs = [e["runs"] for r in results for e in (r.get("latency") or []) if "runs" in e]
        warmups = _values(results, "warmup")
        timers = sorted({e.get("timer", "perf_counter_ns") for r in results
                         for e in (r.get("latency") or [])})
        stops = sorted({e["stop_reason"] for r in results for e in (r.get("latency") or [])
                        if e.get("stop_reason")})
        rule = next((r.get("latency_settings") for r in results if r.get("latency_settings")), None)
        rule_text = ""
        if rule:
            rule_text = (
                f"; stop when each p50's 95% interval is within ±{100 * rule['target_rel_ci']:.1f}% "
                f"(at least {rule['min_runs']} calls and {rule['min_time_s']:g} s; at most "
                f"{rule['max_runs']} calls or {rule['max_time_s']:g} s)"
            )
        lines.append(
            f"- **Timing**: each forward call timed on its own ({_join(timers)}) after "
            f"{_join(warmups)} warm-up calls{rule_text}; {min(runs)}-{max(runs)} timed calls "
            f"per cell{'; stopped by: ' + _join(stops) if stops else ''}; "
            "throughput = batch size / p50"
        )
        loads = [
            (r.get("machine") or {}).get("load_avg_1m")
            for r in results
            if (r.get("machine") or {}).get("load_avg_1m") is not None
        ]
        if loads:
            cpus = max((r.get("machine") or {}).get("cpus_available") or 0 for r in results)
            busy = (
                f"; **the machine was busy** (load above its {cpus} CPUs): latencies are "
                "inflated and ratios unreliable"
                # the timed model's own threads keep the load near the CPU count on a quiet
                # machine; half a CPU more than that means another process was running
                if cpus and max(loads) > cpus + 0.5
                else ""
            )
            lines.append(
                f"- **Load average (1 min) while timing**: {min(loads):.2f}-{max(loads):.2f}{busy}"
            )
    splits = {(r.get("accuracy") or {}).get("split") for r in results} - {None}
    ns = {(r.get("accuracy") or {}).get("n") for r in results} - {None}
    if splits:
        lines.append(
            f"- **Accuracy**: split {_join(sorted(splits))}, n = {_join(sorted(ns))} examples"
        )
    tasks = _values(results, "task")
    if tasks:
        lines.append(f"- **Data**: {_join(tasks)}")
    m = manifest or {}
    run_bits = []
    data = m.get("data") if isinstance(m.get("data"), dict) else {}
    idents = {
        "recipe hash": m.get("recipe_hash"),
        "git SHA": m.get("git_sha"),
        "seed": m.get("seed"),
        "data fingerprint": data.get("fingerprint") or m.get("dataset_fingerprint"),
    }
    for label, value in idents.items():
        if value not in (None, ""):
            text = str(value)
            run_bits.append(f"{label} `{text[:12] if len(text) > 12 else text}`")
    versions = m.get("versions")
    if isinstance(versions, dict):
        for lib in ("torch", "transformers", "onnxruntime"):
            if versions.get(lib):
                run_bits.append(f"{lib} {versions[lib]}")
    if run_bits:
        lines.append(f"- **Run**: {'; '.join(run_bits)}")
    stamps = sorted(_values(results, "evaluated_at"))
    if stamps:
        when = stamps[0] if len(stamps) == 1 else f"{stamps[0]} to {stamps[-1]}"
        lines.append(f"- **Evaluated**: {when}")
    return lines


def notes_lines(results: Sequence[dict[str, Any]]) -> list[str]:
    """The notes under the table: what each column means and how far to trust it."""
    notes = [
        "- accuracy and the task metric are on the evaluation split; "
        f"{METRICS['f1'].label}: {METRICS['f1'].description} "
        f"{METRICS['macro_f1'].label}: {METRICS['macro_f1'].description}",
        "- acc ±95% (pts): half-width of a 95% normal-approximation interval for accuracy; "
        "accuracy differences smaller than it are within sampling noise.",
        f"- params: {METRICS['params'].description} disk: {METRICS['disk_mb'].description}",
        "- pXX bsN (ms): percentile of per-call latency at batch size N (linear "
        "interpolation); throughput (seq/s): batch size / median call time.",
    ]
    if any(r.get("reference") for r in results):
        notes.append(
            "- vs: the model's reference (teacher or parent); acc Δ (pts): model minus "
            "reference accuracy in percentage points; speedup (x): reference p50 / model p50 "
            "(>1 is faster); size ratio: model / reference bytes on disk (<1 is smaller)."
        )
    if any(r.get("latency_interleaved_with") for r in results):
        notes.append(
            "- PyTorch models were timed in interleaved rounds (one call of each model per "
            "round), so load from other processes falls on every model alike; models with "
            "their own thread pool (each ONNX Runtime session) were timed alone, one after the "
            "other, since thread pools slow each other when interleaved. Absolute times still "
            "vary between runs on a shared machine."
        )
    else:
        notes.append(
            "- Each model was timed in its own loop; small latency ratios vary between runs "
            "on a shared machine: repeat before drawing conclusions."
        )
    if len(_values(results, "threads")) > 1 or len(_values(results, "sequence_length")) > 1:
        notes.append("- **Warning**: models were timed with different threads or lengths.")
    return notes


def by_device(results: Sequence[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """The results split by device (first-seen order): tables and rankings never mix devices."""
    from .details import devices

    return [(d, [r for r in results if (r.get("device") or "cpu") == d]) for d in devices(results)]


def render_report(
    results: Sequence[dict[str, Any]],
    *,
    title: str,
    manifest: dict[str, Any] | None = None,
    figures: dict[str, str] | None = None,
) -> str:
    """The Markdown text of ``report.md``: title, header, one comparison table (and Pareto
    plot) per device, the detail tables (:mod:`compressor.report.details`), notes.

    :param figures: device -> relative path of its Pareto plot image.
    """
    import tabulate

    from .details import detail_tables, resource_notes

    parts = [f"# {title}", "", *header_lines(results, manifest), ""]
    if not results:
        parts += ["No model was evaluated.", ""]
        return "\n".join(parts)
    groups = by_device(results)
    for device, subset in groups:
        heading = "## Results" if len(groups) == 1 else f"## Results on {device}"
        parts += [heading, "", render_table(subset, fmt="github"), ""]
        if figures and device in figures:
            parts += [
                f"![Pareto plot ({device}): accuracy vs p50 latency, marker area by disk size, "
                f"Pareto-optimal models as red stars]({figures[device]})",
                "",
            ]
    for table_title, headers, rows in detail_tables(results):
        parts += [f"## {table_title}", "",
                  tabulate.tabulate(rows, headers=headers, tablefmt="github",
                                    disable_numparse=True), ""]
    parts += ["## Notes", "", *notes_lines(results), *resource_notes(results), ""]
    return "\n".join(parts)


def write_report(
    run_dir: Path,
    results: list[dict[str, Any]],
    *,
    title: str,
    manifest: dict[str, Any] | None = None,
) -> Path:
    """Write the reports into ``run_dir``, each file atomically: ``report.md``,
    ``report.html`` (self-contained: plots embedded), ``results.json``, ``results.csv`` and
    ``pareto-<device>.png``.

    :param run_dir: the run directory (created if missing).
    :param results: result dicts from :func:`compressor.evaluate.evaluate_artifact`, in the
        order rows should appear.
    :param title: the report's title (first heading).
    :param manifest: the run manifest, for the machine, versions and run identifiers.
    :returns: path of ``report.md``.
    """
    from .figures import write_pareto_plots
    from .flat import CSV_FILE, render_csv
    from .html import HTML_FILE, render_html

    run_dir = Path(run_dir)
    write_json_atomic(run_dir / RESULTS_FILE, list(results))
    write_text_atomic(run_dir / CSV_FILE, render_csv(results))
    plots = write_pareto_plots(run_dir, results, title=title)
    figures = {d: p.name for d, p in plots.items()}
    write_text_atomic(
        run_dir / HTML_FILE,
        render_html(results, title=title, manifest=manifest,
                    images={d: p.read_bytes() for d, p in plots.items()}),
    )
    path = run_dir / REPORT_FILE
    write_text_atomic(path, render_report(results, title=title, manifest=manifest, figures=figures))
    return path


def load_results(run_dir: Path) -> list[dict[str, Any]]:
    """Read ``results.json`` of a run directory.

    :param run_dir: the run directory.
    :returns: the list of result dicts, in report order.
    :raises CompressorError: if the file is missing (no model evaluated yet), unreadable,
        or not a JSON list.
    """
    path = Path(run_dir) / RESULTS_FILE
    if not path.is_file():
        raise CompressorError(
            f"no results in {run_dir} yet ({RESULTS_FILE} is missing)",
            hint="run the recipe first (compressor run RECIPE), or point at a run directory "
            "whose evaluation finished",
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CompressorError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise CompressorError(f"{path} must hold a JSON list of result objects")
    return data
