"""compressor.architectures and compressor.structure on tiny random models of each family."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import transformers
import torch
from torch import nn

from _tiny_encoders import inputs, tiny_model

from compressor.architectures import encoder_layout, ffn_widths, head_counts, structure_summary
from compressor.errors import CompressorError, StageError
from compressor.structure import (
    STRUCTURE_FILE,
    has_structure,
    load_pretrained,
    read_structure,
    save_pretrained,
)

# model type -> (layer list, query, attention output, FFN in, FFN out)
EXPECTED = {
    "bert": ("bert.encoder.layer", "attention.self.query", "attention.output.dense", "intermediate.dense", "output.dense"),
    "roberta": ("roberta.encoder.layer", "attention.self.query", "attention.output.dense", "intermediate.dense", "output.dense"),
    "xlm-roberta": ("roberta.encoder.layer", "attention.self.query", "attention.output.dense", "intermediate.dense", "output.dense"),
    "electra": ("electra.encoder.layer", "attention.self.query", "attention.output.dense", "intermediate.dense", "output.dense"),
    "mpnet": ("mpnet.encoder.layer", "attention.attn.q", "attention.attn.o", "intermediate.dense", "output.dense"),
    "distilbert": ("distilbert.transformer.layer", "attention.q_lin", "attention.out_lin", "ffn.lin1", "ffn.lin2"),
    "deberta-v2": ("deberta.encoder.layer", "attention.self.query_proj", "attention.output.dense", "intermediate.dense", "output.dense"),
}


@pytest.mark.parametrize("arch", sorted(EXPECTED))
def test_layout_found_from_module_structure(arch: str) -> None:
    model = tiny_model(arch)
    layout = encoder_layout(model)
    layers, query, out, ffn_in, ffn_out = EXPECTED[arch]
    assert (layout.layers.path, layout.query, layout.attn_output) == (layers, query, out)
    assert (layout.ffn_intermediate, layout.ffn_output) == (ffn_in, ffn_out)
    assert (layout.num_heads, layout.head_size, layout.hidden_size, layout.intermediate_size) == (4, 8, 32, 64)
    assert head_counts(model, layout) == [4, 4, 4]
    assert ffn_widths(model, layout) == [64, 64, 64]
    # the parts are real Linear modules of the right shapes
    block = model.get_submodule(layers)[0]
    assert block.get_submodule(query).out_features == 32
    assert block.get_submodule(ffn_in).out_features == 64 and block.get_submodule(ffn_out).in_features == 64
    if arch == "deberta-v2":  # relative-position projections are per head too
        assert layout.extra_head_projections == ("attention.self.pos_key_proj", "attention.self.pos_query_proj")


class _Odd(nn.Module):
    """Layers in a ModuleList, but no attention or FFN names we know."""

    def __init__(self) -> None:
        super().__init__()
        self.config = SimpleNamespace(num_hidden_layers=2, num_attention_heads=2, hidden_size=4,
                                      intermediate_size=8, model_type="odd")
        self.layers = nn.ModuleList(nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 4)) for _ in range(2))


def test_unsupported_architecture_names_it_and_what_is_missing() -> None:
    with pytest.raises(StageError) as exc:
        encoder_layout(_Odd())
    msg = str(exc.value)
    assert "_Odd (odd)" in msg and "query" in msg and "ffn_intermediate" in msg
    assert "0.weight" not in msg and "'0'" in msg  # lists the Linear modules it did see


def test_config_without_head_count_is_refused() -> None:
    model = _Odd()
    del model.config.num_attention_heads
    with pytest.raises(StageError, match="no head count"):
        encoder_layout(model)


def test_structure_summary_counts_zeros_per_layer() -> None:
    model = tiny_model("bert")
    layer1 = model.bert.encoder.layer[1]
    with torch.no_grad():
        layer1.intermediate.dense.weight.zero_()  # 64*32 of the layer's 4*32*32 + 2*64*32
    s = structure_summary(model)
    per_layer_total = 4 * 32 * 32 + 2 * 64 * 32
    assert s["sparsity_per_layer"][0] == 0.0 and s["sparsity_per_layer"][2] == 0.0
    assert s["sparsity_per_layer"][1] == pytest.approx(64 * 32 / per_layer_total)
    assert s["zero_weights"] == 64 * 32 and s["linear_weights"] == 3 * per_layer_total
    assert s["heads"] == [4, 4, 4] and s["ffn_widths"] == [64, 64, 64] and s["layers"] == 3


# --- structure file -----------------------------------------------------------------------


def _shrink_ffn(model: Any, widths: list[int]) -> None:
    from transformers.pytorch_utils import prune_linear_layer

    layout = encoder_layout(model)
    for block, w in zip(model.get_submodule(layout.layers.path), widths):
        idx = torch.arange(w)
        inter, out = layout.ffn_intermediate.rsplit(".", 1), layout.ffn_output.rsplit(".", 1)
        parent_i, parent_o = block.get_submodule(inter[0]), block.get_submodule(out[0])
        setattr(parent_i, inter[1], prune_linear_layer(getattr(parent_i, inter[1]), idx, dim=0))
        setattr(parent_o, out[1], prune_linear_layer(getattr(parent_o, out[1]), idx, dim=1))


@pytest.mark.parametrize("arch", ["bert", "distilbert", "deberta-v2"])
def test_per_layer_shapes_reload_through_the_structure_file(arch: str, tmp_path) -> None:
    from transformers import AutoModelForSequenceClassification as Auto

    model = tiny_model(arch)
    _shrink_ffn(model, [10, 64, 33])
    with torch.no_grad():
        before = model(**inputs()).logits
    assert save_pretrained(model, tmp_path) is not None
    spec = read_structure(tmp_path)
    assert sorted(v["out_features"] for k, v in spec["modules"].items() if v["in_features"] == 32) == [10, 33]
    with pytest.raises(Exception):  # plain transformers cannot rebuild these shapes
        Auto.from_pretrained(tmp_path)
    again = load_pretrained(Auto, tmp_path)
    assert ffn_widths(again) == [10, 64, 33]
    with torch.no_grad():
        assert torch.equal(again(**inputs()).logits, before)


def test_no_structure_file_when_the_config_rebuilds_the_shapes(tmp_path) -> None:
    from transformers import AutoModelForSequenceClassification as Auto

    model = tiny_model("bert")
    _shrink_ffn(model, [40, 40, 40])
    model.config.intermediate_size = 40
    assert save_pretrained(model, tmp_path) is None and not has_structure(tmp_path)
    assert ffn_widths(Auto.from_pretrained(tmp_path)) == [40, 40, 40]


def test_a_head_pruned_model_saved_by_transformers_4_reloads(tmp_path) -> None:
    """transformers 4 kept removed heads in ``config.pruned_heads`` and rebuilt the shapes in
    ``from_pretrained``; transformers 5 does neither, so ``load_pretrained`` rebuilds them."""
    import json

    from transformers import AutoModelForSequenceClassification as Auto
    from transformers.pytorch_utils import prune_linear_layer

    model = tiny_model("bert")
    removed = {0: [1], 2: [0, 3]}
    for layer, heads in removed.items():  # what transformers 4's prune_heads did (head size 8)
        attention = model.bert.encoder.layer[layer].attention
        keep = torch.tensor([h * 8 + j for h in range(4) if h not in heads for j in range(8)])
        for name in ("query", "key", "value"):
            setattr(attention.self, name, prune_linear_layer(getattr(attention.self, name), keep, dim=0))
        attention.output.dense = prune_linear_layer(attention.output.dense, keep, dim=1)
    with torch.no_grad():
        before = model(**inputs()).logits
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["pruned_heads"] = {str(k): v for k, v in removed.items()}
    (tmp_path / "config.json").write_text(json.dumps(config))
    again = load_pretrained(Auto, tmp_path)
    assert head_counts(again) == [3, 4, 2]
    with torch.no_grad():
        assert torch.equal(again(**inputs()).logits, before)
    resaved = tmp_path / "resaved"
    assert save_pretrained(again, resaved) is not None  # now described by a structure file
    assert "pruned_heads" not in json.loads((resaved / "config.json").read_text())
    assert head_counts(load_pretrained(Auto, resaved)) == [3, 4, 2]


def test_structure_file_naming_a_missing_module_fails(tmp_path) -> None:
    from transformers import AutoModelForSequenceClassification as Auto

    model = tiny_model("bert")
    _shrink_ffn(model, [10, 64, 64])
    save_pretrained(model, tmp_path)
    text = (tmp_path / STRUCTURE_FILE).read_text().replace("layer.0.intermediate", "layer.9.intermediate")
    (tmp_path / STRUCTURE_FILE).write_text(text)
    with pytest.raises(CompressorError, match="does not have"):
        load_pretrained(Auto, tmp_path)


def test_evaluator_backend_loads_structure_files(tmp_path) -> None:
    from compressor.artifact import Artifact
    from compressor.evaluate.backends import PyTorchBackend

    model = tiny_model("bert")
    _shrink_ffn(model, [16, 8, 64])
    save_pretrained(model, tmp_path)
    loaded = PyTorchBackend.load_model(Artifact(name="m", path=tmp_path), transformers.AutoModelForSequenceClassification)
    assert ffn_widths(loaded) == [16, 8, 64]
