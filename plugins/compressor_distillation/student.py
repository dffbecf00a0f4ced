"""Build a shallower student from a teacher by copying teacher layers (Sanh et al. 2019).

The encoder's layer list is found from the module structure, not from architecture-specific
attribute names: it is the :class:`torch.nn.ModuleList` whose length equals the config's
layer count (``num_hidden_layers``, ``n_layers`` or ``num_layers``). This covers BERT,
RoBERTa, XLM-R, MPNet, ELECTRA, DeBERTa-v2 and DistilBERT.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from compressor.errors import StageError

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedModel

LAYER_COUNT_ATTRS = ("num_hidden_layers", "n_layers", "num_layers")
"""Config attributes naming the encoder depth, in the order they are looked up."""

_LAYER_LIST_NAMES = {"layer", "layers", "h", "block", "blocks"}


@dataclass(frozen=True)
class LayerList:
    """Where a model keeps its encoder layers.

    :param path: dotted module path of the :class:`~torch.nn.ModuleList`, e.g.
        ``"bert.encoder.layer"`` or ``"distilbert.transformer.layer"``.
    :param count: number of layers ``L``.
    :param config_attr: config attribute holding ``L`` (e.g. ``"num_hidden_layers"``).
    """

    path: str
    count: int
    config_attr: str


def layer_count(config: Any) -> tuple[str, int]:
    """Return ``(attribute name, value)`` of the config's encoder depth.

    :raises StageError: when none of :data:`LAYER_COUNT_ATTRS` is an integer.
    """
    for attr in LAYER_COUNT_ATTRS:
        value = getattr(config, attr, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return attr, value
    raise StageError(
        f"{type(config).__name__} has no layer count",
        expected=f"one of the config attributes {list(LAYER_COUNT_ATTRS)}",
    )


def find_layer_list(model: nn.Module) -> LayerList:
    """Find the encoder's layer list in ``model``.

    :param model: a Hugging Face model with a ``config``.
    :returns: the :class:`LayerList`: the outermost ``nn.ModuleList`` of ``L`` same-typed
        modules, ``L`` read from the config (names ending in ``layer``/``layers`` win ties).
    :raises StageError: naming the model class when the config has no layer count, or no
        (or more than one) matching module list exists.
    """
    cls = type(model).__name__
    config = getattr(model, "config", None)
    if config is None:
        raise StageError(f"{cls} has no config; cannot tell how many layers it has")
    attr, count = layer_count(config)
    candidates: list[str] = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) != count:
            continue
        if len({type(m) for m in module}) != 1:
            continue
        if any(name.startswith(c + ".") for c in candidates):
            continue  # nested inside a list already found
        candidates.append(name)
    if len(candidates) > 1:
        named = [c for c in candidates if c.rsplit(".", 1)[-1] in _LAYER_LIST_NAMES]
        if len(named) == 1:
            candidates = named
    if not candidates:
        raise StageError(
            f"cannot find the encoder layers of {cls}: no torch.nn.ModuleList of "
            f"{count} same-typed layers ({attr}={count})",
            hint="this architecture is not supported by layer-copy initialisation yet",
        )
    if len(candidates) > 1:
        raise StageError(
            f"cannot tell which module list of {cls} holds the encoder layers: {candidates}",
            hint="this architecture is not supported by layer-copy initialisation yet",
        )
    return LayerList(path=candidates[0], count=count, config_attr=attr)


def student_config(teacher_config: Any, layer_list: LayerList, layers: list[int]) -> Any:
    """Deep copy of the teacher's config with ``len(layers)`` layers.

    Per-layer config lists of length ``L`` (``layer_types``) are subset to ``layers``.
    """
    cfg = copy.deepcopy(teacher_config)
    setattr(cfg, layer_list.config_attr, len(layers))
    per_layer = getattr(cfg, "layer_types", None)
    if isinstance(per_layer, (list, tuple)) and len(per_layer) == layer_list.count:
        cfg.layer_types = [per_layer[i] for i in layers]
    return cfg


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
