"""The ``apply`` bodies of the pruning strategies (heavy: torch, transformers)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from compressor.architectures import (
    encoder_layout,
    ffn_unit_widths,
    find_layer_list,
    head_counts,
    refuse,
    sparsity_summary,
)
from compressor.errors import StageError
from compressor.training import trainer as training

from .common import importance_batches, load_task_model, save_model
from .structured import (
    drop_layers_,
    ffn_importance,
    head_importance,
    layer_drop_importance,
    pattern_layers,
    prune_ffn_,
    prune_heads_,
    select_heads,
    select_neurons,
)

if TYPE_CHECKING:  # pragma: no cover
    from compressor.artifact import Artifact
    from compressor.strategy import StageContext, Strategy


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _prepare(artifact: "Artifact", context: "StageContext", strategy: "Strategy") -> tuple[Any, Any]:
    """Tokenizer and model of the input; an architecture whose adapter refuses a role the
    strategy needs (``requires_roles``), or whose parts are not found, fails here, before any
    work."""
    tokenizer = context.load_tokenizer(artifact)
    model = load_task_model(artifact, context, context.data)
    roles = tuple(getattr(strategy, "requires_roles", ()))
    for role in roles:
        refuse(model, role)
    if set(roles) - {"layers"}:
        encoder_layout(model)
    else:
        find_layer_list(model)
    return model, tokenizer


def _batches(config: Any, context: "StageContext", tokenizer: Any, model: Any) -> list[dict[str, torch.Tensor]]:
    max_length = training.effective_max_length(tokenizer, config.max_length, context)
    return importance_batches(
        context,
        tokenizer,
        split=config.importance_split,
        samples=config.importance_samples,
        batch_size=config.importance_batch_size,
        max_length=max_length,
        seed=context.seed,
        model=model,
    )


def _task_training(
    strategy: "Strategy", config: Any, context: "StageContext", tokenizer: Any
) -> tuple[Any, Any, Any]:
    """Seeded, tokenised task splits and Trainer arguments of a pruning stage that trains.

    :returns: ``(train, validation or None, TrainingArguments)``.
    :raises StageError: for a task without a train split or a precision the device lacks.
    """
    from transformers import set_seed

    data = context.data
    splits = training.training_splits(data, strategy.name)
    training.check_device_and_precision(config, context.device)
    seed = context.seed if config.seed is None else config.seed
    set_seed(seed)
    max_length = training.effective_max_length(tokenizer, config.max_length, context)

    def tokenize(split: Any) -> Any:
        return training.tokenize_split(split, tokenizer, max_length, data, progress=context.progress)

    train = tokenize(splits.train)
    validation = tokenize(splits.validation) if splits.validation is not None else None
    args = training.training_arguments(config, context, has_validation=validation is not None, seed=seed)
    return train, validation, args


def _sparse_extra(model: torch.nn.Module, context: "StageContext") -> dict[str, Any]:
    """Write the bitmask form of the saved model; lineage fields on its sparsity and sizes."""
    from .magnitude import write_bitmask

    summary = sparsity_summary(model)
    _, sparse_bytes = write_bitmask(model, context.output_dir)
    dense_bytes = sum(p.stat().st_size for p in context.output_dir.glob("*.safetensors"))
    context.logger.info(
        "%s: sparsity %.3f of the encoder's Linear weights; %.1f MB dense, %.1f MB bitmask",
        context.stage_name, summary["linear_sparsity"], dense_bytes / 1e6, sparse_bytes / 1e6,
    )
    return {
        "sparsity": summary["linear_sparsity"],
        "sparsity_per_layer": summary["per_layer"],
        "dense_bytes": dense_bytes,
        "sparse_bytes": sparse_bytes,
        "sparse_file": "model.safetensors.bitmask",
    }


def run_heads(strategy: "Strategy", artifact: "Artifact", config: Any, context: "StageContext") -> "Artifact":
    """See :class:`~compressor_pruning.plugin.HeadPruning`."""
    model, tokenizer = _prepare(artifact, context, strategy)
    layout = encoder_layout(model)
    batches = _batches(config, context, tokenizer, model)
    scores = head_importance(model, batches, normalize=config.normalize)
    heads_before = head_counts(model, layout)
    params_before = _params(model)
    removed = select_heads(
        scores,
        fraction=config.fraction,
        per_layer=config.heads_per_layer,
        min_heads=config.min_heads_per_layer,
        group=layout.kv_group,
    )
    how = prune_heads_(model, removed)
    structure = save_model(model, tokenizer, context)
    heads_after = head_counts(model)
    context.logger.info(
        "%s: removed %d of %d heads (%s); heads per layer %s -> %s",
        context.stage_name, sum(heads_before) - sum(heads_after), sum(heads_before), how,
        heads_before, heads_after,
    )
    extra = {
        "head_importance": [[round(float(x), 6) for x in s] for s in scores],
        "removed_heads": {str(k): v for k, v in removed.items()},
        "heads_before": heads_before,
        "heads_after": heads_after,
        "params_before": params_before,
        "params_after": _params(model),
        "importance_examples": sum(int(b["input_ids"].shape[0]) for b in batches),
        "reload": "structure-file" if structure else "transformers",
    }
    return context.new_artifact(artifact, strategy.name, config, extra=extra)


def run_ffn(strategy: "Strategy", artifact: "Artifact", config: Any, context: "StageContext") -> "Artifact":
    """See :class:`~compressor_pruning.plugin.FFNPruning`."""
    model, tokenizer = _prepare(artifact, context, strategy)
    batches = _batches(config, context, tokenizer, model)
    scores = ffn_importance(model, batches, config.importance)
    before = ffn_unit_widths(model)
    params_before = _params(model)
    keep = select_neurons(scores, fraction=config.fraction, scope=config.scope, multiple_of=config.multiple_of)
    prune_ffn_(model, keep)
    structure = save_model(model, tokenizer, context)
    after = ffn_unit_widths(model)
    context.logger.info("%s: FFN widths %s -> %s", context.stage_name, before, after)
    extra = {
        "ffn_before": before,
        "ffn_after": after,
        "importance": config.importance,
        "params_before": params_before,
        "params_after": _params(model),
        "importance_examples": sum(int(b["input_ids"].shape[0]) for b in batches),
        "reload": "structure-file" if structure else "transformers",
    }
    return context.new_artifact(artifact, strategy.name, config, extra=extra)


def run_layers(strategy: "Strategy", artifact: "Artifact", config: Any, context: "StageContext") -> "Artifact":
    """See :class:`~compressor_pruning.plugin.LayerDropping`."""
    model, tokenizer = _prepare(artifact, context, strategy)
    n = find_layer_list(model).count
    trace: list[dict[str, Any]] = []
    if config.selection == "explicit":
        drop = sorted(set(config.layers))
    else:
        count = config.count if config.count is not None else int(round(config.fraction * n))
        if not 1 <= count < n:
            raise StageError(
                f"cannot drop {count} of {n} layers", key="count" if config.count else "fraction",
                expected=f"between 1 and {n - 1} layers",
            )
        if config.selection == "importance":
            batches = _batches(config, context, tokenizer, model)
            drop, trace = layer_drop_importance(model, batches, count)
        else:
            drop = pattern_layers(n, count, config.selection)
    params_before = _params(model)
    kept = drop_layers_(model, drop)
    structure = save_model(model, tokenizer, context)
    context.logger.info("%s: dropped layers %s, kept %s", context.stage_name, drop, kept)
    extra = {
        "dropped_layers": drop,
        "kept_layers": kept,
        "selection": config.selection,
        "importance_trace": trace,
        "params_before": params_before,
        "params_after": _params(model),
        "reload": "structure-file" if structure else "transformers",
    }
    return context.new_artifact(artifact, strategy.name, config, extra=extra)


def run_magnitude(strategy: "Strategy", artifact: "Artifact", config: Any, context: "StageContext") -> "Artifact":
    """See :class:`~compressor_pruning.plugin.MagnitudePruning`."""
    from .magnitude import (
        apply_masks_,
        gradual_callback,
        magnitude_masks,
        prunable_weights,
    )

    model, tokenizer = _prepare(artifact, context, strategy)
    extra: dict[str, Any] = {"schedule": config.schedule, "scope": config.scope}
    if config.schedule == "one-shot":
        weights = prunable_weights(model)
        apply_masks_(weights, magnitude_masks(weights, config.sparsity, config.scope))
        save_model(model, tokenizer, context)
    else:
        from transformers import Trainer

        train, validation, args = _task_training(strategy, config, context, tokenizer)
        model.train()
        callback = gradual_callback(
            model,
            final=config.sparsity,
            initial=config.initial_sparsity,
            scope=config.scope,
            begin_fraction=config.begin_fraction,
            end_fraction=config.end_fraction,
            frequency=config.frequency,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=train,
            eval_dataset=validation,
            processing_class=tokenizer,
            data_collator=context.data.task.collator(tokenizer),
            compute_metrics=training.compute_metrics(context.data),
            callbacks=[callback, *training.callbacks(config)],
        )
        metrics = training.train_and_evaluate(trainer, context, has_validation=validation is not None)
        weights = prunable_weights(trainer.model)
        apply_masks_(weights, magnitude_masks(weights, config.sparsity, config.scope))  # permanent
        training.save_trained_model(trainer, context.output_dir)  # structure file included
        extra["schedule_history"] = callback.history
        extra.update(metrics)
        model = trainer.model
    extra.update(_sparse_extra(model, context))
    return context.new_artifact(artifact, strategy.name, config, extra=extra)


def run_movement(strategy: "Strategy", artifact: "Artifact", config: Any, context: "StageContext") -> "Artifact":
    """See :class:`~compressor_pruning.plugin.MovementPruning`."""
    from transformers import Trainer

    from compressor.training.losses import task_soft_target_loss

    from .movement import LABEL_KEYS, MovementPruner, movement_callback

    model, tokenizer = _prepare(artifact, context, strategy)
    teacher = None
    if config.teacher is not None:
        teacher_artifact = context.artifact(config.teacher)
        teacher = load_task_model(teacher_artifact, context, context.data)
        if context.load_tokenizer(teacher_artifact, key="teacher").get_vocab() != tokenizer.get_vocab():
            raise StageError(
                f"teacher {config.teacher!r} has another tokenizer than {artifact.name!r}",
                key="teacher", expected="a teacher sharing the pruned model's tokenizer (e.g. the model before pruning)",
            )
    train, validation, args = _task_training(strategy, config, context, tokenizer)
    pruner = MovementPruner(model, block=tuple(config.block), scope=config.scope)
    model.train()
    scores = set(map(id, pruner.score_parameters()))
    decay = [p for n, p in model.named_parameters() if id(p) not in scores and p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if id(p) not in scores and p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay, "lr": config.learning_rate},
            {"params": no_decay, "weight_decay": 0.0, "lr": config.learning_rate},
            {"params": pruner.score_parameters(), "weight_decay": 0.0, "lr": config.scores_learning_rate},
        ],
        lr=config.learning_rate,
    )
    callback = movement_callback(
        pruner, final=config.sparsity, initial=config.initial_sparsity,
        begin_fraction=config.begin_fraction, end_fraction=config.end_fraction,
    )
    if teacher is not None:
        teacher.to(args.device)
    alpha, temperature = config.alpha_distil, config.temperature
    task = context.data.task

    class MovementTrainer(Trainer):
        """Task loss, plus the soft-target loss against the teacher when one is set."""

        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, **kw: Any) -> Any:
            outputs = model(**inputs)
            loss = outputs.loss
            if teacher is not None and model.training:
                with torch.no_grad():
                    teacher_out = teacher(**{k: v for k, v in inputs.items() if k not in LABEL_KEYS})
                distil = task_soft_target_loss(task, outputs, teacher_out, inputs, temperature)
                loss = (1.0 - alpha) * loss + alpha * distil
            return (loss, outputs) if return_outputs else loss

    trainer = MovementTrainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=validation,
        processing_class=tokenizer,
        data_collator=task.collator(tokenizer),
        compute_metrics=training.compute_metrics(context.data),
        optimizers=(optimizer, None),
        callbacks=[callback, *training.callbacks(config)],
    )
    metrics = training.train_and_evaluate(trainer, context, has_validation=validation is not None)
    pruner.set_sparsity(config.sparsity)
    reached = pruner.masked_fraction()
    pruner.make_permanent()
    model = trainer.model
    training.save_trained_model(trainer, context.output_dir)
    extra: dict[str, Any] = {
        "method": "movement (top-k, straight-through)",
        "scope": config.scope,
        "block": list(config.block),
        "teacher": config.teacher,
        "schedule_history": callback.history,
        "masked_fraction": reached,
        **_sparse_extra(model, context),
        **metrics,
    }
    return context.new_artifact(
        artifact, strategy.name, config, extra=extra, reference=config.teacher,
    )
