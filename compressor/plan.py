"""Checks of a recipe's stage plan that need no model, no data and no heavy library.

A recipe's stages form a chain of artifacts: each stage starts from the artifact its
``input`` key names (``baseline`` or an earlier stage), or from the previous stage's (the
baseline for the first stage), and makes one artifact in its strategy's ``produces``
format. :func:`check_plan` walks that chain with the strategies' class attributes only, so
``compressor validate`` and ``compressor run`` refuse, before any training:

- a stage whose strategy does not take the format its input is in (an ONNX-producing stage
  feeding a PyTorch-only strategy);
- a stage that trains (``needs_training_data``) on local files that give no train split;
- a recipe without stages that does not evaluate its model either;
- a stage whose strategy needs an architecture role (``Strategy.requires_roles``: layers,
  heads, FFN neurons, Linear weights, ONNX export) that the model's architecture adapter
  refuses (:func:`check_architectures`; for a model type no adapter claims, the fallback
  adapter is asked on the model built on the meta device), and a model that is not an
  encoder (a decoder or an encoder-decoder, by transformers' auto classes), read from the model's
  ``config.json`` where it is on disk without downloading anything (a local folder, an extracted packaged model, the
  hub cache); the run checks again once the model is resolved.

The orchestrator (:mod:`compressor.pipeline`) resolves stage inputs with
:func:`stage_inputs` too, and runs the chain check again once the model is resolved, with
the format the model source really yielded.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .artifact import DEFAULT_FORMAT
from .errors import CompressorError, RecipeError

if TYPE_CHECKING:  # pragma: no cover
    from .recipe import LoadedRecipe, StageConfig
    from .strategy import Strategy


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
    adapters: Mapping[str, Any] | None = None,
) -> None:
    """Check the recipe's stage chain before anything runs.

    :param loaded: a recipe whose strategies are all registered (phase 2 checked them).
    :param strategies: registered strategies, name -> class (``Plugins.strategies``).
    :param baseline_format: the format of the input model; default: guessed from the
        recipe (:func:`local_model_format`).
    :param adapters: ``model_type`` -> architecture adapter (``Plugins.architectures``);
        default: the adapters in use (:func:`compressor.architectures.adapter_for`).
    :raises RecipeError: naming the file, line and key of the stage at fault, what was
        expected and what to do: nothing to evaluate, a format that does not chain, a
        training stage without training data, or a method the model's architecture refuses.
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
    check_architectures(loaded, strategies, config=local_model_config(loaded), adapters=adapters)


def read_model_config(folder: str | Path) -> dict[str, Any] | None:
    """The ``config.json`` of a model folder as a dict, or ``None`` when it has none (or it
    does not parse). No weights are read and no library is imported."""
    try:
        data = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def local_model_config(loaded: "LoadedRecipe") -> dict[str, Any] | None:
    """The recipe's model's ``config.json`` where it is on disk, without downloading.

    :param loaded: the recipe.
    :returns: the parsed config of a local folder (relative to the recipe's folder, then to
        the working directory), of a packaged model already extracted in the cache, or of a
        hub model in huggingface_hub's cache; ``None`` when none is on disk.
    """
    import os

    from .sources.packaged import cache_root

    model = loaded.recipe.model
    name = os.path.expanduser(model.name)
    if model.source in ("auto", "local"):
        for folder in (loaded.base_dir / name, Path(name)):
            try:
                if folder.is_dir():
                    return read_model_config(folder)
            except (OSError, ValueError):
                return None
    if model.source in ("auto", "packaged"):
        root = cache_root() / "models" / name.strip().lower()
        found = read_model_config(root)
        if found is None and root.is_dir():
            for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.endswith("_Pooling")):
                found = read_model_config(sub)
                if found is not None:
                    break
        if found is not None or model.source == "packaged":
            return found
    if model.source in ("auto", "hub") and "/" in name or model.source == "hub":
        try:
            from huggingface_hub import try_to_load_from_cache

            hit = try_to_load_from_cache(model.name, "config.json", revision=model.revision)
        except Exception:  # noqa: BLE001 - an id the hub library rejects: the source reports it
            return None
        if isinstance(hit, str):
            return read_model_config(Path(hit).parent)
    return None


def check_architectures(
    loaded: "LoadedRecipe",
    strategies: Mapping[str, type["Strategy"]],
    *,
    config: Mapping[str, Any] | None,
    adapters: Mapping[str, Any] | None = None,
) -> None:
    """Each stage's strategy must need only roles the model's architecture supports.

    A strategy lists the roles it needs in ``requires_roles`` (``"heads"``, ``"ffn"``,
    ``"layers"``, ``"weights"``, ``"onnx"``); the adapter registered for the model's
    ``config.model_type`` says which it refuses and why. For a model type no adapter
    claims, the name-matching fallback is asked on the model itself, built from the config
    on the meta device (:func:`compressor.architectures.probe_roles`): a role whose modules
    it does not find (no query/key/value Linear, no single layer list, a head sized by the
    depth) is refused here, before any training. Before that, a recipe with stages whose
    model type no adapter claims is refused when transformers' auto classes say it is not
    an encoder (a decoder, an encoder-decoder), when its config says so
    (``is_decoder``, ``is_encoder_decoder``), or when no recipe can run it
    (:func:`compressor.architectures.model_refusal`). Every stage's model has the baseline's
    architecture (strategies change shapes, not the family), so the baseline's config
    decides for all of them.

    :param loaded: the recipe.
    :param strategies: registered strategies, name -> class.
    :param config: the model's ``config.json`` as a dict; ``None`` (not on disk yet): nothing
        is checked.
    :param adapters: ``model_type`` -> adapter; default: the adapters in use
        (:func:`compressor.architectures.adapter_for`).
    :raises RecipeError: at ``model.name`` for a model that is not an encoder (with the
        reason); at ``stages[i].strategy`` with the role, the architecture and the
        adapter's reason.
    """
    if not config or not isinstance(config.get("model_type"), str):
        return
    from types import SimpleNamespace

    from .architectures import ROLES, adapter_for, is_registered, model_refusal

    if loaded.recipe.stages:
        # a registered adapter claims encoders only (its config may still say is_decoder);
        # any other type may be a decoder, an encoder-decoder, or an encoder no recipe can
        # run (transformers' auto classes say)
        why = model_refusal(config, known_encoder=is_registered(config["model_type"], adapters))
        if why:
            stage = loaded.recipe.stages[0]
            raise RecipeError(
                f"{loaded.recipe.model.name!r} (model_type {config['model_type']!r}) cannot be "
                f"compressed: {why}",
                where=loaded.where(("model", "name")),
                key="model.name",
                expected=f"an encoder model (stage {stage.name!r} and every other stage start from it)",
                hint="docs/architectures.md lists the supported encoders and why the others are refused",
            )
    needed = {
        role
        for stage in loaded.recipe.stages
        for role in tuple(getattr(strategies.get(stage.strategy), "requires_roles", ()) or ())
    }
    refused = architecture_refusals(config, needed, adapters)
    if not refused:
        return
    adapter = adapter_for(SimpleNamespace(**config), adapters)
    family = getattr(adapter, "family", "") or config["model_type"]
    for i, stage in enumerate(loaded.recipe.stages):
        cls = strategies.get(stage.strategy)
        for role in tuple(getattr(cls, "requires_roles", ()) or ()):
            if role in refused:
                loc = ("stages", i, "strategy")
                raise RecipeError(
                    f"strategy {stage.strategy!r} cannot run on this {family} model "
                    f"(model_type {config['model_type']!r}): it needs {role!r} ("
                    f"{ROLES.get(role, role)}), which the architecture does not support: {refused[role]}",
                    where=loaded.where(loc),
                    key=f"stages[{i}].strategy",
                    expected=f"a strategy this architecture supports (it refuses: {', '.join(sorted(refused))})",
                    hint="docs/architectures.md lists what each architecture supports",
                )


def architecture_refusals(
    config: Mapping[str, Any], roles: Any, adapters: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """The roles validation refuses for the model ``config`` describes, with the reason.

    What :func:`check_architectures` asks (and docs/architectures.md's table shows): the
    adapter's refusals from the config; for a model type no adapter claims, also each of
    ``roles`` the name-matching fallback does not find on the model built on the meta device
    (:func:`compressor.architectures.probe_roles`).

    :param config: the model's ``config.json`` as a dict (with ``model_type``).
    :param roles: the roles the recipe's stages need (only these are probed).
    :param adapters: ``model_type`` -> adapter; default: the adapters in use.
    :returns: role -> reason (the adapter's refusals of every role, plus probed failures).
    """
    from types import SimpleNamespace

    from .architectures import adapter_for, is_registered, probe_roles

    cfg = SimpleNamespace(**config)
    refused = dict(adapter_for(cfg, adapters).refusals(cfg))
    needed = set(roles) - set(refused)
    if needed and not is_registered(str(config.get("model_type")), adapters):
        # no adapter claims this model type: the name-matching fallback can only tell by
        # looking at the modules, so build the model on the meta device and ask it
        refused.update(probe_roles(config, needed, adapters))
    return refused


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
    from .strategy import ChainInput

    recipe = loaded.recipe
    formats: dict[str, str] = {"baseline": baseline_format}
    made_by: dict[str, str] = {}
    chain: dict[str, ChainInput] = {"baseline": ChainInput("baseline", baseline_format)}
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
        given = chain[source]
        config = stage_config(loaded, i, cls)
        if config is not None:  # an invalid config is reported by the config check, with its line
            check_teacher_format(loaded, i, cls, config, chain)
            check_chain_refusal(loaded, i, cls, config, given)
        formats[stage.name] = cls.produces
        made_by[stage.name] = f"stage {stage.name!r} ({stage.strategy})"
        chain[stage.name] = ChainInput(
            stage.name, cls.produces, (*given.made_by, stage.strategy), given.quantized or cls.quantizes
        )


def stage_config(loaded: "LoadedRecipe", i: int, cls: type["Strategy"]) -> Any:
    """Stage ``i``'s validated config: the one recipe loading made (``stage_configs``), else
    validated here; ``None`` when it does not validate."""
    from pydantic import ValidationError

    if i < len(loaded.stage_configs):
        return loaded.stage_configs[i]
    try:
        return cls.Config.model_validate(loaded.recipe.stages[i].config)
    except ValidationError:
        return None


def check_teacher_format(
    loaded: "LoadedRecipe", i: int, cls: type["Strategy"], config: Any, chain: Mapping[str, Any]
) -> None:
    """A stage that names a teacher (``needs_teacher`` and a ``str`` config field
    ``teacher``) loads it as it loads its input: the teacher's format must be one of the
    strategy's ``input_formats``.

    :raises RecipeError: at ``stages[i].config.teacher``.
    """
    if not cls.needs_teacher:
        return
    stage = loaded.recipe.stages[i]
    teacher = getattr(config, "teacher", None)
    given = chain.get(teacher) if isinstance(teacher, str) else None
    if given is None or given.format in cls.input_formats:
        return
    loc = ("stages", i, "config", "teacher")
    raise RecipeError(
        f"teacher {teacher!r} of stage {stage.name!r} is a {given.format!r} model; "
        f"{stage.strategy} loads its teacher as it loads its input",
        where=loaded.where(loc),
        key=f"stages[{i}].config.teacher",
        expected=f"a teacher in {' or '.join(repr(f) for f in cls.input_formats)} format",
        hint="name the stage's float PyTorch parent as teacher (before export and quantisation)",
    )


def check_chain_refusal(loaded: "LoadedRecipe", i: int, cls: type["Strategy"], config: Any, given: Any) -> None:
    """Stage ``i``'s :meth:`~compressor.Strategy.chain_refusal` of its input, as a recipe
    error.

    :raises RecipeError: at ``stages[i].strategy`` with the strategy's reason and how the
        input was made.
    """
    stage = loaded.recipe.stages[i]
    reason = cls.chain_refusal(config, given)
    if reason is None:
        return
    made = (f"made by {' -> '.join(given.made_by)}" if given.made_by else "the input model")
    raise RecipeError(
        f"stage {stage.name!r} ({stage.strategy}) cannot run on its input {given.name!r}: {reason}",
        where=loaded.where(("stages", i, "strategy")),
        key=f"stages[{i}].strategy",
        expected=f"an input {stage.strategy} takes; {given.name!r} is a {given.format!r} model {made}",
        hint="reorder the stages, or start this stage from another artifact with 'input:'",
    )


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
