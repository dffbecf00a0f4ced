"""Masked-LM pieces: block packing, 80/10/10 dynamic masking, MLM-head detection, mlm-adapt,
and the paths for a narrower student and a student with another tokenizer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from compressor.artifact import Artifact
from compressor.errors import StageError
from compressor.task import TaskData
from compressor_distillation.mlm import group_texts, mlm_collator
from compressor_distillation.plugin import (
    DistilBERTDistillation,
    DistillationConfig,
    MLMAdapt,
    MLMAdaptConfig,
)

POSITIVE = ["good", "great", "excellent", "wonderful", "superb", "lovely", "fine", "nice"]
NEGATIVE = ["bad", "awful", "terrible", "horrible", "poor", "dreadful", "boring", "weak"]
FAST = dict(epochs=1, learning_rate=2e-3, batch_size=16, logging_steps=2, max_length=24)


def _raw(task_data: TaskData) -> TaskData:
    return TaskData(type="masked-lm", name="raw",
                    splits={s: task_data.split(s).select_columns(["text"]) for s in ("train", "validation", "test")})


def test_group_texts_packs_the_corpus_in_order(tokenizer: Any, task_data: TaskData) -> None:
    texts = task_data.split("train").select(range(40))
    blocks = group_texts(texts, tokenizer, 16)
    flat = [t for s in texts["text"] for t in tokenizer(s, add_special_tokens=False)["input_ids"]]
    assert len(blocks) == len(flat) // 14
    body = []
    for ids, special in zip(blocks["input_ids"], blocks["special_tokens_mask"]):
        assert len(ids) == 16 and ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
        assert special == [1] + [0] * 14 + [1]
        body += ids[1:-1]
    assert body == flat[: len(body)]  # the text, in order, remainder dropped
    with pytest.raises(StageError, match="shorter than one block"):
        group_texts(texts.select(range(1)), tokenizer, 60)


def test_masking_is_15_percent_80_10_10_and_never_special_or_padding(tokenizer: Any, task_data: TaskData) -> None:
    rows = [tokenizer(t) for t in task_data.split("train")["text"]] * 8  # 2,560 sentences, padded
    collate = mlm_collator(tokenizer, 0.15, seed=1)
    batch = collate([dict(r) for r in rows])
    orig = tokenizer.pad([dict(r) for r in rows], return_tensors="pt")["input_ids"]
    labels, ids, mask = batch["labels"], batch["input_ids"], batch["attention_mask"]
    special = torch.isin(orig, torch.tensor(tokenizer.all_special_ids))
    chosen = labels != -100
    candidates = (~special) & mask.bool()
    assert not (chosen & ~candidates).any()  # never [CLS], [SEP] or [PAD]
    assert torch.equal(labels[chosen], orig[chosen])
    assert torch.equal(ids[~chosen], orig[~chosen])  # unchosen tokens are untouched
    share = chosen.sum().item() / candidates.sum().item()
    assert share == pytest.approx(0.15, abs=0.01)
    n = chosen.sum().item()
    masked = (ids[chosen] == tokenizer.mask_token_id).sum().item() / n
    kept = (ids[chosen] == orig[chosen]).sum().item() / n
    assert masked == pytest.approx(0.8, abs=0.03)
    assert kept == pytest.approx(0.1 + 0.1 / len(tokenizer), abs=0.025)  # random may redraw the same
    assert 1 - masked - kept == pytest.approx(0.1, abs=0.025)
    # dynamic masking: the same rows get other masks in the next batch
    again = collate([dict(r) for r in rows])
    assert not torch.equal(again["labels"], labels)


def skewed_corpus(n: int = 240, seed: int = 0) -> TaskData:
    """Raw text where 60% of the words are "w0": a head that learns anything predicts it."""
    import random

    import datasets

    rng = random.Random(seed)
    words = POSITIVE + NEGATIVE

    def text() -> str:
        return " ".join("w0" if rng.random() < 0.6 else rng.choice(words) for _ in range(12))

    splits = {s: datasets.Dataset.from_dict({"text": [text() for _ in range(k)]})
              for s, k in (("train", n), ("validation", 40), ("test", 10))}
    return TaskData(type="masked-lm", splits=splits, name="skewed")


def test_mlm_adapt_trains_the_head_and_reports_accuracy(make_context, tiny_encoder_dir: Path) -> None:
    from safetensors.torch import load_file

    ctx = make_context("adapt", data=skewed_corpus())
    config = MLMAdaptConfig(**{**FAST, "learning_rate": 3e-2, "batch_size": 8, "epochs": 3}, max_eval_blocks=20)
    art = MLMAdapt().apply(Artifact(name="baseline", path=tiny_encoder_dir), config, ctx)
    extra = art.lineage.extra
    assert "cls.predictions.transform.dense.weight" in extra["new_head_weights"]
    assert extra["mlm_accuracy_before"] < 0.3 < 0.5 < extra["mlm_accuracy_after"]
    assert extra["mlm_loss_after"] < extra["mlm_loss_before"]
    # head only: the encoder weights are those of the input
    before = load_file(str(tiny_encoder_dir / "model.safetensors"))
    after = load_file(str(art.path / "model.safetensors"))
    assert torch.equal(after["bert.encoder.layer.3.output.dense.weight"], before["encoder.layer.3.output.dense.weight"])
    assert not torch.equal(after["cls.predictions.transform.dense.weight"],
                           after["cls.predictions.transform.dense.weight"] * 0)

    # the adapted model is an acceptable teacher for general distillation
    ctx2 = make_context("general", data=skewed_corpus())  # same held-out blocks and masks
    student = DistilBERTDistillation().apply(art, DistillationConfig(**FAST, max_eval_blocks=20, ce_positions="masked"), ctx2)
    assert student.lineage.extra["teacher_mlm_accuracy"] == pytest.approx(extra["mlm_accuracy_after"])
    assert student.lineage.extra["student_layers"] == 2 and student.lineage.extra["ce_positions"] == "masked"


def _other_student(folder: Path, vocab: list[str], hidden: int) -> Path:
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder.mkdir(parents=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tok = BertTokenizerFast(vocab=str(folder / "vocab.txt"), model_max_length=64)
    tok.save_pretrained(folder)
    torch.manual_seed(3)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=2 * hidden, max_position_embeddings=64, num_labels=2)
    BertForSequenceClassification(cfg).save_pretrained(folder)
    return folder


def _logs(work: Path) -> list[dict]:
    (ckpt,) = sorted(work.glob("checkpoint-*"))
    return [e for e in json.loads((ckpt / "trainer_state.json").read_text())["log_history"] if "loss" in e]


def test_narrower_student_gets_a_training_only_projection(
    make_context, finetuned_teacher: Artifact, tokenizer_dir: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    vocab = (tokenizer_dir / "vocab.txt").read_text().split()
    folder = _other_student(tmp_path / "narrow", vocab, hidden=16)
    ctx = make_context("narrow")
    config = DistillationConfig(student={"model": str(folder)}, **FAST,
                                layer_losses=[{"teacher_layer": 2, "student_layer": 1, "loss": "cosine"}])
    art = DistilBERTDistillation().apply(finetuned_teacher, config, ctx)
    extra = art.lineage.extra
    assert extra["projections"] == {"cos": [16, 32], "t2_s1": [16, 32]} and not extra["cross_tokenizer"]
    assert all({"loss_cos", "loss_cosine_t2_s1"} <= e.keys() for e in _logs(ctx.work_dir))
    # kept in the checkpoint (exact resume), not in the student
    (ckpt,) = sorted(ctx.work_dir.glob("checkpoint-*"))
    assert any(k.startswith("distillation_heads.cos") for k in load_file(str(ckpt / "model.safetensors")))
    assert not any("distillation_heads" in k for k in load_file(str(art.path / "model.safetensors")))


def test_student_with_another_tokenizer_tokenises_for_itself(
    make_context, finetuned_teacher: Artifact, tokenizer_dir: Path, tmp_path: Path
) -> None:
    vocab = (tokenizer_dir / "vocab.txt").read_text().split()
    reordered = vocab[:5] + list(reversed(vocab[5:]))  # other ids for every word
    folder = _other_student(tmp_path / "other", reordered, hidden=32)
    ctx = make_context("cross")
    art = DistilBERTDistillation().apply(
        finetuned_teacher, DistillationConfig(student={"model": str(folder)}, **FAST), ctx
    )
    extra = art.lineage.extra
    assert extra["cross_tokenizer"] and extra["alpha_cos_used"] == 0.0
    logs = _logs(ctx.work_dir)
    assert logs and all("loss_ce" in e and "loss_cos" not in e for e in logs)
    assert extra["validation_accuracy"] is not None

    ctx2 = make_context("cross-pooled")
    config = DistillationConfig(student={"model": str(folder)}, cos_pooling="mean", **FAST)
    art2 = DistilBERTDistillation().apply(finetuned_teacher, config, ctx2)
    assert art2.lineage.extra["alpha_cos_used"] == 1.0
    assert all("loss_cos" in e for e in _logs(ctx2.work_dir))


def test_paired_collator_pads_each_side_with_its_own_tokenizer(tokenizer: Any) -> None:
    from compressor_distillation.distill import PairedCollator

    rows = [
        {"input_ids": [2, 10, 3], "attention_mask": [1, 1, 1], "labels": 1,
         "teacher_input_ids": [2, 11, 12, 13, 3], "teacher_attention_mask": [1] * 5},
        {"input_ids": [2, 10, 11, 12, 14, 3], "attention_mask": [1] * 6, "labels": 0,
         "teacher_input_ids": [2, 3], "teacher_attention_mask": [1, 1]},
    ]
    batch = PairedCollator(tokenizer, tokenizer)(rows)
    assert batch["input_ids"].shape == (2, 6) and batch["teacher_input_ids"].shape == (2, 5)
    assert batch["teacher_attention_mask"].tolist() == [[1] * 5, [1, 1, 0, 0, 0]]
    assert batch["labels"].tolist() == [1, 0]


def test_task_student_from_a_headless_teacher_needs_alpha_ce_zero(
    make_context, tiny_encoder_dir: Path
) -> None:
    teacher = Artifact(name="baseline", path=tiny_encoder_dir)
    with pytest.raises(StageError, match="no trained text-classification head"):
        DistilBERTDistillation().apply(teacher, DistillationConfig(**FAST), make_context("a"))
    config = DistillationConfig(alpha_ce=0.0, alpha_cos=0.0, alpha_task=1.0, **FAST)
    art = DistilBERTDistillation().apply(teacher, config, make_context("b"))
    assert art.lineage.extra["copied_layers"] == [0, 2]


def test_random_init_student_differs_from_the_copy(make_context, finetuned_teacher: Artifact) -> None:
    from safetensors.torch import load_file

    config = DistillationConfig(student_init="random", **{**FAST, "epochs": 0.1})
    art = DistilBERTDistillation().apply(finetuned_teacher, config, make_context("r"))
    assert art.lineage.extra["copied_layers"] == [] and art.lineage.extra["student_init"] == "random"
    teacher = load_file(str(finetuned_teacher.path / "model.safetensors"))
    student = load_file(str(art.path / "model.safetensors"))
    key = "bert.embeddings.word_embeddings.weight"
    assert (student[key] - teacher[key]).abs().mean() > 1e-2


def test_tensorboard_is_refused_when_not_installed(make_context, finetuned_teacher: Artifact) -> None:
    from transformers.integrations import is_tensorboard_available

    if is_tensorboard_available():
        pytest.skip("tensorboard is installed here")
    with pytest.raises(StageError, match="tensorboard") as exc:
        DistilBERTDistillation().apply(finetuned_teacher, DistillationConfig(report_to="tensorboard"), make_context())
    assert exc.value.key == "report_to"


def test_input_artifact_as_the_student(make_context, finetuned_teacher: Artifact, tiny_bert_dir: Path) -> None:
    start = Artifact(name="pruned", path=tiny_bert_dir)
    ctx = make_context("input", artifacts={"finetune": finetuned_teacher, "pruned": start})
    config = DistillationConfig(teacher="finetune", student="input", **{**FAST, "epochs": 0.25})
    art = DistilBERTDistillation().apply(start, config, ctx)
    extra = art.lineage.extra
    assert extra["student"] == "pruned" and extra["student_layers"] == 4 and not extra["cross_tokenizer"]
    assert art.lineage.parent == "pruned" and art.lineage.reference == "finetune"


def test_task_text_turns_tagged_words_and_qa_pairs_into_raw_text() -> None:
    from compressor import testing
    from compressor_distillation.mlm import task_text

    ner = testing.tiny_task_data(4, 2, task="token-classification")
    text = task_text(ner, ner.splits["train"])
    assert text.column_names == ["text"]
    assert text["text"] == [" ".join(words) for words in ner.splits["train"]["text"]]
    qa = testing.tiny_task_data(4, 2, task="question-answering")
    text = task_text(qa, qa.splits["test"])
    rows = qa.splits["test"]
    assert text["text"] == [f"{q} {c}" for q, c in zip(rows["text"], rows["text_pair"])]
    # every answer is in the raw text the masked LM reads
    assert all(a["text"][0] in t for a, t in zip(rows["label"], text["text"]))
