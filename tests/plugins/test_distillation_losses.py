"""The DistilBERT loss terms against hand-computed values (Sanh et al. 2019, Hinton et al. 2015)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from compressor.errors import StageError
from compressor_distillation.losses import (
    DistillationLoss,
    hidden_cosine_loss,
    soft_target_loss,
    task_loss,
)

STUDENT = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
TEACHER = [[2.0, 0.0, 1.0], [1.0, 1.0, 1.5]]


def softmax(row: list[float], t: float) -> list[float]:
    ex = [math.exp(v / t) for v in row]
    return [e / sum(ex) for e in ex]


def kl_by_hand(teacher: list[list[float]], student: list[list[float]], t: float) -> float:
    """Mean over the batch of KL(softmax(z_t/T) || softmax(z_s/T)), without the T^2 factor:
    sum_b sum_c p_t * log(p_t / p_s) / B."""
    total = 0.0
    for zt, zs in zip(teacher, student):
        pt, ps = softmax(zt, t), softmax(zs, t)
        total += sum(a * math.log(a / b) for a, b in zip(pt, ps))
    return total / len(teacher)


@pytest.mark.parametrize("t", [1.0, 2.0])
def test_soft_target_loss_matches_hand_computation(t: float) -> None:
    got = soft_target_loss(torch.tensor(STUDENT), torch.tensor(TEACHER), t)
    assert got.dtype == torch.float32 and got.dim() == 0
    assert got.item() == pytest.approx(t * t * kl_by_hand(TEACHER, STUDENT, t), rel=1e-5)


def test_temperature_scaling_is_t_squared_times_softened_kl() -> None:
    s, tt = torch.tensor(STUDENT), torch.tensor(TEACHER)
    at1, at2 = soft_target_loss(s, tt, 1.0).item(), soft_target_loss(s, tt, 2.0).item()
    kl1, kl2 = kl_by_hand(TEACHER, STUDENT, 1.0), kl_by_hand(TEACHER, STUDENT, 2.0)
    assert at1 == pytest.approx(kl1, rel=1e-5)  # T=1: no scaling
    assert at2 == pytest.approx(4.0 * kl2, rel=1e-5)  # T=2: 4 x the softened KL
    assert kl2 < kl1 and at2 != pytest.approx(at1, rel=1e-3)
    # halving the logits at T=1 is the softened KL at T=2 without the T^2 factor
    assert soft_target_loss(s / 2, tt / 2, 1.0).item() == pytest.approx(at2 / 4, rel=1e-5)


def test_kl_direction_teacher_is_the_target() -> None:
    s, tt = torch.tensor(STUDENT), torch.tensor(TEACHER)
    forward = soft_target_loss(s, tt, 2.0).item()
    swapped = soft_target_loss(tt, s, 2.0).item()
    assert forward == pytest.approx(4.0 * kl_by_hand(TEACHER, STUDENT, 2.0), rel=1e-5)
    assert swapped == pytest.approx(4.0 * kl_by_hand(STUDENT, TEACHER, 2.0), rel=1e-5)
    assert forward != pytest.approx(swapped, rel=1e-3)


def test_batchmean_is_sum_over_batch_size() -> None:
    s, tt = torch.tensor(STUDENT), torch.tensor(TEACHER)
    summed = F.kl_div(F.log_softmax(s, -1), F.softmax(tt, -1), reduction="sum").item()
    assert soft_target_loss(s, tt, 1.0).item() == pytest.approx(summed / 2, rel=1e-6)
    # a batch repeated twice has the same per-example mean
    doubled = soft_target_loss(torch.cat([s, s]), torch.cat([tt, tt]), 1.0).item()
    assert doubled == pytest.approx(summed / 2, rel=1e-6)


def test_soft_target_loss_is_zero_for_identical_logits() -> None:
    s = torch.tensor(STUDENT)
    assert soft_target_loss(s, s.clone(), 2.0).item() == pytest.approx(0.0, abs=1e-7)


def test_soft_target_loss_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="shape"):
        soft_target_loss(torch.zeros(2, 3), torch.zeros(2, 4), 1.0)
    with pytest.raises(ValueError, match="temperature"):
        soft_target_loss(torch.zeros(2, 3), torch.zeros(2, 3), 0.0)


def test_task_loss_is_cross_entropy_with_gold_labels() -> None:
    labels = [1, 2]
    expected = -sum(math.log(softmax(row, 1.0)[y]) for row, y in zip(STUDENT, labels)) / 2
    got = task_loss(torch.tensor(STUDENT), torch.tensor(labels))
    assert got.item() == pytest.approx(expected, rel=1e-6)


def _hidden() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    h_s = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [5.0, 5.0]], [[0.0, 2.0], [3.0, 4.0], [1.0, 0.0]]])
    h_t = torch.tensor([[[0.0, 1.0], [1.0, 1.0], [-1.0, 2.0]], [[0.0, 3.0], [4.0, 3.0], [0.0, 1.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    return h_s, h_t, mask


def test_hidden_cosine_loss_matches_hand_computation() -> None:
    h_s, h_t, mask = _hidden()
    # unmasked positions: cos = 0, 1, 1, 24/25, 0  ->  1 - cos = 1, 0, 0, 1/25, 1
    expected = (1 + 0 + 0 + 1 / 25 + 1) / 5
    got = hidden_cosine_loss(h_s, h_t, mask)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    keep = mask.bool()
    reference = torch.nn.CosineEmbeddingLoss()(h_s[keep], h_t[keep], torch.ones(int(keep.sum())))
    assert got.item() == pytest.approx(reference.item(), rel=1e-6)


def test_hidden_cosine_loss_ignores_padding_positions() -> None:
    h_s, h_t, mask = _hidden()
    before = hidden_cosine_loss(h_s, h_t, mask)
    h_s2, h_t2 = h_s.clone(), h_t.clone()
    h_s2[0, 2] = torch.tensor([-1e4, 3.0])
    h_t2[0, 2] = torch.tensor([7.0, -1e3])
    assert torch.equal(hidden_cosine_loss(h_s2, h_t2, mask), before)
    # without a mask every position counts
    assert hidden_cosine_loss(h_s, h_t).item() != pytest.approx(before.item())


def test_hidden_cosine_loss_is_zero_for_identical_states() -> None:
    h_s, _, mask = _hidden()
    assert hidden_cosine_loss(h_s, h_s.clone(), mask).item() == pytest.approx(0.0, abs=1e-6)


def test_hidden_cosine_loss_needs_equal_hidden_sizes() -> None:
    with pytest.raises(StageError, match="equal hidden sizes"):
        hidden_cosine_loss(torch.ones(1, 2, 4), torch.ones(1, 2, 8), torch.ones(1, 2))


def test_distillation_loss_is_the_weighted_sum() -> None:
    h_s, h_t, mask = _hidden()
    s, tt, y = torch.tensor(STUDENT), torch.tensor(TEACHER), torch.tensor([0, 2])
    loss = DistillationLoss(temperature=2.0, alpha_ce=5.0, alpha_task=2.0, alpha_cos=1.0)
    terms = loss(s, tt, y, h_s, h_t, mask)
    assert terms.ce.item() == pytest.approx(soft_target_loss(s, tt, 2.0).item())
    assert terms.task.item() == pytest.approx(task_loss(s, y).item())
    assert terms.cos is not None
    assert terms.cos.item() == pytest.approx(hidden_cosine_loss(h_s, h_t, mask).item())
    expected = 5 * terms.ce + 2 * terms.task + terms.cos
    assert terms.total.item() == pytest.approx(expected.item(), rel=1e-6)


def test_distillation_loss_without_cosine_term() -> None:
    s, tt, y = torch.tensor(STUDENT), torch.tensor(TEACHER), torch.tensor([0, 2])
    loss = DistillationLoss(alpha_ce=1.0, alpha_task=0.0, alpha_cos=0.0)
    assert not loss.needs_hidden_states
    terms = loss(s, tt, y)
    assert terms.cos is None
    assert terms.total.item() == pytest.approx(terms.ce.item())


def test_distillation_loss_gradients_reach_the_student_only() -> None:
    s = torch.tensor(STUDENT, requires_grad=True)
    tt = torch.tensor(TEACHER)
    DistillationLoss(alpha_cos=0.0)(s, tt, torch.tensor([0, 1])).total.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "kw", [dict(temperature=0.0), dict(alpha_ce=-1.0), dict(alpha_ce=0, alpha_task=0, alpha_cos=0)]
)
def test_distillation_loss_rejects_bad_weights(kw: dict) -> None:
    with pytest.raises(ValueError):
        DistillationLoss(**kw)


def test_distillation_loss_needs_hidden_states_when_alpha_cos() -> None:
    with pytest.raises(ValueError, match="student_hidden"):
        DistillationLoss()(torch.tensor(STUDENT), torch.tensor(TEACHER), torch.tensor([0, 1]))


# --- masked-LM form, layer terms, adaptors -------------------------------------------------


def test_mlm_soft_targets_are_one_row_per_selected_position() -> None:
    s = torch.tensor([[STUDENT[0], STUDENT[1], [9.0, 9.0, 9.0]]])  # (1, 3, 3)
    t = torch.tensor([[TEACHER[0], TEACHER[1], [0.0, 0.0, 50.0]]])
    labels = torch.tensor([[-100, 2, -100]])
    mask = torch.tensor([[1, 1, 0]])  # position 2 is padding
    loss = DistillationLoss(temperature=2.0, alpha_ce=5.0, alpha_task=2.0, alpha_cos=0.0)
    terms = loss(s, t, labels, attention_mask=mask)  # default: every non-padding position
    assert terms.ce.item() == pytest.approx(4.0 * kl_by_hand(TEACHER, STUDENT, 2.0), rel=1e-5)
    only_masked = loss(s, t, labels, attention_mask=mask, ce_positions=labels != -100)
    assert only_masked.ce.item() == pytest.approx(4.0 * kl_by_hand(TEACHER[1:], STUDENT[1:], 2.0), rel=1e-5)
    # L_mlm: cross-entropy at the one masked position only
    assert terms.task.item() == pytest.approx(-math.log(softmax(STUDENT[1], 1.0)[2]), rel=1e-6)
    assert terms.total.item() == pytest.approx(5 * terms.ce.item() + 2 * terms.task.item(), rel=1e-6)


def test_task_loss_without_any_label_is_zero() -> None:
    assert task_loss(torch.ones(1, 2, 3), torch.full((1, 2), -100)).item() == 0.0


def test_hidden_mse_loss_matches_hand_computation() -> None:
    from compressor_distillation.losses import hidden_mse_loss

    h_s, h_t, mask = _hidden()
    # kept positions' mean over H of squared differences: 1, 0, (36+9)/2... per position
    per = [(1 + 1) / 2, 0.0, None, (0 + 1) / 2, (1 + 1) / 2, (1 + 1) / 2]
    kept = [v for v, m in zip(per, mask.flatten().tolist()) if m]
    assert hidden_mse_loss(h_s, h_t, mask).item() == pytest.approx(sum(kept) / len(kept), rel=1e-6)
    keep = mask.bool()
    assert hidden_mse_loss(h_s, h_t, mask).item() == pytest.approx(F.mse_loss(h_s[keep], h_t[keep]).item())


def test_attention_kl_loss_matches_hand_computation() -> None:
    from compressor_distillation.losses import attention_kl_loss

    a_t = torch.tensor([[[[0.5, 0.5], [0.9, 0.1]]]])  # (B=1, A=1, S=2, S=2)
    a_s = torch.tensor([[[[0.25, 0.75], [0.9, 0.1]]]])
    q0 = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert attention_kl_loss(a_s, a_t).item() == pytest.approx(q0 / 2, rel=1e-6)
    # a padding query is ignored
    assert attention_kl_loss(a_s, a_t, torch.tensor([[1, 0]])).item() == pytest.approx(q0, rel=1e-6)
    assert attention_kl_loss(a_t, a_t).item() == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(StageError, match="equal head counts"):
        attention_kl_loss(torch.ones(1, 2, 2, 2) / 2, torch.ones(1, 1, 2, 2) / 2)


def test_adaptor_maps_any_output_to_fixed_fields() -> None:
    from transformers.modeling_outputs import MaskedLMOutput

    from compressor_distillation.adaptors import adapt_outputs, pooled

    h = (torch.zeros(1, 2, 2), torch.tensor([[[1.0, 2.0], [3.0, 4.0]]]))
    out = MaskedLMOutput(logits=torch.ones(1, 2, 5), hidden_states=h)
    mask = torch.tensor([[1, 0]])
    a = adapt_outputs(out, {"attention_mask": mask})
    assert a.logits.shape == (1, 2, 5) and a.last_hidden is h[-1] and a.attentions is None
    assert pooled(a, "mean").tolist() == [[1.0, 2.0]] and pooled(a, "cls").tolist() == [[1.0, 2.0]]
    b = adapt_outputs({"prediction_logits": torch.ones(2, 3)})
    assert b.logits.shape == (2, 3) and b.hidden_states is None and b.attention_mask is None
