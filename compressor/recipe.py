"""Recipes: pydantic models loaded from YAML, with file:line in every error.

Validation runs in two phases:

1. the skeleton (:class:`Recipe`): model, task, evaluation, output and the list of stages,
   each stage's ``config`` kept as a plain mapping;
2. each stage's ``config`` by its strategy's own ``Config`` model (:func:`validate_stages`),
   once the plugins are loaded.

Unknown keys are errors in both phases. Every error is a :class:`~compressor.errors.RecipeError`
naming the file, line, key path, what was expected and, for a misspelled key or strategy, the
nearest valid name.

A minimal recipe::

    version: 1
    name: quickstart
    model: {name: all-minilm-l6-v2}
    task:
      data: {name: mr-snippets}
    stages:
      - {name: teacher, strategy: finetune, config: {epochs: 1}}
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import RecipeError
from .evaluate.settings import EvaluationSettings
from .suggest import did_you_mean

if TYPE_CHECKING:  # pragma: no cover
    from .plugins import Plugins

RECIPE_VERSION = 1
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelConfig(_Strict):
    """Which pretrained encoder the run starts from."""

    name: str = Field(
        description="Packaged model name (e.g. 'all-minilm-l6-v2'), a local folder, or a hub id."
    )
    source: str = Field(
        "auto",
        description="'auto' (packaged, then local folder, then hub) or a registered model "
        "source name: 'packaged', 'local', 'hub', or one a plugin adds.",
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit).")
    trust_remote_code: bool = Field(
        False, description="Allow a hub model's own Python code to run. Off unless you opt in."
    )


class DataConfig(_Strict):
    """The task's data: exactly one of ``name``, ``hub`` or ``files``."""

    name: str | None = Field(None, description="Registered (packaged) data set, e.g. 'mr-snippets'.")
    hub: str | None = Field(None, description="Hugging Face hub data set id.")
    hub_config: str | None = Field(None, description="Hub data set configuration (subset).")
    files: dict[str, str] | None = Field(
        None,
        description="Split name (train/validation/test) -> CSV, TSV, JSON, JSONL or Parquet file, "
        "relative to the recipe's folder.",
    )
    text_column: str = Field("text", description="Column holding the text.")
    text_pair_column: str | None = Field(None, description="Column holding the second text of a pair.")
    label_column: str = Field("label", description="Column holding the label (int or string).")
    validation_fraction: float = Field(
        0.1, gt=0, lt=1, description="Fraction of train held out as validation when none is given."
    )
    test_fraction: float = Field(
        0.1, gt=0, lt=1, description="Fraction of train held out as test when none is given."
    )
    max_train_samples: int | None = Field(None, ge=1, description="Cap on training rows (seeded sample).")
    max_eval_samples: int | None = Field(
        None, ge=1, description="Cap on validation and test rows (seeded sample)."
    )
    trust_remote_code: bool = Field(False, description="Allow a hub data set's loading script to run.")

    @model_validator(mode="after")
    def _exactly_one_source(self) -> "DataConfig":
        given = [k for k in ("name", "hub", "files") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of 'name' (packaged data set), 'hub' (hub id) or 'files' "
                f"(local files); got {given or 'none'}"
            )
        return self


class TaskConfig(_Strict):
    """What the models are for and on which data."""

    type: Literal["text-classification", "masked-lm"] = Field(
        "text-classification", description="Task type; masked-lm is raw text."
    )
    data: DataConfig


class EvaluationConfig(EvaluationSettings):
    """Evaluator settings shared by every model of the run."""

    baseline: bool = Field(
        True,
        description="Evaluate the input model too. Turn off when it has no trained task head "
        "(a sentence-embedding checkpoint, for example).",
    )


class StageConfig(_Strict):
    """One stage: a strategy applied to the previous stage's artifact, or to the artifact
    named by ``input``.

    ``input`` lets several stages start from the same model, e.g. four quantisations of one
    fine-tuned teacher::

        - {name: teacher, strategy: finetune}
        - {name: int8-torch, strategy: quantize.dynamic-int8, input: teacher}
        - {name: int8-ort, strategy: quantize.ort-dynamic, input: teacher}
    """

    name: str = Field(description="Unique stage name; also the name of the artifact it makes.")
    strategy: str = Field(description="Registered strategy name, e.g. 'finetune'.")
    input: str | None = Field(
        None,
        description="Name of the artifact this stage starts from: 'baseline' or an earlier "
        "stage's name. Unset means the previous stage's artifact (the baseline for the "
        "first stage).",
    )
    config: dict[str, Any] = Field(default_factory=dict, description="The strategy's settings.")
    evaluate: bool = Field(True, description="Evaluate this stage's artifact.")

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        if not _NAME_RE.match(v) or v == "baseline":
            raise ValueError(
                "letters, digits, '-', '_' or '.', starting with a letter or digit, and not "
                "'baseline' (reserved for the input model)"
            )
        return v


class OutputConfig(_Strict):
    """Where the run directory goes."""

    dir: str = Field("runs", description="Parent folder of run directories (relative to the working directory).")


class Recipe(_Strict):
    """A whole recipe (phase-1 skeleton; stage configs validated by :func:`validate_stages`)."""

    version: Literal[1] = Field(description="Recipe format version; 1 is the only one.")
    name: str = Field(description="Run name; the run directory is <output.dir>/<name>.")
    description: str = Field("", description="Free text shown in the report.")
    seed: int = Field(0, ge=0, description="Seed for data splits, initialisation and training.")
    model: ModelConfig
    task: TaskConfig
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    stages: list[StageConfig] = Field(min_length=1)
    output: OutputConfig = Field(default_factory=OutputConfig)

    @field_validator("name")
    @classmethod
    def _run_name_ok(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError("letters, digits, '-', '_' or '.', starting with a letter or digit")
        return v

    @model_validator(mode="after")
    def _unique_stage_names(self) -> "Recipe":
        seen: set[str] = set()
        for st in self.stages:
            if st.name in seen:
                raise ValueError(f"stage name {st.name!r} is used twice; stage names must be unique")
            seen.add(st.name)
        return self


class LoadedRecipe:
    """A validated recipe with its source text and line map.

    :ivar recipe: the phase-1 :class:`Recipe`.
    :ivar stage_configs: validated strategy config objects, one per stage (after phase 2).
    :ivar path: the YAML file.
    :ivar lines: key path tuple -> 1-based line number in the file.
    """

    def __init__(self, recipe: Recipe, path: Path, lines: dict[tuple, int]) -> None:
        self.recipe = recipe
        self.path = path
        self.lines = lines
        self.stage_configs: list[BaseModel] = []

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def where(self, loc: tuple) -> str:
        """``file:line`` for a key path (the nearest enclosing key when absent)."""
        return f"{self.path}:{_line_for(self.lines, tuple(loc))}"

    def resolved(self) -> dict[str, Any]:
        """The recipe with every default filled in, stage configs included (plain data)."""
        data = self.recipe.model_dump(mode="json")
        for st, cfg in zip(data["stages"], self.stage_configs):
            st["config"] = cfg.model_dump(mode="json")
        return data

    def hash(self) -> str:
        """SHA-256 of the resolved recipe (canonical JSON)."""
        return hashlib.sha256(json.dumps(self.resolved(), sort_keys=True).encode()).hexdigest()


# --- YAML with line numbers ----------------------------------------------------------------


def _compose(text: str, path: Path) -> tuple[Any, dict[tuple, int]]:
    import yaml

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else "?"
        raise RecipeError(
            f"not valid YAML: {exc.problem or exc}",
            where=f"{path}:{line}",
            hint="check indentation and that every 'key: value' pair has a space after ':'",
        ) from None
    except yaml.YAMLError as exc:
        raise RecipeError(f"not valid YAML: {exc}", where=str(path)) from None
    lines: dict[tuple, int] = {}
    if node is None:
        return None, lines

    def walk(n: Any, loc: tuple) -> None:
        lines.setdefault(loc, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            seen: set[str] = set()
            for k, v in n.value:
                key = k.value
                if key in seen:
                    raise RecipeError(
                        f"key {key!r} appears twice",
                        where=f"{path}:{k.start_mark.line + 1}",
                        key=_fmt_loc(loc + (key,)),
                        hint="remove one of them",
                    )
                seen.add(key)
                lines[loc + (key,)] = k.start_mark.line + 1
                walk(v, loc + (key,))
        elif isinstance(n, yaml.SequenceNode):
            for i, v in enumerate(n.value):
                lines[loc + (i,)] = v.start_mark.line + 1
                walk(v, loc + (i,))

    walk(node, ())
    data = yaml.load(text, Loader=yaml.SafeLoader)
    return data, lines


def _line_for(lines: dict[tuple, int], loc: tuple) -> int | str:
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return lines.get((), 1)


def _fmt_loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str] | None:
    """Field names of the pydantic model reached by following ``loc`` (for suggestions)."""
    import typing

    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(part)
        if field is None:
            return None
        ann = field.annotation
        candidates = [ann, *typing.get_args(ann)]
        for c in list(candidates):
            candidates.extend(typing.get_args(c))
        current = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return None


def _describe_field(model: type[BaseModel], loc: tuple) -> str | None:
    """The annotation and description of the field at ``loc``, for 'expected:'."""
    parent = loc[:-1]
    name = loc[-1] if loc else None
    import typing

    current: Any = model
    for part in parent:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        f = current.model_fields.get(part)
        if f is None:
            return None
        cands = [f.annotation, *typing.get_args(f.annotation)]
        for c in list(cands):
            cands.extend(typing.get_args(c))
        current = next((c for c in cands if isinstance(c, type) and issubclass(c, BaseModel)), None)
    if not (isinstance(current, type) and issubclass(current, BaseModel)) or not isinstance(name, str):
        return None
    f = current.model_fields.get(name)
    if f is None:
        return None
    ann = getattr(f.annotation, "__name__", None) or str(f.annotation).replace("typing.", "")
    bounds = [f"{m}" for m in f.metadata]
    desc = f" ({f.description})" if f.description else ""
    return f"{ann}{' ' + ', '.join(bounds) if bounds else ''}{desc}"


def validation_error(
    exc: ValidationError,
    *,
    model: type[BaseModel],
    path: Path,
    lines: dict[tuple, int],
    prefix: tuple = (),
    data: Any = None,
) -> RecipeError:
    """Turn a pydantic :class:`ValidationError` into one :class:`RecipeError`.

    The first error is reported in full (file:line, key path, expected, suggestion); the
    count of further errors is appended.
    """
    # A misspelled key shows up twice (unknown key + required key missing): report the
    # unknown key first, since it carries the suggestion.
    errors = sorted(exc.errors(include_url=False), key=lambda e: e["type"] != "extra_forbidden")
    first = errors[0]
    loc = tuple(first["loc"])
    # drop pydantic's tagged-union / function-validator pseudo-locations
    loc = tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
    full = prefix + loc
    kind = first["type"]
    hint = None
    expected = None
    if kind == "extra_forbidden":
        fields = _fields_at(model, loc[:-1]) or []
        message = f"unknown key {loc[-1]!r}"
        expected = f"one of {fields}" if fields else None
        hint = did_you_mean(str(loc[-1]), fields)
    elif kind == "missing":
        message = f"required key {loc[-1]!r} is missing"
        expected = _describe_field(model, loc)
    else:
        message = first["msg"]
        if "input" in first and not isinstance(first["input"], (dict, list)):
            message += f" (got {first['input']!r})"
        expected = _describe_field(model, loc)
    if len(errors) > 1:
        more = ", ".join(_fmt_loc(prefix + tuple(e["loc"])) for e in errors[1:4])
        message += f" [and {len(errors) - 1} more: {more}{'...' if len(errors) > 4 else ''}]"
    return RecipeError(
        message,
        where=f"{path}:{_line_for(lines, full)}",
        key=_fmt_loc(full),
        expected=expected,
        hint=hint,
    )


# --- loading -------------------------------------------------------------------------------


def load_recipe(path: str | Path, *, plugins: "Plugins | None" = None, validate_configs: bool = True) -> LoadedRecipe:
    """Load and validate a recipe file.

    :param path: YAML file.
    :param plugins: loaded plugins for phase 2 (default: the process-wide ones).
    :param validate_configs: run phase 2 (each stage's config by its strategy).
    :returns: the :class:`LoadedRecipe`.
    :raises RecipeError: unreadable file, invalid YAML, or a failed validation, with file,
        line, key, expected value and suggestion.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError("recipe file not found", where=str(path), hint="check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"cannot read the recipe: {exc}", where=str(path)) from None
    data, lines = _compose(text, path)
    if not isinstance(data, dict):
        raise RecipeError(
            "the recipe must be a YAML mapping (version, name, model, task, stages)",
            where=f"{path}:1",
        )
    if "version" in data and data["version"] != RECIPE_VERSION:
        raise RecipeError(
            f"unsupported recipe version {data['version']!r}",
            where=f"{path}:{lines.get(('version',), 1)}",
            key="version",
            expected=f"{RECIPE_VERSION}",
        )
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, model=Recipe, path=path, lines=lines, data=data) from None
    loaded = LoadedRecipe(recipe, path, lines)
    if validate_configs:
        validate_stages(loaded, plugins=plugins)
    return loaded


def validate_stages(loaded: LoadedRecipe, *, plugins: "Plugins | None" = None) -> None:
    """Phase 2: validate each stage's ``config`` with its strategy's ``Config`` model.

    Also checks that the data set name (for registered data sets) and the model source are
    known, so ``compressor validate`` catches them before any download.

    :raises RecipeError: for an unknown strategy (with the nearest name) or a bad config.
    """
    from .plugins import get_plugins

    plugins = plugins or get_plugins()
    recipe = loaded.recipe
    data_cfg = recipe.task.data
    if data_cfg.name is not None and data_cfg.name not in plugins.datasets:
        loc = ("task", "data", "name")
        raise RecipeError(
            f"unknown data set {data_cfg.name!r}",
            where=loaded.where(loc),
            key=_fmt_loc(loc),
            expected=f"one of {sorted(plugins.datasets)} (or use 'hub:' or 'files:')",
            hint=did_you_mean(data_cfg.name, plugins.datasets),
        )
    src = recipe.model.source
    if src != "auto" and src not in plugins.model_sources:
        loc = ("model", "source")
        raise RecipeError(
            f"unknown model source {src!r}",
            where=loaded.where(loc),
            key=_fmt_loc(loc),
            expected=f"'auto' or one of {sorted(plugins.model_sources)}",
            hint=did_you_mean(src, plugins.model_sources),
        )
    configs = []
    for i, stage in enumerate(recipe.stages):
        loc = ("stages", i, "strategy")
        if stage.strategy not in plugins.strategies:
            raise RecipeError(
                f"unknown strategy {stage.strategy!r}",
                where=loaded.where(loc),
                key=_fmt_loc(loc),
                expected=f"one of {sorted(plugins.strategies)}",
                hint=plugins.unknown_hint(stage.strategy, plugins.strategies)
                or "run 'compressor plugins' to list installed strategies",
            )
        cls = plugins.strategies[stage.strategy]
        if stage.input is not None:
            earlier_names = ["baseline", *(s.name for s in recipe.stages[:i])]
            if stage.input not in earlier_names:
                loc = ("stages", i, "input")
                raise RecipeError(
                    f"input {stage.input!r} is not an artifact made before stage {stage.name!r}",
                    where=loaded.where(loc),
                    key=_fmt_loc(loc),
                    expected=f"one of {earlier_names}",
                    hint=did_you_mean(stage.input, earlier_names),
                )
        if recipe.task.type not in cls.task_types:
            raise RecipeError(
                f"strategy {stage.strategy!r} does not support task type {recipe.task.type!r}",
                where=loaded.where(loc),
                key=_fmt_loc(loc),
                expected=f"a task type in {list(cls.task_types)}",
            )
        try:
            config = cls.Config.model_validate(stage.config)
        except ValidationError as exc:
            raise validation_error(
                exc,
                model=cls.Config,
                path=loaded.path,
                lines=loaded.lines,
                prefix=("stages", i, "config"),
            ) from None
        # A strategy that names a teacher must name an artifact made before it.
        teacher = getattr(config, "teacher", None)
        earlier = ["baseline", *(s.name for s in recipe.stages[:i])]
        if cls.needs_teacher and isinstance(teacher, str) and teacher not in earlier:
            loc = ("stages", i, "config", "teacher")
            raise RecipeError(
                f"teacher {teacher!r} is not an artifact made before stage {stage.name!r}",
                where=loaded.where(loc),
                key=_fmt_loc(loc),
                expected=f"one of {earlier}",
                hint=did_you_mean(teacher, earlier),
            )
        configs.append(config)
    loaded.stage_configs = configs
