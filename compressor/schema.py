"""JSON Schema of recipes, generated from the pydantic models, and the recipe reference.

The recipe skeleton (:class:`compressor.recipe.Recipe`) and every registered strategy's
``Config`` model are the single source of truth: this module turns them into

- a JSON Schema (draft 2020-12) of a whole recipe, in which each stage's ``config`` is
  checked against its strategy's schema (``if strategy == X then config matches X``), so an
  editor with a YAML language server completes and checks recipes
  (``# yaml-language-server: $schema=recipe.schema.json`` on a recipe's first line);
- the JSON Schema of one strategy's config;
- the markdown of ``docs/recipe-reference.md``.

It also publishes the schema of what a run writes: the evaluation records of
``results.json`` (:mod:`compressor.evaluate.records`), as JSON Schema
(:func:`compressor.evaluate.records.results_schema`) and as ``docs/results-reference.md``
(:func:`results_reference`).

Command line::

    compressor schema                     # the recipe schema, JSON, every installed strategy
    compressor schema finetune            # one strategy's config schema
    compressor schema --results           # the JSON Schema of results.json
    python -m compressor.schema --markdown > docs/recipe-reference.md
    python -m compressor.schema --results --markdown > docs/results-reference.md

The markdown reference documents the core and the strategies shipped with this package
(``--all`` adds installed third-party ones), so it does not depend on what else is
installed. Only pydantic and the core are imported: no torch.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from .errors import CompressorError, PluginError

if TYPE_CHECKING:  # pragma: no cover
    from .plugins import Plugins
    from .strategy import Strategy

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

#: Distribution name of this package: strategies its entry points register are built-ins.
BUILTIN_PACKAGE = "compressor"


def _plugins(plugins: "Plugins | None") -> "Plugins":
    from .plugins import get_plugins

    return plugins or get_plugins()


def strategy_owner(plugins: "Plugins", name: str) -> tuple[str, str | None]:
    """``(plugin name, distribution name)`` that registered strategy ``name``."""
    for info in plugins.infos.values():
        if name in info.strategies:
            return info.name, info.package
    return "?", None


def select_strategies(plugins: "Plugins", *, builtin_only: bool = False) -> "dict[str, type[Strategy]]":
    """Registered strategies by name, sorted; only this package's when ``builtin_only``."""
    out = {}
    for name in sorted(plugins.strategies):
        if builtin_only and strategy_owner(plugins, name)[1] != BUILTIN_PACKAGE:
            continue
        out[name] = plugins.strategies[name]
    return out


def strategy_schema(name: str, *, plugins: "Plugins | None" = None) -> dict[str, Any]:
    """JSON Schema of one strategy's ``config`` mapping.

    :param name: registered strategy name, e.g. ``"distill.distilbert"``.
    :param plugins: loaded plugins (default: the process-wide ones).
    :returns: a JSON-serialisable dict (``$schema``, ``title``, ``description``,
        ``properties``, ``additionalProperties: false``, ...).
    :raises PluginError: for an unknown strategy, naming the nearest registered one.
    """
    plugins = _plugins(plugins)
    cls = plugins.strategy(name)
    schema = cls.Config.model_json_schema()
    schema = {"$schema": SCHEMA_DIALECT, **schema}
    schema["title"] = f"{name} config"
    schema.setdefault("description", (cls.description or "").strip())
    return schema


def _ref_name(name: str) -> str:
    return "config:" + name


def recipe_schema(*, plugins: "Plugins | None" = None, builtin_only: bool = False) -> dict[str, Any]:
    """JSON Schema of a whole recipe, each stage's ``config`` checked by its strategy.

    :param plugins: loaded plugins (default: the process-wide ones).
    :param builtin_only: only the strategies this package ships.
    :returns: a JSON-serialisable dict. ``stages.items.properties.strategy`` is an ``enum``
        of the registered names; ``stages.items.allOf`` holds one ``if``/``then`` per
        strategy pointing ``config`` at ``$defs["config:<name>"]``.
    """
    from .recipe import Recipe

    plugins = _plugins(plugins)
    strategies = select_strategies(plugins, builtin_only=builtin_only)
    schema = Recipe.model_json_schema()
    defs = schema.setdefault("$defs", {})
    stage = defs["StageConfig"]
    stage["properties"]["strategy"]["enum"] = list(strategies)
    branches = []
    for name, cls in strategies.items():
        sub = cls.Config.model_json_schema(ref_template="#/$defs/" + _ref_name(name) + "/$defs/{model}")
        sub["title"] = f"{name} config"
        defs[_ref_name(name)] = sub
        branches.append(
            {
                "if": {"properties": {"strategy": {"const": name}}, "required": ["strategy"]},
                "then": {"properties": {"config": {"$ref": f"#/$defs/{_ref_name(name)}"}}},
            }
        )
    if branches:
        stage["allOf"] = branches
    return {"$schema": SCHEMA_DIALECT, "$id": "compressor-recipe-v1", **schema}


# --- markdown reference --------------------------------------------------------------------


def _type_of(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[-1]
    if "const" in prop:
        return json.dumps(prop["const"])
    if "enum" in prop:
        return " | ".join(json.dumps(v) for v in prop["enum"])
    if "anyOf" in prop:
        return " | ".join(_type_of(p, defs) for p in prop["anyOf"])
    t = prop.get("type", "any")
    if t == "array":
        return f"list[{_type_of(prop.get('items', {}), defs)}]"
    if t == "object":
        extra = prop.get("additionalProperties")
        if isinstance(extra, dict):
            return f"map[str, {_type_of(extra, defs)}]"
        return "mapping"
    return {"integer": "int", "number": "float", "string": "str", "boolean": "bool", "null": "null"}.get(t, t)


def _bounds(prop: dict[str, Any]) -> str:
    out = []
    for p in [prop, *prop.get("anyOf", [])]:
        for key, sym in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
            if key in p:
                out.append(f"{sym} {p[key]}")
        for key, sym in (("minLength", "length >="), ("maxLength", "length <="), ("minItems", "items >="), ("maxItems", "items <=")):
            if key in p:
                out.append(f"{sym} {p[key]}")
    return ", ".join(out)


def _default(model: type[BaseModel], field: str) -> str:
    info = model.model_fields[field]
    if info.is_required():
        return "**required**"
    if info.default_factory is not None:
        try:
            value = info.default_factory()  # type: ignore[call-arg]
        except TypeError:
            return "(computed)"
    else:
        value = info.default
    if isinstance(value, BaseModel):
        return "(section defaults)"
    return f"`{json.dumps(value, default=lambda v: v.model_dump(mode='json', exclude_defaults=True))}`"


def _rst_to_md(text: str) -> str:
    """Sphinx roles and literals to markdown code spans (``:class:`x``` -> ```x```)."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"`\1`", text)
    return text.replace("``", "`")


def _cell(text: str) -> str:
    return _rst_to_md(" ".join(str(text).split())).replace("|", "\\|")


def model_table(model: type[BaseModel]) -> str:
    """Markdown table of a pydantic model's fields: key, type, default, bounds, description."""
    schema = model.model_json_schema()
    defs = schema.get("$defs", {})
    rows = ["| key | type | default | bounds | description |", "| --- | --- | --- | --- | --- |"]
    for name, prop in schema.get("properties", {}).items():
        rows.append(
            f"| `{name}` | {_cell(_type_of(prop, defs))} | {_cell(_default(model, name))} | "
            f"{_cell(_bounds(prop))} | {_cell(_description(prop))} |"
        )
    return "\n".join(rows)


def _description(prop: dict[str, Any]) -> str:
    if prop.get("description"):
        return prop["description"]
    ref = prop.get("$ref") or next((p["$ref"] for p in prop.get("anyOf", []) if "$ref" in p), None)
    if ref:
        return "A section: see its table."
    items = prop.get("items", {})
    if "$ref" in items:
        return "A list of sections: see the table of one item."
    return ""


def _doc_first_paragraph(obj: Any) -> str:
    import inspect

    doc = inspect.getdoc(obj) or ""
    return _rst_to_md(doc.split("\n\n", 1)[0].replace("\n", " ").strip())


def markdown_reference(*, plugins: "Plugins | None" = None, builtin_only: bool = True) -> str:
    """The recipe reference (``docs/recipe-reference.md``) as markdown.

    :param plugins: loaded plugins (default: the process-wide ones).
    :param builtin_only: document only the strategies this package ships (default), so the
        page does not change with what else is installed.
    :returns: markdown text ending with a newline.
    """
    from .recipe import (
        DataConfig,
        EvaluationConfig,
        ModelConfig,
        OutputConfig,
        Recipe,
        StageConfig,
        TaskConfig,
    )
    from .search import Budget, Constraint, Fidelity, Objective, Param, SearchConfig

    plugins = _plugins(plugins)
    out = [
        "# Recipe reference",
        "",
        "<!-- Generated from the pydantic models by `python -m compressor.schema --markdown > "
        "docs/recipe-reference.md`; do not edit by hand (tests/core/test_schema.py checks it). -->",
        "",
        "Every key a recipe may hold, with its type, default, bounds and meaning. Unknown keys "
        "are errors. `compressor schema` prints the same information as JSON Schema (one per "
        "strategy with `compressor schema STRATEGY`); see [recipes.md](recipes.md) for a "
        "commented example and the [user guide](user-guide.md) for how to write recipes.",
        "",
        "Editors with a YAML language server (VS Code's YAML extension, for example) complete "
        "and check recipes against the schema: `compressor schema > recipe.schema.json` and "
        "put `# yaml-language-server: $schema=recipe.schema.json` on the recipe's first line.",
        "",
    ]
    sections = [
        ("Top level", Recipe, ""),
        ("`model`", ModelConfig, "model."),
        ("`task`", TaskConfig, "task."),
        ("`task.data`", DataConfig, "task.data."),
        ("`evaluation`", EvaluationConfig, "evaluation."),
        ("`stages[]`", StageConfig, "stages[]."),
        ("`output`", OutputConfig, "output."),
        ("`search`", SearchConfig, "search."),
        ("`search.objective[]`", Objective, "search.objective[]."),
        ("`search.constraint`", Constraint, "search.constraint."),
        ("`search.space.<key>`", Param, "search.space."),
        ("`search.budget`", Budget, "search.budget."),
        ("`search.fidelity`", Fidelity, "search.fidelity."),
    ]
    for title, model, _prefix in sections:
        out += [f"## {title}", "", _doc_first_paragraph(model), "", model_table(model), ""]
    tasks = {
        n: t for n, t in sorted(plugins.tasks.items())
        if not builtin_only or n in plugins.infos.get("compressor.tasks.builtin", _NO_INFO).tasks
    }
    out += ["## Task types", "",
            "`task.type` names one; `task.options` is checked against its options.", ""]
    for name, task in tasks.items():
        out += [f"### `{name}`", "", f"{_cell(task.description)} (head: `{task.auto_model}`)", ""]
        if task.Options.model_fields:
            out += [model_table(task.Options), ""]
        else:
            out += ["No options.", ""]
    strategies = select_strategies(plugins, builtin_only=builtin_only)
    out += [
        "## Strategies",
        "",
        "A stage's `config` is validated by its strategy's own model. "
        + ("Strategies shipped with compressor:" if builtin_only else "Installed strategies:"),
        "",
    ]
    for name, cls in strategies.items():
        plugin, package = strategy_owner(plugins, name)
        flags = [
            f"input formats: {', '.join(cls.input_formats)}",
            f"produces: {cls.produces}",
            f"task types: {_task_types(cls, tasks)}",
        ]
        for flag in ("needs_training_data", "needs_calibration_data", "needs_teacher"):
            if getattr(cls, flag):
                flags.append(flag.replace("_", " "))
        out += [
            f"### `{name}`",
            "",
            f"{_cell(cls.description)} (plugin `{plugin}`, package `{package or '-'}`; "
            f"{'; '.join(flags)})",
            "",
            _doc_first_paragraph(cls),
            "",
            model_table(cls.Config),
            "",
        ]
    return "\n".join(out).rstrip() + "\n"


# --- results reference ---------------------------------------------------------------------


class _NoInfo:
    tasks: list[str] = []


_NO_INFO = _NoInfo()


def _task_types(cls: Any, tasks: dict[str, Any]) -> str:
    """The task types a strategy accepts, spelled out when it accepts a rule (``*``)."""
    if "*" not in cls.task_types:
        return ", ".join(cls.task_types)
    from .tasks import using_tasks

    with using_tasks(tasks):  # the strategy's task_refusal looks the task up by name
        accepted = [n for n in tasks if cls.supports_task(n)]
    return ", ".join(accepted) if len(accepted) < len(tasks) else "all"


TASK_TABLE_BEGIN = "<!-- task x strategy: generated by python -m compressor.schema --task-table -->"
TASK_TABLE_END = "<!-- end of the generated table -->"


def task_strategy_table(*, plugins: "Plugins | None" = None, builtin_only: bool = True) -> str:
    """Markdown table of which strategy accepts which task type, with the reason of every
    refusal (:meth:`compressor.Strategy.task_refusal`): what ``compressor validate`` checks.

    :returns: the table between :data:`TASK_TABLE_BEGIN` and :data:`TASK_TABLE_END` lines.
    """
    plugins = _plugins(plugins)
    strategies = select_strategies(plugins, builtin_only=builtin_only)
    tasks = sorted(plugins.tasks)
    lines = [TASK_TABLE_BEGIN, "", "| strategy | " + " | ".join(f"`{t}`" for t in tasks) + " |",
             "| --- | " + " | ".join("---" for _ in tasks) + " |"]
    with plugins.scope():  # a strategy's task_refusal looks the task up by name
        for name, cls in strategies.items():
            cells = []
            for task in tasks:
                if cls.supports_task(task):
                    cells.append("yes")
                else:
                    reason = cls.task_refusal(task)
                    cells.append(f"no: {_cell(reason)}" if reason else "no")
            lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return "\n".join([*lines, "", TASK_TABLE_END]) + "\n"


def _record_table(model: type[BaseModel]) -> str:
    """Markdown table of a record model's fields: key, type, description."""
    schema = model.model_json_schema()
    defs = schema.get("$defs", {})
    rows = ["| key | type | description |", "| --- | --- | --- |"]
    for name, prop in schema.get("properties", {}).items():
        kind = _type_of(prop, defs)
        if prop.get("type") == "array" and prop.get("prefixItems"):
            kind = "[" + ", ".join(_type_of(p, defs) for p in prop["prefixItems"]) + "]"
        elif "anyOf" in prop:
            kind = " | ".join(
                "[" + ", ".join(_type_of(i, defs) for i in p["prefixItems"]) + "]"
                if p.get("type") == "array" and p.get("prefixItems") else _type_of(p, defs)
                for p in prop["anyOf"]
            )
        rows.append(f"| `{name}` | {_cell(kind)} | {_cell(prop.get('description', ''))} |")
    return "\n".join(rows)


def results_reference() -> str:
    """The reference of ``results.json`` (``docs/results-reference.md``) as markdown: every
    field of every evaluation record model, with its type and meaning.

    :returns: markdown text ending with a newline.
    """
    from .evaluate.records import RECORD_MODELS, SCHEMA_VERSION

    out = [
        "# Results reference",
        "",
        "<!-- Generated from the pydantic models by `python -m compressor.schema --results "
        "--markdown > docs/results-reference.md`; do not edit by hand "
        "(tests/report/test_records.py checks it). -->",
        "",
        "`results.json` in a run directory is a JSON list of evaluation records, one per model "
        "and device, in report order (`compare.json` likewise, names prefixed with their run). "
        f"This compressor writes `schema_version` {SCHEMA_VERSION}; records without it are "
        "version 0 (every run before the records were typed: the same keys less the CPU's "
        "instruction sets and kernels) and are still read, upgraded. A key missing from an old "
        "record reads as `null`: not measured. `compressor schema --results` prints the same "
        "information as JSON Schema. In Python, `compressor.report.load_results(run_dir)` "
        "returns typed records (`compressor.evaluate.records.EvaluationRecord`), whatever "
        "version wrote them; [evaluation.md](evaluation.md) says how each figure is measured.",
        "",
        "Units: accuracy-like values are fractions in [0, 1]; times in ms; throughput in "
        "sequences per second; memory and disk in MB (1e6 bytes); FLOPs per sequence at batch 1. "
        "An interval is `[low, high]`.",
        "",
    ]
    for model in RECORD_MODELS:
        out += [f"## `{model.__name__}`", "", _doc_first_paragraph(model), "", _record_table(model), ""]
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m compressor.schema [STRATEGY] [--markdown] [--all]``; returns the exit status."""
    p = argparse.ArgumentParser(prog="python -m compressor.schema", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        print(render(args), end="")
    except CompressorError as exc:
        print(f"error: {exc.format()}", file=sys.stderr)
        return 2
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments shared by ``compressor schema`` and ``python -m compressor.schema``."""
    p.add_argument("strategy", nargs="?", help="print only this strategy's config schema")
    p.add_argument("--markdown", action="store_true", help="print the markdown recipe reference instead of JSON")
    p.add_argument(
        "--results",
        action="store_true",
        help="the schema of results.json (the evaluation records) instead of the recipe's; "
        "with --markdown: the results reference",
    )
    p.add_argument(
        "--all",
        action="store_true",
        help="with --markdown: document installed third-party strategies too "
        "(the JSON schema always holds every installed strategy)",
    )
    p.add_argument(
        "--task-table",
        action="store_true",
        help="the markdown table of which strategy accepts which task type (docs/tasks.md)",
    )


def render(args: argparse.Namespace) -> str:
    """Text the ``schema`` command prints for parsed ``args``.

    :raises PluginError: for an unknown strategy.
    :raises CompressorError: for ``--results`` with a strategy.
    """
    if getattr(args, "task_table", False):
        return task_strategy_table(builtin_only=not args.all)
    if getattr(args, "results", False):
        if args.strategy:
            raise CompressorError(
                "--results prints the schema of results.json and takes no strategy",
                hint=f"drop {args.strategy!r}, or drop --results for its config schema",
            )
        if args.markdown:
            return results_reference()
        from .evaluate.records import results_schema

        return json.dumps(results_schema(), indent=2) + "\n"
    if args.markdown:
        if args.strategy:
            plugins = _plugins(None)
            cls = plugins.strategy(args.strategy)
            return f"### `{args.strategy}`\n\n{model_table(cls.Config)}\n"
        return markdown_reference(builtin_only=not args.all)
    schema = strategy_schema(args.strategy) if args.strategy else recipe_schema()
    return json.dumps(schema, indent=2) + "\n"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
