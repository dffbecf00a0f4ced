"""Teacher layer selection and the distillation config model."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from compressor.errors import StageError
from compressor_distillation.layers import (
    REFERENCE_BERT_BASE_LAYERS,
    default_student_layers,
    select_layers,
)
from compressor_distillation.plugin import DistilBERTDistillation, DistillationConfig


@pytest.mark.parametrize(
    ("teacher", "student", "expected"),
    [(12, 6, [0, 2, 4, 6, 8, 10]), (6, 3, [0, 2, 4]), (4, 2, [0, 2]), (12, 3, [0, 2, 4]), (5, 1, [0])],
)
def test_every_other(teacher: int, student: int, expected: list[int]) -> None:
    assert select_layers(teacher, student, "every-other") == expected


def test_every_other_refuses_more_than_half() -> None:
    with pytest.raises(StageError, match="every-other") as exc:
        select_layers(12, 7, "every-other")
    assert "uniform" in (exc.value.hint or "")


@pytest.mark.parametrize(
    ("teacher", "student", "expected"),
    [
        (12, 6, list(REFERENCE_BERT_BASE_LAYERS)),
        (6, 3, [0, 3, 5]),
        (12, 4, [0, 4, 7, 11]),
        (4, 4, [0, 1, 2, 3]),
        (6, 1, [0]),
        (6, 2, [0, 5]),
    ],
)
def test_uniform_spans_the_whole_depth(teacher: int, student: int, expected: list[int]) -> None:
    got = select_layers(teacher, student, "uniform")
    assert got == expected
    if student > 1:
        assert got[0] == 0 and got[-1] == teacher - 1


def test_first_k() -> None:
    assert select_layers(12, 4, "first-k") == [0, 1, 2, 3]


def test_explicit_reproduces_the_reference_script() -> None:
    assert select_layers(12, 6, "explicit", [0, 2, 4, 7, 9, 11]) == [0, 2, 4, 7, 9, 11]


@pytest.mark.parametrize(
    ("layers", "match"),
    [
        ([0, 2, 12], "teacher has 12 layers"),
        ([0, 4, 4], "strictly increasing"),
        ([3, 1, 5], "strictly increasing"),
        ([-1, 1, 5], "non-negative"),
        ([0, 1], "entries"),
        (None, "needs 'layers'"),
    ],
)
def test_explicit_errors(layers: list[int] | None, match: str) -> None:
    with pytest.raises(StageError, match=match):
        select_layers(12, 3, "explicit", layers)


def test_layers_only_with_explicit() -> None:
    with pytest.raises(StageError, match="only used"):
        select_layers(12, 3, "uniform", [0, 1, 2])


@pytest.mark.parametrize("student", [0, 13])
def test_student_layers_out_of_range(student: int) -> None:
    with pytest.raises(StageError, match="student_layers"):
        select_layers(12, student, "first-k")


def test_default_student_layers_is_half_rounded_up() -> None:
    assert [default_student_layers(n) for n in (12, 6, 5, 1)] == [6, 3, 3, 1]


# --- config --------------------------------------------------------------------------------


def test_config_defaults_are_the_reference_ones() -> None:
    cfg = DistillationConfig()
    assert (cfg.temperature, cfg.alpha_ce, cfg.alpha_task, cfg.alpha_cos) == (2.0, 5.0, 2.0, 1.0)
    assert cfg.layer_selection == "every-other" and cfg.student_layers is None
    assert DistilBERTDistillation.Config is DistillationConfig
    assert DistilBERTDistillation.needs_teacher and DistilBERTDistillation.needs_training_data


def test_config_rejects_unknown_keys() -> None:
    with pytest.raises(ValidationError, match="temprature"):
        DistillationConfig(temprature=3.0)


@pytest.mark.parametrize(
    "kw",
    [
        dict(temperature=0),
        dict(alpha_ce=-1),
        dict(alpha_ce=0, alpha_task=0, alpha_cos=0),
        dict(layer_selection="every-third"),
        dict(layer_selection="explicit"),
        dict(layer_selection="explicit", layers=[2, 1]),
        dict(layer_selection="explicit", layers=[0, 1, 2], student_layers=2),
        dict(layers=[0, 1]),
        dict(student_layers=0),
        dict(teacher=""),
        dict(fp16=True, bf16=True),
        dict(batch_size=0),
        dict(epochs=0),
    ],
)
def test_config_rejects_invalid_values(kw: dict) -> None:
    with pytest.raises(ValidationError):
        DistillationConfig(**kw)


def test_config_explicit_accepts_layers_without_student_layers() -> None:
    cfg = DistillationConfig(layer_selection="explicit", layers=[0, 2, 4, 7, 9, 11])
    assert cfg.layers == [0, 2, 4, 7, 9, 11]


def test_every_config_field_is_documented() -> None:
    for name, field in DistillationConfig.model_fields.items():
        assert field.description, name
