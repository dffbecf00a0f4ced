"""The DistilBERT triple loss (Sanh et al. 2019), task-distillation form.

``L = alpha_ce * L_ce + alpha_task * L_task + alpha_cos * L_cos`` where

- ``L_ce``: soft-target loss, ``KL(softmax(z_t / T) || softmax(z_s / T)) * T**2``, averaged
  over the batch (Hinton, Vinyals and Dean 2015, "Distilling the Knowledge in a Neural
  Network": the ``T**2`` factor keeps its gradients on the scale of the hard-label loss when
  ``T`` changes);
- ``L_task``: cross-entropy of the student's logits with the gold labels (in the role of
  DistilBERT's ``L_mlm`` in general distillation);
- ``L_cos``: ``1 - cos(h_s, h_t)`` between the last hidden states of student and teacher,
  averaged over non-padding positions (``torch.nn.CosineEmbeddingLoss`` with target 1).

Every function computes in float32 whatever the input dtype (fp16/bf16 autocast included).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from compressor.errors import StageError


def soft_target_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Soft-target loss ``KL(p_t || p_s) * T**2`` (Hinton et al. 2015).

    Computed as ``F.kl_div(F.log_softmax(z_s / T), F.softmax(z_t / T),
    reduction="batchmean") * T**2``: the sum over classes and batch divided by the batch size.

    :param student_logits: ``(B, C)`` float, the student's logits ``z_s``.
    :param teacher_logits: ``(B, C)`` float, the teacher's logits ``z_t`` (no gradient needed).
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


def task_loss(student_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the student's logits with the gold labels.

    :param student_logits: ``(B, C)`` float.
    :param labels: ``(B,)`` int64 class indices; ``-100`` entries are ignored.
    :returns: scalar float32 tensor, the mean over the labelled examples.
    """
    return F.cross_entropy(student_logits.float(), labels.long())


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
    :raises StageError: when hidden sizes differ (a projection would be needed; not
        implemented yet).
    :raises ValueError: when batch or sequence shapes differ.
    """
    if student_hidden.shape[-1] != teacher_hidden.shape[-1]:
        raise StageError(
            f"the cosine loss needs equal hidden sizes, got student {student_hidden.shape[-1]} "
            f"and teacher {teacher_hidden.shape[-1]}",
            key="alpha_cos",
            hint="set alpha_cos: 0 (projections between hidden sizes are not implemented yet)",
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


@dataclass(frozen=True)
class LossTerms:
    """One evaluation of :class:`DistillationLoss` (scalar float32 tensors).

    :param total: ``alpha_ce * ce + alpha_task * task + alpha_cos * cos`` (with gradient).
    :param ce: soft-target loss ``L_ce``.
    :param task: hard-label cross-entropy ``L_task``.
    :param cos: hidden-state cosine loss ``L_cos``, or ``None`` when not computed.
    """

    total: torch.Tensor
    ce: torch.Tensor
    task: torch.Tensor
    cos: torch.Tensor | None


@dataclass(frozen=True)
class DistillationLoss:
    """DistilBERT's weighted sum of losses, task-distillation form (Sanh et al. 2019).

    :param temperature: softmax temperature ``T > 0`` of the soft targets (reference: 2.0).
    :param alpha_ce: weight of ``L_ce`` (reference: 5.0).
    :param alpha_task: weight of ``L_task`` (DistilBERT's ``alpha_mlm``, reference 2.0).
    :param alpha_cos: weight of ``L_cos`` (reference: 1.0); 0 skips the hidden states.
    :raises ValueError: for ``T <= 0``, a negative weight, or all weights 0.
    """

    temperature: float = 2.0
    alpha_ce: float = 5.0
    alpha_task: float = 2.0
    alpha_cos: float = 1.0

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        weights = (self.alpha_ce, self.alpha_task, self.alpha_cos)
        if min(weights) < 0 or max(weights) <= 0:
            raise ValueError(f"loss weights must be >= 0 and not all 0, got {weights}")

    @property
    def needs_hidden_states(self) -> bool:
        """Whether :meth:`__call__` needs the last hidden states (``alpha_cos > 0``)."""
        return self.alpha_cos > 0

    def __call__(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor,
        labels: torch.Tensor,
        student_hidden: torch.Tensor | None = None,
        teacher_hidden: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> LossTerms:
        """Compute the three terms and their weighted sum.

        :param student_logits: ``(B, C)`` float.
        :param teacher_logits: ``(B, C)`` float (detached).
        :param labels: ``(B,)`` int64 gold labels.
        :param student_hidden: ``(B, L, H)`` float; required when ``alpha_cos > 0``.
        :param teacher_hidden: ``(B, L, H)`` float; required when ``alpha_cos > 0``.
        :param attention_mask: ``(B, L)``, 1 at real tokens.
        :returns: :class:`LossTerms`; ``cos`` is ``None`` when ``alpha_cos == 0``.
        :raises ValueError: when hidden states are missing but ``alpha_cos > 0``.
        """
        ce = soft_target_loss(student_logits, teacher_logits, self.temperature)
        task = task_loss(student_logits, labels)
        total = self.alpha_ce * ce + self.alpha_task * task
        cos = None
        if self.needs_hidden_states:
            if student_hidden is None or teacher_hidden is None:
                raise ValueError("alpha_cos > 0 needs student_hidden and teacher_hidden")
            cos = hidden_cosine_loss(student_hidden, teacher_hidden, attention_mask)
            total = total + self.alpha_cos * cos
        return LossTerms(total=total, ce=ce, task=task, cos=cos)
