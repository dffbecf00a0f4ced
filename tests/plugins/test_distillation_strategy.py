"""``distill.distilbert`` end to end on the tiny fine-tuned teacher."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from compressor.artifact import Artifact
from compressor.errors import StageError
from compressor.task import TaskData
from compressor_distillation.plugin import DistilBERTDistillation, DistillationConfig


def baseline(path: Path, name: str = "baseline") -> Artifact:
    """An artifact for a model folder (as the orchestrator hands the baseline over)."""
    return Artifact(name=name, path=Path(path))

FAST = dict(epochs=2, learning_rate=2e-3, batch_size=16, logging_steps=5, max_length=32)


def _log_history(work_dir: Path) -> list[dict]:
    (checkpoint,) = sorted(work_dir.glob("checkpoint-*"))
    return json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]


def test_distillation_end_to_end(make_context, finetuned_teacher: Artifact) -> None:
    from transformers import AutoModelForSequenceClassification

    ctx = make_context("student", artifacts={"finetune": finetuned_teacher})
    student = DistilBERTDistillation().apply(finetuned_teacher, DistillationConfig(**FAST), ctx)

    # the three terms are logged with every training loss
    train_logs = [e for e in _log_history(ctx.work_dir) if "loss" in e]
    assert len(train_logs) == 8
    for entry in train_logs:
        assert {"loss_ce", "loss_task", "loss_cos"} <= entry.keys()
        weighted = 5 * entry["loss_ce"] + 2 * entry["loss_task"] + entry["loss_cos"]
        assert entry["loss"] == pytest.approx(weighted, rel=0.02, abs=1e-3)

    # the student reloads, has half the layers and still solves the task
    model = AutoModelForSequenceClassification.from_pretrained(student.path)
    assert model.config.num_hidden_layers == 2
    assert len(model.bert.encoder.layer) == 2
    extra = student.lineage.extra
    assert extra["copied_layers"] == [0, 2] and extra["layer_selection"] == "every-other"
    assert extra["teacher_layers"] == 4 and extra["student_layers"] == 2
    assert extra["student_params"] < extra["teacher_params"]
    assert extra["validation_accuracy"] >= 0.85
    assert student.lineage.reference == "finetune" and student.lineage.parent == "finetune"
    assert Artifact.load(student.path).lineage.strategy == "distill.distilbert"
    files = {p.name for p in student.path.iterdir()}
    assert {"model.safetensors", "tokenizer.json"} <= files and "training_args.bin" not in files
    # the checkpoint holds the student only, never the teacher
    from safetensors.torch import load_file

    (checkpoint,) = sorted(ctx.work_dir.glob("checkpoint-*"))
    keys = load_file(str(checkpoint / "model.safetensors")).keys()
    assert not any(k.startswith("teacher") for k in keys)
    assert {int(k.split(".")[3]) for k in keys if k.startswith("bert.encoder.layer.")} == {0, 1}


def test_named_teacher_and_explicit_layers(
    make_context, finetuned_teacher: Artifact, tiny_bert_dir: Path
) -> None:
    start = baseline(tiny_bert_dir, "pruned")
    ctx = make_context("s2", artifacts={"finetune": finetuned_teacher, "pruned": start})
    config = DistillationConfig(
        teacher="finetune", layer_selection="explicit", layers=[1, 3], alpha_cos=0.0,
        epochs=0.5, learning_rate=1e-3, batch_size=32, max_length=32, logging_steps=2,
    )
    art = DistilBERTDistillation().apply(start, config, ctx)
    assert art.lineage.parent == "pruned" and art.lineage.reference == "finetune"
    assert art.lineage.extra["copied_layers"] == [1, 3]
    logs = [e for e in _log_history(ctx.work_dir) if "loss" in e]
    assert logs and all("loss_cos" not in e and "loss_ce" in e for e in logs)


def test_distillation_trainer_keeps_the_teacher_frozen(
    tmp_path: Path, finetuned_teacher: Artifact, task_data: TaskData
) -> None:
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer,
                              DataCollatorWithPadding, TrainingArguments)

    from compressor_distillation.losses import DistillationLoss
    from compressor_distillation.student import build_student
    from compressor_distillation.trainer import DistillationTrainer
    from compressor.training.trainer import tokenize_split

    teacher = AutoModelForSequenceClassification.from_pretrained(finetuned_teacher.path)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student, _ = build_student(teacher, [0, 3])
    tok = AutoTokenizer.from_pretrained(finetuned_teacher.path)
    train = tokenize_split(task_data.split("train"), tok, 32, task_data, progress=False)
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=8, logging_steps=1,
        report_to="none", use_cpu=True, save_strategy="no", disable_tqdm=True,
        gradient_accumulation_steps=2,
    )
    trainer = DistillationTrainer(
        model=student, args=args, train_dataset=train, processing_class=tok,
        data_collator=DataCollatorWithPadding(tok), teacher=teacher,
        distillation_loss=DistillationLoss(),
    )
    trainer.train()
    logs = [e for e in trainer.state.log_history if "loss" in e]
    assert len(logs) == 4 and all({"loss_ce", "loss_task", "loss_cos"} <= e.keys() for e in logs)
    assert not teacher.training
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert not any(p.requires_grad for p in teacher.parameters())


def test_teacher_without_trained_head_is_refused(make_context, tiny_encoder_dir: Path) -> None:
    with pytest.raises(StageError, match="no trained text-classification head") as exc:
        DistilBERTDistillation().apply(
            baseline(tiny_encoder_dir), DistillationConfig(**FAST), make_context()
        )
    assert "finetune" in (exc.value.hint or "")


def test_mlm_teacher_without_head_is_refused_before_training(
    make_context, finetuned_teacher: Artifact, task_data: TaskData
) -> None:
    raw = TaskData(type="masked-lm", splits={"train": task_data.split("train")})
    ctx = make_context(data=raw)
    with pytest.raises(StageError, match="no masked-LM head weights") as exc:
        DistilBERTDistillation().apply(finetuned_teacher, DistillationConfig(), ctx)
    assert "mlm-adapt" in (exc.value.hint or "")
    assert "cls.predictions.transform.dense.weight" in exc.value.message
    assert not list(ctx.work_dir.iterdir())  # nothing trained


def test_unknown_teacher_name_is_refused(make_context, finetuned_teacher: Artifact) -> None:
    ctx = make_context(artifacts={"finetune": finetuned_teacher})
    with pytest.raises(StageError, match="no artifact named 'teachr'"):
        DistilBERTDistillation().apply(finetuned_teacher, DistillationConfig(teacher="teachr"), ctx)


def test_layers_beyond_the_teacher_are_refused(make_context, finetuned_teacher: Artifact) -> None:
    config = DistillationConfig(layer_selection="explicit", layers=[0, 5])
    with pytest.raises(StageError, match="teacher has 4 layers"):
        DistilBERTDistillation().apply(finetuned_teacher, config, make_context())
