"""question-answering: windows over long contexts, answers across window boundaries,
post-processing (n-best, length limit, context only, empty prediction), the official SQuAD
v1.1 EM/F1, a split by article, scoring through a real backend, soft targets."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from _tiny_heads import backend, qa_rows, tiny_head, train

from compressor import testing
from compressor.errors import CompressorError, SourceError
from compressor.task import TaskData
from compressor.tasks.question_answering import (
    QAOptions,
    QuestionAnswering,
    best_span,
    context_offsets,
    windows,
)
from compressor.sources.datasets import group_split_indices
from compressor.tasks.squad_metrics import normalize_answer, squad_scores

TASK = QuestionAnswering()
SQUAD = Path(__file__).resolve().parents[3] / "shared" / "data" / "squad-v1.1" / "dev-v1.1.json.gz"


def _data(rows: dict, **options: int) -> TaskData:
    import datasets

    ds = datasets.Dataset.from_dict(rows)
    splits, _ = TASK.normalise({"train": ds}, {"train": "synthetic.json"}, None)
    s = splits["train"]
    return TaskData(type=TASK.name, splits={"train": s, "validation": s, "test": s},
                    has_text_pair=True, options=QAOptions(**options))


def test_official_v11_normalisation_and_scores() -> None:
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert normalize_answer("an apple, a pear") == "apple pear"
    assert squad_scores("the Denver Broncos", ["Denver Broncos", "Broncos"]) == (1.0, 1.0)
    em, f1 = squad_scores("Denver", ["Denver Broncos"])
    assert em == 0.0 and f1 == pytest.approx(2 * 1.0 * 0.5 / 1.5)
    assert squad_scores("", ["Denver Broncos"]) == (0.0, 0.0)  # an empty prediction scores 0


def test_a_context_longer_than_the_window_is_cut_with_a_stride_and_an_answer_across_a_boundary_is_found() -> None:
    tok = testing.tiny_tokenizer("bert")  # one token per word here
    def cut(context: str):
        return windows(tok, ["what is superb"], [context], max_length=24, doc_stride=8,
                       max_query_length=8, padding=False)

    words = ["movie"] * 62
    enc, ctx = cut(" ".join(words))
    last_of_first = sum(1 for o in context_offsets(enc, 0, ctx) if o is not None) - 1
    words[last_of_first:last_of_first + 2] = ["superb", "story"]  # across the first boundary
    context = " ".join(words)
    start = context.index("superb story")
    enc, ctx = cut(context)
    spans = []
    for i in range(len(enc["input_ids"])):
        offs = [o for o in context_offsets(enc, i, ctx) if o is not None]
        spans.append((offs[0][0], offs[-1][1]))
    assert len(spans) > 3 and all(len(ids) <= 24 for ids in enc["input_ids"])
    assert spans[0][0] == 0 and spans[-1][1] == len(context)  # every character is covered
    end = start + len("superb story")
    crossing = [i for i, (a, b) in enumerate(spans) if a < end and b > start and not (a <= start and b >= end)]
    holding = [i for i, (a, b) in enumerate(spans) if a <= start and b >= end]
    assert crossing and holding  # the answer crosses a boundary, and a later window holds it whole

    # training labels: the whole answer where a window holds it, [CLS] (0) elsewhere
    data = _data({"text": ["what is superb"], "text_pair": [context],
                  "label": [{"text": ["superb story"], "answer_start": [start]}]},
                 max_seq_length=24, doc_stride=8, max_query_length=8)
    rows = TASK.tokenize(data.splits["train"], tok, 24, data)
    assert len(rows) == len(spans)
    for i, row in enumerate(rows):
        if i in holding:
            pieces = tok.convert_ids_to_tokens(row["input_ids"][row["start_positions"]:row["end_positions"] + 1])
            assert pieces == ["superb", "story"]
        else:
            assert row["start_positions"] == row["end_positions"] == 0

    # post-processing: logits that favour the answer in the window holding it give it back
    feats = []
    for i in range(len(spans)):
        offs = context_offsets(enc, i, ctx)
        s_log, e_log = np.zeros(len(offs)), np.zeros(len(offs))
        for t, o in enumerate(offs):
            if o == (start, start + 6):
                s_log[t] = 5.0 if i in holding else 1.0
            if o == (end - 5, end):
                e_log[t] = 5.0
        feats.append((s_log, e_log, offs))
    assert best_span(context, feats, n_best=5, max_answer_length=4) == "superb story"


def test_post_processing_keeps_answers_inside_the_context_and_can_predict_nothing() -> None:
    context = "abc def"
    offs = [None, None, (0, 3), (4, 7), None]  # [CLS] question [SEP]-like positions are None
    high_outside = (np.array([9.0, 8, 1, 0, 9]), np.array([9.0, 8, 0, 1, 9]), offs)
    assert best_span(context, [high_outside], n_best=5, max_answer_length=5) == "abc def"
    assert best_span(context, [high_outside], n_best=5, max_answer_length=1) in ("abc", "def")
    # the only in-context pairs end before they start or are too long: an empty prediction
    backwards = (np.array([0.0, 0, 0, 9, 0]), np.array([0.0, 0, 9, 0, 0]), offs)
    assert best_span(context, [backwards], n_best=1, max_answer_length=5) == ""
    assert best_span(context, [(np.zeros(5), np.zeros(5), [None] * 5)], n_best=5, max_answer_length=5) == ""


def test_an_empty_prediction_is_scored_zero_through_the_backend() -> None:
    tok = testing.tiny_tokenizer("bert")
    data = _data(qa_rows(3, max_words=10), max_seq_length=32, doc_stride=8, max_query_length=8,
                 max_answer_length=1, n_best=1)
    model = tiny_head("qa", tok)
    import torch

    with torch.no_grad():  # end logits favour the first token, start logits the last: no valid span
        model.qa_outputs.weight.zero_()
        model.qa_outputs.bias.zero_()
        model.qa_outputs.bias[0] = 1.0
    scored = TASK.score(backend(model, tok), data.splits["test"], data, batch_size=2)
    assert scored.extra["empty_predictions"] + sum(1 for p in scored.predictions["prediction"] if p) == 3
    for p, em in zip(scored.predictions["prediction"], scored.arrays["exact_match"]):
        if not p:
            assert em == 0.0


@pytest.mark.parametrize("arch", ["bert", "roberta"])
def test_a_tiny_model_learns_to_answer_over_windows(arch: str) -> None:
    tok = testing.tiny_tokenizer(arch)
    data = _data(qa_rows(48), max_seq_length=24, doc_stride=6, max_query_length=6, max_answer_length=5)
    model = tiny_head("qa", tok)
    rows = TASK.tokenize(data.splits["train"], tok, 24, data)
    assert len(rows) > 48  # long contexts made several windows
    batch = TASK.collator(tok)([rows[i] for i in range(4)])
    out = model(**batch)
    targets = TASK.soft_targets(out, batch)
    assert [t.name for t in targets] == ["start_logits", "end_logits"]
    assert targets[0].values.shape == batch["input_ids"].shape
    assert (targets[0].values[batch["attention_mask"] == 0] == -1e4).all()

    train(model, rows, TASK.collator(tok), steps=150)
    scored = TASK.score(backend(model, tok), data.splits["test"], data, batch_size=8)
    assert scored.extra["windows"] > 48
    metrics = TASK.full_metrics(scored, data)
    assert metrics["exact_match"] > 0.9, (metrics, scored.predictions["prediction"][:8])
    weights = np.random.default_rng(0).multinomial(48, np.full(48, 1 / 48), size=500).astype(float)
    boot = TASK.metric_matrix(weights, scored, data)
    assert boot["f1"].shape == (500,)
    assert boot["f1"][3] == pytest.approx(weights[3] @ scored.arrays["f1"] / 48)


def test_a_span_not_in_its_context_names_the_row_and_question() -> None:
    import datasets

    rows = qa_rows(3)
    rows["label"][2] = {"text": ["superb"], "answer_start": [0 if not rows["text_pair"][2].startswith("superb") else 1]}
    ds = datasets.Dataset.from_dict(rows)
    with pytest.raises(SourceError, match=r"x\.json: row 3 \(id q2\).*not the answer"):
        TASK.normalise({"train": ds}, {"train": "x.json"}, None)


def test_options_need_room_for_new_context_in_each_window() -> None:
    with pytest.raises(ValueError, match="doc_stride"):
        QAOptions(max_seq_length=64, max_query_length=32, doc_stride=30)
    tok = testing.tiny_tokenizer("bert")
    with pytest.raises(CompressorError, match="too few for a stride"):
        windows(tok, ["q"], ["c"], max_length=16, doc_stride=8, max_query_length=8, padding=False)


def test_group_split_keeps_each_article_on_one_side() -> None:
    groups = [f"a{i % 7}" for i in range(100)]
    rest, off = group_split_indices(groups, 20, seed=0)
    assert sorted(rest + off) == list(range(100)) and len(off) >= 20
    assert not {groups[i] for i in rest} & {groups[i] for i in off}
    assert group_split_indices(groups, 20, seed=0) == (rest, off)


@pytest.mark.skipif(not SQUAD.is_file(), reason=f"SQuAD v1.1 dev is not at {SQUAD}")
def test_squad_dev_reads_whole_splits_by_article_and_gold_answers_score_100() -> None:
    from compressor.sources.formats import read_squad

    ds = read_squad(SQUAD)
    assert len(ds) == 10570 and len(set(ds["title"])) == 48
    raw = ds.rename_columns({"question": "text", "context": "text_pair", "answers": "label"})
    TASK.normalise({"test": raw}, {"test": str(SQUAD)}, None)
    groups = TASK.groups(raw)
    rest, off = group_split_indices(groups, len(ds) // 10, seed=0)
    assert not {groups[i] for i in rest} & {groups[i] for i in off}
    golds = ds["answers"][:500]
    assert all(squad_scores(a["text"][0], a["text"]) == (1.0, 1.0) for a in golds)
    doc = json.loads(gzip.decompress(SQUAD.read_bytes()))
    assert doc["version"] == "1.1"
