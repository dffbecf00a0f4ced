"""The search space: its checks against the recipe's stages, and one trial's recipe.

:func:`check_search` runs in ``compressor validate`` (phase 2, once the strategies are
known); :func:`sample` draws one point through an Optuna trial; :func:`trial_recipe` turns
a point into the plain recipe data a trial runs.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ..errors import RecipeError
from ..suggest import did_you_mean

if TYPE_CHECKING:  # pragma: no cover
    from ..plugins import Plugins
    from ..recipe import LoadedRecipe
    from ..search import Param, SearchConfig

#: Most optional stages a space may hold (every subset of them is checked as a chain).
MAX_OPTIONAL_STAGES = 8


def split_key(key: str, stage_names: list[str]) -> tuple[str | None, str | None]:
    """``"<stage>.<field>"`` -> ``(stage, field)``; ``"<stage>"`` -> ``(stage, None)``.

    Stage names may hold dots, so the longest stage name that prefixes the key wins.

    :returns: ``(None, None)`` when no stage name fits.
    """
    best: tuple[str | None, str | None] = (None, None)
    for name in stage_names:
        if key == name:
            return name, None
        if key.startswith(name + ".") and (best[0] is None or len(name) > len(best[0])):
            best = (name, key[len(name) + 1:])
    return best


def _is_primitive(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def sample(trial: Any, search: SearchConfig) -> dict[str, Any]:
    """Draw one point of the space through an Optuna trial.

    :param trial: an ``optuna.Trial`` (from ``study.ask()``).
    :param search: the search block.
    :returns: space key -> value (``True``/``False`` for an optional stage: kept or left out).
        Choices that are not plain scalars (lists, mappings) go through Optuna as their JSON
        text and come back decoded.
    """
    point: dict[str, Any] = {}
    for key, param in search.space.items():
        point[key] = suggest(trial, key, param)
    return point


def suggest(trial: Any, key: str, param: Param) -> Any:
    """One dimension through Optuna's ``suggest_*`` API (see :func:`sample`)."""
    if param.optional:
        return trial.suggest_categorical(key, [True, False])
    if param.choices is not None:
        if all(_is_primitive(c) for c in param.choices):
            return trial.suggest_categorical(key, list(param.choices))
        return json.loads(trial.suggest_categorical(key, [json.dumps(c, sort_keys=True) for c in param.choices]))
    if param.is_int:
        return trial.suggest_int(key, int(param.low), int(param.high), step=int(param.step or 1))
    value = trial.suggest_float(key, param.low, param.high, step=param.step, log=param.log)
    return round(value, 10)  # 0.30000000000000004 (low + 2 steps) -> 0.3


def effective_point(search: SearchConfig, point: Mapping[str, Any], stage_names: list[str]) -> dict[str, Any]:
    """The values that shape the trial's model: ``point`` without the settings of optional
    stages it leaves out (two points that differ only there make the same model)."""
    left_out = {split_key(k, stage_names)[0] for k, v in point.items() if search.space[k].optional and v is False}
    return {
        k: v for k, v in point.items()
        if search.space[k].optional or split_key(k, stage_names)[0] not in left_out
    }


def grid_space(search: SearchConfig) -> dict[str, list[Any]]:
    """The grid sampler's search space: every value of every dimension (JSON text for
    choices that are not plain scalars, as :func:`suggest` passes them)."""
    space: dict[str, list[Any]] = {}
    for key, param in search.space.items():
        values = param.grid()
        if param.choices is not None and not all(_is_primitive(c) for c in param.choices):
            values = [json.dumps(c, sort_keys=True) for c in values]
        space[key] = values
    return space


def trial_recipe(data: dict[str, Any], search: SearchConfig, point: Mapping[str, Any], *, name: str) -> dict[str, Any]:
    """The recipe one trial runs: the recipe's data with the point's values set and the
    left-out optional stages removed.

    A stage after a left-out one starts from the left-out stage's input (its ``input`` key,
    else the stage before it), so ``teacher -> heads (left out) -> int8`` runs
    ``teacher -> int8``. The ``search`` block is dropped.

    :param data: the recipe as plain data (``Recipe.model_dump(mode="json", exclude_unset=True)``).
    :param search: the search block.
    :param point: space key -> value (:func:`sample`).
    :param name: the trial recipe's ``name``.
    :returns: new plain recipe data (``data`` is not changed).
    """
    out = json.loads(json.dumps(data))
    out.pop("search", None)
    out["name"] = name
    stages = out.get("stages", [])
    names = [s["name"] for s in stages]
    for key, value in point.items():
        stage, field = split_key(key, names)
        if stage is None or field is None:
            continue
        target = next(s for s in stages if s["name"] == stage)
        target.setdefault("config", {})[field] = value
    left_out = {split_key(k, names)[0] for k, v in point.items() if search.space[k].optional and v is False}
    kept: list[dict[str, Any]] = []
    renamed: dict[str, str] = {}  # a left-out stage -> the artifact that stands in for it
    previous = "baseline"
    for stage in stages:
        source = stage.get("input") or previous
        source = renamed.get(source, source)
        if stage["name"] in left_out:
            renamed[stage["name"]] = source
        else:
            if stage.get("input") is not None or source != (kept[-1]["name"] if kept else "baseline"):
                stage["input"] = source
            kept.append(stage)
        previous = stage["name"]
    out["stages"] = kept
    return out


def _fail(loaded: LoadedRecipe, loc: tuple, message: str, expected: str, hint: str | None = None) -> RecipeError:
    return RecipeError(
        message,
        where=loaded.where(loc),
        key=".".join(str(p) for p in loc),
        expected=expected,
        hint=hint,
    )


def _check_value(loaded: LoadedRecipe, cls: type, stage: Any, field: str, value: Any, loc: tuple) -> None:
    try:
        cls.Config.model_validate({**stage.config, field: value})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise _fail(
            loaded, loc,
            f"{value!r} is not a valid {field!r} for stage {stage.name!r} ({stage.strategy}): {first['msg']}",
            f"values the strategy's config accepts (see 'compressor schema' for {stage.strategy})",
        ) from None


def ancestors(name: str, stages: list[Any], configs: list[Any]) -> set[str]:
    """The stage names an artifact depends on (its inputs and teachers, transitively),
    itself included; ``"baseline"`` is never listed."""
    from ..plan import stage_inputs

    inputs = dict(zip((s.name for s in stages), stage_inputs(stages)))
    teachers = {s.name: getattr(c, "teacher", None) for s, c in zip(stages, configs)}
    seen: set[str] = set()
    todo = [name]
    while todo:
        n = todo.pop()
        if n == "baseline" or n in seen or n not in inputs:
            continue
        seen.add(n)
        todo.append(inputs[n])
        if isinstance(teachers.get(n), str):
            todo.append(teachers[n])
    return seen


def check_search(loaded: LoadedRecipe, plugins: Plugins) -> None:
    """Check the search block against the recipe (``compressor validate``, phase 2).

    :raises RecipeError: at the search block's file:line for a space key that names no
        stage or no config field, a value the strategy's config refuses, an optional field
        that is not a stage, a reference or candidate that is not a stage (or that the
        space changes), a stage that distils from an optional one, a selection split equal
        to the evaluated (test) split, or a chain that cannot run once optional stages are
        left out.
    """
    from ..plan import check_plan

    recipe = loaded.recipe
    search = recipe.search
    if search is None:
        return
    stages = recipe.stages
    names = [s.name for s in stages]
    by_name = {s.name: (s, c) for s, c in zip(stages, loaded.stage_configs)}
    optional: list[str] = []
    searched: set[str] = set()
    for key, param in search.space.items():
        loc = ("search", "space", key)
        stage_name, field = split_key(key, names)
        if stage_name is None:
            raise _fail(
                loaded, loc, f"space key {key!r} names no stage of the recipe",
                f"'<stage>.<field>' or '<stage>' with a stage in {names}",
                did_you_mean(key.split(".")[0], names),
            )
        stage, _ = by_name[stage_name]
        cls = plugins.strategies[stage.strategy]
        searched.add(stage_name)
        if field is None:
            if not param.optional:
                raise _fail(
                    loaded, loc, f"space key {key!r} is a stage: only 'optional: true' applies to it",
                    f"'{key}.<field>' for one of its settings, or {{optional: true}}",
                )
            optional.append(stage_name)
            continue
        if param.optional:
            raise _fail(loaded, loc, f"'optional' applies to a whole stage, not to the field {key!r}",
                        f"'{stage_name}: {{optional: true}}'")
        fields = list(cls.Config.model_fields)
        if field not in fields:
            raise _fail(
                loaded, loc, f"{field!r} is not a setting of stage {stage_name!r} ({stage.strategy})",
                f"one of {fields}", did_you_mean(field, fields),
            )
        values = list(param.choices) if param.choices is not None else param.grid() if param.step else [param.low, param.high]
        for value in values:
            _check_value(loaded, cls, stage, field, value, loc)
    if len(optional) > MAX_OPTIONAL_STAGES:
        raise _fail(loaded, ("search", "space"), f"{len(optional)} optional stages",
                    f"at most {MAX_OPTIONAL_STAGES}")
    reference = search.constraint.reference
    if reference != "baseline":
        if reference not in names:
            raise _fail(loaded, ("search", "constraint", "reference"),
                        f"reference {reference!r} is not a stage of the recipe",
                        f"'baseline' or one of {names}", did_you_mean(reference, names))
        changed = sorted(ancestors(reference, stages, loaded.stage_configs) & searched)
        if changed:
            raise _fail(
                loaded, ("search", "constraint", "reference"),
                f"the reference {reference!r} would change between trials: it depends on {changed}, "
                "which the space changes",
                "a reference made only by stages outside the space",
                "compare with a stage before the searched ones (the fine-tuned teacher, for example)",
            )
    if search.candidate is not None:
        if search.candidate not in names:
            raise _fail(loaded, ("search", "candidate"), f"candidate {search.candidate!r} is not a stage",
                        f"one of {names}", did_you_mean(search.candidate, names))
        if search.candidate in optional:
            raise _fail(loaded, ("search", "candidate"), f"the candidate {search.candidate!r} is optional",
                        "a stage every trial runs")
    if search.selection_split == recipe.evaluation.accuracy_split:
        raise _fail(
            loaded, ("search", "selection_split"),
            f"the selection split and the evaluated split are both {search.selection_split!r}: "
            "a model chosen on the split that scores it gets an optimistic score",
            f"a split other than {recipe.evaluation.accuracy_split!r} (validation)",
        )
    for s, c in zip(stages, loaded.stage_configs):
        teacher = getattr(c, "teacher", None)
        if isinstance(teacher, str) and teacher in optional:
            raise _fail(
                loaded, ("search", "space", teacher),
                f"stage {s.name!r} distils from {teacher!r}, which the space may leave out",
                "optional stages that no other stage names as its teacher",
            )
    for i, point in enumerate(search.enqueue):
        for key, value in point.items():
            param = search.space[key]
            fits = (
                value in (True, False) if param.optional
                else value in param.choices if param.choices is not None
                else isinstance(value, (int, float)) and not isinstance(value, bool) and param.low <= value <= param.high
            )
            if not fits:
                raise _fail(loaded, ("search", "enqueue", i, key), f"{value!r} is not in the space of {key!r}",
                            "a value the space holds (one of its choices, or within low..high)")
    _check_variants(loaded, plugins, optional, check_plan)


def _check_variants(loaded: LoadedRecipe, plugins: Plugins, optional: list[str], check_plan: Any) -> None:
    """Every subset of left-out optional stages must still chain (formats, roles)."""
    from ..recipe import LoadedRecipe, Recipe

    search = loaded.recipe.search
    data = loaded.recipe.model_dump(mode="json", exclude_unset=True)
    for count in range(1, len(optional) + 1):
        for left_out in itertools.combinations(optional, count):
            point = {k: (split_key(k, [s.name for s in loaded.recipe.stages])[0] not in left_out)
                     for k, p in search.space.items() if p.optional}
            variant = trial_recipe(data, search, point, name=loaded.recipe.name)
            recipe = Recipe.model_validate(variant)
            trial = LoadedRecipe(recipe, loaded.path, loaded.lines)
            keep = {s.name for s in recipe.stages}
            trial.stage_configs = [c for s, c in zip(loaded.recipe.stages, loaded.stage_configs) if s.name in keep]
            try:
                check_plan(trial, plugins.strategies, adapters=plugins.architectures)
            except RecipeError as exc:
                raise _fail(
                    loaded, ("search", "space", left_out[0]),
                    f"with {list(left_out)} left out the stages cannot run: {exc.message}",
                    "optional stages whose removal leaves a chain that runs",
                ) from None
