"""What transformers and optimum already know, read instead of tables of our own (issue 24
items 5 and 7): which model types are encoders (transformers' auto classes), and which config
attribute holds each size (optimum's normalized configs)."""

from __future__ import annotations

import pytest

from _tiny_encoders import ARCHITECTURES, tiny_config, tiny_model

from compressor.architectures import (
    DECODER,
    ENCODER,
    ENCODER_DECODER,
    NameMatchingAdapter,
    adapter_for,
    config_size,
    encoder_layout,
    layer_count,
    model_kind,
    model_refusal,
    normalized_attr,
)
from compressor.errors import StageError


@pytest.mark.parametrize(
    ("model_type", "kind"),
    [
        ("bert", ENCODER),  # has BertLMHeadModel (causal LM) but also a masked-LM class
        ("roberta", ENCODER),
        ("modernbert", ENCODER),
        ("eurobert", ENCODER),
        ("modernbert-decoder", DECODER),
        ("llama", DECODER),
        ("gpt2", DECODER),
        ("xlnet", DECODER),  # permutation LM: a causal-LM class, no masked-LM class
        ("t5", ENCODER_DECODER),
        ("bart", ENCODER_DECODER),
        ("no-such-type", None),
    ],
)
def test_model_kind_reads_transformers_auto_classes(model_type: str, kind: str | None) -> None:
    assert model_kind(model_type) == kind


def test_model_refusal_reasons() -> None:
    assert model_refusal({"model_type": "bert"}) is None
    assert "(a decoder)" in model_refusal({"model_type": "llama"})
    assert "(an encoder-decoder)" in model_refusal({"model_type": "t5"})
    assert "is_decoder: true" in model_refusal({"model_type": "bert", "is_decoder": True})
    # a registered encoder type: transformers is not asked, the config's flags still are
    assert model_refusal({"model_type": "bert"}, known_encoder=True) is None
    assert "is_encoder_decoder" in model_refusal({"model_type": "bert", "is_encoder_decoder": True},
                                                 known_encoder=True)
    assert "axial" in model_refusal({"model_type": "reformer"})
    assert model_refusal({"model_type": "no-such-type"}) is None


def test_optimum_names_distilberts_attributes() -> None:
    """optimum's normalized config, not our table, names DistilBERT's heads and width; the
    layer count resolves through the config's attribute_map to the attribute it is stored in."""
    assert normalized_attr("distilbert", "heads") == "n_heads"
    assert normalized_attr("distilbert", "hidden") == "dim"
    assert normalized_attr("llama", "kv_heads") == "num_key_value_heads"
    assert normalized_attr("eurobert", "heads") is None  # not covered: our tables answer
    config = tiny_config("distilbert")
    assert layer_count(config) == ("n_layers", 3)
    assert config_size(config, "heads", ()) == ("n_heads", 4)
    assert config_size(config, "hidden", ()) == ("dim", 32)


@pytest.mark.parametrize(
    "arch", sorted(t for t in ARCHITECTURES if normalized_attr(t, "layers") is not None)
)
def test_adapters_agree_with_optimum(arch: str) -> None:
    """For every adapter family optimum covers, the sizes optimum names are the ones the
    adapter reads off the model (depth, heads, width), and the fallback reads the same."""
    model = tiny_model(arch)
    layout = encoder_layout(model)
    config = model.config
    assert layout.layers.count == config_size(config, "layers", ())[1]
    assert layout.hidden_size == config_size(config, "hidden", ())[1]
    if layout.num_heads:
        assert layout.num_heads == config_size(config, "heads", ())[1]
    if not adapter_for(model).shared_layers:
        try:
            found = NameMatchingAdapter().layout(model)
        except StageError:  # module names the fallback does not match (ModernBERT's Wqkv)
            return
        assert (found.num_heads, found.hidden_size, found.layers.count) == (
            layout.num_heads, layout.hidden_size, layout.layers.count)
