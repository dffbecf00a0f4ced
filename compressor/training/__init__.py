"""Training glue shared by every strategy that trains (fine-tuning, distillation, recovery).

- :class:`TrainingConfig` (light: pydantic only): the common Trainer settings a strategy's
  config extends;
- :mod:`compressor.training.trainer` (heavy: torch, transformers, datasets; import it inside
  ``apply``): tokenisation, ``TrainingArguments`` from a :class:`TrainingConfig`, precision
  checks, resume from the last checkpoint in the stage's work directory, saving.

Training itself is transformers' :class:`~transformers.Trainer` (hence Accelerate): the same
recipe runs under ``accelerate launch`` or ``torchrun`` on several GPUs with no code here.
"""

from .config import TrainingConfig

__all__ = ["TrainingConfig"]
