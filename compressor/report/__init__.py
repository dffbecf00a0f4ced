"""Reports: comparison tables of evaluated models, ``report.md`` and ``results.json``.

Public API:

- :func:`render_table` renders one table comparing every evaluated model;
- :func:`write_report` writes ``report.md`` and ``results.json`` into a run directory;
- :func:`load_results` reads ``results.json`` back.

Importing this package is cheap (``tabulate`` is imported when a table is rendered).
"""

from __future__ import annotations

from .markdown import (
    REPORT_FILE,
    RESULTS_FILE,
    load_results,
    render_report,
    write_report,
    write_text_atomic,
)
from .tables import render_table

__all__ = [
    "REPORT_FILE",
    "RESULTS_FILE",
    "load_results",
    "render_report",
    "render_table",
    "write_report",
    "write_text_atomic",
]
