"""The HTML renderer: ``report.html`` and ``compare.html``, one self-contained file each
(inline CSS, plots as base64 PNG data URIs, no scripts, no external resources), so it can be
mailed or attached to a ticket as is.

The page is the jinja2 template ``templates/report.html.j2`` filled from a
:class:`~compressor.report.content.ReportContent`, with autoescaping: every title, cell and
note is escaped, markup comes only from the template. jinja2 is imported when a page is
rendered.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .content import ReportContent, pareto_figure, report_content
from .tables import Records, headline_label

if TYPE_CHECKING:  # pragma: no cover
    import jinja2

HTML_FILE = "report.html"

#: The page template, in ``compressor/report/templates/`` (package data).
TEMPLATE = "report.html.j2"


@functools.lru_cache(maxsize=1)
def environment() -> "jinja2.Environment":
    """The jinja2 environment of the report templates: autoescape on, undefined names are
    errors, a ``b64`` filter for embedded PNGs."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("compressor.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["b64"] = lambda data: base64.b64encode(data).decode("ascii")
    return env


def render_html_document(content: ReportContent) -> str:
    """The HTML5 document of ``content``.

    :param content: what the report shows.
    :returns: the page; each section's figure is embedded when it has PNG bytes.
    """
    return environment().get_template(TEMPLATE).render(content=content)


def render_html(
    results: Records,
    *,
    title: str,
    manifest: Mapping[str, Any] | None = None,
    images: Mapping[str, bytes] | None = None,
) -> str:
    """The HTML report of a run: the Markdown report's content, tables as HTML tables,
    each device's Pareto plot embedded as ``<img src="data:image/png;base64,...">``.

    :param results: evaluation records (or raw ``results.json`` objects, any version).
    :param title: the report's title.
    :param manifest: the run manifest (machine, versions, identifiers).
    :param images: device -> PNG bytes of its Pareto plot.
    :returns: a complete HTML5 document.
    :raises CompressorError: for a raw record that does not validate.
    """
    from ..evaluate.records import as_records

    records = as_records(results)
    metric = headline_label(records)
    figures = {d: pareto_figure(d, png=png, metric=metric) for d, png in (images or {}).items()}
    return render_html_document(report_content(records, title=title, manifest=manifest, figures=figures))
