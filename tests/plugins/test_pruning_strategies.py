"""The pruning strategies end to end on a tiny BERT: apply, save, reload, evaluate, recover."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import transformers
import torch

from compressor.architectures import ffn_widths, head_counts, structure_summary
from compressor.artifact import Artifact
from compressor.evaluate.backends import PyTorchBackend
from compressor.structure import has_structure
from compressor_pruning.magnitude import BITMASK_FILE, cubic_sparsity, prunable_weights, read_bitmask
from compressor_pruning.plugin import (
    FFNPruning,
    FFNPruningConfig,
    HeadPruning,
    HeadPruningConfig,
    LayerDropConfig,
    LayerDropping,
    MagnitudeConfig,
    MagnitudePruning,
)


def _load(artifact: Artifact):
    return PyTorchBackend.load_model(artifact, transformers.AutoModelForSequenceClassification).eval()


@pytest.fixture
def baseline(tiny_bert_dir: Path) -> Artifact:
    return Artifact(name="baseline", path=tiny_bert_dir)


def test_prune_heads_strategy(baseline, make_context) -> None:
    ctx = make_context("heads")
    config = HeadPruningConfig(fraction=0.5, importance_samples=64, max_length=32)
    art = HeadPruning().apply(baseline, config, ctx)
    extra = art.lineage.extra
    assert sum(extra["heads_before"]) == 8 and sum(extra["heads_after"]) == 4
    assert min(extra["heads_after"]) >= 1 and extra["reload"] == "structure-file"
    assert extra["params_after"] < extra["params_before"]
    model = _load(art)
    assert head_counts(model) == extra["heads_after"]
    assert "pruned_heads" not in json.loads((art.path / "config.json").read_text())
    # the removed heads are the least important of a global ranking
    scores = [s for layer in extra["head_importance"] for s in layer]
    removed = [extra["head_importance"][int(layer)][h] for layer, hs in extra["removed_heads"].items() for h in hs]
    assert max(removed) <= min(set(scores) - set(removed))


def test_prune_ffn_global_writes_a_structure_file_and_reloads(baseline, make_context) -> None:
    ctx = make_context("ffn")
    config = FFNPruningConfig(fraction=0.5, scope="global", importance="activation", importance_samples=64)
    art = FFNPruning().apply(baseline, config, ctx)
    after = art.lineage.extra["ffn_after"]
    assert sum(after) == pytest.approx(0.5 * 4 * 64, abs=4)
    model = _load(art)
    assert ffn_widths(model) == after
    assert has_structure(art.path) == (len(set(after)) > 1)


def test_prune_ffn_uniform_reloads_with_plain_transformers(baseline, make_context) -> None:
    from transformers import AutoModelForSequenceClassification

    art = FFNPruning().apply(baseline, FFNPruningConfig(fraction=0.25, importance_samples=32), make_context("u"))
    assert art.lineage.extra["ffn_after"] == [48, 48, 48, 48] and not has_structure(art.path)
    assert AutoModelForSequenceClassification.from_pretrained(art.path).config.intermediate_size == 48


@pytest.mark.parametrize("selection", ["top", "importance"])
def test_prune_layers_strategy(baseline, make_context, selection: str) -> None:
    config = LayerDropConfig(selection=selection, fraction=0.5, importance_samples=32)
    art = LayerDropping().apply(baseline, config, make_context(selection))
    extra = art.lineage.extra
    assert len(extra["dropped_layers"]) == 2 and len(extra["kept_layers"]) == 2
    if selection == "top":
        assert extra["dropped_layers"] == [2, 3]
    else:
        assert len(extra["importance_trace"]) == 2
    assert _load(art).config.num_hidden_layers == 2


def test_layer_config_needs_one_target() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        LayerDropConfig(selection="top")
    with pytest.raises(ValueError, match="explicit"):
        LayerDropConfig(selection="top", count=1, layers=[0])
    with pytest.raises(ValueError, match="exactly one"):
        HeadPruningConfig(fraction=0.2, heads_per_layer=1)


@pytest.mark.parametrize("scope", ["global", "per-layer"])
def test_magnitude_one_shot(baseline, make_context, scope: str) -> None:
    ctx = make_context(f"mag-{scope}")
    art = MagnitudePruning().apply(baseline, MagnitudeConfig(sparsity=0.6, scope=scope), ctx)
    extra = art.lineage.extra
    assert extra["sparsity"] == pytest.approx(0.6, abs=1e-3)
    if scope == "per-layer":
        assert all(s == pytest.approx(0.6, abs=1e-3) for s in extra["sparsity_per_layer"])
    model = _load(art)
    assert structure_summary(model)["sparsity"] == pytest.approx(0.6, abs=1e-3)
    # the bitmask file holds the same weights and is smaller than the dense file
    dense = model.state_dict()
    restored = read_bitmask(art.path / BITMASK_FILE)
    assert set(prunable_weights(model)) <= set(restored)
    for name in prunable_weights(model):
        assert torch.equal(restored[name], dense[name])
    assert extra["sparse_bytes"] < extra["dense_bytes"]
    assert not (art.path / BITMASK_FILE).suffix == ".safetensors"  # not counted as dense weights
    assert Artifact.load(art.path).size_bytes() == extra["dense_bytes"]


def test_cubic_schedule() -> None:
    kw = dict(initial=0.0, final=0.8, begin=10, end=110)
    assert cubic_sparsity(0, **kw) == 0.0 and cubic_sparsity(10, **kw) == 0.0
    assert cubic_sparsity(60, **kw) == pytest.approx(0.8 - 0.8 * 0.5**3)
    assert cubic_sparsity(110, **kw) == 0.8 and cubic_sparsity(500, **kw) == 0.8
    values = [cubic_sparsity(t, **kw) for t in range(0, 120)]
    assert values == sorted(values)


def test_magnitude_gradual_during_fine_tuning(baseline, make_context) -> None:
    ctx = make_context("gradual")
    config = MagnitudeConfig(sparsity=0.7, schedule="gradual", epochs=1, batch_size=32,
                             learning_rate=1e-3, frequency=2, end_fraction=0.6, max_length=32)
    art = MagnitudePruning().apply(baseline, config, ctx)
    extra = art.lineage.extra
    history = extra["schedule_history"]
    targets = [h[1] for h in history]
    assert targets == sorted(targets) and targets[-1] == 0.7 and len(history) >= 3
    assert all(measured == pytest.approx(target, abs=1e-3) for _, target, measured in history)
    assert extra["sparsity"] == pytest.approx(0.7, abs=1e-3)
    assert structure_summary(_load(art))["sparsity"] == pytest.approx(0.7, abs=1e-3)


def test_pruned_artifact_recovers_by_distillation_as_is(finetuned_teacher, make_context) -> None:
    """distill.distilbert with student: input trains the pruned model with its own shapes."""
    from compressor_distillation.plugin import DistilBERTDistillation, DistillationConfig

    pruned = FFNPruning().apply(
        finetuned_teacher,
        FFNPruningConfig(fraction=0.5, scope="global", importance_samples=64),
        make_context("pruned", artifacts={"teacher": finetuned_teacher}),
    )
    widths = pruned.lineage.extra["ffn_after"]
    ctx = make_context("recovered", artifacts={"finetune": finetuned_teacher, "pruned": pruned})
    config = DistillationConfig(teacher="finetune", student="input", epochs=1, batch_size=32,
                                learning_rate=1e-3, max_length=32)
    recovered = DistilBERTDistillation().apply(pruned, config, ctx)
    assert recovered.lineage.reference == "finetune"
    assert ffn_widths(_load(recovered)) == widths
