"""Fixtures for the built-in strategy plugins: tiny offline models, tokenizer and task.

Everything is built from configs and a hand-written vocabulary; nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import logging
import random
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from compressor.artifact import Artifact
from compressor.strategy import StageContext
from compressor.task import TaskData

POSITIVE = ["good", "great", "excellent", "wonderful", "superb", "lovely", "fine", "nice"]
NEGATIVE = ["bad", "awful", "terrible", "horrible", "poor", "dreadful", "boring", "weak"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
FILLER = [f"w{i}" for i in range(300)]

TINY = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64)


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread: these models are tiny, and on a busy 2-core machine
    OpenMP's spinning threads make every step 10-20x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    with single_thread():
        yield


def _sentence(rng: random.Random, label: int) -> str:
    words = rng.choices(FILLER, k=rng.randint(5, 12))
    cue = POSITIVE if label == 1 else NEGATIVE
    for _ in range(rng.randint(1, 2)):
        words.insert(rng.randrange(len(words) + 1), rng.choice(cue))
    return " ".join(words)


def _split(n: int, seed: int) -> dict[str, list[Any]]:
    rng = random.Random(seed)
    labels = [i % 2 for i in range(n)]
    rng.shuffle(labels)
    return {"text": [_sentence(rng, y) for y in labels], "label": labels}


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a BertTokenizerFast over a small vocabulary."""
    from transformers import BertTokenizerFast

    folder = tmp_path_factory.mktemp("tokenizer")
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(SPECIAL + POSITIVE + NEGATIVE + FILLER) + "\n", encoding="utf-8")
    tok = BertTokenizerFast(vocab=str(vocab), do_lower_case=True, model_max_length=64)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_dir)


@pytest.fixture(scope="session")
def task_data() -> TaskData:
    """Binary sentiment made of filler words plus one or two cue words ("good" vs "bad")."""
    import datasets

    splits = {
        name: datasets.Dataset.from_dict(_split(n, seed))
        for name, n, seed in (("train", 320, 1), ("validation", 96, 2), ("test", 96, 3))
    }
    return TaskData(
        type="text-classification",
        splits=splits,
        label_names=["negative", "positive"],
        name="synthetic-sentiment",
    )


def tiny_bert_config(tokenizer: Any, **overrides: Any) -> Any:
    from transformers import BertConfig

    kw = dict(TINY, vocab_size=len(tokenizer), max_position_embeddings=64, num_labels=2)
    kw.update(overrides)
    return BertConfig(**kw)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer: Any) -> Path:
    """A randomly initialised 4-layer BERT classifier (hidden 32) saved with its tokenizer."""
    import torch
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-bert")
    BertForSequenceClassification(tiny_bert_config(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer: Any) -> Path:
    """A headless tiny BERT encoder (like a sentence-embedding checkpoint) with tokenizer."""
    import torch
    from transformers import BertModel

    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("tiny-encoder")
    BertModel(tiny_bert_config(tokenizer), add_pooling_layer=True).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def make_context(tmp_path: Path, task_data: TaskData) -> Callable[..., StageContext]:
    """Factory of :class:`StageContext` objects rooted in ``tmp_path``."""

    def make(stage: str = "stage", *, data: TaskData | None = None, **kw: Any) -> StageContext:
        from compressor.plugins import get_plugins

        out = tmp_path / stage / "model"
        work = tmp_path / stage / "work"
        out.mkdir(parents=True, exist_ok=True)
        work.mkdir(parents=True, exist_ok=True)
        kw.setdefault("seed", 0)
        kw.setdefault("progress", False)
        kw.setdefault("logger", logging.getLogger("compressor.tests"))
        kw.setdefault("plugins", get_plugins())  # the installed plugins' formats, as in a run
        return StageContext(
            stage_name=stage, output_dir=out, work_dir=work, data=data or task_data, **kw
        )

    return make


@pytest.fixture(scope="session")
def finetuned_teacher(
    tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path, task_data: TaskData
) -> Artifact:
    """The tiny BERT fine-tuned on the synthetic task by the ``finetune`` strategy (once)."""
    from compressor_finetune.plugin import FineTune, FineTuneConfig

    root = tmp_path_factory.mktemp("finetune-session")
    ctx = StageContext(
        stage_name="finetune",
        output_dir=root / "model",
        work_dir=root / "work",
        data=task_data,
        seed=0,
        progress=False,
        artifacts={"baseline": Artifact(name="baseline", path=tiny_bert_dir)},
    )
    ctx.output_dir.mkdir()
    ctx.work_dir.mkdir()
    config = FineTuneConfig(**FAST_FINETUNE)
    with single_thread():
        return FineTune().apply(ctx.artifacts["baseline"], config, ctx)


FAST_FINETUNE = dict(
    epochs=4, learning_rate=2e-3, batch_size=16, warmup_ratio=0.1, logging_steps=10, max_length=32
)
