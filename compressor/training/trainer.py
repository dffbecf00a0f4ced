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
class TrainingSplits:
    """The splits a training run uses.

    :param train: the ``train`` split (the task's normalised columns).
    :param validation: the ``validation`` split, or ``None`` when the task has none.
    """

    train: "datasets.Dataset"
    validation: "datasets.Dataset | None"


def training_splits(data: "TaskData", strategy: str) -> TrainingSplits:
    """Check that ``data`` can train the task's head and return its splits.

    The task (:meth:`compressor.tasks.Task.check_training_data`) checks its own columns and
    labels.

    :param data: the task's data.
    :param strategy: the calling strategy's name, for messages.
    :returns: the ``train`` split and the ``validation`` split (``None`` if absent or empty).
    :raises StageError: when the task cannot be trained from labels (raw-text tasks), has no
        ``train`` split, lacks its columns, or has labels out of range.
    """
    task = data.task
    if not task.supervised:
        raise StageError(
            f"strategy {strategy!r} trains a task head from labels, which task "
            f"{data.type!r} does not have",
            expected="a task with labels (text-classification, text-regression, "
            "token-classification, question-answering)",
        )
    task.check_training_data(data, strategy)
    validation = data.splits.get("validation")
    if validation is not None and len(validation) == 0:
        validation = None
    return TrainingSplits(train=data.splits["train"], validation=validation)


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
    if config.bf16 is True:  # "auto" falls back to float32 where bf16 is missing
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


def use_bf16(config: "TrainingConfig", device: str) -> bool:
    """Whether a stage trains under bfloat16 autocast.

    :param config: ``bf16``: ``True``/``False`` as given; ``"auto"``: on CUDA when the GPU
        supports bf16, on CPU when :func:`compressor.hardware.cpu_flags` lists ``amx_bf16`` or
        ``avx512_bf16`` (``COMPRESSOR_CPUINFO`` fakes another CPU), else ``False``.
    :param device: ``"cpu"`` or ``"cuda"`` (``"cuda:N"`` accepted).
    """
    if config.bf16 != "auto":
        return bool(config.bf16)
    if device.startswith("cuda"):
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    from ..hardware import cpu_flags

    return bool(cpu_flags() & {"amx_bf16", "avx512_bf16"})


def per_device_batch(batch_size: int, processes: int, *, key: str = "batch_size") -> int:
    """The examples each process takes per forward pass so that the recipe's batch stays the
    global batch.

    :param batch_size: the recipe's batch (examples per forward pass over all processes).
    :param processes: processes of the run (``WORLD_SIZE``).
    :param key: the config key, for messages.
    :returns: ``batch_size / processes``.
    :raises StageError: when ``processes`` does not divide ``batch_size``.
    """
    if batch_size % processes:
        lower = max(processes, batch_size - batch_size % processes)
        raise StageError(
            f"{key} {batch_size} does not split evenly over {processes} processes",
            key=key,
            expected=f"a multiple of {processes}",
            hint=f"set {key} to {lower} or {lower + processes}, or launch a number of processes "
            f"that divides {batch_size}",
        )
    return batch_size // processes


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
    data: "TaskData",
    *,
    progress: bool = True,
) -> "datasets.Dataset":
    """Tokenise a split for training with the task's :meth:`~compressor.tasks.Task.tokenize`
    (truncation, no padding; labels aligned to the inputs).

    :param dataset: a split with the task's normalised columns.
    :param tokenizer: the model's tokenizer.
    :param max_length: tokens per example after truncation.
    :param data: the task's data (its task, text-pair flag, label names, options).
    :param progress: show the data set library's progress bar.
    :returns: the tokenizer's model inputs plus the task's label columns; padding happens
        per batch in the task's collator.
    """
    return data.task.tokenize(dataset, tokenizer, max_length, data, progress=progress)


def compute_metrics(data: "TaskData") -> Any:
    """``Trainer(compute_metrics=...)`` of the task (accuracy for classification), or
    ``None`` when the task watches its validation loss."""
    return data.task.compute_metrics(data)


def training_arguments(
    config: "TrainingConfig", context: "StageContext", *, has_validation: bool, seed: int,
    best_metric: tuple[str, bool] | None = ("accuracy", True),
) -> "TrainingArguments":
    """Build the Trainer arguments of a training stage.

    Checkpoints go to ``context.work_dir`` once per epoch (or every ``eval_steps``), one kept
    (plus the best one when early stopping). Evaluation on ``validation`` happens every
    ``eval_steps`` when set, else every epoch when early stopping is on, else only at the end
    (by the caller).

    Under a launcher with N processes each process takes ``config.batch_size / N`` examples
    per forward pass (:func:`per_device_batch`): the recipe's batch is the global one.
    ``group_by_length`` selects transformers' length-grouped sampler, ``dataloader_workers``
    the data loader's workers, ``bf16: auto`` bfloat16 autocast where the hardware has it
    (:func:`use_bf16`).

    :param best_metric: ``(metric, greater_is_better)`` that early stopping keeps the best
        checkpoint by (:meth:`compressor.tasks.Task.training_metric`); ``None``: the
        validation loss.
    :raises StageError: when early stopping is requested without a validation split, or
        the processes do not divide ``batch_size``.
    """
    from transformers import TrainingArguments

    from ..distributed import world_size

    processes = world_size()
    per_device = per_device_batch(config.batch_size, processes)
    group = getattr(config, "group_by_length", False)

    best_name, best_greater = best_metric if best_metric is not None else ("loss", False)

    early = config.early_stopping_patience is not None
    if (early or config.eval_steps is not None) and not has_validation:
        raise StageError(
            "early_stopping_patience and eval_steps need a 'validation' split; the task has none",
            key="early_stopping_patience" if early else "eval_steps",
        )
    save_every = getattr(config, "save_steps", None)
    if config.eval_steps is not None:
        eval_strategy, save_strategy = "steps", "steps"
    elif early:
        eval_strategy, save_strategy = "epoch", "epoch"
    else:
        eval_strategy, save_strategy = "no", "steps" if save_every is not None else "epoch"
    if save_every is None:
        save_every = config.eval_steps if config.eval_steps is not None else 500
    elif early and config.eval_steps is not None and save_every % config.eval_steps:
        raise StageError(
            f"save_steps {save_every} must be a multiple of eval_steps {config.eval_steps} when "
            "early stopping keeps the best checkpoint",
            key="save_steps",
        )
    return TrainingArguments(
        output_dir=str(context.work_dir),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps if getattr(config, "max_steps", None) is not None else -1,
        learning_rate=config.learning_rate,
        per_device_train_batch_size=per_device,
        per_device_eval_batch_size=config.eval_batch_size,
        weight_decay=config.weight_decay,
        warmup_steps=float(config.warmup_ratio),  # transformers 5: a float in [0, 1) is a ratio
        lr_scheduler_type="linear",
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        eval_strategy=eval_strategy,
        eval_steps=config.eval_steps,
        save_strategy=save_strategy,
        save_steps=save_every,
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
        metric_for_best_model=best_name if early else None,
        greater_is_better=best_greater if early else None,
        logging_strategy="steps",
        logging_steps=config.logging_steps,
        report_to=getattr(config, "report_to", "none"),
        disable_tqdm=not context.progress,
        use_cpu=context.device == "cpu",
        dataloader_num_workers=getattr(config, "dataloader_workers", 0),
        dataloader_persistent_workers=getattr(config, "dataloader_workers", 0) > 0,
        train_sampling_strategy="group_by_length" if group else "random",
        # Off: each process's loss is the mean over its own examples and DDP averages the
        # gradients, i.e. the global mean at equal per-process batches. On (the default),
        # transformers 5.24 multiplies the loss by the process count for every model whose
        # forward takes **kwargs, also those (sequence classification) whose loss ignores
        # num_items_in_batch: gradients N times a single process's.
        average_tokens_across_devices=False,
        seed=seed,
        data_seed=seed,
        fp16=config.fp16,
        bf16=use_bf16(config, context.device),
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
        ``resumed_from_checkpoint`` (folder name or ``None``), ``global_batch`` (examples
        per optimiser step over all processes), ``per_device_batch``, ``processes``,
        ``train_steps_per_second``, and when a validation split exists ``validation_loss`` and ``validation_<metric>`` for each metric the task's
        ``compute_metrics`` returns (``validation_accuracy`` for classification).
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
        "global_batch": int(
            trainer.args.per_device_train_batch_size * trainer.args.world_size
            * trainer.args.gradient_accumulation_steps
        ),
        "per_device_batch": int(trainer.args.per_device_train_batch_size),
        "processes": int(trainer.args.world_size),
        "train_steps_per_second": _finite(result.metrics.get("train_steps_per_second")),
    }
    if has_validation:
        ev = trainer.evaluate()
        watched = [k[len("eval_"):] for k in ev if k.startswith("eval_") and k[5:] not in _EVAL_TIMING]
        for name in watched:
            metrics[f"validation_{name}"] = _finite(ev.get(f"eval_{name}"))
        shown = next((n for n in watched if n != "loss"), "loss")
        value = metrics.get(f"validation_{shown}")
        context.logger.info(
            "%s: validation %s %.4f after %s epochs (%d steps)",
            context.stage_name,
            shown,
            float("nan") if value is None else value,
            metrics["epochs_trained"],
            metrics["global_step"],
        )
    return metrics


_EVAL_TIMING = {"runtime", "samples_per_second", "steps_per_second", "epoch"}


def save_trained_model(trainer: "Trainer", output_dir: str | Path) -> None:
    """Save the trained model (safetensors) and the trainer's tokenizer into ``output_dir``.

    Goes through :meth:`Trainer.save_model` so that sharded (FSDP, DeepSpeed) models are
    gathered; drops the ``training_args.bin`` pickle it writes, which is not part of a model.
    A model whose shapes its config does not rebuild (e.g. a pruned model with per-layer FFN
    widths) also gets its ``compressor_structure.json`` (see :mod:`compressor.structure`),
    and its weights are then saved under the model's own parameter names
    (``save_original_format=False``), which is how the structure loader reads them.
    """
    from ..structure import STRUCTURE_FILE, structure_diff, write_structure

    trainer.save_model(str(output_dir))
    if trainer.is_world_process_zero():
        (Path(output_dir) / TRAINING_ARGS_FILE).unlink(missing_ok=True)
        model = trainer.accelerator.unwrap_model(trainer.model)
        (Path(output_dir) / STRUCTURE_FILE).unlink(missing_ok=True)
        modules, attributes = structure_diff(model)
        if modules or attributes:
            # the structure loader reads the weights under the model's own names: save them
            # again without the family's checkpoint renaming (see structure.save_pretrained)
            model.save_pretrained(str(output_dir), safe_serialization=True, save_original_format=False)
            write_structure(output_dir, modules, attributes)


def _finite(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None
