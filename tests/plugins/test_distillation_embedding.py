"""``distill.embedding``: sentence-embedding distillation on raw text (Reimers & Gurevych 2020),
on tiny random encoders carrying real sentence-transformers files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from compressor.testing import sentence_transformers_files

from compressor.artifact import Artifact
from compressor.errors import StageError
from compressor.task import TaskData

WORDS = [f"w{i}" for i in range(60)] + ["good", "great", "bad", "awful"]  # in the fixture vocabulary


@pytest.fixture
def st_teacher(tmp_path: Path, tiny_encoder_dir: Path) -> Artifact:
    folder = tmp_path / "teacher"
    shutil.copytree(tiny_encoder_dir, folder)
    sentence_transformers_files(folder, 32)
    return Artifact(name="baseline", path=folder)


def sentences(n: int, seed: int = 0) -> list[str]:
    import random

    rng = random.Random(seed)
    words = WORDS
    return [" ".join(rng.choices(words, k=rng.randint(4, 10))) + "." for _ in range(n)]


@pytest.fixture
def raw_text() -> TaskData:
    import datasets

    # a paragraph per row: sentence splitting must turn each into several examples
    rows = [" ".join(s.capitalize() for s in sentences(4, seed=i)) for i in range(60)]
    return TaskData(
        type="sentence-embedding",
        splits={"train": datasets.Dataset.from_dict({"text": rows}),
                "validation": datasets.Dataset.from_dict({"text": rows[:5]}),
                "test": datasets.Dataset.from_dict({"text": rows[:5]})},
        name="synthetic-paragraphs",
    )


def config(**kw: Any) -> Any:
    from compressor_distillation.embedding import EmbeddingDistillationConfig

    base = dict(epochs=1, batch_size=16, learning_rate=5e-4, max_length=32, logging_steps=5,
                heldout_sentences=40, warmup_ratio=0.0)
    base.update(kw)
    return EmbeddingDistillationConfig(**base)


def test_sentence_splitting_keeps_whole_sentences() -> None:
    from compressor_distillation.embedding import collect_sentences, split_sentences

    text = 'Stocks fell on Monday. "It was bad," he said! Was it? 3 days later\nA new line'
    assert split_sentences(text) == ["Stocks fell on Monday.", '"It was bad," he said!', "Was it?",
                                     "3 days later", "A new line"]
    assert collect_sentences([text, text], split=True, min_words=3) == [
        "Stocks fell on Monday.", '"It was bad," he said!', "3 days later", "A new line"]


def test_layer_copy_student_learns_the_teachers_embeddings(st_teacher, raw_text, make_context) -> None:
    """3 of 4 layers copied; training on the held-out-free sentences raises the held-out
    cosine to the teacher; the artifact loads with SentenceTransformer and gives the same
    embeddings as the task's head."""
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from compressor_distillation.embedding import EmbeddingDistillation

    ctx = make_context("student", data=raw_text, artifacts={"baseline": st_teacher})
    out = EmbeddingDistillation().apply(st_teacher, config(student_layers=2, epochs=3, student_init="random"), ctx)
    extra = out.lineage.extra
    assert extra["student_layers"] == 2 and extra["student_init"] == "random"
    assert extra["train_sentences"] > 60  # paragraphs were split into sentences
    assert extra["heldout_cosine_after"] > extra["heldout_cosine_before"]
    assert extra["projection"] is None and extra["pooling"] == "mean pooling, normalised"
    for name in ("modules.json", "1_Pooling", "sentence_bert_config.json", "model.safetensors"):
        assert (out.path / name).exists(), name
    st = SentenceTransformer(str(out.path), device="cpu")
    texts = sentences(5, seed=99)
    emb = st.encode(texts)
    assert emb.shape == (5, 32)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_narrower_student_gets_a_saved_projection(tmp_path, st_teacher, raw_text, make_context, tokenizer) -> None:
    """A width-16 student is trained through a 16 -> 32 projection saved as a Dense module:
    SentenceTransformer(folder) then gives 32-wide embeddings."""
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import BertModel

    from transformers import BertConfig

    from compressor_distillation.embedding import EmbeddingDistillation

    folder = tmp_path / "narrow"
    torch.manual_seed(3)
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=64)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    ctx = make_context("narrow", data=raw_text, artifacts={"baseline": st_teacher})
    out = EmbeddingDistillation().apply(
        st_teacher, config(student={"model": str(folder), "source": "local"}), ctx)
    assert out.lineage.extra["projection"] == [16, 32]
    modules = json.loads((out.path / "modules.json").read_text())
    assert [m["path"] for m in modules] == ["", "1_Pooling", "2_Dense", "3_Normalize"]
    st = SentenceTransformer(str(out.path), device="cpu")
    assert st.encode(["w1 w2 good"]).shape == (1, 32)


def test_hidden_cosine_refused_across_tokenizers(tmp_path, st_teacher, raw_text, make_context) -> None:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from compressor_distillation.embedding import EmbeddingDistillation

    folder = tmp_path / "other-vocab"
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"]) + "\n")
    BertTokenizerFast(vocab=str(folder / "vocab.txt")).save_pretrained(folder)
    BertModel(BertConfig(vocab_size=7, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=64)).save_pretrained(folder)
    ctx = make_context("x", data=raw_text, artifacts={"baseline": st_teacher})
    with pytest.raises(StageError, match="alpha_hidden_cos"):
        EmbeddingDistillation().apply(
            st_teacher, config(student={"model": str(folder)}, alpha_hidden_cos=1.0), ctx)


def test_config_errors_and_task_refusal() -> None:
    from pydantic import ValidationError

    from compressor_distillation.embedding import EmbeddingDistillation

    with pytest.raises(ValidationError, match="at least one of"):
        config(alpha_mse=0, alpha_cos=0)
    with pytest.raises(ValidationError, match="cannot be combined"):
        config(student="input", student_layers=2)
    with pytest.raises(ValidationError, match="extra"):
        config(alpha_kl=1.0)
    assert not EmbeddingDistillation.supports_task("text-classification")
    assert "distill.distilbert" in EmbeddingDistillation.task_refusal("text-classification")


def test_empty_corpus_is_a_stage_error(st_teacher, make_context) -> None:
    import datasets

    from compressor_distillation.embedding import EmbeddingDistillation

    empty = TaskData(type="sentence-embedding", splits={
        s: datasets.Dataset.from_dict({"text": []}) for s in ("train", "validation", "test")})
    ctx = make_context("e", data=empty, artifacts={"baseline": st_teacher})
    with pytest.raises(StageError, match="needs text"):
        EmbeddingDistillation().apply(st_teacher, config(), ctx)
