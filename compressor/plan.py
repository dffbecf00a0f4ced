"""Checks of a recipe's stage plan that need no model, no data and no heavy library.

A recipe's stages form a chain of artifacts: each stage starts from the artifact its
``input`` key names (``baseline`` or an earlier stage), or from the previous stage's (the
baseline for the first stage), and makes one artifact in its strategy's ``produces``
format. :func:`check_plan` walks that chain with the strategies' class attributes only, so
``compressor validate`` and ``compressor run`` refuse, before any training:

- a stage whose strategy does not take the format its input is in (an ONNX-producing stage
  feeding a PyTorch-only strategy);
- a stage that trains (``needs_training_data``) on local files that give no train split;
- a recipe without stages that does not evaluate its model either.

The orchestrator (:mod:`compressor.pipeline`) resolves stage inputs with
:func:`stage_inputs` too, and runs the chain check again once the model is resolved, with
the format the model source really yielded.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CompressorError, RecipeError

if TYPE_CHECKING:  # pragma: no cover
    from .recipe import LoadedRecipe, StageConfig
    from .strategy import Strategy

#: The format of a model folder that is not a compressor artifact (``save_pretrained``).
DEFAULT_FORMAT = "pytorch"


def stage_inputs(stages: Sequence["StageConfig"]) -> list[str]:
    """The name of the artifact each stage starts from.

    :param stages: the recipe's stages, in order.
    :returns: one name per stage: its ``input`` when set, else the previous stage's name
        (``"baseline"`` for the first stage).
    """
    names: list[str] = []
    previous = "baseline"
    for stage in stages:
        names.append(stage.input if stage.input is not None else previous)
        previous = stage.name
    return names


def model_format(folder: str | Path) -> str:
    """The format of the model in ``folder``.

    :param folder: a model folder in Hugging Face layout.
    :returns: the ``format`` its ``lineage.json`` records when the folder is an artifact of
        an earlier run (``"onnx"``, ``"pytorch-dynamic-int8"``, ...), else ``"pytorch"``.
    """
    try:
        data = json.loads((Path(folder) / "lineage.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return DEFAULT_FORMAT
    fmt = data.get("format") if isinstance(data, dict) else None
    return fmt if isinstance(fmt, str) and fmt else DEFAULT_FORMAT


def local_model_format(loaded: "LoadedRecipe") -> str:
    """The format of the recipe's model when it names a local folder, without resolving it.

    :param loaded: the recipe.
    :returns: :func:`model_format` of the folder (relative to the recipe's folder, then to
        the working directory) when ``model.source`` is ``auto`` or ``local`` and the folder
        exists; ``"pytorch"`` otherwise (packaged names and hub ids).
    """
    import os

    model = loaded.recipe.model
    if model.source not in ("auto", "local"):
        return DEFAULT_FORMAT
    name = os.path.expanduser(model.name)
    for folder in (loaded.base_dir / name, Path(name)):
        try:
            if folder.is_dir():
                return model_format(folder)
        except (OSError, ValueError):  # a name too long, with a NUL, ... unusable as a path
            return DEFAULT_FORMAT
    return DEFAULT_FORMAT


def check_plan(
    loaded: "LoadedRecipe",
    strategies: Mapping[str, type["Strategy"]],
    *,
    baseline_format: str | None = None,
) -> None:
    """Check the recipe's stage chain before anything runs.

    :param loaded: a recipe whose strategies are all registered (phase 2 checked them).
    :param strategies: registered strategies, name -> class (``Plugins.strategies``).
    :param baseline_format: the format of the input model; default: guessed from the
        recipe (:func:`local_model_format`).
    :raises RecipeError: naming the file, line and key of the stage at fault, what was
        expected and what to do: nothing to evaluate, a format that does not chain, or a
        training stage without training data.
    """
    recipe = loaded.recipe
    if not recipe.stages and not recipe.evaluation.baseline:
        loc = ("evaluation", "baseline")
        raise RecipeError(
            "the recipe has no stages and does not evaluate its model: there is nothing to do",
            where=loaded.where(loc),
            key="evaluation.baseline",
            expected="true for a recipe without stages (it evaluates the model only)",
            hint="remove 'baseline: false', or add stages",
        )
    check_format_chain(
        loaded, strategies, baseline_format=baseline_format or local_model_format(loaded)
    )
    check_training_files(loaded, strategies)


def check_format_chain(
    loaded: "LoadedRecipe", strategies: Mapping[str, type["Strategy"]], *, baseline_format: str
) -> None:
    """Each stage's strategy must take the format its input artifact is in.

    The input's format is the ``produces`` of the strategy that made it (``baseline_format``
    for the baseline).

    :param loaded: the recipe.
    :param strategies: registered strategies, name -> class.
    :param baseline_format: the input model's format.
    :raises RecipeError: at ``stages[i].input`` when the stage names its input, else at
        ``stages[i].strategy``, with the formats the strategy takes, the stage that made the
        input, and the earlier artifacts it could start from instead.
    """
    recipe = loaded.recipe
    formats: dict[str, str] = {"baseline": baseline_format}
    made_by: dict[str, str] = {}
    for i, (stage, source) in enumerate(zip(recipe.stages, stage_inputs(recipe.stages))):
        cls = strategies[stage.strategy]
        have = formats[source]
        takes = tuple(cls.input_formats)
        if have not in takes:
            field = "input" if stage.input is not None else "strategy"
            loc = ("stages", i, field)
            origin = made_by.get(source)
            if origin is None:
                made = f"{source!r} is the input model, in {have!r} format"
            else:
                made = f"{source!r} is made by {origin}, which produces {have!r}"
            fits = [n for n, f in formats.items() if f in takes]
            if fits:
                hint = (
                    f"start this stage from an artifact it takes, e.g. 'input: {fits[-1]}' (it "
                    f"can take: {', '.join(fits)}), or reorder the stages so that export and "
                    "quantisation come last"
                )
            else:
                hint = "reorder the stages so that export and quantisation come last"
            raise RecipeError(
                f"strategy {stage.strategy!r} takes {list(takes)} models, but its input "
                f"{source!r} is a {have!r} model",
                where=loaded.where(loc),
                key=f"stages[{i}].{field}",
                expected=f"an input in {' or '.join(repr(t) for t in takes)} format; {made}",
                hint=hint,
            )
        formats[stage.name] = cls.produces
        made_by[stage.name] = f"stage {stage.name!r} ({stage.strategy})"


def training_stages(
    loaded: "LoadedRecipe", strategies: Mapping[str, type["Strategy"]]
) -> list[tuple[int, "StageConfig"]]:
    """The stages whose strategy trains on the task's ``train`` split.

    :param loaded: the recipe.
    :param strategies: registered strategies, name -> class.
    :returns: ``(index, stage)`` pairs (0-based index) whose strategy sets
        ``needs_training_data``.
    """
    return [
        (i, st)
        for i, st in enumerate(loaded.recipe.stages)
        if st.strategy in strategies and strategies[st.strategy].needs_training_data
    ]


def check_training_files(loaded: "LoadedRecipe", strategies: Mapping[str, type["Strategy"]]) -> None:
    """A stage that trains needs a train split; local files may give none.

    Only ``task.data.files`` can be checked without loading the data (registered and hub
    data sets always have a train split); the orchestrator checks the loaded data again.

    :param loaded: the recipe.
    :param strategies: registered strategies, name -> class.
    :raises RecipeError: at ``task.data.files`` naming the first training stage.
    """
    from .sources.datasets import file_splits

    files = loaded.recipe.task.data.files
    trainers = training_stages(loaded, strategies)
    if not files or not trainers:
        return
    try:
        splits = [s for s, _, _ in file_splits(files)]
    except CompressorError:  # a bad split name: the data loader reports it with its key
        return
    if "train" in splits:
        return
    raise missing_training_data(loaded, trainers[0][1], f"task.data.files gives only {', '.join(splits)}")


def missing_training_data(loaded: "LoadedRecipe", stage: "StageConfig", why: str) -> RecipeError:
    """The error for a training stage without training rows.

    :param loaded: the recipe.
    :param stage: the first stage that trains.
    :param why: what the data gives instead (``"task.data.files gives only test"``).
    :returns: a :class:`RecipeError` at ``task.data`` (``task.data.files`` when given).
    """
    loc: tuple[Any, ...] = ("task", "data", "files") if loaded.recipe.task.data.files else ("task", "data")
    return RecipeError(
        f"stage {stage.name!r} ({stage.strategy}) trains on the train split, but {why}",
        where=loaded.where(loc),
        key=".".join(str(p) for p in loc),
        expected="a train split: 'train: FILE' in task.data.files (validation and test are "
        "split off it when not given)",
        hint="add a train file, or leave out the stages that train to only evaluate the model",
    )
