"""Implementation of the ``finetune`` strategy (heavy: torch, transformers)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from compressor.errors import StageError
from compressor.structure import load_pretrained

from compressor.training import trainer as training

if TYPE_CHECKING:  # pragma: no cover
    from compressor.artifact import Artifact
    from compressor.strategy import StageContext, Strategy

    from .plugin import FineTuneConfig


def run_finetune(
    strategy: "Strategy", artifact: "Artifact", config: "FineTuneConfig", context: "StageContext"
) -> "Artifact":
    """Fine-tune ``artifact`` for sequence classification; see :class:`~.plugin.FineTune`.

    :raises StageError: see :meth:`FineTune.apply`.
    """
    from transformers import (
        AutoModelForSequenceClassification,
        DataCollatorWithPadding,
        Trainer,
        set_seed,
    )

    splits = training.classification_splits(context.data, strategy.name)
    training.check_device_and_precision(config, context.device)
    seed = context.seed if config.seed is None else config.seed
    data = context.data

    tokenizer = context.load_tokenizer(artifact)
    max_length = training.effective_max_length(tokenizer, config.max_length, context)

    set_seed(seed)  # a fresh classification head is initialised from this seed
    id2label = {i: name for i, name in enumerate(data.label_names)}
    try:
        # load_pretrained: from_pretrained, or shapes rebuilt from compressor_structure.json
        model, info = load_pretrained(
            AutoModelForSequenceClassification,
            str(artifact.path),
            num_labels=data.num_labels,
            id2label=id2label,
            label2id={name: i for i, name in id2label.items()},
            ignore_mismatched_sizes=True,
            output_loading_info=True,
        )
    except (OSError, ValueError) as exc:
        raise StageError(
            f"cannot load artifact {artifact.name!r} at {artifact.path} as a sequence "
            f"classifier: {exc}"
        ) from exc
    new_head = sorted(info.get("missing_keys", [])) + sorted(
        k for k, *_ in info.get("mismatched_keys", [])
    )
    if new_head:
        context.logger.info(
            "%s: newly initialised weights (no trained head for %d labels in the input): %s",
            context.stage_name, data.num_labels, ", ".join(new_head),
        )

    def tokenize(split: Any) -> Any:
        return training.tokenize_split(
            split, tokenizer, max_length, data.has_text_pair, progress=context.progress
        )

    train = tokenize(splits.train)
    validation = tokenize(splits.validation) if splits.validation is not None else None
    has_validation = validation is not None
    args = training.training_arguments(config, context, has_validation=has_validation, seed=seed)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=validation,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=training.compute_accuracy,
        callbacks=training.callbacks(config),
    )
    metrics = training.train_and_evaluate(trainer, context, has_validation=has_validation)
    training.save_trained_model(trainer, context.output_dir)
    metrics["new_head_weights"] = new_head
    metrics["num_labels"] = data.num_labels
    metrics["max_length"] = max_length
    return context.new_artifact(artifact, strategy.name, config, extra=metrics)
