"""Tiny random sequence classifiers of each supported encoder family, built from configs.

Shared by tests/core and tests/plugins (``from _tiny_encoders import ...``: pytest puts
``tests/`` on the path for its conftest). :data:`ARCHITECTURES` lists every model type the
built-in architecture adapters are tested on; docs/architectures.md is generated from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

SMALL = dict(vocab_size=99, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
             intermediate_size=64, max_position_embeddings=64, num_labels=3)

_BERT_LIKE = ("bert", "roberta", "xlm-roberta", "camembert", "data2vec-text", "ernie", "roformer",
              "megatron-bert", "roc_bert", "xlm-roberta-xl", "roberta-prelayernorm", "mra", "yoso")

#: model type -> extra config keys over :data:`SMALL` (``None``: built specially below)
ARCHITECTURES: dict[str, dict[str, Any] | None] = {
    **{t: {} for t in _BERT_LIKE},
    "electra": {"embedding_size": 16},
    "rembert": {"input_embedding_size": 16, "output_embedding_size": 16},
    "xmod": {"languages": ["en_XX"], "default_language": "en_XX"},
    "big_bird": {"attention_type": "original_full"},
    "nystromformer": {"num_landmarks": 8, "segment_means_seq_len": 8, "conv_kernel_size": 3},
    "mpnet": {},
    "distilbert": None,
    "deberta-v2": {"relative_attention": True, "position_buckets": 16, "pos_att_type": ["p2c", "c2p"]},
    "deberta": {"relative_attention": True, "max_relative_positions": 16, "pos_att_type": ["p2c", "c2p"]},
    "modernbert": {"global_attn_every_n_layers": 2, "local_attention": 8, "pad_token_id": 0,
                   "cls_token_id": 2, "sep_token_id": 3, "bos_token_id": 2, "eos_token_id": 3},
    "albert": {"embedding_size": 16},
    "longformer": {"attention_window": [4, 4, 4]},
    "mobilebert": {"embedding_size": 16, "true_hidden_size": 16, "intra_bottleneck_size": 16,
                   "num_feedforward_networks": 2},
    "fnet": {"use_tpu_fourier_optimizations": False},
    "convbert": {"embedding_size": 16},
    "ibert": {},
    "squeezebert": {"embedding_size": 32},
    # Llama-style blocks (LlamaStyleAdapter); EuroBERT with grouped key/value heads (2 per 4)
    "eurobert": {"num_key_value_heads": 2, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2,
                 "mask_token_id": 3},
    "gte": {},
    "nomic_bert": {},
    "ultrabert": {"head_dim": 8, "num_key_value_heads": 4, "sliding_window": 8, "prediction_head_size": 32},
    "esmc": {"pad_token_id": 1, "mask_token_id": 4, "num_key_value_heads": 4, "head_dim": 8},
    "jina_embeddings_v3": {"pad_token_id": 1},
    "lilt": {"hidden_size": 48, "intermediate_size": 96, "channel_shrink_ratio": 4},
    "tapas": {},
}


_VISION = {"model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 64,
           "num_hidden_layers": 1, "num_attention_heads": 4, "image_size": 32, "patch_size": 8}

#: encoder model types no built-in adapter claims -> extra config keys over :data:`SMALL`
#: for a tiny model (what the defaults lack or size too large); the full sweep of
#: tests/core/test_architectures_matrix.py builds every other encoder type from
#: :data:`SMALL` alone
OTHER_ENCODERS: dict[str, dict[str, Any]] = {
    "canine": {"num_hash_buckets": 64, "local_transformer_stride": 4, "bos_token_id": 2, "eos_token_id": 3},
    "esm": {"pad_token_id": 1, "mask_token_id": 4},
    "layoutlmv3": {"coordinate_size": 4, "shape_size": 8, "input_size": 32, "patch_size": 8},
    "luke": {"entity_vocab_size": 16, "entity_emb_size": 16, "pad_token_id": 1},
    "markuplm": {"max_xpath_tag_unit_embeddings": 32, "max_xpath_subs_unit_embeddings": 32,
                 "tag_pad_id": 31, "subs_pad_id": 31, "xpath_unit_hidden_size": 8, "max_depth": 4},
    "roc_bert": {"pronunciation_embed_dim": 16, "pronunciation_vocab_size": 16, "shape_embed_dim": 16,
                 "shape_vocab_size": 16},
}

#: encoder model types whose config is not BERT-shaped: their whole tiny config (plus
#: ``num_labels``), :data:`SMALL` not merged (its keys would be unused attributes that the
#: name-matching fallback reads as the model's sizes)
OWN_CONFIGS: dict[str, dict[str, Any]] = {
    "funnel": {"vocab_size": 99, "block_sizes": [1, 1, 1], "d_model": 32, "n_head": 4, "d_head": 8,
               "d_inner": 64, "max_position_embeddings": 64},
    "xlm": {"vocab_size": 99, "emb_dim": 32, "n_layers": 3, "n_heads": 4, "max_position_embeddings": 64},
    "flaubert": {"vocab_size": 99, "emb_dim": 32, "n_layers": 3, "n_heads": 4, "max_position_embeddings": 64},
    "perceiver": {"vocab_size": 99, "d_model": 32, "d_latents": 32, "num_latents": 8,
                  "num_self_attends_per_block": 3, "num_self_attention_heads": 4,
                  "num_cross_attention_heads": 4, "max_position_embeddings": 64},
    "reformer": {"vocab_size": 99, "hidden_size": 32, "attention_head_size": 8, "num_attention_heads": 4,
                 "attn_layers": ["local", "local", "local"], "axial_pos_shape": [8, 8],
                 "axial_pos_embds_dim": [16, 16], "feed_forward_size": 64, "max_position_embeddings": 64,
                 "local_attn_chunk_length": 8, "is_decoder": False, "pad_token_id": 0},
    "modernvbert": {"text_config": {**SMALL, **ARCHITECTURES["modernbert"], "model_type": "modernbert"},
                    "vision_config": _VISION, "image_token_id": 98, "pixel_shuffle_factor": 2},
    "ultravbert": {"text_config": {**SMALL, "model_type": "ultrabert", "head_dim": 8, "num_key_value_heads": 4,
                                   "sliding_window": 8, "prediction_head_size": 32},
                   "vision_config": _VISION, "image_token_id": 98, "pixel_shuffle_factor": 2},
}


def tiny_config(arch: str) -> Any:
    """Config of a 3-layer, 4-head (head size 8), FFN-64 model of family ``arch`` (a
    ``config.model_type``): one of :data:`ARCHITECTURES`, :data:`OTHER_ENCODERS`,
    :data:`OWN_CONFIGS`, or any other type transformers knows (built from :data:`SMALL`)."""
    import transformers as tf

    if arch == "distilbert":
        return tf.DistilBertConfig(vocab_size=99, dim=32, n_layers=3, n_heads=4, hidden_dim=64,
                                   max_position_embeddings=64, num_labels=3)
    if arch in OWN_CONFIGS:
        return tf.AutoConfig.for_model(arch, **OWN_CONFIGS[arch], num_labels=SMALL["num_labels"])
    extra = ARCHITECTURES[arch] if arch in ARCHITECTURES else OTHER_ENCODERS.get(arch)
    return tf.AutoConfig.for_model(arch, **{**SMALL, **(extra or {})})


def tiny_model(arch: str, seed: int = 0) -> Any:
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(tiny_config(arch)).eval()


def inputs() -> dict[str, torch.Tensor]:
    """Two sequences of 9 tokens, the second padded after 6."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 99, (2, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def tiny_encoder(arch: str, seed: int = 0) -> Any:
    """A 4-layer tiny sequence classifier (2 labels) of family ``arch``, in eval mode."""
    import transformers as tf

    config = tf.AutoConfig.for_model(
        arch,
        **{
            **SMALL,
            **(ARCHITECTURES[arch] or {}),
            "num_labels": 2,
            "num_hidden_layers": 4,
            "pad_token_id": 0,
        },
    )
    torch.manual_seed(seed)
    return tf.AutoModelForSequenceClassification.from_config(config).eval()


def save_encoder(arch: str, folder: Path) -> Path:
    """:func:`tiny_encoder` saved with the conformance kit's WordPiece tokenizer (pad id 0)
    into ``folder``; returns ``folder``."""
    from compressor import testing

    tok = testing.tiny_tokenizer("bert")
    assert tok.pad_token_id == 0
    model = tiny_encoder(arch)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
