"""Llama-style encoders (EuroBERT, GTE's new architecture, NomicBERT) through the adapter
:class:`compressor.architectures.builtin.LlamaStyleAdapter`: grouped key/value heads removed
a whole group at a time, the gated MLP pruned as one FFN unit, pruned models that reload
after training (ONNX Runtime int8 where symbolic shape inference fails:
test_ort_shape_fallback.py).

Tiny random models only (hidden 32, 4 layers, 4 heads of size 8, FFN 64; EuroBERT with 2
key/value heads), saved with the kit's WordPiece tokenizer. ``-m slow`` runs the nine
strategies of the architecture table on each family.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from _tiny_encoders import save_encoder, tiny_encoder

from compressor import testing
from compressor.architectures import (
    encoder_layout,
    ffn_unit_widths,
    get_module,
    head_counts,
    layer_modules,
)
from compressor.errors import StageError

FAMILIES = ("eurobert", "gte", "nomic_bert")
TRAIN = {
    "max_steps": 2,
    "batch_size": 16,
    "learning_rate": 1e-3,
    "warmup_ratio": 0.0,
    "logging_steps": 100,
}
IMPORTANCE = {"importance_samples": 32, "importance_batch_size": 16, "max_length": 32}


def _batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 38, (3, 11), generator=g)
    mask = torch.ones_like(ids)
    mask[2, 7:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def _logits(model: Any) -> torch.Tensor:
    with torch.no_grad():
        return model(**_batch()).logits


def test_eurobert_layout_groups_query_heads_by_key_value_head() -> None:
    layout = encoder_layout(tiny_encoder("eurobert"))
    assert (
        layout.num_heads,
        layout.num_kv_heads,
        layout.kv_group,
        layout.head_size,
    ) == (4, 2, 2, 8)
    assert layout.head_projections == ("self_attn.q_proj",)
    assert layout.kv_projections == ("self_attn.k_proj", "self_attn.v_proj")
    assert (layout.ffn_intermediate, layout.ffn_gate, layout.ffn_output) == (
        "mlp.up_proj",
        "mlp.gate_proj",
        "mlp.down_proj",
    )
    gte = encoder_layout(
        tiny_encoder("gte")
    )  # no num_key_value_heads: one per query head
    assert not gte.grouped_kv and gte.kv_group == 1 and gte.kv_projections == ()


def test_removing_a_silent_key_value_group_keeps_the_outputs() -> None:
    """A group whose query heads' output columns are zero contributes nothing: removing it
    (2 query heads, their key/value head) must leave the logits as they were."""
    from compressor_pruning.structured import prune_heads_

    model = tiny_encoder("eurobert")
    layout = encoder_layout(model)
    block = layer_modules(model, layout)[1]
    with torch.no_grad():
        get_module(block, layout.attn_output).weight[:, 0:16] = (
            0  # query heads 0 and 1: group 0
        )
    before = _logits(model)
    k_rows = (
        get_module(block, "self_attn.k_proj").weight[8:16].clone()
    )  # key/value head 1 stays
    prune_heads_(model, {1: [0, 1]})
    assert head_counts(model, layout) == [4, 2, 4, 4]
    assert get_module(block, "self_attn.q_proj").out_features == 16
    assert get_module(block, "self_attn.k_proj").out_features == 8
    assert get_module(block, "self_attn.v_proj").out_features == 8
    assert torch.equal(get_module(block, "self_attn.k_proj").weight, k_rows)
    torch.testing.assert_close(_logits(model), before, atol=1e-5, rtol=1e-5)


def test_heads_of_a_key_value_group_go_together() -> None:
    from compressor_pruning.structured import prune_heads_, select_heads

    with pytest.raises(StageError, match="groups of 2"):
        prune_heads_(
            tiny_encoder("eurobert"), {0: [1, 2]}
        )  # half of group 0, half of group 1
    scores = [torch.tensor([0.9, 0.1, 0.2, 0.3]), torch.tensor([0.5, 0.6, 0.05, 0.05])]
    # group sums: layer 0 [1.0, 0.5], layer 1 [1.1, 0.1]: the two weakest groups, one a layer
    assert select_heads(scores, fraction=0.5, group=2) == {0: [2, 3], 1: [2, 3]}
    assert select_heads(scores, per_layer=2, group=2) == {0: [2, 3], 1: [2, 3]}
    with pytest.raises(StageError, match="multiple of 2") as info:
        select_heads(scores, per_layer=1, group=2)
    assert info.value.key == "heads_per_layer"


@pytest.mark.parametrize("arch", ["gte", "nomic_bert"])
def test_gated_mlp_neurons_are_pruned_as_one_unit(arch: str) -> None:
    """Neurons whose down_proj columns are zero do nothing: keeping the others (gate and up
    rows, down columns) leaves the logits as they were."""
    from compressor_pruning.structured import prune_ffn_

    model = tiny_encoder(arch)
    layout = encoder_layout(model)
    blocks = layer_modules(model, layout)
    keep = [
        list(range(0, 64, 2)) if i % 2 else list(range(40)) for i in range(len(blocks))
    ]
    with torch.no_grad():
        for block, kept in zip(blocks, keep, strict=True):
            dropped = [j for j in range(64) if j not in kept]
            get_module(block, layout.ffn_output).weight[:, dropped] = 0
    before = _logits(model)
    assert (
        prune_ffn_(model, keep) is False
    )  # widths 40 and 32: per layer, in a structure file
    assert ffn_unit_widths(model, layout) == [40, 32, 40, 32]
    mlp = blocks[1].mlp
    assert (
        mlp.gate_proj.out_features,
        mlp.up_proj.out_features,
        mlp.down_proj.in_features,
    ) == (32, 32, 32)
    torch.testing.assert_close(_logits(model), before, atol=1e-5, rtol=1e-5)


def test_pruned_gte_reloads_after_training(tmp_path: Path) -> None:
    """GTE's checkpoint format fuses q/k/v (transformers re-fuses them on save): a pruned,
    then fine-tuned model is saved under its own names with its structure file and reloads."""
    model_dir = save_encoder("gte", tmp_path / "model")
    data = testing.tiny_task_data()
    heads = testing.apply_strategy(
        "prune.heads",
        model_dir,
        {"fraction": 0.25, **IMPORTANCE},
        tmp_path / "heads",
        data=data,
        stage_name="heads",
    )
    tuned = testing.apply_strategy(
        "finetune", heads, TRAIN, tmp_path / "tune", data=data, stage_name="tune"
    )
    assert (Path(tuned.path) / "compressor_structure.json").is_file()
    logits = testing.check_artifact_reloads(tuned, data)
    assert logits.shape == (8, 2)
    assert sum(heads.lineage.extra["heads_after"]) == 12


NINE = (
    ("finetune", TRAIN),
    ("distill.distilbert", {"student_layers": 2, **TRAIN}),
    ("prune.heads", {"fraction": 0.5, **IMPORTANCE}),
    ("prune.ffn", {"fraction": 0.5, "scope": "global", **IMPORTANCE}),
    ("prune.layers", {"count": 1, **IMPORTANCE}),
    ("prune.magnitude", {"sparsity": 0.5, **TRAIN}),
    ("quantize.dynamic-int8", {}),
    ("quantize.ort-dynamic", {"saturation_check": False}),
    ("export.onnx", {"parity_samples": 8, "max_length": 32}),
)


@pytest.mark.slow
@pytest.mark.parametrize("arch", FAMILIES)
def test_every_strategy_of_the_table_runs(arch: str, tmp_path: Path) -> None:
    """The nine strategies of docs/architectures.md, each on the tiny model, each output
    reloaded by its format's backend and scored (finite logits)."""
    model_dir = save_encoder(arch, tmp_path / "model")
    data = testing.tiny_task_data()
    for name, config in NINE:
        stage = name.replace(".", "_")
        artifact = testing.apply_strategy(
            name, model_dir, config, tmp_path / stage, data=data, stage_name=stage
        )
        testing.check_artifact_reloads(artifact, data)
