"""The Markdown renderer: ``report.md`` and ``compare.md`` from a
:class:`~compressor.report.content.ReportContent`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .content import Line, ReportContent, Table, pareto_figure, report_content
from .tables import Records, headline_label

REPORT_FILE = "report.md"


def inline(text: Line) -> str:
    """Markdown of a line: ``**strong**``, `` `code` ``, plain text as is."""
    out = []
    for span in text:
        if span.style == "strong":
            out.append(f"**{span.text}**")
        elif span.style == "code":
            out.append(f"`{span.text}`")
        else:
            out.append(span.text)
    return "".join(out)


def markdown_table(table: Table) -> str:
    """A GitHub-flavoured Markdown table (cells as given, no number parsing)."""
    import tabulate

    extra: dict[str, Any] = {"colalign": table.align} if table.align else {}
    return tabulate.tabulate(table.rows, headers=table.headers, tablefmt="github",
                             disable_numparse=True, **extra)


def render_markdown(content: ReportContent) -> str:
    """The Markdown document: ``# title``, the header as bullets, then each section
    (``## heading``, its table, its figure as an image linking its file, its bullets)."""
    parts = [f"# {content.title}", "", *(f"- {inline(fact)}" for fact in content.header), ""]
    if content.empty is not None:
        parts += [content.empty, ""]
        return "\n".join(parts)
    for section in content.sections:
        parts += [f"## {section.heading}", ""]
        if section.table is not None:
            parts += [markdown_table(section.table), ""]
        if section.figure is not None and section.figure.file is not None:
            parts += [f"![{section.figure.alt}]({section.figure.file})", ""]
        if section.bullets:
            parts += [*(f"- {inline(b)}" for b in section.bullets), ""]
    return "\n".join(parts)


def render_report(
    results: Records,
    *,
    title: str,
    manifest: Mapping[str, Any] | None = None,
    figures: Mapping[str, str] | None = None,
) -> str:
    """The Markdown text of ``report.md``: title, header, one comparison table (and Pareto
    plot) per device, the detail tables (:mod:`compressor.report.details`), notes.

    :param results: evaluation records (or raw ``results.json`` objects, any version).
    :param title: the report's title.
    :param manifest: the run manifest, for the machine, versions and run identifiers.
    :param figures: device -> relative path of its Pareto plot image.
    :raises CompressorError: for a raw record that does not validate.
    """
    from ..evaluate.records import as_records

    records = as_records(results)
    metric = headline_label(records)
    plots = {d: pareto_figure(d, file=f, metric=metric) for d, f in (figures or {}).items()}
    return render_markdown(report_content(records, title=title, manifest=manifest, figures=plots))
