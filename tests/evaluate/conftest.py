"""Tiny randomly initialised BERT classifiers with a real (offline) WordPiece tokenizer."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Callable

import pytest

from compressor.artifact import Artifact, Lineage
from compressor.evaluate import EvaluationSettings
from compressor.task import TaskData

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SYLLABLES = ["ba", "ko", "ri", "mu", "te", "sa", "lo", "ni", "pe", "du",
             "ga", "vi", "zo", "he", "fa", "ju", "wy", "qe", "xo", "cy"]
WORDS = [a + b for a in SYLLABLES for b in SYLLABLES]  # 400 words


def write_vocab(path: Path, words: list[str]) -> Path:
    path.write_text("\n".join(SPECIALS + words) + "\n", encoding="utf-8")
    return path


def make_tokenizer(directory: Path, words: list[str] = WORDS) -> Any:
    from transformers import BertTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    vocab = write_vocab(directory / "vocab.txt", words)
    return BertTokenizerFast(vocab=str(vocab), model_max_length=512)


def make_texts(n: int, seed: int, *, min_words: int = 3, max_words: int = 20) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(min_words, max_words))) for _ in range(n)]


@pytest.fixture
def make_artifact(tmp_path: Path) -> Callable[..., Artifact]:
    """Factory: save a random BertForSequenceClassification + tokenizer, return its Artifact."""

    def factory(
        name: str = "baseline",
        *,
        hidden: int = 32,
        layers: int = 2,
        heads: int = 2,
        intermediate: int = 37,
        num_labels: int = 2,
        max_positions: int = 512,
        seed: int = 0,
        initializer_range: float = 0.5,
        classifier_bias: list[float] | None = None,
        words: list[str] = WORDS,
        lineage: Lineage | None = None,
    ) -> Artifact:
        import torch
        from transformers import BertConfig, BertForSequenceClassification

        torch.manual_seed(seed)
        config = BertConfig(
            vocab_size=len(SPECIALS) + len(words),
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=intermediate,
            max_position_embeddings=max_positions,
            num_labels=num_labels,
            initializer_range=initializer_range,  # inputs get clearly different logits
        )
        model = BertForSequenceClassification(config).eval()
        with torch.no_grad():
            if classifier_bias is not None:
                model.classifier.bias.copy_(torch.tensor(classifier_bias))
        path = tmp_path / name
        model.save_pretrained(path)
        make_tokenizer(tmp_path / f"{name}-vocab", words).save_pretrained(path)
        artifact = Artifact(name=name, path=path, lineage=lineage or Lineage(stage=name))
        artifact.save()
        return artifact

    return factory


def make_task_data(
    n: int = 120, *, num_labels: int = 2, seed: int = 0, pair: bool = False
) -> TaskData:
    import datasets

    rng = random.Random(seed + 1000)
    splits = {}
    for i, split in enumerate(("train", "test")):
        columns: dict[str, list] = {"text": make_texts(n, seed + i)}
        if pair:
            columns["text_pair"] = make_texts(n, seed + 100 + i)
        columns["label"] = [rng.randrange(num_labels) for _ in range(n)]
        splits[split] = datasets.Dataset.from_dict(columns)
    return TaskData(
        type="text-classification",
        splits=splits,
        label_names=[f"class{i}" for i in range(num_labels)],
        has_text_pair=pair,
        name="synthetic",
    )


@pytest.fixture
def task_data() -> TaskData:
    return make_task_data()


@pytest.fixture
def fast_settings() -> EvaluationSettings:
    """Settings that keep one evaluation well under a second."""
    return EvaluationSettings(
        batch_sizes=[1, 4],
        sequence_length=16,
        threads=1,
        warmup=1,
        min_runs=3,
        max_runs=10,
        min_time_s=0.0,
        accuracy_batch_size=16,
        calibration_s=0.0,
        bootstrap_resamples=200,
    )


@pytest.fixture
def make_data() -> Callable[..., TaskData]:
    """Factory: synthetic labelled TaskData (``make_task_data``)."""
    return make_task_data


@pytest.fixture
def words() -> list[str]:
    """The words test texts are made of (all in the default vocabulary)."""
    return list(WORDS)
