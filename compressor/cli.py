"""The ``compressor`` command line.

Commands: ``run``, ``evaluate``, ``validate``, ``plugins``, ``report``, ``schema``, ``compare``.
Errors caused by user input (:class:`~compressor.errors.CompressorError`) print one message
and exit with status 2; a stage that crashes (:class:`~compressor.errors.StageFailed`) exits
with status 1 after saying where its traceback was saved.

Heavy libraries (torch, transformers) are imported only by the commands that need them, so
``compressor --help`` and ``compressor validate`` start fast.

``run`` also works under a launcher (``accelerate launch -m compressor run R``, ``torchrun
-m compressor run R``): rank 0 prints the table; a process that fails prefixes its message
with its rank and leaves it where the launcher's failure summary reads it
(:func:`compressor.distributed.record_for_launcher`); every process exits with the failing
process's status.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CompressorError, StageFailed

if TYPE_CHECKING:  # pragma: no cover
    from .plugins import Plugins

EXIT_USER_ERROR = 2
EXIT_STAGE_FAILED = 1
_TASK_TYPES = "{task_types}"
"""Placeholder of a help text for the registered task types (:class:`_HelpFormatter`)."""


def task_types(plugins: Plugins | None = None) -> list[str]:
    """The task types ``--task`` accepts: the registered tasks' names, sorted (the core's and
    the installed plugins'; the recipe check refuses any other).

    :param plugins: loaded plugins; default: the installed ones.
    """
    from .plugins import get_plugins
    from .tasks import task_names

    return task_names((plugins or get_plugins()).tasks)


def __getattr__(name: str) -> Any:
    if name == "TASK_TYPES":  # computed when read: loading the plugins is not free
        return tuple(task_types())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _HelpFormatter(argparse.HelpFormatter):
    """Puts the registered task types in a help text, when the help is printed: the plugins
    load then, not at every start of the command."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = super()._get_help_string(action)
        if text and _TASK_TYPES in text:
            text = text.replace(_TASK_TYPES, ", ".join(task_types()).replace("%", "%%"))
        return text


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="compressor",
        description="Compress Hugging Face encoders with YAML recipes: distillation, "
        "quantization, pruning; every model evaluated and compared.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    r = sub.add_parser("run", help="run a recipe: stages, evaluation, report")
    r.add_argument("recipe", type=Path, help="recipe YAML file")
    r.add_argument("--resume", action="store_true", help="continue an existing run from its first unfinished stage")
    r.add_argument("--overwrite", action="store_true", help="delete an existing run directory first")
    r.add_argument("--run-dir", type=Path, help="run directory (default: <output.dir>/<name>)")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")

    t = sub.add_parser(
        "tune",
        help="search the recipe's search: space for the fastest model within its loss bound",
        description="Run trials of the recipe with the values an Optuna sampler proposes; keep "
        "the fastest model whose loss against the reference is bounded (paired bootstrap lower "
        "bound on the selection split); score it and the Pareto front on the test split. Exit "
        "status 3 when no trial passes (the report names the closest).",
    )
    t.add_argument("recipe", type=Path, help="recipe YAML file with a search: block")
    t.add_argument("--resume", action="store_true", help="continue a search: finished trials are kept, an interrupted one is rerun")
    t.add_argument("--overwrite", action="store_true", help="delete an existing tune folder first")
    t.add_argument("--trials", type=int, metavar="N", help="finished trials to reach (overrides search.budget.trials)")
    t.add_argument("--time", type=float, metavar="S", help="seconds of search, resumed sessions included (overrides search.budget.time_s)")
    t.add_argument("--run-dir", type=Path, help="tune folder (default: <output.dir>/<name>)")
    t.add_argument("--progress", action="store_true", help="progress bars inside each trial")

    e = sub.add_parser(
        "evaluate",
        help="evaluate one model on a data set and write the report (a recipe without stages)",
        description="Evaluate MODEL on a data set with the shared evaluator and write the "
        "report, as a recipe without stages would. The recipe is saved in the run directory: "
        "'compressor run RUN_DIR/recipe.yaml --resume' and 'compressor report RUN_DIR' work on it.",
        formatter_class=_HelpFormatter,
    )
    e.add_argument("model", metavar="MODEL", help="packaged model name, model folder (an artifact of a run too) or hub id")
    e.add_argument("--data", required=True, metavar="NAME|FILE",
                   help="registered data set name, or a CSV/TSV/JSON/JSONL/Parquet file taken whole as --split")
    e.add_argument("--task", metavar="TYPE", help=f"task type, one of the registered ones: {_TASK_TYPES} "
                   "(default: the data set's, else text-classification)")
    e.add_argument("--split", default="test", choices=("test", "validation", "train"),
                   help="split measured; a --data file is this split, whole (default: test)")
    e.add_argument("--out", type=Path, metavar="DIR", help="run directory (default: runs/evaluate-<model>-<data>)")
    e.add_argument("--name", help="run name (default: from MODEL and --data, or the --out folder's name)")
    e.add_argument("--text-column", help="column holding the text (default: text)")
    e.add_argument("--text-pair-column", help="column holding the second text of a pair")
    e.add_argument("--label-column", help="column holding the label (default: label)")
    e.add_argument("--max-samples", type=int, metavar="N", help="evaluate a seeded sample of N rows")
    e.add_argument("--batch-sizes", type=int, nargs="+", metavar="B", help="batch sizes timed (default: the evaluator's)")
    e.add_argument("--sequence-length", type=int, metavar="T", help="tokens per latency input")
    e.add_argument("--no-latency", action="store_true", help="measure accuracy and size only")
    e.add_argument("--device", choices=("auto", "cpu", "cuda"), help="where the model is measured (default: auto)")
    e.add_argument("--seed", type=int, default=0, help="seed of splits and samples (default: 0)")
    e.add_argument("--resume", action="store_true", help="continue (or reuse) an existing run directory")
    e.add_argument("--overwrite", action="store_true", help="delete an existing run directory first")
    e.add_argument("--no-progress", action="store_true", help="no progress bars")

    v = sub.add_parser("validate", help="validate recipes without running them")
    v.add_argument("recipes", type=Path, nargs="+", help="recipe YAML files")

    pl = sub.add_parser("plugins", help="list installed plugins and their strategies")
    pl.add_argument("--verbose", "-v", action="store_true", help="also show modules, hooks, sources and data sets")

    rep = sub.add_parser("report", help="print the comparison table of a finished run")
    rep.add_argument("run_dir", type=Path, help="run directory")

    cmp_ = sub.add_parser(
        "compare", help="merge several runs into one table, report and Pareto plot"
    )
    cmp_.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR", help="run directories")
    cmp_.add_argument("--output", "-o", type=Path, default=Path("compare"),
                      help="folder for compare.md/.html/.csv/.json and the plots (default: ./compare)")
    cmp_.add_argument("--allow-mixed", action="store_true",
                      help="accept runs from different devices, thread counts or CPU/GPU models "
                      "(ranked per group, never together)")
    cmp_.add_argument("--title", default="Comparison", help="report title")

    from .schema import add_arguments as _schema_arguments

    sc = sub.add_parser(
        "schema", help="print the recipe's JSON Schema (or one strategy's config schema, or the markdown reference)"
    )
    _schema_arguments(sc)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``compressor`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    args.argv = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
    try:
        return _COMMANDS[args.command](args)
    except StageFailed as exc:  # a stage crashed: the message says where its traceback is
        _error(exc, exc.format(), args)
        return EXIT_STAGE_FAILED
    except CompressorError as exc:
        from .distributed import exit_status

        _error(exc, exc.format(), args)
        return exit_status(exc)
    except KeyboardInterrupt as exc:
        _error(exc, "interrupted; finished stages are kept: rerun with --resume", args, prefix="")
        return 130


def _error(exc: BaseException, message: str, args: argparse.Namespace, prefix: str = "error: ") -> None:
    """Print an error; under a launcher name the rank and tell the launcher (``run`` only)."""
    from .distributed import launched, rank, record_for_launcher

    if args.command in ("run", "tune") and launched():
        message = f"rank {rank()}: {message}"
        record_for_launcher(message, exc)
    print(f"{prefix}{message}", file=sys.stderr)


def _cmd_run(args: argparse.Namespace) -> int:
    from .distributed import Ranks
    from .pipeline import run
    from .plugins import get_plugins

    ranks = Ranks.from_environment()  # one process, or those a launcher started
    # on failure no barrier on the way out: the process exits and the launcher stops the others
    result = run(
        args.recipe,
        resume=args.resume,
        overwrite=args.overwrite,
        run_dir=args.run_dir,
        plugins=get_plugins(),
        progress=not args.no_progress,
        ranks=ranks,
    )
    ranks.close()
    return _print_result(result) if ranks.is_main else 0


def _cmd_tune(args: argparse.Namespace) -> int:
    from .distributed import Ranks
    from .errors import CompressorError
    from .plugins import get_plugins
    from .tune import tune

    if args.trials is not None and args.trials < 1:
        raise CompressorError(f"--trials must be at least 1, got {args.trials}", key="--trials")
    if args.time is not None and args.time <= 0:
        raise CompressorError(f"--time must be positive seconds, got {args.time}", key="--time")
    ranks = Ranks.from_environment()  # one process, or those a launcher started
    result = tune(
        args.recipe, resume=args.resume, overwrite=args.overwrite, run_dir=args.run_dir,
        trials=args.trials, time_s=args.time, plugins=get_plugins(), progress=args.progress, ranks=ranks,
    )
    ranks.close()
    if ranks.is_main:
        print(f"best: trial {result.best.number} -> {result.best_dir}")
        print(f"report: {result.report}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import shlex

    from .plugins import get_plugins
    from .shortcuts import evaluate_model

    evaluation: dict = {}
    if args.batch_sizes:
        evaluation["batch_sizes"] = args.batch_sizes
    if args.sequence_length is not None:
        evaluation["sequence_length"] = args.sequence_length
    if args.no_latency:
        evaluation["latency"] = False
    if args.device:
        evaluation["device"] = args.device
    result = evaluate_model(
        args.model,
        args.data,
        task=args.task,
        split=args.split,
        name=args.name,
        run_dir=args.out,
        text_column=args.text_column,
        text_pair_column=args.text_pair_column,
        label_column=args.label_column,
        max_samples=args.max_samples,
        seed=args.seed,
        evaluation=evaluation,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        command=shlex.join(["compressor", *args.argv]),
        plugins=get_plugins(),
    )
    return _print_result(result)


def _print_result(result) -> int:
    from .report import render_table

    print(render_table(result.results))
    print(f"\nreport: {result.report}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from .plugins import get_plugins
    from .tune.tuner import load_tune_recipe

    plugins = get_plugins()
    status = 0
    for path in args.recipes:
        try:
            loaded = load_tune_recipe(path, plugins=plugins)  # the search block too, if any
        except CompressorError as exc:
            print(f"error: {exc.format()}", file=sys.stderr)
            status = EXIT_USER_ERROR
            continue
        stages = ", ".join(f"{s.name} ({s.strategy})" for s in loaded.recipe.stages)
        print(f"ok: {path}: {stages or 'no stages (evaluates the model only)'}")
    return status


def _cmd_plugins(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from .plugins import get_plugins

    plugins = get_plugins()
    rows = []
    for info in plugins.infos.values():
        status = "disabled" if info.disabled else ("FAILED: " + info.error if info.error else "ok")
        row = [info.name, info.package or "-", info.version or "-", ", ".join(info.strategies) or "-", status]
        if args.verbose:
            row[3:3] = [
                info.module,
                ", ".join(info.model_sources + info.datasets) or "-",
                ", ".join(getattr(info, "backends", [])) or "-",
                ", ".join(info.tasks) or "-",
                _shorten(info.architectures),
                ", ".join(h.removeprefix("compressor_") for h in info.hooks) or "-",
            ]
        rows.append(row)
    headers = ["plugin", "package", "version", "strategies", "status"]
    if args.verbose:
        headers[3:3] = ["module", "sources / data sets", "backend formats", "tasks",
                        "architectures", "hooks"]
    print(tabulate(rows, headers=headers, tablefmt="simple"))
    return 1 if plugins.failed else 0


def _shorten(names: list[str], limit: int = 6) -> str:
    if not names:
        return "-"
    shown = ", ".join(names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import load_results, render_table

    results = load_results(args.run_dir)
    print(render_table(results))
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from .report import compare_runs, render_table

    comparison = compare_runs(
        args.run_dirs, output=args.output, allow_mixed=args.allow_mixed, title=args.title
    )
    for label, records in comparison.groups.items():
        print(f"{label}\n{render_table(records)}\n")
    print(f"report: {args.output / 'compare.md'} (and compare.html, compare.csv, compare.json)")
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    from .schema import render

    print(render(args), end="")
    return 0


_COMMANDS = {
    "run": _cmd_run,
    "tune": _cmd_tune,
    "evaluate": _cmd_evaluate,
    "validate": _cmd_validate,
    "plugins": _cmd_plugins,
    "report": _cmd_report,
    "compare": _cmd_compare,
    "schema": _cmd_schema,
}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
