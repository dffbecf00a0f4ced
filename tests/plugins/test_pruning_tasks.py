"""Structured pruning scores parts with the task's loss: a sentence-embedding model (no labels:
the distance to the unpruned model's embeddings) and a token classifier (the head's loss
from per-token labels)."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch

from compressor import Artifact
from compressor.task import TaskData
from compressor.testing import make_context, sentence_transformers_files

from compressor_pruning.common import TaskBatches, gate_scores, importance_batches
from compressor_pruning.plugin import FFNPruning, FFNPruningConfig, HeadPruning, HeadPruningConfig

WORDS = [f"w{i}" for i in range(40)]


def _encoder(folder: Path, auto: str, **head) -> Path:
    from transformers import BertConfig, BertTokenizerFast
    import transformers

    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tok = BertTokenizerFast(vocab=str(folder / "vocab.txt"), model_max_length=64)
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64, **head)
    getattr(transformers, auto).from_config(config).save_pretrained(folder)
    return folder


def _sentences(n: int) -> list[str]:
    rng = np.random.default_rng(0)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(3, 10)))) for _ in range(n)]


def test_sentence_embedding_heads_are_scored_by_the_distance_to_the_unpruned_model(tmp_path: Path) -> None:
    folder = sentence_transformers_files(_encoder(tmp_path / "enc", "AutoModel"), 32)
    split = datasets.Dataset.from_dict({"text": _sentences(24)})
    data = TaskData(type="sentence-embedding", splits={"train": split, "validation": split, "test": split})
    context = make_context(tmp_path / "ctx", data=data)
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(folder).eval()
    batches = importance_batches(context, AutoTokenizer.from_pretrained(folder), split="validation",
                                 samples=24, batch_size=8, max_length=32, seed=0, model=model)
    assert isinstance(batches, TaskBatches) and len(batches) == 3
    # the unpruned model is at distance 0 from its own embeddings: the loss is 0 ...
    assert float(batches.loss(model, batches[0])) == pytest.approx(0.0, abs=1e-6)
    # ... and its gradient too, so the gates' scores come from a changed model only
    attn_out = [layer.attention.output.dense for layer in model.encoder.layer]
    with torch.no_grad():
        attn_out[0].weight.mul_(0.5)  # a perturbed model is at a positive distance
    grads, _ = gate_scores(model, attn_out, 8, batches)
    assert float(batches.loss(model, batches[0])) > 0
    assert all(g.shape == (4,) for g in grads) and float(grads[0].sum()) > 0

    # through the strategy: heads removed, the artifact still loads as a sentence embedder
    art = HeadPruning().apply(
        Artifact(name="baseline", path=folder), HeadPruningConfig(fraction=0.25, importance_samples=16),
        make_context(tmp_path / "run", data=data),
    )
    assert json.dumps(art.lineage.extra)
    from compressor.architectures import head_counts
    from compressor.structure import load_pretrained
    from transformers import AutoModel

    assert sum(head_counts(load_pretrained(AutoModel, art.path))) == 6  # 8 heads less 25%


def test_token_classifier_ffn_is_scored_by_the_per_token_loss(tmp_path: Path) -> None:
    folder = _encoder(tmp_path / "tok", "AutoModelForTokenClassification", num_labels=3,
                      id2label={0: "O", 1: "B-x", 2: "I-x"}, label2id={"O": 0, "B-x": 1, "I-x": 2})
    rng = np.random.default_rng(1)
    words = [list(rng.choice(WORDS, size=int(rng.integers(3, 8)))) for _ in range(24)]
    tags = [[1 if w in ("w1", "w2") else 0 for w in ws] for ws in words]  # ids of O, B-x
    split = datasets.Dataset.from_dict({"text": words, "label": tags})
    data = TaskData(type="token-classification", splits={"train": split, "validation": split, "test": split},
                    label_names=["O", "B-x", "I-x"])
    art = FFNPruning().apply(
        Artifact(name="baseline", path=folder), FFNPruningConfig(fraction=0.5, importance_samples=16),
        make_context(tmp_path / "run", data=data),
    )
    from transformers import AutoModelForTokenClassification

    from compressor.structure import load_pretrained

    pruned = load_pretrained(AutoModelForTokenClassification, art.path)
    assert [layer.intermediate.dense.out_features for layer in pruned.bert.encoder.layer] == [32, 32]
