"""Training hyper-parameters shared by every strategy that trains with transformers' Trainer.

This module is light on purpose (pydantic and the compressor core only): recipe validation
imports it without loading torch or transformers.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ..strategy import StrategyConfig


class TrainingConfig(StrategyConfig):
    """Hyper-parameters of a supervised training run on the task's ``train`` split.

    Training runs on :class:`transformers.Trainer` (hence Accelerate): AdamW with a linear
    warm-up then linear decay, dynamic padding, checkpoints once per epoch (or every
    ``eval_steps``) in the stage's work directory so that an interrupted stage resumes.

    ``batch_size`` is the global batch of one forward pass: under a launcher with N
    processes each process takes ``batch_size / N`` examples, so one optimiser step sees
    ``batch_size x gradient_accumulation_steps`` examples whatever N (see
    :func:`compressor.training.trainer.per_device_batch`).

    Sample recipe stage::

        - name: finetune
          strategy: finetune
          config:
            epochs: 3
            learning_rate: 5.0e-5
            batch_size: 32
            early_stopping_patience: 2
    """

    epochs: float = Field(
        1.0, gt=0, le=1000, description="Passes over the train split; fractions are allowed."
    )
    learning_rate: float = Field(
        5e-5, gt=0, le=1.0, description="Peak learning rate of AdamW, reached after warm-up."
    )
    batch_size: int = Field(
        32,
        ge=1,
        le=65536,
        description=(
            "Training examples per forward pass, over all processes: under a launcher with N "
            "processes each takes batch_size / N (N must divide it), so a step trains on the "
            "same number of examples whatever N."
        ),
    )
    eval_batch_size: int = Field(
        64, ge=1, le=65536, description="Validation examples per device per forward pass."
    )
    weight_decay: float = Field(
        0.01, ge=0, le=1.0, description="AdamW decoupled weight decay (biases and norms excluded)."
    )
    warmup_ratio: float = Field(
        0.06, ge=0, lt=1.0, description="Fraction of optimisation steps spent warming up linearly."
    )
    max_length: int = Field(
        128, ge=4, le=65536, description="Tokens per example; longer inputs are truncated."
    )
    max_steps: int | None = Field(
        None,
        ge=1,
        le=1_000_000_000,
        description=(
            "Train for exactly this many optimiser steps, overriding epochs; required for a "
            "streamed corpus, which has no length."
        ),
    )
    gradient_accumulation_steps: int = Field(
        1, ge=1, le=4096, description="Forward passes accumulated before each optimiser step."
    )
    early_stopping_patience: int | None = Field(
        None,
        ge=1,
        le=1000,
        description=(
            "Stop after this many evaluations without a better validation accuracy and keep "
            "the best checkpoint; null trains for all epochs."
        ),
    )
    eval_steps: int | None = Field(
        None,
        ge=1,
        le=10_000_000,
        description="Evaluate (and checkpoint) every this many optimiser steps; null: every epoch.",
    )
    save_steps: int | None = Field(
        None,
        ge=1,
        le=10_000_000,
        description=(
            "Checkpoint every this many optimiser steps (an interrupted stage resumes from the "
            "last one); null: every eval_steps, else every epoch."
        ),
    )
    fp16: bool = Field(False, description="float16 mixed precision (CUDA only).")
    bf16: bool | Literal["auto"] = Field(
        False,
        description=(
            "bfloat16 mixed precision (autocast): true needs CUDA with bf16 or a CPU with "
            "AVX512-BF16/AMX; 'auto' uses it where the hardware has it and float32 elsewhere."
        ),
    )
    group_by_length: bool = Field(
        False,
        description=(
            "Batch training examples of similar length (transformers' LengthGroupedSampler: "
            "random mega-batches of up to 50 batches, each sorted by length) so short "
            "examples are not padded to a long one's length."
        ),
    )
    dataloader_workers: int = Field(
        0,
        ge=0,
        le=64,
        description=(
            "Worker processes that collate training batches beside the training loop; 0 "
            "collates in the loop (best on a few CPU cores, where workers take the cores "
            "the step needs)."
        ),
    )
    logging_steps: int = Field(
        50, ge=1, le=10_000_000, description="Log the training loss every this many optimiser steps."
    )
    seed: int | None = Field(
        None, ge=0, le=2**32 - 1, description="Seed of this stage; null uses the run's seed."
    )
    report_to: Literal["none", "tensorboard"] = Field(
        "none",
        description=(
            "Where the Trainer also sends its logs (each loss term included): 'none' (console "
            "and trainer_state.json only) or 'tensorboard' (event files under the stage's "
            "work folder, runs/; needs the tensorboard package)."
        ),
    )

    @model_validator(mode="after")
    def _one_precision(self) -> "TrainingConfig":
        if self.fp16 and self.bf16:
            raise ValueError("fp16 and bf16 are exclusive: set at most one of them")
        return self
