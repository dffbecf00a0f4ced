"""Every hook a compressor plugin can implement.

Hooks come in two kinds:

- **registration hooks** (called once when the plugin manager loads): the hook receives a
  ``register`` callable and calls it once per thing it provides, as in simonw/llm. Names must
  be unique across all plugins; a duplicate is a :class:`compressor.errors.PluginError`.
- **observers** (called during a run): they may log, record or export, and return nothing.

A hook implementation may accept fewer arguments than its spec (pluggy's opt-in arguments), so
specs can grow without breaking plugins.

Plugins declare themselves in their ``pyproject.toml``::

    [project.entry-points.compressor]
    my_plugin = "my_package.plugin"

and implement hooks with :data:`compressor.hookimpl`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    from .artifact import Artifact
    from .evaluate.backends import Backend
    from .sources.datasets import DatasetSpec
    from .sources.models import ModelSource
    from .strategy import StageContext, Strategy

PROJECT = "compressor"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --- registration -------------------------------------------------------------------------


@hookspec
def compressor_register_strategies(register: Callable[["type[Strategy]"], None]) -> None:
    """Register strategy classes.

    Called once, when the plugin manager loads plugins.

    :param register: call ``register(StrategyClass)`` once per strategy. The class must
        subclass :class:`compressor.Strategy`, set a unique ``name`` and a ``Config`` model.

    Example::

        @hookimpl
        def compressor_register_strategies(register):
            register(SVDLowRank)
    """


@hookspec
def compressor_register_model_sources(register: Callable[["ModelSource"], None]) -> None:
    """Register model sources: where a recipe's ``model.name`` can be resolved to a folder.

    Called once, when the plugin manager loads plugins.

    :param register: call ``register(source)`` with an object implementing
        :class:`compressor.sources.models.ModelSource` (``name``, ``known_models()``,
        ``resolve(...)``). Built-in sources: ``packaged``, ``local``, ``hub``.

    Example::

        @hookimpl
        def compressor_register_model_sources(register):
            register(MyRegistrySource())
    """


@hookspec
def compressor_register_datasets(register: Callable[["DatasetSpec"], None]) -> None:
    """Register named data sets that a recipe can use as ``task.data.name``.

    Called once, when the plugin manager loads plugins.

    :param register: call ``register(DatasetSpec(...))``; see
        :class:`compressor.sources.datasets.DatasetSpec` for the loader contract (normalised
        ``text``/``text_pair``/``label`` columns).

    Example::

        @hookimpl
        def compressor_register_datasets(register):
            register(DatasetSpec(name="my-reviews", type="text-classification",
                                 label_names=["neg", "pos"], load=load_my_reviews))
    """


@hookspec
def compressor_register_backends(register: Callable[["type[Backend]"], None]) -> None:
    """Register evaluation backends for artifact formats the core does not know.

    Called once, when the plugin manager loads plugins. The core ships backends for the
    formats ``"pytorch"`` (:class:`~compressor.evaluate.backends.PyTorchBackend`) and
    ``"onnx"`` (:class:`~compressor.evaluate.backends.OnnxRuntimeBackend`). A strategy that
    writes a model the core cannot load (a PyTorch model quantised in place, a model in
    another runtime's format) declares its own ``produces`` format and registers the
    backend that loads and runs it, so the shared evaluator measures it like any other.

    :param register: call ``register(BackendClass)`` once per backend. The class must
        subclass :class:`compressor.evaluate.backends.Backend` and list in its ``formats``
        class attribute the artifact formats it loads; a format already handled (by the
        core or another plugin) is a :class:`compressor.errors.PluginError`. Keep the module
        that defines the class cheap to import (torch and other heavy libraries imported
        inside ``load``).

    Example::

        @hookimpl
        def compressor_register_backends(register):
            register(DynamicInt8Backend)   # formats = ("pytorch-dynamic-int8",)
    """


@hookspec
def compressor_register_architectures(register: Callable[[Any], None]) -> None:
    """Register architecture adapters: how compression methods find the parts of an encoder.

    Called once, when the plugin manager loads plugins. An adapter maps a model family
    (matched by ``config.model_type``) onto the roles that distillation and pruning need: the
    layer stack, the query/key/value projections (fused or separate), the attention output,
    the FFN's input and output projections, heads and head size, and the config changes that
    removing layers, heads or neurons implies. The core's adapters register the same way
    (:mod:`compressor.architectures.builtin`).

    :param register: call ``register(adapter)`` once per adapter; see
        :class:`compressor.architectures.ArchitectureAdapter`. A model type claimed twice is
        a :class:`compressor.errors.PluginError`.

    Example::

        @hookimpl
        def compressor_register_architectures(register):
            register(MyEncoderAdapter())   # model_types = ("my-encoder",)
    """


@hookspec
def compressor_register_tasks(register: Callable[[Any], None]) -> None:
    """Register task types a recipe can name as ``task.type``.

    Called once, when the plugin manager loads plugins. A task owns what differs between
    encoder tasks: its data columns and their checks, the model head, tokenisation for
    training, the training and soft-target (distillation) losses, and the evaluation metrics.
    The core's tasks (``text-classification``, ``text-regression``, ``sentence-embedding``,
    ``token-classification``, ``question-answering``, ``masked-lm``) register the same way
    (:mod:`compressor.tasks.builtin`).

    :param register: call ``register(task)`` once per task; see
        :class:`compressor.tasks.Task`. A name registered twice is a
        :class:`compressor.errors.PluginError`.
    """


# --- observers ----------------------------------------------------------------------------


@hookspec
def compressor_run_start(run_dir: Any, recipe: Any) -> None:
    """Called after model and data are resolved, before the first stage runs.

    :param run_dir: :class:`pathlib.Path` of the run directory.
    :param recipe: the validated :class:`compressor.recipe.Recipe`.
    """


@hookspec
def compressor_run_end(run_dir: Any, results: list[dict[str, Any]], error: BaseException | None) -> None:
    """Called once when a run ends, successfully or not.

    :param run_dir: :class:`pathlib.Path` of the run directory.
    :param results: evaluation records written so far (one dict per model and setting).
    :param error: the exception that ended the run, or ``None`` on success.
    """


@hookspec
def compressor_stage_start(stage: str, strategy: str, context: "StageContext") -> None:
    """Called before a stage's strategy runs.

    :param stage: the stage's name.
    :param strategy: the strategy's registered name.
    :param context: the :class:`compressor.StageContext` the strategy will receive.
    """


@hookspec
def compressor_stage_end(
    stage: str, strategy: str, artifact: "Artifact | None", error: BaseException | None
) -> None:
    """Called after a stage's strategy returned or raised.

    :param stage: the stage's name.
    :param strategy: the strategy's registered name.
    :param artifact: the produced :class:`compressor.Artifact`, or ``None`` if it failed.
    :param error: the exception raised, or ``None`` on success.
    """
