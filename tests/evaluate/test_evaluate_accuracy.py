import json

import numpy as np
import pytest
from sklearn.metrics import f1_score

from compressor.errors import CompressorError
from compressor.evaluate import evaluate_artifact


def independent_predictions(artifact, dataset):
    """Argmax of each example run alone (no padding), outside the evaluator."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(artifact.path).eval()
    tok = AutoTokenizer.from_pretrained(artifact.path)
    preds = []
    with torch.no_grad():
        for row in dataset:
            enc = tok(row["text"], row.get("text_pair"), truncation=True, return_tensors="pt")
            preds.append(int(model(**enc).logits.argmax(-1)))
    return np.array(preds)


def test_accuracy_matches_independent_computation(make_artifact, task_data, fast_settings):
    art = make_artifact()
    res = evaluate_artifact(art, task_data, fast_settings.model_copy(update={"latency": False}),
                            progress=False)
    test = task_data.split("test")
    labels = np.array(test["label"])
    preds = independent_predictions(art, test)
    assert 0 < preds.mean() < 1, "the random model should predict both classes"
    acc = res["accuracy"]
    assert acc["split"] == "test" and acc["n"] == len(test)
    assert acc["accuracy"] == pytest.approx(float((preds == labels).mean()), abs=1e-12)
    assert acc["task_metric"] == "f1"
    assert acc["f1"] == pytest.approx(f1_score(labels, preds, pos_label=1))
    assert acc["predicted_classes"] == 2
    json.dumps(res)


def test_bias_towards_class_1_gives_label_1_fraction(make_artifact, task_data, fast_settings):
    art = make_artifact(classifier_bias=[-1e4, 1e4])
    res = evaluate_artifact(art, task_data, fast_settings.model_copy(update={"latency": False}),
                            progress=False)
    frac1 = float(np.mean(task_data.split("test")["label"]))
    assert res["accuracy"]["accuracy"] == pytest.approx(frac1)
    # all predicted positive: precision = frac1, recall = 1
    assert res["accuracy"]["f1"] == pytest.approx(2 * frac1 / (1 + frac1))
    assert res["accuracy"]["predicted_classes"] == 1  # a collapsed model, as the report flags


def test_multiclass_reports_macro_f1(make_artifact, make_data, fast_settings):
    data = make_data(90, num_labels=3, seed=3)
    art = make_artifact(num_labels=3)
    settings = fast_settings.model_copy(update={"latency": False})
    res = evaluate_artifact(art, data, settings, progress=False)
    test = data.split("test")
    labels, preds = np.array(test["label"]), independent_predictions(art, test)
    acc = res["accuracy"]
    assert acc["task_metric"] == "macro_f1" and "f1" not in acc
    assert acc["accuracy"] == pytest.approx(float((preds == labels).mean()))
    assert acc["macro_f1"] == pytest.approx(
        f1_score(labels, preds, average="macro", labels=[0, 1, 2], zero_division=0)
    )


def test_text_pairs_and_max_eval_samples(make_artifact, make_data, fast_settings):
    data = make_data(60, pair=True)
    art = make_artifact()
    settings = fast_settings.model_copy(update={"max_eval_samples": 25, "accuracy_batch_size": 7})
    res = evaluate_artifact(art, data, settings, progress=False)
    head = data.split("test").select(range(25))
    preds = independent_predictions(art, head)
    assert res["accuracy"]["n"] == 25
    assert res["accuracy"]["accuracy"] == pytest.approx(
        float((preds == np.array(head["label"])).mean())
    )


def test_label_count_mismatch_is_a_clear_error(make_artifact, make_data, fast_settings):
    art = make_artifact(num_labels=2)
    with pytest.raises(CompressorError, match="3 labels"):
        evaluate_artifact(art, make_data(20, num_labels=3), fast_settings, progress=False)


def test_missing_split_is_a_clear_error(make_artifact, task_data, fast_settings):
    art = make_artifact()
    settings = fast_settings.model_copy(update={"accuracy_split": "validation"})
    with pytest.raises(CompressorError, match="validation") as info:
        evaluate_artifact(art, task_data, settings, progress=False)
    assert info.value.key == "evaluation.accuracy_split"


def test_unknown_format_is_a_clear_error(make_artifact, task_data, fast_settings):
    art = make_artifact()
    art.format = "tflite"
    with pytest.raises(CompressorError, match="tflite"):
        evaluate_artifact(art, task_data, fast_settings, progress=False)


def test_masked_lm_task_has_no_accuracy_but_size_and_latency(make_artifact, task_data,
                                                              fast_settings):
    from compressor.task import TaskData

    test = task_data.split("test").remove_columns("label")
    raw = TaskData(type="masked-lm", splits={"test": test}, name="raw")
    res = evaluate_artifact(make_artifact(), raw, fast_settings, progress=False)
    assert res["accuracy"] is None
    assert res["size"]["params"] > 0 and len(res["latency"]) == 2


def test_record_carries_the_summaries_of_the_stage(make_artifact, task_data, fast_settings):
    """Lineage facts with a one-line summary reach the record (and so the report's notes);
    other lineage facts do not."""
    from compressor.artifact import Lineage

    lineage = Lineage(stage="int8", strategy="quantize.ort-dynamic", extra={
        "int8_settings": {"reduce_range": True, "summary": "s8 per-channel, reduce_range"},
        "heads_after": [2, 1],
    })
    art = make_artifact("int8", lineage=lineage)
    res = evaluate_artifact(art, task_data, fast_settings.model_copy(update={"latency": False}), progress=False)
    assert res["summaries"] == {"int8_settings": "s8 per-channel, reduce_range"}
