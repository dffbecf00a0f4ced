"""A :class:`transformers.Trainer` that trains a student against a frozen teacher."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn
from transformers import Trainer

from compressor.training.losses import task_soft_target_loss

from .adaptors import Adapted, adapt_outputs, pooled
from .losses import (
    DistillationLoss,
    LayerLoss,
    attention_kl_loss,
    hidden_cosine_loss,
    hidden_mse_loss,
    select_positions,
    soft_target_loss,
    task_loss,
)

TERM_KEYS = ("loss_ce", "loss_task", "loss_cos")
"""Keys under which the task-mode terms appear in ``trainer.state.log_history`` (and the
console); masked-LM mode logs ``loss_mlm`` instead of ``loss_task``, and each layer-pair term
under its :attr:`~compressor_distillation.losses.LayerLoss.key`."""

HEADS_ATTR = "distillation_heads"
"""Attribute of the student holding the training-only projections (a ``ModuleDict``)."""

TEACHER_PREFIX = "teacher_"
"""Batch keys with this prefix are the teacher's own inputs (a student with another tokenizer)."""


def cos_head_key() -> str:
    return "cos"


def layer_head_key(pair: LayerLoss) -> str:
    return f"t{pair.teacher_layer}_s{pair.student_layer}"


def attach_heads(student: nn.Module, heads: dict[str, nn.Module]) -> None:
    """Attach training-only projections to the student, so that the Trainer optimises them
    and writes them into checkpoints (an exact resume); :func:`detach_heads` removes them
    before the student is saved."""
    if heads:
        setattr(student, HEADS_ATTR, nn.ModuleDict(heads))


def detach_heads(student: nn.Module) -> dict[str, list[int]]:
    """Remove the projections; returns ``{name: [in, out]}`` for the lineage."""
    heads = getattr(student, HEADS_ATTR, None)
    if heads is None:
        return {}
    shapes = {k: [m.in_features, m.out_features] for k, m in heads.items()}
    delattr(student, HEADS_ATTR)
    return shapes


LABEL_KEYS = ("labels", "start_positions", "end_positions")
"""Batch keys holding gold targets (class, score, tag ids; answer start and end tokens)."""


class DistillationTrainer(Trainer):
    """Trainer whose training loss is the DistilBERT triple loss (Sanh et al. 2019), in task
    or masked-LM form, with optional layer-pair terms.

    The teacher runs in eval mode under ``torch.no_grad`` on the training device; it is not
    an attribute of the trained model, so it is neither optimised nor written into
    checkpoints. Both models' outputs go through
    :func:`~compressor_distillation.adaptors.adapt_outputs`, so the losses never read an
    architecture's attribute names. Each term (``loss_ce``, ``loss_task`` or ``loss_mlm``,
    ``loss_cos``, layer terms) is averaged over the logging window and logged with the
    training ``loss``, so it reaches the console, ``state.log_history`` and any
    ``report_to`` integration. Evaluation uses the student's own loss (``eval_loss``) and the
    configured metrics.

    Batch keys prefixed ``teacher_`` are the teacher's inputs (a student with another
    tokenizer, each model tokenising the text itself); without them both models get the same
    inputs.

    :param teacher: the frozen teacher.
    :param distillation_loss: the :class:`~compressor_distillation.losses.DistillationLoss`.
    :param layer_losses: layer-pair terms (default none).
    :param hard_key: name of the hard-label term in the logs (``loss_task`` or ``loss_mlm``).
    :param ce_positions: masked-LM mode: ``"all"`` (every non-padding position, the
        reference code's default) or ``"masked"`` (only the positions chosen for prediction).
    :param cos_pooling: ``None``: ``L_cos`` on token states (same tokenizer); ``"cls"`` or
        ``"mean"``: on pooled sentence vectors (needed when the tokenizers differ).
    :param task: task mode: the :class:`compressor.tasks.Task` whose
        :meth:`~compressor.tasks.Task.soft_targets` the student matches (per example, per
        token, or the start and end distributions of QA; ``L_ce`` is their mean), and whose
        head's own loss from the batch's labels is ``L_task``. ``None``: masked-LM mode.
    :param args: other positional and keyword arguments of :class:`transformers.Trainer`.
    """

    def __init__(
        self,
        *args: Any,
        teacher: nn.Module,
        distillation_loss: DistillationLoss,
        layer_losses: Sequence[LayerLoss] = (),
        hard_key: str = "loss_task",
        ce_positions: str = "all",
        cos_pooling: str | None = None,
        task: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.task = task
        # our loss is a per-batch mean: let the Trainer divide by the accumulation steps
        self.model_accepts_loss_kwargs = False
        self.teacher = teacher.to(self.args.device)
        self.teacher.eval()
        self.teacher.requires_grad_(False)
        self.distillation_loss = distillation_loss
        self.layer_losses = tuple(layer_losses)
        self.ce_positions = ce_positions
        self.cos_pooling = cos_pooling
        self.term_keys = ("loss_ce", hard_key, "loss_cos", *(p.key for p in self.layer_losses))
        self._term_sums: torch.Tensor | None = None
        self._term_count = 0

    @property
    def needs_hidden_states(self) -> bool:
        return self.distillation_loss.needs_hidden_states or any(
            p.kind != "attention-kl" for p in self.layer_losses
        )

    @property
    def needs_attentions(self) -> bool:
        return any(p.kind == "attention-kl" for p in self.layer_losses)

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        """Training: the weighted distillation loss; evaluation: the student's own loss."""
        if not model.training:
            features = {k: v for k, v in inputs.items() if not k.startswith(TEACHER_PREFIX)}
            return super().compute_loss(model, features, return_outputs, num_items_in_batch)
        targets = {k: v for k, v in inputs.items() if k in LABEL_KEYS}
        features = {
            k: v for k, v in inputs.items()
            if k not in LABEL_KEYS and not k.startswith(TEACHER_PREFIX)
        }
        teacher_features = {
            k[len(TEACHER_PREFIX):]: v for k, v in inputs.items() if k.startswith(TEACHER_PREFIX)
        } or features
        flags = dict(
            output_hidden_states=self.needs_hidden_states,
            output_attentions=self.needs_attentions,
        )
        # task mode: the head computes its own loss (cross-entropy, MSE, start/end CE)
        student_out = model(**features, **(targets if self.task is not None else {}), **flags)
        with torch.no_grad():
            self.teacher.eval()
            with self.accelerator.autocast():
                teacher_out = self.teacher(**teacher_features, **flags)
        s = adapt_outputs(student_out, features)
        t = adapt_outputs(teacher_out, teacher_features)
        if self.task is not None:
            soft_hard = self._task_terms(student_out, teacher_out, inputs)
        else:
            soft_hard = self._mlm_terms(s, t, targets["labels"])
        terms = self._terms(model, s, t, *soft_hard)
        self._accumulate(terms)
        total = sum(terms[k][0] * terms[k][1] for k in terms)
        return (total, student_out) if return_outputs else total

    def _project(self, model: nn.Module, key: str, h: torch.Tensor) -> torch.Tensor:
        heads = getattr(self.accelerator.unwrap_model(model), HEADS_ATTR, None)
        if heads is not None and key in heads:
            return heads[key](h)
        return h

    def _mlm_terms(self, s: Adapted, t: Adapted, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Without a task (masked-LM mode): ``(L_ce, cross-entropy with labels)``; ``L_ce``
        over the selected token positions of ``(B, S, V)`` logits, or per row of ``(B, C)``
        logits."""
        s_logits, t_logits = s.logits, t.logits
        if s_logits.dim() == 3:
            if self.ce_positions == "masked":
                positions = labels != -100
            elif s.attention_mask is not None:
                positions = s.attention_mask.bool()
            else:
                positions = torch.ones(s_logits.shape[:2], dtype=torch.bool, device=s_logits.device)
            s_logits, t_logits = select_positions(s_logits, positions), select_positions(t_logits, positions)
        if s_logits.shape[0]:
            ce = soft_target_loss(s_logits, t_logits, self.distillation_loss.temperature)
        else:
            ce = s.logits.float().sum() * 0.0
        return ce, task_loss(s.logits, labels)

    def _task_terms(
        self, student_out: Any, teacher_out: Any, batch: dict[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Task mode: ``(L_ce: mean over the task's soft targets, L_task: the head's loss)``.

        A distribution target is the soft-target KL with temperature; a value target (a
        regression score) is the MSE to the teacher's prediction.
        """
        ce = task_soft_target_loss(self.task, student_out, teacher_out, batch, self.distillation_loss.temperature)
        hard = getattr(student_out, "loss", None)
        if hard is None:
            hard = ce * 0.0
        return ce, hard.float()

    def _terms(
        self, model: nn.Module, s: Adapted, t: Adapted, ce: torch.Tensor, hard: torch.Tensor
    ) -> dict[str, tuple[float, torch.Tensor]]:
        """``{log key: (weight, value)}`` for every computed term."""
        loss = self.distillation_loss
        terms: dict[str, tuple[float, torch.Tensor]] = {
            "loss_ce": (loss.alpha_ce, ce),
            self.term_keys[1]: (loss.alpha_task, hard),
        }
        if loss.alpha_cos > 0:
            if self.cos_pooling is not None:
                hs = self._project(model, cos_head_key(), pooled(s, self.cos_pooling))
                ht = pooled(t, self.cos_pooling)
                cos = hidden_cosine_loss(hs.unsqueeze(1), ht.unsqueeze(1))
            else:
                hs = self._project(model, cos_head_key(), s.last_hidden)
                cos = hidden_cosine_loss(hs, t.last_hidden, s.attention_mask)
            terms["loss_cos"] = (loss.alpha_cos, cos)
        for pair in self.layer_losses:
            if pair.kind == "attention-kl":
                value = attention_kl_loss(
                    s.attentions[pair.student_layer - 1], t.attentions[pair.teacher_layer - 1],
                    s.attention_mask,
                )
            else:
                hs = self._project(model, layer_head_key(pair), s.hidden_states[pair.student_layer])
                ht = t.hidden_states[pair.teacher_layer]
                fn = hidden_mse_loss if pair.kind == "mse" else hidden_cosine_loss
                value = fn(hs, ht, s.attention_mask)
            terms[pair.key] = (pair.weight, value)
        return terms

    def _accumulate(self, terms: dict[str, tuple[float, torch.Tensor]]) -> None:
        ref = terms["loss_ce"][1]
        nan = torch.full_like(ref, float("nan"))
        row = torch.stack([terms[k][1].detach().float() if k in terms else nan for k in self.term_keys])
        self._term_sums = row if self._term_sums is None else self._term_sums + row
        self._term_count += 1

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """Add the loss terms, averaged since the previous training log, to a training log."""
        if "loss" in logs and self._term_sums is not None and self._term_count:
            mean = self.accelerator.gather((self._term_sums / self._term_count).unsqueeze(0))
            mean = mean.reshape(-1, len(self.term_keys)).mean(dim=0).tolist()
            for key, value in zip(self.term_keys, mean):
                if value == value:  # skip NaN: a term that was not computed
                    logs[key] = round(float(value), 6)
            self._term_sums = None
            self._term_count = 0
        super().log(logs, *args, **kwargs)
