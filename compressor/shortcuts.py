"""Recipes built from a few arguments: ``compressor evaluate MODEL --data NAME|FILE``.

:func:`evaluation_recipe` turns a model and a data set into the recipe a user would write
for an evaluation-only run (no stages: the model is the baseline, measured and reported);
:func:`evaluate_model` validates it in memory and runs it. The run directory holds the
recipe as built (``recipe.yaml``, with absolute paths), so ``compressor run
RUN_DIR/recipe.yaml --resume`` and ``compressor report RUN_DIR`` work on it like on any
other run.

Errors name the command-line argument they come from (``--data``, ``MODEL``, ...) rather
than a line of a recipe the user never wrote.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CompressorError, SourceError

if TYPE_CHECKING:  # pragma: no cover
    from .pipeline import RunResult
    from .plugins import Plugins

#: Recipe key (prefix) -> the ``compressor evaluate`` argument that sets it; the longest
#: matching prefix names an error's argument.
OPTION_FOR_KEY: dict[str, str] = {
    "model": "MODEL",
    "task.type": "--task",
    "task.data": "--data",
    "task.data.text_column": "--text-column",
    "task.data.text_pair_column": "--text-pair-column",
    "task.data.label_column": "--label-column",
    "task.data.max_eval_samples": "--max-samples",
    "evaluation.accuracy_split": "--split",
    "evaluation.batch_sizes": "--batch-sizes",
    "evaluation.sequence_length": "--sequence-length",
    "evaluation.device": "--device",
    "seed": "--seed",
    "name": "--name",
}


def _slug(text: str) -> str:
    """``text`` as a run name part: letters, digits, ``-``, ``_`` and ``.``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-_.") or "model"


def _data_file(data: str, cwd: Path) -> Path | None:
    """The file ``--data`` names, or ``None`` when it names a registered data set.

    :raises SourceError: a path-like argument (a file suffix, a path separator) that is not
        a file.
    """
    from .sources.datasets import FILE_TYPES

    path = Path(os.path.expanduser(data))
    full = path if path.is_absolute() else cwd / path
    separators = [s for s in (os.sep, os.altsep) if s]
    if full.is_file():
        return full.resolve()
    if path.suffix.lower() in FILE_TYPES or any(s in data for s in separators):
        raise SourceError(
            "file not found" if not full.exists() else "not a file",
            where=str(full),
            key="--data",
            expected="a registered data set name, or a CSV, TSV, JSON, JSONL, Parquet or TXT file",
            hint="'compressor plugins --verbose' lists the registered data sets",
        )
    return None


def evaluation_recipe(
    model: str,
    data: str,
    *,
    task: str | None = None,
    split: str = "test",
    name: str | None = None,
    run_dir: str | Path | None = None,
    text_column: str | None = None,
    text_pair_column: str | None = None,
    label_column: str | None = None,
    max_samples: int | None = None,
    seed: int = 0,
    evaluation: dict[str, Any] | None = None,
    plugins: "Plugins | None" = None,
    cwd: str | Path | None = None,
) -> tuple[dict[str, Any], Path]:
    """The recipe of an evaluation-only run of ``model`` on ``data``.

    :param model: a packaged model name, a model folder (an artifact of an earlier run
        included) or a hub id.
    :param data: a registered data set name, or a data file read as ``task.data.files``.
    :param task: the task type; default: the registered data set's type, else
        ``text-classification``.
    :param split: the split measured (``evaluation.accuracy_split``). A file is taken whole
        as this split (as ``files: {test: FILE}``); a registered data set is split as usual.
    :param name: the run name; default ``evaluate-<model>-<data>``.
    :param run_dir: the run directory; default ``runs/<name>``.
    :param text_column: the text column (default ``text``).
    :param text_pair_column: the second text column of a pair task.
    :param label_column: the label column (default ``label``).
    :param max_samples: evaluate a seeded sample of this many rows
        (``task.data.max_eval_samples``).
    :param seed: the recipe's seed (splits and samples).
    :param evaluation: more ``evaluation`` settings (``batch_sizes``, ``latency``, ...).
    :param plugins: loaded plugins, to read a registered data set's type.
    :param cwd: folder relative paths are taken from (default: the working directory).
    :returns: ``(recipe, run_dir)``: the recipe as plain data, with absolute paths, and
        the run directory (``output.dir`` / ``name`` in the recipe when ``name`` allows).
    :raises SourceError: ``data`` looks like a path but is not a file.
    """
    base = Path(cwd) if cwd is not None else Path.cwd()
    file = _data_file(data, base)
    model_path = Path(os.path.expanduser(model))
    model_full = model_path if model_path.is_absolute() else base / model_path
    model_name = str(model_full.resolve()) if model_full.is_dir() else model
    data_section: dict[str, Any] = {"files": {split: str(file)}} if file else {"name": data}
    for key, value in (
        ("text_column", text_column),
        ("text_pair_column", text_pair_column),
        ("label_column", label_column),
        ("max_eval_samples", max_samples),
    ):
        if value is not None:
            data_section[key] = value
    if task is None and file is None and plugins is not None and data in plugins.datasets:
        task = plugins.datasets[data].type
    if run_dir is not None:
        run_dir = Path(run_dir)
        name = name or _slug(run_dir.name)
    else:
        name = name or f"evaluate-{_slug(Path(model_name).name or model)}-{_slug(file.stem if file else data)}"
        run_dir = Path("runs") / name
    run_dir = run_dir if run_dir.is_absolute() else base / run_dir
    recipe: dict[str, Any] = {
        "version": 1,
        "name": name,
        "description": f"Evaluation of {model} on {data} ({split} split).",
        "seed": seed,
        "model": {"name": model_name},
        "task": {**({"type": task} if task else {}), "data": data_section},
        "evaluation": {"baseline": True, "accuracy_split": split, **(evaluation or {})},
        "stages": [],
        "output": {"dir": str(run_dir.parent)},
    }
    return recipe, run_dir


def recipe_text(recipe: dict[str, Any], command: str | None = None) -> str:
    """The YAML text of a built recipe, with a comment saying where it came from.

    :param recipe: the recipe as plain data.
    :param command: the command line that built it, for the comment.
    """
    import yaml

    head = "# An evaluation-only recipe (no stages) written by 'compressor evaluate'"
    if command:
        head += ":\n#   " + " ".join(command.split())  # one comment line, whatever the arguments hold
    head += "\n# Rerun or continue it with: compressor run THIS_FILE --resume\n"
    return head + yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True)


def as_argument_error(exc: CompressorError) -> CompressorError:
    """Point ``exc`` at the ``compressor evaluate`` argument its recipe key comes from.

    :param exc: an error raised while validating or running a built recipe.
    :returns: ``exc``, changed in place: ``where`` (the built recipe's file and line, which
        the user never wrote) is dropped and ``key`` becomes ``--data (task.data.name)``;
        errors without a known key are returned unchanged.
    """
    key = exc.key or ""
    if key.startswith("--") or key == "MODEL":
        return exc
    matches = [k for k in OPTION_FOR_KEY if key == k or key.startswith((k + ".", k + "["))]
    if not matches:
        return exc
    option = OPTION_FOR_KEY[max(matches, key=len)]
    exc.where = None
    exc.key = f"{option} ({key})"
    exc.args = (exc.format(),)
    return exc


def evaluate_model(
    model: str,
    data: str,
    *,
    resume: bool = False,
    overwrite: bool = False,
    plugins: "Plugins | None" = None,
    progress: bool = True,
    command: str | None = None,
    **options: Any,
) -> "RunResult":
    """Evaluate ``model`` on ``data`` and write the report: an evaluation-only run.

    :param model: see :func:`evaluation_recipe`.
    :param data: see :func:`evaluation_recipe`.
    :param resume: continue (or reuse) an existing run directory.
    :param overwrite: delete an existing run directory first.
    :param plugins: loaded :class:`compressor.plugins.Plugins` (default: process-wide).
    :param progress: show progress bars.
    :param command: the command line, kept as a comment in the saved recipe.
    :param options: the keyword arguments of :func:`evaluation_recipe`.
    :returns: the :class:`compressor.pipeline.RunResult`.
    :raises CompressorError: bad model, data or settings, naming the argument at fault.
    """
    from .pipeline import Run
    from .plugins import get_plugins
    from .recipe import load_recipe_text

    plugins = plugins or get_plugins()
    try:
        recipe, run_dir = evaluation_recipe(model, data, plugins=plugins, **options)
        text = recipe_text(recipe, command)
        loaded = load_recipe_text(text, run_dir / "recipe.yaml", plugins=plugins)
        return Run(loaded, run_dir=run_dir, plugins=plugins, progress=progress, recipe_text=text).execute(
            resume=resume, overwrite=overwrite
        )
    except CompressorError as exc:
        as_argument_error(exc)
        raise
