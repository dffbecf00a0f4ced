"""The ``finetune`` strategy: supervised fine-tuning of a sequence-classification model.

Imports only pydantic and the compressor core; torch and transformers load inside
:meth:`FineTune.apply`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from compressor.hookspecs import hookimpl
from compressor.strategy import Strategy

from compressor.training import TrainingConfig

if TYPE_CHECKING:  # pragma: no cover
    from compressor.artifact import Artifact
    from compressor.strategy import StageContext


class FineTuneConfig(TrainingConfig):
    """Config of :class:`FineTune`: the training hyper-parameters of :class:`TrainingConfig`,
    plus the learning rate of a newly initialised task head."""

    head_learning_rate: float | None = Field(
        None,
        gt=0,
        le=1.0,
        description=(
            "Peak learning rate of the task head's newly initialised weights (those the input "
            "checkpoint lacks, listed in the stage's new_head_weights), warmed up and decayed "
            "with the rest; null: learning_rate. A higher head rate (e.g. 1e-3) lets a head "
            "learn on an encoder whose token states vary little, such as a sentence-embedding "
            "checkpoint fine-tuned for tagging."
        ),
    )


class FineTune(Strategy):
    """Fine-tune the encoder and the task's head on the task's train split.

    The input model is loaded with the task's Auto class (``AutoModelForSequenceClassification``
    for classification and regression, ``AutoModelForTokenClassification``,
    ``AutoModelForQuestionAnswering``) sized for the task: a checkpoint without that head (e.g.
    a sentence-embedding model) gets a freshly initialised one, and a head sized for another
    label set is replaced. Training uses :class:`transformers.Trainer` on the ``train`` split
    with the head's own loss and measures the task's metric on ``validation``; a fresh head may
    train at its own ``head_learning_rate`` (AdamW parameter groups). The output artifact
    holds the model (safetensors) and the tokenizer; its
    lineage ``extra`` records ``train_loss``, ``validation_accuracy``, ``train_runtime_s``,
    ``global_step`` and ``epochs_trained``.
    """

    name: ClassVar[str] = "finetune"
    Config: ClassVar[type[FineTuneConfig]] = FineTuneConfig
    description: ClassVar[str] = "Fine-tune encoder + task head with transformers' Trainer"
    needs_training_data: ClassVar[bool] = True
    task_types: ClassVar[tuple[str, ...]] = ("*",)
    needs_labels: ClassVar[bool] = True

    def apply(self, artifact: "Artifact", config: Any, context: "StageContext") -> "Artifact":
        """Fine-tune ``artifact`` and write the result to ``context.output_dir``.

        :param artifact: a PyTorch artifact with a tokenizer.
        :param config: a :class:`FineTuneConfig`.
        :param context: the stage's context (data with ``train`` and ``validation`` splits).
        :returns: the fine-tuned artifact.
        :raises compressor.errors.StageError: for a non-classification task, missing splits
            or columns, labels out of range, or a precision the hardware lacks.
        """
        from .finetune import run_finetune

        return run_finetune(self, artifact, config, context)


@hookimpl
def compressor_register_strategies(register: Any) -> None:
    """Register the ``finetune`` strategy."""
    register(FineTune)
