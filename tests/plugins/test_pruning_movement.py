"""prune.movement: straight-through score gradients, top-k masks, blocks, and a tiny run."""

from __future__ import annotations

from pathlib import Path

import pytest
import transformers
import torch
from torch import nn
from torch.nn.utils import parametrize

from compressor.architectures import structure_summary
from compressor.artifact import Artifact
from compressor.errors import StageError
from compressor.evaluate.backends import PyTorchBackend
from compressor_pruning.magnitude import BITMASK_FILE, prunable_weights, read_bitmask
from compressor_pruning.movement import MovementMask, MovementPruner
from compressor_pruning.plugin import MovementConfig, MovementPruning


def _load(artifact: Artifact):
    return PyTorchBackend.load_model(artifact, transformers.AutoModelForSequenceClassification).eval()


@pytest.fixture
def baseline(tiny_bert_dir: Path) -> Artifact:
    return Artifact(name="baseline", path=tiny_bert_dir)


def _masked_linear(weight: torch.Tensor, block=(1, 1)) -> tuple[nn.Linear, MovementMask]:
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        linear.weight.copy_(weight)
    mask = MovementMask(tuple(weight.shape), block)
    parametrize.register_parametrization(linear, "weight", mask)
    return linear, mask


def test_score_gradient_is_the_straight_through_movement() -> None:
    torch.manual_seed(0)
    w = torch.randn(6, 4)
    x = torch.randn(5, 4)
    g = torch.randn(5, 6)
    linear, mask = _masked_linear(w)
    with torch.no_grad():
        mask.scores.copy_(torch.randn(6, 4))
        mask.threshold.fill_(0.0)  # about half masked
    (linear(x) * g).sum().backward()
    # by hand: W' = W * M, dL/dW' = g^T x, dL/dS = dL/dW' * W (straight through the top-k)
    m = (mask.scores.detach() >= 0).float()
    assert 0 < m.sum() < m.numel()
    dl_dw_masked = g.T @ x
    assert torch.allclose(mask.scores.grad, dl_dw_masked * w, atol=1e-5)
    assert torch.allclose(linear.parametrizations.weight.original.grad, dl_dw_masked * m, atol=1e-5)

    # blocks: each score's gradient is the sum over its block
    linear, mask = _masked_linear(w, block=(2, 2))
    (linear(x) * g).sum().backward()
    expected = (dl_dw_masked * w).reshape(3, 2, 2, 2).sum(dim=(1, 3))
    assert mask.scores.shape == (3, 2)
    assert torch.allclose(mask.scores.grad, expected, atol=1e-5)


def test_movement_keeps_what_training_moves_away_from_zero() -> None:
    """A large weight the task pushes to zero is pruned; small weights it needs are kept.

    Magnitude pruning would do the opposite on the same starting weights.
    """
    torch.manual_seed(0)
    w0 = torch.tensor([[3.0, 0.1, 0.1, 0.1]])
    target = torch.tensor([[0.0, 1.0, 1.0, 1.0]])  # the task wants W = target
    linear, mask = _masked_linear(w0)
    opt = torch.optim.SGD([linear.parametrizations.weight.original, mask.scores], lr=0.05)
    x = torch.randn(256, 4)
    for _ in range(40):
        opt.zero_grad()
        loss = ((linear(x) - x @ target.T) ** 2).mean()
        loss.backward()
        opt.step()
    scores = mask.scores.detach()[0]
    assert scores[0] < scores[1:].min()  # the big weight moved towards zero: lowest score
    magnitude_order = torch.argsort(w0[0].abs())
    assert magnitude_order[-1] == 0  # magnitude would have kept it first


def test_top_k_per_layer_global_and_blocks(baseline) -> None:
    model = _load(baseline)
    pruner = MovementPruner(model, scope="per-layer")
    torch.manual_seed(0)
    with torch.no_grad():
        for i, m in enumerate(pruner.masks.values()):
            m.scores.copy_(torch.randn_like(m.scores) + i)  # later matrices score higher
    pruner.set_sparsity(0.75)
    for m in pruner.masks.values():
        assert (m.mask() == 0).float().mean().item() == pytest.approx(0.75, abs=1e-3)
    assert pruner.masked_fraction() == pytest.approx(0.75, abs=1e-3)
    pruner.scope = "global"
    pruner.set_sparsity(0.75)
    per_matrix = [(m.mask() == 0).float().mean().item() for m in pruner.masks.values()]
    assert pruner.masked_fraction() == pytest.approx(0.75, abs=1e-3)
    assert per_matrix[0] > 0.9 and per_matrix[-1] < 0.5  # one ranking over all matrices
    pruner.set_sparsity(0.0)
    assert pruner.masked_fraction() == 0.0

    model = _load(baseline)
    pruner = MovementPruner(model, block=(8, 16))
    with torch.no_grad():
        for m in pruner.masks.values():
            m.scores.copy_(torch.randn_like(m.scores))
    pruner.set_sparsity(0.5)
    for name, m in pruner.masks.items():
        mask = m.mask()
        blocks = mask.reshape(mask.shape[0] // 8, 8, mask.shape[1] // 16, 16)
        assert torch.equal(blocks.amin(dim=(1, 3)), blocks.amax(dim=(1, 3)))  # whole blocks
    pruner.make_permanent()
    assert not any(parametrize.is_parametrized(mod) for mod in model.modules())
    zeros = sum(int((w == 0).sum()) for w in prunable_weights(model).values())
    total = sum(w.numel() for w in prunable_weights(model).values())
    assert zeros / total == pytest.approx(0.5, abs=0.02)

    with pytest.raises(StageError, match="block \\[5, 5\\] does not divide"):
        MovementPruner(_load(baseline), block=(5, 5))


@pytest.mark.parametrize("teacher", [None, "baseline"])
def test_prune_movement_strategy(finetuned_teacher, make_context, teacher) -> None:
    ctx = make_context(f"movement-{teacher}", artifacts={"baseline": finetuned_teacher})
    config = MovementConfig(sparsity=0.6, teacher=teacher, epochs=1, batch_size=32,
                            learning_rate=1e-3, max_length=32, begin_fraction=0.1, end_fraction=0.6)
    art = MovementPruning().apply(finetuned_teacher, config, ctx)
    extra = art.lineage.extra
    assert art.lineage.reference == (teacher or finetuned_teacher.name)
    assert extra["sparsity"] == pytest.approx(0.6, abs=1e-3)
    assert all(s == pytest.approx(0.6, abs=1e-3) for s in extra["sparsity_per_layer"])
    targets = [h[1] for h in extra["schedule_history"]]
    assert targets[0] == 0.0 and targets[-1] == 0.6 and targets == sorted(targets)
    assert extra["sparse_bytes"] < extra["dense_bytes"]
    model = _load(art)  # plain transformers reload: no parametrisation keys left
    assert structure_summary(model)["sparsity"] == pytest.approx(0.6, abs=1e-3)
    restored = read_bitmask(art.path / BITMASK_FILE)
    for name, w in prunable_weights(model).items():
        assert torch.equal(restored[name], w.detach())
    assert extra["validation_accuracy"] is not None


def test_movement_config_errors() -> None:
    with pytest.raises(ValueError, match="end_fraction"):
        MovementConfig(sparsity=0.5, begin_fraction=0.5, end_fraction=0.4)
    with pytest.raises(ValueError, match="block"):
        MovementConfig(sparsity=0.5, block=(0, 4))


def test_prune_movement_resumes_from_its_checkpoint(finetuned_teacher, make_context) -> None:
    """A stage re-run in the same work dir resumes from the Trainer checkpoint, scores included."""
    config = MovementConfig(sparsity=0.5, epochs=1, batch_size=32, learning_rate=1e-3, max_length=32)
    first = MovementPruning().apply(finetuned_teacher, config, make_context("resume"))
    assert first.lineage.extra["resumed_from_checkpoint"] is None
    again = MovementPruning().apply(finetuned_teacher, config, make_context("resume"))
    assert again.lineage.extra["resumed_from_checkpoint"].startswith("checkpoint-")
    resumed = prunable_weights(_load(again))
    for name, w in prunable_weights(_load(first)).items():
        assert torch.equal(resumed[name], w)
