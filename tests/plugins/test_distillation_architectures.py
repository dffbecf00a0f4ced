"""``distill.distilbert`` end to end on tiny random models of every supported encoder family,
in task mode (with layer losses) and in masked-LM mode; ModernBERT's attention pattern."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from compressor.artifact import Artifact
from compressor.errors import StageError
from compressor.task import TaskData
from compressor_distillation.plugin import DistilBERTDistillation, DistillationConfig
from compressor_distillation.student import layer_count


NO_TOKEN_TYPES = {"distilbert", "modernbert", "roberta", "xlm-roberta", "mpnet"}
STEPS = dict(epochs=1, learning_rate=1e-3, batch_size=16, logging_steps=1, max_length=24)


def arch_config(arch: str, vocab: int, layers: int = 4) -> Any:
    import transformers as tf

    common = dict(vocab_size=vocab, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                  intermediate_size=64, max_position_embeddings=80, num_labels=2, pad_token_id=0)
    if arch == "bert":
        return tf.BertConfig(**common)
    if arch == "roberta":
        return tf.RobertaConfig(**common)
    if arch == "xlm-roberta":
        return tf.XLMRobertaConfig(**common)
    if arch == "mpnet":
        return tf.MPNetConfig(**common)
    if arch == "electra":
        return tf.ElectraConfig(embedding_size=16, **common)
    if arch == "deberta-v2":
        return tf.DebertaV2Config(relative_attention=True, position_buckets=16, **common)
    if arch == "distilbert":
        return tf.DistilBertConfig(vocab_size=vocab, dim=32, n_layers=layers, n_heads=2, hidden_dim=64,
                                   max_position_embeddings=80, num_labels=2, pad_token_id=0)
    if arch == "modernbert":
        return tf.ModernBertConfig(global_attn_every_n_layers=2, local_attention=8, cls_token_id=2,
                                   sep_token_id=3, bos_token_id=2, eos_token_id=3, **common)
    raise AssertionError(arch)


def save_tokenizer(folder: Path, arch: str, source: Path) -> Any:
    """The shared test vocabulary; no token_type_ids for families that take none."""
    from transformers import BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    vocab.write_text((source / "vocab.txt").read_text(encoding="utf-8"), encoding="utf-8")
    names = ["input_ids", "attention_mask"] if arch in NO_TOKEN_TYPES else None
    kw = {"model_input_names": names} if names else {}
    tok = BertTokenizerFast(vocab=str(vocab), do_lower_case=True, model_max_length=64, **kw)
    tok.save_pretrained(folder)
    return tok


def save_teacher(folder: Path, arch: str, kind: str, source: Path) -> Artifact:
    """A random tiny model with every head weight saved (so it loads with no missing keys)."""
    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification

    tok = save_tokenizer(folder, arch, source)
    torch.manual_seed(0)
    auto = AutoModelForMaskedLM if kind == "mlm" else AutoModelForSequenceClassification
    auto.from_config(arch_config(arch, len(tok))).save_pretrained(folder)
    return Artifact(name="teacher", path=folder)


def small_task(task_data: TaskData, n: int = 48) -> TaskData:
    return TaskData(type="text-classification", label_names=task_data.label_names,
                    splits={s: task_data.split(s).select(range(n if s == "train" else 16))
                            for s in ("train", "validation", "test")})


def _logs(work: Path) -> list[dict]:
    (ckpt,) = sorted(work.glob("checkpoint-*"))
    return [e for e in json.loads((ckpt / "trainer_state.json").read_text())["log_history"] if "loss" in e]


LAYER_LOSSES = [
    {"teacher_layer": 4, "student_layer": 2, "loss": "mse"},
    {"teacher_layer": 3, "student_layer": 2, "loss": "attention-kl", "weight": 0.5},
]
CASES = [("bert", "task"), ("roberta", "mlm"), ("xlm-roberta", "task"), ("electra", "mlm"),
         ("mpnet", "task"), ("deberta-v2", "mlm"), ("distilbert", "task"), ("distilbert", "mlm"),
         ("modernbert", "task"), ("modernbert", "mlm")]
"""One tiny end-to-end run per family (both modes for the two that differ most from BERT)."""


@pytest.mark.parametrize(("arch", "mode"), CASES)
def test_end_to_end_with_layer_losses(
    arch: str, mode: str, tmp_path: Path, make_context, task_data: TaskData, tokenizer_dir: Path
) -> None:
    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification

    teacher = save_teacher(tmp_path / "teacher", arch, mode, tokenizer_dir)
    if mode == "task":
        data = small_task(task_data)
    else:
        data = TaskData(type="masked-lm", splits={
            s: task_data.split(s).select(range(64)).select_columns(["text"])
            for s in ("train", "validation", "test")})
    ctx = make_context(f"{mode}-{arch}", data=data)
    config = DistillationConfig(student_layers=2, layer_losses=LAYER_LOSSES, max_eval_blocks=8, **STEPS)
    art = DistilBERTDistillation().apply(teacher, config, ctx)
    hard = "loss_task" if mode == "task" else "loss_mlm"
    logs = _logs(ctx.work_dir)
    keys = {"loss_ce", hard, "loss_cos", "loss_mse_t4_s2", "loss_attention_kl_t3_s2"}
    assert logs and all(keys <= e.keys() for e in logs)
    for e in logs:  # the logged total is the weighted sum of the logged terms
        total = (5 * e["loss_ce"] + 2 * e[hard] + e["loss_cos"] + e["loss_mse_t4_s2"]
                 + 0.5 * e["loss_attention_kl_t3_s2"])
        assert e["loss"] == pytest.approx(total, rel=0.02, abs=1e-3)
    extra = art.lineage.extra
    assert extra["mode"] == mode and extra["copied_layers"] == [0, 2] and extra["projections"] == {}
    auto = AutoModelForSequenceClassification if mode == "task" else AutoModelForMaskedLM
    model = auto.from_pretrained(art.path)
    assert layer_count(model.config)[1] == 2
    if mode == "mlm":
        assert 0 <= extra["teacher_mlm_accuracy"] <= 1 and extra["masked_tokens"] > 0
        assert extra["block_size"] == 24


def test_modernbert_keeps_each_copied_layers_attention_type() -> None:
    from transformers import ModernBertForMaskedLM

    from compressor_distillation.student import build_student

    torch.manual_seed(0)
    teacher = ModernBertForMaskedLM(arch_config("modernbert", 99, layers=6)).eval()  # global: 0, 2, 4
    for layers in ([0, 2, 4], [0, 1, 2], [0, 1, 3], [0, 1, 2, 4]):
        student, _ = build_student(teacher, layers)
        kinds = [m.attention_type for m in student.model.layers]
        # the teacher layer's own type: sliding window on odd teacher layers
        assert kinds == ["sliding_attention" if i % 2 else "full_attention" for i in layers]
        assert [m.attn.sliding_window is not None for m in student.model.layers] == [i % 2 == 1 for i in layers]
    ids = torch.randint(5, 99, (2, 12))
    student, _ = build_student(teacher, list(range(6)))
    with torch.no_grad():
        assert torch.equal(student.eval()(input_ids=ids).logits, teacher(input_ids=ids).logits)


def test_modernbert_refuses_what_it_cannot_copy() -> None:
    from transformers import ModernBertForMaskedLM

    from compressor_distillation.student import build_student

    teacher = ModernBertForMaskedLM(arch_config("modernbert", 99, layers=6))
    with pytest.raises(StageError, match="first layer must be teacher layer 0") as exc:
        build_student(teacher, [1, 3, 5])
    assert "attention pre-norm" in exc.value.message and exc.value.key == "layers"
