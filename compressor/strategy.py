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

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from pydantic import BaseModel, ConfigDict

from .artifact import Artifact, Lineage, ModelFormat

if TYPE_CHECKING:  # pragma: no cover
    from .task import TaskData


class StrategyConfig(BaseModel):
    """Base class for strategy configs: unknown keys are errors, values are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Strategy:
    """Base class of a compression (or glue) strategy.

    Class attributes a subclass sets:

    :cvar name: unique registered name, ``family.method`` (e.g. ``"quantize.dynamic-int8"``).
    :cvar Config: the pydantic model validating the stage's ``config`` mapping.
    :cvar description: one line shown by ``compressor plugins``.
    :cvar needs_training_data: the stage trains on the task's ``train`` split.
    :cvar needs_calibration_data: the stage reads calibration examples.
    :cvar needs_teacher: the stage uses a teacher model (see ``StageContext.artifact``).
    :cvar input_formats: artifact formats ``apply`` accepts (open strings: ``"pytorch"``,
        ``"onnx"``, or a plugin's own format such as ``"pytorch-dynamic-int8"``).
    :cvar produces: artifact format ``apply`` returns; a format other than ``"pytorch"`` and
        ``"onnx"`` needs an evaluation backend registered through
        ``compressor_register_backends``.
    :cvar task_types: task types (``TaskData.type``) the strategy supports.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type[StrategyConfig]] = StrategyConfig
    description: ClassVar[str] = ""
    needs_training_data: ClassVar[bool] = False
    needs_calibration_data: ClassVar[bool] = False
    needs_teacher: ClassVar[bool] = False
    input_formats: ClassVar[tuple[ModelFormat, ...]] = ("pytorch",)
    produces: ClassVar[ModelFormat] = "pytorch"
    task_types: ClassVar[tuple[str, ...]] = ("text-classification",)

    def apply(self, artifact: Artifact, config: Any, context: "StageContext") -> Artifact:
        """Produce a new artifact from ``artifact``.

        :param artifact: the previous stage's output (the baseline for the first stage).
        :param config: an instance of ``self.Config``, already validated.
        :param context: run state: output directory, data, seed, logger, earlier artifacts.
        :returns: the new artifact, written under ``context.output_dir`` (use
            :meth:`StageContext.new_artifact`).
        :raises compressor.errors.StageError: for input it cannot handle.
        """
        raise NotImplementedError


@dataclass
class StageContext:
    """Everything a strategy may use while it runs one stage.

    :param stage_name: the stage's unique name in the recipe.
    :param output_dir: empty directory where the new artifact must be written.
    :param work_dir: scratch directory for checkpoints (kept for resume; may be deleted
        after the run).
    :param data: the task's data (splits with normalised columns).
    :param seed: the run's seed; strategies seed their own RNGs from it.
    :param artifacts: artifacts produced so far, by name (``"baseline"`` included), so a
        stage can name an earlier one as its teacher.
    :param recipe_hash: hash of the resolved recipe, copied into lineage.
    :param logger: logger for progress messages.
    :param progress: whether to show progress bars.
    :param device: ``"cpu"`` or ``"cuda"``: where training should run.
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

    def artifact(self, name: str) -> Artifact:
        """Return an earlier artifact by name.

        :raises compressor.errors.StageError: naming the available artifacts when missing.
        """
        from .errors import StageError

        if name not in self.artifacts:
            raise StageError(
                f"no artifact named {name!r} before stage {self.stage_name!r}",
                expected=f"one of {sorted(self.artifacts)}",
            )
        return self.artifacts[name]

    def new_artifact(
        self,
        parent: Artifact,
        strategy: str,
        config: BaseModel | dict[str, Any],
        *,
        format: ModelFormat = "pytorch",
        reference: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Artifact:
        """Build (and save the lineage of) the artifact in ``output_dir``.

        Call this after the model files have been written to ``output_dir``.
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
                extra=extra or {},
            ),
        )
        art.save()
        return art


RegisterStrategy = Callable[[type[Strategy]], None]
