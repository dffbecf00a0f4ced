"""Tiny random sequence classifiers of each supported encoder family, built from configs.

Shared by tests/core and tests/plugins (``from _tiny_encoders import ...``: pytest puts
``tests/`` on the path for its conftest).
"""

from __future__ import annotations

from typing import Any

import torch

SMALL = dict(vocab_size=99, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
             intermediate_size=64, max_position_embeddings=64, num_labels=3)


def tiny_config(arch: str) -> Any:
    """Config of a 3-layer, 4-head (head size 8), FFN-64 model of family ``arch``."""
    import transformers as tf

    if arch == "bert":
        return tf.BertConfig(**SMALL)
    if arch == "roberta":
        return tf.RobertaConfig(**SMALL)
    if arch == "xlm-roberta":
        return tf.XLMRobertaConfig(**SMALL)
    if arch == "electra":
        return tf.ElectraConfig(embedding_size=16, **SMALL)
    if arch == "mpnet":
        return tf.MPNetConfig(**SMALL)
    if arch == "distilbert":
        return tf.DistilBertConfig(vocab_size=99, dim=32, n_layers=3, n_heads=4, hidden_dim=64,
                                   max_position_embeddings=64, num_labels=3)
    if arch == "deberta-v2":
        return tf.DebertaV2Config(relative_attention=True, position_buckets=16,
                                  pos_att_type=["p2c", "c2p"], **SMALL)
    raise ValueError(arch)


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
