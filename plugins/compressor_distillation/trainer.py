"""A :class:`transformers.Trainer` that trains a student against a frozen teacher."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import Trainer

from .losses import DistillationLoss, LossTerms

TERM_KEYS = ("loss_ce", "loss_task", "loss_cos")
"""Keys under which the loss terms appear in ``trainer.state.log_history`` (and the console)."""


class DistillationTrainer(Trainer):
    """Trainer whose training loss is the DistilBERT triple loss (Sanh et al. 2019).

    The teacher runs in eval mode under ``torch.no_grad`` on the training device; it is not
    an attribute of the trained model, so it is neither optimised nor written into
    checkpoints. Each term (``loss_ce``, ``loss_task``, ``loss_cos``) is averaged over the
    logging window and logged with the training ``loss``, so it reaches the console,
    ``state.log_history`` and any ``report_to`` integration. Evaluation uses the student's
    plain cross-entropy (``eval_loss``) and the configured metrics.

    :param teacher: the frozen teacher; same tokenizer and inputs as the student.
    :param distillation_loss: the :class:`~compressor_distillation.losses.DistillationLoss`.
    :param args: other positional and keyword arguments of :class:`transformers.Trainer`.
    """

    def __init__(
        self, *args: Any, teacher: nn.Module, distillation_loss: DistillationLoss, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        # our loss is a per-batch mean: let the Trainer divide by the accumulation steps
        self.model_accepts_loss_kwargs = False
        self.teacher = teacher.to(self.args.device)
        self.teacher.eval()
        self.teacher.requires_grad_(False)
        self.distillation_loss = distillation_loss
        self._term_sums: torch.Tensor | None = None
        self._term_count = 0

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        """Training: the weighted distillation loss; evaluation: the student's cross-entropy."""
        if not model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs["labels"]
        features = {k: v for k, v in inputs.items() if k != "labels"}
        hidden = self.distillation_loss.needs_hidden_states
        student_out = model(**features, output_hidden_states=hidden)
        with torch.no_grad():
            self.teacher.eval()
            with self.accelerator.autocast():
                teacher_out = self.teacher(**features, output_hidden_states=hidden)
        terms = self.distillation_loss(
            student_logits=student_out.logits,
            teacher_logits=teacher_out.logits,
            labels=labels,
            student_hidden=student_out.hidden_states[-1] if hidden else None,
            teacher_hidden=teacher_out.hidden_states[-1] if hidden else None,
            attention_mask=features.get("attention_mask"),
        )
        self._accumulate(terms)
        return (terms.total, student_out) if return_outputs else terms.total

    def _accumulate(self, terms: LossTerms) -> None:
        nan = torch.full_like(terms.ce, float("nan"))
        row = torch.stack(
            [terms.ce.detach(), terms.task.detach(), nan if terms.cos is None else terms.cos.detach()]
        )
        self._term_sums = row if self._term_sums is None else self._term_sums + row
        self._term_count += 1

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """Add the loss terms, averaged since the previous training log, to a training log."""
        if "loss" in logs and self._term_sums is not None and self._term_count:
            mean = self._nested_gather((self._term_sums / self._term_count).unsqueeze(0))
            mean = mean.reshape(-1, len(TERM_KEYS)).mean(dim=0).tolist()
            for key, value in zip(TERM_KEYS, mean):
                if value == value:  # skip NaN: a term that was not computed
                    logs[key] = round(float(value), 6)
            self._term_sums = None
            self._term_count = 0
        super().log(logs, *args, **kwargs)
