"""The strategy interface every compression method implements, and the context it runs in.

A strategy is a class with a ``name`` (``"distill.distilbert"``), a pydantic ``Config`` model
(``extra="forbid"``), capability flags, and one :meth:`Strategy.apply`. Configuration is data
(the validated ``Config`` instance); run state lives in :class:`StageContext`.

Plugins register strategy classes through the ``compressor_register_strategies`` hook::

    from compressor import Strategy, StrategyConfig, hookimpl

    class MyConfig(StrategyConfig):
        rank: int = Field(64, ge=1, description="Rank kept in each Linear layer.")

    class LowRank(Strategy):
        name = "lowrank.svd"
        Config = MyConfig
        def apply(self, artifact, config, context):
            ...
            return context.new_artifact(...)

    @hookimpl
    def compressor_register_strategies(register):
        register(LowRank)
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from pydantic import BaseModel, ConfigDict

from .artifact import DEFAULT_FORMAT, Artifact, Lineage, ModelFormat

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedTokenizerBase

    from .errors import CompressorError, StageError
    from .plugins import Plugins
    from .task import TaskData


@dataclass(frozen=True)
class ChainInput:
    """What recipe validation knows of a stage's input before anything runs
    (:meth:`Strategy.chain_refusal`).

    :param name: the input artifact's name (``"baseline"`` or an earlier stage's name).
    :param format: its format: the ``produces`` of the strategy that made it, or the
        recipe's model's format for the baseline.
    :param made_by: the strategies that made it, oldest first (empty for the baseline).
    :param quantized: one of those strategies quantises (:attr:`Strategy.quantizes`).
    """

    name: str
    format: ModelFormat
    made_by: tuple[str, ...] = ()
    quantized: bool = False


class StrategyConfig(BaseModel):
    """Base class for strategy configs: unknown keys are errors, values are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Strategy:
    """Base class of a compression (or glue) strategy.

    Class attributes a subclass sets (types and defaults as declared below):

    :cvar name: unique registered name, ``family.method`` (e.g. ``"quantize.dynamic-int8"``).
    :cvar Config: the pydantic model validating the stage's ``config`` mapping.
    :cvar description: one line shown by ``compressor plugins``.
    :cvar needs_training_data: the stage trains on the task's ``train`` split. Recipe
        validation refuses ``task.data.files`` without a ``train`` file, and the run refuses
        data with no training rows, before any stage runs (``RecipeError``, exit status 2).
    :cvar needs_calibration_data: the stage reads calibration examples. Informational: shown
        in the recipe reference and ``compressor schema``; not enforced.
    :cvar needs_teacher: the stage uses a teacher model (see ``StageContext.artifact``). When
        set and the config has a ``str`` field ``teacher``, recipe validation checks that it
        names ``baseline`` or an earlier stage (a ``RecipeError`` otherwise).
    :cvar input_formats: artifact formats ``apply`` accepts (open strings: ``"pytorch"``,
        ``"onnx"``, or a plugin's own format such as ``"pytorch-dynamic-int8"``). Recipe
        validation follows the stage chain (each stage's input is in the ``produces`` format
        of the stage that made it) and refuses a stage whose input format is not listed; the
        run checks the real input artifact's format again before ``apply`` (``StageError``).
    :cvar produces: artifact format ``apply`` returns (pass it as
        ``context.new_artifact(..., format=...)``); the chain check above relies on it and the
        conformance kit checks the returned artifact agrees. A format other than
        ``"pytorch"`` and ``"onnx"`` needs an evaluation backend registered through
        ``compressor_register_backends``.
    :cvar task_types: task types (``TaskData.type``) the strategy supports; ``("*",)``
        accepts every registered task. Recipe validation refuses a stage whose task type is
        not listed (``RecipeError``), with :meth:`task_refusal`'s reason.
    :cvar needs_labels: the stage trains from the task's labels (a task head's loss):
        :meth:`task_refusal` refuses a task without them (:attr:`compressor.tasks.Task.
        supervised` false: ``sentence-embedding``, ``masked-lm``) with that reason.
    :cvar requires_roles: architecture roles the strategy needs (keys of
        :data:`compressor.architectures.ROLES`: ``"layers"``, ``"heads"``, ``"ffn"``,
        ``"weights"``, ``"onnx"``). Recipe validation and the run, before any stage, read the
        model's ``config.json`` and refuse the stage when its architecture adapter refuses
        one of them (``RecipeError`` with the adapter's reason).
    :cvar quantizes: the artifact ``apply`` returns holds quantised weights (int8, or a
        half-precision cast): :class:`ChainInput` tells later stages so, and a quantiser
        refuses such an input at validation time (:meth:`chain_refusal`).
    :cvar trains: the stage trains data-parallel through transformers' Trainer: under a
        launcher (``accelerate launch``, ``torchrun``) every process runs ``apply`` and
        rank 0's ``output_dir`` is the one kept; ``False``: ``apply`` runs on rank 0 alone
        while the other processes wait. ``None`` (default): ``True`` when ``Config``
        extends :class:`compressor.training.TrainingConfig`.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type[StrategyConfig]] = StrategyConfig
    description: ClassVar[str] = ""
    needs_training_data: ClassVar[bool] = False
    needs_calibration_data: ClassVar[bool] = False
    needs_teacher: ClassVar[bool] = False
    input_formats: ClassVar[tuple[ModelFormat, ...]] = (DEFAULT_FORMAT,)
    produces: ClassVar[ModelFormat] = DEFAULT_FORMAT
    task_types: ClassVar[tuple[str, ...]] = ("text-classification",)
    needs_labels: ClassVar[bool] = False
    requires_roles: ClassVar[tuple[str, ...]] = ()
    trains: ClassVar[bool | None] = None
    quantizes: ClassVar[bool] = False

    @classmethod
    def chain_refusal(cls, config: Any, given: "ChainInput") -> str | None:
        """Why this stage cannot take the input the recipe's chain gives it, or ``None``.

        Recipe validation (``compressor validate``, and the run before any stage) calls it
        for every stage after the format check (:attr:`input_formats`), so that a chain that
        cannot work is refused before any training, never mid-run. Override it for what
        depends on the config and on how the input was made (e.g. a quantiser refusing an
        already quantised input, or a setting that only applies to one input format).

        :param config: the stage's validated ``Config`` instance.
        :param given: what is known of the input before anything runs.
        :returns: the reason, phrased to follow "this stage cannot run: ", or ``None``.
        """
        return None

    @classmethod
    def supports_task(cls, task_type: str) -> bool:
        """Whether the strategy accepts a run of ``task_type``: :meth:`task_refusal` gives no
        reason to refuse it."""
        return cls.task_refusal(task_type) is None

    @classmethod
    def task_refusal(cls, task_type: str) -> str | None:
        """Why the strategy refuses a run of ``task_type`` (what ``compressor validate``
        prints), or ``None`` when it accepts it: a type not in :attr:`task_types`, an unknown
        type, or, with :attr:`needs_labels`, a task without labels. Override to add reasons
        of the strategy's own, returning ``super().task_refusal(task_type)`` otherwise.

        The task is looked up with :func:`compressor.tasks.get_task` (no registry: the tasks
        of the open :meth:`compressor.plugins.Plugins.scope`, which recipe validation opens,
        else the built-in ones)."""
        if "*" not in cls.task_types and task_type not in cls.task_types:
            return f"it handles task type{'s' if len(cls.task_types) > 1 else ''} {', '.join(cls.task_types)}"
        if cls.needs_labels:
            from .errors import CompressorError
            from .tasks import get_task

            try:
                task = get_task(task_type)
            except CompressorError:
                return "unknown task type"
            if not task.supervised:
                return f"it trains from the task's labels, and {task_type} has none"
        return None

    def apply(self, artifact: Artifact, config: Any, context: "StageContext") -> Artifact:
        """Produce a new artifact from ``artifact``.

        :param artifact: the previous stage's output (the baseline for the first stage).
        :param config: an instance of ``self.Config``, already validated.
        :param context: run state: output directory, data, seed, logger, earlier artifacts.
        :returns: the new artifact, written under ``context.output_dir`` (use
            :meth:`StageContext.new_artifact`).
        :raises compressor.errors.StageError: for input it cannot handle (any
            :class:`~compressor.errors.CompressorError`: the run stops, the manifest records
            the failed stage and its traceback file ``work/NN-<stage>.traceback.txt``, and
            ``compressor run`` prints the message and exits with status 2; any other
            exception is a crash, wrapped in ``compressor.errors.StageFailed``: exit status 1).
        :raises compressor.errors.HardwareUnsupported: when this machine cannot run the
            method although the input is valid.
        """
        raise NotImplementedError


@dataclass
class StageContext:
    """Everything a strategy may use while it runs one stage.

    The orchestrator builds one per stage. Besides the run state below it serves what a
    strategy needs from the run: the input's tokenizer and model (:meth:`load_tokenizer`,
    :meth:`load_model`), another data set or model named in the stage's config
    (:meth:`load_data`, :meth:`resolve_model`) and paths written in the recipe
    (:meth:`resolve_path`), all resolved with the run's plugin registry, cache folder and the
    recipe's folder. Strategies use these methods instead of the process-wide plugin manager,
    the cache or the current directory.

    :param stage_name: the stage's unique name in the recipe.
    :param output_dir: the folder where the new artifact must be written. It exists and is
        empty when ``apply`` starts; it is a temporary folder (``artifacts/.NN-<stage>.partial``)
        renamed to ``artifacts/NN-<stage>`` when the stage succeeds and deleted when it fails,
        so write no absolute path to it into the files.
    :param work_dir: scratch folder for checkpoints (``work/NN-<stage>``); it exists, and is
        kept between ``--resume`` runs while the stage's fingerprint is unchanged.
    :param data: the task's data (:class:`compressor.TaskData`): ``train``, ``validation``
        and ``test`` splits, already split and capped (``max_train_samples``,
        ``max_eval_samples``), with normalised columns ``text``, optional ``text_pair``, and
        ``label`` (int class id) for ``text-classification``.
    :param seed: the run's seed; strategies seed their own RNGs from it.
    :param artifacts: artifacts produced so far, by name (``"baseline"`` included), so a
        stage can name an earlier one as its teacher.
    :param recipe_hash: hash of the resolved recipe, copied into lineage.
    :param logger: logger for progress messages.
    :param progress: whether to show progress bars.
    :param device: ``"cpu"`` or ``"cuda"``: where training should run.
    :param base_dir: the recipe's folder: relative paths in the recipe (data files, local
        model folders) are relative to it. ``None``: the current directory.
    :param cache_dir: the cache root for packaged models and data sets. ``None``:
        ``$COMPRESSOR_CACHE`` or ``~/.cache/compressor``.
    :param plugins: the run's loaded plugins (:class:`compressor.plugins.Plugins`): where
        data set names, model sources, tasks and format handlers are looked up. ``None``: the
        core's own registrations only (built-in data sets, model sources and tasks, the
        ``pytorch`` and ``onnx`` formats): the orchestrator and
        :func:`compressor.testing.make_context` pass the plugins.
    """

    stage_name: str
    output_dir: Path
    work_dir: Path
    data: "TaskData"
    seed: int
    artifacts: dict[str, Artifact] = field(default_factory=dict)
    recipe_hash: str | None = None
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("compressor"))
    progress: bool = True
    device: str = "cpu"
    base_dir: Path | None = None
    cache_dir: Path | None = None
    plugins: "Plugins | None" = None

    def artifact(self, name: str) -> Artifact:
        """Return an earlier artifact by name.

        :param name: ``"baseline"`` or the name of a stage that ran before this one.
        :returns: the artifact.
        :raises compressor.errors.StageError: naming the available artifacts when missing.
        """
        from .errors import StageError

        if name not in self.artifacts:
            raise StageError(
                f"no artifact named {name!r} before stage {self.stage_name!r}",
                expected=f"one of {sorted(self.artifacts)}",
            )
        return self.artifacts[name]

    # --- run services --------------------------------------------------------------------

    def resolve_path(self, path: str | Path) -> Path:
        """A path written in the recipe, made absolute.

        :param path: absolute, ``~``-prefixed, or relative to the recipe's folder
            (:attr:`base_dir`; the current directory when unset).
        :returns: the absolute path (not checked for existence).
        """
        path = Path(path).expanduser()
        if path.is_absolute():
            return path
        return (Path(self.base_dir) if self.base_dir is not None else Path.cwd()) / path

    def load_tokenizer(self, source: "Artifact | str | Path", *, key: str | None = None) -> "PreTrainedTokenizerBase":
        """The tokenizer saved with an artifact (``AutoTokenizer.from_pretrained``).

        :param source: an :class:`~compressor.Artifact` (any format: ONNX artifacts carry their
            tokenizer too) or a model folder (relative: see :meth:`resolve_path`).
        :param key: the config key naming ``source``, for the error message.
        :returns: the tokenizer (remote code is never run).
        :raises compressor.errors.StageError: when the folder holds no loadable tokenizer,
            naming the artifact and its folder.
        """
        from transformers import AutoTokenizer

        from .errors import StageError

        name, path = self._source(source)
        try:
            return AutoTokenizer.from_pretrained(str(path))
        except Exception as exc:  # noqa: BLE001 - any loader failure is the input's fault here
            raise StageError(
                f"artifact {name!r} at {path} has no loadable tokenizer: {type(exc).__name__}: {exc}",
                key=key,
                hint="save the tokenizer with the model (tokenizer.save_pretrained(dir))",
            ) from exc

    def load_model(
        self,
        source: "Artifact | str | Path",
        auto_class: Any = None,
        *,
        key: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Load a model as a ``torch.nn.Module``, through its format's handler.

        The handler is the evaluation backend registered for the artifact's format
        (:meth:`compressor.evaluate.backends.Backend.load_model`): for ``"pytorch"``,
        :func:`compressor.structure.load_pretrained`, so pruned models whose shapes
        ``from_pretrained`` cannot rebuild from ``config.json`` (a
        ``compressor_structure.json`` beside the weights) load like any other.

        :param source: an :class:`~compressor.Artifact`, or a model folder (relative: see
            :meth:`resolve_path`; a folder with a ``lineage.json`` is read as the artifact it
            holds, any other as ``"pytorch"``).
        :param auto_class: a transformers auto class or model class; default
            ``AutoModelForMaskedLM`` for a ``masked-lm`` task, else
            ``AutoModelForSequenceClassification``.
        :param key: the config key naming ``source``, for error messages.
        :param kwargs: passed to the loader (``dtype``, ``attn_implementation``,
            ``num_labels``, ``output_loading_info``...; see ``load_pretrained`` for its limits
            on structured models).
        :returns: the model, as ``from_pretrained`` returns it (a ``(model, info)`` pair with
            ``output_loading_info=True``).
        :raises compressor.errors.StageError: when ``source``'s format holds no PyTorch
            module (ONNX, dynamic int8), or the folder cannot be loaded as ``auto_class`` (the
            message names the artifact, its folder and the loader's reason).
        """
        from .errors import CompressorError, StageError

        if auto_class is None:
            import transformers

            auto_class = (
                transformers.AutoModelForMaskedLM
                if self.data.type == "masked-lm"
                else transformers.AutoModelForSequenceClassification
            )
        artifact = self._artifact(source)
        try:
            return self.format_handler(artifact).load_model(artifact, auto_class, **kwargs)
        except CompressorError as exc:
            raise StageError(
                exc.message,
                key=key,
                expected=exc.expected,
                hint=exc.hint or "the folder must hold a model written by save_pretrained "
                "(config.json, safetensors weights)",
            ) from exc

    def save_model(self, model: Any, tokenizer: Any = None, *, format: ModelFormat = DEFAULT_FORMAT) -> Path:
        """Write ``model`` (and its tokenizer) into :attr:`output_dir` through the format's
        handler (:meth:`compressor.evaluate.backends.Backend.save_model`; for ``"pytorch"``:
        safetensors plus a structure file when the shapes differ from what the config builds).

        :returns: :attr:`output_dir`.
        :raises compressor.errors.StageError: for a format no handler writes.
        """
        from .errors import CompressorError, StageError

        handler = self.format_handler(Artifact(name=self.stage_name, path=self.output_dir, format=format))
        try:
            handler.save_model(model, self.output_dir, tokenizer)
        except CompressorError as exc:
            raise StageError(f"cannot save {self.stage_name!r}: {exc.message}", hint=exc.hint) from exc
        return Path(self.output_dir)

    def format_handler(self, artifact: Artifact) -> Any:
        """The handler class of ``artifact``'s format: the evaluation backend registered for
        it (:func:`compressor.evaluate.backends.backend_for` with the run's plugins).

        :raises compressor.errors.StageError: for a format no installed plugin handles.
        """
        from .errors import CompressorError, StageError
        from .evaluate.backends import backend_for

        try:
            return backend_for(artifact, self._plugins().backends)
        except CompressorError as exc:
            raise StageError(exc.message, expected=exc.expected, hint=exc.hint) from exc

    def _artifact(self, source: "Artifact | str | Path") -> Artifact:
        """``source`` as an artifact: itself, the artifact a folder holds, or a ``"pytorch"``
        model folder named after it."""
        if isinstance(source, Artifact):
            return source
        path = self.resolve_path(source)
        try:
            return Artifact.load(path)
        except (OSError, ValueError, KeyError, TypeError):
            return Artifact(name=path.name or str(path), path=path)

    def load_data(self, data: Any, *, task_type: str | None = None, key: str | None = None) -> "TaskData":
        """Load another data set than the task's (an MLM corpus, a calibration set).

        It is loaded as the task's data is: with the run's registered data sets, cache, seed
        (splits and caps) and the recipe's folder for relative ``files``.

        :param data: a :class:`compressor.DataConfig` (declare the config field as
            ``DataConfig`` and pydantic validates the recipe's mapping into one).
        :param task_type: a registered task's name (``"masked-lm"``: only ``text`` is
            read); ``None`` infers it as for ``task.data``.
        :param key: the config key holding ``data`` (e.g. ``"corpus"``): error keys become
            ``corpus.files.train`` instead of ``task.data.files.train``.
        :returns: a :class:`compressor.TaskData` with ``train``, ``validation`` and ``test``.
        :raises compressor.errors.StageError: an unknown data set name, a missing or
            unreadable file, a missing column, too few rows to split (the data source's message,
            expectation and hint).
        """
        from .errors import CompressorError
        from .sources.datasets import load_task_data

        try:
            return load_task_data(
                data,
                datasets_registry=self._plugins().datasets,
                cache_dir=self._cache_dir(),
                seed=self.seed,
                base_dir=self.base_dir if self.base_dir is not None else Path.cwd(),
                task_type=task_type,
                tasks_registry=self._plugins().tasks,
            )
        except CompressorError as exc:
            raise self._stage_error(exc, key, "task.data", "cannot load the data set") from exc

    def resolve_model(
        self,
        name: str,
        source: str = "auto",
        *,
        revision: str | None = None,
        trust_remote_code: bool = False,
        key: str | None = None,
    ) -> Path:
        """The local folder of a model named in the stage's config (a teacher, a student).

        Resolved as the recipe's ``model`` is: a relative folder is looked up in the recipe's
        folder first; ``"auto"`` tries the packaged models, then a local folder, then the hub;
        the run's plugins may add sources; the folder passes the same safety checks.

        :param name: packaged model name, folder or hub id.
        :param source: ``"auto"`` or a registered model source (``packaged``, ``local``,
            ``hub``, or a plugin's).
        :param revision: hub revision.
        :param trust_remote_code: allow a folder whose config asks for remote code, hub
            kernels or pickle weights (off unless the stage's config opts in).
        :param key: the config key holding ``name`` (e.g. ``"student.model"``).
        :returns: the model folder (Hugging Face layout).
        :raises compressor.errors.StageError: an unknown source or packaged name, a missing
            folder, an unreachable hub, or a refused folder (the source's message and hint).
        """
        from .errors import CompressorError
        from .sources.models import resolve_model

        if source in ("auto", "local") and self.base_dir is not None:
            local = Path(self.base_dir) / name
            if local.is_dir():
                name = str(local)
        try:
            return Path(
                resolve_model(
                    name,
                    source,
                    sources=self._plugins().model_sources,
                    cache_dir=self._cache_dir(),
                    revision=revision,
                    trust_remote_code=trust_remote_code,
                )
            )
        except CompressorError as exc:
            raise self._stage_error(exc, key, None, f"cannot resolve the model {name!r}") from exc

    # --- artifacts -----------------------------------------------------------------------

    def new_artifact(
        self,
        parent: Artifact,
        strategy: str,
        config: BaseModel | dict[str, Any],
        *,
        format: ModelFormat = DEFAULT_FORMAT,
        reference: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Artifact:
        """Build the artifact in :attr:`output_dir` and write its ``lineage.json``.

        Call it last in ``apply``, after the model files are written, and return its result.

        :param parent: the artifact the new one was made from (``apply``'s input).
        :param strategy: the strategy's registered name (``self.name``).
        :param config: the validated config (a pydantic model is dumped in JSON mode).
        :param format: the format of the files written (the strategy's ``produces``).
        :param reference: the artifact reports compare this one against (the teacher of a
            distilled student); default: ``parent``.
        :param extra: facts about what the stage did, stored as ``lineage.extra``: a mapping
            with ``str`` keys whose values are ``None``, ``bool``, ``int``, ``float``,
            ``str``, lists or mappings of those. Tuples become lists, numpy/torch scalars
            their Python number and paths strings, so that the artifact equals itself
            reloaded from ``lineage.json``.
        :returns: the artifact (name = the stage's name, path = :attr:`output_dir`).
        :raises TypeError: for an ``extra`` value JSON cannot hold (the message names its
            key path), or a non-``str`` key.
        """
        cfg = config.model_dump(mode="json") if isinstance(config, BaseModel) else dict(config)
        art = Artifact(
            name=self.stage_name,
            path=self.output_dir,
            format=format,
            lineage=Lineage(
                stage=self.stage_name,
                strategy=strategy,
                parent=parent.name,
                config=cfg,
                recipe_hash=self.recipe_hash,
                reference=reference or parent.name,
                extra=_json_safe(extra or {}, "extra"),
            ),
        )
        art.save()
        return art

    # --- helpers -------------------------------------------------------------------------

    def _plugins(self) -> "Plugins | _CoreRegistries":
        """The run's plugins, or the core's own registrations for a context built without
        them (:func:`_core_registries`)."""
        if self.plugins is not None:
            return self.plugins
        return _core_registries()

    def _cache_dir(self) -> Path:
        if self.cache_dir is not None:
            return Path(self.cache_dir)
        from .sources.packaged import cache_root

        return cache_root()

    def _source(self, source: "Artifact | str | Path") -> tuple[str, Path]:
        """``(name for messages, folder)`` of an artifact or a path."""
        if isinstance(source, Artifact):
            return source.name, Path(source.path)
        path = self.resolve_path(source)
        return path.name or str(path), path

    def _stage_error(
        self, exc: "CompressorError", key: str | None, prefix: str | None, what: str
    ) -> "StageError":
        """A source's error as a stage error under the stage's config ``key``.

        :param prefix: the recipe key the source names (``task.data``); the rest of its key
            is kept after ``key`` (``corpus.files.train``). ``None``: ``key`` alone.
        """
        from .errors import StageError

        message = exc.message
        if exc.where and exc.where not in message:
            message += f" (in {exc.where})"
        new_key = exc.key
        if key is not None:
            new_key = key
            if prefix is not None and exc.key and exc.key.startswith(prefix + "."):
                new_key = key + exc.key[len(prefix):]
        return StageError(f"{what}: {message}", key=new_key, expected=exc.expected, hint=exc.hint)


def _json_safe(value: Any, path: str = "value") -> Any:
    """``value`` as the JSON round trip of ``lineage.json`` gives it back.

    Tuples become lists, ``pathlib`` paths strings, numpy and torch scalars (objects with a
    zero-dimensional ``item()``) Python numbers; ``None``, ``bool``, ``int``, ``float``,
    ``str``, lists and ``str``-keyed mappings are kept. Non-finite floats are kept (Python's
    ``json`` writes them as ``NaN``/``Infinity``; strict JSON readers refuse them: prefer
    ``None``).

    :param value: the value to check.
    :param path: its name, for messages (``extra.schedule[3]``).
    :returns: the converted value.
    :raises TypeError: for a non-``str`` mapping key or a value of another type, naming its
        path.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(
                    f"{path}: key {k!r} is a {type(k).__name__}; lineage keys must be str "
                    "(JSON turns them into strings)"
                )
            out[k] = _json_safe(v, f"{path}.{k}")
        return out
    if isinstance(value, (list, tuple)):
        return [_json_safe(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, PurePath):
        return str(value)
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", None) == 0:
        return _json_safe(item(), path)
    raise TypeError(
        f"{path}: {type(value).__name__} value {value!r:.80} cannot be stored in lineage.json; "
        "convert it (float(), int(), str(), list())"
    )


@dataclass(frozen=True)
class _CoreRegistries:
    """The registries of the core's default plugins alone, read-only: what a
    :class:`StageContext` built without ``plugins`` looks names up in.

    Same attribute names as :class:`compressor.plugins.Plugins`; built from the default
    plugins' registration hooks, without the plugin manager.
    """

    model_sources: Mapping[str, Any]
    datasets: Mapping[str, Any]
    backends: Mapping[str, Any]
    tasks: Mapping[str, Any]
    architectures: Mapping[str, Any]


@functools.lru_cache(maxsize=1)
def _core_registries() -> _CoreRegistries:
    """The core's own model sources, data sets, format handlers, tasks and architecture
    adapters (:class:`_CoreRegistries`, built once)."""
    from .architectures.layout import builtin_adapters
    from .evaluate.backends import BACKENDS
    from .sources import builtin as sources
    from .tasks import builtin_tasks

    model_sources: dict[str, Any] = {}
    datasets: dict[str, Any] = {}
    sources.compressor_register_model_sources(register=lambda src: model_sources.setdefault(src.name, src))
    sources.compressor_register_datasets(register=lambda spec: datasets.setdefault(spec.name, spec))
    return _CoreRegistries(
        model_sources=MappingProxyType(model_sources),
        datasets=MappingProxyType(datasets),
        backends=MappingProxyType(dict(BACKENDS)),
        tasks=builtin_tasks(),
        architectures=builtin_adapters(),
    )


RegisterStrategy = Callable[[type[Strategy]], None]
