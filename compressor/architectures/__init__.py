"""Architecture adapters: where compression methods find the parts of an encoder.

Methods that change a model's shape (layer copy and dropping, head and FFN pruning,
unstructured pruning) ask an :class:`ArchitectureAdapter` which modules play which role,
instead of hard-coding one architecture's attribute names. Adapters are found by
``config.model_type`` among those registered through the ``compressor_register_architectures``
hook (the built-in ones: :mod:`compressor.architectures.builtin`); a type none claims gets
:class:`NameMatchingAdapter`, which matches BERT-like module names. Whether a model type is
an encoder at all, and which config attribute holds its sizes, come from transformers' auto
classes and optimum's normalized configs (:mod:`compressor.architectures.families`).

The functions below take an optional ``registry`` (``model_type`` -> adapter,
``Plugins.architectures``); without one they use the adapters in use: those of the plugins
whose :meth:`compressor.plugins.Plugins.scope` is open (a run opens its plugins' scope, so a
strategy's ``encoder_layout(model)`` sees the run's adapters), else the built-in ones.
Supported architectures and methods: docs/architectures.md.

Importing this package is cheap: torch loads inside the functions that need it.
"""

from __future__ import annotations

from .adapter import (
    HEAD_COUNT_ATTRS,
    HIDDEN_SIZE_ATTRS,
    INTERMEDIATE_SIZE_ATTRS,
    LAYER_COUNT_ATTRS,
    QKV_LAYOUTS,
    ROLES,
    ArchitectureAdapter,
    EncoderLayout,
    LayerList,
    NameMatchingAdapter,
    base_model_path,
    config_int,
    get_module,
    layer_count,
    set_module,
)
from .families import (
    DECODER,
    ENCODER,
    ENCODER_DECODER,
    UNSUPPORTED_ENCODERS,
    config_size,
    model_kind,
    model_refusal,
    normalized_attr,
    sequence_classification_types,
)
from .layout import (
    FALLBACK,
    adapter_for,
    encoder_layout,
    ffn_unit_widths,
    ffn_widths,
    find_layer_list,
    head_counts,
    is_registered,
    layer_modules,
    layer_path,
    linear_weights,
    original_head_indices,
    probe_roles,
    refuse,
    registered_adapters,
    sparsity_summary,
    structure_summary,
)

__all__ = [
    "DECODER",
    "ENCODER",
    "ENCODER_DECODER",
    "ArchitectureAdapter",
    "EncoderLayout",
    "FALLBACK",
    "HEAD_COUNT_ATTRS",
    "HIDDEN_SIZE_ATTRS",
    "INTERMEDIATE_SIZE_ATTRS",
    "LAYER_COUNT_ATTRS",
    "LayerList",
    "NameMatchingAdapter",
    "QKV_LAYOUTS",
    "ROLES",
    "UNSUPPORTED_ENCODERS",
    "adapter_for",
    "base_model_path",
    "config_int",
    "config_size",
    "encoder_layout",
    "ffn_unit_widths",
    "ffn_widths",
    "find_layer_list",
    "get_module",
    "head_counts",
    "is_registered",
    "layer_count",
    "layer_modules",
    "layer_path",
    "linear_weights",
    "model_kind",
    "model_refusal",
    "normalized_attr",
    "original_head_indices",
    "probe_roles",
    "refuse",
    "registered_adapters",
    "sequence_classification_types",
    "set_module",
    "sparsity_summary",
    "structure_summary",
]
