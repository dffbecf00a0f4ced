"""A raw-text corpus read as a stream: the same blocks as in memory, general distillation for
max_steps on it, resume from a checkpoint, and clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from compressor import DataConfig
from compressor.artifact import Artifact
from compressor.errors import StageError
from compressor_distillation.mlm import (
    STREAM_HELD_OUT_TEXTS,
    group_texts,
    stream_blocks,
    stream_corpus,
)
from compressor_distillation.plugin import DistilBERTDistillation, DistillationConfig

WORDS = ["good", "great", "bad", "awful", "movie", "film", "plot", "the", "a", "is"]


def texts(n: int, seed: int = 0) -> list[str]:
    import random

    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 15))) for _ in range(n)]


def write_jsonl(path: Path, rows: list[str], column: str = "text") -> Path:
    path.write_text("".join(json.dumps({column: t}) + "\n" for t in rows))
    return path


def test_streamed_blocks_are_the_in_memory_blocks(tmp_path, make_context, tokenizer: Any) -> None:
    import datasets

    train, held = texts(600), texts(50, seed=1)
    write_jsonl(tmp_path / "train.jsonl", train, column="body")
    write_jsonl(tmp_path / "validation.jsonl", held, column="body")
    ctx = make_context("s", base_dir=tmp_path)
    corpus = DataConfig(files={"train": "train.jsonl", "validation": "validation.jsonl"}, text_column="body")
    stream = stream_corpus(corpus, ctx)
    assert isinstance(stream.train, datasets.IterableDataset)
    assert stream.held_out["text"] == held and stream.name == "train.jsonl"

    streamed = list(stream_blocks(stream.train, tokenizer, 16, seed=0, shuffle_buffer=0))
    in_memory = group_texts(datasets.Dataset.from_dict({"text": train}), tokenizer, 16)
    assert len(streamed) == len(in_memory) > 100
    assert [b["input_ids"] for b in streamed] == in_memory["input_ids"]
    assert [b["special_tokens_mask"] for b in streamed] == in_memory["special_tokens_mask"]

    # shuffled in a bounded buffer: the same blocks in another order
    shuffled = list(stream_blocks(stream.train, tokenizer, 16, seed=0, shuffle_buffer=64))
    assert [b["input_ids"] for b in shuffled] != in_memory["input_ids"]
    assert sorted(map(tuple, (b["input_ids"] for b in shuffled))) == sorted(map(tuple, in_memory["input_ids"]))


def test_a_text_file_without_validation_holds_out_its_head(tmp_path, make_context) -> None:
    lines = texts(STREAM_HELD_OUT_TEXTS + 40)
    (tmp_path / "corpus.txt").write_text("\n".join(lines) + "\n")
    stream = stream_corpus(DataConfig(files={"train": "corpus.txt"}), make_context("s", base_dir=tmp_path))
    assert stream.held_out["text"] == lines[:STREAM_HELD_OUT_TEXTS]
    assert [r["text"] for r in stream.train] == lines[STREAM_HELD_OUT_TEXTS:]


@pytest.mark.parametrize(
    ("files", "column", "match"),
    [
        ({"train": "missing.jsonl"}, "text", "does not exist"),
        ({"train": "corpus.xml"}, "text", "cannot stream files of type"),
        ({"train": "corpus.jsonl"}, "body", "no column 'body'"),
        ({"validation": "corpus.jsonl"}, "text", "reads files 'train'"),
    ],
)
def test_bad_stream_sources_are_clear_errors(tmp_path, make_context, files, column, match) -> None:
    write_jsonl(tmp_path / "corpus.jsonl", texts(300))
    (tmp_path / "corpus.xml").write_text("<a/>")
    with pytest.raises(StageError, match=match):
        stream_corpus(DataConfig(files=files, text_column=column), make_context("s", base_dir=tmp_path))


@pytest.fixture(scope="module")
def mlm_teacher(tmp_path_factory: pytest.TempPathFactory, tokenizer: Any) -> Artifact:
    import torch
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("mlm-teacher")
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=4,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    BertForMaskedLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return Artifact(name="baseline", path=folder)


class Interrupted(Exception):
    pass


def test_general_distillation_streams_for_max_steps_and_resumes(
    tmp_path, make_context, mlm_teacher, monkeypatch
) -> None:
    from safetensors.torch import load_file
    from transformers import Trainer, TrainerCallback

    write_jsonl(tmp_path / "corpus.jsonl", texts(STREAM_HELD_OUT_TEXTS + 800))
    config = DistillationConfig(
        corpus={"files": {"train": "corpus.jsonl"}}, streaming=True, max_steps=6, save_steps=3,
        batch_size=8, max_length=16, learning_rate=1e-3, logging_steps=1, max_eval_blocks=20,
    )
    ctx = make_context("whole", base_dir=tmp_path)
    whole = DistilBERTDistillation().apply(mlm_teacher, config, ctx)
    extra = whole.lineage.extra
    assert extra["streamed"] is True and extra["train_blocks"] is None
    assert extra["global_step"] == 6 and extra["resumed_from_checkpoint"] is None
    assert extra["corpus"] == "corpus.jsonl" and 0 <= extra["student_mlm_accuracy"] <= 1
    assert extra["train_loss"] is not None

    # a stage interrupted at step 4 (after checkpoint-3) continues from its checkpoint
    class Stop(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 4:
                raise Interrupted

    init = Trainer.__init__

    def init_with_stop(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.add_callback(Stop())

    again = make_context("resumed", base_dir=tmp_path)
    monkeypatch.setattr(Trainer, "__init__", init_with_stop)
    with pytest.raises(Interrupted):
        DistilBERTDistillation().apply(mlm_teacher, config, again)
    monkeypatch.setattr(Trainer, "__init__", init)
    assert (again.work_dir / "checkpoint-3").is_dir()
    resumed = DistilBERTDistillation().apply(mlm_teacher, config, again)
    assert resumed.lineage.extra["resumed_from_checkpoint"] == "checkpoint-3"
    assert resumed.lineage.extra["global_step"] == 6
    state = json.loads((again.work_dir / "checkpoint-6" / "trainer_state.json").read_text())
    assert [e["step"] for e in state["log_history"] if "loss" in e] == [1, 2, 3, 4, 5, 6]
    a = load_file(str(whole.path / "model.safetensors"))
    b = load_file(str(resumed.path / "model.safetensors"))
    # steps 4-6 trained again from the same state on the same stream: close, not bit-equal
    # (the masks of the skipped batches are drawn again while skipping them). Measured
    # 1.8e-3 at lr 1e-3; a loose check, the resume itself is asserted above
    gap = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert gap < 1e-2


def test_streaming_needs_max_steps(tmp_path, make_context, mlm_teacher) -> None:
    write_jsonl(tmp_path / "corpus.jsonl", texts(STREAM_HELD_OUT_TEXTS + 50))
    config = DistillationConfig(corpus={"files": {"train": "corpus.jsonl"}}, streaming=True, max_length=16)
    with pytest.raises(StageError, match="needs a number of steps"):
        DistilBERTDistillation().apply(mlm_teacher, config, make_context("s", base_dir=tmp_path))


def test_streaming_is_refused_in_task_mode(make_context, finetuned_teacher) -> None:
    config = DistillationConfig(streaming=True, max_steps=2, max_length=16)
    with pytest.raises(StageError, match="only general"):
        DistilBERTDistillation().apply(finetuned_teacher, config, make_context("task"))
