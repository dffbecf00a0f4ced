"""The teacher-matching (knowledge-distillation) losses shared by every strategy that trains
against a teacher: ``distill.distilbert`` (task mode and MLM mode) and ``prune.movement``'s
optional teacher. Heavy: imports torch.

- :func:`soft_target_loss`: Hinton et al. (2015), ``T^2 * KL(softmax(z_t/T) || softmax(z_s/T))``;
- :func:`task_soft_target_loss`: that loss over a task's soft targets
  (:meth:`compressor.tasks.Task.soft_targets`), MSE for value targets;
- :func:`hidden_cosine_loss`: DistilBERT's ``L_cos`` (Sanh et al. 2019), ``1 - cos(h_s, h_t)``
  over non-padding positions (``distill.distilbert``, ``quantize.qat``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..errors import StageError

__all__ = ["hidden_cosine_loss", "soft_target_loss", "task_soft_target_loss"]


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


def hidden_cosine_loss(
    student_hidden: torch.Tensor,
    teacher_hidden: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cosine loss ``1 - cos(h_s, h_t)`` averaged over non-padding positions (Sanh et al. 2019).

    Equal to ``torch.nn.CosineEmbeddingLoss()(h_s[m], h_t[m], ones)`` with ``m`` the
    positions where ``attention_mask == 1``; values at padding positions have no influence.

    :param student_hidden: ``(B, L, H)`` float, the student's last hidden states.
    :param teacher_hidden: ``(B, L, H)`` float, the teacher's last hidden states.
    :param attention_mask: ``(B, L)`` int or bool, 1 at real tokens; ``None``: all positions.
    :returns: scalar float32 tensor in ``[0, 2]`` (0 when no position is unmasked).
    :raises StageError: when hidden sizes differ (project the student's states first, see
        :class:`Projection`).
    :raises ValueError: when batch or sequence shapes differ.
    """
    if student_hidden.shape[-1] != teacher_hidden.shape[-1]:
        raise StageError(
            f"the cosine loss needs equal hidden sizes, got student {student_hidden.shape[-1]} "
            f"and teacher {teacher_hidden.shape[-1]}",
            key="alpha_cos",
            hint="project the student's states to the teacher's width first (distill.distilbert "
            "does so automatically), or set alpha_cos: 0",
        )
    if student_hidden.shape != teacher_hidden.shape:
        raise ValueError(
            f"student hidden {tuple(student_hidden.shape)} and teacher hidden "
            f"{tuple(teacher_hidden.shape)} differ in shape"
        )
    cos = F.cosine_similarity(student_hidden.float(), teacher_hidden.float(), dim=-1, eps=1e-8)
    if attention_mask is None:
        return (1.0 - cos).mean()
    if attention_mask.shape != cos.shape:
        raise ValueError(
            f"attention mask {tuple(attention_mask.shape)} does not match hidden states "
            f"{tuple(student_hidden.shape[:2])}"
        )
    keep = attention_mask.bool()
    per_position = torch.where(keep, 1.0 - cos, torch.zeros_like(cos))
    return per_position.sum() / keep.sum().clamp_min(1)
