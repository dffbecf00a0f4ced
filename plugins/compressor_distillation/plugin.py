"""The ``distill.distilbert`` strategy: DistilBERT-style distillation (Sanh et al. 2019).

Imports only pydantic and the compressor core (plus the light training config); torch and
transformers load inside :meth:`DistilBERTDistillation.apply`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, model_validator

from compressor.hookspecs import hookimpl
from compressor.strategy import Strategy
from compressor.training import TrainingConfig

from .layers import LayerSelection, check_explicit_layers

if TYPE_CHECKING:  # pragma: no cover
    from compressor.artifact import Artifact
    from compressor.strategy import StageContext


class DistillationConfig(TrainingConfig):
    """Config of ``distill.distilbert``: student shape, loss, and training hyper-parameters.

    The loss is ``alpha_ce * L_ce + alpha_task * L_task + alpha_cos * L_cos`` (see
    :mod:`compressor_distillation.losses`); the defaults are the DistilBERT reference
    weights (5, 2, 1) and temperature 2. Sample recipe stage::

        - name: student
          strategy: distill.distilbert
          config:
            student_layers: 6
            layer_selection: explicit
            layers: [0, 2, 4, 7, 9, 11]   # the reference script's choice for BERT-base
            temperature: 2.0
            epochs: 3
    """

    teacher: str | None = Field(
        None,
        min_length=1,
        description=(
            "Name of an earlier artifact (e.g. 'baseline' or a fine-tuning stage) used as "
            "the teacher; null: the stage's input artifact. Must be a fine-tuned classifier."
        ),
    )
    student_layers: int | None = Field(
        None,
        ge=1,
        le=1000,
        description=(
            "Encoder layers of the student; null: len(layers) for 'explicit', else half the "
            "teacher's, rounded up."
        ),
    )
    layer_selection: LayerSelection = Field(
        "every-other",
        description=(
            "Teacher layers copied into the student: 'every-other' (0, 2, 4, ...), "
            "'uniform' (round(linspace(0, L-1, k)), 12->6 gives 0,2,4,7,9,11), 'first-k' "
            "(0..k-1) or 'explicit' (the 'layers' list)."
        ),
    )
    layers: list[int] | None = Field(
        None,
        min_length=1,
        max_length=1000,
        description="Teacher layer indices, strictly increasing, one per student layer ('explicit' only).",
    )
    temperature: float = Field(
        2.0, gt=0, le=100, description="Softmax temperature T of the soft targets (Hinton et al. 2015)."
    )
    alpha_ce: float = Field(
        5.0, ge=0, le=1000, description="Weight of the soft-target KL loss L_ce (times T^2)."
    )
    alpha_task: float = Field(
        2.0, ge=0, le=1000, description="Weight of the cross-entropy with the gold labels L_task."
    )
    alpha_cos: float = Field(
        1.0,
        ge=0,
        le=1000,
        description="Weight of the cosine loss L_cos between last hidden states (non-padding tokens).",
    )

    @model_validator(mode="after")
    def _check(self) -> "DistillationConfig":
        if max(self.alpha_ce, self.alpha_task, self.alpha_cos) <= 0:
            raise ValueError("at least one of alpha_ce, alpha_task, alpha_cos must be > 0")
        if self.layer_selection == "explicit":
            if self.layers is None:
                raise ValueError("layer_selection 'explicit' needs 'layers'")
            check_explicit_layers(self.layers, self.student_layers)
        elif self.layers is not None:
            raise ValueError(
                f"'layers' is only used with layer_selection 'explicit', not {self.layer_selection!r}"
            )
        return self


class DistilBERTDistillation(Strategy):
    """Task distillation of a fine-tuned classifier into a shallower copy (Sanh et al. 2019).

    The student has the teacher's architecture with ``student_layers`` encoder layers; its
    embeddings, pooler and classification head are copied from the teacher and student layer
    ``i`` from teacher layer ``layers[i]`` (see :mod:`compressor_distillation.layers`). It is
    trained on the task's ``train`` split with the triple loss (soft targets at temperature
    T, gold labels, hidden-state cosine) using :class:`transformers.Trainer`.

    The teacher is the input artifact unless ``teacher`` names an earlier one; the input is
    always recorded as the parent, the teacher as the lineage ``reference``. Lineage
    ``extra``: ``copied_layers``, ``teacher_layers``, ``student_layers``, ``teacher_params``,
    ``student_params``, ``validation_accuracy`` and the training metrics.

    General (masked-LM) distillation on raw text is not implemented yet.
    """

    name: ClassVar[str] = "distill.distilbert"
    Config: ClassVar[type[DistillationConfig]] = DistillationConfig
    description: ClassVar[str] = (
        "DistilBERT task distillation: fewer layers copied from the teacher, KL + CE + cosine loss"
    )
    needs_training_data: ClassVar[bool] = True
    needs_teacher: ClassVar[bool] = True
    task_types: ClassVar[tuple[str, ...]] = ("text-classification",)

    def apply(self, artifact: "Artifact", config: Any, context: "StageContext") -> "Artifact":
        """Distil the teacher into a student written to ``context.output_dir``.

        :param artifact: the input (and default teacher) artifact, PyTorch format.
        :param config: a :class:`DistillationConfig`.
        :param context: the stage's context.
        :returns: the student artifact.
        :raises compressor.errors.StageError: for a non-classification task (general
            distillation), a teacher without a trained classification head or with another
            label count, an architecture whose layer list is not found, invalid layer
            choices, or a precision the hardware lacks.
        """
        from .distill import run_task_distillation

        return run_task_distillation(self, artifact, config, context)


@hookimpl
def compressor_register_strategies(register: Any) -> None:
    """Register the ``distill.distilbert`` strategy."""
    register(DistilBERTDistillation)
