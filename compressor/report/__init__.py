"""Reports: comparison tables, ``report.md``/``report.html``, CSV/JSON, Pareto plots, model
cards, and comparisons across runs.

Every function takes :class:`~compressor.evaluate.records.EvaluationRecord` s (raw
``results.json`` objects of any schema version are loaded first). What a report shows is one
:class:`~compressor.report.content.ReportContent`, rendered as Markdown
(:mod:`~compressor.report.markdown`) and as HTML through jinja2 templates
(:mod:`~compressor.report.html`).

Public API:

- :func:`render_table` renders one table comparing every evaluated model;
- :func:`write_report` writes ``report.md``, ``report.html``, ``results.json``,
  ``results.csv`` and ``pareto-<device>.png`` into a run directory;
- :func:`load_results` reads ``results.json`` back as typed records (any version);
  :func:`read_csv` reads ``results.csv``;
- :func:`write_model_cards` writes a ``README.md`` model card into each artifact's folder;
- :func:`compare_runs` merges several runs (``compressor compare``).

Importing this package is cheap (tabulate, matplotlib and jinja2 are imported when used).
"""

from __future__ import annotations

from ..io import write_text_atomic
from .compare import Comparison, compare_runs
from .content import ReportContent, comparison_content, report_content
from .files import RESULTS_FILE, load_results, write_report
from .flat import CSV_FILE, read_csv, render_csv
from .html import HTML_FILE, render_html, render_html_document
from .markdown import REPORT_FILE, render_markdown, render_report
from .modelcard import render_model_card, write_model_cards
from .tables import render_table

__all__ = [
    "CSV_FILE",
    "Comparison",
    "HTML_FILE",
    "REPORT_FILE",
    "RESULTS_FILE",
    "ReportContent",
    "compare_runs",
    "comparison_content",
    "load_results",
    "read_csv",
    "render_csv",
    "render_html",
    "render_html_document",
    "render_markdown",
    "render_model_card",
    "render_report",
    "render_table",
    "report_content",
    "write_model_cards",
    "write_report",
    "write_text_atomic",
]
