"""Helpers for strategies that train with :class:`transformers.Trainer`.

Shared by ``finetune`` and ``distill.distilbert`` (and meant for pruning recovery): data
checks, tokenisation, :class:`~transformers.TrainingArguments` built from a
:class:`~compressor.training.TrainingConfig`, precision checks, resume from the last
checkpoint in the stage's work directory, and saving without training state.

Heavy module: imports torch, transformers and datasets. Import it inside ``apply``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import StageError

if TYPE_CHECKING:  # pragma: no cover
    import datasets
    from transformers import PreTrainedTokenizerBase, Trainer, TrainingArguments

    from compressor.strategy import StageContext
    from compressor.task import TaskData

    from .config import TrainingConfig

TRAINING_ARGS_FILE = "training_args.bin"


@dataclass
class ClassificationSplits:
    """The splits a classification training run uses.

    :param train: the ``train`` split (columns ``text``, optional ``text_pair``, ``label``).
    :param validation: the ``validation`` split, or ``None`` when the task has none.
    """

    train: "datasets.Dataset"
    validation: "datasets.Dataset | None"


def classification_splits(data: "TaskData", strategy: str) -> ClassificationSplits:
    """Check that ``data`` is a labelled classification task and return its splits.

    :param data: the task's data.
    :param strategy: the calling strategy's name, for messages.
    :returns: the ``train`` split and the ``validation`` split (``None`` if absent).
    :raises StageError: when the task is not ``text-classification``, has no ``train`` split,
        lacks ``text``/``label`` columns, has no label names, or has labels outside
        ``[0, num_labels)``.
    """
    if data.type != "text-classification":
        raise StageError(
            f"strategy {strategy!r} trains a classifier but the task type is {data.type!r}",
            expected="task type 'text-classification'",
        )
    if data.num_labels < 2:
        raise StageError(
            f"strategy {strategy!r} needs at least 2 label names, got {data.label_names!r}"
        )
    if "train" not in data.splits:
        raise StageError(
            f"strategy {strategy!r} needs a 'train' split",
            expected=f"a 'train' split among {sorted(data.splits)}",
        )
    validation = data.splits.get("validation")
    for split_name, split in (("train", data.splits["train"]), ("validation", validation)):
        if split is None:
            continue
        missing = [c for c in ("text", "label") if c not in split.column_names]
        if data.has_text_pair and "text_pair" not in split.column_names:
            missing.append("text_pair")
        if missing:
            raise StageError(
                f"split {split_name!r} lacks column(s) {missing}",
                expected="columns 'text', 'label' (and 'text_pair' for pair tasks)",
            )
        if len(split) == 0:
            raise StageError(f"split {split_name!r} is empty")
        labels = np.asarray(split.with_format("numpy")["label"])
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= data.num_labels:
            raise StageError(
                f"split {split_name!r} has labels in [{low}, {high}] but the task has "
                f"{data.num_labels} label names",
                expected=f"integer labels in [0, {data.num_labels - 1}]",
            )
    return ClassificationSplits(train=data.splits["train"], validation=validation)


def check_device_and_precision(config: "TrainingConfig", device: str) -> None:
    """Refuse a device or mixed precision the machine does not have.

    :param config: the training config (``fp16``, ``bf16``).
    :param device: ``"cpu"`` or ``"cuda"`` (``"cuda:N"`` accepted).
    :raises StageError: when CUDA is requested but absent, ``fp16`` is requested on CPU,
        ``bf16`` is requested on a CPU without AVX512-BF16/AMX or a GPU without bf16, or
        ``report_to`` names a logging integration that is not installed.
    """
    on_cuda = device.startswith("cuda")
    if on_cuda and not torch.cuda.is_available():
        raise StageError(
            f"device {device!r} requested but torch sees no CUDA device",
            hint="run on CPU (device: cpu) or install a CUDA build of torch",
        )
    if config.fp16 and not on_cuda:
        raise StageError(
            "fp16 mixed precision needs a CUDA GPU",
            key="fp16",
            hint="on CPU use bf16 (if the CPU supports it) or neither",
        )
    if config.bf16:
        if on_cuda:
            if not torch.cuda.is_bf16_supported():
                name = torch.cuda.get_device_name()
                raise StageError(
                    f"bf16 requested but the GPU ({name}) has no bfloat16 support",
                    key="bf16",
                    hint="use fp16 on this GPU, or neither",
                )
        elif not cpu_supports_bf16():
            raise StageError(
                "bf16 requested but this CPU has neither AVX512-BF16 nor AMX",
                key="bf16",
                hint="set bf16: false (bfloat16 would be emulated and slower than float32)",
            )
    check_report_to(config)


def check_report_to(config: "TrainingConfig") -> None:
    """Refuse a logging integration that is not installed.

    :raises StageError: when ``report_to`` is ``"tensorboard"`` and neither ``tensorboard``
        nor ``tensorboardX`` can be imported.
    """
    if getattr(config, "report_to", "none") == "tensorboard":
        from transformers.integrations import is_tensorboard_available

        if not is_tensorboard_available():
            raise StageError(
                "report_to 'tensorboard' needs the tensorboard package",
                key="report_to",
                hint="pip install tensorboard, or set report_to: none",
            )


def cpu_supports_bf16() -> bool:
    """Whether this CPU has native bfloat16 arithmetic (AVX512-BF16 or AMX tiles)."""
    cpu = getattr(torch, "cpu", None)
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        fn = getattr(cpu, probe, None)
        if fn is not None:
            try:
                if fn():
                    return True
            except Exception:  # noqa: BLE001 - a probe that fails means "not known to work"
                continue
    return False


def load_tokenizer(path: str | Path, artifact_name: str) -> "PreTrainedTokenizerBase":
    """Load the tokenizer saved with an artifact.

    :raises StageError: when the directory holds no loadable tokenizer.
    """
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path))
    except Exception as exc:  # noqa: BLE001 - re-raised with context
        raise StageError(
            f"artifact {artifact_name!r} at {path} has no loadable tokenizer: {exc}",
            hint="save the tokenizer with the model (tokenizer.save_pretrained(dir))",
        ) from exc


def effective_max_length(
    tokenizer: "PreTrainedTokenizerBase", max_length: int, context: "StageContext"
) -> int:
    """``max_length`` capped at the tokenizer's ``model_max_length`` when that one is set."""
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 1_000_000 and max_length > limit:
        context.logger.warning(
            "%s: max_length %d exceeds the tokenizer's model_max_length %d; using %d",
            context.stage_name, max_length, limit, limit,
        )
        return limit
    return max_length


def tokenize_split(
    dataset: "datasets.Dataset",
    tokenizer: "PreTrainedTokenizerBase",
    max_length: int,
    has_text_pair: bool,
    *,
    progress: bool = True,
) -> "datasets.Dataset":
    """Tokenise a split with :meth:`datasets.Dataset.map` (truncation, no padding).

    :param dataset: columns ``text``, optional ``text_pair``, ``label`` (int).
    :param tokenizer: the model's tokenizer.
    :param max_length: tokens per example after truncation.
    :param has_text_pair: encode ``(text, text_pair)`` pairs.
    :param progress: show the data set library's progress bar.
    :returns: a data set with the tokenizer's model inputs (``input_ids``,
        ``attention_mask``, and ``token_type_ids`` where the tokenizer makes them) and
        ``labels`` (int64); padding happens per batch in the collator.
    """

    def encode(batch: dict[str, list[Any]]) -> dict[str, Any]:
        pair = batch["text_pair"] if has_text_pair else None
        enc = tokenizer(batch["text"], pair, truncation=True, max_length=max_length)
        enc["labels"] = [int(x) for x in batch["label"]]
        return dict(enc)

    import datasets

    silence = not progress and datasets.is_progress_bar_enabled()
    if silence:
        datasets.disable_progress_bars()
    try:
        return dataset.map(
            encode,
            batched=True,
            remove_columns=list(dataset.column_names),
            desc="tokenizing",
        )
    finally:
        if silence:
            datasets.enable_progress_bars()


def compute_accuracy(eval_pred: Any) -> dict[str, float]:
    """Accuracy of argmax predictions, for ``Trainer(compute_metrics=...)``.

    :param eval_pred: ``(logits (N, C) float, labels (N,) int)`` as numpy arrays.
    :returns: ``{"accuracy": fraction in [0, 1]}``.
    """
    logits, labels = eval_pred
    if isinstance(logits, tuple):
        logits = logits[0]
    preds = np.asarray(logits).argmax(axis=-1)
    return {"accuracy": float((preds == np.asarray(labels)).mean())}


def training_arguments(
    config: "TrainingConfig", context: "StageContext", *, has_validation: bool, seed: int
) -> "TrainingArguments":
    """Build the Trainer arguments of a training stage.

    Checkpoints go to ``context.work_dir`` once per epoch (or every ``eval_steps``), one kept
    (plus the best one when early stopping). Evaluation on ``validation`` happens every
    ``eval_steps`` when set, else every epoch when early stopping is on, else only at the end
    (by the caller).

    :raises StageError: when early stopping is requested without a validation split.
    """
    from transformers import TrainingArguments

    early = config.early_stopping_patience is not None
    if (early or config.eval_steps is not None) and not has_validation:
        raise StageError(
            "early_stopping_patience and eval_steps need a 'validation' split; the task has none",
            key="early_stopping_patience" if early else "eval_steps",
        )
    if config.eval_steps is not None:
        eval_strategy, save_strategy = "steps", "steps"
    elif early:
        eval_strategy, save_strategy = "epoch", "epoch"
    else:
        eval_strategy, save_strategy = "no", "epoch"
    return TrainingArguments(
        output_dir=str(context.work_dir),
        num_train_epochs=config.epochs,
        learning_rate=config.learning_rate,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size,
        weight_decay=config.weight_decay,
        warmup_steps=float(config.warmup_ratio),  # transformers 5: a float in [0, 1) is a ratio
        lr_scheduler_type="linear",
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        eval_strategy=eval_strategy,
        eval_steps=config.eval_steps,
        save_strategy=save_strategy,
        save_steps=config.eval_steps if config.eval_steps is not None else 500,
        save_total_limit=1,
        # No pickled weights. transformers 5 removed ``save_safetensors`` (passing it is a
        # TypeError): save_pretrained, and so every checkpoint and the saved model, always
        # writes model.safetensors. The Trainer's own state in a checkpoint (optimizer.pt,
        # scheduler.pt, rng_state.pth, scaler.pt) is still torch.save'd; transformers 5.24's
        # Trainer._load_optimizer_and_scheduler / _load_rng_state read it only with
        # torch.load(weights_only=True) after check_torch_load_is_safe() (torch >= 2.6),
        # rng_state.pth under safe_globals() for its numpy state (see pyproject.toml on
        # CVE-2026-1839). training_args.bin is written, never loaded, and save_trained_model
        # drops it from the artifact.
        # tests/core/test_no_pickle.py checks all of this.
        load_best_model_at_end=early,
        metric_for_best_model="accuracy" if early else None,
        greater_is_better=True if early else None,
        logging_strategy="steps",
        logging_steps=config.logging_steps,
        report_to=getattr(config, "report_to", "none"),
        disable_tqdm=not context.progress,
        use_cpu=context.device == "cpu",
        dataloader_num_workers=0,
        seed=seed,
        data_seed=seed,
        fp16=config.fp16,
        bf16=config.bf16,
    )


def callbacks(config: "TrainingConfig") -> list[Any]:
    """Trainer callbacks for ``config``: :class:`~transformers.EarlyStoppingCallback` if set."""
    from transformers import EarlyStoppingCallback

    if config.early_stopping_patience is None:
        return []
    return [EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience)]


def last_checkpoint(work_dir: str | Path) -> str | None:
    """The newest ``checkpoint-N`` folder in ``work_dir``, or ``None``."""
    from transformers.trainer_utils import get_last_checkpoint

    work_dir = Path(work_dir)
    if not work_dir.is_dir():
        return None
    return get_last_checkpoint(str(work_dir))


def train_and_evaluate(
    trainer: "Trainer", context: "StageContext", *, has_validation: bool
) -> dict[str, Any]:
    """Train (resuming from the last checkpoint in ``context.work_dir`` if any), then evaluate.

    :returns: JSON-ready metrics: ``train_loss`` (mean over the run, float),
        ``train_runtime_s`` (s), ``global_step``, ``epochs_trained``,
        ``resumed_from_checkpoint`` (folder name or ``None``), and when a validation split
        exists ``validation_accuracy`` (fraction) and ``validation_loss``.
    """
    resume = last_checkpoint(context.work_dir)
    if resume is not None:
        context.logger.info("%s: resuming from %s", context.stage_name, resume)
    result = trainer.train(resume_from_checkpoint=resume)
    metrics: dict[str, Any] = {
        "train_loss": _finite(result.training_loss),
        "train_runtime_s": _finite(result.metrics.get("train_runtime")),
        "global_step": int(trainer.state.global_step),
        "epochs_trained": _finite(trainer.state.epoch),
        "resumed_from_checkpoint": Path(resume).name if resume else None,
    }
    if has_validation:
        ev = trainer.evaluate()
        metrics["validation_accuracy"] = _finite(ev.get("eval_accuracy"))
        metrics["validation_loss"] = _finite(ev.get("eval_loss"))
        accuracy = metrics["validation_accuracy"]
        context.logger.info(
            "%s: validation accuracy %.4f after %s epochs (%d steps)",
            context.stage_name,
            float("nan") if accuracy is None else accuracy,
            metrics["epochs_trained"],
            metrics["global_step"],
        )
    return metrics


def save_trained_model(trainer: "Trainer", output_dir: str | Path) -> None:
    """Save the trained model (safetensors) and the trainer's tokenizer into ``output_dir``.

    Goes through :meth:`Trainer.save_model` so that sharded (FSDP, DeepSpeed) models are
    gathered; drops the ``training_args.bin`` pickle it writes, which is not part of a model.
    A model whose shapes its config does not rebuild (e.g. a pruned model with per-layer FFN
    widths) also gets its ``compressor_structure.json`` (see :mod:`compressor.structure`).
    """
    from ..structure import STRUCTURE_FILE, structure_diff, write_structure

    trainer.save_model(str(output_dir))
    if trainer.is_world_process_zero():
        (Path(output_dir) / TRAINING_ARGS_FILE).unlink(missing_ok=True)
        model = trainer.accelerator.unwrap_model(trainer.model)
        (Path(output_dir) / STRUCTURE_FILE).unlink(missing_ok=True)
        modules, attributes = structure_diff(model)
        if modules or attributes:
            write_structure(output_dir, modules, attributes)


def _finite(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None
