"""``report.html``: one self-contained file (inline CSS, plots as base64 PNG data URIs, no
scripts, no external resources), so it can be mailed or attached to a ticket as is."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from typing import Any

HTML_FILE = "report.html"

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 1200px; padding: 0 1rem; color: #222; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
tr:nth-child(even) td { background: #fafafa; }
.table-wrap { overflow-x: auto; }
figure { margin: 1rem 0; } figcaption { font-size: 0.85rem; color: #555; }
code { background: #f3f3f3; padding: 0 0.2rem; }
"""


def _inline_md(text: str) -> str:
    """Escape ``text`` and turn the report's inline markdown (``**bold**``, `` `code` ``)
    into HTML."""
    out = html.escape(text, quote=False)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


def _list(lines: Sequence[str]) -> str:
    items = "".join(f"<li>{_inline_md(line.removeprefix('- '))}</li>" for line in lines)
    return f"<ul>{items}</ul>"


def _table(headers: list[str], rows: list[list[str]], table_id: str) -> str:
    import tabulate

    body = tabulate.tabulate(rows, headers=headers, tablefmt="html", disable_numparse=True)
    return f'<div class="table-wrap" id="{table_id}">{body}</div>'


def render_html(
    results: Sequence[dict[str, Any]],
    *,
    title: str,
    manifest: dict[str, Any] | None = None,
    images: dict[str, bytes] | None = None,
) -> str:
    """The HTML report: the markdown report's content, tables as HTML tables (cells escaped),
    each device's Pareto plot embedded as ``<img src="data:image/png;base64,...">``.

    :param results: evaluation records.
    :param title: the report's title.
    :param manifest: the run manifest (machine, versions, identifiers).
    :param images: device -> PNG bytes of its Pareto plot.
    :returns: a complete HTML5 document.
    """
    from .details import detail_tables, resource_notes
    from .markdown import by_device, header_lines, notes_lines
    from .tables import MISSING, references, table_columns

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        _list(header_lines(results, manifest)),
    ]
    if not results:
        parts.append("<p>No model was evaluated.</p></body></html>")
        return "\n".join(parts)
    groups = by_device(results)
    for device, subset in groups:
        heading = "Results" if len(groups) == 1 else f"Results on {device}"
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        cols = table_columns(subset)
        refs = references(subset)
        rows = [[MISSING if (v := c.value(r, ref)) is None else c.fmt(v) for c in cols]
                for r, ref in zip(subset, refs)]
        parts.append(_table([c.header for c in cols], rows, f"results-{device}"))
        if images and device in images:
            data = base64.b64encode(images[device]).decode("ascii")
            parts.append(
                f'<figure id="pareto-{device}"><img alt="Pareto plot ({html.escape(device)})" '
                f'src="data:image/png;base64,{data}" width="700">'
                "<figcaption>Accuracy vs p50 latency; marker area by disk size; "
                "Pareto-optimal models as red stars joined by the front.</figcaption></figure>"
            )
    for i, (table_title, headers, rows) in enumerate(detail_tables(results)):
        parts.append(f"<h2>{html.escape(table_title)}</h2>")
        parts.append(_table(headers, rows, f"detail-{i}"))
    parts.append("<h2>Notes</h2>")
    parts.append(_list([*notes_lines(results), *resource_notes(results)]))
    parts.append("</body></html>")
    return "\n".join(parts)
