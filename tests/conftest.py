"""Fixtures shared by the whole suite: a tiny real BERT on disk, a fake plugin, a tiny task."""

from __future__ import annotations

import os

# Idle OpenMP threads sleep instead of spinning: with several test processes on 2 cores,
# spinning threads slow training 10-20x. (Latency benchmarks keep the default.)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import types  # noqa: E402
from pathlib import Path

import pytest

WORDS = (
    "the a movie film story actor plot scene is was very really quite good great fine "
    "wonderful superb bad awful terrible boring dull and but not with of to it this that"
).split()


def make_tokenizer_dir(path: Path) -> Path:
    """Write a BERT WordPiece tokenizer with a small real vocabulary to ``path``."""
    from transformers import BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab=str(path / "vocab.txt"))
    tok.save_pretrained(path)
    return path


def make_tiny_bert(path: Path, *, layers: int = 4, hidden: int = 32, num_labels: int = 2, seed: int = 0) -> Path:
    """Save a randomly initialised BERT sequence classifier and its tokenizer to ``path``."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    make_tokenizer_dir(path)
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=5 + len(WORDS),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=hidden * 2,
        max_position_embeddings=64,
        num_labels=num_labels,
    )
    BertForSequenceClassification(cfg).save_pretrained(path)
    return path


def sentiment_rows(n: int, seed: int = 0) -> dict[str, list]:
    """A small learnable sentiment problem: label 1 iff the sentence has a positive word."""
    import random

    rng = random.Random(seed)
    pos, neg = ["good", "great", "wonderful", "superb"], ["bad", "awful", "terrible", "boring"]
    filler = ["the", "movie", "film", "story", "is", "was", "very", "really", "quite", "plot"]
    texts, labels = [], []
    for i in range(n):
        label = i % 2
        words = rng.sample(filler, 4) + [rng.choice(pos if label else neg)]
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(label)
    return {"text": texts, "label": labels}


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def fake_plugin_module(calls: list | None = None, *, fail_on: str | None = None) -> types.ModuleType:
    """A plugin module (as a third party would write) with a copy strategy and a data set.

    ``copy.model`` copies the input model; ``fail.once`` raises the first time it runs when a
    marker file is absent, so resume can be tested.
    """
    from pydantic import Field

    from compressor import StrategyConfig, Strategy, hookimpl
    from compressor.sources.datasets import DatasetSpec

    calls = calls if calls is not None else []

    class CopyConfig(StrategyConfig):
        note: str = Field("", description="Free text copied into the lineage.")
        fail_marker: str | None = Field(None, description="Fail unless this file exists.")

    class CopyModel(Strategy):
        name = "copy.model"
        Config = CopyConfig
        description = "Copies the model unchanged (test strategy)."

        def apply(self, artifact, config, context):
            import shutil

            from compressor import StageError

            calls.append(context.stage_name)
            if config.fail_marker and not Path(config.fail_marker).exists():
                raise StageError(f"marker {config.fail_marker} missing")
            for f in Path(artifact.path).iterdir():
                if f.is_file() and f.name != "lineage.json":
                    shutil.copy2(f, context.output_dir / f.name)
            return context.new_artifact(artifact, self.name, config, extra={"note": config.note})

    def load_tiny(cache_dir):
        import datasets

        return datasets.Dataset.from_dict(sentiment_rows(200))

    mod = types.ModuleType("fake_compressor_plugin")

    @hookimpl
    def compressor_register_strategies(register):
        register(CopyModel)

    @hookimpl
    def compressor_register_datasets(register):
        register(
            DatasetSpec(
                name="tiny-sentiment",
                type="text-classification",
                load=load_tiny,
                label_names=["negative", "positive"],
                description="200 synthetic sentences",
            )
        )

    mod.compressor_register_strategies = compressor_register_strategies
    mod.compressor_register_datasets = compressor_register_datasets
    mod.calls = calls
    return mod


@pytest.fixture
def fake_plugins():
    """Loaded plugins: the core's defaults plus the fake plugin (no entry points)."""
    from compressor.plugins import Plugins

    mod = fake_plugin_module()
    plugins = Plugins().load(entry_points_enabled=False, extra=[("fake", mod)])
    plugins.fake = mod
    return plugins
