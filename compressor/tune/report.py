"""The search report: ``report.md``, ``report.html`` and ``tune-pareto.png`` of a tune folder,
and the search section of the recommended model's card.

The plot puts every scored trial at (first objective, paired difference from the reference
in points), with the difference's interval as a vertical error bar and, for latency, the p50
interval as a horizontal one; passing trials are filled circles, trials that missed the bound
open ones, pruned trials grey crosses at their subset score; the band under ``-max_loss``
is shaded and the recommended trial ringed.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..io import write_bytes_atomic, write_text_atomic
from .bound import Bound, certifiable

if TYPE_CHECKING:  # pragma: no cover - the tuner imports this module; these are names only
    from .tuner import TrialRecord, Tuner

PLOT_FILE = "tune-pareto.png"


def _value(rec: TrialRecord) -> float | None:
    return next(iter(rec.objectives.values())) if rec.objectives else None


def pareto_png(tuner: Tuner, best: TrialRecord | None) -> bytes | None:
    """The search's plot (see the module docstring), or ``None`` without a scored trial."""
    import io

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    records = [r for r in tuner.records.values() if r.bound]
    if not records:
        return None
    max_loss = tuner.search.constraint.max_loss
    first = tuner.search.objective[0]
    label = tuner.objective_label(first)
    fig, ax = plt.subplots(figsize=(7.5, 5))
    xs_all = []
    styles = {
        "passed": {"marker": "o", "color": "tab:green", "mfc": "tab:green", "label": "passed"},
        "missed": {"marker": "o", "color": "tab:red", "mfc": "none", "label": "missed the bound"},
    }
    seen: set[str] = set()
    for rec in sorted(records, key=lambda r: r.number):
        b = rec.bound
        x = _value(rec)
        if rec.status == "pruned" or x is None:
            continue
        xs_all.append(x)
        style = dict(styles.get(rec.status, styles["missed"]))
        lab = style.pop("label")
        yerr = None
        if b.get("low") is not None and b.get("high") is not None:
            yerr = [[b["point"] - b["low"]], [b["high"] - b["point"]]]
        xerr = None
        lat = rec.latency or {}
        if label.startswith("latency") and lat.get("p50_ci_ms") and lat.get("reference_p50_ms"):
            lo, hi = (v / lat["reference_p50_ms"] for v in lat["p50_ci_ms"])
            xerr = [[max(x - lo, 0.0)], [max(hi - x, 0.0)]]
        ax.errorbar([x], [b["point"]], yerr=yerr, xerr=xerr, linestyle="none", capsize=3,
                    label=None if lab in seen else lab, **style)
        seen.add(lab)
        ax.annotate(str(rec.number), (x, b["point"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    if best is not None and _value(best) is not None:
        ax.scatter([_value(best)], [best.bound["point"]], s=260, facecolors="none", edgecolors="black",
                   label=f"recommended (trial {best.number})", zorder=5)
    lows = [r.bound.get("low") for r in records if r.bound.get("low") is not None] + [r.bound["point"] for r in records]
    bottom = min(lows + [-max_loss]) - 0.5
    ax.axhspan(bottom, -max_loss, color="tab:red", alpha=0.08, label=f"loss beyond {max_loss:g} points")
    ax.axhline(-max_loss, color="tab:red", linewidth=0.8, linestyle="--")
    ax.axhline(0.0, color="grey", linewidth=0.6)
    ax.set_xlabel(_axis_label(label))
    ax.set_ylabel("candidate - reference (points)")
    ax.set_title(f"{tuner.loaded.recipe.name}: trials on the {tuner.search.selection_split} split")
    if xs_all and max(xs_all) / max(min(xs_all), 1e-12) > 10:
        ax.set_xscale("log")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _axis_label(label: str) -> str:
    if label.startswith("latency"):
        return f"p50 latency / reference's ({label.split('@')[1]}; lower is faster)"
    if label.startswith("throughput"):
        return f"throughput / reference's ({label.split('@')[1]}; higher is better)"
    return {"size": "disk size (bytes)", "parameters": "parameters"}.get(label, label)


def certify_lines(tuner: Tuner, best: TrialRecord | None) -> list[str]:
    """What the selection split can certify: its size, the widest-agreeing candidate's
    interval reach, and the data it would take to certify ``max_loss``."""
    constraint = tuner.search.constraint
    scored = [r for r in tuner.records.values() if r.bound and r.fidelity == "full"]
    if not scored:
        return ["No candidate was scored on the whole selection split."]
    if constraint.confidence is None:
        return [
            "**confidence: null**: candidates were accepted on their point difference alone, as "
            "Olive, Neural Compressor and NNCF compare; no statistical guarantee is claimed."
        ]
    pick = best or tuner.closest() or scored[0]
    facts = certifiable(Bound(**pick.bound), constraint.max_loss)
    if facts is None:
        return []
    margins = sorted(Bound(**r.bound).margin for r in scored if r.bound.get("low") is not None)
    lines = [
        f"The selection split has {facts['n']} paired examples. Trial {pick.number}'s "
        f"{constraint.confidence:.0%} interval reaches {facts['margin']:.2f} points below its point "
        f"difference (across trials: {margins[0]:.2f} to {margins[-1]:.2f}), so even a candidate "
        f"with no point loss could not be certified below about {facts['smallest_certifiable']:.2f} points here.",
    ]
    if facts["margin"] > constraint.max_loss and facts["examples_needed"]:
        lines.append(
            f"Certifying max_loss {constraint.max_loss:g} for such a candidate would take about "
            f"{facts['examples_needed']:,} selection examples (the interval narrows as 1/sqrt(n)), "
            "or candidates that disagree less with the reference. `confidence: null` compares point "
            "values instead (labelled as uncertified)."
        )
    return lines


def _trial_rows(tuner: Tuner) -> tuple[list[str], list[list[str]]]:
    keys = list(tuner.search.space)
    objectives = [tuner.objective_label(o) for o in tuner.search.objective]
    header = ["trial", "status"] + keys + ["diff (points) [interval]"] + objectives + ["p50 ms", "reused", "s", "reason"]
    rows = []
    for rec in sorted(tuner.records.values(), key=lambda r: r.number):
        b = Bound(**rec.bound).text() if rec.bound else "-"
        lat = rec.latency or {}
        rows.append(
            [str(rec.number), rec.status] + [_short(rec.params.get(k)) for k in keys] + [b]
            + [f"{rec.objectives[o]:.4g}" if o in rec.objectives else "-" for o in objectives]
            + [f"{lat['p50_ms']:.2f}" if lat.get("p50_ms") else "-", str(len(rec.stages_reused)),
               f"{rec.duration_s:.0f}" if rec.duration_s is not None else "-", (rec.reason or "")[:140]]
        )
    return header, rows


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 30 else text[:27] + "..."


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    from tabulate import tabulate

    return tabulate(rows, headers=list(header), tablefmt="github")


def summary_lines(tuner: Tuner, best: TrialRecord | None, front: Sequence[TrialRecord],
                  test_records: Sequence[Mapping[str, Any]], manifest: Mapping[str, Any]) -> list[str]:
    """The report's opening facts (markdown): machine, constraint, budget, outcome."""
    from ..hardware import describe_instruction_sets

    search = tuner.search
    c = search.constraint
    hw = manifest.get("hardware") or {}
    import os

    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover
        load = None
    criterion = "point difference" if c.confidence is None else f"{c.confidence:.0%} paired-bootstrap lower bound"
    statuses = {s: sum(1 for r in tuner.records.values() if r.status == s) for s in
                ("passed", "missed", "pruned", "failed", "interrupted")}
    lines = [
        f"- **CPU**: {hw.get('cpu_model') or 'unknown'}; instruction sets: "
        f"{describe_instruction_sets(hw.get('instruction_sets') or [], hw.get('machine')) if hw.get('instruction_sets') is not None else 'not recorded'}"
        + (f"; load average (1 min) at the end: {load:.2f}" if load is not None else ""),
        f"- **Constraint**: lose at most {c.max_loss:g} points of the headline metric against "
        f"`{c.reference}` ({criterion} of candidate - reference)",
        f"- **Chosen on** the `{search.selection_split}` split; only the recommended model and the "
        f"Pareto front were scored on `{tuner.loaded.recipe.evaluation.accuracy_split}`",
        f"- **Search**: {search.sampler} sampler (Optuna), seed {search.seed}; "
        f"{len(tuner.finished())} trials finished in {tuner.spent() / 60:.1f} min ("
        + ", ".join(f"{n} {s}" for s, n in statuses.items() if n) + ")",
    ]
    if best is not None:
        lines.append(f"- **Recommended**: trial {best.number} ({_params_text(best)}): "
                     f"{Bound(**best.bound).text()} on {search.selection_split}, "
                     + ", ".join(f"{k} {v:.4g}" for k, v in best.objectives.items()) + "; in `best/`")
        tb = best_test_bound(test_records, confidence=c.confidence)
        if tb is not None:
            lines.append(f"- **Recommended, on {tuner.loaded.recipe.evaluation.accuracy_split}**: {tb.text()}")
    else:
        closest = tuner.closest()
        lines.append(
            "- **Nothing passes** (exit status 3)"
            + (f"; the closest is trial {closest.number} ({_params_text(closest)}): {Bound(**closest.bound).text()}"
               if closest else "")
        )
    lines.append(f"- **Pareto front** (metric vs {next(iter(search.objective)).name}): trials "
                 + (", ".join(str(r.number) for r in front) or "none"))
    return lines


def _params_text(rec: TrialRecord) -> str:
    return ", ".join(f"{k}={_short(v)}" for k, v in rec.params.items())


def best_test_bound(test_records: Sequence[Mapping[str, Any]], *, confidence: float | None) -> Bound | None:
    """The recommended model's (``best``) bound on the test split, or ``None``."""
    from ..evaluate.records import EvaluationRecord
    from .bound import bound_from_record

    test = next((r for r in test_records if r.get("model") == "best"), None)
    return None if test is None else bound_from_record(EvaluationRecord.model_validate(test), confidence=confidence)


def search_card_section(tuner: Tuner, best: TrialRecord, test_records: Sequence[Mapping[str, Any]]) -> str:
    """The model card's section on how the model was chosen: constraint, measured bound."""
    c = tuner.search.constraint
    criterion = "point difference" if c.confidence is None else f"{c.confidence:.0%} lower bound"
    lines = [
        "## How this model was chosen",
        "",
        f"`compressor tune` (trial {best.number} of {len(tuner.finished())}, {tuner.search.sampler} sampler) "
        f"picked this model as the fastest whose {criterion} of (model - `{c.reference}`) on the "
        f"headline metric is at or above -{c.max_loss:g} points, on the `{tuner.search.selection_split}` split.",
        "",
        f"- values: {_params_text(best)}",
        f"- measured on {tuner.search.selection_split} ({best.bound['n']} examples): {Bound(**best.bound).text()}",
    ]
    tb = best_test_bound(test_records, confidence=c.confidence)
    if tb is not None:
        lines.append(f"- then scored on {tuner.loaded.recipe.evaluation.accuracy_split} ({tb.n} examples): {tb.text()}")
    return "\n".join(lines) + "\n"


def write_tune_report(tuner: Tuner, *, best: TrialRecord | None, front: Sequence[TrialRecord],
                      test_records: Sequence[Mapping[str, Any]], manifest: Mapping[str, Any]) -> Path:
    """Write ``report.md``, ``report.html`` and ``tune-pareto.png`` into the tune folder.

    :returns: the path of ``report.md``.
    """
    from ..report import render_table

    d = tuner.tune_dir
    png = pareto_png(tuner, best)
    if png is not None:
        write_bytes_atomic(d / PLOT_FILE, png)
    header, rows = _trial_rows(tuner)
    summary = summary_lines(tuner, best, front, test_records, manifest)
    certify = certify_lines(tuner, best)
    title = f"{tuner.loaded.recipe.name}: compressor tune"
    md = [f"# {title}", "", *summary, "", "## What this data can certify", "", *certify, ""]
    if png is not None:
        md += [f"![trials]({PLOT_FILE})", ""]
    md += ["## Trials", "", _md_table(header, rows), ""]
    table = ""
    if test_records:
        table = render_table(test_records)
        md += [f"## On the {tuner.loaded.recipe.evaluation.accuracy_split} split", "",
               "The reference, the recommended model (`best`) and the Pareto front, timed together "
               "(full report: [test/report.md](test/report.md)).", "", table, ""]
    write_text_atomic(d / "report.md", "\n".join(md))
    img = (f'<img alt="trials" src="data:image/png;base64,{base64.b64encode(png).decode()}">' if png else "")
    esc = html.escape
    body = [f"<h1>{esc(title)}</h1>", "<ul>" + "".join(f"<li>{_md_inline(s[2:])}</li>" for s in summary) + "</ul>",
            "<h2>What this data can certify</h2>" + "".join(f"<p>{_md_inline(s)}</p>" for s in certify), img,
            "<h2>Trials</h2><table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows) + "</table>"]
    if table:
        body.append(f"<h2>On the {esc(tuner.loaded.recipe.evaluation.accuracy_split)} split</h2><pre>{esc(table)}</pre>"
                    '<p><a href="test/report.html">full report</a></p>')
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>" + esc(title) + "</title><style>"
            "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;font-size:12px}"
            "td,th{border:1px solid #ccc;padding:2px 6px}</style></head><body>" + "".join(body) + "</body></html>")
    write_text_atomic(d / "report.html", page)
    return d / "report.md"


def _md_inline(text: str) -> str:
    """Markdown's ``**bold**`` and backticks as HTML (the summary's only markup)."""
    import re

    out = html.escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)
