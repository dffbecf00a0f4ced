"""Implementation of ``distill.distilbert``, task and masked-LM modes (heavy: torch,
transformers)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from compressor.artifact import Artifact
from compressor.errors import StageError
from compressor.training import trainer as training

from .layers import default_student_layers, select_layers
from .loading import load_with_new_weights
from .losses import DistillationLoss, LayerLoss, Projection
from .student import build_student, count_parameters, find_layer_list, layer_count
from .trainer import (
    LABEL_KEYS,
    TEACHER_PREFIX,
    DistillationTrainer,
    attach_heads,
    cos_head_key,
    detach_heads,
    layer_head_key,
)

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from compressor.strategy import StageContext, Strategy
    from compressor.task import TaskData

    from .plugin import DistillationConfig


# --- loading --------------------------------------------------------------------------------


def load_teacher(
    teacher: "Artifact", data: "TaskData", *, require_head: bool = True, **kwargs: Any
) -> "PreTrainedModel":
    """Load a fine-tuned model of the task (its Auto class) to serve as teacher.

    :param teacher: a PyTorch artifact holding the task's head (``*ForSequenceClassification``,
        ``*ForTokenClassification``, ``*ForQuestionAnswering``).
    :param data: the task's data (its task and label count).
    :param require_head: refuse a checkpoint without a trained task head (needed whenever
        the teacher's outputs are used, i.e. ``alpha_ce > 0``).
    :param kwargs: passed to ``from_pretrained`` (e.g. ``attn_implementation``).
    :returns: the model, in eval mode, gradients off.
    :raises StageError: when the artifact is not PyTorch, cannot be loaded, has no trained
        task head (e.g. a sentence-embedding checkpoint) while one is required, or a head
        that does not fit the task (another label count).
    """
    task = data.task
    if teacher.format != "pytorch":
        raise StageError(
            f"teacher {teacher.name!r} is a {teacher.format} artifact",
            key="teacher",
            expected="a PyTorch artifact (an earlier training stage or the baseline)",
        )
    extra = {} if require_head else {**task.model_kwargs(data), "ignore_mismatched_sizes": True}
    # a pruned teacher (compressor_structure.json) loads with its shapes rebuilt
    model, untrained = load_with_new_weights(
        task.auto_class(), teacher.path, what=f"teacher {teacher.name!r}", key="teacher", **extra, **kwargs
    )
    if untrained and require_head:
        raise StageError(
            f"teacher {teacher.name!r} has no trained {data.type} head "
            f"(newly initialised: {', '.join(untrained)})",
            key="teacher",
            hint="add a 'finetune' stage before this one, or name a fine-tuned artifact as teacher",
        )
    try:
        task.check_head(model, data, f"teacher {teacher.name}")
    except StageError as exc:
        exc.key = "teacher"
        raise
    model.eval()
    model.requires_grad_(False)
    return model


def resolve_student_model(spec: Any, context: "StageContext") -> str:
    """Folder of a ``student: {model: ...}`` (packaged name, local folder or hub id), resolved
    with the run's model sources and cache (:meth:`compressor.StageContext.resolve_model`).

    :raises StageError: when the model cannot be resolved (``key="student.model"``).
    """
    return str(context.resolve_model(spec.model, spec.source, key="student.model"))


def same_vocabulary(a: "PreTrainedTokenizerBase", b: "PreTrainedTokenizerBase") -> bool:
    """Whether two tokenizers map every token to the same id (then one tokenisation serves
    both models)."""
    return type(a).__name__ == type(b).__name__ and a.get_vocab() == b.get_vocab()


def hidden_size(model: "PreTrainedModel") -> int:
    """The encoder's hidden width ``H`` (``hidden_size``; DistilBERT maps it to ``dim``)."""
    value = getattr(model.config, "hidden_size", None) or getattr(model.config, "dim", None)
    if not isinstance(value, int):
        raise StageError(f"{type(model.config).__name__} has no hidden_size")
    return value


def attention_heads(model: "PreTrainedModel") -> int | None:
    value = getattr(model.config, "num_attention_heads", None) or getattr(model.config, "n_heads", None)
    return value if isinstance(value, int) else None


# --- student --------------------------------------------------------------------------------


def layer_copy_student(
    teacher: "PreTrainedModel", config: "DistillationConfig", context: "StageContext", seed: int
) -> tuple["PreTrainedModel", dict[str, Any]]:
    """The teacher's architecture with fewer layers, copied from it (or random, for the
    ablation).

    Each student layer has the shapes of the teacher layer it comes from, also with
    ``student_init: random``: a pruned teacher's layers (per-layer heads and FFN widths)
    give a student of the same, smaller, shapes (see
    :func:`~compressor_distillation.student.build_student`).

    :returns: ``(student, lineage facts)``; the facts name the copied layers and, for a
        student whose shapes differ from its config's, its per-layer head counts and FFN
        widths (``student_heads``, ``student_ffn_widths``).
    """
    from transformers import set_seed

    layer_list = find_layer_list(teacher)
    if config.student_layers is not None:
        k = config.student_layers
    elif config.layers is not None:
        k = len(config.layers)
    else:
        k = default_student_layers(layer_list.count)
    layers = select_layers(layer_list.count, k, config.layer_selection, config.layers)
    set_seed(seed)
    student, _ = build_student(teacher, layers, init=config.student_init)
    facts: dict[str, Any] = {
        "copied_layers": layers if config.student_init == "copy" else [],
        "student_init": config.student_init,
        "layer_selection": config.layer_selection,
        "layer_list": layer_list.path,
        "teacher_layers": layer_list.count,
        "student_layers": k,
    }
    facts.update(structure_facts(student))
    return student, facts


def structure_facts(model: "PreTrainedModel") -> dict[str, Any]:
    """``{"student_heads": [...], "student_ffn_widths": [...]}`` per layer for a model whose
    shapes differ from what its config builds (a student of a pruned teacher); ``{}`` for
    one its config describes, or an architecture without a known layer layout."""
    from compressor.architectures import encoder_layout, ffn_widths, head_counts
    from compressor.errors import CompressorError
    from compressor.structure import structure_diff

    try:
        modules, attributes = structure_diff(model)
        if not modules and not attributes:
            return {}
        layout = encoder_layout(model)
        return {"student_heads": head_counts(model, layout), "student_ffn_widths": ffn_widths(model, layout)}
    except CompressorError:
        return {}


def layer_heads(model: "PreTrainedModel") -> list[int] | None:
    """Attention heads of each encoder layer, read from the projections' shapes (right after
    head pruning); ``None`` when the architecture's layout is unknown or its layers are shared
    (then the config's head count holds for every layer)."""
    from compressor.architectures import head_counts
    from compressor.errors import CompressorError

    try:
        counts = head_counts(model)
    except CompressorError:
        return None
    return counts if len(counts) == layer_count(model.config)[1] else None


def check_layer_losses(
    pairs: list[LayerLoss], teacher: "PreTrainedModel", student: "PreTrainedModel"
) -> None:
    """Refuse layer pairs beyond either model's depth, or attention pairs with different
    head counts (per layer: a pruned model's layers differ), before any training.

    :raises StageError: naming the pair and the valid range.
    """
    _, t_depth = layer_count(teacher.config)
    _, s_depth = layer_count(student.config)
    attention = any(pair.kind == "attention-kl" for pair in pairs)
    t_per = layer_heads(teacher) if attention else None
    s_per = layer_heads(student) if attention else None
    for i, pair in enumerate(pairs):
        for who, layer, depth in (("teacher", pair.teacher_layer, t_depth), ("student", pair.student_layer, s_depth)):
            if layer > depth:
                raise StageError(
                    f"layer_losses[{i}] names {who} layer {layer} but the {who} has {depth} layers",
                    key=f"layer_losses[{i}].{who}_layer",
                    expected=f"0 (embeddings) .. {depth}",
                )
        if pair.kind != "attention-kl":
            continue
        t_heads = t_per[pair.teacher_layer - 1] if t_per else attention_heads(teacher)
        s_heads = s_per[pair.student_layer - 1] if s_per else attention_heads(student)
        if t_heads != s_heads:
            raise StageError(
                f"layer_losses[{i}]: attention-kl needs equal head counts, teacher layer "
                f"{pair.teacher_layer} has {t_heads} and student layer {pair.student_layer} "
                f"has {s_heads}",
                key=f"layer_losses[{i}].loss",
                hint="use 'mse' or 'cosine' on hidden states for this pair, or pair the student "
                "layer with the teacher layer it was copied from (a pruned teacher's layers "
                "keep different head counts)",
            )


def projections(
    student: "PreTrainedModel",
    teacher: "PreTrainedModel",
    pairs: list[LayerLoss],
    *,
    cos: bool,
    seed: int,
) -> dict[str, Projection]:
    """Learned projections from the student's width to the teacher's, where they differ."""
    h_s, h_t = hidden_size(student), hidden_size(teacher)
    if h_s == h_t:
        return {}
    torch.manual_seed(seed)
    heads: dict[str, Projection] = {}
    if cos:
        heads[cos_head_key()] = Projection(h_s, h_t)
    for pair in pairs:
        if pair.kind != "attention-kl":
            heads[layer_head_key(pair)] = Projection(h_s, h_t)
    return {k: v.to(dtype=next(student.parameters()).dtype) for k, v in heads.items()}


def layer_loss_list(config: "DistillationConfig") -> list[LayerLoss]:
    return [
        LayerLoss(p.teacher_layer, p.student_layer, p.loss, p.weight) for p in config.layer_losses
    ]


def model_kwargs(config: "DistillationConfig") -> dict[str, Any]:
    """``from_pretrained`` arguments: eager attention when attention probabilities are needed
    (SDPA and flash kernels do not return them)."""
    if any(p.loss == "attention-kl" for p in config.layer_losses):
        return {"attn_implementation": "eager"}
    return {}


class PairedCollator:
    """Pads the student's and the teacher's tokenisations of one batch separately.

    Features hold the student's inputs and ``labels`` plus the teacher's inputs under
    ``teacher_`` keys; the batch holds the same keys, each side padded by its own tokenizer.

    :param student_tokenizer: pads the student's inputs.
    :param teacher_tokenizer: pads the teacher's inputs.
    """

    def __init__(self, student_tokenizer: Any, teacher_tokenizer: Any) -> None:
        from transformers import DataCollatorWithPadding

        self.student = DataCollatorWithPadding(student_tokenizer)
        self.teacher = DataCollatorWithPadding(teacher_tokenizer)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        n = len(TEACHER_PREFIX)
        s_rows = [{k: v for k, v in f.items() if not k.startswith(TEACHER_PREFIX)} for f in features]
        t_rows = [{k[n:]: v for k, v in f.items() if k.startswith(TEACHER_PREFIX)} for f in features]
        batch = dict(self.student(s_rows))
        if any(t_rows):
            batch.update({TEACHER_PREFIX + k: v for k, v in self.teacher(t_rows).items()})
        return batch


# --- entry point ----------------------------------------------------------------------------


def resolve_mode(config: "DistillationConfig", data_type: str) -> str:
    """``"task"`` or ``"mlm"`` for a config and the run's task type."""
    if config.mode != "auto":
        return config.mode
    return "mlm" if data_type == "masked-lm" or config.corpus is not None else "task"


def run_distillation(
    strategy: "Strategy", artifact: "Artifact", config: "DistillationConfig", context: "StageContext"
) -> "Artifact":
    """Distil in task or masked-LM mode; see
    :class:`~compressor_distillation.plugin.DistilBERTDistillation`."""
    training.check_device_and_precision(config, context.device)
    mode = resolve_mode(config, context.data.type)
    if mode == "task" and config.streaming:
        raise StageError(
            "streaming reads a raw-text corpus, which only general (MLM) distillation trains on",
            key="streaming",
            hint="remove streaming: true, or distil in MLM mode (a masked-lm task or a corpus)",
        )
    if mode == "task":
        return run_task_distillation(strategy, artifact, config, context)
    return run_mlm_distillation(strategy, artifact, config, context)


def _loss(config: "DistillationConfig", alpha_cos: float) -> DistillationLoss:
    try:
        return DistillationLoss(
            temperature=config.temperature, alpha_ce=config.alpha_ce,
            alpha_task=config.alpha_task, alpha_cos=alpha_cos,
        )
    except ValueError as exc:
        raise StageError(str(exc), key="alpha_cos") from exc


def run_task_distillation(
    strategy: "Strategy", artifact: "Artifact", config: "DistillationConfig", context: "StageContext"
) -> "Artifact":
    """Task mode: distil a fine-tuned model of the task on its labelled data."""
    data = context.data
    task = data.task
    if not task.supervised:
        raise StageError(
            f"task distillation needs a labelled task, not {data.type!r}",
            key="mode",
            hint="use mode: mlm (general distillation) on raw text"
            + (", or distill.embedding for sentence embeddings" if data.type == "sentence-embedding" else ""),
        )
    splits = training.training_splits(data, strategy.name)
    seed = context.seed if config.seed is None else config.seed
    kwargs = model_kwargs(config)

    teacher_artifact = context.artifact(config.teacher) if config.teacher else artifact
    t_tok = context.load_tokenizer(teacher_artifact, key="teacher")
    from transformers import set_seed

    set_seed(seed)  # a teacher without a trained head (alpha_ce == 0) gets a seeded one
    teacher = load_teacher(teacher_artifact, data, require_head=config.alpha_ce > 0, **kwargs)
    facts: dict[str, Any] = {"mode": "task", "teacher": teacher_artifact.name}
    if config.student is None:
        student, shape = layer_copy_student(teacher, config, context, seed)
        facts.update(shape)
        s_tok = t_tok
    else:
        path = str(artifact.path) if config.student == "input" else resolve_student_model(config.student, context)
        name = artifact.name if config.student == "input" else config.student.model
        s_tok = context.load_tokenizer(Artifact(name=name, path=Path(path)), key="student")
        set_seed(seed)
        # from_pretrained, or (a pruned student) shapes rebuilt from compressor_structure.json
        student, new = load_with_new_weights(
            task.auto_class(), path, what=f"the student {name!r}", key="student",
            ignore_mismatched_sizes=True, **task.model_kwargs(data), **kwargs,
        )
        if new:
            context.logger.info("%s: student %r: newly initialised %s", context.stage_name, name, ", ".join(new))
        student.train()
        facts.update({"student": name, "student_layers": layer_count(student.config)[1],
                      "teacher_layers": layer_count(teacher.config)[1]})
    cross = not same_vocabulary(s_tok, t_tok)
    if cross and task.token_level:
        raise StageError(
            f"a {data.type} student must tokenise as its teacher does: soft targets are per "
            "token, and token positions differ between the two tokenizers",
            key="student", hint="use a student with the teacher's tokenizer",
        )
    pairs = layer_loss_list(config)
    alpha_cos = config.alpha_cos
    if cross:
        if pairs:
            raise StageError(
                "layer_losses compare token positions, which differ when the student and the "
                "teacher tokenise the text differently",
                key="layer_losses", hint="remove layer_losses, or use a student with the teacher's tokenizer",
            )
        if alpha_cos > 0 and config.cos_pooling is None:
            context.logger.info(
                "%s: the student's tokenizer differs from the teacher's: L_cos is off (token "
                "states do not align); set cos_pooling to use pooled vectors", context.stage_name,
            )
            alpha_cos = 0.0
    check_layer_losses(pairs, teacher, student)
    loss = _loss(config, alpha_cos)
    heads = projections(student, teacher, pairs, cos=loss.alpha_cos > 0, seed=seed)
    attach_heads(student, heads)
    teacher_params, student_params = count_parameters(teacher), count_parameters(student) - sum(
        p.numel() for h in heads.values() for p in h.parameters()
    )
    context.logger.info(
        "%s: task distillation of %r (%d parameters) into %d parameters%s",
        context.stage_name, teacher_artifact.name, teacher_params, student_params,
        f", student layers copied from {facts['copied_layers']}" if facts.get("copied_layers") else "",
    )

    s_len = training.effective_max_length(s_tok, config.max_length, context)
    t_len = training.effective_max_length(t_tok, config.max_length, context)

    def tokenize(split: Any, tok: Any, length: int) -> Any:
        return training.tokenize_split(split, tok, length, data, progress=context.progress)

    train = tokenize(splits.train, s_tok, s_len)
    if cross:
        t_train = tokenize(splits.train, t_tok, t_len)
        for col in t_train.column_names:
            if col not in LABEL_KEYS:
                train = train.add_column(TEACHER_PREFIX + col, t_train[col])
    validation = tokenize(splits.validation, s_tok, s_len) if splits.validation is not None else None
    has_validation = validation is not None
    args = training.training_arguments(
        config, context, has_validation=has_validation, seed=seed, best_metric=task.training_metric()
    )
    if cross:
        args.remove_unused_columns = False  # keep the teacher_* columns
    trainer = DistillationTrainer(
        model=student,
        args=args,
        train_dataset=train,
        eval_dataset=validation,
        processing_class=s_tok,
        data_collator=PairedCollator(s_tok, t_tok) if cross else task.collator(s_tok),
        compute_metrics=training.compute_metrics(data),
        callbacks=training.callbacks(config),
        teacher=teacher,
        distillation_loss=loss,
        layer_losses=pairs,
        hard_key="loss_task",
        cos_pooling=config.cos_pooling if (cross or config.cos_pooling) else None,
        task=task,
    )
    metrics = training.train_and_evaluate(trainer, context, has_validation=has_validation)
    shapes = detach_heads(student)
    training.save_trained_model(trainer, context.output_dir)
    facts.update({
        "cross_tokenizer": cross,
        "alpha_cos_used": loss.alpha_cos,
        "projections": shapes,
        "layer_losses": [p.key for p in pairs],
        "teacher_params": teacher_params,
        "student_params": student_params,
        "max_length": s_len,
        **metrics,
    })
    return context.new_artifact(
        artifact, strategy.name, config, reference=teacher_artifact.name, extra=facts
    )


def run_mlm_distillation(
    strategy: "Strategy", artifact: "Artifact", config: "DistillationConfig", context: "StageContext"
) -> "Artifact":
    """MLM mode: general distillation of a masked LM on raw text (Sanh et al. 2019)."""
    from transformers import set_seed

    from .mlm import corpus_blocks, fixed_masks, load_masked_lm, mlm_accuracy, mlm_collator

    seed = context.seed if config.seed is None else config.seed
    kwargs = model_kwargs(config)
    teacher_artifact = context.artifact(config.teacher) if config.teacher else artifact
    # checked before anything else runs: a teacher without an MLM head gives noise targets
    teacher, _ = load_masked_lm(teacher_artifact, require_head=True, key="teacher", **kwargs)
    teacher.eval()
    teacher.requires_grad_(False)
    tok = context.load_tokenizer(teacher_artifact, key="teacher")
    facts: dict[str, Any] = {"mode": "mlm", "teacher": teacher_artifact.name}
    if config.student is None:
        student, shape = layer_copy_student(teacher, config, context, seed)
        facts.update(shape)
    else:
        if config.student == "input":
            source = artifact
        else:
            source = Artifact(name=config.student.model, path=Path(resolve_student_model(config.student, context)))
        s_tok = context.load_tokenizer(source, key="student")
        if not same_vocabulary(s_tok, tok):
            raise StageError(
                f"general distillation compares token distributions over one vocabulary, but "
                f"the student {source.name!r} has another tokenizer than the teacher",
                key="student",
                hint="use a student with the teacher's tokenizer (or the default layer copy); "
                "students with other tokenizers are supported in task mode",
            )
        set_seed(seed)
        student, new = load_masked_lm(source, require_head=False, key="student", **kwargs)
        if new:
            context.logger.info("%s: student: newly initialised %s", context.stage_name, ", ".join(new))
        student.train()
        facts.update({"student": source.name, "student_layers": layer_count(student.config)[1],
                      "teacher_layers": layer_count(teacher.config)[1]})
    pairs = layer_loss_list(config)
    check_layer_losses(pairs, teacher, student)
    loss = _loss(config, config.alpha_cos)
    heads = projections(student, teacher, pairs, cos=loss.alpha_cos > 0, seed=seed)
    attach_heads(student, heads)

    block_size = training.effective_max_length(tok, config.max_length, context)
    train, held, corpus_name = corpus_blocks(config, context, tok, block_size)
    masks = fixed_masks(held, tok, config.mlm_probability, seed, config.eval_batch_size)
    teacher_acc = mlm_accuracy(teacher, masks)
    context.logger.info(
        "%s: general distillation on %s (%s blocks of %d tokens); teacher MLM accuracy %.4f",
        context.stage_name, corpus_name, "streamed" if config.streaming else len(train), block_size,
        teacher_acc["mlm_accuracy"],
    )
    args = training.training_arguments(config, context, has_validation=False, seed=seed)
    trainer = DistillationTrainer(
        model=student,
        args=args,
        train_dataset=train,
        processing_class=tok,
        data_collator=mlm_collator(tok, config.mlm_probability),
        callbacks=training.callbacks(config),
        teacher=teacher,
        distillation_loss=loss,
        layer_losses=pairs,
        hard_key="loss_mlm",
        ce_positions=config.ce_positions,
        cos_pooling=config.cos_pooling,
    )
    metrics = training.train_and_evaluate(trainer, context, has_validation=False)
    shapes = detach_heads(student)
    student_acc = mlm_accuracy(student, masks)
    context.logger.info(
        "%s: student MLM accuracy %.4f (teacher %.4f) on %d masked held-out tokens",
        context.stage_name, student_acc["mlm_accuracy"], teacher_acc["mlm_accuracy"],
        student_acc["masked_tokens"],
    )
    training.save_trained_model(trainer, context.output_dir)
    facts.update({
        "corpus": corpus_name,
        "train_blocks": None if config.streaming else len(train),
        "streamed": bool(config.streaming),
        "block_size": block_size,
        "ce_positions": config.ce_positions,
        "projections": shapes,
        "layer_losses": [p.key for p in pairs],
        "teacher_params": count_parameters(teacher),
        "student_params": count_parameters(student),
        "teacher_mlm_accuracy": teacher_acc["mlm_accuracy"],
        "student_mlm_accuracy": student_acc["mlm_accuracy"],
        "masked_tokens": student_acc["masked_tokens"],
        **metrics,
    })
    return context.new_artifact(
        artifact, strategy.name, config, reference=teacher_artifact.name, extra=facts
    )
