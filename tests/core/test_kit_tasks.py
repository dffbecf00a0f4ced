"""The conformance kit builds each task of :data:`compressor.testing.TASKS`: a tiny model with
the task's head, and the same rows in memory and as the files a recipe reads (CSV, CoNLL,
SQuAD JSON), so that a strategy accepting a task is run on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from compressor import testing
from compressor.recipe import DataConfig
from compressor.sources.datasets import load_task_data
from compressor.tasks import get_task

HEADS = {
    "text-classification": "BertForSequenceClassification",
    "token-classification": "BertForTokenClassification",
    "question-answering": "BertForQuestionAnswering",
}


@pytest.mark.parametrize("task", list(testing.TASKS))
def test_files_read_back_as_the_in_memory_rows(task: str, tmp_path: Path) -> None:
    files = testing.write_tiny_task_files(tmp_path, 12, 6, seed=3, task=task)
    loaded = load_task_data(
        DataConfig(files=files), datasets_registry={}, cache_dir=tmp_path / "cache", seed=0,
        base_dir=tmp_path, task_type=task,
    )
    built = testing.tiny_task_data(12, 6, seed=3, task=task)
    if task != "text-classification":  # a CSV of int labels names its classes "0", "1"
        assert loaded.label_names == built.label_names
    columns = ["text", "label"] + (["id", "text_pair"] if task == "question-answering" else [])
    for split in ("train", "validation", "test"):
        rows = [loaded.splits[split].select_columns(columns).to_list(),
                built.splits[split].select_columns(columns).to_list()]
        if task == "question-answering":  # SQuAD files group the questions by article
            rows = [sorted(r, key=lambda row: row["id"]) for r in rows]
        assert rows[0] == rows[1], split


def test_tags_mark_each_cue_and_its_intensifier() -> None:
    data = testing.tiny_task_data(64, 8, task="token-classification")
    assert data.label_names == testing.NER_TAGS
    seen = set()
    for words, tags in zip(data.splits["train"]["text"], data.splits["train"]["label"]):
        names = [testing.NER_TAGS[t] for t in tags]
        seen.update(names)
        cue = next(i for i, w in enumerate(words) if w in testing.POSITIVE + testing.NEGATIVE)
        kind = "positive" if words[cue] in testing.POSITIVE else "negative"
        if cue and words[cue - 1] in testing.INTENSIFIERS:
            assert names[cue - 1:cue + 1] == [f"B-{kind}", f"I-{kind}"]
        else:
            assert names[cue] == f"B-{kind}"
        assert sum(n != "O" for n in names) == (2 if names[cue].startswith("I-") else 1)
    assert seen == set(testing.NER_TAGS)  # both polarities, with and without an intensifier


def test_answers_are_the_cue_word_at_its_offset() -> None:
    data = testing.tiny_task_data(16, 4, task="question-answering")
    assert data.options.max_seq_length == testing.TINY_QA_OPTIONS["max_seq_length"]
    for context, answers in zip(data.splits["validation"]["text_pair"], data.splits["validation"]["label"]):
        (text,), (start,) = answers["text"], answers["answer_start"]
        assert context[start:start + len(text)] == text and text in testing.POSITIVE + testing.NEGATIVE
    titles = set(data.splits["train"]["title"]) & set(data.splits["test"]["title"])
    assert not titles  # no article in two splits


@pytest.mark.parametrize("arch", ["bert", "roberta", "xlm-roberta"])
def test_every_qa_context_spans_several_windows(arch: str) -> None:
    data = testing.tiny_task_data(16, 8, task="question-answering")
    opts = testing.TINY_QA_OPTIONS
    tok = testing.tiny_tokenizer(arch)
    split = data.splits["test"]
    enc = tok(list(split["text"]), list(split["text_pair"]), truncation="only_second",
              max_length=opts["max_seq_length"], stride=opts["doc_stride"], return_overflowing_tokens=True)
    windows = [list(enc["overflow_to_sample_mapping"]).count(i) for i in range(len(split))]
    assert min(windows) >= 2, windows


@pytest.mark.parametrize("task", list(testing.TASKS))
def test_tiny_model_has_the_task_head(task: str, tmp_path: Path) -> None:
    import json

    folder = testing.tiny_model("bert", tmp_path / task, task=task)
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == [HEADS[task]]
    model = get_task(task).auto_class().from_pretrained(folder)
    assert type(model).__name__ == HEADS[task]
    if task == "token-classification":
        assert model.config.id2label == dict(enumerate(testing.NER_TAGS))


def test_unknown_task_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown conformance task 'ner'"):
        testing.tiny_task_data(task="ner")
    with pytest.raises(ValueError, match="unknown conformance task"):
        testing.tiny_model("bert", tmp_path, task="ner")
