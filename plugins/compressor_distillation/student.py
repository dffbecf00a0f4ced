"""Build a shallower student from a teacher by copying teacher layers (Sanh et al. 2019).

The encoder's layer list comes from the model's architecture adapter
(:func:`compressor.architectures.find_layer_list`), not from architecture-specific attribute
names. Per-layer config lists (ModernBERT's ``layer_types``, Longformer's
``attention_window``) follow the copied layers, ModernBERT's student must start at layer 0
(:func:`check_first_layer`), and ALBERT's student runs fewer repeats of the teacher's shared
layer.

A teacher whose module shapes differ from what its config builds (a pruned model: heads
removed per layer, FFN widths per layer, DeBERTa's per-head projections; see
:mod:`compressor.structure`) gives a student whose copied layers keep those shapes: the
student is built from the config, then the structure of each chosen teacher layer
(:func:`layer_structure`, from :func:`compressor.structure.structure_diff`) is applied to the
student layer it is copied into, and only then are the weights copied. The student is saved
with its own ``compressor_structure.json`` (the trainer's save writes one whenever the shapes
differ from the config), so it reloads with :func:`compressor.structure.load_pretrained`.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from compressor.errors import CompressorError, StageError
from compressor.structure import apply_structure

from .loading import renamed_structure

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


def layer_structure(teacher: nn.Module, layer_path: str, layers: list[int]) -> dict[str, Any]:
    """The teacher's structure (what differs from its config) as the student must have it.

    :func:`compressor.structure.structure_diff` lists the teacher's modules whose shapes
    differ from what its config builds (Linear layers, other parameters) and the plain
    attributes that differ (an attention module's head count). An entry inside teacher
    layer ``layers[j]`` is renamed to student layer ``j``; entries of teacher layers not
    copied are dropped; entries outside the layer list (embeddings, task head) are kept as
    they are.

    :param teacher: the teacher model.
    :param layer_path: dotted path of the layer list (:attr:`LayerList.path`).
    :param layers: teacher layer indices, one per student layer (strictly increasing, or
        ``range(n)`` for ALBERT's shared layer).
    :returns: a structure as :func:`compressor.structure.read_structure` returns it
        (``{"version", "modules", "attributes"}``), ready for
        :func:`compressor.structure.apply_structure`; empty ``modules`` and ``attributes``
        for a teacher that its config describes fully.
    :raises StageError: when the teacher's modules differ from its config's in a way a
        structure cannot describe (another module type).
    """
    to_student = {t: s for s, t in enumerate(layers)}
    prefix = layer_path + "."

    def rename(name: str) -> str | None:
        if not name.startswith(prefix):
            return name
        index, _, rest = name[len(prefix):].partition(".")
        if not index.isdigit() or int(index) not in to_student:
            return None
        return f"{prefix}{to_student[int(index)]}" + (f".{rest}" if rest else "")

    try:
        return renamed_structure(teacher, rename)
    except CompressorError as exc:
        raise StageError(f"cannot copy layers of {type(teacher).__name__}: {exc.message}", hint=exc.hint) from exc


def build_student(
    teacher: "PreTrainedModel", layers: list[int], *, init: str = "copy"
) -> tuple["PreTrainedModel", LayerList]:
    """Instantiate the student (teacher's class, fewer layers) and copy the teacher's weights.

    Every parameter and persistent buffer outside the layer list (embeddings, pooler, task
    head) is copied as is; student layer ``i`` gets teacher layer ``layers[i]``. The copy is
    bit-exact and keeps the teacher's dtype. A pruned teacher's layer keeps its shapes in
    the student (its heads, its FFN width: :func:`layer_structure`).

    :param teacher: a Hugging Face model (e.g. ``BertForSequenceClassification``).
    :param layers: teacher layer indices, one per student layer (see
        :func:`~compressor_distillation.layers.select_layers`).
    :param init: ``"copy"`` (the teacher's weights, Sanh et al. 2019) or ``"random"`` (the
        paper's ablation: the same architecture and shapes, initialised from the config as
        ``from_config`` does under the caller's seed; a module the teacher's structure makes
        smaller gets the leading rows and columns of the config-sized initialisation, which
        for the element-wise i.i.d. initialisations of Hugging Face encoders is the same
        distribution).
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
    if init not in ("copy", "random"):
        raise StageError(f"unknown student_init {init!r}", key="student_init", expected="'copy' or 'random'")
    # a shared layer (ALBERT) is copied as is: the student runs it fewer times
    copied = list(range(len(layers))) if layer_list.shared else layers
    cfg = student_config(teacher.config, layer_list, layers)
    student = type(teacher)._from_config(cfg)
    student.to(dtype=teacher.dtype)
    structure = layer_structure(teacher, layer_list.path, copied)
    if init == "random":
        shrink_to_structure(student, structure)
    else:
        try:
            apply_structure(student, structure)
        except CompressorError as exc:
            raise StageError(f"cannot give the student its teacher's layer shapes: {exc.message}") from exc
        copy_teacher_weights(teacher, student, layer_list.path, copied)
    student.train()
    return student, layer_list


@torch.no_grad()
def shrink_to_structure(model: nn.Module, structure: dict[str, Any]) -> nn.Module:
    """Apply ``structure`` to a freshly initialised ``model``, keeping its initialisation.

    Each module (or parameter) the structure rebuilds gets the leading slice of the one it
    replaces: rows ``[0, out_features)`` and columns ``[0, in_features)`` of a Linear's
    weight, ``[0, out_features)`` of its bias, ``[0, n)`` along every dimension of another
    parameter.

    :param model: a model built from its config (``from_config``), in place.
    :param structure: as :func:`layer_structure` returns it.
    :returns: ``model``.
    :raises StageError: when the structure makes a module larger than the config does (no
        initialisation to slice from), or names a module ``model`` does not have.
    """
    from compressor.architectures import get_module

    params = dict(model.named_parameters())
    before: dict[str, torch.Tensor] = {}
    for name, spec in structure.get("modules", {}).items():
        for suffix in ((".weight", ".bias") if spec.get("type") == "Linear" else ("",)):
            if name + suffix in params:
                before[name + suffix] = params[name + suffix].detach().clone()
    try:
        apply_structure(model, structure)
    except CompressorError as exc:
        raise StageError(f"cannot give the student its teacher's layer shapes: {exc.message}") from exc
    for key, old in before.items():
        owner, _, attr = key.rpartition(".")
        new = getattr(get_module(model, owner), attr)
        if new is None:
            continue
        if any(n > o for n, o in zip(new.shape, old.shape)) or new.dim() != old.dim():
            raise StageError(
                f"the teacher's {key} {tuple(new.shape)} is larger than its config builds "
                f"{tuple(old.shape)}; a random student cannot be initialised from the config",
                key="student_init", hint="use student_init: copy",
            )
        new.copy_(old[tuple(slice(0, n) for n in new.shape)])
    return model


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
