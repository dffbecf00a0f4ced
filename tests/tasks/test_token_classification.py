"""token-classification: sub-token alignment with each tokenizer kind, entity metrics equal to
seqeval's strict IOB2 ones, scoring through a real backend, soft targets, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _tiny_heads import backend, ner_rows, tiny_head, train

from compressor import testing
from compressor.errors import CompressorError, SourceError
from compressor.task import TaskData
from compressor.tasks.token_classification import (
    IGNORE,
    TokenClassification,
    align_labels,
    entity_counts,
)

TASK = TokenClassification()
WNUT = Path(__file__).resolve().parents[3] / "shared" / "data" / "wnut17"


def _data(rows: dict, names_from: dict | None = None) -> TaskData:
    import datasets

    ds = datasets.Dataset.from_dict(rows)
    splits, names = TASK.normalise({"train": ds}, {"train": "synthetic.conll"}, None)
    s = splits["train"]
    return TaskData(type=TASK.name, splits={"train": s, "validation": s, "test": s}, label_names=names)


def _wordpiece_with_pieces():
    from transformers import BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "un", "##bel", "##iev", "##able", "movie"]
    return BertTokenizer(vocab={t: i for i, t in enumerate(vocab)})


@pytest.mark.parametrize("kind", ["wordpiece", "roberta", "xlm-roberta"])
def test_a_word_split_into_many_subtokens_is_labelled_on_its_first_only(kind: str) -> None:
    tok = _wordpiece_with_pieces() if kind == "wordpiece" else testing.tiny_tokenizer(kind)
    word = "unbelievable"
    words, labels = ["the", word, "movie"], [0, 3, 4]
    enc = tok([words], is_split_into_words=True)
    pieces = tok.convert_ids_to_tokens(enc["input_ids"][0])
    ids = enc.word_ids(0)
    assert ids.count(1) >= 3, pieces  # the word really is split into many sub-tokens
    aligned = align_labels(ids, labels)
    first = ids.index(1)
    assert aligned[first] == 3
    assert all(aligned[p] == IGNORE for p, w in enumerate(ids) if w == 1 and p != first)
    assert aligned[0] == IGNORE and aligned[-1] == IGNORE  # special tokens
    assert [a for a in aligned if a != IGNORE] == labels  # one label per word, in order

    data = _data({"text": [words], "label": [["O", "B-x", "I-x"]]})
    row = TASK.tokenize(data.splits["train"], tok, 64, data)[0]
    assert [v for v in row["labels"] if v != IGNORE] == [data.label_names.index(t) for t in ["O", "B-x", "I-x"]]


def test_entity_metrics_equal_seqeval_strict_iob2_and_bootstrap_is_one_matrix_product() -> None:
    from seqeval.metrics import f1_score, precision_score, recall_score
    from seqeval.scheme import IOB2

    from compressor.tasks.base import Scored

    rng = np.random.default_rng(0)
    tags = ["O", "B-a", "I-a", "B-b", "I-b"]
    gold, pred = [], []
    for _ in range(200):
        n = int(rng.integers(1, 12))
        g = ["O"] * n
        for i in range(n):  # valid IOB2 gold
            if rng.random() < 0.3:
                g[i] = "B-" + str(rng.choice(["a", "b"]))
            elif i and g[i - 1] != "O" and rng.random() < 0.5:
                g[i] = "I-" + g[i - 1][2:]
        p = [t if rng.random() < 0.8 else str(rng.choice(tags)) for t in g]  # may be invalid IOB2
        gold.append(g)
        pred.append(p)
    counts = entity_counts(gold, pred)
    scored = Scored(arrays={"tp": counts[:, 0], "predicted": counts[:, 1], "gold": counts[:, 2]})
    full = TASK.full_metrics(scored, None)
    kw = {"mode": "strict", "scheme": IOB2}
    assert full["entity_f1"] == pytest.approx(f1_score(gold, pred, **kw))
    assert full["entity_precision"] == pytest.approx(precision_score(gold, pred, **kw))
    assert full["entity_recall"] == pytest.approx(recall_score(gold, pred, **kw))

    weights = rng.multinomial(200, np.full(200, 1 / 200), size=1000).astype(float)  # bootstrap
    matrix = TASK.metric_matrix(weights, scored, None)
    assert matrix["entity_f1"].shape == (1000,)
    idx = np.repeat(np.arange(200), weights[7].astype(int))
    assert matrix["entity_f1"][7] == pytest.approx(f1_score([gold[i] for i in idx], [pred[i] for i in idx], **kw))


def test_a_tiny_model_learns_the_tags_and_is_scored_through_the_backend() -> None:
    tok = testing.tiny_tokenizer("roberta")  # byte-level BPE: words split into pieces
    data = _data(ner_rows(48))
    model = tiny_head("token", tok, **TASK.model_kwargs(data))
    rows = TASK.tokenize(data.splits["train"], tok, 64, data)
    batch = TASK.collator(tok)([rows[i] for i in range(4)])
    targets = TASK.soft_targets(model(**batch), batch)
    assert [t.name for t in targets] == ["logits"] and targets[0].kind == "distribution"
    assert targets[0].values.shape == (int((batch["labels"] != IGNORE).sum()), data.num_labels)

    train(model, rows, TASK.collator(tok), steps=120)
    scored = TASK.score(backend(model, tok), data.splits["test"], data, batch_size=16)
    metrics = TASK.full_metrics(scored, data)
    assert metrics["entity_f1"] > 0.9, metrics
    assert scored.extra["words_unscored"] == 0
    assert scored.predictions["offsets"][-1] == sum(len(t) for t in data.splits["test"]["text"])
    assert set(scored.extra["per_type"]) <= {"work", "quality"}


def test_words_past_the_length_limit_are_predicted_outside_and_counted() -> None:
    tok = testing.tiny_tokenizer("bert")
    rows = {"text": [["good"] * 80], "label": [["B-quality"] * 80]}
    data = _data(rows)
    model = tiny_head("token", tok, **TASK.model_kwargs(data))
    scored = TASK.score(backend(model, tok), data.splits["test"], data, batch_size=2)
    assert scored.extra["words_unscored"] == 80 - (64 - 2)
    assert scored.arrays["gold"][0] == 80


def test_a_sequence_classifier_is_refused_with_the_reason() -> None:
    tok = testing.tiny_tokenizer("bert")
    data = _data(ner_rows(4))
    from transformers import AutoModelForSequenceClassification

    model = tiny_head("token", tok, num_labels=2)
    seq = AutoModelForSequenceClassification.from_config(model.config).eval()
    with pytest.raises(CompressorError, match="token classification needs"):
        TASK.score(backend(seq, tok), data.splits["test"], data, batch_size=2)


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        (["O", "I-x"], "must start with B-x"),         # IOB1
        (["O", "X-x"], "is not IOB2"),
        (["O"], "2 words but 1 tags"),
    ],
)
def test_bad_tags_name_the_file_and_row(tags: list, message: str) -> None:
    import datasets

    ds = datasets.Dataset.from_dict({"text": [["a", "b"], ["a", "b"]], "label": [["O", "O"], tags]})
    with pytest.raises(SourceError, match=message) as err:
        TASK.normalise({"train": ds}, {"train": "/data/x.jsonl"}, None)
    assert "/data/x.jsonl: row 2" in str(err.value)


def test_hub_style_class_ids_become_tag_names() -> None:
    import datasets

    features = datasets.Features({"text": datasets.Sequence(datasets.Value("string")),
                                  "label": datasets.Sequence(datasets.ClassLabel(names=["O", "B-p", "I-p"]))})
    ds = datasets.Dataset.from_dict({"text": [["Ann", "Lee", "ran"]], "label": [[1, 2, 0]]}, features=features)
    splits, names = TASK.normalise({"train": ds}, {"train": "hub"}, None)
    assert names == ["O", "B-p", "I-p"]
    assert splits["train"]["label"] == [[1, 2, 0]]


@pytest.mark.skipif(not WNUT.is_dir(), reason=f"WNUT-17 is not at {WNUT}")
def test_wnut17_dev_aligns_one_label_per_word_with_the_packaged_minilm_tokenizer() -> None:
    from transformers import AutoTokenizer

    from compressor.sources.formats import read_conll

    folder = Path.home() / ".cache" / "compressor" / "models" / "all-minilm-l6-v2"
    if not (folder / "tokenizer.json").is_file() and not (folder / "tokenizer_config.json").is_file():
        pytest.skip(f"the packaged MiniLM is not cached at {folder}")
    tok = AutoTokenizer.from_pretrained(folder)
    raw = read_conll(WNUT / "dev.conll").rename_columns({"tokens": "text", "tags": "label"})
    splits, names = TASK.normalise({"test": raw}, {"test": str(WNUT / "dev.conll")}, None)
    assert len(names) == 13 and names[0] == "O"
    data = TaskData(type=TASK.name, splits=splits, label_names=names)
    enc = TASK.tokenize(splits["test"], tok, 128, data)
    words = [len(w) for w in splits["test"]["text"]]
    labelled = [sum(1 for v in row if v != IGNORE) for row in enc["labels"]]
    # every word gets exactly one label, except words the tokenizer drops entirely (WNUT dev
    # has four lone U+FE0F variation selectors): those are the only ones missing
    dropped = sum(1 for ws in splits["test"]["text"] for w in ws if not tok.tokenize(w))
    assert sum(words) - sum(labelled) == dropped <= 5
