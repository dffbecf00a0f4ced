"""Implementation of ``distill.distilbert`` in task mode (heavy: torch, transformers)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from compressor.errors import StageError
from compressor.training import trainer as training

from .layers import default_student_layers, select_layers
from .losses import DistillationLoss
from .student import build_student, count_parameters, find_layer_list

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedModel

    from compressor.artifact import Artifact
    from compressor.strategy import StageContext, Strategy

    from .plugin import DistillationConfig


def load_teacher(teacher: "Artifact", num_labels: int) -> "PreTrainedModel":
    """Load a fine-tuned sequence classifier to serve as teacher.

    :param teacher: a PyTorch artifact holding a ``*ForSequenceClassification`` model.
    :param num_labels: the task's label count.
    :returns: the model, in eval mode, gradients off.
    :raises StageError: when the artifact is not PyTorch, cannot be loaded, has no trained
        classification head (e.g. a sentence-embedding checkpoint), or has another label
        count.
    """
    from transformers import AutoModelForSequenceClassification

    if teacher.format != "pytorch":
        raise StageError(
            f"teacher {teacher.name!r} is a {teacher.format} artifact",
            key="teacher",
            expected="a PyTorch artifact (an earlier training stage or the baseline)",
        )
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            str(teacher.path), output_loading_info=True
        )
    except (OSError, ValueError) as exc:
        raise StageError(
            f"cannot load teacher {teacher.name!r} at {teacher.path} as a sequence "
            f"classifier: {exc}",
            key="teacher",
        ) from exc
    untrained = sorted(info.get("missing_keys", []))
    if untrained:
        raise StageError(
            f"teacher {teacher.name!r} has no trained classification head "
            f"(newly initialised: {', '.join(untrained)})",
            key="teacher",
            hint="add a 'finetune' stage before this one, or name a fine-tuned artifact as teacher",
        )
    if model.config.num_labels != num_labels:
        raise StageError(
            f"teacher {teacher.name!r} predicts {model.config.num_labels} labels but the "
            f"task has {num_labels}",
            key="teacher",
        )
    model.eval()
    model.requires_grad_(False)
    return model


def run_task_distillation(
    strategy: "Strategy",
    artifact: "Artifact",
    config: "DistillationConfig",
    context: "StageContext",
) -> "Artifact":
    """Distil a fine-tuned classifier into a shallower student; see
    :class:`~compressor_distillation.plugin.DistilBERTDistillation`.
    """
    from transformers import DataCollatorWithPadding, set_seed

    from .trainer import DistillationTrainer

    data = context.data
    if data.type != "text-classification":
        raise StageError(
            f"general (masked-LM) distillation is not implemented yet; {strategy.name!r} "
            f"only runs task distillation on a text-classification task, not {data.type!r}",
            expected="task type 'text-classification' with a fine-tuned teacher",
        )
    splits = training.classification_splits(data, strategy.name)
    training.check_device_and_precision(config, context.device)
    seed = context.seed if config.seed is None else config.seed

    teacher_artifact = context.artifact(config.teacher) if config.teacher else artifact
    tokenizer = training.load_tokenizer(teacher_artifact.path, teacher_artifact.name)
    max_length = training.effective_max_length(tokenizer, config.max_length, context)
    teacher = load_teacher(teacher_artifact, data.num_labels)

    layer_list = find_layer_list(teacher)
    if config.student_layers is not None:
        k = config.student_layers
    elif config.layers is not None:
        k = len(config.layers)
    else:
        k = default_student_layers(layer_list.count)
    layers = select_layers(layer_list.count, k, config.layer_selection, config.layers)
    set_seed(seed)
    student, _ = build_student(teacher, layers)
    teacher_params, student_params = count_parameters(teacher), count_parameters(student)
    context.logger.info(
        "%s: student of %d layers copied from teacher %r layers %s (%s); %d -> %d parameters",
        context.stage_name, k, teacher_artifact.name, layers, layer_list.path,
        teacher_params, student_params,
    )

    loss = DistillationLoss(
        temperature=config.temperature,
        alpha_ce=config.alpha_ce,
        alpha_task=config.alpha_task,
        alpha_cos=config.alpha_cos,
    )
    def tokenize(split: Any) -> Any:
        return training.tokenize_split(
            split, tokenizer, max_length, data.has_text_pair, progress=context.progress
        )

    train = tokenize(splits.train)
    validation = tokenize(splits.validation) if splits.validation is not None else None
    has_validation = validation is not None
    args = training.training_arguments(config, context, has_validation=has_validation, seed=seed)
    trainer = DistillationTrainer(
        model=student,
        args=args,
        train_dataset=train,
        eval_dataset=validation,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=training.compute_accuracy,
        callbacks=training.callbacks(config),
        teacher=teacher,
        distillation_loss=loss,
    )
    metrics = training.train_and_evaluate(trainer, context, has_validation=has_validation)
    training.save_trained_model(trainer, context.output_dir)
    extra: dict[str, Any] = {
        "mode": "task",
        "teacher": teacher_artifact.name,
        "copied_layers": layers,
        "layer_selection": config.layer_selection,
        "layer_list": layer_list.path,
        "teacher_layers": layer_list.count,
        "student_layers": k,
        "teacher_params": teacher_params,
        "student_params": student_params,
        "max_length": max_length,
        **metrics,
    }
    return context.new_artifact(
        artifact, strategy.name, config, reference=teacher_artifact.name, extra=extra
    )
