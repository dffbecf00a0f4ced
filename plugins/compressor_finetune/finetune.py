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
    """Fine-tune ``artifact``'s task head (the task's Auto class); see :class:`~.plugin.FineTune`.

    :raises StageError: see :meth:`FineTune.apply`.
    """
    from transformers import Trainer, set_seed

    data = context.data
    task = data.task
    splits = training.training_splits(data, strategy.name)
    training.check_device_and_precision(config, context.device)
    seed = context.seed if config.seed is None else config.seed

    tokenizer = context.load_tokenizer(artifact)
    max_length = training.effective_max_length(tokenizer, config.max_length, context)

    set_seed(seed)  # a fresh task head is initialised from this seed
    try:
        # load_pretrained: from_pretrained, or shapes rebuilt from compressor_structure.json
        model, info = load_pretrained(
            task.auto_class(),
            str(artifact.path),
            ignore_mismatched_sizes=True,
            output_loading_info=True,
            **task.model_kwargs(data),
        )
    except (OSError, ValueError) as exc:
        raise StageError(
            f"cannot load artifact {artifact.name!r} at {artifact.path} as a "
            f"{task.auto_model} ({data.type}): {exc}"
        ) from exc
    new_head = sorted(info.get("missing_keys", [])) + sorted(
        k for k, *_ in info.get("mismatched_keys", [])
    )
    if new_head:
        context.logger.info(
            "%s: newly initialised weights (no trained %s head in the input): %s",
            context.stage_name, data.type, ", ".join(new_head),
        )

    def tokenize(split: Any) -> Any:
        return training.tokenize_split(split, tokenizer, max_length, data, progress=context.progress)

    train = tokenize(splits.train)
    validation = tokenize(splits.validation) if splits.validation is not None else None
    has_validation = validation is not None
    args = training.training_arguments(
        config, context, has_validation=has_validation, seed=seed, best_metric=task.training_metric()
    )
    trainer_cls = Trainer
    if config.head_learning_rate is not None:
        if new_head:
            trainer_cls = head_rate_trainer(Trainer, set(new_head), config.head_learning_rate)
        else:
            context.logger.info(
                "%s: head_learning_rate unused: %s already has a trained %s head",
                context.stage_name, artifact.name, data.type,
            )
    trainer = trainer_cls(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=validation,
        processing_class=tokenizer,
        data_collator=task.collator(tokenizer),
        compute_metrics=training.compute_metrics(data),
        callbacks=training.callbacks(config),
    )
    metrics = training.train_and_evaluate(trainer, context, has_validation=has_validation)
    training.save_trained_model(trainer, context.output_dir)
    metrics["new_head_weights"] = new_head
    if config.head_learning_rate is not None and new_head:
        metrics["head_learning_rate"] = config.head_learning_rate
    if data.num_labels:
        metrics["num_labels"] = data.num_labels
    metrics["max_length"] = max_length
    return context.new_artifact(artifact, strategy.name, config, extra=metrics)


def split_head_groups(optimizer: Any, model: Any, head: set[str], learning_rate: float) -> int:
    """Give the parameters named in ``head`` their own AdamW parameter groups at
    ``learning_rate``: each group holding some is split in two, the copy keeping the group's
    other settings (weight decay), so the learning-rate scheduler, created afterwards, warms
    up and decays both rates alike.

    :param optimizer: a freshly created optimizer (no state yet).
    :param model: the model whose ``named_parameters()`` the groups hold.
    :param head: parameter names (``classifier.weight``, ``qa_outputs.bias``...).
    :param learning_rate: the head's peak learning rate.
    :returns: how many parameters moved.
    :raises StageError: when no parameter of ``head`` is in the optimizer.
    """
    wanted = {id(p) for n, p in model.named_parameters() if n in head}
    moved = 0
    for group in list(optimizer.param_groups):
        params = group["params"]
        mine = [p for p in params if id(p) in wanted]
        if not mine or group.get("head"):
            continue
        group["params"] = [p for p in params if id(p) not in wanted]
        settings = {k: v for k, v in group.items() if k not in ("params", "lr", "initial_lr")}
        optimizer.add_param_group({**settings, "params": mine, "lr": learning_rate, "head": True})
        moved += len(mine)
    if not moved:
        raise StageError(
            f"head_learning_rate: none of the new head's weights ({', '.join(sorted(head))}) "
            "is trained by the optimizer"
        )
    return moved


def head_rate_trainer(trainer_cls: type, head: set[str], learning_rate: float) -> type:
    """``trainer_cls`` whose optimizer trains the parameters named in ``head`` at
    ``learning_rate`` (:func:`split_head_groups`), the rest at ``args.learning_rate``."""

    class HeadRateTrainer(trainer_cls):  # type: ignore[misc, valid-type]
        def create_optimizer(self, model: Any = None) -> Any:
            fresh = self.optimizer is None
            optimizer = super().create_optimizer(model)
            if fresh:
                split_head_groups(optimizer, self.model if model is None else model, head, learning_rate)
            return optimizer

    return HeadRateTrainer
