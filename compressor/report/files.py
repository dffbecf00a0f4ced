"""A run's report files: ``report.md``, ``report.html``, ``results.json``, ``results.csv`` and
the Pareto plots, each written atomically (:mod:`compressor.io`); ``results.json`` read back
as typed records, whatever version wrote it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import CompressorError
from ..evaluate.records import EvaluationRecord, as_records, load_records
from .tables import Records, headline_label

RESULTS_FILE = "results.json"


def write_report(
    run_dir: Path,
    results: Records,
    *,
    title: str,
    manifest: Mapping[str, Any] | None = None,
) -> Path:
    """Write the reports into ``run_dir``, each file atomically: ``results.json`` (the
    records, :meth:`~compressor.evaluate.records.EvaluationRecord.to_json`, each with its
    ``schema_version``), ``results.csv``, ``pareto-<device>.png``, ``report.html``
    (self-contained: plots embedded) and ``report.md``, the last two from one
    :class:`~compressor.report.content.ReportContent`.

    :param run_dir: the run directory (created if missing).
    :param results: evaluation records (raw ``results.json`` objects of any version are
        loaded first), in the order rows should appear.
    :param title: the report's title (first heading).
    :param manifest: the run manifest, for the machine, versions and run identifiers.
    :returns: path of ``report.md``.
    :raises CompressorError: for a raw record that does not validate.
    """
    from ..io import write_bytes_atomic, write_json_atomic, write_text_atomic
    from .content import pareto_figure, report_content
    from .figures import pareto_plots
    from .flat import CSV_FILE, render_csv
    from .html import HTML_FILE, render_html_document
    from .markdown import REPORT_FILE, render_markdown

    records = as_records(results)
    run_dir = Path(run_dir)
    write_json_atomic(run_dir / RESULTS_FILE, [r.to_json() for r in records])
    write_text_atomic(run_dir / CSV_FILE, render_csv(records))
    figures = {}
    for device, png in pareto_plots(records, title=title).items():
        name = f"pareto-{device}.png"
        write_bytes_atomic(run_dir / name, png)
        figures[device] = pareto_figure(device, file=name, png=png, metric=headline_label(records))
    content = report_content(records, title=title, manifest=manifest, figures=figures)
    write_text_atomic(run_dir / HTML_FILE, render_html_document(content))
    path = run_dir / REPORT_FILE
    write_text_atomic(path, render_markdown(content))
    return path


def load_results(run_dir: Path) -> list[EvaluationRecord]:
    """Read ``results.json`` of a run directory, any schema version (records without
    ``schema_version`` are version 0), upgraded to the current
    :class:`~compressor.evaluate.records.EvaluationRecord`.

    :param run_dir: the run directory.
    :returns: the records, in report order.
    :raises CompressorError: if the file is missing (no model evaluated yet), unreadable,
        not a JSON list of objects, or holds a record that does not validate or comes from a
        newer compressor.
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
    return load_records(data, where=str(path))
