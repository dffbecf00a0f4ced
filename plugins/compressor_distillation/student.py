"""Build a shallower student from a teacher by copying teacher layers (Sanh et al. 2019).

The encoder's layer list comes from the model's architecture adapter
(:func:`compressor.architectures.find_layer_list`), not from architecture-specific attribute
names. Per-layer config lists (ModernBERT's ``layer_types``, Longformer's
``attention_window``) follow the copied layers, ModernBERT's student must start at layer 0
(:func:`check_first_layer`), and ALBERT's student runs fewer repeats of the teacher's shared
layer.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from compressor.errors import StageError

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedModel

# Layer-list discovery lives in the core (shared with pruning); re-exported here.
from compressor.architectures import (  # noqa: E402,F401
    LAYER_COUNT_ATTRS,
    LayerList,
    adapter_for,
    find_layer_list,
    layer_count,
    refuse,
)


def student_config(teacher_config: Any, layer_list: LayerList, layers: list[int]) -> Any:
    """Deep copy of the teacher's config with ``len(layers)`` layers.

    The architecture's adapter updates the depth and subsets per-layer config lists of
    length ``L`` (``layer_types``, ``attention_window``) to ``layers``, and refuses a choice
    the architecture cannot start from (ModernBERT: layer 0 first).

    :raises StageError: for a choice of layers the architecture refuses.
    """
    cfg = copy.deepcopy(teacher_config)
    adapter = adapter_for(cfg)
    adapter.check_student_layers(teacher_config, layers)
    adapter.keep_layers(cfg, layers)
    setattr(cfg, layer_list.config_attr, len(layers))
    return cfg


def check_first_layer(teacher_config: Any, layers: list[int]) -> None:
    """Refuse a student the teacher's architecture cannot start from (ModernBERT's must start
    with teacher layer 0: see ``ModernBertAdapter.check_student_layers`` in
    :mod:`compressor.architectures.builtin`).

    :raises StageError: when the architecture's adapter refuses ``layers``.
    """
    adapter_for(teacher_config).check_student_layers(teacher_config, layers)


def build_student(
    teacher: "PreTrainedModel", layers: list[int]
) -> tuple["PreTrainedModel", LayerList]:
    """Instantiate the student (teacher's class, fewer layers) and copy the teacher's weights.

    Every parameter and persistent buffer outside the layer list (embeddings, pooler, task
    head) is copied as is; student layer ``i`` gets teacher layer ``layers[i]``. The copy is
    bit-exact and keeps the teacher's dtype.

    :param teacher: a Hugging Face model (e.g. ``BertForSequenceClassification``).
    :param layers: teacher layer indices, one per student layer (see
        :func:`~compressor_distillation.layers.select_layers`).
    :returns: ``(student, teacher's LayerList)``; the student is on CPU, in train mode.
    :raises StageError: when the layer list is not found, an index is out of range, or a
        student weight has no teacher counterpart of the same shape.
    """
    refuse(teacher, "layers")
    layer_list = find_layer_list(teacher)
    bad = [i for i in layers if not 0 <= i < layer_list.count]
    if bad or not layers:
        raise StageError(
            f"teacher layer indices {bad or layers} out of range for {layer_list.count} layers"
        )
    cfg = student_config(teacher.config, layer_list, layers)
    student = type(teacher)._from_config(cfg)
    student.to(dtype=teacher.dtype)
    # a shared layer (ALBERT) is copied as is: the student runs it fewer times
    copy_teacher_weights(teacher, student, layer_list.path, list(range(len(layers))) if layer_list.shared else layers)
    student.train()
    return student, layer_list


def teacher_key(student_key: str, layer_path: str, layers: list[int]) -> str:
    """Map a student state-dict key to the teacher key it is copied from.

    ``"bert.encoder.layer.1.output.dense.weight"`` with ``layers=[0, 2]`` maps to
    ``"bert.encoder.layer.2.output.dense.weight"``; keys outside ``layer_path`` map to
    themselves.
    """
    prefix = layer_path + "."
    if not student_key.startswith(prefix):
        return student_key
    index, rest = student_key[len(prefix):].split(".", 1)
    return f"{prefix}{layers[int(index)]}.{rest}"


@torch.no_grad()
def copy_teacher_weights(
    teacher: nn.Module, student: nn.Module, layer_path: str, layers: list[int]
) -> None:
    """Load the teacher's weights into ``student`` (in place), layer ``i`` from ``layers[i]``.

    :raises StageError: when a student key has no teacher counterpart or shapes differ.
    """
    t_state = teacher.state_dict()
    s_state = student.state_dict()
    new_state: dict[str, torch.Tensor] = {}
    for key, s_value in s_state.items():
        t_key = teacher_key(key, layer_path, layers)
        t_value = t_state.get(t_key)
        if t_value is None:
            raise StageError(
                f"student weight {key!r} has no teacher counterpart {t_key!r} in "
                f"{type(teacher).__name__}",
                hint="layers of this architecture differ by position; copy is not supported",
            )
        if t_value.shape != s_value.shape:
            raise StageError(
                f"student weight {key!r} has shape {tuple(s_value.shape)} but teacher weight "
                f"{t_key!r} has {tuple(t_value.shape)}"
            )
        new_state[key] = t_value.detach().clone()
    student.load_state_dict(new_state, strict=True)


def count_parameters(model: nn.Module) -> int:
    """Number of distinct parameters (tied weights counted once)."""
    return sum(p.numel() for p in model.parameters())  # parameters() skips duplicates
