"""The ``finetune`` strategy on a tiny BERT and a synthetic, learnable task."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from compressor.artifact import LINEAGE_FILE, Artifact
from compressor.errors import StageError
from compressor.task import TaskData
from compressor.training import trainer as training
from compressor_finetune.plugin import FineTune, FineTuneConfig


def baseline(path: Path, name: str = "baseline") -> Artifact:
    """An artifact for a model folder (as the orchestrator hands the baseline over)."""
    return Artifact(name=name, path=Path(path))


def _accuracy(folder: Path, data: TaskData) -> float:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    split = data.split("validation")
    enc = tok(list(split["text"]), padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        pred = model(**enc).logits.argmax(-1)
    return float((pred == torch.tensor(list(split["label"]))).float().mean())


def test_finetune_learns_the_task_and_writes_a_reloadable_artifact(
    finetuned_teacher: Artifact, tiny_bert_dir: Path, task_data: TaskData
) -> None:
    art = finetuned_teacher
    before = _accuracy(tiny_bert_dir, task_data)
    after = _accuracy(art.path, task_data)
    assert after >= 0.85 and after > before + 0.2, (before, after)
    extra = art.lineage.extra
    assert extra["validation_accuracy"] == pytest.approx(after, abs=1e-6)
    assert extra["train_loss"] > 0 and extra["train_runtime_s"] > 0
    assert extra["global_step"] == 80 and extra["epochs_trained"] == pytest.approx(4.0)
    files = {p.name for p in art.path.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", LINEAGE_FILE} <= files
    assert "training_args.bin" not in files and not any(f.endswith(".bin") for f in files)
    loaded = Artifact.load(art.path)
    assert loaded.lineage.strategy == "finetune" and loaded.lineage.parent == "baseline"
    assert loaded.lineage.config["learning_rate"] == pytest.approx(2e-3)
    config = json.loads((art.path / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}


def test_headless_encoder_gets_a_fresh_head_and_resumes(
    make_context, tiny_encoder_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = FineTuneConfig(epochs=1, learning_rate=1e-3, batch_size=32, max_length=32)
    first = FineTune().apply(baseline(tiny_encoder_dir), config, make_context("ft"))
    assert any("classifier" in k for k in first.lineage.extra["new_head_weights"])
    assert first.lineage.extra["resumed_from_checkpoint"] is None
    assert (first.path.parent / "work" / "checkpoint-10").is_dir()
    # a rerun of the stage resumes from the checkpoint left in work_dir
    caplog.set_level("INFO", logger="compressor.tests")
    second = FineTune().apply(baseline(tiny_encoder_dir), config, make_context("ft"))
    assert second.lineage.extra["resumed_from_checkpoint"] == "checkpoint-10"
    assert second.lineage.extra["global_step"] == 10
    # the weights come from the checkpoint, not from a new head
    assert second.lineage.extra["validation_loss"] == pytest.approx(first.lineage.extra["validation_loss"])
    assert "resuming from" in caplog.text


def test_early_stopping_with_eval_steps(make_context, tiny_bert_dir: Path) -> None:
    config = FineTuneConfig(
        epochs=2, learning_rate=1e-3, batch_size=32, max_length=32,
        eval_steps=5, early_stopping_patience=1, logging_steps=5,
    )
    art = FineTune().apply(baseline(tiny_bert_dir), config, make_context("es"))
    assert art.lineage.extra["validation_accuracy"] is not None
    assert 5 <= art.lineage.extra["global_step"] <= 20


def test_text_pair_tasks_are_encoded_as_pairs(tokenizer) -> None:
    import datasets

    ds = datasets.Dataset.from_dict({"text": ["good w1"], "text_pair": ["bad w2"], "label": [1]})
    data = TaskData(type="text-classification", splits={"train": ds}, label_names=["a", "b"],
                    has_text_pair=True)
    enc = training.tokenize_split(ds, tokenizer, 32, data, progress=False)
    assert enc.column_names == ["input_ids", "token_type_ids", "attention_mask", "labels"]
    assert enc[0]["token_type_ids"] == [0, 0, 0, 0, 1, 1, 1] and enc[0]["labels"] == 1


def test_masked_lm_task_is_refused(make_context, tiny_bert_dir: Path, task_data: TaskData) -> None:
    raw = TaskData(type="masked-lm", splits=task_data.splits)
    with pytest.raises(StageError, match="masked-lm.* does not have"):
        FineTune().apply(baseline(tiny_bert_dir), FineTuneConfig(), make_context(data=raw))


def test_labels_out_of_range_are_refused(make_context, tiny_bert_dir: Path) -> None:
    import datasets

    bad = TaskData(
        type="text-classification",
        splits={"train": datasets.Dataset.from_dict({"text": ["a", "b"], "label": [0, 2]})},
        label_names=["neg", "pos"],
    )
    with pytest.raises(StageError, match=r"labels in \[0, 2\]"):
        FineTune().apply(baseline(tiny_bert_dir), FineTuneConfig(), make_context(data=bad))


def test_fp16_on_cpu_is_refused(make_context, tiny_bert_dir: Path) -> None:
    with pytest.raises(StageError, match="fp16.*CUDA"):
        FineTune().apply(baseline(tiny_bert_dir), FineTuneConfig(fp16=True), make_context())


def test_bf16_without_hardware_support_is_refused(
    make_context, tiny_bert_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(training, "cpu_supports_bf16", lambda: False)
    with pytest.raises(StageError, match="bf16.*AVX512-BF16"):
        FineTune().apply(baseline(tiny_bert_dir), FineTuneConfig(bf16=True), make_context())


def test_config_rejects_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ValidationError, match="learning_rat"):
        FineTuneConfig(learning_rat=1e-4)
    for kw in (dict(batch_size=0), dict(warmup_ratio=1.0), dict(fp16=True, bf16=True),
               dict(early_stopping_patience=0), dict(seed=-1), dict(epochs=0)):
        with pytest.raises(ValidationError):
            FineTuneConfig(**kw)
    for name, field in FineTuneConfig.model_fields.items():
        assert field.description, name


def test_head_learning_rate_gets_its_own_groups_under_the_scheduler(tiny_encoder_dir: Path) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, get_linear_schedule_with_warmup

    from compressor_finetune.finetune import split_head_groups

    model = AutoModelForSequenceClassification.from_pretrained(tiny_encoder_dir, num_labels=2)
    named = dict(model.named_parameters())
    decay = [p for n, p in named.items() if n.endswith("weight") and "LayerNorm" not in n]
    rest = [p for n, p in named.items() if not (n.endswith("weight") and "LayerNorm" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": rest, "weight_decay": 0.0}], lr=1e-4)
    head = {"classifier.weight", "classifier.bias"}
    assert split_head_groups(optimizer, model, head, 1e-2) == 2
    groups = optimizer.param_groups
    assert len(groups) == 4 and sum(len(g["params"]) for g in groups) == len(named)
    by_param = {id(p): g for g in groups for p in g["params"]}
    assert by_param[id(named["classifier.weight"])]["lr"] == 1e-2
    assert by_param[id(named["classifier.weight"])]["weight_decay"] == 0.01
    assert by_param[id(named["classifier.bias"])]["weight_decay"] == 0.0
    assert all(by_param[id(p)]["lr"] == 1e-4 for n, p in named.items() if n not in head)
    # the scheduler created afterwards warms up and decays both rates alike
    scheduler = get_linear_schedule_with_warmup(optimizer, 2, 10)
    for _ in range(4):
        optimizer.step()
        scheduler.step()
    lrs = sorted({g["lr"] for g in groups})
    assert lrs == pytest.approx([1e-4 * 6 / 8, 1e-2 * 6 / 8])
    # splitting again moves nothing (no group is split twice); unknown names are an error
    with pytest.raises(StageError, match="none of the new head"):
        split_head_groups(optimizer, model, head, 1e-2)
    with pytest.raises(StageError, match="pooler.nope"):
        split_head_groups(optimizer, model, {"pooler.nope"}, 1e-2)


def test_head_learning_rate_moves_a_fresh_head_faster_than_the_encoder(
    make_context, tiny_encoder_dir: Path
) -> None:
    from safetensors.torch import load_file

    slow = dict(epochs=1, learning_rate=1e-7, batch_size=32, max_length=32)
    plain = FineTune().apply(baseline(tiny_encoder_dir), FineTuneConfig(**slow), make_context("plain"))
    fast = FineTune().apply(
        baseline(tiny_encoder_dir), FineTuneConfig(**slow, head_learning_rate=5e-2), make_context("head"))
    assert fast.lineage.extra["head_learning_rate"] == 5e-2
    assert "head_learning_rate" not in plain.lineage.extra
    # both start from the same seeded head; in 10 steps the encoder moves by about 1e-7 per
    # step in both runs, the head by about 5e-2 per step (AdamW) in one of them only
    slow_w = load_file(str(plain.path / "model.safetensors"))
    fast_w = load_file(str(fast.path / "model.safetensors"))
    assert (fast_w["classifier.weight"] - slow_w["classifier.weight"]).abs().max() > 1e-2
    body = [k for k in fast_w if not k.startswith("classifier.")]
    assert body and max(float((fast_w[k] - slow_w[k]).abs().max()) for k in body) < 1e-4
