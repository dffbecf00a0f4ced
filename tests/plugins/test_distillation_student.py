"""Student construction: layer-list discovery and bit-exact copy of teacher weights."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

from compressor.errors import StageError
from compressor_distillation.student import (
    build_student,
    count_parameters,
    find_layer_list,
    student_config,
    teacher_key,
)

SMALL = dict(vocab_size=99, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
             intermediate_size=64, max_position_embeddings=64, num_labels=3)


def _config(arch: str) -> Any:
    import transformers as tf

    if arch == "bert":
        return tf.BertConfig(**SMALL)
    if arch == "roberta":
        return tf.RobertaConfig(**SMALL)
    if arch == "xlm-roberta":
        return tf.XLMRobertaConfig(**SMALL)
    if arch == "mpnet":
        return tf.MPNetConfig(**SMALL)
    if arch == "electra":
        return tf.ElectraConfig(embedding_size=16, **SMALL)
    if arch == "deberta-v2":
        return tf.DebertaV2Config(relative_attention=True, position_buckets=16, **SMALL)
    if arch == "distilbert":
        return tf.DistilBertConfig(vocab_size=99, dim=32, n_layers=4, n_heads=2, hidden_dim=64,
                                   max_position_embeddings=64, num_labels=3)
    raise AssertionError(arch)


ARCHS = {
    "bert": "bert.encoder.layer",
    "roberta": "roberta.encoder.layer",
    "xlm-roberta": "roberta.encoder.layer",
    "mpnet": "mpnet.encoder.layer",
    "electra": "electra.encoder.layer",
    "deberta-v2": "deberta.encoder.layer",
    "distilbert": "distilbert.transformer.layer",
}


def _teacher(arch: str) -> Any:
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(_config(arch))
    return model.eval()


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_layer_list_found_from_module_structure(arch: str) -> None:
    found = find_layer_list(_teacher(arch))
    assert found.path == ARCHS[arch]
    assert found.count == 4


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_student_copy_is_bit_exact(arch: str) -> None:
    teacher = _teacher(arch)
    layers = [1, 3]
    student, found = build_student(teacher, layers)
    assert type(student) is type(teacher)
    assert len(student.get_submodule(found.path)) == 2
    assert student.config.num_hidden_layers == 2
    assert teacher.config.num_hidden_layers == 4  # the teacher's config is untouched
    t_state, s_state = teacher.state_dict(), student.state_dict()
    prefix = found.path + "."
    student_layers = {int(k[len(prefix):].split(".")[0]) for k in s_state if k.startswith(prefix)}
    assert student_layers == {0, 1}
    for key, value in s_state.items():
        source = teacher_key(key, found.path, layers)
        assert torch.equal(value, t_state[source]), (key, source)
    # everything outside the layer list (embeddings, head) is copied as is
    outside = [k for k in t_state if not k.startswith(found.path + ".")]
    assert outside and all(k in s_state for k in outside)
    assert count_parameters(student) < count_parameters(teacher)


def test_student_with_all_layers_computes_what_the_teacher_computes() -> None:
    teacher = _teacher("bert")
    student, _ = build_student(teacher, [0, 1, 2, 3])
    student.eval()
    ids = torch.randint(5, 99, (2, 7))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        assert torch.equal(student(input_ids=ids, attention_mask=mask).logits,
                           teacher(input_ids=ids, attention_mask=mask).logits)


def test_teacher_key_maps_layer_indices() -> None:
    path = "bert.encoder.layer"
    assert teacher_key("bert.encoder.layer.1.output.dense.weight", path, [0, 2]) == (
        "bert.encoder.layer.2.output.dense.weight"
    )
    assert teacher_key("classifier.weight", path, [0, 2]) == "classifier.weight"
    # a prefix that merely starts the same is not inside the list
    assert teacher_key("bert.encoder.layer_norm.weight", path, [0, 2]) == "bert.encoder.layer_norm.weight"


class _Flat(nn.Module):
    """A model whose layers are not in a ModuleList."""

    def __init__(self) -> None:
        super().__init__()
        self.config = SimpleNamespace(num_hidden_layers=3)
        self.a, self.b, self.c = nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2)


def test_missing_layer_list_names_the_model_class() -> None:
    with pytest.raises(StageError, match=r"_Flat.*ModuleList of 3") as exc:
        find_layer_list(_Flat())
    assert "not supported" in (exc.value.hint or "")


def test_config_without_layer_count_is_refused() -> None:
    model = _Flat()
    model.config = SimpleNamespace(depth=3)
    with pytest.raises(StageError, match="no layer count"):
        find_layer_list(model)


def test_ambiguous_layer_lists_are_refused() -> None:
    model = _Flat()
    model.blocks_a = nn.ModuleList(nn.Linear(2, 2) for _ in range(3))
    model.blocks_b = nn.ModuleList(nn.Linear(2, 2) for _ in range(3))
    with pytest.raises(StageError, match="which module list"):
        find_layer_list(model)
    model.layers = nn.ModuleList(nn.Linear(2, 2) for _ in range(3))
    assert find_layer_list(model).path == "layers"  # a name ending in 'layers' wins


def test_student_config_subsets_per_layer_lists() -> None:
    from compressor_distillation.student import LayerList

    cfg = SimpleNamespace(num_hidden_layers=4, layer_types=["full", "sliding", "full", "sliding"])
    out = student_config(cfg, LayerList("m.layers", 4, "num_hidden_layers"), [1, 2])
    assert out.num_hidden_layers == 2 and out.layer_types == ["sliding", "full"]
    assert cfg.num_hidden_layers == 4


def test_out_of_range_layers_are_refused() -> None:
    with pytest.raises(StageError, match="out of range"):
        build_student(_teacher("bert"), [0, 4])
