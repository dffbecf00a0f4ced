"""Distillation from pruned teachers (issue 23): a student copied from pruned layers keeps
their shapes (heads per layer, FFN widths, DeBERTa's per-head position projections), its
weights, and reloads from its own structure file; the MLM and embedding modes load pruned
models too.

Teachers: tiny random encoders of 4 layers x 4 heads (hidden 32, FFN 64) of BERT,
DeBERTa-v2 (relative attention with per-head position projections) and ModernBERT (fused
Wqkv, GLU FFN), head-pruned with a global ranking (10 of 16 heads kept: uneven heads per layer) and FFN-pruned
with a global ranking (uneven widths per layer), as ``prune.heads`` / ``prune.ffn`` write
them.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from compressor.architectures import encoder_layout, ffn_widths, find_layer_list, head_counts
from compressor.artifact import Artifact
from compressor.errors import StageError
from compressor.structure import STRUCTURE_FILE, load_pretrained, read_structure
from compressor.testing import apply_strategy, check_artifact_reloads, tiny_task_data, tiny_tokenizer
from compressor_distillation.student import build_student, teacher_key

ARCHS = ("bert", "deberta-v2", "modernbert")
IMPORTANCE = {"importance_samples": 16, "importance_batch_size": 8, "max_length": 16}
#: one optimiser step at a learning rate that moves no weight measurably: the saved student
#: is the copied one, up to float rounding (a run of the whole stage, save and reload included)
NO_TRAINING = {"max_steps": 1, "learning_rate": 1e-12, "batch_size": 8, "max_length": 16}


def _config(arch: str, tok: Any) -> Any:
    import transformers as T

    common = dict(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
        intermediate_size=64, num_labels=2, pad_token_id=tok.pad_token_id,
        bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id,
    )
    if arch == "bert":
        return T.BertConfig(max_position_embeddings=64, **common)
    if arch == "roberta":
        return T.RobertaConfig(max_position_embeddings=66, type_vocab_size=1, **common)
    if arch == "deberta-v2":
        return T.DebertaV2Config(max_position_embeddings=64, relative_attention=True,
                                 pos_att_type=["p2c", "c2p"], position_buckets=16, **common)
    if arch == "modernbert":
        return T.ModernBertConfig(max_position_embeddings=64, cls_token_id=tok.cls_token_id,
                                  sep_token_id=tok.sep_token_id, global_attn_every_n_layers=1,
                                  local_attention=16, **common)
    raise AssertionError(arch)


def four_head_model(arch: str, folder: Path) -> Path:
    """A random 4-layer, 4-head classifier of ``arch`` with the kit's tokenizer."""
    from transformers import AutoModelForSequenceClassification

    tok = tiny_tokenizer(arch)
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(_config(arch, tok)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def classifier(path: Path) -> Any:
    from transformers import AutoModelForSequenceClassification

    return load_pretrained(AutoModelForSequenceClassification, path)


@pytest.fixture(scope="module")
def pruned(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Artifact]:
    """Per architecture: 6 of 16 heads pruned (global ranking: 10 heads over 4 layers cannot be
    even), then half the FFN neurons (global ranking)."""
    out = {}
    for arch in ARCHS:
        root = tmp_path_factory.mktemp(f"pruned-{arch}")
        base = four_head_model(arch, root / "base")
        heads = apply_strategy("prune.heads", base, {"fraction": 0.375, **IMPORTANCE}, root, stage_name="heads")
        ffn = apply_strategy("prune.ffn", heads, {"fraction": 0.5, "scope": "global", **IMPORTANCE},
                             root, stage_name="ffn")
        ffn.name = "baseline"
        model = classifier(ffn.path)
        assert (ffn.path / STRUCTURE_FILE).is_file()
        assert len(set(head_counts(model))) > 1 and len(set(ffn_widths(model))) > 1, (
            arch, head_counts(model), ffn_widths(model))  # uneven: what this file is about
        out[arch] = ffn
    return out


def _inputs(teacher: Any) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, teacher.config.vocab_size, (3, 9), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def _uneven_layers(heads: list[int]) -> list[int]:
    """Two teacher layers with different head counts, the later one first in the search."""
    for i in range(len(heads)):
        for j in range(i + 1, len(heads)):
            if heads[i] != heads[j]:
                return [i, j]
    raise AssertionError(heads)


# --- the student ---------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_copied_layers_keep_their_shapes_and_weights(arch: str, pruned: dict[str, Artifact]) -> None:
    teacher = classifier(pruned[arch].path)
    t_heads, t_widths = head_counts(teacher), ffn_widths(teacher)
    layers = _uneven_layers(t_heads)
    student, found = build_student(teacher, layers)
    assert head_counts(student) == [t_heads[i] for i in layers]
    assert ffn_widths(student) == [t_widths[i] for i in layers]
    t_state = teacher.state_dict()
    for key, value in student.state_dict().items():
        assert torch.equal(value, t_state[teacher_key(key, found.path, layers)]), key
    # the attention modules' head-count attributes follow the shapes (they reshape the states;
    # ModernBERT has none: it reshapes by head_dim)
    layout = encoder_layout(student)
    for j, i in enumerate(layers):
        attn = student.get_submodule(f"{found.path}.{j}.{layout.attention_module}")
        counts = [getattr(attn, a) for a in layout.head_count_attrs if isinstance(getattr(attn, a, None), int)]
        assert len(counts) == (arch != "modernbert") and all(c == t_heads[i] for c in counts), (j, counts)


@pytest.mark.parametrize("arch", ARCHS)
def test_student_computes_what_the_teacher_layers_compute(arch: str, pruned: dict[str, Artifact]) -> None:
    """All layers copied: the teacher's logits, bit for bit. The first k layers: the teacher's
    first k hidden states."""
    teacher = classifier(pruned[arch].path)
    inputs = _inputs(teacher)
    full, _ = build_student(teacher, [0, 1, 2, 3])
    first, _ = build_student(teacher, [0, 1])
    with torch.no_grad():
        t_out = teacher(**inputs, output_hidden_states=True)
        assert torch.equal(full.eval()(**inputs).logits, t_out.logits)
        s_out = first.eval()(**inputs, output_hidden_states=True)
    assert len(s_out.hidden_states) == 3
    expected = list(t_out.hidden_states[:3])
    if arch == "modernbert":  # its last hidden state is the final norm's output
        with torch.no_grad():
            expected[2] = teacher.model.final_norm(expected[2])
    for layer in range(3):
        assert torch.equal(s_out.hidden_states[layer], expected[layer]), layer


def test_deberta_position_projections_follow_the_heads(pruned: dict[str, Artifact]) -> None:
    teacher = classifier(pruned["deberta-v2"].path)
    layers = _uneven_layers(head_counts(teacher))
    student, _ = build_student(teacher, layers)
    for j, i in enumerate(layers):
        for proj in ("pos_key_proj", "pos_query_proj"):
            s_lin = student.get_submodule(f"deberta.encoder.layer.{j}.attention.self.{proj}")
            t_lin = teacher.get_submodule(f"deberta.encoder.layer.{i}.attention.self.{proj}")
            assert s_lin.out_features == t_lin.out_features == 8 * head_counts(teacher)[i]


@pytest.mark.parametrize("arch", ("bert", "modernbert"))
def test_random_student_has_the_copied_shapes_and_the_config_initialisation(
    arch: str, pruned: dict[str, Artifact]
) -> None:
    """student_init: random keeps the pruned shapes (an ablation of the initialisation only);
    its weights are the config's seeded initialisation, cut to those shapes."""
    from transformers import set_seed

    teacher = classifier(pruned[arch].path)
    layers = _uneven_layers(head_counts(teacher))
    copied, _ = build_student(teacher, layers)
    set_seed(7)
    random, _ = build_student(teacher, layers, init="random")
    assert head_counts(random) == head_counts(copied) and ffn_widths(random) == ffn_widths(copied)
    set_seed(7)
    reference = type(teacher)._from_config(copied.config)  # what the config builds, same seed
    ref_state, copy_state = reference.state_dict(), copied.state_dict()
    for key, value in random.state_dict().items():
        assert value.shape == copy_state[key].shape, key
        assert torch.equal(value, ref_state[key][tuple(slice(0, n) for n in value.shape)]), key
        if value.dim() == 2:  # every matrix is new (biases and norms start at 0 and 1 in both)
            assert not torch.equal(value, copy_state[key]), key
    with torch.no_grad():
        random.eval()(**_inputs(teacher))  # runs with the pruned shapes


def test_attention_kl_compares_per_layer_head_counts(pruned: dict[str, Artifact]) -> None:
    from compressor_distillation.distill import check_layer_losses
    from compressor_distillation.losses import LayerLoss

    teacher = classifier(pruned["bert"].path)
    heads = head_counts(teacher)
    layers = _uneven_layers(heads)
    student, _ = build_student(teacher, layers)
    # student layer 2 was copied from teacher layer layers[1]: same heads, accepted
    check_layer_losses([LayerLoss(layers[1] + 1, 2, "attention-kl", 1.0)], teacher, student)
    with pytest.raises(StageError, match=rf"teacher layer {layers[0] + 1} has {heads[layers[0]]} "
                       rf"and student layer 2 has {heads[layers[1]]}"):
        check_layer_losses([LayerLoss(layers[0] + 1, 2, "attention-kl", 1.0)], teacher, student)


# --- the strategy, task mode ---------------------------------------------------------------


@pytest.mark.parametrize("arch", ("bert", "modernbert"))
def test_task_distillation_of_a_pruned_teacher_saves_a_reloadable_student(
    arch: str, pruned: dict[str, Artifact], tmp_path: Path
) -> None:
    teacher_art = pruned[arch]
    teacher = classifier(teacher_art.path)
    t_heads, t_widths = head_counts(teacher), ffn_widths(teacher)
    layers = _uneven_layers(t_heads)
    config = {"teacher": "baseline", "layer_selection": "explicit", "layers": layers, **NO_TRAINING}
    art = apply_strategy("distill.distilbert", teacher_art, config, tmp_path, stage_name="student")
    extra = art.lineage.extra
    assert extra["copied_layers"] == layers
    assert extra["student_heads"] == [t_heads[i] for i in layers]
    assert extra["student_ffn_widths"] == [t_widths[i] for i in layers]
    structure = read_structure(art.path)
    assert structure["modules"]  # written by the save: the shapes differ from the config's
    student = classifier(art.path)
    assert head_counts(student) == extra["student_heads"] and ffn_widths(student) == extra["student_ffn_widths"]
    # the saved student is the copied one (one step at lr 1e-12)
    copied, found = build_student(teacher, layers)
    t_state = teacher.state_dict()
    for key, value in student.state_dict().items():
        torch.testing.assert_close(value, t_state[teacher_key(key, found.path, layers)], atol=1e-6, rtol=0)
    # and the evaluator's backend loads it and gives its logits
    logits = check_artifact_reloads(art, tiny_task_data(), expected_format="pytorch")
    tok = tiny_tokenizer(arch)
    texts = list(tiny_task_data().split("test").select(range(8))["text"])
    batch = tok(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        direct = copied.eval()(**batch).logits.numpy()
    assert logits == pytest.approx(direct, abs=1e-4)


def test_the_issue_repro_two_heads_one_student_layer(tmp_path: Path) -> None:
    """The report of issue 23: a 2-head tiny BERT, half its heads pruned, a 1-layer student."""
    from compressor.testing import tiny_model

    base = tiny_model("bert", tmp_path / "base")
    p = apply_strategy("prune.heads", base, {"fraction": 0.5, "importance_samples": 16}, tmp_path / "p",
                       stage_name="p")
    p.name = "baseline"
    d = apply_strategy("distill.distilbert", p, {"teacher": "baseline", "student_layers": 1, "max_steps": 2,
                                                 "batch_size": 8}, tmp_path / "d", stage_name="d")
    assert d.lineage.extra["student_heads"] == head_counts(classifier(p.path))[:1]
    assert head_counts(classifier(d.path)) == d.lineage.extra["student_heads"]


def test_layer_pruned_teacher(pruned: dict[str, Artifact], tmp_path: Path) -> None:
    """prune.layers after head and FFN pruning: a 3-layer teacher of uneven layers."""
    layered = apply_strategy("prune.layers", pruned["bert"], {"count": 1, **IMPORTANCE}, tmp_path / "l",
                             stage_name="layers")
    teacher = classifier(layered.path)
    assert find_layer_list(teacher).count == 3
    layered.name = "baseline"
    art = apply_strategy("distill.distilbert", layered, {"student_layers": 2, "layer_selection": "uniform",
                                                         **NO_TRAINING}, tmp_path / "d", stage_name="student")
    assert art.lineage.extra["copied_layers"] == [0, 2]
    assert head_counts(classifier(art.path)) == [head_counts(teacher)[i] for i in (0, 2)]
    assert ffn_widths(classifier(art.path)) == [ffn_widths(teacher)[i] for i in (0, 2)]


def test_random_student_through_the_strategy(pruned: dict[str, Artifact], tmp_path: Path) -> None:
    teacher = classifier(pruned["bert"].path)
    art = apply_strategy("distill.distilbert", pruned["bert"], {"student_init": "random", **NO_TRAINING},
                         tmp_path, stage_name="random")
    assert art.lineage.extra["copied_layers"] == []
    student = classifier(art.path)
    assert head_counts(student) == [head_counts(teacher)[i] for i in (0, 2)]  # every-other
    t_state = teacher.state_dict()
    assert not torch.equal(student.state_dict()["bert.encoder.layer.1.output.dense.weight"],
                           t_state["bert.encoder.layer.2.output.dense.weight"])


def test_pruned_teacher_without_a_trained_head_alpha_ce_zero(pruned: dict[str, Artifact], tmp_path: Path) -> None:
    """A pruned teacher of another label count (alpha_ce 0): the encoder loads with its shapes,
    the classifier is new, as from_pretrained(ignore_mismatched_sizes=True) does."""
    from transformers import AutoModelForSequenceClassification

    from compressor_distillation.loading import load_with_new_weights

    path = pruned["bert"].path
    model, new = load_with_new_weights(AutoModelForSequenceClassification, path, what="teacher",
                                       num_labels=3, ignore_mismatched_sizes=True)
    assert new == ["classifier.bias", "classifier.weight"] and model.config.num_labels == 3
    saved = classifier(path)
    assert head_counts(model) == head_counts(saved)
    assert torch.equal(model.bert.encoder.layer[1].attention.self.query.weight,
                       saved.bert.encoder.layer[1].attention.self.query.weight)
    # another argument than the saved config's cannot be applied to a pruned model
    with pytest.raises(StageError, match="problem_type='regression'"):
        load_with_new_weights(AutoModelForSequenceClassification, path, what="teacher", problem_type="regression")


# --- MLM mode, mlm-adapt, embeddings -------------------------------------------------------


def test_mlm_adapt_and_general_distillation_of_a_pruned_model(pruned: dict[str, Artifact], tmp_path: Path) -> None:
    from transformers import AutoModelForMaskedLM

    pruned_cls = pruned["bert"]
    t_heads = head_counts(classifier(pruned_cls.path))
    # mlm-adapt: the pruned classifier's encoder, a new MLM head (what from_pretrained lists)
    adapt_cfg = {"max_steps": 2, "batch_size": 8, "max_length": 16}
    adapted = apply_strategy("mlm-adapt", pruned_cls, adapt_cfg, tmp_path / "a", stage_name="teacher-mlm")
    assert adapted.lineage.extra["new_head_weights"] == [
        "cls.predictions.bias", "cls.predictions.transform.LayerNorm.bias",
        "cls.predictions.transform.LayerNorm.weight", "cls.predictions.transform.dense.bias",
        "cls.predictions.transform.dense.weight",
    ]
    mlm_teacher = load_pretrained(AutoModelForMaskedLM, adapted.path)
    assert head_counts(mlm_teacher) == t_heads
    # general distillation from the pruned masked LM
    adapted.name = "baseline"
    mlm_cfg = {"mode": "mlm", "student_layers": 2, "layer_selection": "uniform", "max_eval_blocks": 4, **NO_TRAINING}
    art = apply_strategy("distill.distilbert", adapted, mlm_cfg, tmp_path / "d", stage_name="student")
    assert art.lineage.extra["student_heads"] == [t_heads[0], t_heads[3]]
    student = load_pretrained(AutoModelForMaskedLM, art.path)
    assert head_counts(student) == [t_heads[0], t_heads[3]]
    # the pruned classifier itself as the student of general distillation (student: input)
    cfg = {"mode": "mlm", "teacher": "baseline", "student": "input", "max_eval_blocks": 4, **NO_TRAINING}
    art2 = apply_strategy("distill.distilbert", pruned_cls, cfg, tmp_path / "i", stage_name="input",
                          artifacts={"baseline": adapted})
    assert head_counts(load_pretrained(AutoModelForMaskedLM, art2.path)) == t_heads


def test_pruned_classifier_without_mlm_head_is_refused_as_mlm_teacher(
    pruned: dict[str, Artifact], tmp_path: Path
) -> None:
    with pytest.raises(StageError, match="has no masked-LM head weights") as info:
        apply_strategy("distill.distilbert", pruned["bert"], {"mode": "mlm", **NO_TRAINING}, tmp_path,
                       stage_name="student")
    assert info.value.key == "teacher" and "mlm-adapt" in info.value.hint


def test_embedding_distillation_of_a_pruned_teacher(pruned: dict[str, Artifact], tmp_path: Path) -> None:
    from transformers import AutoModel

    from compressor.testing import sentence_transformers_files

    folder = tmp_path / "teacher"
    shutil.copytree(pruned["bert"].path, folder)
    sentence_transformers_files(folder, 32)
    teacher_art = Artifact(name="baseline", path=folder)
    t_heads = head_counts(classifier(folder))
    config = {"student_layers": 2, "heldout_sentences": 8, "warmup_ratio": 0.0, **NO_TRAINING}
    art = apply_strategy("distill.embedding", teacher_art, config, tmp_path, stage_name="student")
    assert art.lineage.extra["student_heads"] == [t_heads[0], t_heads[2]]
    student = load_pretrained(AutoModel, art.path)
    assert head_counts(student) == [t_heads[0], t_heads[2]]
    # the student starts as the copied layers: its held-out cosine to the teacher is what the
    # copy gives, and one step at lr 1e-12 does not change it
    extra = art.lineage.extra
    assert extra["heldout_cosine_after"] == pytest.approx(extra["heldout_cosine_before"], abs=1e-6)
