"""The token-classification and QA heads through export, int8 and pruning, on tiny models that
learned a toy task: the ONNX graph keeps every output of the head, its parity is checked on
each, ORT int8 keeps the answers, and pruning scores parts with the head's own loss."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _tiny_heads import ner_rows, qa_rows, tiny_head, train

from compressor import testing
from compressor.artifact import Artifact
from compressor.evaluate import EvaluationSettings, evaluate_artifacts
from compressor.task import TaskData
from compressor.tasks import get_task
from compressor.tasks.question_answering import QAOptions

from compressor_export.plugin import ExportOnnx, ExportOnnxConfig
from compressor_pruning.common import importance_batches
from compressor_pruning.plugin import HeadPruning, HeadPruningConfig
from compressor_quantization import plugin as qplugin

SETTINGS = EvaluationSettings(
    batch_sizes=[1], sequence_length=16, threads=1, warmup=1, min_runs=2, max_runs=4,
    min_time_s=0.0, accuracy_batch_size=16, flops=False, memory=False,
)


def _splits(task_type: str, rows: dict, **kw: Any) -> TaskData:
    import datasets

    task = get_task(task_type)
    splits, names = task.normalise({"train": datasets.Dataset.from_dict(rows)}, {"train": "synthetic"}, None)
    s = splits["train"]
    return TaskData(type=task_type, splits={"train": s, "validation": s, "test": s}, label_names=names, **kw)


def _trained(tmp_path: Path, kind: str, data: TaskData, *, steps: int, max_length: int) -> Artifact:
    """A tiny model of the head ``kind`` trained on ``data``'s train split, saved as an artifact."""
    tok = testing.tiny_tokenizer("bert")
    task = data.task
    model = tiny_head(kind, tok, **task.model_kwargs(data))
    rows = task.tokenize(data.splits["train"], tok, max_length, data)
    train(model, rows, task.collator(tok), steps=steps)
    folder = tmp_path / f"{kind}-model"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return Artifact(name="teacher", path=folder)


@pytest.fixture(scope="module")
def ner(tmp_path_factory: pytest.TempPathFactory) -> tuple[Artifact, TaskData]:
    data = _splits("token-classification", ner_rows(64))
    return _trained(tmp_path_factory.mktemp("ner"), "token", data, steps=120, max_length=16), data


@pytest.fixture(scope="module")
def qa(tmp_path_factory: pytest.TempPathFactory) -> tuple[Artifact, TaskData]:
    options = QAOptions(max_seq_length=24, doc_stride=6, max_query_length=6, max_answer_length=5)
    data = _splits("question-answering", qa_rows(48), has_text_pair=True, options=options)
    return _trained(tmp_path_factory.mktemp("qa"), "qa", data, steps=150, max_length=24), data


def _metric(record: dict, name: str) -> float:
    """A task metric of a results record (``f1`` has its own field, the others are in ``metrics``)."""
    accuracy = record["accuracy"]
    return accuracy["metrics"][name] if name in accuracy["metrics"] else accuracy[name]


def _session_outputs(path: Path) -> list[str]:
    import onnxruntime

    return [o.name for o in onnxruntime.InferenceSession(str(path / "model.onnx")).get_outputs()]


@pytest.mark.parametrize("head", ["ner", "qa"])
def test_export_and_ort_int8_keep_every_output_and_the_scores(head: str, request, tmp_path, monkeypatch) -> None:
    art, data = request.getfixturevalue(head)
    outputs = ["logits"] if head == "ner" else ["start_logits", "end_logits"]
    onnx = ExportOnnx().apply(art, ExportOnnxConfig(parity_samples=24, max_length=24),
                              testing.make_context(tmp_path, stage_name="onnx", data=data))
    parity = onnx.lineage.extra["parity"]
    assert parity["outputs"] == outputs and parity["max_abs_diff"] <= 1e-3
    assert _session_outputs(onnx.path) == outputs

    monkeypatch.setattr("compressor_quantization.ort.cpu_flags", lambda: frozenset({"avx2", "fma"}))
    monkeypatch.setattr("compressor_quantization.ort.machine", lambda: "x86_64")
    int8 = qplugin.OrtDynamic().apply(art, qplugin.OrtDynamicConfig(),
                                      testing.make_context(tmp_path, stage_name="int8", data=data))
    assert int8.format == "onnx" and int8.lineage.extra["int8_nodes"].get("MatMulInteger", 0) > 0
    assert _session_outputs(int8.path) == outputs

    fp32, exported, quantized = evaluate_artifacts([art, onnx, int8], data, SETTINGS, progress=False)
    primary = fp32["accuracy"]["primary"]
    assert primary == ("entity_f1" if head == "ner" else "exact_match")
    learned = _metric(fp32, primary)
    assert learned > 0.8, fp32["accuracy"]  # the toy task was learned: the scores mean something
    assert exported["backend"] == quantized["backend"] == "onnxruntime"
    # the fp32 graph scores exactly as PyTorch; int8 moves the logits a little, not the answers
    names = ["entity_f1", "entity_precision", "entity_recall"] if head == "ner" else ["exact_match", "f1"]
    for name in names:
        assert _metric(exported, name) == pytest.approx(_metric(fp32, name), abs=1e-9), name
    assert _metric(quantized, primary) >= learned - 0.1

    # the report, its notes and its Pareto plot follow the task's headline metric
    import matplotlib.axes

    from compressor.report import write_report

    labels: list[str] = []
    monkeypatch.setattr(matplotlib.axes.Axes, "set_ylabel", lambda ax, text, **kw: labels.append(text))
    report = write_report(tmp_path / "run", [fp32, exported, quantized], title="t").read_text()
    header = "entity F1 (%)" if head == "ner" else "exact match (%)"
    assert re.search(rf"\|\s+{re.escape(header)}\s+\|", report), report
    assert "acc ±95%" not in report and labels == [header]
    assert f"{header[:-4]} vs p50 latency" in report  # the plot's description


def test_question_answering_heads_are_scored_by_the_span_loss(qa, tmp_path) -> None:
    import torch
    from transformers import AutoModelForQuestionAnswering

    from compressor.architectures import head_counts
    from compressor.structure import load_pretrained

    art, data = qa
    model = AutoModelForQuestionAnswering.from_pretrained(art.path).eval()
    ctx = testing.make_context(tmp_path, stage_name="scores", data=data)
    batches = importance_batches(ctx, testing.tiny_tokenizer("bert"), split="validation", samples=16,
                                 batch_size=8, max_length=24, seed=0, model=model)
    batch = batches[0]
    assert {"start_positions", "end_positions"} <= set(batch)
    assert batch["start_positions"].shape == (batch["input_ids"].shape[0],)
    with torch.no_grad():  # the loss is the head's: cross-entropy of the gold start and end
        out = model(**{k: v for k, v in batch.items() if k not in ("start_positions", "end_positions")})
        expected = (torch.nn.functional.cross_entropy(out.start_logits, batch["start_positions"])
                    + torch.nn.functional.cross_entropy(out.end_logits, batch["end_positions"])) / 2
        assert float(batches.loss(model, batch)) == pytest.approx(float(expected), rel=1e-5)

    pruned = HeadPruning().apply(art, HeadPruningConfig(fraction=0.25, importance_samples=16),
                                 testing.make_context(tmp_path, stage_name="heads", data=data))
    kept = load_pretrained(AutoModelForQuestionAnswering, pruned.path)
    assert sum(head_counts(kept)) == 3  # 4 heads less 25%
    extra = pruned.lineage.extra
    importance = np.array(extra["head_importance"])  # (layers, heads), from the span loss's gradient
    assert importance.shape == (2, 2) and (importance > 0).all()
    (layer, (head,)), = extra["removed_heads"].items()
    assert importance[int(layer), head] == importance.min()  # the least important head went
    (fp32, after) = evaluate_artifacts([art, pruned], data, SETTINGS, progress=False)
    assert after["accuracy"]["n"] == fp32["accuracy"]["n"] == 48
    assert 0 <= _metric(after, "f1") <= 1 and np.isfinite(_metric(after, "exact_match"))
