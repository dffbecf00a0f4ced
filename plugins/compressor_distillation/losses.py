"""The DistilBERT triple loss (Sanh et al. 2019), one code for task and masked-LM modes.

``L = alpha_ce * L_ce + alpha_task * L_task + alpha_cos * L_cos`` (+ optional layer terms) where

- ``L_ce``: soft-target loss, ``KL(softmax(z_t / T) || softmax(z_s / T)) * T**2``, averaged
  over the rows it is computed on (Hinton, Vinyals and Dean 2015, "Distilling the Knowledge
  in a Neural Network": the ``T**2`` factor keeps its gradients on the scale of the
  hard-label loss when ``T`` changes). Task mode: one row per example (``(B, C)`` logits).
  Masked-LM mode: one row per selected token position of the ``(B, S, V)`` logits; the
  reference code (``examples/research_projects/distillation/distiller.py``) selects every
  non-padding position by default (``restrict_ce_to_mask=False``), or only the masked ones;
- ``L_task``: cross-entropy with the gold labels, ``-100`` ignored. Task mode: the class
  labels. Masked-LM mode: DistilBERT's ``L_mlm``, the original tokens at masked positions;
- ``L_cos``: ``1 - cos(h_s, h_t)`` between the last hidden states of student and teacher,
  averaged over non-padding positions (``torch.nn.CosineEmbeddingLoss`` with target 1);
  a narrower student's states go through a learned linear projection first;
- layer terms (off by default): hidden-state MSE or cosine on chosen layer pairs (TinyBERT,
  Jiao et al. 2020) and the KL between attention distributions (MiniLM, Wang et al. 2020).

Every function computes in float32 whatever the input dtype (fp16/bf16 autocast included).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from compressor.errors import StageError

# the shared teacher-matching losses, re-exported here for this plugin's modules and users
from compressor.training.losses import hidden_cosine_loss, soft_target_loss


def task_loss(student_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the student's logits with the gold labels.

    :param student_logits: ``(B, C)`` float (task mode) or ``(B, S, V)`` (masked LM).
    :param labels: ``(B,)`` or ``(B, S)`` int64 class (token) indices; ``-100`` entries are
        ignored (every unmasked position in masked-LM mode).
    :returns: scalar float32 tensor, the mean over the labelled entries (0 if there is none).
    """
    logits = student_logits.float().reshape(-1, student_logits.shape[-1])
    flat = labels.long().reshape(-1)
    if not bool((flat != -100).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, flat, ignore_index=-100)


def select_positions(logits: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Rows of ``(B, S, V)`` logits at the selected positions.

    :param logits: ``(B, S, V)`` float.
    :param positions: ``(B, S)`` bool (or 0/1), True where the row is kept.
    :returns: ``(N, V)`` with ``N = positions.sum()``, in row-major (batch, position) order.
    :raises ValueError: when the shapes disagree.
    """
    if logits.dim() != 3 or positions.shape != logits.shape[:2]:
        raise ValueError(
            f"positions {tuple(positions.shape)} do not match logits {tuple(logits.shape)}"
        )
    return logits[positions.bool()]


def _masked_mean(per_position: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``(B, S)`` values over positions where ``attention_mask`` is 1 (all if None)."""
    if attention_mask is None:
        return per_position.mean()
    if attention_mask.shape != per_position.shape:
        raise ValueError(
            f"attention mask {tuple(attention_mask.shape)} does not match positions "
            f"{tuple(per_position.shape)}"
        )
    keep = attention_mask.bool()
    kept = torch.where(keep, per_position, torch.zeros_like(per_position))
    return kept.sum() / keep.sum().clamp_min(1)


def hidden_mse_loss(
    student_hidden: torch.Tensor,
    teacher_hidden: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean squared error between hidden states at non-padding positions (TinyBERT's
    ``L_hidn = MSE(H_s W_h, H_t)``, Jiao et al. 2020; project the student first if narrower).

    :param student_hidden: ``(B, S, H)`` float (already projected to the teacher's width).
    :param teacher_hidden: ``(B, S, H)`` float.
    :param attention_mask: ``(B, S)``, 1 at real tokens; ``None``: all positions.
    :returns: scalar float32: ``sum_{kept b,s} sum_h (h_s - h_t)^2 / (n_kept * H)``.
    :raises ValueError: when shapes differ.
    """
    if student_hidden.shape != teacher_hidden.shape:
        raise ValueError(
            f"student hidden {tuple(student_hidden.shape)} and teacher hidden "
            f"{tuple(teacher_hidden.shape)} differ in shape"
        )
    per_position = (student_hidden.float() - teacher_hidden.float()).pow(2).mean(dim=-1)
    return _masked_mean(per_position, attention_mask)


def attention_kl_loss(
    student_attention: torch.Tensor,
    teacher_attention: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """KL divergence between attention distributions (MiniLM's self-attention distribution
    transfer, Wang et al. 2020): ``KL(A_t[b, a, q, :] || A_s[b, a, q, :])``, averaged over heads
    and non-padding query positions.

    :param student_attention: ``(B, A, S, S)`` float, attention probabilities (rows sum to 1).
    :param teacher_attention: ``(B, A, S, S)`` float; the same number of heads ``A``.
    :param attention_mask: ``(B, S)``, 1 at real tokens (queries at padding are ignored; keys
        at padding have probability 0 in both); ``None``: all queries.
    :returns: scalar float32 tensor, ``>= 0``.
    :raises StageError: when the head counts differ (MiniLM v1 needs equal head counts).
    :raises ValueError: for other shape mismatches.
    """
    if student_attention.shape[1] != teacher_attention.shape[1]:
        raise StageError(
            f"attention KL needs equal head counts, got student {student_attention.shape[1]} "
            f"and teacher {teacher_attention.shape[1]}",
            key="layer_losses",
            hint="map these layers with a hidden-state loss (mse or cosine) instead",
        )
    if student_attention.shape != teacher_attention.shape:
        raise ValueError(
            f"student attention {tuple(student_attention.shape)} and teacher attention "
            f"{tuple(teacher_attention.shape)} differ in shape"
        )
    p_t = teacher_attention.float()
    log_p_s = student_attention.float().clamp_min(1e-12).log()
    kl = (torch.xlogy(p_t, p_t) - p_t * log_p_s).sum(dim=-1)  # (B, A, S)
    per_query = kl.mean(dim=1)  # (B, S): mean over heads
    return _masked_mean(per_query, attention_mask)


LayerLossKind = str
"""One of ``"mse"``, ``"cosine"`` (hidden states) or ``"attention-kl"``."""


@dataclass(frozen=True)
class LayerLoss:
    """A loss on one teacher/student layer pair (TinyBERT / MiniLM style).

    :param teacher_layer: for hidden states, index into the teacher's hidden states (0: the
        embedding output, ``i``: the output of layer ``i``, counted from 1); for attentions,
        the layer number ``i`` (from 1).
    :param student_layer: the same for the student.
    :param kind: ``"mse"``, ``"cosine"`` or ``"attention-kl"``.
    :param weight: the term's weight in the total loss.
    """

    teacher_layer: int
    student_layer: int
    kind: LayerLossKind
    weight: float = 1.0

    @property
    def key(self) -> str:
        """The name the term is logged under, e.g. ``loss_mse_t4_s2``."""
        return f"loss_{self.kind.replace('-', '_')}_t{self.teacher_layer}_s{self.student_layer}"


@dataclass(frozen=True)
class LossTerms:
    """One evaluation of :class:`DistillationLoss` (scalar float32 tensors).

    :param total: the weighted sum of every computed term (with gradient).
    :param ce: soft-target loss ``L_ce``.
    :param task: hard-label cross-entropy ``L_task`` (``L_mlm`` in masked-LM mode).
    :param cos: hidden-state cosine loss ``L_cos``, or ``None`` when not computed.
    :param layers: layer-pair terms by :attr:`LayerLoss.key` (empty by default).
    """

    total: torch.Tensor
    ce: torch.Tensor
    task: torch.Tensor
    cos: torch.Tensor | None
    layers: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class DistillationLoss:
    """DistilBERT's weighted sum of losses (Sanh et al. 2019), task or masked-LM form.

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
        ce_positions: torch.Tensor | None = None,
    ) -> LossTerms:
        """Compute the three terms and their weighted sum.

        :param student_logits: ``(B, C)`` float, or ``(B, S, V)`` in masked-LM mode.
        :param teacher_logits: same shape as ``student_logits`` (detached).
        :param labels: ``(B,)`` gold labels, or ``(B, S)`` gold tokens (``-100`` ignored).
        :param student_hidden: ``(B, S, H)`` float (projected to the teacher's width if
            needed); required when ``alpha_cos > 0``.
        :param teacher_hidden: ``(B, S, H)`` float; required when ``alpha_cos > 0``.
        :param attention_mask: ``(B, S)``, 1 at real tokens.
        :param ce_positions: ``(B, S)`` bool, the token positions ``L_ce`` is computed on
            when logits are ``(B, S, V)`` (default: ``attention_mask``, else every position).
        :returns: :class:`LossTerms`; ``cos`` is ``None`` when ``alpha_cos == 0``.
        :raises ValueError: when hidden states are missing but ``alpha_cos > 0``.
        """
        s_logits, t_logits = student_logits, teacher_logits
        if s_logits.dim() == 3:
            if ce_positions is None:
                ce_positions = (
                    attention_mask.bool() if attention_mask is not None
                    else torch.ones(s_logits.shape[:2], dtype=torch.bool, device=s_logits.device)
                )
            s_logits = select_positions(s_logits, ce_positions)
            t_logits = select_positions(t_logits, ce_positions)
        if s_logits.shape[0] == 0:
            ce = student_logits.float().sum() * 0.0
        else:
            ce = soft_target_loss(s_logits, t_logits, self.temperature)
        task = task_loss(student_logits, labels)
        total = self.alpha_ce * ce + self.alpha_task * task
        cos = None
        if self.needs_hidden_states:
            if student_hidden is None or teacher_hidden is None:
                raise ValueError("alpha_cos > 0 needs student_hidden and teacher_hidden")
            cos = hidden_cosine_loss(student_hidden, teacher_hidden, attention_mask)
            total = total + self.alpha_cos * cos
        return LossTerms(total=total, ce=ce, task=task, cos=cos)


class Projection(torch.nn.Linear):
    """A learned linear map from the student's width to the teacher's (``W_h`` of TinyBERT),
    used only by the losses: it is trained with the student, saved in training checkpoints
    (so that a resumed run continues exactly), and not part of the saved student.

    :param student_size: ``H_s``, the student's hidden size.
    :param teacher_size: ``H_t``, the teacher's hidden size.
    """

    def __init__(self, student_size: int, teacher_size: int) -> None:
        super().__init__(student_size, teacher_size, bias=True)
