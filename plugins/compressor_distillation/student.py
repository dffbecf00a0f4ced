"""Build a shallower student from a teacher by copying teacher layers (Sanh et al. 2019).

The encoder's layer list is found from the module structure, not from architecture-specific
attribute names: it is the :class:`torch.nn.ModuleList` whose length equals the config's
layer count (``num_hidden_layers``, ``n_layers`` or ``num_layers``). This covers BERT,
RoBERTa, XLM-R, MPNet, ELECTRA, DeBERTa-v2, DistilBERT and ModernBERT (whose per-layer
attention types follow the copied layers through ``config.layer_types``, and whose distinct
layer 0 is checked by :func:`check_first_layer`).
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
from compressor.architecture import (  # noqa: E402,F401
    LAYER_COUNT_ATTRS,
    LayerList,
    find_layer_list,
    layer_count,
)


def student_config(teacher_config: Any, layer_list: LayerList, layers: list[int]) -> Any:
    """Deep copy of the teacher's config with ``len(layers)`` layers.

    Per-layer config lists of length ``L`` (``layer_types``) are subset to ``layers``.
    """
    cfg = copy.deepcopy(teacher_config)
    setattr(cfg, layer_list.config_attr, len(layers))
    per_layer = getattr(cfg, "layer_types", None)
    if isinstance(per_layer, (list, tuple)) and len(per_layer) == layer_list.count:
        cfg.layer_types = [per_layer[i] for i in layers]
    if isinstance(getattr(teacher_config, "global_attn_every_n_layers", None), int):
        check_first_layer(teacher_config, layers)
    return cfg


def check_first_layer(teacher_config: Any, layers: list[int]) -> None:
    """ModernBERT's student must start with teacher layer 0.

    ModernBERT (Warner et al. 2024) alternates global and sliding-window attention by layer;
    transformers 5 lists each layer's type in ``config.layer_types``, which
    :func:`student_config` subsets, so any choice of layers keeps every copied layer's type.
    Layer 0 differs from the others, though: it has no attention pre-norm (its input is the
    normalised embedding output), so no other layer can take its place.

    :raises StageError: when ``layers`` does not start with 0.
    """
    if layers[0] != 0:
        raise StageError(
            f"{type(teacher_config).__name__}: the student's first layer must be teacher layer 0, "
            f"got layers {layers}: layer 0 of this architecture has no attention pre-norm "
            "(its input is the normalised embedding output), so no other layer can take its place",
            key="layers",
            hint="start the layer list with 0 ('every-other', 'uniform' and 'first-k' all do)",
        )


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
    layer_list = find_layer_list(teacher)
    bad = [i for i in layers if not 0 <= i < layer_list.count]
    if bad or not layers:
        raise StageError(
            f"teacher layer indices {bad or layers} out of range for {layer_list.count} layers"
        )
    cfg = student_config(teacher.config, layer_list, layers)
    student = type(teacher)._from_config(cfg)
    student.to(dtype=teacher.dtype)
    copy_teacher_weights(teacher, student, layer_list.path, layers)
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
