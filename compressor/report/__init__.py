"""Reports: comparison tables, ``report.md``/``report.html``, CSV/JSON, Pareto plots, model
cards, and comparisons across runs.

Public API:

- :func:`render_table` renders one table comparing every evaluated model;
- :func:`write_report` writes ``report.md``, ``report.html``, ``results.json``,
  ``results.csv`` and ``pareto-<device>.png`` into a run directory;
- :func:`load_results` reads ``results.json`` back; :func:`read_csv` reads ``results.csv``;
- :func:`write_model_cards` writes a ``README.md`` model card into each artifact's folder;
- :func:`compare_runs` merges several runs (``compressor compare``).

Importing this package is cheap (tabulate and matplotlib are imported when used).
"""

from __future__ import annotations

from .compare import Comparison, compare_runs
from .flat import CSV_FILE, read_csv, render_csv
from .html import HTML_FILE, render_html
from .markdown import (
    REPORT_FILE,
    RESULTS_FILE,
    load_results,
    render_report,
    write_report,
    write_text_atomic,
)
from .modelcard import render_model_card, write_model_cards
from .tables import render_table

__all__ = [
    "CSV_FILE",
    "Comparison",
    "HTML_FILE",
    "REPORT_FILE",
    "RESULTS_FILE",
    "compare_runs",
    "load_results",
    "read_csv",
    "render_csv",
    "render_html",
    "render_model_card",
    "render_report",
    "render_table",
    "write_model_cards",
    "write_report",
    "write_text_atomic",
]
