"""The teacher-matching (knowledge-distillation) losses shared by every strategy that trains
against a teacher: ``distill.distilbert`` (task mode and MLM mode) and ``prune.movement``'s
optional teacher. Heavy: imports torch.

- :func:`soft_target_loss`: Hinton et al. (2015), ``T^2 * KL(softmax(z_t/T) || softmax(z_s/T))``;
- :func:`task_soft_target_loss`: that loss over a task's soft targets
  (:meth:`compressor.tasks.Task.soft_targets`), MSE for value targets.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["soft_target_loss", "task_soft_target_loss"]


def soft_target_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Soft-target loss ``KL(p_t || p_s) * T**2`` (Hinton, Vinyals & Dean 2015).

    Computed as ``F.kl_div(F.log_softmax(z_s / T), F.softmax(z_t / T),
    reduction="batchmean") * T**2``: the sum over classes and batch divided by the batch size.

    :param student_logits: ``(N, C)`` float, the student's logits ``z_s`` (one row per example,
        or per selected token position).
    :param teacher_logits: ``(N, C)`` float, the teacher's logits ``z_t`` (no gradient needed).
    :param temperature: ``T > 0``; softens both distributions.
    :returns: scalar float32 tensor, ``>= 0``.
    :raises ValueError: when the shapes differ or ``T <= 0``.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)} differ in shape"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    t = float(temperature)
    log_p_s = F.log_softmax(student_logits.float() / t, dim=-1)
    p_t = F.softmax(teacher_logits.float() / t, dim=-1)
    return F.kl_div(log_p_s, p_t, reduction="batchmean") * (t * t)


def task_soft_target_loss(
    task: Any, student_out: Any, teacher_out: Any, batch: dict[str, Any], temperature: float
) -> torch.Tensor:
    """:func:`soft_target_loss` over the task's soft targets, averaged over them.

    :meth:`compressor.tasks.Task.soft_targets` gives the rows a student matches (per
    example, per labelled token, the start and end distributions of QA); a
    ``"distribution"`` target gets the soft-target KL with temperature, any other kind (a
    regression score, an embedding) the MSE to the teacher's values. A target with no rows
    in this batch contributes a zero that keeps the graph.

    :param task: the run's :class:`compressor.tasks.Task`.
    :param student_out: the student's forward output; ``teacher_out`` the teacher's on the
        same batch.
    :param batch: the student's batch (``labels`` marks ignored positions).
    :param temperature: ``T > 0``.
    :returns: a scalar float32 tensor.
    """
    teacher = {t.name: t.values for t in task.soft_targets(teacher_out, batch)}
    terms = []
    for target in task.soft_targets(student_out, batch):
        ref = teacher[target.name]
        if target.values.shape[0] == 0:
            terms.append(target.values.float().sum() * 0.0)
        elif target.kind == "distribution":
            terms.append(soft_target_loss(target.values, ref, temperature))
        else:
            terms.append(F.mse_loss(target.values.float(), ref.float()))
    return torch.stack(terms).mean()
